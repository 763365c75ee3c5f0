"""Verification that can fail: a lost cache is caught even when the model repeats one token, and says so when it cannot be.

Fixtures: `degenerate="repeat"` answers every prompt with one token (ids cannot reveal a lost
cache, logits can); `degenerate="constant"` has logits that ignore everything (nothing can). The
broken export is the classic one: a decoder without past, renamed to decoder_model_merged.onnx.
"""

import json
import os
import shutil

import numpy as np
import pytest

from seq2seq_onnx import verify
from seq2seq_onnx.verify import folder as verify_folder_module
from seq2seq_onnx.verify import ort, reference
from seq2seq_onnx.cli import main
from seq2seq_onnx.convert import convert
from seq2seq_onnx.testing import REPEATED_TOKEN


def _require(runtime: str) -> None:
    missing = shutil.which("node") is None or (runtime == "browser" and shutil.which("chromium") is None)
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{runtime} is required in CI", pytrace=False)
        pytest.skip(f"{runtime} not installed")


def _renamed_no_past(src, folder):
    convert(str(src), folder, no_past=True, progress=False)
    shutil.copy(folder / "onnx" / "decoder_model.onnx", folder / "onnx" / "decoder_model_merged.onnx")
    (folder / "onnx" / "decoder_model.onnx").unlink()
    return folder


def _degenerate(make_model, tmp_path_factory, kind: str):
    """(checkpoint, its conversion result, the broken export) for build_model(degenerate=kind)."""
    src = make_model("flan-t5", degenerate=kind)
    base = tmp_path_factory.mktemp(kind)
    good = convert(str(src), base / "good", progress=False)
    return src, good, _renamed_no_past(src, base / "broken")


@pytest.fixture(scope="module")
def repeater(make_model, tmp_path_factory):
    return _degenerate(make_model, tmp_path_factory, "repeat")


@pytest.fixture(scope="module")
def constant(make_model, tmp_path_factory):
    return _degenerate(make_model, tmp_path_factory, "constant")


def _pytorch(src):
    from transformers import AutoModelForSeq2SeqLM

    return AutoModelForSeq2SeqLM.from_pretrained(src, attn_implementation="eager").eval()


def test_history_dependence():
    assert verify.history_dependent([[0, 5, 6, 5, 7]], eos_ids={1})
    assert not verify.history_dependent([[0, 5, 5, 5, 5], [0, 6, 6]], eos_ids={1})
    assert not verify.history_dependent([[0, 5, 1, 5, 6]], eos_ids={1})  # after EOS nothing counts


def test_repeating_model_is_verified_through_its_logits(repeater):
    _, good, _ = repeater
    report = good.verification
    assert all(set(ids[1:]) == {REPEATED_TOKEN} for case in report.cases for ids in case.reference_ids)
    assert not report.strength.history_dependent  # its ids cannot tell a lost cache ...
    assert report.strength.lost_cache_diff > 10 * report.strength.tolerance  # ... its logits can
    assert report.verdict == "PASSED"


def test_renamed_no_past_decoder_fails_at_conversion_checks(repeater, monkeypatch):
    src, _, broken = repeater
    model = _pytorch(src)
    report = verify.verify_export(broken, model)
    assert report.verdict == "FAILED" and "no past_key_values inputs" in report.structure_problem

    # And without the structure check, the comparison itself catches it: same ids, other logits.
    monkeypatch.setattr(ort, "merged_decoder_problem", lambda *a: None)
    report = verify.verify_export(broken, model)
    assert report.verdict == "FAILED"
    assert all(c.tokens_match for c in report.cases) and not any(c.logits_match for c in report.cases)


@pytest.mark.parametrize("runtime", ["python", "transformers.js", "browser"])
def test_verify_never_passes_a_renamed_no_past_decoder(repeater, capsys, monkeypatch, runtime):
    if runtime != "python":
        _require(runtime)
    _, _, broken = repeater
    assert main(["verify", str(broken), "--runtime", runtime, "--dtype", "fp32"]) == 1
    out = capsys.readouterr().out
    assert "no past_key_values inputs" in out and "verification FAILED" in out and "PASSED" not in out

    # the runtime's own comparison fails too, by the step logits (its ids equal PyTorch's)
    monkeypatch.setattr(verify_folder_module, "merged_decoder_problem", lambda *a: None)
    result = verify.verify_folder(broken, dtypes=["fp32"], runtimes=[runtime])
    (check,) = result.checks
    assert check.exact and check.logits_ok is False and not check.passed, check
    assert result.verdict == "FAILED"


def test_model_that_ignores_history_gives_inconclusive_never_passed(constant, capsys):
    _, good, broken = constant
    assert good.verification.passed and good.verification.verdict == "INCONCLUSIVE"
    assert any("cannot tell a lost cache" in n for n in good.notes)
    assert main(["verify", str(good.output), "--runtime", "python"]) == 3
    out = capsys.readouterr().out
    assert "verification INCONCLUSIVE" in out and "PASSED" not in out
    assert main(["verify", str(broken), "--runtime", "python"]) == 1


def test_probe_prompts_strengthen_a_weak_reference(make_model, converted):
    """Prompts whose answers repeat one token are topped up with a probe whose answer depends on history."""
    model = _pytorch(make_model())
    tokenizer = reference.load_prompts_tokenizer(converted)
    probes = reference.probe_prompts(tokenizer)
    assert len(set(probes)) == len(probes) > 3
    weak = {"x": verify.Reference(np.array([[5, 1]]), [0, 9, 9, 9], [np.zeros(model.config.vocab_size)] * 3, 20)}
    strength = verify.assess_strength(model, tokenizer, weak, 20)
    assert strength.history_dependent and strength.probe in weak
    assert weak[strength.probe].max_new_tokens == 40


def test_decoded_text_compared_in_transformersjs(converted, tmp_path, capsys):
    """transformers 5 keeps ' ?' unless clean_up_tokenization_spaces is true; Transformers.js drops it when the key is absent."""
    _require("transformers.js")
    from transformers import AutoTokenizer

    from seq2seq_onnx.verify import transformersjs

    cfg = json.loads((converted / "tokenizer_config.json").read_text())
    assert cfg["clean_up_tokenization_spaces"] is False  # written explicitly
    tokenizer = AutoTokenizer.from_pretrained(converted)
    ids = tokenizer.convert_tokens_to_ids(["▁", "?", "▁", "?"])
    assert tokenizer.decode(ids) == "? ?"

    folder = tmp_path / "no-key"
    shutil.copytree(converted, folder)
    del cfg["clean_up_tokenization_spaces"]
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    # The reported fault, reproduced: without the key Transformers.js drops the space, transformers does not ...
    assert transformersjs.decode(folder, [ids]) == ["??"]
    assert AutoTokenizer.from_pretrained(folder).decode(ids) == "? ?"
    # ... with the key written explicitly, both agree (and so does our runtime)
    assert transformersjs.decode(converted, [ids]) == ["? ?"]

    # verification compares the text, and says what differs
    check = verify.RuntimeCheck(dtype="fp32", runtime="transformers.js",
                                cases=[{"prompt": "p", "reference_ids": [0, *ids], "ids": [0, *ids], "text": "??"}])
    verify_folder_module._score(check, "fp32", None, verify_folder_module._transformers_decoder(folder))
    assert not check.passed and check.text_ok is False
    assert "'??'" in check.failure() and "'? ?'" in check.failure()


def test_verify_says_what_is_missing(converted, tmp_path, capsys, monkeypatch):
    assert main(["verify", str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err

    folder = tmp_path / "no-tokenizer"
    shutil.copytree(converted, folder)
    (folder / "tokenizer.json").unlink()
    assert main(["verify", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"{folder / 'tokenizer.json'} is missing" in err and "os error" not in err

    # Transformers.js asked for alone, without Node: a clear error, not "verifying in Python only"
    import seq2seq_onnx.verify.transformersjs as tjs

    monkeypatch.setattr(tjs.shutil, "which", lambda name: None)
    assert main(["verify", str(converted), "--runtime", "transformers.js"]) == 2
    err = capsys.readouterr().err
    assert "cannot verify in transformers.js: Node.js 20+ and npm are needed" in err
    assert "Python ONNX Runtime only" not in err


def test_verify_checks_the_exports_config_against_the_reference(converted, tmp_path, capsys):
    """Python ONNX Runtime never reads config.json; Transformers.js sizes its cache from it."""
    folder = tmp_path / "wrong-config"
    shutil.copytree(converted, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(num_decoder_layers=1, num_heads=1)
    (folder / "config.json").write_text(json.dumps(config))
    assert main(["verify", str(folder), "--runtime", "python"]) == 1
    out = capsys.readouterr().out
    assert "problem: config.json describes a decoder cache" in out and "verification FAILED" in out


def test_inconclusive_conversion_exits_3(constant, tmp_path, capsys):
    src, _, _ = constant
    assert main(["convert", str(src), "-o", str(tmp_path / "out")]) == 3
    out = capsys.readouterr().out
    assert "Verification: INCONCLUSIVE" in out and (tmp_path / "out" / "onnx" / "decoder_model_merged.onnx").is_file()


def test_ctrl_c_at_any_moment_is_an_interruption_not_a_traceback(monkeypatch, capsys):
    import seq2seq_onnx.cli as cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert main(["inspect", "x"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_verify_without_node_still_says_what_transformersjs_will_refuse(converted, tmp_path, capsys, monkeypatch):
    """IR 14 runs in Python ONNX Runtime 1.32, not in Transformers.js: without Node, verify must not call it PASSED."""
    import onnx

    import seq2seq_onnx.verify.transformersjs as tjs

    folder = tmp_path / "ir14"
    shutil.copytree(converted, folder)
    path = folder / "onnx" / "encoder_model.onnx"
    model = onnx.load(str(path))
    model.ir_version = 14
    onnx.save(model, str(path))
    monkeypatch.setattr(tjs.shutil, "which", lambda name: None)
    assert main(["verify", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "problem: inspect: encoder_model.onnx has IR version 14" in out and "verification FAILED" in out
    assert "fp32   python           ok" in out  # the Python side itself is fine
