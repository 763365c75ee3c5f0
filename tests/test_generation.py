"""Generation options on ONNX Runtime give transformers' ids (greedy, beam search) across the option matrix."""

import shutil
import threading

import numpy as np
import pytest

from seq2seq_onnx import Seq2SeqOnnxModel, pipeline
from seq2seq_onnx.runtime.options import InvalidGenerationOptions

from cases import FAMILY_CASES

PROMPTS = ["translate English to German: The house is wonderful.", "Hello", "summarize: one two three four five six"]

MATRIX = {
    "greedy": {},
    "greedy, max 7 tokens": {"max_new_tokens": 7},
    "greedy, repetition penalty": {"repetition_penalty": 1.3},
    "greedy, no repeat 2-grams": {"no_repeat_ngram_size": 2},
    "greedy, min new tokens": {"min_new_tokens": 12},
    "greedy, bad words": {"bad_words_ids": [[5], [7, 8]]},
    "beam 4": {"num_beams": 4},
    "beam 3, 2 returned": {"num_beams": 3, "num_return_sequences": 2},
    "beam 4, length penalty 2": {"num_beams": 4, "length_penalty": 2.0},
    "beam 4, length penalty -1, never": {"num_beams": 4, "length_penalty": -1.0, "early_stopping": "never"},
    "beam 2, early stopping": {"num_beams": 2, "early_stopping": True},
    "beam 3, penalties": {"num_beams": 3, "repetition_penalty": 1.2, "no_repeat_ngram_size": 3, "min_new_tokens": 4},
}


def reference(src, ids, mask, options):
    import torch
    from transformers import AutoModelForSeq2SeqLM, GenerationConfig
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    model = AutoModelForSeq2SeqLM.from_pretrained(src, attn_implementation="eager").eval()
    config = GenerationConfig.from_pretrained(src)
    config.update(**{"max_new_tokens": 20, **options})
    config.output_scores = True
    config.return_dict_in_generate = True
    model.generation_config = config
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask), generation_config=config,
            cache=EncoderDecoderCache(DynamicCache(), DynamicCache()),
        )
    scores = getattr(out, "sequences_scores", None)
    return out.sequences.numpy(), None if scores is None else scores.numpy()


@pytest.fixture(scope="module")
def onnx_model(converted):
    return Seq2SeqOnnxModel.from_pretrained(converted)


@pytest.mark.parametrize("options", list(MATRIX.values()), ids=list(MATRIX))
@pytest.mark.parametrize("batch", ["single", "padded batch"])
def test_matches_transformers(onnx_model, make_model, options, batch):
    prompts = PROMPTS[:1] if batch == "single" else PROMPTS
    ids, mask = onnx_model.tokenize(prompts)
    expected, expected_scores = reference(make_model("flan-t5"), ids, mask, options)
    result = onnx_model.generate(ids, mask, return_dict=True, **{"max_new_tokens": 20, **options})
    np.testing.assert_array_equal(result.sequences, expected)
    if expected_scores is not None:
        np.testing.assert_allclose(result.scores, expected_scores, rtol=1e-4, atol=1e-4)


def test_demo_model_beam_search(tmp_path_factory):
    """A trained model: beam search gives the answers and transformers' exact ids and scores."""
    from pathlib import Path

    from seq2seq_onnx.convert import convert

    demo = Path(__file__).resolve().parents[1] / "demo" / "t5-demo"
    out = tmp_path_factory.mktemp("demo-beam") / "t5-demo"
    convert(str(demo), out, progress=False, validate=False)
    model = Seq2SeqOnnxModel.from_pretrained(out)
    ids, mask = model.tokenize(["spell out: 4521", "normalize date: 3rd of March 2021", "to digits: twelve"])
    options = {"num_beams": 4, "num_return_sequences": 2, "max_new_tokens": 16}
    expected, expected_scores = reference(demo, ids, mask, options)
    result = model.generate(ids, mask, return_dict=True, **options)
    np.testing.assert_array_equal(result.sequences, expected)
    np.testing.assert_allclose(result.scores, expected_scores, rtol=1e-4, atol=1e-5)
    assert model.decode(result.sequences)[::2] == ["four thousand five hundred twenty-one", "2021-03-03", "12"]


def test_sampling_is_reproducible_and_top_k_1_is_greedy(onnx_model):
    ids, mask = onnx_model.tokenize(PROMPTS)
    a = onnx_model.generate(ids, mask, do_sample=True, seed=7, top_p=0.9, temperature=1.5)
    b = onnx_model.generate(ids, mask, do_sample=True, seed=7, top_p=0.9, temperature=1.5)
    c = onnx_model.generate(ids, mask, do_sample=True, seed=8, top_p=0.9, temperature=1.5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(onnx_model.generate(ids, mask, do_sample=True, top_k=1, seed=3), onnx_model.generate(ids, mask))
    many = onnx_model.generate(ids, mask, do_sample=True, num_return_sequences=3, seed=1)
    assert many.shape[0] == 9


def test_threads_give_sequential_results(onnx_model):
    jobs = [(PROMPTS[i % 3 :], {"num_beams": 1 + i % 3}) for i in range(6)]
    expected = [onnx_model.generate(*onnx_model.tokenize(p), **o) for p, o in jobs]
    results = [None] * len(jobs)

    def work(i):
        prompts, options = jobs[i]
        results[i] = onnx_model.generate(*onnx_model.tokenize(prompts), **options)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


def test_stream_and_pipeline(onnx_model, converted):
    pieces = list(onnx_model.stream(PROMPTS[0], max_new_tokens=15))
    assert len(pieces) > 1 and "".join(pieces) == onnx_model.generate_text(PROMPTS[0], max_new_tokens=15)
    pipe = pipeline("text2text-generation", converted)
    assert pipe(PROMPTS[0], max_new_tokens=15) == [{"generated_text": "".join(pieces)}]
    assert len(pipe(PROMPTS, num_beams=2, num_return_sequences=2)) == 3


@pytest.mark.parametrize(
    "options,message",
    [
        ({"num_beams": 0}, "num_beams must be an integer >= 1"),
        ({"top_p": 2}, "top_p must be in (0, 1]"),
        ({"max_new_tokens": -1}, "max_new_tokens must be an integer >= 1"),
        ({"max_new_tokens": 0}, "max_new_tokens must be an integer >= 1"),
        ({"min_new_tokens": -3}, "min_new_tokens must be an integer >= 0"),
        ({"do_sample": True, "temperature": 0}, "temperature must be > 0"),
        ({"num_beams": 2, "num_return_sequences": 3}, "must be <= num_beams"),
        ({"num_return_sequences": 2}, "greedy decoding returns one sequence"),
        ({"early_stopping": "sometimes"}, "early_stopping must be"),
    ],
)
def test_invalid_options_fail_before_work(onnx_model, options, message, monkeypatch):
    monkeypatch.setattr(onnx_model.encoder, "run", lambda *a, **k: pytest.fail("encoder ran"))
    with pytest.raises(InvalidGenerationOptions) as err:
        onnx_model.generate(np.array([[5, 6, 1]]), **options)
    assert message in str(err.value)


def test_unknown_option_is_a_type_error(onnx_model):
    with pytest.raises(TypeError, match="unknown generation option"):
        onnx_model.generate(np.array([[5, 1]]), beams=3)


def test_generate_command_options_and_files(converted, tmp_path, capsys):
    import json

    from seq2seq_onnx.cli import main

    assert main(["generate", str(converted), PROMPTS[0], "--num-beams", "3", "--num-return-sequences", "2",
                 "--max-new-tokens", "9", "--json"]) == 0
    line = json.loads(capsys.readouterr().out)
    model = Seq2SeqOnnxModel.from_pretrained(converted)
    assert line["output"] == model.generate_text(PROMPTS[0], num_beams=3, num_return_sequences=2, max_new_tokens=9)

    data = tmp_path / "in.jsonl"
    data.write_text(
        json.dumps({"input": PROMPTS[0], "id": 1}) + "\n" + "{broken\n" + json.dumps({"text": "no input field"}) + "\n"
        + json.dumps({"input": PROMPTS[1], "id": 2}) + "\n"
    )
    out = tmp_path / "out.jsonl"
    code = main(["generate", str(converted), "--input", str(data), "--output", str(out), "--batch-size", "1",
                 "--max-new-tokens", "9"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"{data}:2: not valid JSON" in err and f"{data}:3: no 'input' field" in err
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [1, 2]
    assert rows[0]["output"] == model.generate_text(PROMPTS[0], max_new_tokens=9)

    assert main(["generate", str(converted), "x", "--top-p", "2"]) == 2
    assert "top_p must be in (0, 1]" in capsys.readouterr().err


@pytest.mark.parametrize("case", list(FAMILY_CASES))
def test_every_family_greedy_and_beam(family_export, case):
    src, out, _ = family_export(case)
    model = Seq2SeqOnnxModel.from_pretrained(out)
    ids, mask = model.tokenize(PROMPTS)
    for options in ({}, {"num_beams": 3, "num_return_sequences": 2, "no_repeat_ngram_size": 3}):
        expected, expected_scores = reference(src, ids, mask, options)
        result = model.generate(ids, mask, return_dict=True, **{"max_new_tokens": 20, **options})
        np.testing.assert_array_equal(result.sequences, expected)
        if expected_scores is not None:
            np.testing.assert_allclose(result.scores, expected_scores, rtol=1e-4, atol=1e-4)


def test_runtime_needs_neither_torch_nor_transformers(converted):
    import subprocess
    import sys

    code = (
        "import sys; from seq2seq_onnx import Seq2SeqOnnxModel; "
        f"m = Seq2SeqOnnxModel.from_pretrained({str(converted)!r}); m.generate_text('Hello', num_beams=2); "
        "print(sorted(k for k in ('torch', 'transformers') if k in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_config_defaults_follow_transformers(converted, make_model, tmp_path):
    """No length in generation_config: 20 new tokens; a config min_length gives way to min_new_tokens;
    a greedy config with temperature 0 loads."""
    import json

    folder = tmp_path / "model"
    shutil.copytree(converted, folder)
    src = tmp_path / "src"
    shutil.copytree(make_model("flan-t5"), src)
    for base in (folder, src):
        gen = json.loads((base / "generation_config.json").read_text())
        gen.update(min_length=12, temperature=0.0)
        (base / "generation_config.json").write_text(json.dumps(gen))
    model = Seq2SeqOnnxModel.from_pretrained(folder)
    ids, mask = model.tokenize(PROMPTS)
    for options in ({}, {"min_new_tokens": 2}, {"min_new_tokens": 25}):
        expected, _ = reference_defaults(src, ids, mask, options)
        np.testing.assert_array_equal(model.generate(ids, mask, **options), expected)


def reference_defaults(src, ids, mask, options):
    import torch
    from transformers import AutoModelForSeq2SeqLM
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    model = AutoModelForSeq2SeqLM.from_pretrained(src, attn_implementation="eager").eval()
    with torch.no_grad():
        out = model.generate(input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask),
                             cache=EncoderDecoderCache(DynamicCache(), DynamicCache()), **options)
    return out.numpy(), None


def test_beam_sampling_with_top_k_and_top_p(onnx_model):
    ids, mask = onnx_model.tokenize(PROMPTS)
    for options in ({"top_k": 3}, {"top_p": 0.3}):
        out = onnx_model.generate(ids, mask, do_sample=True, num_beams=4, seed=0, max_new_tokens=8, **options)
        assert out.shape[0] == 3 and out.shape[1] > 1


def test_stream_flushes_characters_built_from_bytes():
    """A byte-fallback tokenizer decodes half a character as U+FFFD: stream must not lose what follows."""
    from tokenizers import Tokenizer, models

    from seq2seq_onnx.runtime import Seq2SeqOnnxModel as Model

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(f"<0x{b:02X}>", -1.0) for b in range(256)] + [("▁a", -1.0), ("▁b", -1.0)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=True))
    from tokenizers import decoders

    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    euro = [3 + b for b in "€".encode()]
    sequence = [259] + euro + [260, 1]  # "a", "€" in three byte pieces, "b", eos

    class Steps:
        def steps(self, state, rows):
            for token in sequence:
                yield np.array([token])

    model = Model.__new__(Model)
    model.tokenizer = tok
    model.clean_up_tokenization_spaces = False
    model.strip_decoded = False
    model.generation_options = __import__("seq2seq_onnx.runtime", fromlist=["x"]).GenerationOptions()
    model.tokenize = lambda texts, *langs: (np.array([[5, 1]]), np.array([[1, 1]]))
    model._languages = None
    model._start = lambda *a, **k: (None, 1)
    import seq2seq_onnx.runtime.model as runtime

    original = runtime.GreedyOrSampling
    runtime.GreedyOrSampling = lambda options: Steps()
    try:
        pieces = list(model.stream("x"))
    finally:
        runtime.GreedyOrSampling = original
    assert "".join(pieces) == tok.decode(sequence, skip_special_tokens=True)
    assert "\ufffd" not in "".join(pieces)


# transformers' length options: max_length / min_length count the decoder start token; max_new_tokens and
# min_new_tokens take precedence (generation/utils.py, GenerationMixin._prepare_generated_length).
LENGTHS = {
    "max_length": {"max_length": 10},
    "max_length and min_length": {"max_length": 12, "min_length": 8},
    "max_new_tokens beats max_length": {"max_length": 30, "max_new_tokens": 5},
    "min_new_tokens beats min_length": {"min_length": 15, "min_new_tokens": 3},
    "min_length only (default max)": {"min_length": 15},
    "beam 3, max_length and min_length": {"num_beams": 3, "max_length": 9, "min_length": 6},
    "beam 4, 2 returned, max_length": {"num_beams": 4, "num_return_sequences": 2, "max_length": 12},
    "beam 3, max_new_tokens beats max_length": {"num_beams": 3, "max_new_tokens": 6, "max_length": 30},
}


@pytest.mark.parametrize("options", list(LENGTHS.values()), ids=list(LENGTHS))
def test_length_options_match_transformers(onnx_model, make_model, options):
    import warnings

    ids, mask = onnx_model.tokenize(PROMPTS)
    expected, _ = reference_defaults(make_model("flan-t5"), ids, mask, options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "max_new_tokens takes precedence", as transformers logs
        got = onnx_model.generate(ids, mask, **options)
    np.testing.assert_array_equal(got, expected)
    if "max_new_tokens" not in options and "max_length" in options:
        assert got.shape[1] == options["max_length"]  # some row runs to the limit: start token counted


# generation_config.json lengths against those of the call: transformers builds the call's config on top of the
# model's, so a length the file sets still counts unless the call passes it (None included, which unsets it).
CONFIG_VS_CALL = {
    "file max_new_tokens beats call max_length": ({"max_new_tokens": 6}, {"max_length": 15}),
    "call max_new_tokens=None lets max_length decide": ({"max_new_tokens": 6}, {"max_length": 15, "max_new_tokens": None}),
    "call max_new_tokens beats file max_length": ({"max_length": 7}, {"max_new_tokens": 12}),
    "file max_length": ({"max_length": 7}, {}),
    "call max_length beats file max_length": ({"max_length": 7}, {"max_length": 11}),
    "file min_new_tokens beats call min_length": ({"min_new_tokens": 3}, {"min_length": 15}),
    "call min_new_tokens beats file min_length": ({"min_length": 15}, {"min_new_tokens": 3}),
    "beam 3, file max_new_tokens beats call max_length": ({"max_new_tokens": 5}, {"max_length": 15, "num_beams": 3}),
}


@pytest.mark.parametrize("in_file,call", list(CONFIG_VS_CALL.values()), ids=list(CONFIG_VS_CALL))
def test_length_options_against_generation_config(converted, make_model, tmp_path, in_file, call):
    import json
    import warnings

    folder, src = tmp_path / "model", tmp_path / "src"
    shutil.copytree(converted, folder)
    shutil.copytree(make_model("flan-t5"), src)
    for base in (folder, src):
        gen = json.loads((base / "generation_config.json").read_text())
        gen.update(in_file)
        (base / "generation_config.json").write_text(json.dumps(gen))
    model = Seq2SeqOnnxModel.from_pretrained(folder)
    ids, mask = model.tokenize(PROMPTS)
    expected, _ = reference_defaults(src, ids, mask, call)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = model.generate(ids, mask, **call)
    np.testing.assert_array_equal(got, expected)
    overridden = [(t, n) for t, n in (("max_length", "max_new_tokens"), ("min_length", "min_new_tokens"))
                  if call.get(t) is not None and {**in_file, **call}.get(n) is not None]
    assert len([w for w in caught if "takes precedence" in str(w.message)]) == len(overridden)


def test_length_option_values_are_checked(onnx_model, monkeypatch):
    monkeypatch.setattr(onnx_model.encoder, "run", lambda *a, **k: pytest.fail("encoder ran"))
    for options, message in [
        ({"max_length": 1}, "max_length must be >= 2 (it counts the decoder start token), got 1"),
        ({"max_length": 0}, "max_length must be >= 2"),
        ({"max_length": 2.5}, "max_length must be an integer"),
        ({"min_length": -1}, "min_length must be an integer >= 0, got -1"),
    ]:
        with pytest.raises(InvalidGenerationOptions, match=message.replace("(", r"\(").replace(")", r"\)")):
            onnx_model.generate(np.array([[5, 6, 1]]), **options)
    monkeypatch.undo()
    # as in transformers, max_length is not used (nor checked) when max_new_tokens decides
    with pytest.warns(UserWarning, match="max_new_tokens=2 .from this call. takes precedence over max_length=1"):
        assert onnx_model.generate(np.array([[5, 6, 1]]), max_length=1, max_new_tokens=2).shape == (1, 3)


def test_length_options_in_text_stream_and_pipeline(onnx_model, converted):
    expected = onnx_model.generate_text(PROMPTS[0], max_new_tokens=7)
    assert onnx_model.generate_text(PROMPTS[0], max_length=8) == expected
    assert "".join(onnx_model.stream(PROMPTS[0], max_length=8)) == expected
    assert pipeline("text2text-generation", onnx_model)(PROMPTS[0], max_length=8, min_length=3) == [{"generated_text": expected}]
    ids, mask = onnx_model.tokenize(PROMPTS[1:2])  # "Hello": the model ends it at once ...
    assert 1 in onnx_model.generate(ids, mask)[0, :3].tolist()
    assert 1 not in onnx_model.generate(ids, mask, min_length=6, max_length=9)[0, :6].tolist()  # ... unless told not to
