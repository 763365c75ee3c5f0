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
    "Node.js 20+ and npm are needed to run Transformers.js (e.g. `apt-get install nodejs npm`, or "
    "https://nodejs.org); the npm packages are then installed once, offline-safe, into ~/.cache/seq2seq-onnx"
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
    for name in ("package.json", "package-lock.json", ".npmrc", "verify.mjs", "browser.mjs", "verify.html", "demo.html",
                 "local-env.mjs"):
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


def _decode_logits(rows: list[dict]) -> list[dict]:
    """The pages send each step's logits as base64 float32; make them numpy arrays [vocab]."""
    import base64

    import numpy as np

    for row in rows:
        row["logits"] = [np.frombuffer(base64.b64decode(step), dtype=np.float32) for step in row.get("logits") or []]
    return rows


def _run_node(request: dict, what: str) -> dict:
    target = ensure_installed()
    proc = subprocess.run(
        ["node", str(target / "verify.mjs")], input=json.dumps(request), cwd=target,
        capture_output=True, text=True, timeout=600,
    )
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        message = next((line for line in lines if "Error" in line), lines[-1] if lines else "no output")
        raise RuntimeError(f"Transformers.js could not {what}: {message.strip()}")
    return json.loads(proc.stdout)


def decode(folder, id_lists) -> list[str]:
    """Transformers.js's text for each list of ids, with the folder's tokenizer (special tokens skipped)."""
    request = {"folder": str(Path(folder).resolve()), "decode": [list(map(int, ids)) for ids in id_lists]}
    return _run_node(request, f"load the tokenizer of {folder}")["texts"]


def generate(folder, prompts, dtype: str = "fp32", max_new_tokens: int = 20, logits: bool = False) -> list[dict]:
    """Greedy generation in Transformers.js under Node, one prompt at a time.

    Returns [{prompt, input_ids, ids, text, logits}] per prompt: `text` is Transformers.js's own
    decoding of `ids` (special tokens skipped); `logits` (when asked) the raw next-token logits
    of each step, numpy float32 arrays [vocab] for the prompt's single row.
    """
    request = {"folder": str(Path(folder).resolve()), "dtype": dtype, "prompts": list(prompts),
               "max_new_tokens": max_new_tokens, "logits": logits}
    return _decode_logits(_run_node(request, f"run {folder} ({dtype})")["results"])


CHROMIUM_HELP = "Chromium is needed for the browser check (Debian: `apt-get install chromium`)"


def _chromium() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise TransformersJsUnavailable(CHROMIUM_HELP)
    return path


class _LocalFiles:
    """URL paths -> files: the page, Transformers.js's browser build, ONNX Runtime's WASM, the export."""

    def __init__(self, node: Path, folder: Path):
        modules = node / "node_modules"
        self.fixed = {
            "/": node / "demo.html",
            "/index.html": node / "demo.html",
            "/verify.html": node / "verify.html",
            "/lib/transformers.js": modules / "@huggingface" / "transformers" / "dist" / "transformers.js",
            "/lib/local-env.mjs": node / "local-env.mjs",
        }
        for name in ("ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm"):
            self.fixed[f"/lib/{name}"] = modules / "onnxruntime-web" / "dist" / name
        self.folder = folder.resolve()
        # the dtypes Transformers.js can load from this folder (both graphs present), for the page
        from ..runtime.sessions import DTYPE_SUFFIXES

        onnx_dir = self.folder / "onnx"
        dtypes = [d for d, sfx in DTYPE_SUFFIXES.items()
                  if (onnx_dir / f"encoder_model{sfx}.onnx").is_file() and (onnx_dir / f"decoder_model_merged{sfx}.onnx").is_file()]
        import tempfile

        handle, name = tempfile.mkstemp(prefix="seq2seq-onnx-dtypes-", suffix=".json")
        with os.fdopen(handle, "w") as f:
            json.dump(dtypes, f)
        self.dtypes_file = Path(name)

    def resolve(self, url_path: str) -> Path | None:
        from urllib.parse import unquote

        path = unquote(url_path.split("?", 1)[0])
        if path in self.fixed:
            return self.fixed[path]
        if path == "/dtypes.json":
            return self.dtypes_file
        prefix = "/models/model/"
        if path.startswith(prefix):
            target = (self.folder / path[len(prefix):]).resolve()
            if self.folder in target.parents and target.is_file():
                return target
        return None


def serve(node: Path, folder: Path, port: int = 0):
    """A local HTTP server (127.0.0.1 only) for the page, the library and the export; returns it started."""
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    files = _LocalFiles(node, folder)

    class Handler(SimpleHTTPRequestHandler):
        extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                          ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json"}

        def translate_path(self, path):
            found = files.resolve(path)
            return str(found) if found else "/nonexistent"

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        def server_close(self):
            super().server_close()
            files.dtypes_file.unlink(missing_ok=True)

    try:
        server = Server(("127.0.0.1", port), Handler)
    except BaseException:
        files.dtypes_file.unlink(missing_ok=True)
        raise
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def page_interaction(url: str, timeout_ms: int = 300000, **actions) -> dict:
    """Drive a page on 127.0.0.1 in headless Chromium (fill, select, click, wait, read); see js/browser.mjs."""
    chromium = _chromium()
    node = ensure_installed()
    proc = subprocess.run(
        ["node", str(node / "browser.mjs")], input=json.dumps({"url": url, "timeout_ms": timeout_ms, **actions}),
        cwd=node, capture_output=True, text=True, timeout=timeout_ms / 1000 + 60, env={**os.environ, "CHROMIUM": chromium},
    )
    if proc.returncode != 0:
        noise = ("node:", "^", "triggerUncaught", "Node.js", "at ", "}", "log:", "name:")
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip() and not line.strip().startswith(noise)]
        raise RuntimeError(f"the browser check could not run: {lines[0] if lines else 'no output'}")
    return json.loads(proc.stdout)


def browser_generate(folder, prompts, dtype: str = "fp32", max_new_tokens: int = 20, logits: bool = False) -> dict:
    """Greedy generation in headless Chromium (Transformers.js browser build, WASM):
    {"results": [{prompt, input_ids, ids, text, logits}], "ms_per_token": float, "blocked": [urls]}
    (rows as `generate` gives them; ms_per_token includes recording the logits when asked)."""
    from urllib.parse import urlencode

    node = ensure_installed()
    server = serve(node, Path(folder))
    try:
        query = urlencode({"dtype": dtype, "max_new_tokens": max_new_tokens, "prompts": json.dumps(list(prompts)),
                           "logits": "1" if logits else "0"})
        data = page_interaction(f"http://127.0.0.1:{server.server_address[1]}/verify.html?{query}")
    finally:
        server.shutdown()
        server.server_close()
    result = data["result"]
    if "error" in result:
        raise RuntimeError(f"Transformers.js failed in the browser: {result['error'].splitlines()[0]}")
    result["blocked"] = data.get("blocked", [])
    if result["blocked"]:
        raise RuntimeError(f"the page tried to leave 127.0.0.1: {', '.join(result['blocked'][:3])}")
    _decode_logits(result["results"])
    return result


if __name__ == "__main__":
    print(ensure_installed(quiet=False))
