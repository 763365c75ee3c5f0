"""Models over the protobuf limit: weights in one `<file>.onnx_data` per graph, announced to Transformers.js."""

import json

import onnx

from seq2seq_onnx.export import onnx_io
from seq2seq_onnx.convert import convert


def test_external_data_layout(make_model, tmp_path, monkeypatch):
    # A tiny model stands in for a >2 GB one: lower the threshold instead of building 2 GB of weights.
    monkeypatch.setattr(onnx_io, "EXTERNAL_DATA_THRESHOLD", 1000)
    out = tmp_path / "out"
    result = convert(str(make_model()), out, progress=False)
    assert result.verification.passed  # ONNX Runtime loaded the external weights

    onnx_dir = out / "onnx"
    for name in ("encoder_model.onnx", "decoder_model_merged.onnx"):
        graph = onnx.load(str(onnx_dir / name), load_external_data=False).graph
        locations = {
            entry.value for t in graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
            for entry in t.external_data if entry.key == "location"
        }
        assert locations == {name + "_data"}  # every large weight in the one file beside the graph
    assert sorted(p.name for p in onnx_dir.iterdir()) == [
        "decoder_model_merged.onnx", "decoder_model_merged.onnx_data", "encoder_model.onnx", "encoder_model.onnx_data",
    ]
    config = json.loads((out / "config.json").read_text())
    assert config["transformers.js_config"]["use_external_data_format"] == {
        "encoder_model.onnx": True, "decoder_model_merged.onnx": True,
    }


def test_small_model_has_no_external_data(converted):
    assert not list((converted / "onnx").glob("*.onnx_data"))
    assert "transformers.js_config" not in json.loads((converted / "config.json").read_text())
