"""ms/token of Seq2SeqOnnxModel against PyTorch generate, measured in the same run.

    python benchmarks/generate.py [--threads 2] [--tokens 64] [--repeats 3] [--dtypes fp32] [--folder EXPORT --source CHECKPOINT]

Default model: random weights with flan-t5-small's shape (d_model 512, 8+8 layers, 6 heads of
64, vocab 32128), built and converted once under /tmp/seq2seq-onnx-bench. Every case generates
exactly --tokens new tokens (min_new_tokens = max_new_tokens) on both sides: batch 1 and 8,
greedy and beam 4. PyTorch: transformers generate, use_cache=True, eager attention,
torch.set_num_threads(threads). ONNX: ONNX Runtime CPU, intra-op threads = threads.
Reported: median ms per generated token (per sequence step) and the speed-up ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path


CASES = [("greedy", 1, {}), ("greedy", 8, {}), ("beam 4", 1, {"num_beams": 4}), ("beam 4", 8, {"num_beams": 4})]
PROMPT = "translate English to German: The house is wonderful and the garden is large."


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtypes", nargs="+", default=["fp32"])
    parser.add_argument("--folder", type=Path, help="an existing export (default: build the flan-t5-small-shaped one)")
    parser.add_argument("--source", type=Path, help="the PyTorch checkpoint of --folder")
    parser.add_argument("--cases", nargs="+", default=[f"{n}/{b}" for n, b, _ in CASES], help="e.g. greedy/1 'beam 4/8'")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForSeq2SeqLM

    from seq2seq_onnx import Seq2SeqOnnxModel

    torch.set_num_threads(args.threads)
    if args.folder is None:
        from seq2seq_onnx.convert import convert
        from seq2seq_onnx.testing import FLAN_T5_SMALL, build_model

        root = Path("/tmp/seq2seq-onnx-bench")
        args.source = root / "flan-t5-small-random"
        args.folder = root / "flan-t5-small-onnx"
        if not (args.source / "config.json").exists():
            build_model(args.source, "flan-t5", **FLAN_T5_SMALL)
        if not (args.folder / "onnx" / "decoder_model_merged.onnx").exists():
            convert(str(args.source), args.folder, overwrite=True, progress=False)
    pt = AutoModelForSeq2SeqLM.from_pretrained(args.source, attn_implementation="eager").eval()
    print(f"model: {args.source.name}  threads: {args.threads}  new tokens: {args.tokens}  repeats: {args.repeats} (median)")
    print(f"torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}")
    print(f"{'case':<14} {'dtype':<6} {'PyTorch ms/tok':>15} {'ONNX ms/tok':>12} {'speed-up':>9}")
    length = {"max_new_tokens": args.tokens, "min_new_tokens": args.tokens}
    for dtype in args.dtypes:
        onnx_model = Seq2SeqOnnxModel.from_pretrained(args.folder, dtype=dtype, threads=args.threads)
        for name, batch, options in CASES:
            if f"{name}/{batch}" not in args.cases:
                continue
            ids, mask = onnx_model.tokenize([PROMPT] * batch)
            t_ids, t_mask = torch.as_tensor(ids), torch.as_tensor(mask)

            def run_torch():
                with torch.no_grad():
                    out = pt.generate(input_ids=t_ids, attention_mask=t_mask, use_cache=True, do_sample=False, **length, **options)
                assert out.shape[1] == args.tokens + 1

            def run_onnx():
                out = onnx_model.generate(ids, mask, do_sample=False, **length, **options)
                assert out.shape[1] == args.tokens + 1

            t_pt = median_seconds(run_torch, args.repeats) / args.tokens * 1000
            t_ox = median_seconds(run_onnx, args.repeats) / args.tokens * 1000
            print(f"{name + ' b' + str(batch):<14} {dtype:<6} {t_pt:>15.2f} {t_ox:>12.2f} {t_pt / t_ox:>8.2f}x", flush=True)


if __name__ == "__main__":
    main()
