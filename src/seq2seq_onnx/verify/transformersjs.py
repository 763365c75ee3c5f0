"""Run an export in real Transformers.js (Node), offline: the runtime where the repeated-token bug shows.

The Node side is `js/verify.mjs` with a `package.json` and lock file pinning
`@huggingface/transformers`; it is installed once with `npm ci` into a cache folder
(`$SEQ2SEQ_ONNX_NODE_DIR`, default `~/.cache/seq2seq-onnx/node`), with onnxruntime-node's
postinstall skipped (it would download CUDA libraries and fail offline; the CPU runtime ships in
the npm package itself).

Node is run with `Popen`, never killed outright while it can clean up: on any exception in the
caller (Ctrl-C, SIGTERM of this process, a timeout) it gets SIGTERM and a few seconds to close
Chromium and remove its profile folder (js/browser.mjs), then SIGKILL. Both scripts also exit by
themselves when this process dies (their parent changes).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
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


# The line of an uncaught error Node prints that holds the message: `ModelFileNotFoundError: ...`,
# `TypeError [ERR_INVALID_ARG_TYPE]: ...`, `Error: ...` (not the source line above it, such as
# `throw new ModelFileNotFoundError(`).
_ERROR_LINE = re.compile(r"^\w*Error(\s*\[[^\]]*\])?: ")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# What Node prints around the message: where it was thrown, the caret, the stack, the error's own
# properties, its version; Playwright's call log.
_NODE_NOISE = ("node:", "file://", "^", "triggerUncaught", "Node.js v", "at ", "{", "}", "log:", "name:", "status:",
               "code:", "Call log:", "- ", "(Use `node")
STOP_GRACE_SECONDS = 10  # how long Node gets to close Chromium and remove its folders after SIGTERM


def node_error_message(stderr: str) -> str:
    """The message of the error a Node script died of, from its stderr: the first `...Error: ` line,
    else the line after Node's `^` marker (errors that are not named ...Error, e.g. Playwright's
    `page.goto: net::ERR_...`), else the last line that is not Node's framing."""
    lines = [_ANSI.sub("", line).strip() for line in (stderr or "").splitlines()]
    lines = [line for line in lines if line]
    for line in lines:
        if _ERROR_LINE.match(line):
            return line
    for before, line in zip(lines, lines[1:]):
        if set(before) == {"^"} and not line.startswith(_NODE_NOISE):
            return line
    meaningful = [line for line in lines if not line.startswith(_NODE_NOISE)]
    return (meaningful or lines or ["no output"])[-1]


def _stop(proc: subprocess.Popen, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM, up to `grace` seconds to clean up (its output drained meanwhile), then SIGKILL."""
    try:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.communicate(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
            except (OSError, ValueError):  # pipes already closed by the interrupted communicate
                proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    finally:  # also when a second Ctrl-C lands while waiting
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _run_script(script: Path, request: dict, timeout: float, what: str, env=None) -> subprocess.CompletedProcess:
    """`node script` with `request` on stdin; stopped cleanly (`_stop`) whatever interrupts it.

    SIGTERM of this process is turned into an exception meanwhile (unless the program installed its
    own handler), so that a killed `verify` also stops Node and Chromium instead of orphaning them.
    """
    from ..outputs import interrupt_on_sigterm

    with interrupt_on_sigterm():
        proc = subprocess.Popen(["node", str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=script.parent, env=env)
        try:
            out, err = proc.communicate(json.dumps(request), timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(proc)
            raise RuntimeError(f"{what} did not finish within {timeout:.0f} s") from None
        except BaseException:
            _stop(proc)
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _run_node(request: dict, what: str) -> dict:
    target = ensure_installed()
    proc = _run_script(target / "verify.mjs", request, 600, f"Transformers.js (to {what})")
    if proc.returncode != 0:
        raise RuntimeError(f"Transformers.js could not {what}: {node_error_message(proc.stderr)}")
    return json.loads(proc.stdout)


def decode(folder, id_lists) -> list[str]:
    """Transformers.js's text for each list of ids, with the folder's tokenizer (special tokens skipped)."""
    request = {"folder": str(Path(folder).resolve()), "decode": [list(map(int, ids)) for ids in id_lists]}
    return _run_node(request, f"load the tokenizer of {folder}")["texts"]


def encode(folder, texts) -> list[list[int]]:
    """Transformers.js's input_ids for each text, with the folder's tokenizer (the template's special tokens added)."""
    return tokenizer_run(folder, texts=texts)["ids"]


def tokenizer_run(folder, texts=(), id_lists=(), translations=()) -> dict:
    """One Node run of the folder's tokenizer alone (no model): {"tokenizer_class" (the Transformers.js class it
    chose), "language_codes", "ids" (input_ids per text of `texts`), "texts" (per list of `id_lists`, special tokens
    skipped), "translations" (per {"text", "src_lang", "tgt_lang"} of `translations`: {"input_ids",
    "forced_bos_token_id"} as the translation pipeline builds them, in order, or {"error"})}."""
    request = {"folder": str(Path(folder).resolve()), "encode": list(texts),
               "decode": [list(map(int, ids)) for ids in id_lists], "translate": list(translations)}
    return _run_node(request, f"load the tokenizer of {folder}")


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
        # served from memory (no temporary file to leak when the server is killed)
        self.generated = {"/dtypes.json": json.dumps(dtypes).encode()}

    @staticmethod
    def url_path(url_path: str) -> str:
        from urllib.parse import unquote

        return unquote(url_path.split("?", 1)[0].split("#", 1)[0])

    def resolve(self, url_path: str) -> Path | None:
        path = self.url_path(url_path)
        if path in self.fixed:
            return self.fixed[path]
        prefix = "/models/model/"
        if path.startswith(prefix):
            target = (self.folder / path[len(prefix):]).resolve()
            if self.folder in target.parents and target.is_file():
                return target
        return None


def serve(node: Path, folder: Path, port: int = 0):
    """A local HTTP server (127.0.0.1 only) for the page, the library and the export; returns it started."""
    import io
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    files = _LocalFiles(node, folder)

    class Handler(SimpleHTTPRequestHandler):
        extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                          ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json"}

        def send_head(self):  # GET and HEAD; generated JSON from memory, everything else from its file
            body = files.generated.get(files.url_path(self.path))
            if body is None:
                return super().send_head()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            return io.BytesIO(body)

        def translate_path(self, path):
            found = files.resolve(path)
            return str(found) if found else "/nonexistent"

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def page_interaction(url: str, timeout_ms: int = 300000, **actions) -> dict:
    """Drive a page on 127.0.0.1 in headless Chromium (fill, select, click, wait, read); see js/browser.mjs."""
    chromium = _chromium()
    node = ensure_installed()
    proc = _run_script(node / "browser.mjs", {"url": url, "timeout_ms": timeout_ms, **actions},
                       timeout_ms / 1000 + 60, "the browser check", env={**os.environ, "CHROMIUM": chromium})
    if proc.returncode != 0:
        raise RuntimeError(f"the browser check could not run: {node_error_message(proc.stderr)}")
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
