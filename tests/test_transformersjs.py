"""The proof in real Transformers.js (Node, offline): every family, every dtype, and the motivating bug."""

import json
import os
import shutil
from pathlib import Path

import pytest

from seq2seq_onnx.cli import main
from seq2seq_onnx.convert import convert

from cases import NOT_IN_TRANSFORMERSJS, transformersjs_cases

if shutil.which("node") is None:
    if os.environ.get("CI"):
        pytest.fail("Node.js is required in CI for the Transformers.js tests", pytrace=False)
    pytest.skip("Node.js not installed", allow_module_level=True)


pytestmark = pytest.mark.usefixtures("node_packages")


@pytest.mark.parametrize("case", list(transformersjs_cases()))
def test_every_family_in_both_runtimes(family_export, case):
    from seq2seq_onnx.verify import transformersjs_check
    from seq2seq_onnx.export.source import load_model, resolve_source

    src, out, result = family_export(case)
    check = transformersjs_check(out, load_model(resolve_source(str(src))), probe=result.verification.strength.probe)
    assert check.passed and check.exact and check.logits_ok and check.text_ok, check
    assert all(len(c["ids"]) > 2 for c in check.cases[:2])


@pytest.mark.parametrize("variant", sorted(NOT_IN_TRANSFORMERSJS))
def test_model_types_transformersjs_lacks_are_reported_not_failed(make_model, tmp_path, capsys, variant):
    """Transformers.js 4.3.1 has no umt5 and no pegasus: the export is made (for ONNX Runtime) and every command says so."""
    result = convert(str(make_model(variant)), tmp_path / "out", progress=False, transformersjs=True)
    assert result.verification.passed and result.transformersjs is None
    assert any(f"does not know model_type '{variant}'" in n for n in result.notes)
    assert main(["inspect", str(tmp_path / "out")]) == 1
    assert "Transformers.js (4.3.1) does not support" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "out")]) == 0  # checked in Python, with a note
    out = capsys.readouterr().out
    assert f"does not support model_type '{variant}'; checked in Python ONNX Runtime only" in out
    assert main(["verify", str(tmp_path / "out"), "--runtime", "transformers.js"]) == 2


def test_verify_command_every_dtype(tmp_path, capsys):
    demo = Path(__file__).resolve().parents[1] / "demo" / "t5-demo"
    out = tmp_path / "t5-demo"
    convert(str(demo), out, progress=False, quantize=["q8", "q4", "fp16"])
    assert main(["verify", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    checks = {(c["dtype"], c["runtime"]): c for c in result["checks"]}
    runtimes = ("python", "transformers.js") + (("browser",) if shutil.which("chromium") else ())
    assert set(checks) == {(d, r) for d in ("fp32", "q8", "q4", "fp16") for r in runtimes}
    assert checks[("fp32", "python")]["exact"] and checks[("fp32", "transformers.js")]["exact"]
    assert all(c["passed"] and not c["error"] for c in checks.values())


def test_the_repeated_token_bug_reproduced(make_model, tmp_path, capsys):
    """Export without past, renamed to the merged name as people did: right first token, then wrong."""
    from seq2seq_onnx.verify import transformersjs

    src = make_model("flan-t5")
    folder = tmp_path / "bug"
    convert(str(src), folder, no_past=True, progress=False)
    shutil.copy(folder / "onnx" / "decoder_model.onnx", folder / "onnx" / "decoder_model_merged.onnx")

    good = tmp_path / "good"
    convert(str(src), good, progress=False)
    prompt = "translate English to German: The house is wonderful."
    (expected,) = transformersjs.generate(good, [prompt])
    (broken,) = transformersjs.generate(folder, [prompt])
    assert broken["ids"][:2] == expected["ids"][:2]  # token 1 is right ...
    assert broken["ids"] != expected["ids"]  # ... then it goes wrong

    assert main(["verify", str(folder), "--runtime", "transformers.js", "--dtype", "fp32"]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert main(["inspect", str(folder)]) == 1
    assert "no past_key_values inputs" in capsys.readouterr().out


def test_quantized_variants_checked_in_transformersjs(converted, tmp_path, monkeypatch):
    """Each variant is run in Transformers.js before it is kept; one it cannot run is not written."""
    from seq2seq_onnx.verify import transformersjs
    from seq2seq_onnx.quantize import quantize_folder

    folder = tmp_path / "model"
    shutil.copytree(converted, folder)
    calls = []
    real = transformersjs.generate

    def spy(path, prompts, dtype="fp32", max_new_tokens=20):
        calls.append(dtype)
        if dtype == "bnb4":
            raise RuntimeError("Transformers.js could not run it (simulated)")
        return real(path, prompts, dtype, max_new_tokens)

    monkeypatch.setattr(transformersjs, "generate", spy)
    reports = quantize_folder(folder, ["q8", "bnb4"], transformersjs=True)
    assert calls == ["q8", "bnb4"]
    assert [r.kept for r in reports] == [True, False]
    assert "Transformers.js cannot run it" in reports[1].reason
    assert not list((folder / "onnx").glob("*_bnb4.onnx"))


def test_node_error_names_the_missing_file(converted, tmp_path):
    """Node prints the throwing source line (`throw new ModelFileNotFoundError(`) before the message: report the message."""
    from seq2seq_onnx.verify import transformersjs

    folder = tmp_path / "no-merged"
    shutil.copytree(converted, folder)
    (folder / "onnx" / "decoder_model_merged.onnx").rename(folder / "onnx" / "decoder_model.onnx")
    with pytest.raises(RuntimeError) as caught:
        transformersjs.generate(folder, ["hello"], max_new_tokens=3)
    message = str(caught.value)
    assert "ModelFileNotFoundError: " in message and "throw new" not in message
    assert str(folder / "onnx" / "decoder_model_merged.onnx") in message


def test_node_error_message_forms():
    from seq2seq_onnx.verify.transformersjs import node_error_message

    thrown = ("file:///x/transformers.node.mjs:7554\n          throw new ModelFileNotFoundError(\n                ^\n\n"
              "ModelFileNotFoundError: file was not found locally at \"/m/onnx/decoder_model_merged.onnx\".\n"
              "    at loadResourceFile (file:///x/transformers.node.mjs:7554:17) {\n  status: null\n}\n\nNode.js v20.20.2\n")
    assert node_error_message(thrown).startswith("ModelFileNotFoundError: file was not found locally")
    coded = "node:internal/x:1\n  throw err;\n  ^\n\nTypeError [ERR_INVALID_ARG_TYPE]: bad path\n    at f (x:1:1)\n"
    assert node_error_message(coded) == "TypeError [ERR_INVALID_ARG_TYPE]: bad path"
    playwright = ("node:internal/modules/run_main:123\n    triggerUncaughtException(\n    ^\n\n"
                  "page.goto: net::ERR_CONNECTION_REFUSED at http://127.0.0.1:9/\nCall log:\n"
                  "\x1b[2m  - navigating to \"http://127.0.0.1:9/\"\x1b[22m\n\n    at /x/browser.mjs:37:14 {\n"
                  "  name: 'Error'\n}\n\nNode.js v20.20.2\n")
    assert node_error_message(playwright) == "page.goto: net::ERR_CONNECTION_REFUSED at http://127.0.0.1:9/"
    assert node_error_message("something odd\nthe real reason\n\nNode.js v20.20.2\n") == "the real reason"
    assert node_error_message("") == "no output"


def test_stopping_a_node_check_stops_node(converted, tmp_path):
    """SIGTERM of the Python process during a Node run: Node is stopped before Python exits, not orphaned."""
    import signal
    import subprocess
    import sys
    import time

    private = tmp_path / "tmp"
    private.mkdir()
    marker = f"TMPDIR={private}".encode()

    def ours():
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and marker in (entry / "environ").read_bytes().split(b"\0") \
                        and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    code = ("import sys; from seq2seq_onnx.verify.transformersjs import generate; "
            "generate(sys.argv[1], ['translate English to German: hello'] * 200, max_new_tokens=200)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(converted)], env={**os.environ, "TMPDIR": str(private)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(ours()) < 2:  # Python and Node
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "Node did not start"
            time.sleep(0.05)
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert ours() == []
    assert proc.returncode != 0 and "Terminated" in err


def test_a_script_that_ignores_sigterm_is_killed():
    import subprocess
    import time

    from seq2seq_onnx.verify.transformersjs import _stop

    proc = subprocess.Popen(["bash", "-c", "trap '' TERM; echo ready; sleep 60"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    started = time.monotonic()
    _stop(proc, grace=0.5)
    assert proc.returncode == -9 and time.monotonic() - started < 10
