"""The command line: clear errors, exit codes, nothing clobbered, old-tutorial entry point."""

import json
import os
import subprocess
import sys

import pytest

from seq2seq_onnx.cli import main


def run(capsys, *args):
    code = main(["convert", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def leftovers(parent):
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "name,hint",
    [("flan-t5-small", "google/flan-t5-small"), ("google/flan-t5-smal", "google/flan-t5-small"), ("t5-base", "google-t5/t5-base")],
)
def test_unknown_model_suggests_hub_id(capsys, tmp_path, name, hint):
    code, out, err = run(capsys, name, "-o", tmp_path / "out")
    assert code == 2
    assert f"did you mean {hint}?" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_missing_local_folder(capsys, tmp_path):
    code, _, err = run(capsys, "./no/such/model", "-o", tmp_path / "out")
    assert code == 2 and "no such folder" in err


def test_non_seq2seq_model_says_what_is_supported(capsys, tmp_path):
    from transformers import BertConfig

    bert = tmp_path / "bert"
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(bert)
    code, _, err = run(capsys, bert, "-o", tmp_path / "out")
    assert code == 2
    assert "'bert'" in err and "not an encoder-decoder" in err
    assert "Supported model types: t5, mt5, umt5, bart, mbart, marian, m2m_100, pegasus" in err
    assert "Traceback" not in err


def test_existing_output_is_not_touched(capsys, make_model, tmp_path):
    """Without --overwrite nothing existing is replaced; with it, only an earlier export (see test_safety.py)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    code, _, err = run(capsys, make_model(), "-o", out)
    assert code == 2 and "--overwrite" in err
    assert (out / "mine.txt").read_text() == "keep me"

    code, _, err = run(capsys, make_model(), "-o", out, "--overwrite")
    assert code == 2 and "mine.txt" in err
    assert (out / "mine.txt").read_text() == "keep me"
    assert leftovers(tmp_path) == []


def test_output_over_or_inside_source_is_refused(capsys, make_model, tmp_path):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(make_model(), src)
    for target in (src, tmp_path, src / "onnx-out"):
        code, _, err = run(capsys, src, "-o", target, "--overwrite")
        assert code == 2 and "source checkpoint" in err
    assert (src / "config.json").is_file()


def test_json_output(capsys, make_model, tmp_path):
    code, stdout, _ = run(capsys, make_model(), "-o", tmp_path / "out", "--json", "--task", "text2text-generation")
    assert code == 0
    result = json.loads(stdout)
    assert result["verification"]["passed"] is True
    assert result["task"] == "text2text-generation-with-past"
    assert any("Transformers.js" in n for n in result["notes"])
    assert result["files"]["onnx/decoder_model_merged.onnx"] > 0


def test_verification_failure_exits_1_and_writes_nothing(capsys, make_model, tmp_path, monkeypatch):
    import seq2seq_onnx.verify.ort as verify

    real = verify.onnx_greedy

    def off_by_one(*args, **kwargs):
        seq, logits = real(*args, **kwargs)
        seq[:, -1] = (seq[:, -1] + 1) % 7
        return seq, logits

    monkeypatch.setattr(verify, "onnx_greedy", off_by_one)
    code, stdout, err = run(capsys, make_model(), "-o", tmp_path / "out", "--json")
    assert code == 1
    assert "does not reproduce PyTorch" in err and "Traceback" not in err
    assert json.loads(stdout)["verification"]["passed"] is False
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path) == []


def test_interrupt_leaves_old_output_intact(capsys, make_model, converted, tmp_path, monkeypatch):
    import shutil

    import seq2seq_onnx.convert as conv

    out = tmp_path / "out"
    shutil.copytree(converted, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(conv, "write_configs", interrupted)
    code, _, err = run(capsys, make_model(), "-o", out, "--overwrite")
    assert code == 130 and "nothing was written" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert leftovers(tmp_path) == []


def test_no_past_writes_decoder_model_only(capsys, make_model, tmp_path):
    code, stdout, _ = run(capsys, make_model(), "-o", tmp_path / "out", "--no-past")
    assert code == 0
    assert (tmp_path / "out" / "onnx" / "decoder_model.onnx").is_file()
    assert not (tmp_path / "out" / "onnx" / "decoder_model_merged.onnx").exists()
    assert "repeat" in stdout  # the warning says why this is not for Transformers.js


def _python(*args, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_old_tutorial_command(make_model, tmp_path):
    src = make_model()
    proc = _python(
        "-m", "seq2seq_onnx.convert", "--model_id", str(src), "--task", "text2text-generation-with-past",
        "--quantize", "--output_parent_dir", str(tmp_path / "models"), cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "models" / src.name
    assert (out / "onnx" / "encoder_model.onnx").is_file()
    assert (out / "onnx" / "decoder_model_merged.onnx").is_file()
    assert "Verification: PASSED" in proc.stdout
    assert "RuntimeWarning" not in proc.stderr

    # default parent is ./models/, and writing over the source is refused
    proc = _python("-m", "seq2seq_onnx.convert", "--model_id", str(out), "--output_parent_dir", str(out.parent), cwd=tmp_path)
    assert proc.returncode == 2 and "source checkpoint" in proc.stderr


def test_console_help(tmp_path):
    proc = _python("-m", "seq2seq_onnx", "convert", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    assert "--overwrite" in proc.stdout and "decoder_model_merged.onnx" in proc.stdout


def test_hub_id_from_local_cache_offline(make_model, tmp_path):
    """The real hub-loading path, fed from a Hugging Face cache laid out on disk (no network here)."""
    import shutil

    snapshot = tmp_path / "hub" / "models--testorg--tiny-flan-t5" / "snapshots" / "0123abcd"
    shutil.copytree(make_model(), snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abcd")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    proc = subprocess.run(
        [sys.executable, "-m", "seq2seq_onnx.convert", "--model_id", "testorg/tiny-flan-t5"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "models" / "testorg" / "tiny-flan-t5"
    assert (out / "onnx" / "decoder_model_merged.onnx").is_file()
    assert json.loads((out / "seq2seq_onnx.json").read_text())["source"] == "testorg/tiny-flan-t5"


@pytest.mark.parametrize("opset", [14, 20])
def test_other_opsets_convert_and_verify(capsys, make_model, tmp_path, opset):
    import onnx

    code, stdout, _ = run(capsys, make_model(), "-o", tmp_path / "out", "--opset", opset, "--json")
    assert code == 0 and json.loads(stdout)["verification"]["passed"]
    model = onnx.load(str(tmp_path / "out" / "onnx" / "decoder_model_merged.onnx"))
    assert {o.domain: o.version for o in model.opset_import}[""] == opset


def test_unsupported_opset_is_refused_before_work(capsys, make_model, tmp_path):
    code, _, err = run(capsys, make_model(), "-o", tmp_path / "out", "--opset", 7)
    assert code == 2 and "opset 7 is not supported; use 12 to 20" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_encoder_only_checkpoint_is_refused(capsys, tmp_path):
    """A T5EncoderModel checkpoint has a T5 config but no decoder weights: never export a random decoder."""
    from transformers import T5Config, T5EncoderModel

    folder = tmp_path / "encoder-only"
    T5EncoderModel(T5Config(vocab_size=64, d_model=16, d_ff=32, d_kv=4, num_heads=2, num_layers=1)).save_pretrained(folder)
    code, _, err = run(capsys, folder, "-o", tmp_path / "out", "--skip-validation")
    assert code == 2 and "encoder-only" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_folder_without_weights(capsys, make_model, tmp_path):
    import shutil

    folder = tmp_path / "config-only"
    folder.mkdir()
    for name in ("config.json", "spiece.model", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(make_model() / name, folder)
    code, _, err = run(capsys, folder, "-o", tmp_path / "out")
    assert code == 2 and "cannot load the weights" in err and "Traceback" not in err


def test_unexpected_failure_is_one_line_and_leaves_nothing(capsys, make_model, tmp_path, monkeypatch):
    import seq2seq_onnx.convert as conv

    def broken(*args, **kwargs):
        raise RuntimeError("something nobody foresaw\nwith a long second line")

    monkeypatch.setattr(conv, "write_configs", broken)
    monkeypatch.delenv("SEQ2SEQ_ONNX_DEBUG", raising=False)
    code, _, err = run(capsys, make_model(), "-o", tmp_path / "models" / "org" / "name")
    assert code == 1
    assert "conversion failed unexpectedly (RuntimeError: something nobody foresaw)" in err
    assert "SEQ2SEQ_ONNX_DEBUG=1" in err and "Traceback" not in err
    assert not (tmp_path / "models").exists()  # no empty models/org/ left behind


def test_no_past_with_past_task_is_contradictory(capsys, make_model, tmp_path):
    code, _, err = run(capsys, make_model(), "-o", tmp_path / "out", "--no-past", "--task", "text2text-generation-with-past")
    assert code == 2 and "contradicts" in err


@pytest.mark.parametrize("command", ["generate", "eval"])
@pytest.mark.parametrize("value,message", [("-2", "must be at least 1, got -2"), ("0", "must be at least 1, got 0"),
                                           ("many", "expected a whole number >= 1, got 'many'")])
def test_threads_must_be_positive(capsys, tmp_path, command, value, message):
    extra = ["x"] if command == "generate" else ["--data", str(tmp_path / "data.jsonl")]
    with pytest.raises(SystemExit) as exit_:
        main([command, str(tmp_path), *extra, "--threads", value])
    assert exit_.value.code == 2
    assert f"argument --threads: {message}" in capsys.readouterr().err


@pytest.mark.parametrize("value,message", [("99999", "must be 0-65535 (0 picks a free port), got 99999"),
                                           ("65536", "got 65536"), ("-1", "got -1"),
                                           ("http", "expected a port number 0-65535, got 'http'")])
def test_serve_port_out_of_range_is_a_usage_error(capsys, tmp_path, value, message):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", str(tmp_path), "--port", value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --port: " in err and message in err


def test_serve_port_range_bounds():
    from seq2seq_onnx.cli import build_parser

    for port in (0, 1, 8000, 65535):
        assert build_parser().parse_args(["serve", "folder", "--port", str(port)]).port == port
    assert build_parser().parse_args(["generate", "folder", "x", "--threads", "3"]).threads == 3


def test_generate_length_flags(converted, tmp_path, capsys):
    """--max-length / --min-length: transformers' meaning; an explicit flag beats generation_config.json's
    max_new_tokens (min_new_tokens), and --max-new-tokens (--min-new-tokens) beats it."""
    import shutil
    import warnings

    from seq2seq_onnx import Seq2SeqOnnxModel

    folder = tmp_path / "model"
    shutil.copytree(converted, folder)
    gen = json.loads((folder / "generation_config.json").read_text())
    gen.update(max_new_tokens=4, min_new_tokens=0)
    (folder / "generation_config.json").write_text(json.dumps(gen))
    model = Seq2SeqOnnxModel.from_pretrained(folder)
    prompt = "translate English to German: The house is wonderful."

    def generate(*flags):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "takes precedence" warning: the flags say what they mean
            assert main(["generate", str(folder), prompt, "--json", *flags]) == 0
        return json.loads(capsys.readouterr().out)["output"]

    ids, mask = model.tokenize([prompt])
    assert model.generate(ids, mask, max_length=12, max_new_tokens=None).shape == (1, 12)
    assert generate("--max-length", "12") == model.generate_text(prompt, max_length=12, max_new_tokens=None)
    assert generate("--max-length", "12") != generate()
    assert main(["generate", str(folder), prompt, "--json", "--max-length", "12", "--max-new-tokens", "3"]) == 0
    out, err = capsys.readouterr()
    assert "warning: max_new_tokens=3 (from this call) takes precedence over max_length=12" in err  # one plain line
    assert json.loads(out)["output"] == model.generate_text(prompt, max_new_tokens=3)
    hello = model.generate_text("Hello", max_length=9, min_length=7, max_new_tokens=None, min_new_tokens=None)
    assert main(["generate", str(folder), "Hello", "--json", "--max-length", "9", "--min-length", "7"]) == 0
    assert json.loads(capsys.readouterr().out)["output"] == hello != model.generate_text("Hello")

    assert main(["generate", str(folder), prompt, "--max-length", "1"]) == 2
    assert "max_length must be >= 2" in capsys.readouterr().err


def _legacy(monkeypatch, tmp_path, *flags):
    """legacy_main with the conversion replaced by a recorder: returns (exit code, convert kwargs, quantize calls)."""
    import seq2seq_onnx.cli as cli

    converted, quantized = [], []
    monkeypatch.setattr(cli, "_run_convert", lambda source, output, **kw: converted.append(kw) or 0)
    monkeypatch.setattr(cli, "_legacy_quantize", lambda folder, modes, settings, **kw: quantized.append((modes, settings)) or 0)
    code = cli.legacy_main(["--model_id", "org/model", "--output_parent_dir", str(tmp_path), "--skip_validation", *flags])
    return code, (converted[0] if converted else None), quantized


BARE = ["--per_channel", "--reduce_range", "--skip_onnxslim", "--split_modalities", "--output_attentions"]


@pytest.mark.parametrize("flags", [
    BARE,
    BARE[::-1],
    ["--per_channel", "true", "--reduce_range", "True", "--skip_onnxslim", "1", "--split_modalities", "yes",
     "--output_attentions", "t"],
    ["--split_modalities", "false", "--output_attentions", "no", "--skip_onnxslim", "f", "--is_symmetric"],
])
def test_legacy_boolean_flags_bare_or_with_a_value(monkeypatch, capsys, tmp_path, flags):
    code, convert_kwargs, quantized = _legacy(monkeypatch, tmp_path, *flags)
    err = capsys.readouterr().err
    assert code == 0 and "expected one argument" not in err
    assert convert_kwargs["validate"] is False and convert_kwargs["quantize"] == () and quantized == []
    # the values seq2seq-onnx uses anyway pass quietly; the others are noted as ignored
    asks_true = "--split_modalities" in flags and flags[flags.index("--split_modalities") + 1:][:1] != ["false"]
    assert ("note: --split_modalities true ignored" in err) == asks_true
    assert ("note: --output_attentions true ignored" in err) == asks_true
    assert ("note: --skip_onnxslim false ignored: seq2seq-onnx does not run onnxslim" in err) == ("f" in flags)
    assert "per_channel" not in err and "reduce_range" not in err and "is_symmetric" not in err


def test_legacy_flag_value_must_be_a_boolean(monkeypatch, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        _legacy(monkeypatch, tmp_path, "--per_channel", "maybe")
    assert exit_.value.code == 2 and "expected true or false, got 'maybe'" in capsys.readouterr().err


def test_legacy_quantizer_settings_are_honoured(monkeypatch, capsys, tmp_path):
    from seq2seq_onnx.quantize import MODES, QuantizeSettings

    # the defaults (the old script's for T5): convert quantizes, with its own settings
    code, kwargs, quantized = _legacy(monkeypatch, tmp_path, "--quantize", "--per_channel", "--reduce_range", "true")
    assert code == 0 and kwargs["quantize"] == MODES and quantized == []
    # other values: convert writes fp32, then the quantizer runs with those settings
    code, kwargs, quantized = _legacy(monkeypatch, tmp_path, "--quantize", "--modes", "q8", "q4", "--per_channel", "false",
                                      "--no_reduce_range", "--is_symmetric", "f")
    assert code == 0 and kwargs["quantize"] == ()
    assert quantized == [(("q8", "q4"), QuantizeSettings(per_channel=False, reduce_range=False, is_symmetric=False))]
    # without --quantize they change nothing, as in the old script
    code, kwargs, quantized = _legacy(monkeypatch, tmp_path, "--per_channel", "false")
    assert code == 0 and kwargs["quantize"] == () and quantized == []
    # a bad mode is refused before the conversion
    code, kwargs, quantized = _legacy(monkeypatch, tmp_path, "--quantize", "--modes", "q7", "--reduce_range", "false")
    assert code == 2 and kwargs is None and "unknown quantization mode(s) q7" in capsys.readouterr().err


def test_legacy_per_channel_false_quantizes_per_tensor(make_model, converted, tmp_path, capsys):
    """For real, on the tiny fixture: --per_channel false gives one scale per weight, the default one per column."""
    import onnx

    from seq2seq_onnx.cli import legacy_main
    from seq2seq_onnx.quantize import QuantizeSettings, quantize_graph

    def weight_scales(model):
        return {tuple(t.dims) for t in model.graph.initializer if t.name.endswith("_scale")}

    src = make_model()
    code = legacy_main(["--model_id", str(src), "--quantize", "--modes", "q8", "--per_channel", "false", "--skip_validation",
                        "--output_parent_dir", str(tmp_path / "models")])
    out = capsys.readouterr().out
    assert code == 0 and "q8     written" in out
    onnx_dir = tmp_path / "models" / src.name / "onnx"
    assert weight_scales(onnx.load(str(onnx_dir / "encoder_model_quantized.onnx"))) == {()}
    default = quantize_graph(onnx.load(str(converted / "onnx" / "encoder_model.onnx")), "q8", QuantizeSettings())
    assert any(len(dims) == 1 for dims in weight_scales(default))
    assert json.loads((tmp_path / "models" / src.name / "quantize_config.json").read_text())


def test_serve_without_node_says_what_it_needs(converted, capsys, monkeypatch):
    import seq2seq_onnx.verify.transformersjs as tjs

    monkeypatch.setattr(tjs.shutil, "which", lambda name: None)
    assert main(["serve", str(converted)]) == 2
    err = capsys.readouterr().err
    assert "serve needs Transformers.js's browser files" in err and "Node.js 20+ and npm are needed" in err
    assert "verify" not in err


def test_skip_transformersjs_says_it_was_skipped(capsys, make_model, tmp_path, monkeypatch):
    import seq2seq_onnx.verify as verify

    monkeypatch.setattr(verify, "transformersjs_available", lambda: True)  # as if Node and its packages were there
    code, stdout, _ = run(capsys, make_model(), "-o", tmp_path / "out", "--skip-transformersjs")
    assert code == 0
    assert "not checked in Transformers.js (--skip-transformersjs)" in stdout and "not installed" not in stdout
