"""The last proof in a real browser: headless Chromium (Debian's), Transformers.js on WASM, offline."""

import json
import os
import shutil
from pathlib import Path

import pytest

from seq2seq_onnx.cli import main
from seq2seq_onnx.convert import convert

if shutil.which("chromium") is None or shutil.which("node") is None:
    if os.environ.get("CI"):
        pytest.fail("Chromium and Node.js are required in CI for the browser tests", pytrace=False)
    pytest.skip("Chromium or Node.js not installed", allow_module_level=True)

DEMO = Path(__file__).resolve().parents[1] / "demo" / "t5-demo"


pytestmark = pytest.mark.usefixtures("node_packages")


FAMILIES = {
    "t5": ("t5", {}),
    "flan-t5": ("flan-t5", {}),
    "mt5": ("mt5", {}),
    "decoder layers != encoder layers": ("flan-t5", {"num_layers": 2, "num_decoder_layers": 3}),
}


@pytest.mark.parametrize("variant,config", list(FAMILIES.values()), ids=list(FAMILIES))
def test_every_family_fp32_in_the_browser(make_model, tmp_path, capsys, variant, config):
    out = tmp_path / "out"
    convert(str(make_model(variant, **config)), out, progress=False)
    assert main(["verify", str(out), "--runtime", "browser", "--json"]) == 0
    (check,) = json.loads(capsys.readouterr().out)["checks"]
    assert check["runtime"] == "browser" and check["exact"] and check["ms_per_token"] > 0


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
