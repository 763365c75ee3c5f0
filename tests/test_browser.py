"""The last proof in a real browser: headless Chromium (Debian's), Transformers.js on WASM, offline."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seq2seq_onnx.cli import main
from seq2seq_onnx.convert import convert

from cases import BROWSER_CASES

if shutil.which("chromium") is None or shutil.which("node") is None:
    if os.environ.get("CI"):
        pytest.fail("Chromium and Node.js are required in CI for the browser tests", pytrace=False)
    pytest.skip("Chromium or Node.js not installed", allow_module_level=True)

DEMO = Path(__file__).resolve().parents[1] / "demo" / "t5-demo"


pytestmark = pytest.mark.usefixtures("node_packages")


@pytest.mark.parametrize("case", BROWSER_CASES)
def test_every_family_fp32_in_the_browser(family_export, capsys, case):
    _, out, _ = family_export(case)
    assert main(["verify", str(out), "--runtime", "browser", "--dtype", "fp32", "--json"]) == 0
    (check,) = json.loads(capsys.readouterr().out)["checks"]
    assert check["runtime"] == "browser" and check["exact"] and check["logits_ok"] and check["ms_per_token"] > 0


# Tied input/output embeddings: q8 / int8 / uint8 quantize the embedding Gather shared with the output projection,
# the pattern behind ONNX Runtime's "Missing required scale" fault (families.md).
TIED_CASES = ["t5", "bart", "mbart50", "m2m100", "nllb", "marian"]


@pytest.mark.parametrize("case", TIED_CASES)
def test_every_dtype_of_tied_families_in_the_browser(family_quantized, capsys, case):
    from seq2seq_onnx.quantize import MODES

    folder, _ = family_quantized(case)
    assert main(["verify", str(folder), "--runtime", "browser", "--json"]) == 0
    checks = json.loads(capsys.readouterr().out)["checks"]
    assert sorted(c["dtype"] for c in checks) == sorted(["fp32", *MODES])
    for check in checks:
        assert check["runtime"] == "browser" and check["passed"] and not check["error"], check
    assert [c["exact"] for c in checks if c["dtype"] == "fp32"] == [True]


def test_quantized_dtype_reported_in_the_browser(tmp_path, capsys):
    out = tmp_path / "t5-demo"
    convert(str(DEMO), out, progress=False, quantize=["q8"])
    assert main(["verify", str(out), "--runtime", "browser", "--dtype", "q8", "--json"]) == 0
    (check,) = json.loads(capsys.readouterr().out)["checks"]
    assert check["passed"] and check["agreement"] is not None and not check["error"]


def test_demo_page_types_clicks_and_streams(tmp_path):
    from seq2seq_onnx.verify import transformersjs

    out = tmp_path / "t5-demo"
    convert(str(DEMO), out, progress=False, quantize=["q8"])
    server = transformersjs.serve(transformersjs.ensure_installed(), out)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        answer = transformersjs.page_interaction(
            url, fill={"selector": "#prompt", "text": "normalize date: 3rd of March 2021"},
            select={"selector": "#dtype", "value": "q8"}, click="#go", wait="#output[data-done]", read="#output",
        )
        status = transformersjs.page_interaction(url, click="#go", wait="#output[data-done]", read="#status")
    finally:
        server.shutdown()
        server.server_close()
    assert answer["result"] == "2021-03-03"
    assert answer["blocked"] == [] and answer["errors"] == []
    assert "tokens/s" in status["result"]


def test_requests_leaving_localhost_are_caught(tmp_path):
    """A page that reaches for the internet is stopped, and the attempt is reported."""
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from seq2seq_onnx.verify import transformersjs

    (tmp_path / "index.html").write_text(
        "<pre id=result></pre><script>fetch('https://cdn.example.com/lib.js').catch(() => 0)"
        ".finally(() => { result.textContent = '{}'; result.dataset.done = 1; });</script>"
    )
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        data = transformersjs.page_interaction(f"http://127.0.0.1:{server.server_address[1]}/index.html")
    finally:
        server.shutdown()
        server.server_close()
    assert data["blocked"] == ["https://cdn.example.com/lib.js"]


def test_dtype_list_served_from_memory(converted, node_packages, tmp_path, monkeypatch):
    """The page's dtype list is not a temporary file (one leaked whenever `serve` was killed)."""
    import tempfile
    from urllib.request import Request, urlopen

    from seq2seq_onnx.verify import transformersjs

    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    server = transformersjs.serve(node_packages, converted)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert list(private.iterdir()) == []
        with urlopen(f"{base}/dtypes.json?x=1", timeout=30) as answer:
            assert json.loads(answer.read()) == ["fp32"]
            assert answer.headers["Content-Type"] == "application/json"
        with urlopen(Request(f"{base}/dtypes.json", method="HEAD"), timeout=30) as answer:
            assert answer.status == 200 and answer.read() == b""
        with urlopen(f"{base}/models/model/config.json", timeout=30) as answer:  # files still served from disk
            assert json.loads(answer.read())["model_type"] == "t5"
    finally:
        server.shutdown()
        server.server_close()
    assert list(private.iterdir()) == []


def _processes_with(variable: str) -> list[int]:
    """PIDs of live processes whose environment holds `variable` (e.g. our private TMPDIR=...)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if variable.encode() in environ and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c", "sigkill"])
def test_stopping_a_browser_check_leaves_nothing_behind(converted, node_packages, tmp_path, how):
    """SIGTERM of the Python process (or Ctrl-C: SIGINT to its process group) in the middle of
    browser_generate: Chromium is closed and its profile folders removed before Python exits. Python
    killed outright (SIGKILL): browser.mjs notices its parent is gone and does the same by itself."""
    private = tmp_path / "tmp"
    private.mkdir()
    marker = f"TMPDIR={private}"
    code = ("import sys; from seq2seq_onnx.verify.transformersjs import browser_generate; "
            "browser_generate(sys.argv[1], ['translate English to German: hello'] * 50, max_new_tokens=200)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(converted)], env={**os.environ, "TMPDIR": str(private)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        # Chromium runs (a process with our TMPDIR besides Python and Node) and its profile folder exists
        while not (list(private.glob("seq2seq-onnx-chromium-*")) and len(_processes_with(marker)) > 2):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "Chromium did not start"
            time.sleep(0.05)
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: Python and Node get SIGINT
        else:
            proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def left():
        return sorted(p.name for p in private.iterdir() if p.name.startswith(("seq2seq-onnx-chromium-", "playwright")))

    # cleaned up before Python exits; without Python, browser.mjs checks for its parent twice a second
    deadline = time.monotonic() + (15 if how == "sigkill" else 0)
    while left() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left() == []
    deadline = time.monotonic() + 5  # Chromium's helper processes may take a moment after the browser exits
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_with(marker) == []
    if how != "sigkill":
        assert proc.returncode != 0 and ("Terminated" if how == "sigterm" else "KeyboardInterrupt") in err
