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
import glob
import json
import os
import re
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


def _temp_prefix(output: Path, kind: str) -> str:
    return f".{output.name}.{kind}-{_host()}-{os.getpid()}-"


def partial_folder(output: Path) -> Path:
    """A new hidden folder beside `output` to build it in, mode 0777 minus the umask."""
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(output, "partial"), dir=output.parent))
    os.chmod(tmp, 0o777 & ~umask())
    return tmp


def partial_file(output: Path) -> Path:
    """A new hidden file beside `output` to write it in, published when complete (mode by the umask)."""
    handle, name = tempfile.mkstemp(prefix=_temp_prefix(output, "partial"), dir=output.parent)
    os.close(handle)
    os.chmod(name, 0o666 & ~umask())
    return Path(name)


def scratch_folder(parent: Path, kind: str) -> Path:
    """A hidden working folder inside `parent` (`.{kind}-HOST-PID-xxxx`), removable by `remove_stale_scratch`."""
    return Path(tempfile.mkdtemp(prefix=f".{kind}-{_host()}-{os.getpid()}-", dir=parent))


# The names we give temporary siblings: HOST-PID-xxxxxxxx (tempfile's 8 characters), and the
# owner-less `xxxxxxxx` of versions before 0.1.1. Nothing else is ever treated as ours.
_SUFFIX = re.compile(r"^(?:(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-)?[a-z0-9_]{8}$")


def _owner_alive(suffix: str) -> bool | None:
    """Whether the process named in a temporary name's HOST-PID-xxxx suffix runs; None if the name is not ours."""
    match = _SUFFIX.match(suffix)
    if match is None:
        return None
    if match["pid"] is None:
        return False  # written by an older version, which named no owner
    if match["host"] != _host():
        return True  # another machine's process (shared storage): not ours to judge
    pid = int(match["pid"])
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _only_export_files(folder: Path) -> bool:
    """Everything in `folder` is named like what a conversion writes (so removing it loses nothing of a user's)."""
    for path in folder.rglob("*"):
        relative = path.relative_to(folder).as_posix()
        if path.is_dir() and not path.is_symlink():
            continue
        if not (any(fnmatch.fnmatchcase(relative, p) for p in _EXPORT_FILES) or relative.startswith((".work-", ".quantize-"))):
            return False
    return True


def remove_stale(output: Path) -> list[str]:
    """Clean up after killed runs writing `output`; returns what was done, for notes.

    Removes `.OUT.partial-*` folders and files whose owner process no longer runs and whose
    contents are all export files; puts back a previous export stranded as `.OUT.old-*` by a kill
    mid-swap (when OUT is missing). Names that are not exactly ours are never touched.
    """
    done = []
    if not output.parent.is_dir():
        return done
    for kind in ("old", "partial"):  # an old export first: it may have to be put back
        prefix = f".{output.name}.{kind}-"
        for path in sorted(output.parent.glob(glob.escape(prefix) + "*")):
            if _owner_alive(path.name[len(prefix):]) is not False or path.is_symlink():
                continue
            if path.is_file():
                if kind == "partial":
                    path.unlink()
                    done.append(f"removed {path.name} left by an interrupted earlier run")
                continue
            if kind == "old" and not output.exists() and _info(path) is not None:
                os.replace(path, output)  # killed mid-swap: the previous export is this one
                done.append(f"restored the previous export of {output} from {path.name} (an earlier run was killed)")
            elif _only_export_files(path):
                shutil.rmtree(path, ignore_errors=True)
                done.append(f"removed {path.name} left by an interrupted earlier run")
    return done


def remove_stale_scratch(parent: Path, kind: str) -> None:
    """Remove `.{kind}-HOST-PID-*` working folders in `parent` whose owner no longer runs."""
    prefix = f".{kind}-"
    for path in parent.glob(prefix + "*"):
        if path.is_dir() and not path.is_symlink() and _owner_alive(path.name[len(prefix):]) is False:
            shutil.rmtree(path, ignore_errors=True)


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
    Working folders of our own killed runs (`.quantize-HOST-PID-*`) count as ours.
    """
    first = relative.split("/", 1)[0]
    if first.startswith(".quantize-") and _owner_alive(first[len(".quantize-"):]) is False:
        return True
    info = _info(folder)
    if info is None:
        return False
    files = info.get(MANIFEST_KEY)
    if isinstance(files, list):
        return relative in files or relative == INFO_FILE
    return any(fnmatch.fnmatchcase(relative, pattern) for pattern in _EXPORT_FILES)


def record_files(folder: Path, added: list[str]) -> None:
    """Add `added` (paths relative to `folder`) to the folder's manifest, making one if it has none.

    A manifest made here lists only what seq2seq-onnx wrote into someone else's export (e.g. by
    `quantize`), so the rest of the folder stays foreign to `--overwrite`.
    """
    info = _info(folder)
    if info is None:
        if (folder / INFO_FILE).exists():
            return  # unreadable: leave it as it is
        info = {"note": "files written into this folder by seq2seq-onnx", MANIFEST_KEY: []}
    elif not isinstance(info.get(MANIFEST_KEY), list):
        return  # an export of a version without manifest: its files are recognised by name
    info[MANIFEST_KEY] = sorted(set(info[MANIFEST_KEY]) | set(added) | {INFO_FILE})
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")


def foreign_files(folder: Path) -> list[str]:
    """Files (and empty folders) in `folder` that seq2seq-onnx did not write (relative paths, sorted)."""
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_dir() and not path.is_symlink():
            if not any(path.iterdir()) and not is_ours(folder, relative):
                found.append(relative + "/")
            continue
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


def put_in_place(tmp: Path, output: Path, overwrite: bool) -> None:
    """Move the finished folder `tmp` to `output`, replacing an earlier export only at the very end.

    The folder is checked again at the swap, not only when the run started: a folder that
    appeared meanwhile is replaced only with `overwrite`, and files added to it meanwhile are never
    deleted (the old folder is moved aside, checked, and moved back if it holds any). Signals are
    held back during the swap: an interrupt lands before it (nothing changed) or is dropped after it
    (the new export is complete, and the caller only has a summary left to print).
    Raises OutputExistsError (nothing replaced) when the folder may not be replaced.
    """
    with signals_held(reraise=False):
        if not (output.exists() or output.is_symlink()):
            try:
                os.rename(tmp, output)  # onto an empty folder made meanwhile at most; never a full one
            except OSError:
                raise OutputExistsError(f"{output} appeared while converting and is not empty; nothing was replaced "
                                        f"(run again with --overwrite to replace an earlier export)") from None
            return
        if not overwrite:
            raise OutputExistsError(f"{output} appeared while converting; nothing was replaced "
                                    "(run again with --overwrite to replace an earlier export)")
        old = Path(tempfile.mkdtemp(prefix=_temp_prefix(output, "old"), dir=output.parent))
        os.rmdir(old)
        os.replace(output, old)
        foreign = foreign_files(old) if _info(old) is not None else sorted(p.name for p in old.iterdir())
        if foreign:
            os.replace(old, output)
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise OutputExistsError(f"{output} now holds files seq2seq-onnx did not write ({shown}), added while "
                                    "converting; nothing was replaced")
        try:
            os.replace(tmp, output)
        except BaseException:
            os.replace(old, output)  # put the previous export back
            raise
        shutil.rmtree(old, ignore_errors=True)


def publish_file(partial: Path, output: Path, overwrite: bool) -> None:
    """Give the finished `partial` file the name `output`: never over a file that appeared meanwhile unless `overwrite`.

    Raises OutputExistsError (the partial file is left for the caller to remove).
    """
    with signals_held(reraise=False):
        if overwrite:
            os.replace(partial, output)
            return
        try:
            os.link(partial, output)  # fails if `output` exists, whoever made it
        except FileExistsError:
            raise OutputExistsError(f"{output} appeared while generating; nothing was replaced "
                                    "(run again with --overwrite to replace it)") from None
        except OSError:  # a filesystem without hard links: check, then rename (a small window remains)
            if output.exists():
                raise OutputExistsError(f"{output} appeared while generating; nothing was replaced") from None
            os.rename(partial, output)
            return
        partial.unlink()


_received: list[int] = []  # signals our handlers turned into exceptions, in this process


def interrupted_by() -> int | None:
    """The signal (SIGINT or SIGTERM) that interrupted this process, if one did.

    An interrupt that lands inside a C extension's import comes out as another exception (e.g.
    ImportError: initialization failed); callers use this to still report it as an interruption.
    """
    return _received[-1] if _received else None


def _raise_interrupt(signum, frame):
    _received.append(signum)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


@contextlib.contextmanager
def interrupt_on_sigterm():
    """While inside, SIGTERM raises `Terminated` and SIGINT KeyboardInterrupt, both remembered (`interrupted_by`).

    Handlers a program installed itself are left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    defaults = {signal.SIGTERM: signal.SIG_DFL, signal.SIGINT: signal.default_int_handler}
    mine = [s for s, default in defaults.items() if signal.getsignal(s) == default]
    for signum in mine:
        signal.signal(signum, _raise_interrupt)
    try:
        yield
    finally:
        for signum in mine:
            signal.signal(signum, defaults[signum])


@contextlib.contextmanager
def reclaim_sigterm():
    """Like `interrupt_on_sigterm`, after a library replaced the process's SIGTERM handler behind Python's back.

    Ray's core worker (`ray.init`) installs a C++ handler that kills the driver on SIGTERM, so a job
    could not write what it had done; inside this block SIGTERM raises `Terminated` again.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
