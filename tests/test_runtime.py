"""Seq2SeqOnnxModel: greedy generation on ONNX Runtime equals PyTorch, for every decoder layout."""

import shutil
import warnings

import numpy as np
import pytest

from seq2seq_onnx.runtime import ModelFolderError, Seq2SeqOnnxModel

PROMPTS = ["translate English to German: The house is wonderful.", "Hello", "summarize: one two three four five six"]


def _reference(src, ids, mask, max_new_tokens=20):
    import torch
    from transformers import AutoModelForSeq2SeqLM
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    model = AutoModelForSeq2SeqLM.from_pretrained(src, attn_implementation="eager").eval()
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask), max_new_tokens=max_new_tokens,
            do_sample=False, num_beams=1, cache=EncoderDecoderCache(DynamicCache(), DynamicCache()),
        )
    return out.numpy()


def _split_layout(converted, make_model, tmp_path):
    """An Optimum-style folder: decoder_model.onnx + decoder_with_past_model.onnx, no merged file."""
    from transformers import AutoModelForSeq2SeqLM

    from seq2seq_onnx.export import export_decoder
    from seq2seq_onnx.families import T5

    folder = tmp_path / "split"
    shutil.copytree(converted, folder)
    (folder / "onnx" / "decoder_model_merged.onnx").unlink()
    model = AutoModelForSeq2SeqLM.from_pretrained(make_model("flan-t5"), attn_implementation="eager").eval()
    layout = T5.cache_layout(model.config)
    export_decoder(model, layout, folder / "onnx" / "decoder_model.onnx", with_past=False)
    export_decoder(model, layout, folder / "onnx" / "decoder_with_past_model.onnx", with_past=True)
    return folder


def _no_cache_layout(converted, make_model, tmp_path):
    from seq2seq_onnx.convert import convert

    folder = tmp_path / "no-cache"
    convert(str(make_model("flan-t5")), folder, no_past=True, progress=False)
    return folder


@pytest.mark.parametrize("layout", ["merged", "split", "no-cache"])
def test_greedy_matches_pytorch(converted, make_model, tmp_path, layout):
    folder = {"merged": lambda *a: converted, "split": _split_layout, "no-cache": _no_cache_layout}[layout](
        converted, make_model, tmp_path
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = Seq2SeqOnnxModel.from_pretrained(folder)
    assert model.decoder.layout == layout
    assert any("without key/value cache" in str(w.message) for w in caught) == (layout == "no-cache")

    ids, mask = model.tokenize(PROMPTS)
    assert mask[:, -1].tolist().count(0) >= 1  # really padded
    expected = _reference(make_model("flan-t5"), ids, mask)
    np.testing.assert_array_equal(model.generate(ids, mask, max_new_tokens=20), expected)
    # one by one, unpadded, gives the same rows (up to the row's own end)
    for i, prompt in enumerate(PROMPTS):
        single = model.generate(*model.tokenize([prompt]), max_new_tokens=20)[0]
        np.testing.assert_array_equal(single, expected[i][: len(single)])


def test_generate_text_and_defaults(converted):
    model = Seq2SeqOnnxModel.from_pretrained(converted)
    assert model.generation_options.new_tokens == 20  # no length in generation_config: transformers makes 20
    texts = model.generate_text(PROMPTS)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    assert model.generate_text(PROMPTS[0]) == texts[0]


def test_missing_dtype_says_what_is_there(converted):
    with pytest.raises(ModelFolderError, match="dtypes present: fp32"):
        Seq2SeqOnnxModel.from_pretrained(converted, dtype="q4")
    with pytest.raises(ValueError, match="unknown dtype"):
        Seq2SeqOnnxModel.from_pretrained(converted, dtype="int3")
