"""The shipped demo model: small, trained, and just as good after export."""

import json
from pathlib import Path

import pytest

from seq2seq_onnx.cli import main
from seq2seq_onnx.evaluate import evaluate

DEMO = Path(__file__).resolve().parents[1] / "demo" / "t5-demo"
HELD_OUT = DEMO / "held_out.jsonl"


@pytest.fixture(scope="module")
def held_out_slice(tmp_path_factory):
    rows = [json.loads(line) for line in HELD_OUT.read_text().splitlines()]
    path = tmp_path_factory.mktemp("data") / "slice.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[::5]))
    return path


def test_demo_checkpoint_is_complete_and_small():
    for name in ("config.json", "generation_config.json", "model.safetensors", "spiece.model", "tokenizer.json",
                 "tokenizer_config.json", "README.md", "held_out.jsonl"):
        assert (DEMO / name).is_file(), name
    assert (DEMO / "model.safetensors").stat().st_size <= 10 * 1024 * 1024
    config = json.loads((DEMO / "config.json").read_text())
    assert config["feed_forward_proj"] == "gated-gelu" and config["tie_word_embeddings"] is False
    rows = [json.loads(line) for line in HELD_OUT.read_text().splitlines()]
    assert {r["task"] for r in rows} == {"spell out", "to digits", "normalize date"}


def test_export_keeps_pytorch_answers_and_score(demo_export, held_out_slice):
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    result = evaluate(demo_export, held_out_slice, batch_size=20)
    assert result.examples == 60
    assert result.exact_match >= 0.95, result.mistakes

    rows = [json.loads(line) for line in held_out_slice.read_text().splitlines()]
    model = AutoModelForSeq2SeqLM.from_pretrained(DEMO).eval()
    tokenizer = AutoTokenizer.from_pretrained(DEMO)
    enc = tokenizer([r["input"] for r in rows], return_tensors="pt", padding=True)
    with torch.no_grad():
        ids = model.generate(**enc, max_new_tokens=32, do_sample=False, num_beams=1)
    pytorch = tokenizer.batch_decode(ids, skip_special_tokens=True)
    pytorch_hits = sum(p == r["target"] for p, r in zip(pytorch, rows)) / len(rows)
    assert result.exact_match == pytorch_hits  # same score in both runtimes


def test_generate_and_eval_commands(demo_export, held_out_slice, capsys):
    assert main(["generate", str(demo_export), "spell out: 4521", "normalize date: 3rd of March 2021", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["output"] for line in lines] == ["four thousand five hundred twenty-one", "2021-03-03"]

    assert main(["eval", str(demo_export), "--data", str(held_out_slice), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["examples"] == 60 and result["exact_match"] >= 0.95
    assert set(result["by_task"]) == {"spell out", "to digits", "normalize date"}


def test_eval_reports_bad_lines(demo_export, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "spell out: 1", "target": "one"}\n{"input": "oops"\n')
    assert main(["eval", str(demo_export), "--data", str(bad)]) == 2
    assert f"{bad}:2: not valid JSON" in capsys.readouterr().err
