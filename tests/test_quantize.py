"""Quantized variants: Transformers.js file names, really quantized merged decoders, each variant runs, fp16 safe."""

import json
import shutil

import numpy as np
import onnx
import pytest

from seq2seq_onnx import Seq2SeqOnnxModel
from seq2seq_onnx.convert import convert
from seq2seq_onnx.quantize import MODES, quantize_folder

# One case per family (the T5 family's quantization has its own tests above).
FAMILY_QUANTIZE_CASES = ["bart", "pegasus", "mbart50", "m2m100", "nllb", "marian"]

SUFFIXES = {"q8": "_quantized", "int8": "_int8", "uint8": "_uint8", "q4": "_q4", "q4f16": "_q4f16", "bnb4": "_bnb4", "fp16": "_fp16"}
# op types that prove the weights of a dtype are quantized (inside the If branches for the decoder)
QUANT_OPS = {"q8": "MatMulInteger", "int8": "MatMulInteger", "uint8": "MatMulInteger", "q4": "MatMulNBits",
             "q4f16": "MatMulNBits", "bnb4": "MatMulBnb4"}


@pytest.fixture(scope="module")
def quantized(make_model, tmp_path_factory):
    """A model whose weights dominate its files (so sizes mean something), converted and quantized to every dtype."""
    src = make_model("flan-t5", d_model=64, d_ff=256, d_kv=16, vocab_size=1000)
    out = tmp_path_factory.mktemp("quantized") / "model"
    result = convert(str(src), out, progress=False, quantize=MODES)
    return out, result


def test_every_dtype_written_with_transformersjs_names(quantized):
    out, result = quantized
    assert [v.dtype for v in result.quantization] == list(MODES)
    assert all(v.kept for v in result.quantization), [(v.dtype, v.reason) for v in result.quantization]
    for mode, suffix in SUFFIXES.items():
        for graph in ("encoder_model", "decoder_model_merged"):
            assert (out / "onnx" / f"{graph}{suffix}.onnx").is_file(), (mode, graph)
    config = json.loads((out / "quantize_config.json").read_text())
    assert config["modes"] == list(MODES)


@pytest.mark.parametrize("mode", list(QUANT_OPS))
def test_merged_decoder_weights_really_quantized(quantized, mode):
    out, _ = quantized
    fp32 = (out / "onnx" / "decoder_model_merged.onnx").stat().st_size
    path = out / "onnx" / f"decoder_model_merged{SUFFIXES[mode]}.onnx"
    model = onnx.load(str(path))
    (if_node,) = [n for n in model.graph.node if n.op_type == "If"]  # still one merged graph
    branch_ops = [{n.op_type for n in a.g.node} for a in if_node.attribute]
    assert all(QUANT_OPS[mode] in ops for ops in branch_ops), f"{mode}: the If branches were left in float"
    weights = {t.name for t in model.graph.initializer}
    float_matmuls = [n.name for a in if_node.attribute for n in a.g.node if n.op_type == "MatMul" and n.input[1] in weights]
    assert float_matmuls == [], f"{mode}: MatMuls with float weights left: {float_matmuls[:3]}"
    limit = 0.6  # the embedding (Gather) and the graph structure stay; the MatMul weights shrink 4-8x
    assert path.stat().st_size < limit * fp32


def test_fp16_halves_the_weights(quantized):
    from seq2seq_onnx.export.onnx_io import initializer_bytes

    out, _ = quantized
    fp32 = initializer_bytes(onnx.load(str(out / "onnx" / "decoder_model_merged.onnx")))
    model = onnx.load(str(out / "onnx" / "decoder_model_merged_fp16.onnx"))
    # half, but for T5's feed-forward output weights (wo), kept in fp32 against overflow
    assert initializer_bytes(model) < 0.6 * fp32
    assert [i.type.tensor_type.elem_type for i in model.graph.input if i.name.startswith("past_key_values")][0] == onnx.TensorProto.FLOAT
    assert {o.type.tensor_type.elem_type for o in model.graph.output} == {onnx.TensorProto.FLOAT}  # fp32 in and out


@pytest.mark.parametrize("mode", MODES)
def test_each_variant_runs(quantized, mode):
    out, _ = quantized
    model = Seq2SeqOnnxModel.from_pretrained(out, dtype=mode)
    ids, mask = model.tokenize(["translate English to German: The house is wonderful.", "Hello"])
    tokens = model.generate(ids, mask, max_new_tokens=8, num_beams=2)
    assert tokens.shape[0] == 2 and tokens.shape[1] > 1


def test_fp16_keeps_t5_overflow_in_fp32(make_model, tmp_path):
    """Feed-forward outputs far past 65504, as in flan-t5: the fp16 file must still give fp32's tokens."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    src = tmp_path / "big-activations"
    shutil.copytree(make_model("flan-t5", d_model=64, d_ff=256, d_kv=16, vocab_size=1000), src)
    model = AutoModelForSeq2SeqLM.from_pretrained(src).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "DenseReluDense.wo" in name:
                param.mul_(3e4)  # the RMS norms after each residual keep the fp32 model working
    model.save_pretrained(src)
    peak = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: peak.__setitem__(n, o.abs().max().item()))
             for n, m in model.named_modules() if n.endswith("DenseReluDense.wo")]
    out = tmp_path / "out"
    convert(str(src), out, progress=False)
    ids, mask = Seq2SeqOnnxModel.from_pretrained(out).tokenize(["translate English to German: The house is wonderful.", "Hi"])
    with torch.no_grad():
        model(input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask), decoder_input_ids=torch.zeros((2, 1), dtype=torch.long))
    for h in hooks:
        h.remove()
    assert max(peak.values()) > 65504  # the activations really leave the fp16 range

    (report,) = quantize_folder(out, ["fp16"])
    assert report.kept, report.reason
    fp32 = Seq2SeqOnnxModel.from_pretrained(out).generate(ids, mask, max_new_tokens=12)
    fp16 = Seq2SeqOnnxModel.from_pretrained(out, dtype="fp16").generate(ids, mask, max_new_tokens=12)
    np.testing.assert_array_equal(fp16, fp32)

    # the weights are stored in half precision
    model16 = onnx.load(str(out / "onnx" / "decoder_model_merged_fp16.onnx"))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model16.graph.initializer)


def test_failing_variant_is_dropped_with_reason(converted, tmp_path, monkeypatch):
    import seq2seq_onnx.quantize as q

    folder = tmp_path / "model"
    shutil.copytree(converted, folder)
    real = q.quantize_graph

    def broken_q4(model, mode, settings):
        if mode == "q4":
            raise RuntimeError("kernel not available")
        return real(model, mode, settings)

    monkeypatch.setattr(q, "quantize_graph", broken_q4)
    reports = quantize_folder(folder, ["q8", "q4"])
    assert [r.kept for r in reports] == [True, False]
    assert "kernel not available" in reports[1].reason
    assert not list((folder / "onnx").glob("*_q4.onnx*"))
    assert (folder / "onnx" / "decoder_model_merged_quantized.onnx").is_file()
    assert not [p for p in folder.iterdir() if p.name.startswith(".quantize-")]


def test_quantize_command_and_legacy_flag(converted, make_model, tmp_path, capsys):
    import subprocess
    import sys

    from seq2seq_onnx.cli import main

    folder = tmp_path / "model"
    shutil.copytree(converted, folder)
    assert main(["quantize", str(folder), "--modes", "q8", "bnb4", "--json"]) == 0
    reports = json.loads(capsys.readouterr().out)
    assert [r["dtype"] for r in reports] == ["q8", "bnb4"] and all(r["kept"] for r in reports)

    assert main(["quantize", str(tmp_path / "nothing")]) == 2
    assert "quantize needs the fp32 export" in capsys.readouterr().err

    proc = subprocess.run(
        [sys.executable, "-m", "seq2seq_onnx.convert", "--model_id", str(make_model()), "--quantize",
         "--modes", "q8", "q4", "--output_parent_dir", str(tmp_path / "models")],
        capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    onnx_dir = tmp_path / "models" / make_model().name / "onnx"
    assert sorted(p.name for p in onnx_dir.glob("encoder_model*.onnx")) == [
        "encoder_model.onnx", "encoder_model_q4.onnx", "encoder_model_quantized.onnx"]


@pytest.mark.parametrize("case", FAMILY_QUANTIZE_CASES)
def test_every_dtype_of_every_family_runs(family_quantized, case):
    """Each dtype is loaded and run in ONNX Runtime (and in Transformers.js under Node where it knows the family)
    before it is kept; every one must be kept, tied embeddings (BART-like q8 of a shared Gather) included."""
    folder, reports = family_quantized(case)
    assert {r.dtype: r.reason for r in reports if not r.kept} == {}
    for dtype in MODES:
        model = Seq2SeqOnnxModel.from_pretrained(folder, dtype=dtype)
        assert model.generate_text(["Hello there"], max_new_tokens=4)
