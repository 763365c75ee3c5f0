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
        # no scratch folder of ours left in $TMPDIR either (torch keeps its own caches there)
        assert [p.name for p in scratch.iterdir() if "seq2seq" in p.name] == [], stage
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
    real = Seq2SeqOnnxModel.generate

    def interrupted_after_one_batch(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(Seq2SeqOnnxModel, "generate", interrupted_after_one_batch)
    assert main([*args, "--overwrite"]) == 130
    assert out.read_text() == "yesterday's answers\n" and debris(tmp_path) == []

    monkeypatch.setattr(Seq2SeqOnnxModel, "generate", real)
    assert main([*args, "--overwrite"]) == 0
    assert len(out.read_text().splitlines()) == 3 and debris(tmp_path) == []


# -- races and look-alikes ------------------------------------------------------------------------


def test_a_folder_that_appears_while_converting_is_never_replaced(capsys, make_model, previous_export, tmp_path, monkeypatch):
    import seq2seq_onnx.convert as conv

    real = conv.write_configs
    out = tmp_path / "out"

    def user_makes_the_folder(*args, **kwargs):
        out.mkdir(exist_ok=True)
        (out / "important.txt").write_text("my thesis")
        return real(*args, **kwargs)

    monkeypatch.setattr(conv, "write_configs", user_makes_the_folder)
    code, _, err = run(capsys, make_model(), "-o", out)
    assert code == 2 and "appeared while converting" in err
    assert (out / "important.txt").read_text() == "my thesis" and debris(tmp_path) == []

    # with --overwrite over an earlier export, a file added meanwhile is not deleted either
    shutil_out = copy_of(previous_export, tmp_path / "prev")
    before = snapshot(shutil_out)

    def user_adds_a_file(*args, **kwargs):
        (shutil_out / "NOTES.md").write_text("notes")
        return real(*args, **kwargs)

    monkeypatch.setattr(conv, "write_configs", user_adds_a_file)
    code, _, err = run(capsys, make_model(), "-o", shutil_out, "--overwrite")
    assert code == 2 and "NOTES.md" in err and "nothing was replaced" in err
    assert (shutil_out / "NOTES.md").read_text() == "notes"
    assert {k: v for k, v in snapshot(shutil_out).items() if k != "NOTES.md"} == before
    assert debris(tmp_path) == []


def test_only_our_own_temporary_names_are_cleaned_up(capsys, make_model, tmp_path):
    """A user's `.out.partial-keep`, or a partial-looking folder holding a user's file, is never removed."""
    from seq2seq_onnx.outputs import _host

    users = tmp_path / ".out.partial-keep"
    users.mkdir()
    (users / "thesis.txt").write_text("precious")
    lookalike = tmp_path / f".out.partial-{_host()}-999999999-abcd1234"
    lookalike.mkdir()
    (lookalike / "thesis.txt").write_text("precious too")
    assert run(capsys, make_model(), "-o", tmp_path / "out")[0] == 0
    assert (users / "thesis.txt").read_text() == "precious"
    assert (lookalike / "thesis.txt").read_text() == "precious too"


def test_stale_partial_folders_of_names_with_glob_characters(capsys, make_model, tmp_path):
    from seq2seq_onnx.outputs import _host

    dead = tmp_path / f".w [v2].partial-{_host()}-999999999-abcd1234"
    (dead / "onnx").mkdir(parents=True)
    assert run(capsys, make_model(), "-o", tmp_path / "w [v2]")[0] == 0
    assert not dead.exists()


def test_empty_output_path_and_empty_user_folders(capsys, make_model, previous_export, tmp_path):
    code, _, err = run(capsys, make_model(), "-o", "")
    assert code == 2 and "output folder is empty" in err
    out = copy_of(previous_export, tmp_path / "out")
    (out / "myempty").mkdir()
    code, _, err = run(capsys, make_model(), "-o", out, "--overwrite")
    assert code == 2 and "myempty/" in err and (out / "myempty").is_dir()


def test_generate_output_races_devices_and_text_arguments(converted, tmp_path, capsys, monkeypatch):
    import stat

    from seq2seq_onnx.runtime import Seq2SeqOnnxModel

    target = tmp_path / "race.jsonl"
    real = Seq2SeqOnnxModel.generate

    def someone_writes_the_file(self, *a, **k):
        target.write_text("someone else's\n")
        return real(self, *a, **k)

    monkeypatch.setattr(Seq2SeqOnnxModel, "generate", someone_writes_the_file)
    assert main(["generate", str(converted), "Hello", "--output", str(target)]) == 2
    assert "appeared while generating" in capsys.readouterr().err
    assert target.read_text() == "someone else's\n" and debris(tmp_path) == []
    monkeypatch.setattr(Seq2SeqOnnxModel, "generate", real)

    # TEXT arguments go to --output too; a device is written to, never replaced by a file
    out = tmp_path / "answers.jsonl"
    assert main(["generate", str(converted), "Hello", "Hi there", "--output", str(out)]) == 0
    assert [json.loads(line)["input"] for line in out.read_text().splitlines()] == ["Hello", "Hi there"]
    assert main(["generate", str(converted), "Hello", "--output", "/dev/null", "--overwrite"]) == 0
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert main(["generate", str(converted), "Hello", "--output", str(tmp_path / "no" / "a.jsonl")]) == 2
    assert f"folder {tmp_path / 'no'} does not exist" in capsys.readouterr().err


def test_interrupted_quantize_leaves_only_files_known_to_be_ours(previous_export, tmp_path, monkeypatch, capsys):
    import seq2seq_onnx.quantize as q

    out = copy_of(previous_export, tmp_path / "out")
    real = q._check_variant
    calls = []

    def interrupted_at_the_second_dtype(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(q, "_check_variant", interrupted_at_the_second_dtype)
    with pytest.raises(KeyboardInterrupt):
        q.quantize_folder(out, ["q8", "int8"])
    assert (out / "onnx" / "encoder_model_quantized.onnx").is_file()  # q8 was kept before the interrupt
    assert not list(out.glob(".quantize-*"))
    monkeypatch.setattr(q, "_check_variant", real)
    assert all(r.kept for r in q.quantize_folder(out, ["q8", "int8"]))  # its own files, not "foreign"
    from seq2seq_onnx.outputs import foreign_files

    assert foreign_files(out) == []  # so --overwrite may replace the folder
