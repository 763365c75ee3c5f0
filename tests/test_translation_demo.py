"""The shipped translation demo (Marian, opus-mt layout): small, trained, and as good in every dtype, beams included."""

import json
import random
import sys
from pathlib import Path

import pytest

from seq2seq_onnx.cli import main
from seq2seq_onnx.convert import convert
from seq2seq_onnx.evaluate import evaluate, load_jsonl

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo" / "marian-demo"
HELD_OUT = DEMO / "held_out.jsonl"
DTYPES = ("fp32", "fp16", "q8", "int8", "uint8", "q4", "q4f16", "bnb4")


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory):
    """Every dtype, each checked in ONNX Runtime (and Transformers.js under Node when installed) before it is kept."""
    out = tmp_path_factory.mktemp("marian-demo") / "marian-demo"
    result = convert(str(DEMO), out, progress=False, quantize=list(DTYPES[1:]))
    assert result.verification.passed, result.verification.summary()
    assert {q.dtype: q.reason for q in result.quantization if not q.kept} == {}
    return out


@pytest.fixture(scope="module")
def pytorch_predictions():
    """transformers' answers on the held-out set: {num_beams: [text]}."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    rows = load_jsonl(HELD_OUT)
    model = AutoModelForSeq2SeqLM.from_pretrained(DEMO).eval()
    tokenizer = AutoTokenizer.from_pretrained(DEMO)
    out = {}
    for beams in (1, 4):
        texts = []
        for i in range(0, len(rows), 100):
            enc = tokenizer([r["input"] for r in rows[i : i + 100]], return_tensors="pt", padding=True)
            with torch.no_grad():
                ids = model.generate(**enc, num_beams=beams)
            texts += tokenizer.batch_decode(ids, skip_special_tokens=True)
        out[beams] = texts
    return out


def test_demo_checkpoint_is_marian_small_and_complete():
    for name in ("config.json", "generation_config.json", "model.safetensors", "source.spm", "target.spm", "vocab.json",
                 "tokenizer_config.json", "README.md", "held_out.jsonl"):
        assert (DEMO / name).is_file(), name
    assert sum(p.stat().st_size for p in DEMO.iterdir()) <= 10 * 1024 * 1024
    config = json.loads((DEMO / "config.json").read_text())
    assert config["model_type"] == "marian" and config["tie_word_embeddings"] is True and config["scale_embedding"]
    generation = json.loads((DEMO / "generation_config.json").read_text())
    pad = config["pad_token_id"]
    assert generation["decoder_start_token_id"] == pad and generation["bad_words_ids"] == [[pad]]
    assert generation["num_beams"] == 4 and generation["forced_eos_token_id"] == config["eos_token_id"]
    rows = load_jsonl(HELD_OUT)
    assert len(rows) == 300 and len({r["input"] for r in rows}) == 300
    assert {r["task"] for r in rows} == {f"{t} → {lang}" for t in ("digits", "words", "date") for lang in ("fra", "deu")}


def test_held_out_set_never_occurs_in_training():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import train_translation_demo as script
    finally:
        sys.path.pop(0)
    rows, numbers, dates = script.held_out_set(0)
    assert rows == load_jsonl(HELD_OUT)  # the shipped file is the script's
    rng = random.Random(0)
    training = {r["input"] for _ in range(50) for r in script.training_batch(rng, 64, numbers, dates)}
    assert not training & {r["input"] for r in rows}
    assert not {r["target"] for r in rows if "digits" in r["task"]} & {
        r["target"] for _ in range(20) for r in script.training_batch(rng, 64, numbers, dates)}


@pytest.mark.parametrize("beams", [1, 4])
def test_pytorch_scores_at_least_95_percent(pytorch_predictions, beams):
    rows = load_jsonl(HELD_OUT)
    hits = sum(p.strip() == r["target"] for p, r in zip(pytorch_predictions[beams], rows))
    assert hits / len(rows) >= 0.95


@pytest.mark.parametrize("beams", [1, 4])
def test_fp32_export_answers_as_pytorch(demo_export, pytorch_predictions, beams):
    from seq2seq_onnx.runtime import Seq2SeqOnnxModel

    rows = load_jsonl(HELD_OUT)
    model = Seq2SeqOnnxModel.from_pretrained(demo_export)
    ours = []
    for i in range(0, len(rows), 100):
        ours += model.generate_text([r["input"] for r in rows[i : i + 100]], num_beams=beams)
    assert ours == [p.strip() for p in pytorch_predictions[beams]]


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_scores_at_least_95_percent_greedy_and_with_beams(demo_export, dtype):
    from seq2seq_onnx.runtime import Seq2SeqOnnxModel

    model = Seq2SeqOnnxModel.from_pretrained(demo_export, dtype=dtype)
    for beams in (1, 4):
        result = evaluate(demo_export, HELD_OUT, dtype=dtype, model=model, num_beams=beams)
        assert result.num_beams == beams
        assert result.exact_match >= 0.95, (beams, result.mistakes[:5])


def test_translation_quickstart_commands(demo_export, capsys):
    """README's translation quickstart: --tgt-lang puts the >>xx<< tag in front, as typing it does."""
    assert main(["generate", str(demo_export), "4521", "March 3, 2021", "--tgt-lang", "fra", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["output"] for line in lines] == ["quatre mille cinq cent vingt et un", "3 mars 2021"]
    assert main(["generate", str(demo_export), "twenty-one", "--tgt-lang", "deu", "--dtype", "q8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["output"] == "einundzwanzig"
    assert main(["generate", str(demo_export), ">>deu<< twenty-one", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["output"] == "einundzwanzig"

    assert main(["generate", str(demo_export), "4521", "--tgt-lang", "fr"]) == 2
    err = capsys.readouterr().err
    assert "fr" in err and "fra" in err  # the close code is offered

    assert main(["eval", str(demo_export), "--data", str(HELD_OUT), "--num-beams", "1", "--limit", "30"]) == 0
    assert "(greedy, batch 32)" in capsys.readouterr().out
    assert main(["eval", str(demo_export), "--data", str(HELD_OUT), "--limit", "30", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_beams"] == 4  # generation_config.json's


def test_an_input_too_long_for_the_position_table_fails_alone_and_clearly(demo_export):
    """Marian's positions stop at max_position_embeddings: a longer input is refused with the numbers, before ONNX
    Runtime's out-of-bounds Gather; in a batch job only that row fails (seq2seq_onnx.jobs.generate_batch)."""
    from seq2seq_onnx import Seq2SeqOnnxModel
    from seq2seq_onnx.jobs import generate_batch

    model = Seq2SeqOnnxModel.from_pretrained(demo_export)
    limit = model.max_source_positions
    assert limit == json.loads((demo_export / "config.json").read_text())["max_position_embeddings"]
    long = " ".join(["twenty-one"] * limit)
    with pytest.raises(ValueError, match=rf"is \d+ tokens long; this model takes at most {limit}"):
        model.generate_text(long, tgt_lang="fra")
    results = generate_batch(model, ["4521", long, "March 3, 2021"], {"tgt_lang": "fra"})
    assert [r["output"] for r in results] == ["quatre mille cinq cent vingt et un", None, "3 mars 2021"]
    assert "the input is" in results[1]["error"] and f"at most {limit}" in results[1]["error"]


def test_a_failing_row_does_not_stop_generate_input(demo_export, tmp_path, capsys):
    """`generate --input`: the too-long row gets "output": null and its error, the other rows their output, exit 1."""
    data = tmp_path / "in.jsonl"
    long = " ".join(["twenty-one"] * 300)
    data.write_text("".join(json.dumps({"input": t, "id": i}) + "\n" for i, t in enumerate(["4521", long, "March 3, 2021"])))
    out = tmp_path / "out.jsonl"
    assert main(["generate", str(demo_export), "--input", str(data), "--output", str(out), "--tgt-lang", "fra",
                 "--batch-size", "3"]) == 1
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["output"] for r in rows] == ["quatre mille cinq cent vingt et un", None, "3 mars 2021"]
    assert [r["id"] for r in rows] == [0, 1, 2] and "tokens long" in rows[1]["error"] and "error" not in rows[0]
    assert f"{data}:2: " in capsys.readouterr().err
