"""Regenerate docs/quantization.md: quality, size and speed of every dtype.

    python scripts/quantization_report.py [--threads 2] [--skip-flan-size]

1. The trained demo models (demo/t5-demo, demo/marian-demo), converted with every dtype: exact
   match on their 300-example held-out sets (greedy, and 4 beams for the translation demo), agreement with fp32 (share of examples whose greedy token ids equal
   fp32's), file sizes (encoder + merged decoder) and ms/token (greedy, batch 32, ONNX Runtime).
2. A flan-t5-small-shaped model (random weights): file sizes per dtype, and ms/token at batch 1.
"""

from __future__ import annotations

import argparse
import datetime
import os
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DTYPES = ("fp32", "q8", "int8", "uint8", "q4", "q4f16", "bnb4", "fp16")


def sizes(folder: Path) -> dict[str, int]:
    from seq2seq_onnx.runtime import DTYPE_SUFFIXES

    out = {}
    for dtype, sfx in DTYPE_SUFFIXES.items():
        files = [p for g in ("encoder_model", "decoder_model_merged") for p in (folder / "onnx").glob(f"{g}{sfx}.onnx*")]
        if files:
            out[dtype] = sum(p.stat().st_size for p in files)
    return out


def demo_rows(name: str, threads: int, beams: tuple[int, ...] = (1,)) -> list[str]:
    """One row per dtype of the shipped demo `name`: exact match (per number of beams), agreement, size, speed."""
    from seq2seq_onnx.convert import convert
    from seq2seq_onnx.evaluate import evaluate, load_jsonl
    from seq2seq_onnx.runtime import Seq2SeqOnnxModel

    work = Path(tempfile.mkdtemp(prefix="quant-report-"))
    folder = work / name
    convert(str(ROOT / "demo" / name), folder, progress=False, quantize=DTYPES[1:])
    data = ROOT / "demo" / name / "held_out.jsonl"
    rows = load_jsonl(data)
    size = sizes(folder)
    reference = None
    match = " | ".join("exact match, greedy" if b == 1 else f"exact match, {b} beams" for b in beams)
    lines = [f"| dtype | {match} | same ids as fp32 (greedy) | size (enc + dec) | ms/token (greedy, batch 32) |",
             "|---|" + "---|" * (len(beams) + 3)]
    for dtype in DTYPES:
        if dtype not in size:
            lines.append(f"| {dtype} | not written |" + " |" * (len(beams) + 2))
            continue
        model = Seq2SeqOnnxModel.from_pretrained(folder, dtype=dtype, threads=threads)
        scores = []
        for b in beams:
            result = evaluate(folder, data, dtype=dtype, batch_size=32, model=model, num_beams=b)
            scores.append(f"{result.exact_match:.1%}")
            if b == 1:
                speed = result.ms_per_token
        ids = [model.generate(*model.tokenize([r["input"]]), num_beams=1)[0].tolist() for r in rows]
        reference = reference or ids
        same = sum(a == b for a, b in zip(ids, reference)) / len(rows)
        lines.append(f"| {dtype} | {' | '.join(scores)} | {same:.1%} | {size[dtype] / 1e6:.2f} MB | {speed:.3f} |")
    return lines


def flan_rows(threads: int) -> list[str]:
    from seq2seq_onnx.convert import convert
    from seq2seq_onnx.quantize import quantize_folder
    from seq2seq_onnx.runtime import Seq2SeqOnnxModel
    from seq2seq_onnx.testing import FLAN_T5_SMALL, build_model

    root = Path("/tmp/seq2seq-onnx-bench")
    source, folder = root / "flan-t5-small-random", root / "flan-t5-small-onnx"
    if not (source / "config.json").exists():
        build_model(source, "flan-t5", **FLAN_T5_SMALL)
    if not (folder / "onnx" / "decoder_model_merged.onnx").exists():
        convert(str(source), folder, overwrite=True, progress=False)
    missing = [d for d in DTYPES[1:] if d not in sizes(folder)]
    if missing:
        quantize_folder(folder, missing)
    size = sizes(folder)
    lines = ["| dtype | encoder + merged decoder | ms/token (greedy, batch 1, 64 tokens) |", "|---|---|---|"]
    for dtype in DTYPES:
        if dtype not in size:
            lines.append(f"| {dtype} | not written | |")
            continue
        model = Seq2SeqOnnxModel.from_pretrained(folder, dtype=dtype, threads=threads)
        ids, mask = model.tokenize(["translate English to German: The house is wonderful and the garden is large."])
        model.generate(ids, mask, max_new_tokens=8)
        times = []
        for _ in range(3):
            started = time.perf_counter()
            model.generate(ids, mask, max_new_tokens=64, min_new_tokens=64)
            times.append((time.perf_counter() - started) / 64 * 1000)
        lines.append(f"| {dtype} | {size[dtype] / 1e6:.1f} MB | {float(np.median(times)):.2f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--skip-flan-size", action="store_true")
    args = parser.parse_args()
    import onnxruntime

    demo = demo_rows("t5-demo", args.threads)
    translation = demo_rows("marian-demo", args.threads, beams=(1, 4))
    flan = [] if args.skip_flan_size else flan_rows(args.threads)
    text = f"""# Quantization

Generated by `python scripts/quantization_report.py --threads {args.threads}` on {datetime.date.today()}
(onnxruntime {onnxruntime.__version__}, {os.cpu_count()} cores, {args.threads} threads). Do not edit by hand.

Every dtype is written by `seq2seq-onnx convert SOURCE -o OUT --quantize` (or `seq2seq-onnx quantize OUT`)
with Transformers.js file names, and checked in ONNX Runtime before it is kept. How each is made:
q8 / int8 / uint8 dynamic 8-bit (per channel, reduced range, subgraphs included; q8 = signed
weights), q4 `MatMulNBits` (block 32, symmetric), bnb4 NF4 (block 64), fp16 weights in float16 with
float32 compute (T5's activations overflow float16), q4f16 = q4 plus float16 for the remaining weights.

## Demo model (`demo/t5-demo`, held-out set of 300)

{chr(10).join(demo)}

"Same ids as fp32": share of held-out examples whose greedy token ids equal fp32's exactly.

## Translation demo (`demo/marian-demo`, held-out set of 300)

Marian (opus-mt layout) with tied embeddings: the embedding and the output projection are one weight, of
which each quantized file holds a quantized copy per use (never one initializer read by both a `Gather` and a
`MatMul`, the pattern behind ONNX Runtime's "Missing required scale" fault). 4 beams is its
generation_config.json's default.

{chr(10).join(translation)}

## flan-t5-small shape (random weights)

{chr(10).join(flan) if flan else "(skipped)"}

On a model this small (batch 1) the decoder step is bound by reading the weights: 8-bit weights
read a quarter of the bytes. 4-bit `MatMulNBits` kernels are not faster than 8-bit ones on this CPU.
"""
    (ROOT / "docs" / "quantization.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
