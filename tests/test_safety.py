"""Nothing lost: --overwrite replaces only earlier exports, files follow the umask, interrupts leave no debris."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seq2seq_onnx.cli import main
from seq2seq_onnx.convert import convert


def run(capsys, *args):
    code = main(["convert", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def debris(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def previous_export(make_model, tmp_path_factory):
    """An earlier export of the tiny model, copied into each test that replaces it."""
    out = tmp_path_factory.mktemp("previous") / "export"
    convert(str(make_model()), out, progress=False)
    return out


def copy_of(folder: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(folder, dest)
    return dest


def test_overwrite_refuses_a_folder_with_files_we_did_not_write(capsys, make_model, tmp_path, monkeypatch):
    """The reported case: `mkdir s && cd s && echo x > notes.txt && convert ... -o . --overwrite`."""
    work = tmp_path / "s"
    work.mkdir()
    (work / "notes.txt").write_text("x")
    monkeypatch.chdir(work)
    code, _, err = run(capsys, make_model(), "-o", ".", "--overwrite")
    assert code == 2
    assert "--overwrite refused" in err and "current working directory" in err
    assert (work / "notes.txt").read_text() == "x" and Path.cwd() == work

    # the same folder named from outside: not an export of ours, and the message names what would be lost
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, make_model(), "-o", work, "--overwrite")
    assert code == 2 and "not an export of seq2seq-onnx" in err and "notes.txt" in err
    assert (work / "notes.txt").read_text() == "x"
    assert debris(tmp_path) == []


def test_overwrite_refuses_an_export_holding_a_file_of_the_user(capsys, make_model, previous_export, tmp_path):
    out = copy_of(previous_export, tmp_path / "out")
    (out / "onnx" / "my_notes.md").write_text("mine")
    code, _, err = run(capsys, make_model(), "-o", out, "--overwrite")
    assert code == 2 and "onnx/my_notes.md" in err and "did not write" in err
    assert (out / "onnx" / "my_notes.md").read_text() == "mine"


def test_overwrite_refuses_home_and_parents_of_the_working_directory(capsys, make_model, tmp_path, monkeypatch):
    from seq2seq_onnx.outputs import _protected

    home = tmp_path / "home"
    (home / "project").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home / "project")
    code, _, err = run(capsys, make_model(), "-o", home, "--overwrite")
    assert code == 2 and "contains the current working directory" in err
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, make_model(), "-o", home, "--overwrite")
    assert code == 2 and "is a home folder" in err
    assert (home / "project").is_dir()
    assert _protected(Path("/")) == "is a filesystem root"


def test_overwrite_replaces_an_earlier_export_and_an_empty_folder(capsys, make_model, previous_export, tmp_path):
    out = copy_of(previous_export, tmp_path / "out")
    code, stdout, _ = run(capsys, make_model(), "-o", out, "--overwrite")
    assert code == 0 and "Verification: PASSED" in stdout
    info = json.loads((out / "seq2seq_onnx.json").read_text())
    assert set(info["files"]) == set(snapshot(out))  # the manifest lists exactly what is there

    # an export written before the manifest existed is recognised by its own file names
    del info["files"]
    (out / "seq2seq_onnx.json").write_text(json.dumps(info))
    assert run(capsys, make_model(), "-o", out, "--overwrite")[0] == 0

    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(capsys, make_model(), "-o", empty, "--overwrite")[0] == 0
    assert debris(tmp_path) == []


def test_output_that_is_a_file(capsys, make_model, tmp_path):
    target = tmp_path / "model.onnx"
    target.write_text("not a folder")
    for extra in ([], ["--overwrite"]):
        code, _, err = run(capsys, make_model(), "-o", target, *extra)
        assert code == 2 and "is a file, not a folder" in err and "--overwrite" not in err
    assert target.read_text() == "not a folder"


@pytest.mark.parametrize("mask,folder_mode,file_mode", [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)])
def test_written_files_follow_the_umask(make_model, tmp_path, mask, folder_mode, file_mode):
    old = os.umask(mask)
    try:
        convert(str(make_model()), tmp_path / "out", progress=False, quantize=["q8"])
    finally:
        os.umask(old)
    out = tmp_path / "out"
    for path in [out, *out.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        assert mode == (folder_mode if path.is_dir() else file_mode), f"{path}: {oct(mode)}"


def test_stale_partial_folders_of_dead_runs_are_removed(capsys, make_model, tmp_path):
    from seq2seq_onnx.outputs import _host

    dead = tmp_path / f".out.partial-{_host()}-999999999-abcd1234"
    old_style = tmp_path / ".out.partial-k3j4h5g6"  # an earlier version named no owner
    alive = tmp_path / f".out.partial-{_host()}-{os.getpid()}-zzzz9999"  # a run that still goes on
    other = tmp_path / ".other.partial-k3j4h5g6"  # another output's: not ours to judge
    for folder in (dead, old_style, alive, other):
        (folder / "onnx").mkdir(parents=True)
    code, stdout, _ = run(capsys, make_model(), "-o", tmp_path / "out")
    assert code == 0 and "left by an interrupted earlier run" in stdout
    assert not dead.exists() and not old_style.exists()
    assert alive.exists() and other.exists()


def test_a_previous_export_stranded_by_a_kill_mid_swap_is_restored(capsys, make_model, previous_export, tmp_path):
    """SIGKILL between "old export moved aside" and "new one moved in" strands the old one: put it back, touch nothing."""
    from seq2seq_onnx.outputs import _host

    stranded = copy_of(previous_export, tmp_path / f".out.old-{_host()}-999999999-abcd1234")
    before = snapshot(stranded)
    code, _, err = run(capsys, make_model(), "-o", tmp_path / "out")
    assert code == 2 and "restored the previous export" in err and "already exists" in err
    assert snapshot(tmp_path / "out") == before and not stranded.exists()


def test_quantize_never_replaces_a_file_it_did_not_write(make_model, previous_export, tmp_path):
    from seq2seq_onnx.quantize import quantize_folder

    out = copy_of(previous_export, tmp_path / "out")
    foreign = out / "onnx" / "encoder_model_quantized.onnx"
    foreign.write_bytes(b"someone else's q8 encoder")
    (report,) = quantize_folder(out, ["q8"])
    assert not report.kept and "was not written by seq2seq-onnx" in report.reason
    assert foreign.read_bytes() == b"someone else's q8 encoder"

    foreign.unlink()
    (report,) = quantize_folder(out, ["q8"])
    assert report.kept
    info = json.loads((out / "seq2seq_onnx.json").read_text())
    assert "onnx/decoder_model_merged_quantized.onnx" in info["files"] and "quantize_config.json" in info["files"]
    (report,) = quantize_folder(out, ["q8"])  # our own q8 files may be rewritten
    assert report.kept


# -- interrupts ---------------------------------------------------------------------------------

# Points at which the conversion is interrupted, recognised from the partial folder's contents.
STAGES = {
    "loading the model": lambda partial: True,
    "exporting the decoder": lambda partial: (partial / "onnx" / "encoder_model.onnx").is_file(),
    "verifying": lambda partial: (partial / "config.json").is_file(),
}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupts_leave_no_partial_folder_and_the_previous_export_intact(make_model, previous_export, tmp_path, signum):
    """Stress: interrupt `convert --overwrite` at several points; each time, the old export is untouched and nothing is left."""
    src = make_model("flan-t5", num_layers=4, num_decoder_layers=4)  # slow enough to hit each stage
    out = copy_of(previous_export, tmp_path / "out")
    before = snapshot(out)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SEQ2SEQ_ONNX_TRANSFORMERSJS": "0", "TMPDIR": str(scratch)}
    interrupted = []
    for stage, reached in STAGES.items():
        proc = subprocess.Popen([sys.executable, "-m", "seq2seq_onnx", "convert", str(src), "-o", str(out), "--overwrite"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            partials = list(tmp_path.glob(".out.partial-*"))
            if partials and reached(partials[0]):
                proc.send_signal(signum)
                break
            time.sleep(0.005)
        _, err = proc.communicate(timeout=300)
        if proc.returncode == 0:  # finished before the signal: then the new export is complete
            before = snapshot(out)
            continue
        assert proc.returncode == (130 if signum == signal.SIGINT else 143), (stage, err)
        assert "Traceback" not in err and "nothing was written" in err, (stage, err)
        interrupted.append(stage)
        assert debris(tmp_path) == [], stage
        assert snapshot(out) == before, stage
        assert list(scratch.iterdir()) == [], stage  # no scratch folder left in $TMPDIR either
    assert len(interrupted) >= 2, f"only interrupted at {interrupted}"


def test_generate_output_file_is_never_clobbered_or_left_half_written(converted, tmp_path, capsys, monkeypatch):
    from seq2seq_onnx.runtime import Seq2SeqOnnxModel

    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"input": f"Hello {i}"}) + "\n" for i in range(3)))
    out = tmp_path / "answers.jsonl"
    out.write_text("yesterday's answers\n")
    args = ["generate", str(converted), "--input", str(data), "--output", str(out), "--batch-size", "1"]
    assert main(args) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "yesterday's answers\n"

    calls = []
    real = Seq2SeqOnnxModel.generate_text

    def interrupted_after_one_batch(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(Seq2SeqOnnxModel, "generate_text", interrupted_after_one_batch)
    assert main([*args, "--overwrite"]) == 130
    assert out.read_text() == "yesterday's answers\n" and debris(tmp_path) == []

    monkeypatch.setattr(Seq2SeqOnnxModel, "generate_text", real)
    assert main([*args, "--overwrite"]) == 0
    assert len(out.read_text().splitlines()) == 3 and debris(tmp_path) == []
