"""The command line: clear errors, exit codes, nothing clobbered, old-tutorial entry point."""

import json
import os
import subprocess
import sys

import pytest

from seq2seq_onnx.cli import main


def run(capsys, *args):
    code = main(["convert", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def leftovers(parent):
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "name,hint",
    [("flan-t5-small", "google/flan-t5-small"), ("google/flan-t5-smal", "google/flan-t5-small"), ("t5-base", "google-t5/t5-base")],
)
def test_unknown_model_suggests_hub_id(capsys, tmp_path, name, hint):
    code, out, err = run(capsys, name, "-o", tmp_path / "out")
    assert code == 2
    assert f"did you mean {hint}?" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_missing_local_folder(capsys, tmp_path):
    code, _, err = run(capsys, "./no/such/model", "-o", tmp_path / "out")
    assert code == 2 and "no such folder" in err


def test_non_seq2seq_model_says_what_is_supported(capsys, tmp_path):
    from transformers import BertConfig

    bert = tmp_path / "bert"
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(bert)
    code, _, err = run(capsys, bert, "-o", tmp_path / "out")
    assert code == 2
    assert "'bert'" in err and "not an encoder-decoder" in err
    assert "Supported model types: t5, mt5, umt5" in err
    assert "Traceback" not in err


def test_existing_output_is_not_touched_without_overwrite(capsys, make_model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    code, _, err = run(capsys, make_model(), "-o", out)
    assert code == 2 and "--overwrite" in err
    assert (out / "mine.txt").read_text() == "keep me"

    code, stdout, _ = run(capsys, make_model(), "-o", out, "--overwrite")
    assert code == 0
    assert not (out / "mine.txt").exists()
    assert (out / "onnx" / "decoder_model_merged.onnx").is_file()
    assert "Verification: PASSED" in stdout and "onnx/decoder_model_merged.onnx" in stdout
    assert leftovers(tmp_path) == []


def test_output_over_or_inside_source_is_refused(capsys, make_model, tmp_path):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(make_model(), src)
    for target in (src, tmp_path, src / "onnx-out"):
        code, _, err = run(capsys, src, "-o", target, "--overwrite")
        assert code == 2 and "source checkpoint" in err
    assert (src / "config.json").is_file()


def test_json_output(capsys, make_model, tmp_path):
    code, stdout, _ = run(capsys, make_model(), "-o", tmp_path / "out", "--json", "--task", "text2text-generation")
    assert code == 0
    result = json.loads(stdout)
    assert result["verification"]["passed"] is True
    assert result["task"] == "text2text-generation-with-past"
    assert any("Transformers.js" in n for n in result["notes"])
    assert result["files"]["onnx/decoder_model_merged.onnx"] > 0


def test_verification_failure_exits_1_and_writes_nothing(capsys, make_model, tmp_path, monkeypatch):
    import seq2seq_onnx.verify as verify

    real = verify.onnx_greedy

    def off_by_one(*args, **kwargs):
        seq, logits = real(*args, **kwargs)
        seq[:, -1] = (seq[:, -1] + 1) % 7
        return seq, logits

    monkeypatch.setattr(verify, "onnx_greedy", off_by_one)
    code, stdout, err = run(capsys, make_model(), "-o", tmp_path / "out", "--json")
    assert code == 1
    assert "does not reproduce PyTorch" in err and "Traceback" not in err
    assert json.loads(stdout)["verification"]["passed"] is False
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path) == []


def test_interrupt_leaves_old_output_intact(capsys, make_model, tmp_path, monkeypatch):
    import seq2seq_onnx.convert as conv

    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous export")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(conv, "_write_configs", interrupted)
    code, _, err = run(capsys, make_model(), "-o", out, "--overwrite")
    assert code == 130 and "nothing was written" in err
    assert (out / "old.txt").read_text() == "previous export"
    assert leftovers(tmp_path) == []


def test_no_past_writes_decoder_model_only(capsys, make_model, tmp_path):
    code, stdout, _ = run(capsys, make_model(), "-o", tmp_path / "out", "--no-past")
    assert code == 0
    assert (tmp_path / "out" / "onnx" / "decoder_model.onnx").is_file()
    assert not (tmp_path / "out" / "onnx" / "decoder_model_merged.onnx").exists()
    assert "repeat" in stdout  # the warning says why this is not for Transformers.js


def _python(*args, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_old_tutorial_command(make_model, tmp_path):
    src = make_model()
    proc = _python(
        "-m", "seq2seq_onnx.convert", "--model_id", str(src), "--task", "text2text-generation-with-past",
        "--quantize", "--output_parent_dir", str(tmp_path / "models"), cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "models" / src.name
    assert (out / "onnx" / "encoder_model.onnx").is_file()
    assert (out / "onnx" / "decoder_model_merged.onnx").is_file()
    assert "Verification: PASSED" in proc.stdout
    assert "RuntimeWarning" not in proc.stderr

    # default parent is ./models/, and writing over the source is refused
    proc = _python("-m", "seq2seq_onnx.convert", "--model_id", str(out), "--output_parent_dir", str(out.parent), cwd=tmp_path)
    assert proc.returncode == 2 and "source checkpoint" in proc.stderr


def test_console_help(tmp_path):
    proc = _python("-m", "seq2seq_onnx", "convert", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    assert "--overwrite" in proc.stdout and "decoder_model_merged.onnx" in proc.stdout


def test_hub_id_from_local_cache_offline(make_model, tmp_path):
    """The real hub-loading path, fed from a Hugging Face cache laid out on disk (no network here)."""
    import shutil

    snapshot = tmp_path / "hub" / "models--testorg--tiny-flan-t5" / "snapshots" / "0123abcd"
    shutil.copytree(make_model(), snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abcd")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    proc = subprocess.run(
        [sys.executable, "-m", "seq2seq_onnx.convert", "--model_id", "testorg/tiny-flan-t5"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "models" / "testorg" / "tiny-flan-t5"
    assert (out / "onnx" / "decoder_model_merged.onnx").is_file()
    assert json.loads((out / "seq2seq_onnx.json").read_text())["source"] == "testorg/tiny-flan-t5"


@pytest.mark.parametrize("opset", [14, 20])
def test_other_opsets_convert_and_verify(capsys, make_model, tmp_path, opset):
    import onnx

    code, stdout, _ = run(capsys, make_model(), "-o", tmp_path / "out", "--opset", opset, "--json")
    assert code == 0 and json.loads(stdout)["verification"]["passed"]
    model = onnx.load(str(tmp_path / "out" / "onnx" / "decoder_model_merged.onnx"))
    assert {o.domain: o.version for o in model.opset_import}[""] == opset


def test_unsupported_opset_is_refused_before_work(capsys, make_model, tmp_path):
    code, _, err = run(capsys, make_model(), "-o", tmp_path / "out", "--opset", 7)
    assert code == 2 and "opset 7 is not supported; use 12 to 20" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_encoder_only_checkpoint_is_refused(capsys, tmp_path):
    """A T5EncoderModel checkpoint has a T5 config but no decoder weights: never export a random decoder."""
    from transformers import T5Config, T5EncoderModel

    folder = tmp_path / "encoder-only"
    T5EncoderModel(T5Config(vocab_size=64, d_model=16, d_ff=32, d_kv=4, num_heads=2, num_layers=1)).save_pretrained(folder)
    code, _, err = run(capsys, folder, "-o", tmp_path / "out", "--skip-validation")
    assert code == 2 and "encoder-only" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_folder_without_weights(capsys, make_model, tmp_path):
    import shutil

    folder = tmp_path / "config-only"
    folder.mkdir()
    shutil.copy(make_model() / "config.json", folder)
    code, _, err = run(capsys, folder, "-o", tmp_path / "out")
    assert code == 2 and "cannot load the weights" in err and "Traceback" not in err


def test_unexpected_failure_is_one_line_and_leaves_nothing(capsys, make_model, tmp_path, monkeypatch):
    import seq2seq_onnx.convert as conv

    def broken(*args, **kwargs):
        raise RuntimeError("something nobody foresaw\nwith a long second line")

    monkeypatch.setattr(conv, "_write_configs", broken)
    monkeypatch.delenv("SEQ2SEQ_ONNX_DEBUG", raising=False)
    code, _, err = run(capsys, make_model(), "-o", tmp_path / "models" / "org" / "name")
    assert code == 1
    assert "conversion failed unexpectedly (RuntimeError: something nobody foresaw)" in err
    assert "SEQ2SEQ_ONNX_DEBUG=1" in err and "Traceback" not in err
    assert not (tmp_path / "models").exists()  # no empty models/org/ left behind


def test_no_past_with_past_task_is_contradictory(capsys, make_model, tmp_path):
    code, _, err = run(capsys, make_model(), "-o", tmp_path / "out", "--no-past", "--task", "text2text-generation-with-past")
    assert code == 2 and "contradicts" in err
