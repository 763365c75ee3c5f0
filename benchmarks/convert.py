"""Time and peak memory of `seq2seq-onnx convert` on a flan-t5-small-shaped model.

    python benchmarks/convert.py [--shape flan-t5-small|tiny] [--threads N] [--keep DIR]

Builds a random-weight model of the given shape (d_model 512, 8+8 layers, 6 heads of 64,
vocab 32128 for flan-t5-small), then runs the real command in a child process and reports its
wall time, peak resident memory (ru_maxrss of the child), output sizes and the verification
result. The model build is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seq2seq_onnx.testing import FLAN_T5_SMALL, TINY, build_model

SHAPES = {"flan-t5-small": FLAN_T5_SMALL, "tiny": TINY}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SHAPES, default="flan-t5-small")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="OMP/ORT threads for the child")
    parser.add_argument("--keep", type=Path, help="keep the source and output under this folder")
    args = parser.parse_args()

    root = Path(args.keep or tempfile.mkdtemp(prefix="bench-convert-"))
    src = root / f"{args.shape}-random"
    if not (src / "config.json").exists():
        build_model(src, "flan-t5", **SHAPES[args.shape])
    out = root / f"{args.shape}-onnx"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "seq2seq_onnx", "convert", str(src), "-o", str(out), "--overwrite", "--json"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if proc.returncode != 0:
        sys.exit(f"conversion failed ({proc.returncode}):\n{proc.stderr}")
    result = json.loads(proc.stdout)
    print(f"shape: {args.shape}  threads: {args.threads}  cores: {os.cpu_count()}")
    print(f"command: seq2seq-onnx convert SRC -o OUT  (wall {seconds:.1f} s, peak RSS {peak_mb:.0f} MB)")
    for name, size in result["files"].items():
        if name.endswith(".onnx"):
            print(f"  {name}: {size / 1e6:.1f} MB")
    ver = result["verification"]
    print(f"verification: {'passed' if ver['passed'] else 'FAILED'}; "
          + ", ".join(f"{c['name']} max|dlogit| {c['max_logits_diff']:.1e}" for c in ver["cases"]))


if __name__ == "__main__":
    main()
