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

    from seq2seq_onnx.export.graphs import export_decoder
    from seq2seq_onnx.export.families import T5

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


@pytest.mark.parametrize("threads", [0, -2, 1.5, True, "4"])
def test_threads_must_be_a_positive_integer(converted, threads):
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        Seq2SeqOnnxModel.from_pretrained(converted, threads=threads)


def test_one_thread_loads(converted):
    model = Seq2SeqOnnxModel.from_pretrained(converted, threads=1)
    assert model.encoder.get_session_options().intra_op_num_threads == 1


# clean_up_tokenization_spaces: transformers 5 removes the space before . , ? ! and in 's, n't, ... only when
# tokenizer_config.json says so (absent: False, tokenization_utils_base.py); the runtime must decode alike.
PUNCTUATION = ["▁house", "▁", "?", "▁", "?", "▁", ".", "▁", ",", "▁", "!", "▁", "'", "s", "▁", "n", "'", "t"]
RAW_TEXT = "house ? ? . , ! 's n't"
CLEANED_TEXT = "house??.,!'sn't"


@pytest.fixture(scope="module")
def punctuation_folder(converted, tmp_path_factory):
    """The fixture export with "'" and "," added to its tokenizer (its sentencepiece vocab has neither)."""
    from tokenizers import Tokenizer

    folder = tmp_path_factory.mktemp("punctuation") / "model"
    shutil.copytree(converted, folder)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.add_tokens(["'", ","])
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


def _with_clean_up(folder, tmp_path, value):
    import json

    out = tmp_path / f"clean-up-{value}"
    shutil.copytree(folder, out)
    path = out / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config.pop("clean_up_tokenization_spaces", None)
    if value != "absent":
        config["clean_up_tokenization_spaces"] = value
    path.write_text(json.dumps(config))
    return out


class ScriptedDecoder:
    """Stands in for the ONNX decoder: its logits choose the scripted ids, one per step."""

    def __init__(self, script):
        self.script = script

    def empty_cache(self, batch, states):
        return {}

    def step(self, tokens, step, states, mask, cache):
        logits = np.zeros((tokens.shape[0], max(self.script) + 1), dtype=np.float32)
        logits[:, self.script[min(tokens.shape[1] - 1, len(self.script) - 1)]] = 10.0
        return logits


@pytest.mark.parametrize("value", [True, False, "absent"])
def test_decoded_text_follows_clean_up_tokenization_spaces(punctuation_folder, tmp_path, value):
    """generate_text, stream, pipeline and evaluate give AutoTokenizer's decode(ids, skip_special_tokens=True)."""
    import json

    from transformers import AutoTokenizer

    from seq2seq_onnx import pipeline
    from seq2seq_onnx.evaluate import evaluate

    folder = _with_clean_up(punctuation_folder, tmp_path, value)
    reference = AutoTokenizer.from_pretrained(folder)
    model = Seq2SeqOnnxModel.from_pretrained(folder)
    assert model.clean_up_tokenization_spaces is (value is True)

    token = model.tokenizer.token_to_id
    question = [token(p) for p in ["▁", "?", "▁", "?"]]
    assert reference.decode(question, skip_special_tokens=True) == ("??" if value is True else "? ?")
    assert model.decode([question]) == [reference.decode(question, skip_special_tokens=True)]

    script = [token(p) for p in PUNCTUATION] + [1]
    expected = reference.decode(script, skip_special_tokens=True)
    assert expected == (CLEANED_TEXT if value is True else RAW_TEXT)
    model.decoder = ScriptedDecoder(script)
    assert model.generate_text("Hello") == expected
    assert model.generate_text(["Hello", "Hi"]) == [expected, expected]
    pieces = list(model.stream("Hello"))
    assert "".join(pieces) == expected and len(pieces) > 1
    assert pipeline("text2text-generation", model)("Hello") == [{"generated_text": expected}]
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"input": "Hello", "target": "something else"}) + "\n")
    assert evaluate(folder, data, model=model).mistakes[0]["prediction"] == expected


def test_stream_pieces_add_up_with_clean_up():
    """Text yielded while streaming is never changed by the clean-up of later tokens; and the port is transformers'."""
    import random

    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    from seq2seq_onnx.runtime.text import clean_up_tokenization, stable_prefix_length

    rng = random.Random(0)
    alphabet = [" ", " ", "'", "n", "t", "s", "m", "ve", "re", ".", "?", "!", ",", "x"]
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        final = clean_up_tokenization(text)
        assert final == PreTrainedTokenizerBase.clean_up_tokenization(None, text)
        shown = ""
        for end in range(len(text) + 1):  # the text as it grows, one character at a time
            stable = clean_up_tokenization(text[: stable_prefix_length(text[:end])])
            assert stable.startswith(shown) and final.startswith(stable), (text, end)
            shown = stable


@pytest.mark.parametrize("bpe_override", [False, True])
def test_bpe_tokenizer_clean_up_as_transformers(tmp_path, bpe_override):
    """transformers skips the clean-up for BPE models unless told to corrupt them anyway."""
    import json

    from tokenizers import Tokenizer, decoders, models
    from transformers import AutoTokenizer

    from seq2seq_onnx.runtime.text import clean_up_tokenization, cleans_up_spaces

    tokenizer = Tokenizer(models.BPE({"a": 0, "?": 1, "▁": 2}, []))
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": True}
    if bpe_override:
        config["clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output"] = True
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    ids = [0, 2, 1]
    ours = tokenizer.decode(ids)
    if cleans_up_spaces(tmp_path, tokenizer):
        ours = clean_up_tokenization(ours)
    assert ours == AutoTokenizer.from_pretrained(tmp_path).decode(ids) == ("a?" if bpe_override else "a ?")


def test_later_steps_run_the_cached_branch_alone_and_the_files_stay(converted, monkeypatch):
    """After step 0 the runtime runs the merged decoder's cached branch as a session of its own (no If, no
    cross-attention Identity copies); the same ids as the merged graph, greedy and beam; the file is untouched."""
    import hashlib

    import seq2seq_onnx.runtime.sessions as sessions

    path = converted / "onnx" / "decoder_model_merged.onnx"
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    model = Seq2SeqOnnxModel.from_pretrained(converted)
    runner = model.decoder
    assert runner.later is not runner.first
    assert "use_cache_branch" not in runner.later_inputs
    assert not [n for n in runner.later_output_names if n.startswith("present.") and ".encoder." in n]
    monkeypatch.setattr(sessions, "runtime_graph", lambda path: None)
    merged_only = Seq2SeqOnnxModel.from_pretrained(converted)
    assert merged_only.decoder.later is merged_only.decoder.first
    ids, mask = model.tokenize(["translate English to German: hello", "summarize: the quick brown fox jumps over"])
    for options in ({}, {"num_beams": 3, "num_return_sequences": 2}):
        np.testing.assert_array_equal(model.generate(ids, mask, max_new_tokens=12, **options),
                                      merged_only.generate(ids, mask, max_new_tokens=12, **options))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_the_step_graph_is_slimmed_once_and_cached_on_disk(converted, tmp_path, monkeypatch):
    """The later-steps graph is the cached branch slimmed by onnxslim (fewer nodes, the same ids), built once and
    then read from the cache folder; an unusable cache folder only costs the rebuild."""
    import onnx

    import seq2seq_onnx.runtime.sessions as sessions

    merged = converted / "onnx" / "decoder_model_merged.onnx"
    monkeypatch.setenv("SEQ2SEQ_ONNX_CACHE", str(tmp_path / "graphs"))
    slim = onnx.load_from_string(sessions.runtime_graph(merged))
    plain = onnx.load_from_string(sessions.cached_branch_model(merged))
    assert len(slim.graph.node) < len(plain.graph.node)
    assert len(list((tmp_path / "graphs").glob("decoder_model_merged-*.onnx"))) == 1
    assert not list((tmp_path / "graphs").glob(".*"))  # no temporary file left
    calls = []
    monkeypatch.setattr(sessions, "cached_branch_model", lambda path: calls.append(path))
    assert onnx.load_from_string(sessions.runtime_graph(merged)) == slim and not calls  # from the cache
    slimmed = Seq2SeqOnnxModel.from_pretrained(converted)
    monkeypatch.undo()
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("SEQ2SEQ_ONNX_CACHE", str(tmp_path / "not-a-folder"))
    monkeypatch.setattr(sessions, "runtime_graph", sessions.cached_branch_model)  # the unslimmed branch
    unslimmed = Seq2SeqOnnxModel.from_pretrained(converted)
    ids, mask = slimmed.tokenize(["translate English to German: hello", "summarize: the quick brown fox jumps over"])
    for options in ({}, {"num_beams": 3, "num_return_sequences": 2}):
        np.testing.assert_array_equal(slimmed.generate(ids, mask, max_new_tokens=12, **options),
                                      unslimmed.generate(ids, mask, max_new_tokens=12, **options))
    monkeypatch.undo()
    monkeypatch.setenv("SEQ2SEQ_ONNX_CACHE", str(tmp_path / "not-a-folder"))
    assert onnx.load_from_string(sessions.runtime_graph(merged)) == slim  # built again, not cached, still used


def test_the_encoder_runs_slimmed_with_the_same_output_and_the_file_stays(converted, tmp_path, monkeypatch):
    """The runtime's encoder is the file slimmed by onnxslim (fewer nodes), cached on disk beside the step graphs,
    with the same hidden states bit for bit; the file is untouched; without a slimmed graph the file itself loads."""
    import hashlib

    import onnx
    import onnxruntime as ort

    import seq2seq_onnx.runtime.model as model_module
    import seq2seq_onnx.runtime.sessions as sessions

    path = converted / "onnx" / "encoder_model.onnx"
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setenv("SEQ2SEQ_ONNX_CACHE", str(tmp_path / "graphs"))
    slim = sessions.encoder_graph(path)
    assert len(onnx.load_from_string(slim).graph.node) < len(onnx.load(str(path)).graph.node)
    assert len(list((tmp_path / "graphs").glob("encoder_model-*.onnx"))) == 1
    model = Seq2SeqOnnxModel.from_pretrained(converted)
    ids, mask = model.tokenize(["translate English to German: hello", "summarize: the quick brown fox jumps over"])
    feed = {"input_ids": ids, "attention_mask": mask}
    (ours,) = model.encoder.run(["last_hidden_state"], feed)
    (plain,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["last_hidden_state"], feed)
    np.testing.assert_array_equal(ours, plain)
    monkeypatch.setattr(model_module, "encoder_graph", lambda path: None)
    unslimmed = Seq2SeqOnnxModel.from_pretrained(converted)
    np.testing.assert_array_equal(model.generate(ids, mask, max_new_tokens=12), unslimmed.generate(ids, mask, max_new_tokens=12))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_an_encoder_with_external_data_of_any_name_or_a_damaged_cache_entry_still_loads(converted, tmp_path, monkeypatch):
    """An encoder whose weights are external data under a name other than Transformers.js's `*.onnx_data` runs from its
    path (the weights cannot come with the graph's bytes); a cache entry that ONNX Runtime cannot load falls back
    to the file. Both generate the same ids as the plain folder."""
    import shutil

    import onnx

    import seq2seq_onnx.runtime.sessions as sessions

    monkeypatch.setenv("SEQ2SEQ_ONNX_CACHE", str(tmp_path / "graphs"))
    reference = Seq2SeqOnnxModel.from_pretrained(converted)
    ids, mask = reference.tokenize(["translate English to German: hello", "summarize: the quick brown fox jumps over"])
    expected = reference.generate(ids, mask, max_new_tokens=12)

    folder = tmp_path / "external"
    shutil.copytree(converted, folder)
    encoder = folder / "onnx" / "encoder_model.onnx"
    onnx.save_model(onnx.load(str(encoder)), str(encoder), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="encoder_model.onnx.data", size_threshold=0)
    assert (folder / "onnx" / "encoder_model.onnx.data").is_file()
    assert sessions.encoder_graph(encoder) is None
    np.testing.assert_array_equal(Seq2SeqOnnxModel.from_pretrained(folder).generate(ids, mask, max_new_tokens=12), expected)

    entries = list((tmp_path / "graphs").glob("encoder_model-*.onnx"))
    assert len(entries) == 1
    entries[0].write_bytes(b"not a graph")
    np.testing.assert_array_equal(Seq2SeqOnnxModel.from_pretrained(converted).generate(ids, mask, max_new_tokens=12), expected)


def test_top_k_of_wide_rows_breaks_ties_to_the_lower_index():
    """Beam search's top-k over num_beams * vocab scores (ONNX Runtime's TopK for wide rows) equals a stable sort's
    first k, ties at the cut included, -inf anywhere; narrow rows (sorted in numpy) too."""
    from seq2seq_onnx.runtime.processors import top_k_indices

    rng = np.random.default_rng(0)
    for columns in (50, 20000):
        for _ in range(20):
            x = rng.standard_normal((6, columns)).astype(np.float32)
            x[:, rng.integers(0, columns, 30)] = x.max()  # many ties at the top
            x[:, rng.integers(0, columns, 30)] = -np.inf
            k = int(rng.integers(1, 25))
            np.testing.assert_array_equal(top_k_indices(x, k), np.argsort(-x, axis=1, kind="stable")[:, :k])
