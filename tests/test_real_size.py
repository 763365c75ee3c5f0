"""A flan-t5-small-shaped model (d_model 512, 8+8 layers, 6 heads of 64, vocab 32128): parity at real size."""

import pytest

from seq2seq_onnx.convert import convert
from seq2seq_onnx.testing import FLAN_T5_SMALL, build_model


@pytest.mark.slow
def test_flan_t5_small_shape(tmp_path):
    from transformers import AutoModelForSeq2SeqLM

    src = build_model(tmp_path / "flan-t5-small-random", "flan-t5", **FLAN_T5_SMALL)
    result = convert(str(src), tmp_path / "out", progress=False)
    assert result.verification.passed, result.verification.summary()

    model = AutoModelForSeq2SeqLM.from_pretrained(src)
    decoder_bytes = 4 * sum(
        p.numel() for n, p in model.named_parameters() if n.startswith(("decoder.", "lm_head.", "shared."))
    )
    merged = result.files["onnx/decoder_model_merged.onnx"]
    # one copy of the decoder weights (232 MB here), not two
    assert decoder_bytes * 0.9 < merged < decoder_bytes * 1.05
    assert result.files["onnx/encoder_model.onnx"] < 0.7 * merged
