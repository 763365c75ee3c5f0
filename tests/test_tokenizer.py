"""tokenizer.json must tokenize exactly like the checkpoint's sentencepiece model."""

import json
import shutil

import pytest

from seq2seq_onnx.errors import TokenizerMismatchError
from seq2seq_onnx.export.tokenizer import PROBE_TEXTS, sentencepiece_mismatches, write_tokenizer_files


def _sentencepiece_ids(spiece, text):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(spiece))
    return sp.encode(text) + [sp.eos_id()]


@pytest.mark.parametrize("variant", ["flan-t5", "umt5"])
def test_tokenizer_json_made_from_spiece_model(make_model, tmp_path, variant):
    from tokenizers import Tokenizer

    src = make_model(variant, tokenizer_json=False)
    assert not (src / "tokenizer.json").exists()
    write_tokenizer_files(str(src), tmp_path, "T5Tokenizer")
    fast = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in PROBE_TEXTS + ("the house", "A"):
        assert fast.encode(text).ids == _sentencepiece_ids(src / "spiece.model", text)
    # the leading '▁' piece is the classic casualty of a careless conversion
    assert fast.encode("the house").ids[0] == _sentencepiece_ids(src / "spiece.model", "the house")[0]
    for name in ("tokenizer_config.json", "special_tokens_map.json", "spiece.model"):
        assert (tmp_path / name).is_file()
    special = json.loads((tmp_path / "special_tokens_map.json").read_text())
    assert special["eos_token"] == "</s>" and special["pad_token"] == "<pad>"
    assert "is_local" not in json.loads((tmp_path / "tokenizer_config.json").read_text())


def _break_piece_scores(tokenizer_json):
    """Make the unigram model prefer single characters, as a stale or hand-edited tokenizer.json might."""
    data = json.loads(tokenizer_json.read_text())
    for entry in data["model"]["vocab"]:
        if len(entry[0]) > 2:
            entry[1] = -50.0
    tokenizer_json.write_text(json.dumps(data))


def test_broken_source_tokenizer_json_is_rebuilt(make_model, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(make_model("flan-t5"), src)
    _break_piece_scores(src / "tokenizer.json")
    assert sentencepiece_mismatches(src / "tokenizer.json", src / "spiece.model")  # really broken

    out = tmp_path / "out"
    out.mkdir()
    notes = write_tokenizer_files(str(src), out, "T5Tokenizer")
    assert any("rebuilt it from spiece.model" in n for n in notes)
    assert sentencepiece_mismatches(out / "tokenizer.json", src / "spiece.model") == []


def test_unfixable_mismatch_is_an_error(make_model, tmp_path, monkeypatch):
    import seq2seq_onnx.export.tokenizer as tok

    monkeypatch.setattr(tok, "sentencepiece_mismatches", lambda *a: ["'x': sentencepiece [1] vs tokenizer.json [2]"])
    with pytest.raises(TokenizerMismatchError, match="does not tokenize like spiece.model"):
        write_tokenizer_files(str(make_model("flan-t5")), tmp_path, "T5Tokenizer")


def test_checkpoint_without_tokenizer_is_refused(make_model, tmp_path, capsys):
    """Config and weights only: AutoTokenizer would give an empty T5 tokenizer and the export would print empty lines."""
    from seq2seq_onnx.cli import main

    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(make_model() / name, bare / name)
    assert main(["convert", str(bare), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"no tokenizer in {bare}" in err and "spiece.model" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_tokenizer_that_cannot_cover_the_vocabulary_is_refused(make_model, tmp_path, capsys):
    """A tokenizer.json holding only special tokens (an empty T5 tokenizer) for a 208-token model."""
    from tokenizers import Tokenizer, models

    from seq2seq_onnx.cli import main

    src = tmp_path / "src"
    shutil.copytree(make_model(), src)
    (src / "spiece.model").unlink()
    specials = ["<pad>", "</s>", "<unk>"] + [f"<extra_id_{i}>" for i in range(100)]
    empty = Tokenizer(models.Unigram([(t, 0.0) for t in specials], unk_id=2))
    empty.add_special_tokens(specials)
    empty.save(str(src / "tokenizer.json"))
    assert main(["convert", str(src), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no usable tokenizer" in err and "special tokens only" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def test_tokenizer_with_ids_past_the_vocabulary_is_refused(tmp_path, capsys):
    """The demo model's spiece.model without its tokenizer_config.json: T5's tokenizer then adds 100 <extra_id_*>
    tokens, ids up to 209 for a 110-token model, and any of them would crash the export."""
    from pathlib import Path

    from seq2seq_onnx.cli import main

    demo = Path(__file__).resolve().parents[1] / "demo" / "t5-demo"
    src = tmp_path / "src"
    src.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors", "spiece.model"):
        shutil.copy(demo / name, src / name)
    assert main(["convert", str(src), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "past the model's vocabulary (110 tokens)" in err and "tokenizer_config.json" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name,content", [("tokenizer.json", "{}"), ("spiece.model", "not a sentencepiece model")])
def test_corrupt_tokenizer_files_are_bad_input(make_model, tmp_path, capsys, name, content):
    from seq2seq_onnx.cli import main

    src = tmp_path / "src"
    shutil.copytree(make_model(), src)
    if name == "spiece.model":
        (src / "tokenizer.json").unlink()
    (src / name).write_text(content)
    assert main(["convert", str(src), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "cannot read the tokenizer files" in err or "cannot load the tokenizer" in err
    assert "Traceback" not in err and "Logging error" not in err
