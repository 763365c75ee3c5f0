"""Rows per second of a Ray job (generate --ray) against the single-process command, same input, same machine.

    pip install -e '.[ray]'
    python benchmarks/ray_scale.py [--model models/t5-demo] [--rows 20000] [--rounds 2] [--dtype fp32]
                                   [--max-new-tokens N] [--batch-size 16]

Both sides are the real commands, each in its own process, timed from start to exit (model load,
Ray start and actor start included, as a user waits for them):
  single   seq2seq-onnx generate MODEL --input IN --output OUT.jsonl --threads C --batch-size B
  ray      seq2seq-onnx generate MODEL --input IN --output DIR --ray --actors C --threads-per-actor 1 --batch-size B
with C = the machine's cores (2 here): one process with C threads against C actors of 1 thread.
Input: the demo's 300 held-out prompts repeated to --rows rows. Rounds are interleaved (single,
ray, single, ray, ...); the table gives medians, and the ratio ray / single. The Ray job's own
summary (rows/s from Ray start to the last row) is printed too. The default model is the demo
export, converted into --work when --model is not given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if run.returncode not in (0, 1):
        sys.exit(f"failed ({run.returncode}): {' '.join(cmd)}\n{run.stderr[-2000:]}")
    return seconds, run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="exported folder (default: the demo model, converted into --work)")
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, help="forced output length (min = max); default: the model's own")
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--work", type=Path, default=Path("/tmp/seq2seq-onnx-ray-bench"))
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "seq2seq_onnx"]
    model = args.model
    if model is None:
        model = args.work / "t5-demo"
        if not (model / "config.json").exists():
            subprocess.run([*cli, "convert", str(ROOT / "demo" / "t5-demo"), "-o", str(model), "--quantize", "q8",
                            "--overwrite", "--skip-transformersjs"], check=True)
    texts = [json.loads(line)["input"] for line in (ROOT / "demo" / "t5-demo" / "held_out.jsonl").read_text().splitlines()]
    prompts = args.work / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"text": texts[i % len(texts)]}) + "\n" for i in range(args.rows)))
    lengths = []
    if args.max_new_tokens:
        lengths = ["--max-new-tokens", str(args.max_new_tokens), "--min-new-tokens", str(args.max_new_tokens)]
    common = [str(model), "--input", str(prompts), "--dtype", args.dtype, "--batch-size", str(args.batch_size), *lengths]

    results: dict[str, list[float]] = {"single": [], "ray": []}
    summaries = []
    for r in range(args.rounds):
        out_file, out_dir = args.work / "single.jsonl", args.work / "ray-out"
        out_file.unlink(missing_ok=True)
        shutil.rmtree(out_dir, ignore_errors=True)
        seconds, _ = _timed([*cli, "generate", *common, "--output", str(out_file), "--threads", str(args.cores)])
        results["single"].append(args.rows / seconds)
        print(f"round {r + 1}/{args.rounds}: single {args.rows / seconds:.1f} rows/s", file=sys.stderr)
        seconds, run = _timed([*cli, "generate", *common, "--output", str(out_dir), "--ray", "--actors", str(args.cores),
                               "--threads-per-actor", "1", "--json"])
        results["ray"].append(args.rows / seconds)
        summaries.append(json.loads(run.stdout))
        print(f"round {r + 1}/{args.rounds}: ray {args.rows / seconds:.1f} rows/s", file=sys.stderr)
        single_rows = [json.loads(line)["output"] for line in out_file.read_text().splitlines()]
        from seq2seq_onnx.jobs import read_results

        ray_rows = [row["output"] for row in read_results(out_dir)]
        if ray_rows != single_rows:
            print("warning: the Ray job's outputs differ from the single-process command's", file=sys.stderr)

    single, ray = statistics.median(results["single"]), statistics.median(results["ray"])
    inner = statistics.median(s["rows_per_second"] for s in summaries)
    import onnxruntime
    import ray as ray_module

    print(f"\n{args.rows} rows (demo prompts), dtype {args.dtype}, batch size {args.batch_size}, "
          f"{'forced ' + str(args.max_new_tokens) + ' new tokens' if args.max_new_tokens else 'own lengths'}; "
          f"{args.cores} cores; medians of {args.rounds} interleaved rounds; onnxruntime {onnxruntime.__version__}, "
          f"ray {ray_module.__version__}; model {model}\n")
    print("| command | rows/s (wall, start to exit) |")
    print("|---|---|")
    print(f"| single process, {args.cores} threads | {single:.1f} |")
    print(f"| Ray, {args.cores} actors x 1 thread | {ray:.1f} |")
    print(f"\nratio ray / single: x{ray / single:.2f}  (Ray job's own figure, Ray start to last row: {inner:.1f} rows/s)")
    print(f"per core: {ray / args.cores:.2f} rows/s (Ray), {single / args.cores:.2f} rows/s (single)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
