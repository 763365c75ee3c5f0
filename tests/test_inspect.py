"""inspect: any folder, no weights loaded, a verdict a person can act on, untrusted input handled."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper

from seq2seq_onnx.cli import main
from seq2seq_onnx.convert import convert


def run(capsys, *args):
    code = main(["inspect", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_healthy_export(converted, capsys):
    code, out, _ = run(capsys, converted, "--json")
    report = json.loads(out)
    assert code == 0 and report["exit_code"] == 0
    assert report["transformersjs_dtypes"] == ["fp32"]
    merged = report["graphs"]["decoder_model_merged.onnx"]
    assert "use_cache_branch" in merged["inputs"] and merged["opset"] == 17
    assert report["verdict"].startswith("healthy")


def test_the_repeated_token_bug_is_named(make_model, tmp_path, capsys):
    folder = tmp_path / "bug"
    convert(str(make_model()), folder, no_past=True, progress=False)
    code, out, _ = run(capsys, folder)
    assert code == 1 and "ModelFileNotFoundError" in out  # as exported, Transformers.js refuses it
    shutil.copy(folder / "onnx" / "decoder_model.onnx", folder / "onnx" / "decoder_model_merged.onnx")
    code, out, _ = run(capsys, folder)
    assert code == 1
    assert "decoder_model_merged.onnx has no past_key_values inputs" in out
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
    import seq2seq_onnx.transformersjs as tjs

    monkeypatch.setattr(tjs.shutil, "which", lambda name: None)
    assert main(["verify", str(converted), "--json"]) == 0  # Python ONNX Runtime still checks
    result = json.loads(capsys.readouterr().out)
    assert [c["runtime"] for c in result["checks"]] == ["python"] and result["passed"]
    assert any("Node.js 20+ and npm are needed" in n for n in result["notes"])

    assert main(["verify", str(converted), "--runtime", "transformers.js"]) == 2
    assert "Node.js 20+ and npm are needed" in capsys.readouterr().err
