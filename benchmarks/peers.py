"""Speed against peers in one run: PyTorch generate, seq2seq-onnx per dtype, CTranslate2 (fp32 and int8).

    pip install -e '.[bench]'          # CTranslate2, only for this script
    python benchmarks/peers.py [--shape flan-t5-small] [--new-tokens 64] [--rounds 5] [--dtypes fp32 q8]

Four cells, the same work for every engine (exactly --new-tokens tokens forced: min = max new tokens):
  b1 greedy, b1 beam4   ms per decoding step (wall time of one generate call / new tokens), batch 1
  b8 greedy, b8 beam4   generated tokens per second (8 x new tokens / wall time), batch 8
Each engine runs in its own child process (model loaded, one warm-up call per cell, then one timed
call per cell); rounds are interleaved (every engine once, in rotated order, then the next round)
so that noise on the machine hits all engines alike; the table gives medians over rounds.

Engines: PyTorch `generate` (fp32, eager attention, torch threads = --threads); seq2seq-onnx
`Seq2SeqOnnxModel.generate` per dtype (ORT intra-op threads = --threads); CTranslate2 converted from
the same checkpoint by its own converter (float32 and int8), at 1 and at --threads intra threads
(inter_threads 1), its best setting reported per cell. Ratios: ours (best dtype) over CTranslate2's
best, and over PyTorch. A sanity line says whether each engine's batch-1 greedy ids equal PyTorch's
(random weights; CTranslate2 int8 and our quantized dtypes may differ).
The model: random weights in the chosen shape (seq2seq_onnx.testing), built once into --work.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CELLS = {"b1 greedy": (1, 1), "b1 beam4": (1, 4), "b8 greedy": (8, 1), "b8 beam4": (8, 4)}
PROMPTS = [
    "translate English to German: The house is wonderful and the garden is large.",
    "summarize: studies have shown that owning a dog is good for you and your family",
    "question: what is the weather today in the market with friends?",
    "hello world translation model small test numbers quick brown fox",
    "the quick brown fox jumps over the lazy dog",
    "people say the weather was nice and we went to the market",
    "translate English to French: the house is small",
    "summarize: the lazy dog sleeps while the fox jumps",
]


def batch_for(size: int) -> list[str]:
    return PROMPTS[:size]


# --- child: one engine, all cells, one timed call each ---------------------------------------------------


def _run_torch(spec: dict) -> dict:
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    torch.set_num_threads(spec["threads"])
    model = AutoModelForSeq2SeqLM.from_pretrained(spec["source"], attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(spec["source"])
    n = spec["new_tokens"]

    def call(batch, beams):
        enc = tokenizer(batch, return_tensors="pt", padding=True)
        with torch.inference_mode():
            return model.generate(**enc, num_beams=beams, do_sample=False, max_new_tokens=n, min_new_tokens=n)[:, 1:]

    return _time_cells(call, lambda out: out.tolist())


def _run_ours(spec: dict) -> dict:
    from seq2seq_onnx import Seq2SeqOnnxModel

    model = Seq2SeqOnnxModel.from_pretrained(spec["folder"], dtype=spec["dtype"], threads=spec["threads"])
    n = spec["new_tokens"]

    def call(batch, beams):
        ids, mask = model.tokenize(batch)
        return model.generate(ids, mask, num_beams=beams, do_sample=False, max_new_tokens=n, min_new_tokens=n)[:, 1:]

    return _time_cells(call, lambda out: out.tolist())


def _run_ct2(spec: dict) -> dict:
    import ctranslate2
    from transformers import AutoTokenizer

    translator = ctranslate2.Translator(spec["ct2_dir"], device="cpu", compute_type=spec["compute_type"],
                                        intra_threads=spec["threads"], inter_threads=1)
    tokenizer = AutoTokenizer.from_pretrained(spec["source"])
    # CTranslate2 answers in tokens of its own vocabulary (the model's ids, past the tokenizer's pieces too)
    vocabulary = json.loads((Path(spec["ct2_dir"]) / "shared_vocabulary.json").read_text())
    index = {token: i for i, token in enumerate(vocabulary)}
    n = spec["new_tokens"]

    def call(batch, beams):
        tokens = [tokenizer.convert_ids_to_tokens(tokenizer(text).input_ids) for text in batch]
        results = translator.translate_batch(tokens, beam_size=beams, max_decoding_length=n, min_decoding_length=n,
                                             num_hypotheses=1, return_scores=False)
        return [[index[t] for t in r.hypotheses[0]] for r in results]

    return _time_cells(call, lambda out: out)


def _time_cells(call, to_lists) -> dict:
    result = {"seconds": {}, "lengths": {}, "ids": None}
    for cell, (size, beams) in CELLS.items():
        batch = batch_for(size)
        call(batch, beams)  # warm-up (allocations, thread pools)
        started = time.perf_counter()
        out = call(batch, beams)
        result["seconds"][cell] = time.perf_counter() - started
        lists = to_lists(out)
        result["lengths"][cell] = sorted({len([t for t in row]) for row in lists})
        if cell == "b1 greedy":
            result["ids"] = lists[0]
    return result


def child(spec: dict) -> None:
    run = {"torch": _run_torch, "ours": _run_ours, "ct2": _run_ct2}[spec["engine"]]
    print(json.dumps(run(spec)))


# --- parent: build once, interleave rounds, report ---------------------------------------------------------


def prepare(shape: str, work: Path, dtypes: list[str], ct2: bool) -> dict:
    from seq2seq_onnx.convert import convert
    from seq2seq_onnx.quantize import quantize_folder
    from seq2seq_onnx.runtime import DTYPE_SUFFIXES
    from seq2seq_onnx.testing import FLAN_T5_SMALL, TINY, build_model

    shapes = {"flan-t5-small": FLAN_T5_SMALL, "tiny": TINY}
    source, folder = work / f"{shape}-random", work / f"{shape}-onnx"
    if not (source / "config.json").exists():
        build_model(source, "flan-t5", **shapes[shape])
    if not (folder / "onnx" / "decoder_model_merged.onnx").exists():
        convert(str(source), folder, overwrite=True, progress=False)
    missing = [d for d in dtypes if d != "fp32" and not (folder / "onnx" / f"decoder_model_merged{DTYPE_SUFFIXES[d]}.onnx").exists()]
    if missing:
        quantize_folder(folder, missing)
    paths = {"source": str(source), "folder": str(folder)}
    if ct2:
        import ctranslate2.converters

        for compute in ("float32", "int8"):
            out = work / f"{shape}-ct2-{compute}"
            if not (out / "model.bin").exists():
                ctranslate2.converters.TransformersConverter(str(source)).convert(
                    str(out), quantization=None if compute == "float32" else "int8", force=True)
            paths[f"ct2_{compute}"] = str(out)
    return paths


def engines(paths: dict, dtypes: list[str], threads: int, ct2: bool) -> dict[str, dict]:
    out = {"PyTorch fp32": {"engine": "torch", "threads": threads}}
    for dtype in dtypes:
        out[f"seq2seq-onnx {dtype}"] = {"engine": "ours", "dtype": dtype, "threads": threads}
    if ct2:
        for compute in ("float32", "int8"):
            for t in sorted({1, threads}):
                out[f"CTranslate2 {compute} ({t} thr)"] = {"engine": "ct2", "compute_type": compute, "threads": t,
                                                           "ct2_dir": paths[f"ct2_{compute}"]}
    return {name: {**spec, **paths} for name, spec in out.items()}


def run_child(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": str(spec["threads"])})
    if proc.returncode != 0:
        raise RuntimeError(f"{spec['engine']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def figure(cell: str, seconds: float, new_tokens: int) -> float:
    size, _ = CELLS[cell]
    return 1000 * seconds / new_tokens if size == 1 else size * new_tokens / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=["flan-t5-small", "tiny"], default="flan-t5-small")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "q8"])
    parser.add_argument("--no-ct2", action="store_true", help="skip CTranslate2 (when the bench extra is not installed)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/seq2seq-onnx-bench"))
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return

    ct2 = not args.no_ct2
    if ct2:
        try:
            import ctranslate2  # noqa: F401
        except ImportError:
            sys.exit("CTranslate2 is not installed: pip install -e '.[bench]', or pass --no-ct2")
    args.work.mkdir(parents=True, exist_ok=True)
    paths = prepare(args.shape, args.work, args.dtypes, ct2)
    specs = engines(paths, args.dtypes, args.threads, ct2)
    for spec in specs.values():
        spec["new_tokens"] = args.new_tokens
    names = list(specs)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            runs[name].append(run_child(specs[name]))
            print(f"round {r + 1}/{args.rounds}: {name} done", file=sys.stderr, flush=True)

    medians = {name: {cell: statistics.median(run["seconds"][cell] for run in runs[name]) for cell in CELLS}
               for name in names}
    reference_ids = runs["PyTorch fp32"][0]["ids"]
    print(_header(args))
    header = "| engine | " + " | ".join(f"{c} ({'ms/step' if CELLS[c][0] == 1 else 'tok/s'})" for c in CELLS) + \
        " | b1 greedy ids = PyTorch |"
    print(header)
    print("|---" * (len(CELLS) + 2) + "|")
    for name in names:
        cells = " | ".join(f"{figure(c, medians[name][c], args.new_tokens):.1f}" for c in CELLS)
        lengths = {tuple(v) for run in runs[name] for v in run["lengths"].values()}
        same = runs[name][0]["ids"] == reference_ids
        note = "" if lengths == {(args.new_tokens,)} else f" (lengths {sorted(lengths)})"
        print(f"| {name} | {cells} | {'yes' if same else 'no'}{note} |")

    def best(prefix):
        group = [n for n in names if n.startswith(prefix)]
        return {c: min(group, key=lambda n: medians[n][c]) for c in CELLS} if group else {}

    ours, peer = best("seq2seq-onnx"), best("CTranslate2")
    print()
    for cell in CELLS:
        o = ours[cell]
        line = f"{cell:10s} ours best: {o} {figure(cell, medians[o][cell], args.new_tokens):.1f}"
        line += f" | vs PyTorch x{medians['PyTorch fp32'][cell] / medians[o][cell]:.2f}"
        if peer:
            p = peer[cell]
            line += f" | CTranslate2 best: {p} {figure(cell, medians[p][cell], args.new_tokens):.1f}" \
                    f" | ours/CTranslate2 speed x{medians[p][cell] / medians[o][cell]:.2f}"
        print(line)
    fp32 = "seq2seq-onnx fp32"
    ct2_fp32 = [n for n in names if n.startswith("CTranslate2 float32")]
    if fp32 in medians and ct2_fp32:
        p = min(ct2_fp32, key=lambda n: medians[n]["b1 greedy"])
        print(f"fp32 b1 greedy: ours {figure('b1 greedy', medians[fp32]['b1 greedy'], args.new_tokens):.2f} ms/step, "
              f"{p} {figure('b1 greedy', medians[p]['b1 greedy'], args.new_tokens):.2f} ms/step "
              f"(x{medians[p]['b1 greedy'] / medians[fp32]['b1 greedy']:.2f})")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs}, indent=1))


def _header(args) -> str:
    import onnxruntime
    import torch
    import transformers

    versions = f"torch {torch.__version__}, transformers {transformers.__version__}, onnxruntime {onnxruntime.__version__}"
    try:
        import ctranslate2

        versions += f", ctranslate2 {ctranslate2.__version__}"
    except ImportError:
        pass
    return (f"\n{args.shape} shape, random weights; {args.new_tokens} new tokens forced; {args.threads} threads "
            f"(CTranslate2: 1 and {args.threads}); medians of {args.rounds} interleaved rounds; {os.cpu_count()} cores; "
            f"{versions}\n")


if __name__ == "__main__":
    main()
