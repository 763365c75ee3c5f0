"""One real-size random model per family (the smallest real checkpoint's shape): parity at real size.

Shapes are the checkpoints' own (`testing.REAL_SIZES`): flan-t5-small, bart-base, opus-mt-en-de,
m2m100_418M, mbart-large-50 (its 250k vocabulary puts the files near 2 GB) and pegasus-xsum.
Each is converted once, with the built-in verification (ONNX Runtime fed like Transformers.js, and
Transformers.js under Node when installed) that must PASS.
"""

import json

import pytest

from seq2seq_onnx.convert import convert
from seq2seq_onnx.testing import REAL_SIZES, build_model


# Over 1 GB of weights: about 6 minutes each on 2 cores (mbart-large-50: export 190 s, merge 60 s, ONNX Runtime
# check 77 s, Node check 53 s), so not in the default run; `pytest -m xl` runs them.
XL = {"M2M100/NLLB", "mBART", "Pegasus"}


@pytest.mark.slow
@pytest.mark.parametrize("family", [pytest.param(f, marks=pytest.mark.xl) if f in XL else f for f in REAL_SIZES])
def test_real_size_model_of_each_family(tmp_path, family):
    from transformers import AutoConfig

    variant, shape, imitated = REAL_SIZES[family]
    src = build_model(tmp_path / "src", variant, **shape)
    config = AutoConfig.from_pretrained(src)
    assert config.vocab_size == shape["vocab_size"] and config.d_model == shape["d_model"], imitated

    result = convert(str(src), tmp_path / "out", progress=False)
    assert result.verification.passed, result.verification.summary()
    assert "INCONCLUSIVE" not in result.verification.summary()

    # one copy of the decoder weights in the merged decoder, not two (the two exported decoders share them);
    # named_parameters() lists a tied weight once
    from transformers import AutoModelForSeq2SeqLM

    model = AutoModelForSeq2SeqLM.from_pretrained(src)
    decoder_bytes = 4 * sum(p.numel() for n, p in model.named_parameters()
                            if not n.removeprefix("model.").startswith("encoder."))
    del model
    merged = sum(size for name, size in result.files.items() if name.startswith("onnx/decoder_model_merged.onnx"))
    assert decoder_bytes * 0.9 < merged < decoder_bytes * 1.1, (decoder_bytes, merged)
    if merged > 2 * 1024**3 - 1:
        written = json.loads((tmp_path / "out" / "config.json").read_text())
        assert written["transformers.js_config"]["use_external_data_format"]
