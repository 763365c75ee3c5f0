"""inspect: any folder, no weights loaded, a verdict a person can act on, untrusted input handled."""

import json
import math
import os
import shlex
import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from seq2seq_onnx import inspect as inspect_module
from seq2seq_onnx.cli import main
from seq2seq_onnx.convert import convert
from seq2seq_onnx.inspect import (
    TRANSFORMERSJS_MAX_IR_VERSION,
    TRANSFORMERSJS_MAX_OPSET,
    external_data_chunks,
    inspect_folder,
    read_graph,
)
from seq2seq_onnx.runtime import DTYPE_SUFFIXES


def run(capsys, *args):
    code = main(["inspect", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def problems(folder) -> list[str]:
    return inspect_folder(folder).problems


def copy_of(converted, tmp_path, name="copy"):
    folder = tmp_path / name
    shutil.copytree(converted, folder)
    return folder


def restamp(path, ir_version=None, opset=None):
    model = onnx.load(str(path), load_external_data=False)
    if ir_version is not None:
        model.ir_version = ir_version
    if opset is not None:
        next(o for o in model.opset_import if o.domain in ("", "ai.onnx")).version = opset
    onnx.save(model, str(path))


def test_healthy_export(converted, capsys):
    code, out, _ = run(capsys, converted, "--json")
    report = json.loads(out)
    assert code == 0 and report["exit_code"] == 0
    assert report["transformersjs_dtypes"] == ["fp32"]
    merged = report["graphs"]["decoder_model_merged.onnx"]
    assert "use_cache_branch" in merged["inputs"] and merged["opset"] == 17
    assert merged["cache_branches"][0]["else_reads"] == []  # the first step reads no cache
    assert any(".decoder." in n for n in merged["cache_branches"][0]["then_reads"])
    assert report["verdict"].startswith("healthy") and report["problems"] == [] and report["warnings"] == []


@pytest.fixture(scope="module")
def every_dtype(make_model, tmp_path_factory):
    """Our own export with every quantized variant (`convert --quantize` writes them all)."""
    from seq2seq_onnx.quantize import MODES

    out = tmp_path_factory.mktemp("every-dtype") / "out"
    convert(str(make_model()), out, progress=False, quantize=list(MODES))
    return out


def test_every_dtype_of_our_export_is_healthy(every_dtype, capsys):
    code, out, _ = run(capsys, every_dtype, "--json")
    report = json.loads(out)
    assert code == 0, report["verdict"]
    assert report["transformersjs_dtypes"] == list(DTYPE_SUFFIXES)
    for dtype, suffix in DTYPE_SUFFIXES.items():
        (branch,) = report["graphs"][f"decoder_model_merged{suffix}.onnx"]["cache_branches"]
        assert branch["then_reads"] and not branch["else_reads"], dtype


@pytest.fixture(scope="module")
def no_past_export(make_model, tmp_path_factory):
    """`convert --no-past` of the same checkpoint as `converted`: onnx/decoder_model.onnx, no merged decoder."""
    out = tmp_path_factory.mktemp("no-past") / "out"
    convert(str(make_model()), out, no_past=True, progress=False)
    return out


def test_the_repeated_token_bug_is_named(no_past_export, tmp_path, capsys):
    folder = copy_of(no_past_export, tmp_path, "bug")
    code, out, _ = run(capsys, folder)
    assert code == 1 and "ModelFileNotFoundError" in out  # as exported, Transformers.js refuses it
    shutil.copy(folder / "onnx" / "decoder_model.onnx", folder / "onnx" / "decoder_model_merged.onnx")
    code, out, _ = run(capsys, folder)
    assert code == 1
    assert "decoder_model_merged.onnx: it has no past_key_values inputs" in out
    assert "goes wrong from the second token" in out and "seq2seq-onnx convert" in out


def test_cache_shape_against_config(converted, tmp_path, capsys):
    folder = tmp_path / "wrong-config"
    shutil.copytree(converted, folder)
    config = json.loads((folder / "config.json").read_text())
    config["num_heads"] += 1
    (folder / "config.json").write_text(json.dumps(config))
    code, out, _ = run(capsys, folder)
    assert code == 1 and "config.json says" in out


def test_not_an_export(tmp_path, capsys):
    code, out, _ = run(capsys, tmp_path)
    assert code == 2 and "not an export folder" in out


def test_missing_path_and_file_are_named_for_what_they_are(converted, tmp_path, capsys):
    missing = tmp_path / "no-such-export"
    code, out, _ = run(capsys, missing)
    assert code == 2 and f"{missing} does not exist" in out and "not a folder" not in out
    code, out, _ = run(capsys, converted / "config.json")
    assert code == 2 and f"{converted / 'config.json'} is a file, not a folder" in out


def test_truncated_file_is_named_not_a_traceback(converted, tmp_path, capsys):
    folder = tmp_path / "truncated"
    shutil.copytree(converted, folder)
    path = folder / "onnx" / "decoder_model_merged.onnx"
    path.write_bytes(path.read_bytes()[:5000])
    code, out, err = run(capsys, folder)
    assert code == 1 and "cannot read decoder_model_merged.onnx: not a valid ONNX file" in out
    assert "Traceback" not in out + err


def _model_with_external_data(folder, location):
    """A tiny graph whose weight claims to live at `location` (never written by us)."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4], np.zeros(4, np.float32).tobytes(), raw=True)
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value=location)
    weight.external_data.add(key="length", value="16")
    graph = helper.make_graph(
        [helper.make_node("Add", ["input_ids", "w"], ["last_hidden_state"])], "g",
        [helper.make_tensor_value_info("input_ids", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [4])], initializer=[weight],
    )
    (folder / "onnx").mkdir(parents=True)
    onnx.save(helper.make_model(graph), str(folder / "onnx" / "encoder_model.onnx"))


def test_path_traversal_is_refused_without_reading(tmp_path):
    for location in ("../../outside.bin", str(tmp_path / "outside.bin")):
        folder = tmp_path / f"evil-{abs(hash(location))}"
        _model_with_external_data(folder, location)
        outside = tmp_path / "outside.bin"
        if not outside.exists():
            os.mkfifo(outside)  # reading it would block forever: the timeout proves nothing reads it
        proc = subprocess.run([sys.executable, "-m", "seq2seq_onnx", "inspect", str(folder)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1
        assert "outside its folder; refusing to read it" in proc.stdout
        assert "Traceback" not in proc.stderr


def test_verify_without_node_says_how_to_get_it(converted, capsys, monkeypatch):
    import seq2seq_onnx.verify.transformersjs as tjs

    monkeypatch.setattr(tjs.shutil, "which", lambda name: None)
    assert main(["verify", str(converted), "--json"]) == 0  # Python ONNX Runtime still checks
    result = json.loads(capsys.readouterr().out)
    assert [c["runtime"] for c in result["checks"]] == ["python"] and result["passed"]
    assert any("Node.js 20+ and npm are needed" in n for n in result["notes"])

    assert main(["verify", str(converted), "--runtime", "transformers.js"]) == 2
    assert "Node.js 20+ and npm are needed" in capsys.readouterr().err


# --- 1. IR version and opset against Transformers.js's pinned runtimes ---


def test_ir_version_too_new_for_transformersjs(converted, tmp_path, capsys):
    """Re-saving with a current onnx stamps IR 14: ONNX Runtime in Python loads it, Transformers.js does not."""
    folder = copy_of(converted, tmp_path)
    restamp(folder / "onnx" / "encoder_model.onnx", ir_version=14)
    ort.InferenceSession(str(folder / "onnx" / "encoder_model.onnx"))  # Python onnxruntime 1.32 accepts it
    code, out, _ = run(capsys, folder)
    assert code == 1
    (line,) = [p for p in problems(folder)]
    assert line.startswith(
        "encoder_model.onnx has IR version 14; Transformers.js 4.3.1 (onnxruntime-node 1.30 / onnxruntime-web 1.31) "
        "loads at most IR 13"
    )
    assert "\n" not in line and line in out
    # The advice is valid: run the one-liner it gives, in the folder, and the folder is healthy again.
    command = line.split("in the export folder: ", 1)[1].split("; or re-export", 1)[0]
    assert command.startswith("python -c ")
    subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=folder, check=True, timeout=120)
    assert inspect_folder(folder).exit_code == 0
    assert onnx.load(str(folder / "onnx" / "encoder_model.onnx")).ir_version == TRANSFORMERSJS_MAX_IR_VERSION


def test_opset_too_new_for_transformersjs(converted, tmp_path, capsys):
    folder = copy_of(converted, tmp_path)
    restamp(folder / "onnx" / "decoder_model_merged.onnx", ir_version=13, opset=27)
    code, out, _ = run(capsys, folder)
    assert code == 1
    (line,) = problems(folder)
    assert line.startswith("decoder_model_merged.onnx uses opset 27; Transformers.js 4.3.1")
    assert "loads at most opset 26" in line and "--opset 17" in line
    assert "lower the stamp" not in line.lower()  # re-stamping an opset is not a fix


def test_lower_stamp_is_offered_only_when_valid(tmp_path):
    """IR 14 added FLOAT6 types: a graph using one cannot be re-stamped IR 13."""
    for to, lowest in ((TensorProto.FLOAT16, 8), (TensorProto.FLOAT6E2M3, 14)):
        graph = helper.make_graph(
            [helper.make_node("Cast", ["input_ids"], ["last_hidden_state"], to=to)], "g",
            [helper.make_tensor_value_info("input_ids", TensorProto.FLOAT, [2])],
            [helper.make_tensor_value_info("last_hidden_state", to, [2])],
        )
        path = tmp_path / f"cast-{to}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=14), str(path))
        assert read_graph(path).lowest_ir_version == lowest


PROBE = r"""
// stdin: JSON list of .onnx paths; stdout: {path: "ok" | error} for onnxruntime-node and onnxruntime-web
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
const dir = process.argv[2];
const ortNode = createRequire(dir + '/package.json')('onnxruntime-node');
const ortWeb = await import(dir + '/node_modules/onnxruntime-web/dist/ort.node.min.mjs');
ortWeb.env.wasm.numThreads = 1;
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const result = {};
for (const file of JSON.parse(Buffer.concat(chunks).toString())) {
  const out = {};
  try { await ortNode.InferenceSession.create(file); out.node = 'ok'; } catch (e) { out.node = String(e.message); }
  try { await ortWeb.InferenceSession.create(new Uint8Array(readFileSync(file))); out.web = 'ok'; }
  catch (e) { out.web = String(e.message); }
  result[file] = out;
}
process.stdout.write(JSON.stringify(result));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js not installed")
def test_version_limits_are_those_of_the_pinned_runtimes(node_packages, tmp_path):
    """The limits in inspect.py, measured: a graph at the limit loads in onnxruntime-node and
    onnxruntime-web (the versions Transformers.js 4.3.1 installs), one past it fails in both."""
    def add_graph(name, ir, opset):
        graph = helper.make_graph(
            [helper.make_node("Add", ["x", "x"], ["y"])], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        )
        path = tmp_path / name
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir), str(path))
        return str(path)

    ir, opset = TRANSFORMERSJS_MAX_IR_VERSION, TRANSFORMERSJS_MAX_OPSET
    files = {"at-limit": add_graph("limit.onnx", ir, opset), "ir-past": add_graph("ir.onnx", ir + 1, 17),
             "opset-past": add_graph("opset.onnx", ir, opset + 1)}
    (tmp_path / "probe.mjs").write_text(PROBE)
    proc = subprocess.run(["node", str(tmp_path / "probe.mjs"), str(node_packages)], input=json.dumps(list(files.values())),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result[files["at-limit"]] == {"node": "ok", "web": "ok"}
    for runtime in ("node", "web"):
        assert f"Unsupported model IR version: {ir + 1}, max supported IR version: {ir}" in result[files["ir-past"]][runtime]
        assert f"Opset {opset + 1} is under development" in result[files["opset-past"]][runtime]


# --- 2. the If on use_cache_branch, branches the wrong way round ---


def rewire_branches(path, how):
    """Mutate the merged decoder's If: 'swap' the branches, or make both the 'then' or the 'else' one."""
    model = onnx.load(str(path), load_external_data=False)
    node = next(n for n in model.graph.node if n.op_type == "If")
    attrs = {a.name: a for a in node.attribute}
    then_g, else_g = onnx.GraphProto(), onnx.GraphProto()
    then_g.CopyFrom(attrs["then_branch"].g)
    else_g.CopyFrom(attrs["else_branch"].g)
    new_then, new_else = {"swap": (else_g, then_g), "both-then": (then_g, then_g), "both-else": (else_g, else_g)}[how]
    attrs["then_branch"].g.CopyFrom(new_then)
    attrs["else_branch"].g.CopyFrom(new_else)
    onnx.save(model, str(path))


def first_decoder_step(folder, suffix=""):
    """Step 1 as Transformers.js runs it: empty caches (symbolic dims 0), use_cache_branch=false."""
    onnx_dir = folder / "onnx"
    ids = np.array([[5, 17, 42, 1]], dtype=np.int64)
    mask = np.ones_like(ids)
    encoder = ort.InferenceSession(str(onnx_dir / f"encoder_model{suffix}.onnx"))
    (states,) = encoder.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})
    decoder = ort.InferenceSession(str(onnx_dir / f"decoder_model_merged{suffix}.onnx"))
    feed = {"input_ids": np.zeros((1, 1), np.int64), "encoder_attention_mask": mask, "encoder_hidden_states": states,
            "use_cache_branch": np.array([False])}
    for meta in decoder.get_inputs():
        if meta.name.startswith("past_key_values."):
            shape = [1] + [d if isinstance(d, int) else 0 for d in meta.shape[1:]]
            feed[meta.name] = np.zeros(shape, np.float16 if "float16" in meta.type else np.float32)
    return decoder.run(["logits"], feed)[0]


def test_swapped_branches(converted, tmp_path, capsys):
    assert first_decoder_step(converted).shape[:2] == (1, 1)  # the healthy export runs step 1
    folder = copy_of(converted, tmp_path)
    rewire_branches(folder / "onnx" / "decoder_model_merged.onnx", "swap")
    with pytest.raises(Exception, match="broadcast"):  # the fault is real: step 1 crashes
        first_decoder_step(folder)
    code, out, _ = run(capsys, folder)
    assert code == 1
    (line,) = problems(folder)
    assert line.startswith("decoder_model_merged.onnx: the If on use_cache_branch has its branches swapped: "
                           "else_branch (use_cache_branch=false, the first step) reads the cross-attention cache "
                           "past_key_values.0.encoder.key")
    assert line in out


def test_swapped_branches_seen_through_every_dtype(every_dtype, tmp_path):
    """fp16 and quantized graphs add nodes around and inside the If; the check sees through them."""
    folder = copy_of(every_dtype, tmp_path)
    for suffix in ("_fp16", "_q4f16", "_quantized"):
        rewire_branches(folder / "onnx" / f"decoder_model_merged{suffix}.onnx", "swap")
    found = problems(folder)
    assert len(found) == 3
    assert all("has its branches swapped" in p for p in found)
    with pytest.raises(Exception, match="broadcast"):
        first_decoder_step(folder, "_fp16")


@pytest.mark.parametrize("how,cause", [
    ("both-then", "else_branch (use_cache_branch=false, the first step) reads the cross-attention cache"),
    ("both-else", "then_branch (use_cache_branch=true, every step after the first) reads no "
                  "past_key_values.*.decoder.* input"),
])
def test_branch_reads_the_wrong_cache(converted, tmp_path, how, cause):
    folder = copy_of(converted, tmp_path)
    rewire_branches(folder / "onnx" / "decoder_model_merged.onnx", how)
    (line,) = problems(folder)
    assert cause in line


# --- 2b. a merged decoder must read what it declares ---


def _decoder_steps(folder, steps=2):
    """Logits of the merged decoder's first `steps` steps, fed as Transformers.js feeds them: step 1
    with empty caches and use_cache_branch=false, then the last token only with the cache it returned."""
    onnx_dir = folder / "onnx"
    ids = np.array([[5, 17, 42, 9, 1]], dtype=np.int64)
    mask = np.ones_like(ids)
    encoder = ort.InferenceSession(str(onnx_dir / "encoder_model.onnx"))
    (states,) = encoder.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})
    decoder = ort.InferenceSession(str(onnx_dir / "decoder_model_merged.onnx"))
    past = {}
    for meta in decoder.get_inputs():
        if meta.name.startswith("past_key_values."):
            past[meta.name] = np.zeros([1] + [d if isinstance(d, int) else 0 for d in meta.shape[1:]], np.float32)
    outputs = [o.name for o in decoder.get_outputs()]
    token, found = 0, []
    for step in range(steps):
        feed = {"input_ids": np.array([[token]], np.int64), "encoder_attention_mask": mask,
                "encoder_hidden_states": states, "use_cache_branch": np.array([step > 0]), **past}
        values = dict(zip(outputs, decoder.run(outputs, feed)))
        found.append(values["logits"][0, -1])
        token = int(values["logits"][0, -1].argmax())
        for name in past:
            if step == 0 or ".decoder." in name:  # the cross-attention cache is kept from step 1
                past[name] = values[name.replace("past_key_values.", "present.")]
    return found


def with_past_only(folder):
    """Replace the merged decoder's If by its then_branch: a decoder with past only, use_cache_branch unread."""
    path = folder / "onnx" / "decoder_model_merged.onnx"
    model = onnx.load(str(path))
    graph = model.graph
    index, node = next((i, n) for i, n in enumerate(graph.node) if n.op_type == "If")
    then_branch = next(a.g for a in node.attribute if a.name == "then_branch")
    nodes = [*graph.node[:index], *then_branch.node,
             *(helper.make_node("Identity", [b.name], [o]) for b, o in zip(then_branch.output, node.output)),
             *graph.node[index + 1:]]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(then_branch.initializer)
    onnx.save(model, str(path))


def test_cache_inputs_declared_but_never_read(converted, no_past_export, tmp_path, capsys):
    """A --no-past decoder given the merged decoder's cache inputs and use_cache_branch, none of them used:
    the names are right, it loads, and it goes wrong from the second token."""
    folder = copy_of(no_past_export, tmp_path, "unused-cache")
    merged = onnx.load(str(converted / "onnx" / "decoder_model_merged.onnx"), load_external_data=False)
    model = onnx.load(str(folder / "onnx" / "decoder_model.onnx"))
    model.graph.input.extend(i for i in merged.graph.input
                             if i.name.startswith("past_key_values.") or i.name == "use_cache_branch")
    onnx.save(model, str(folder / "onnx" / "decoder_model_merged.onnx"))
    (folder / "onnx" / "decoder_model.onnx").unlink()
    # the fault is real: step 1 agrees with the healthy export, step 2 (last token only) does not
    good, bad = _decoder_steps(converted), _decoder_steps(folder)
    np.testing.assert_allclose(bad[0], good[0], atol=1e-4)
    assert np.abs(bad[1] - good[1]).max() > 1e-2

    code, out, _ = run(capsys, folder)
    assert code == 1
    cache, branch = problems(folder)
    assert cache.startswith("decoder_model_merged.onnx declares 4 self-attention cache inputs "
                            "(past_key_values.*.decoder.*) but never reads them")
    assert "goes wrong from the second token" in cache
    assert branch.startswith("decoder_model_merged.onnx declares use_cache_branch but never reads it")
    assert cache in out and branch in out
    graph = inspect_folder(folder).graphs["decoder_model_merged.onnx"]
    assert "use_cache_branch" in graph.inputs_not_read and "past_key_values.0.decoder.key" in graph.inputs_not_read


def test_some_cache_inputs_never_read(converted, tmp_path):
    """One layer reads zeros shaped like its key instead of its cached value: that input is declared, fed, unused."""
    folder = copy_of(converted, tmp_path, "one-layer")
    path = folder / "onnx" / "decoder_model_merged.onnx"
    model = onnx.load(str(path))
    victim = "past_key_values.1.decoder.value"
    then_branch = next(a.g for a in next(n for n in model.graph.node if n.op_type == "If").attribute
                       if a.name == "then_branch")
    readers = [n for n in then_branch.node if victim in n.input]
    assert readers
    for node in readers:
        node.input[:] = ["zeros_for_value" if n == victim else n for n in node.input]
    then_branch.node.insert(0, helper.make_node("Mul", ["past_key_values.1.decoder.key", "zero"], ["zeros_for_value"]))
    then_branch.node.insert(0, helper.make_node("Constant", [], ["zero"],
                                                value=helper.make_tensor("z", TensorProto.FLOAT, [], [0.0])))
    onnx.save(model, str(path))
    good, bad = _decoder_steps(converted), _decoder_steps(folder)  # the fault is real, from step 2
    np.testing.assert_allclose(bad[0], good[0], atol=1e-4)
    assert np.abs(bad[1] - good[1]).max() > 1e-2
    (line,) = problems(folder)
    assert line.startswith("decoder_model_merged.onnx never reads past_key_values.1.decoder.value of its 4 "
                           "self-attention cache inputs")


def test_with_past_decoder_that_ignores_use_cache_branch(converted, tmp_path, capsys):
    """A decoder with past alone under the merged name, use_cache_branch declared and unread."""
    folder = copy_of(converted, tmp_path, "with-past-only")
    with_past_only(folder)
    with pytest.raises(Exception, match="broadcast"):  # the fault is real: step 1 reads the empty cross-attention cache
        first_decoder_step(folder)
    code, out, _ = run(capsys, folder)
    assert code == 1
    (line,) = problems(folder)
    assert line.startswith("decoder_model_merged.onnx declares use_cache_branch but never reads it") and line in out


def test_our_merged_decoders_read_every_input(every_dtype):
    report = inspect_folder(every_dtype)
    for name, graph in report.graphs.items():
        assert graph.inputs_not_read == [], name


# --- 2c. config.json's model_type ---


def test_model_type_of_a_family_we_do_not_know(converted, tmp_path, capsys):
    """blenderbot may be a valid export we cannot check: a warning, not a problem."""
    folder = copy_of(converted, tmp_path, "blenderbot")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "blenderbot"}))
    code, out, _ = run(capsys, folder)
    assert code == 0
    report = inspect_folder(folder)
    assert report.problems == [] and not report.transformersjs_unsupported_model_type
    (warning,) = report.warnings
    assert warning.startswith("the cache layout (layers, heads, head size) of decoder_model_merged.onnx could not be "
                              "checked against config.json for model_type 'blenderbot'")
    assert f"warning: {warning}" in out

    del config["model_type"]
    (folder / "config.json").write_text(json.dumps(config))
    (warning,) = inspect_folder(folder).warnings
    assert "config.json (it has no model_type" in warning

    (folder / "config.json").write_text(json.dumps({**config, "model_type": "t5", "num_heads": None}))
    report = inspect_folder(folder)
    assert report.problems == [] and "it lacks the t5 fields" in report.warnings[0]


def test_unsupported_model_type_is_told_apart_without_reading_the_text(converted, tmp_path, capsys):
    folder = copy_of(converted, tmp_path, "umt5")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "umt5"}))
    report = inspect_folder(folder)
    assert report.exit_code == 1 and len(report.problems) == 1
    assert report.transformersjs_unsupported_model_type and report.model_type == "umt5"
    assert report.problems_besides_model_type() == []
    restamp(folder / "onnx" / "encoder_model.onnx", ir_version=14)
    report = inspect_folder(folder)
    (other,) = report.problems_besides_model_type()
    assert other.startswith("encoder_model.onnx has IR version 14") and len(report.problems) == 2
    code, out, _ = run(capsys, folder, "--json")
    assert json.loads(out)["transformersjs_unsupported_model_type"] is True

    report = inspect_folder(converted)
    assert not report.transformersjs_unsupported_model_type and report.model_type == "t5"


# --- 3. external data announced in config.json ---


def with_external_data(converted, tmp_path, transformersjs_config=None, name="ext", suffixes=("",), location=None):
    """A copy of the export whose graphs keep their weights in `<file>.onnx_data` (or `location`)."""
    folder = copy_of(converted, tmp_path, name)
    onnx_dir = folder / "onnx"
    for suffix in suffixes:
        for graph in ("encoder_model", "decoder_model_merged"):
            target = f"{graph}{suffix}.onnx"
            model = onnx.load(str(converted / "onnx" / f"{graph}.onnx"))
            onnx.save_model(model, str(onnx_dir / target), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=location or f"{target}_data", size_threshold=1024)
    config = json.loads((folder / "config.json").read_text())
    config.pop("transformers.js_config", None)
    if transformersjs_config is not None:
        config["transformers.js_config"] = transformersjs_config
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_external_data_without_the_config_entry(converted, tmp_path, capsys):
    folder = with_external_data(converted, tmp_path)
    code, out, _ = run(capsys, folder)
    assert code == 1
    (line,) = problems(folder)
    assert "the browser fails (\"Module.MountedFiles is not available\")" in line
    assert line.endswith('Add to config.json: "transformers.js_config": {"use_external_data_format": '
                         '{"encoder_model.onnx": true, "decoder_model_merged.onnx": true}}.')
    # the entry it names is the fix
    config = json.loads((folder / "config.json").read_text())
    config["transformers.js_config"] = json.loads("{" + line.split("Add to config.json: ", 1)[1].rstrip(".") + "}")[
        "transformers.js_config"]
    (folder / "config.json").write_text(json.dumps(config))
    assert inspect_folder(folder).exit_code == 0


@pytest.mark.parametrize("setting", [
    True, 1, "1", {"encoder_model.onnx": True, "decoder_model_merged.onnx": True},
    {"encoder_model": True, "decoder_model_merged": 1}, {"encoder_model.onnx": 1, "decoder_model_merged": True},
], ids=repr)
def test_every_form_transformersjs_accepts(converted, tmp_path, setting):
    folder = with_external_data(converted, tmp_path, {"use_external_data_format": setting})
    assert problems(folder) == []


def test_device_config_overrides_the_setting(converted, tmp_path):
    """transformers.js_config.device_config[device] overrides it; the browser's device is wasm."""
    folder = with_external_data(converted, tmp_path, {"device_config": {"wasm": {"use_external_data_format": True}}})
    assert problems(folder) == []
    folder = with_external_data(converted, tmp_path, {"use_external_data_format": True,
                                                      "device_config": {"wasm": {"use_external_data_format": False}}},
                                name="off-in-browser")
    (line,) = problems(folder)
    assert "Module.MountedFiles" in line


@pytest.mark.parametrize("setting", [
    False, 0, {}, {"encoder_model.onnx_data": True, "decoder_model_merged.onnx_data": True},
], ids=repr)
def test_forms_transformersjs_ignores(converted, tmp_path, setting):
    folder = with_external_data(converted, tmp_path, {"use_external_data_format": setting})
    (line,) = problems(folder)
    assert "Module.MountedFiles is not available" in line


def test_per_file_keys_with_dtype_suffixes(converted, tmp_path):
    """An object is looked up by the full name with suffix and extension, or the bare graph name: a
    key with the suffix but no extension, or fp32's full name, does not cover the fp16 files."""
    def fp16_problems(setting, name):
        folder = with_external_data(converted, tmp_path, {"use_external_data_format": setting}, name=name,
                                    suffixes=("", "_fp16"))
        return problems(folder)

    assert fp16_problems({"encoder_model": True, "decoder_model_merged": True}, "bare") == []
    full = {f"{g}{s}.onnx": True for g in ("encoder_model", "decoder_model_merged") for s in ("", "_fp16")}
    assert fp16_problems(full, "full") == []
    (line,) = fp16_problems({"encoder_model.onnx": True, "decoder_model_merged.onnx": True}, "fp32-only")
    assert line.startswith("encoder_model_fp16.onnx, decoder_model_merged_fp16.onnx keep their weights in external data files")
    assert '{"encoder_model_fp16.onnx": true, "decoder_model_merged_fp16.onnx": true}' in line
    (line,) = fp16_problems({"encoder_model.onnx": True, "decoder_model_merged.onnx": True,
                             "encoder_model_fp16": True, "decoder_model_merged_fp16": True}, "no-extension")
    assert "encoder_model_fp16.onnx, decoder_model_merged_fp16.onnx keep their weights" in line


def test_config_naming_missing_data_files(converted, tmp_path):
    """Two chunks announced, one written: Transformers.js fetches a file that is not there."""
    folder = with_external_data(converted, tmp_path, {"use_external_data_format": {"encoder_model.onnx": 2,
                                                                                  "decoder_model_merged.onnx": True}})
    (line,) = problems(folder)
    assert line.startswith("config.json's transformers.js_config.use_external_data_format makes Transformers.js "
                           "fetch encoder_model.onnx_data_1 for encoder_model.onnx, and the folder lacks it")
    assert "ModelFileNotFoundError" in line
    # a global true also covers graphs without external data, whose <file>_data does not exist
    folder = with_external_data(converted, tmp_path, {"use_external_data_format": True}, name="inline", suffixes=())
    assert len(problems(folder)) == 2


def test_external_data_under_another_name(converted, tmp_path):
    folder = with_external_data(converted, tmp_path, {"use_external_data_format": {"encoder_model": True}},
                                name="odd", suffixes=())
    onnx.save_model(onnx.load(str(converted / "onnx" / "encoder_model.onnx")), str(folder / "onnx" / "encoder_model.onnx"),
                    save_as_external_data=True, location="weights.bin", size_threshold=1024)
    stray, absent = problems(folder)  # the data is not where Transformers.js looks, and what it fetches is absent
    assert stray.startswith("encoder_model.onnx reads external data from weights.bin, but Transformers.js fetches only "
                            "encoder_model.onnx_data for it")
    assert "Node loads it, the browser fails (\"File not found in preloaded files\")" in stray
    assert "fetch encoder_model.onnx_data for encoder_model.onnx, and the folder lacks it" in absent
    shutil.copy(folder / "onnx" / "weights.bin", folder / "onnx" / "encoder_model.onnx_data")
    (stray_only,) = problems(folder)  # fetched and present, but the graph reads weights.bin: the browser fails
    assert stray_only == stray


FULL, BARE = "decoder_model_merged_fp16.onnx", "decoder_model_merged"
CHUNK_CASES = [
    (None, 0), (False, 0), (True, 1), (0, 0), (3, 3), ("2", 2), ("", 0), ("yes", 0), ("1_0", 0), (" 0x2 ", 2),
    ("1e1", 10), ("-3", 0), (2.5, 3), ([1], 0), ("Infinity", 101), ({FULL: True}, 1), ({BARE: 4}, 4),
    ({FULL: 2, BARE: 5}, 2), ({FULL: False, BARE: True}, 0), ({"decoder_model_merged_fp16": True}, 0),
    ({"decoder_model_merged.onnx": True}, 0), ({}, 0),
]


def test_external_data_chunks_mirrors_transformersjs():
    """resolveExternalDataFormat(config, fullName, fileName) of Transformers.js 4.3.1, case by case."""
    for setting, chunks in CHUNK_CASES:
        assert external_data_chunks(setting, FULL, BARE) == chunks, setting
    assert math.isnan(inspect_module._js_number({}))


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js not installed")
def test_external_data_chunks_against_the_library_itself(node_packages, tmp_path):
    """The same cases through the installed library's own resolveExternalDataFormat and chunk loop."""
    library = node_packages / "node_modules" / "@huggingface" / "transformers" / "dist" / "transformers.node.mjs"
    text = library.read_text()
    start = text.index("function resolveExternalDataFormat(")
    function = text[start:text.index("\n}\n", start) + 3]
    script = function + """
const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const counts = cases.map(([setting, full, bare]) => {
  const n = resolveExternalDataFormat(setting, full, bare);
  let chunks = 0;
  for (let i = 0; i < n; ++i) { chunks++; if (chunks > 100) break; }  // getExternalDataChunkNames' loop
  return chunks;
});
process.stdout.write(JSON.stringify(counts));
"""
    (tmp_path / "resolve.cjs").write_text(script)
    proc = subprocess.run(["node", str(tmp_path / "resolve.cjs")], capture_output=True, text=True, timeout=60,
                          input=json.dumps([[setting, FULL, BARE] for setting, _ in CHUNK_CASES]))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [external_data_chunks(setting, FULL, BARE) for setting, _ in CHUNK_CASES]


# --- 4. tokenizer against config.json's vocab_size ---


def empty_t5_tokenizer(tokenizer: dict, extra_ids: int) -> dict:
    """tokenizer.json of a T5 tokenizer that lost its vocabulary: <pad>, </s>, <unk> and <extra_id_*> only."""
    specials = ["<pad>", "</s>", "<unk>"] + [f"<extra_id_{i}>" for i in reversed(range(extra_ids))]
    data = json.loads(json.dumps(tokenizer))
    data["model"]["vocab"] = [[token, 0.0] for token in specials]
    data["model"]["unk_id"] = 2
    data["added_tokens"] = [
        {"id": i, "content": token, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
         "special": True} for i, token in enumerate(specials)
    ]
    return data


@pytest.mark.parametrize("vocab_size,extra_ids", [(None, 4), (32128, 100)], ids=["fixture", "flan-t5-size"])
def test_tokenizer_without_vocabulary(converted, tmp_path, capsys, vocab_size, extra_ids):
    folder = copy_of(converted, tmp_path)
    data = json.loads((folder / "tokenizer.json").read_text())
    (folder / "tokenizer.json").write_text(json.dumps(empty_t5_tokenizer(data, extra_ids)))
    config = json.loads((folder / "config.json").read_text())
    if vocab_size:
        config["vocab_size"] = vocab_size
        (folder / "config.json").write_text(json.dumps(config))
    code, out, _ = run(capsys, folder)
    assert code == 1
    (line,) = problems(folder)
    assert line.startswith(f"tokenizer.json has only 0 regular tokens (plus {3 + extra_ids} special) for a model "
                           f"with vocab_size {config['vocab_size']} (config.json)")


def test_our_tokenizers_cover_the_vocabulary(converted):
    data = json.loads((converted / "tokenizer.json").read_text())
    vocab_size = json.loads((converted / "config.json").read_text())["vocab_size"]
    tokens, special = inspect_module._tokenizer_vocabulary(data)
    regular = sum(1 for t in tokens.values() if t not in special)
    assert regular >= inspect_module.MIN_TOKENIZER_COVERAGE * vocab_size and max(tokens) < vocab_size
    assert regular / vocab_size > 0.9  # well clear of the threshold


def test_tokenizer_ids_past_vocab_size(converted, tmp_path, capsys):
    folder = copy_of(converted, tmp_path)
    vocab_size = json.loads((folder / "config.json").read_text())["vocab_size"]
    data = json.loads((folder / "tokenizer.json").read_text())
    data["added_tokens"].append({"id": vocab_size, "content": "<new_token>", "single_word": False, "lstrip": False,
                                 "rstrip": False, "normalized": False, "special": False})
    (folder / "tokenizer.json").write_text(json.dumps(data))
    code, out, _ = run(capsys, folder)
    assert code == 1
    (line,) = problems(folder)
    assert line.startswith(f"tokenizer.json has 1 token ids at or above config.json's vocab_size {vocab_size} "
                           f"(up to {vocab_size}, e.g. '<new_token>')")
    # the fault is real: that id indexes past the embedding
    encoder = ort.InferenceSession(str(folder / "onnx" / "encoder_model.onnx"))
    ids = np.array([[5, vocab_size, 1]], dtype=np.int64)
    with pytest.raises(Exception, match="indices element out of data bounds"):
        encoder.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})


def test_tokenizer_json_not_json(converted, tmp_path):
    folder = copy_of(converted, tmp_path)
    (folder / "tokenizer.json").write_text("{not json")
    (line,) = problems(folder)
    assert line.startswith("tokenizer.json is not valid JSON")


# --- 5. messages: no template left unfilled, one line per problem ---


def test_no_dtype_pair_names_the_files(converted, tmp_path, capsys):
    folder = copy_of(converted, tmp_path)
    (folder / "onnx" / "encoder_model.onnx").rename(folder / "onnx" / "encoder_model_fp16.onnx")
    code, out, _ = run(capsys, folder)
    assert code == 1 and "{sfx}" not in out
    (line,) = problems(folder)
    assert line.startswith("no dtype has both files Transformers.js loads")
    assert line.endswith("found only decoder_model_merged.onnx, encoder_model_fp16.onnx")


def test_verdict_lists_each_problem_on_its_own_line(converted, tmp_path, capsys):
    folder = copy_of(converted, tmp_path)
    restamp(folder / "onnx" / "encoder_model.onnx", ir_version=14)
    rewire_branches(folder / "onnx" / "decoder_model_merged.onnx", "swap")
    (folder / "config.json").write_text(json.dumps({**json.loads((folder / "config.json").read_text()), "vocab_size": 9}))
    report = inspect_folder(folder)
    assert len(report.problems) == 3
    lines = report.verdict().splitlines()
    assert lines[0] == "PROBLEMS (3):"
    assert lines[1:] == [f"  - {p}" for p in report.problems]
    code, out, _ = run(capsys, folder, "--json")
    assert code == 1 and json.loads(out)["verdict"] == report.verdict()
    code, out, _ = run(capsys, folder)
    assert out.rstrip("\n").splitlines()[-4:] == ["verdict: PROBLEMS (3):"] + lines[1:]


def _edit_graph(path, change):
    model = onnx.load(str(path))
    change(model.graph)
    onnx.save(model, str(path))


def test_inputs_and_outputs_transformersjs_cannot_feed_or_read(converted, tmp_path, capsys):
    """Transformers.js feeds only the names it knows, ids and masks as int64, and reads logits / last_hidden_state."""
    import numpy as np

    folder = copy_of(converted, tmp_path, "extra-input")
    decoder = folder / "onnx" / "decoder_model_merged.onnx"
    _edit_graph(decoder, lambda g: g.input.append(
        onnx.helper.make_tensor_value_info("decoder_attention_mask", onnx.TensorProto.INT64, ["batch", "length"])))
    assert run(capsys, folder)[0] == 1
    (line,) = problems(folder)
    assert line.startswith("decoder_model_merged.onnx has inputs Transformers.js does not feed (decoder_attention_mask)")
    # the fault is real: a runtime that does not feed a declared input refuses to run
    session = ort.InferenceSession(str(decoder))
    with pytest.raises(Exception, match="decoder_attention_mask"):
        session.run(None, {"input_ids": np.zeros((1, 1), np.int64)})

    folder = copy_of(converted, tmp_path, "int32-ids")
    _edit_graph(folder / "onnx" / "encoder_model.onnx",
                lambda g: g.input[0].type.tensor_type.__setattr__("elem_type", onnx.TensorProto.INT32))
    assert run(capsys, folder)[0] == 1
    (line,) = problems(folder)
    assert line.startswith("encoder_model.onnx: input_ids is int32, but Transformers.js feeds input_ids as int64")

    folder = copy_of(converted, tmp_path, "no-logits")

    def rename_logits(graph):
        for node in graph.node:
            node.output[:] = ["lm_logits" if o == "logits" else o for o in node.output]
        next(o for o in graph.output if o.name == "logits").name = "lm_logits"

    _edit_graph(folder / "onnx" / "decoder_model_merged.onnx", rename_logits)
    assert run(capsys, folder)[0] == 1
    assert any(p.startswith("decoder_model_merged.onnx has no logits output") for p in problems(folder))
