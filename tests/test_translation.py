"""Translation options: src_lang / tgt_lang by each family's rule, equal to transformers' recipes and to Transformers.js."""

import json
import os
import shutil

import numpy as np
import pytest

from seq2seq_onnx import Seq2SeqOnnxModel, pipeline
from seq2seq_onnx.cli import main
from seq2seq_onnx.runtime.translation import UnknownLanguageError

# case -> (source language, target language, the target token, how the family applies the target)
PAIRS = {
    "mbart50": ("fr_XX", "de_DE", "de_DE", "forced_bos_token_id"),
    "m2m100": ("fr", "de", "__de__", "forced_bos_token_id"),
    "nllb": ("fra_Latn", "deu_Latn", "deu_Latn", "forced_bos_token_id"),
    "mbart": ("fr_XX", "ro_RO", "ro_RO", "decoder_start_token_id"),  # cc25 / en-ro: the decoder starts from it
}
TEXT = "the house is wonderful and we went to the market"


def _pytorch_generate(src, ids, mask, **options):
    import torch
    from transformers import AutoModelForSeq2SeqLM, GenerationConfig
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    model = AutoModelForSeq2SeqLM.from_pretrained(src, attn_implementation="eager").eval()
    config = GenerationConfig.from_pretrained(src)
    config.update(max_new_tokens=12, **options)
    model.generation_config = config
    with torch.no_grad():
        return model.generate(input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask),
                              generation_config=config, cache=EncoderDecoderCache(DynamicCache(), DynamicCache())).numpy()


@pytest.mark.parametrize("case", list(PAIRS))
def test_languages_give_transformers_ids(family_export, case):
    src, out, _ = family_export(case)
    src_lang, tgt_lang, tgt_token, rule = PAIRS[case]
    model = Seq2SeqOnnxModel.from_pretrained(out)
    default_ids, _ = model.tokenize([TEXT])
    ids, mask = model.tokenize([TEXT], src_lang=src_lang)
    src_token = src_lang if case != "m2m100" else f"__{src_lang}__"
    assert model.tokenizer.token_to_id(src_token) in ids[0] and not np.array_equal(ids, default_ids)
    target_id = model.tokenizer.token_to_id(tgt_token)
    for options in ({}, {"num_beams": 3}):
        expected = _pytorch_generate(src, ids, mask, **{rule: target_id}, **options)
        got = model.generate(ids, mask, max_new_tokens=12, **{rule: target_id}, **options)
        np.testing.assert_array_equal(got, expected)
        assert got[0, 1 if rule == "forced_bos_token_id" else 0] == target_id
    greedy = _pytorch_generate(src, ids, mask, **{rule: target_id})
    assert model.generate_text(TEXT, src_lang=src_lang, tgt_lang=tgt_lang, max_new_tokens=12) == model.decode(greedy)[0]
    assert pipeline("translation", model)(TEXT, src_lang=src_lang, tgt_lang=tgt_lang, max_new_tokens=12) == [
        {"translation_text": model.decode(greedy)[0]}]
    assert "".join(model.stream(TEXT, src_lang=src_lang, tgt_lang=tgt_lang, max_new_tokens=12)) == model.decode(greedy)[0]


def test_marian_target_tags(family_export):
    from transformers import AutoTokenizer

    src, out, _ = family_export("marian-multi")
    model = Seq2SeqOnnxModel.from_pretrained(out)
    assert ">>fra<<" in model.languages.codes
    ids, _ = model.tokenize([TEXT], tgt_lang="fra")
    assert ids[0].tolist() == AutoTokenizer.from_pretrained(src)(">>fra<< " + TEXT).input_ids  # MarianTokenizer's
    with pytest.raises(UnknownLanguageError, match="Marian models take the source language"):
        model.tokenize([TEXT], src_lang="en")
    single = Seq2SeqOnnxModel.from_pretrained(family_export("marian")[1])
    with pytest.raises(UnknownLanguageError, match="has no language codes"):
        single.generate_text(TEXT, tgt_lang="fra")


def test_unknown_language_lists_close_codes(family_export, capsys):
    _, out, _ = family_export("mbart50")
    model = Seq2SeqOnnxModel.from_pretrained(out)
    with pytest.raises(UnknownLanguageError, match=r"unknown tgt_lang 'fr_FR' for this model; did you mean .*fr_XX"):
        model.generate_text(TEXT, tgt_lang="fr_FR")
    m2m = Seq2SeqOnnxModel.from_pretrained(family_export("m2m100")[1])
    with pytest.raises(UnknownLanguageError, match=r"did you mean .*\bfr\b"):
        m2m.generate_text(TEXT, src_lang="fre")
    assert main(["generate", str(out), TEXT, "--tgt-lang", "fr_FR"]) == 2
    assert "unknown tgt_lang 'fr_FR'" in capsys.readouterr().err


def test_generate_command_translates(family_export, capsys):
    _, out, _ = family_export("nllb")
    model = Seq2SeqOnnxModel.from_pretrained(out)
    expected = model.generate_text(TEXT, src_lang="fra_Latn", tgt_lang="deu_Latn", max_new_tokens=8)
    assert main(["generate", str(out), TEXT, "--src-lang", "fra_Latn", "--tgt-lang", "deu_Latn",
                 "--max-new-tokens", "8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["output"] == expected


@pytest.mark.parametrize("case", ["mbart50", "m2m100", "nllb"])
def test_transformersjs_builds_the_same_translation_inputs(family_export, case):
    """Transformers.js's translation pipeline (`_build_translation_inputs`) gives our input ids and forced first token."""
    if shutil.which("node") is None:
        if os.environ.get("CI"):
            pytest.fail("Node.js is required in CI", pytrace=False)
        pytest.skip("Node.js not installed")
    from seq2seq_onnx.verify import transformersjs

    _, out, _ = family_export(case)
    src_lang, tgt_lang, tgt_token, _ = PAIRS[case]
    model = Seq2SeqOnnxModel.from_pretrained(out)
    # (Transformers.js names M2M100's codes without underscores, as we accept them)
    run = transformersjs.tokenizer_run(out, translations=[{"text": TEXT, "src_lang": src_lang, "tgt_lang": tgt_lang}])
    (row,) = run["translations"]
    ids, _ = model.tokenize([TEXT], src_lang=src_lang)
    assert row["input_ids"] == ids[0].tolist()
    assert row["forced_bos_token_id"] == model.languages.apply(None, tgt_lang).options["forced_bos_token_id"]
