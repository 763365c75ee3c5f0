"""Run an export in real Transformers.js (Node), offline: the runtime where the repeated-token bug shows.

The Node side is `js/verify.mjs` with a `package.json` and lock file pinning
`@huggingface/transformers`; it is installed once with `npm ci` into a cache folder
(`$SEQ2SEQ_ONNX_NODE_DIR`, default `~/.cache/seq2seq-onnx/node`), with onnxruntime-node's
postinstall skipped (it would download CUDA libraries and fail offline; the CPU runtime ships in
the npm package itself).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

JS_DIR = Path(__file__).parent / "js"
NODE_HELP = (
    "Node.js 20+ and npm are needed to verify in Transformers.js (e.g. `apt-get install nodejs npm`, "
    "or https://nodejs.org); verifying in Python ONNX Runtime only"
)


class TransformersJsUnavailable(RuntimeError):
    """Node, npm or the npm packages are not available; the message says how to get them."""


def node_dir() -> Path:
    lock_hash = hashlib.sha256((JS_DIR / "package-lock.json").read_bytes()).hexdigest()[:12]
    base = os.environ.get("SEQ2SEQ_ONNX_NODE_DIR")
    return Path(base) if base else Path.home() / ".cache" / "seq2seq-onnx" / f"node-{lock_hash}"


def ensure_installed(quiet: bool = True) -> Path:
    """The folder with verify.mjs and its node_modules, installing them with `npm ci` if needed."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise TransformersJsUnavailable(NODE_HELP)
    target = node_dir()
    marker = target / "node_modules" / "@huggingface" / "transformers" / "package.json"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json", ".npmrc", "verify.mjs"):
        shutil.copyfile(JS_DIR / name, target / name)
    if not marker.is_file():
        env = {**os.environ, "ONNXRUNTIME_NODE_INSTALL": "skip"}
        proc = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=target, env=env, capture_output=quiet, text=True, timeout=1200
        )
        if proc.returncode != 0:
            detail = (proc.stderr or "").strip().splitlines()[-1:] if quiet else []
            raise TransformersJsUnavailable(f"npm ci failed in {target}: {' '.join(detail)}")
    return target


def generate(folder, prompts, dtype: str = "fp32", max_new_tokens: int = 20) -> list[dict]:
    """Greedy generation in Transformers.js: [{prompt, input_ids, ids}] per prompt."""
    target = ensure_installed()
    request = {"folder": str(Path(folder).resolve()), "dtype": dtype, "prompts": list(prompts),
               "max_new_tokens": max_new_tokens}
    proc = subprocess.run(
        ["node", str(target / "verify.mjs")], input=json.dumps(request), cwd=target,
        capture_output=True, text=True, timeout=600,
    )
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        message = next((line for line in lines if "Error" in line), lines[-1] if lines else "no output")
        raise RuntimeError(f"Transformers.js could not run {folder} ({dtype}): {message.strip()}")
    return json.loads(proc.stdout)["results"]


if __name__ == "__main__":
    print(ensure_installed(quiet=False))
