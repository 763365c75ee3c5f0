"""Evaluate an export on a JSONL set: exact match (overall and per task) and speed.

Each line: {"input": "...", "target": "...", "task": "..."} (task optional). Used to compare
dtypes on the demo models and to check that an export keeps its PyTorch score. Decoding follows the
folder's generation_config.json (e.g. 4 beams for opus-mt) unless options say otherwise.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import Seq2SeqOnnxError


@dataclass
class EvalResult:
    folder: str
    dtype: str
    examples: int
    exact_match: float
    by_task: dict[str, float] = field(default_factory=dict)
    ms_per_example: float = 0.0
    ms_per_token: float = 0.0
    batch_size: int = 1
    num_beams: int = 1
    mistakes: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def read_jsonl_lines(path, required=("input", "target")) -> tuple[list[tuple[int, dict]], list[tuple[int, str]]]:
    """(good rows with their line numbers, bad lines with the reason), blank lines skipped."""
    good, bad = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                bad.append((number, f"not valid JSON ({err.msg})"))
                continue
            if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in required):
                fields = ", ".join(f'"{k}": "..."' for k in required)
                bad.append((number, f"expected an object with string fields {{{fields}}}"))
                continue
            good.append((number, row))
    return good, bad


def load_jsonl(path: Path) -> list[dict]:
    """Evaluation data must be clean: the first bad line is an error naming it."""
    good, bad = read_jsonl_lines(path)
    if bad:
        number, reason = bad[0]
        raise Seq2SeqOnnxError(f"{path}:{number}: {reason}")
    if not good:
        raise Seq2SeqOnnxError(f"{path} has no examples")
    return [row for _, row in good]


def evaluate(folder, data, dtype: str = "fp32", batch_size: int = 32, limit: int | None = None,
             threads: int | None = None, model=None, src_lang: str | None = None, tgt_lang: str | None = None,
             **generate_options) -> EvalResult:
    """Exact match of `folder`'s `dtype` on the JSONL file `data` (predictions and targets compared stripped).

    `generate_options` are `Seq2SeqOnnxModel.generate` options (transformers' names, e.g. num_beams=1),
    over the folder's generation_config.json; `src_lang` / `tgt_lang` as in `generate_text`.
    Raises Seq2SeqOnnxError for a bad file, an empty set or bad sizes; ms figures are wall time of
    `generate` only (tokenizing and decoding excluded).
    """
    import numpy as np

    from .runtime import Seq2SeqOnnxModel

    if batch_size < 1:
        raise Seq2SeqOnnxError(f"--batch-size must be at least 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise Seq2SeqOnnxError(f"--limit must be at least 1, got {limit}")
    rows = load_jsonl(Path(data))[:limit]
    model = model or Seq2SeqOnnxModel.from_pretrained(folder, dtype=dtype, threads=threads)
    options = dict(generate_options)
    if src_lang is not None or tgt_lang is not None:
        options = {**(model.languages.apply(src_lang, tgt_lang).options or {}), **options}
    predictions, new_tokens, seconds = [], 0, 0.0
    for i in range(0, len(rows), batch_size):
        ids, mask = model.tokenize([r["input"] for r in rows[i : i + batch_size]], src_lang, tgt_lang)
        started = time.perf_counter()
        out = model.generate(ids, mask, **options)
        seconds += time.perf_counter() - started
        # tokens really generated: up to and including each row's end, not the padding after it
        generated = out[:, 1:]
        ended = np.isin(generated, model.generation_options.eos_token_ids)
        lengths = np.where(ended.any(1), ended.argmax(1) + 1, generated.shape[1])
        new_tokens += int(lengths.sum())
        predictions += model.decode(out)
    hits = [p.strip() == r["target"].strip() for p, r in zip(predictions, rows)]
    by_task: dict[str, list[bool]] = {}
    for row, hit in zip(rows, hits):
        by_task.setdefault(row.get("task", "all"), []).append(hit)
    return EvalResult(
        folder=str(folder),
        dtype=dtype,
        examples=len(rows),
        exact_match=sum(hits) / len(rows),
        by_task={t: sum(v) / len(v) for t, v in by_task.items()},
        ms_per_example=1000 * seconds / len(rows),
        ms_per_token=1000 * seconds / max(new_tokens, 1),
        batch_size=batch_size,
        num_beams=int(options.get("num_beams") or model.generation_options.num_beams or 1),
        mistakes=[
            {"input": r["input"], "target": r["target"], "prediction": p}
            for r, p, hit in zip(rows, predictions, hits) if not hit
        ],
    )
