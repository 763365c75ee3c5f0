"""Output folders written safely: nothing we did not write is ever replaced, no debris survives.

- `partial_folder(output)` makes the hidden `.OUT.partial-HOST-PID-xxxx` folder a conversion is
  built in, with the permissions the umask gives (tempfile's 0700 would hide the export from a
  web server running as another user).
- `check_replaceable(output)` allows `--overwrite` only for an earlier export: a folder whose
  every file is one seq2seq-onnx wrote (listed in `seq2seq_onnx.json`, or named like an export
  file), and never the working directory, a home folder, a filesystem root, or one of their
  parents.
- `put_in_place(tmp, output)` swaps the finished folder in with SIGINT/SIGTERM held back, so an
  interrupt never lands between "old export moved aside" and "new export moved in".
- `remove_stale(output)` deletes partial folders of the same output left by a process that no
  longer runs (SIGKILL, power loss), and restores a previous export stranded by such a kill.
- `interrupt_on_sigterm()` turns SIGTERM into `Terminated` (a KeyboardInterrupt), so the
  cleanup that Ctrl-C runs also runs when a job scheduler or `kill` stops us.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
from pathlib import Path

from .errors import OutputExistsError

INFO_FILE = "seq2seq_onnx.json"
MANIFEST_KEY = "files"  # in INFO_FILE: every file of the folder that seq2seq-onnx wrote

# Files an export of ours may hold, for folders written before INFO_FILE listed them.
_EXPORT_FILES = (
    INFO_FILE, "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "added_tokens.json", "spiece.model", "quantize_config.json",
    "onnx/encoder_model*.onnx", "onnx/encoder_model*.onnx_data*",
    "onnx/decoder_model*.onnx", "onnx/decoder_model*.onnx_data*",
    "onnx/decoder_with_past_model*.onnx", "onnx/decoder_with_past_model*.onnx_data*",
)


class Terminated(KeyboardInterrupt):
    """SIGTERM received: handled like Ctrl-C (cleanup runs), exit code 143 instead of 130."""


def umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def _host() -> str:
    return "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:32] or "host"


def partial_folder(output: Path) -> Path:
    """A new hidden folder beside `output` to build it in, mode 0777 minus the umask."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-{_host()}-{os.getpid()}-", dir=output.parent))
    os.chmod(tmp, 0o777 & ~umask())
    return tmp


def partial_file(output: Path) -> Path:
    """A new hidden file beside `output` to write it in, moved over it when complete (mode by the umask)."""
    handle, name = tempfile.mkstemp(prefix=f".{output.name}.partial-{_host()}-{os.getpid()}-", dir=output.parent or ".")
    os.close(handle)
    os.chmod(name, 0o666 & ~umask())
    return Path(name)


def _owner_alive(name: str, kind: str) -> bool:
    """Whether the process named in `.OUT.{kind}-HOST-PID-xxxx` still runs (unknown: assume not)."""
    rest = name.split(f".{kind}-", 1)[1]
    parts = rest.rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False  # written by an older version, which named no owner
    host, pid = parts[0], int(parts[1])
    if host != _host():
        return True  # another machine's process (shared storage): not ours to judge
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(output: Path) -> list[str]:
    """Remove `.OUT.partial-*` / `.OUT.old-*` left by dead processes; returns what was done, for notes."""
    done = []
    if not output.parent.is_dir():
        return done
    for kind in ("old", "partial"):  # an old export first: it may have to be put back
        for path in sorted(output.parent.glob(f".{output.name}.{kind}-*")):
            if not path.is_dir() or _owner_alive(path.name, kind):
                continue
            if kind == "old" and not output.exists():
                os.replace(path, output)  # killed mid-swap: the previous export is this one
                done.append(f"restored the previous export of {output} from {path.name} (an earlier run was killed)")
            else:
                shutil.rmtree(path, ignore_errors=True)
                done.append(f"removed {path.name} left by an interrupted earlier run")
    return done


def _info(folder: Path) -> dict | None:
    try:
        info = json.loads((folder / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def is_ours(folder: Path, relative: str) -> bool:
    """Whether seq2seq-onnx wrote `folder/relative` (a path relative to the folder, with `/`).

    The folder's manifest says; a folder of an older seq2seq-onnx (INFO_FILE without a manifest)
    counts the files named like an export's; a folder without INFO_FILE is nobody's we know.
    """
    info = _info(folder)
    if info is None:
        return False
    files = info.get(MANIFEST_KEY)
    if isinstance(files, list):
        return relative in files
    return any(fnmatch.fnmatchcase(relative, pattern) for pattern in _EXPORT_FILES)


def record_files(folder: Path, added: list[str]) -> None:
    """Add `added` (paths relative to `folder`) to the folder's manifest, if it has one."""
    info = _info(folder)
    if info is None or not isinstance(info.get(MANIFEST_KEY), list):
        return
    info[MANIFEST_KEY] = sorted(set(info[MANIFEST_KEY]) | set(added))
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")


def foreign_files(folder: Path) -> list[str]:
    """Files in `folder` that seq2seq-onnx did not write (relative paths, sorted)."""
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        relative = path.relative_to(folder).as_posix()
        if not is_ours(folder, relative):
            found.append(relative)
    return found


def _protected(folder: Path) -> str | None:
    """Why `folder` may never be replaced, or None."""
    cwd = Path.cwd().resolve()
    if folder == Path(folder.anchor):
        return "is a filesystem root"
    if folder == cwd:
        return "is the current working directory"
    if folder in cwd.parents:
        return f"contains the current working directory {cwd}"
    for home in {Path.home().resolve(), Path(os.path.expanduser("~")).resolve()}:
        if folder == home or folder in home.parents:
            return "is a home folder" if folder == home else f"contains the home folder {home}"
    return None


def check_replaceable(output: Path) -> None:
    """Raise OutputExistsError unless `output` (an existing folder) is an earlier export we may replace."""
    reason = _protected(output)
    if reason:
        raise OutputExistsError(f"--overwrite refused: {output} {reason}; choose a new folder for the export")
    entries = list(output.iterdir())
    if not entries:
        return
    if _info(output) is None:
        shown = ", ".join(sorted(p.name + ("/" if p.is_dir() else "") for p in entries)[:5])
        more = f" and {len(entries) - 5} more" if len(entries) > 5 else ""
        raise OutputExistsError(
            f"--overwrite refused: {output} is not an export of seq2seq-onnx (no {INFO_FILE}); replacing it "
            f"would delete {shown}{more}. Choose a new folder, or empty this one yourself"
        )
    foreign = foreign_files(output)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputExistsError(
            f"--overwrite refused: {output} holds files seq2seq-onnx did not write ({shown}), which replacing "
            "it would delete. Move them out of the folder, or choose a new folder"
        )


@contextlib.contextmanager
def signals_held(reraise: bool = True):
    """Hold SIGINT/SIGTERM back for a short critical section.

    A signal received meanwhile is raised when the section ends (`reraise`), or dropped: after a
    swap that completed, or during cleanup that runs because an exception is already on its way.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, lambda s, _frame: received.append(s))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received and reraise:
        raise Terminated() if received[0] == signal.SIGTERM else KeyboardInterrupt()


def put_in_place(tmp: Path, output: Path) -> None:
    """Move the finished folder `tmp` to `output`, replacing an old one only at the very end.

    Signals are held back during the swap: an interrupt lands before it (nothing changed) or is
    dropped after it (the new export is complete, and the caller only has a summary left to print).
    """
    with signals_held(reraise=False):
        if not output.exists():
            os.replace(tmp, output)
            return
        old = Path(tempfile.mkdtemp(prefix=f".{output.name}.old-{_host()}-{os.getpid()}-", dir=output.parent))
        os.rmdir(old)
        os.replace(output, old)
        try:
            os.replace(tmp, output)
        except BaseException:
            os.replace(old, output)  # put the previous export back
            raise
        shutil.rmtree(old, ignore_errors=True)


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def interrupt_on_sigterm():
    """While inside, SIGTERM raises `Terminated` (unless the program installed its own handler)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
