"""Batch generation jobs over files of prompts: reading inputs, a resumable output folder, per-row errors.

The single-process `generate --input` and the Ray job (`seq2seq_onnx.ray`) share this module:

- `read_prompts(path, text_column)`: JSONL or Parquet in, one `Prompt(id, text, error)` per row.
  `id` is the row's 0-based position (JSONL: line number - 1, blank lines skipped; Parquet: row
  index), so results can always be put back in input order. A row that cannot be read (not
  JSON, no text field, a null or non-string text) becomes a row with `error` set: reported, never fatal.
- `generate_batch(model, texts, ...)`: one result per text; a batch that fails is retried row by
  row, so one bad row (too long for the model, ...) gets its error and the others their outputs.
- `OutputFolder`: results as part files `part-<first id>-<pid>-<n>.parquet|jsonl`, each published
  atomically (written hidden, then renamed), plus `_job.json` naming what the job was (model
  folder, dtype, input, options). A rerun on the same folder reads the ids already written and
  skips them: an interrupted job resumes, and no row is ever written twice. A folder holding
  another job's results is refused (exit 2), and `--overwrite` removes only files this module wrote.

Output rows: `id` (int), `prompt` (str or null), `output` (str; a list of str with
num_return_sequences > 1; null on error), `score` (with output_scores: beam search's
length-penalized sequence score, as transformers' `sequences_scores`), `error` (str or null).
Parquet needs pyarrow (`pip install 'seq2seq-onnx[ray]'`); JSONL needs nothing.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import Seq2SeqOnnxError
from .outputs import umask

TEXT_COLUMNS = ("text", "prompt", "input")  # looked for in this order when --text-column is not given
JOB_FILE = "_job.json"
FORMATS = ("parquet", "jsonl")
_PART = re.compile(r"^part-\d{12}-\d+-\d+\.(parquet|jsonl)$")


@dataclass(frozen=True)
class Prompt:
    id: int
    text: str | None
    error: str | None = None


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.dataset  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise Seq2SeqOnnxError("Parquet needs pyarrow: pip install 'seq2seq-onnx[ray]' (or pip install pyarrow)") from None
    return pyarrow


def input_signature(path) -> dict:
    """Size and modification time of an input file (or of a folder's files): a resumed job must read the same input."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stats = [p.stat() for p in files]
    return {"bytes": sum(st.st_size for st in stats), "mtime_ns": max((st.st_mtime_ns for st in stats), default=0),
            "files": len(files)}


def input_format(path: Path) -> str:
    """'parquet' for a .parquet file or a folder of them, 'jsonl' otherwise."""
    if path.is_dir() or path.suffix.lower() in (".parquet", ".pq"):
        return "parquet"
    return "jsonl"


def read_prompts(path, text_column: str | None = None, candidates: tuple[str, ...] = TEXT_COLUMNS) -> list[Prompt]:
    """Every row of a JSONL or Parquet file as a Prompt; raises Seq2SeqOnnxError when no row has a text at all.

    `text_column`: the field holding the text; default the first of `candidates` (text, prompt,
    input) that the file has: the schema (Parquet), or the first JSON object having any of them
    (JSONL); one column for the whole file.
    """
    path = Path(path)
    if not path.exists():
        raise Seq2SeqOnnxError(f"--input {path} does not exist")
    if input_format(path) == "parquet":
        prompts = _read_parquet(path, text_column, candidates)
    else:
        prompts = _read_jsonl(path, text_column, candidates)
    if prompts and all(p.error for p in prompts):
        raise Seq2SeqOnnxError(f"{path}: no row has a text to generate from; row {prompts[0].id}: {prompts[0].error}")
    return prompts


def _text_error(value, column: str) -> str | None:
    if value is None:
        return f"{column!r} is null"
    if not isinstance(value, str):
        return f"{column!r} is not a string ({type(value).__name__} {str(value)[:40]})"
    if not value.strip():
        return f"{column!r} is empty"
    return None


def _read_jsonl(path: Path, text_column: str | None, candidates: tuple[str, ...]) -> list[Prompt]:
    prompts = []
    wanted = (text_column,) if text_column else candidates
    with open(path, encoding="utf-8", errors="replace") as f:
        for index, line in enumerate(f):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                prompts.append(Prompt(index, None, f"line {index + 1}: not valid JSON ({err.msg})"))
                continue
            if not isinstance(row, dict):
                prompts.append(Prompt(index, None, f"line {index + 1}: not a JSON object"))
                continue
            column = next((c for c in wanted if c in row), None)
            if column is not None and len(wanted) > 1:
                wanted = (column,)  # the first row with a text field decides for the whole file
            if column is None:
                names = " or ".join(repr(c) for c in wanted)
                prompts.append(Prompt(index, None, f"line {index + 1}: no {names} field"))
                continue
            error = _text_error(row[column], column)
            prompts.append(Prompt(index, None if error else row[column], f"line {index + 1}: {error}" if error else None))
    return prompts


def _read_parquet(path: Path, text_column: str | None, candidates: tuple[str, ...]) -> list[Prompt]:
    pa = _pyarrow()
    try:
        schema = pa.parquet.read_schema(path) if path.is_file() else pa.dataset.dataset(path, format="parquet").schema
    except Exception as err:
        raise Seq2SeqOnnxError(f"cannot read {path} as Parquet: {err}") from None
    column = text_column or next((c for c in candidates if c in schema.names), None)
    if column is None or column not in schema.names:
        wanted = repr(text_column) if text_column else " or ".join(repr(c) for c in candidates)
        raise Seq2SeqOnnxError(f"{path} has no {wanted} column (columns: {', '.join(schema.names)}); "
                               "name the text column with --text-column")
    values = pa.parquet.read_table(path, columns=[column]).column(column).to_pylist()
    return [Prompt(i, None if (e := _text_error(v, column)) else v, f"row {i}: {e}" if e else None)
            for i, v in enumerate(values)]


# --- generation -----------------------------------------------------------------------------------------


def generate_batch(model, texts: list[str], options: dict, output_scores: bool = False) -> list[dict]:
    """`{output, score, error}` per text; a failing batch is retried row by row, so only the bad rows fail.

    `options`: generation options as `Seq2SeqOnnxModel.generate` takes them, plus `src_lang` / `tgt_lang`.
    `output`: a string, or a list of num_return_sequences strings; `score` (with output_scores):
    beam search's sequence score(s), None otherwise.
    """
    try:
        return _generate(model, texts, options, output_scores)
    except Exception as err:
        if len(texts) == 1:
            message = str(err).strip().splitlines()[0] if str(err).strip() else ""
            return [{"output": None, "score": None, "error": f"{type(err).__name__}: {message}"}]
        return [result for text in texts for result in generate_batch(model, [text], options, output_scores)]


def _generate(model, texts, options, output_scores) -> list[dict]:
    options = dict(options)
    languages = {k: options.pop(k, None) for k in ("src_lang", "tgt_lang")}
    translation = model._translation(**languages)
    ids, mask = model.tokenize(texts, **languages)
    result = model.generate(ids, mask, return_dict=True, **{**translation.options, **options})
    outputs = model.decode(result.sequences)
    per_input = len(outputs) // len(texts)
    scores = None if result.scores is None else [float(s) for s in result.scores]
    rows = []
    for i in range(len(texts)):
        mine = outputs[i * per_input : (i + 1) * per_input]
        score = None if scores is None or not output_scores else scores[i * per_input : (i + 1) * per_input]
        rows.append({"output": mine[0] if per_input == 1 else mine,
                     "score": (score[0] if per_input == 1 else score) if score is not None else None,
                     "error": None})
    return rows


def check_scores_wanted(options: dict, output_scores: bool, default_beams: int) -> None:
    """output_scores gives beam search's sequence scores: refuse it for greedy or sampling, before any work."""
    if output_scores and (options.get("num_beams") or default_beams) <= 1:
        raise Seq2SeqOnnxError("--output-scores gives beam search's sequence scores: add --num-beams N (N > 1)")


# --- the output folder -----------------------------------------------------------------------------------


class OutputFolder:
    """A resumable folder of result parts; see the module docstring."""

    def __init__(self, path, job: dict, output_format: str = "parquet", overwrite: bool = False,
                 sequences_per_input: int = 1, output_scores: bool = False):
        if output_format not in FORMATS:
            raise Seq2SeqOnnxError(f"unknown output format {output_format!r}; choose {' or '.join(FORMATS)}")
        self.path = Path(path)
        self.format = output_format
        self.job = {**job, "output_format": output_format}
        if output_format == "parquet":
            _pyarrow()
        if self.path.exists() and not self.path.is_dir():
            raise Seq2SeqOnnxError(f"--output {self.path} is a file; give a folder for the job's results")
        if not self.path.parent.is_dir():
            raise Seq2SeqOnnxError(f"--output {self.path}: folder {self.path.parent} does not exist")
        self._created = not self.path.exists()
        self.path.mkdir(exist_ok=True)
        self._lock()
        try:
            ours = self._our_files()
            others = [p.name for p in self.path.iterdir() if p not in ours and not p.name.startswith(".")]
            if others:
                raise Seq2SeqOnnxError(f"--output {self.path} holds files this job did not write ({', '.join(sorted(others)[:3])}); "
                                       "give an empty or new folder")
            recorded = self._recorded_job()
            if overwrite:
                for p in ours:
                    p.unlink(missing_ok=True)
                recorded = None
            elif recorded is not None and recorded != self.job:
                raise Seq2SeqOnnxError(f"--output {self.path} holds results of a different job ({_differences(recorded, self.job)}); "
                                       "use another folder, or --overwrite to start again")
            self._recorded = recorded is not None  # _job.json is written with the first part, not before
        except BaseException:  # refused: the folder is not kept locked
            self.close()
            raise
        self._count = 0
        self._schema = None
        if output_format == "parquet":
            pa = _pyarrow()
            many = sequences_per_input > 1
            fields = [("id", pa.int64()), ("prompt", pa.string()),
                      ("output", pa.list_(pa.string()) if many else pa.string()), ("error", pa.string())]
            if output_scores:
                fields.append(("score", pa.list_(pa.float64()) if many else pa.float64()))
            self._schema = pa.schema(fields)  # fixed, so that parts of only errors still read as one table

    def _lock(self) -> None:
        """One job per folder at a time (two would generate every pending row twice); released when the process ends."""
        import fcntl

        self._lock_fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise Seq2SeqOnnxError(f"--output {self.path} is in use by another running job") from None

    def close(self) -> None:
        """Release the folder (also done when the process ends); a folder this job made and left empty is removed."""
        if getattr(self, "_lock_fd", None) is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
            if self._created and not any(self.path.iterdir()):
                self.path.rmdir()

    def _our_files(self) -> set[Path]:
        return {p for p in self.path.iterdir() if p.name == JOB_FILE or _PART.match(p.name)}

    def _recorded_job(self) -> dict | None:
        path = self.path / JOB_FILE
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise Seq2SeqOnnxError(f"{path} is unreadable ({err}); use another folder, or --overwrite to start again") from None

    def parts(self) -> list[Path]:
        return sorted(p for p in self.path.iterdir() if _PART.match(p.name))

    def done_ids(self) -> set[int]:
        """Ids of the rows already written (by this run or an earlier one)."""
        done: set[int] = set()
        for part in self.parts():
            done.update(row["id"] for row in _read_part(part, columns=["id"]))
        return done

    def failed_count(self) -> int:
        """Rows written with an error (reads only the error column)."""
        return sum(1 for part in self.parts() for row in _read_part(part, columns=["error"]) if row["error"])

    def rows(self) -> list[dict]:
        """Every result row written so far, in input order (by id)."""
        return read_results(self.path)

    def write(self, rows: list[dict]) -> Path:
        """Publish one part with `rows` (dicts with id, prompt, output, error and maybe score), atomically."""
        if not self._recorded:
            self._publish(self.path / JOB_FILE, json.dumps(self.job, indent=2, sort_keys=True).encode())
            self._recorded = True
        self._count += 1
        first = min(r["id"] for r in rows)
        target = self.path / f"part-{first:012d}-{os.getpid()}-{self._count}.{self.format}"
        if self.format == "jsonl":
            data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
            self._publish(target, data)
        else:
            pa = _pyarrow()
            handle, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=self.path)
            os.close(handle)
            try:
                pa.parquet.write_table(pa.Table.from_pylist(rows, schema=self._schema), name)
                with open(name, "rb+") as f:
                    os.fsync(f.fileno())  # whole on disk before it is named done
                os.chmod(name, 0o666 & ~umask())
                os.replace(name, target)
            finally:
                Path(name).unlink(missing_ok=True)
        return target

    def _publish(self, target: Path, data: bytes) -> None:
        handle, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(handle, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())  # whole on disk before it is named done
            os.chmod(name, 0o666 & ~umask())
            os.replace(name, target)
        finally:
            Path(name).unlink(missing_ok=True)

    def remove_debris(self) -> None:
        """Hidden temporary files left by a killed run (SIGKILL; Ctrl-C and SIGTERM clean up themselves)."""
        for p in self.path.iterdir():
            if p.name.startswith(".") and any(p.name.startswith(f".{n}") for n in ("part-", JOB_FILE)):
                p.unlink(missing_ok=True)


def _differences(recorded: dict, job: dict) -> str:
    """What differs between two job records, in words: `options num_beams: None -> 2; the input changed`."""
    said = []
    for key in sorted(set(recorded) | set(job)):
        old, new = recorded.get(key), job.get(key)
        if old == new:
            continue
        if key == "input_signature":
            said.append("the input file changed since the first run (size or modification time)")
        elif key == "options" and isinstance(old, dict) and isinstance(new, dict):
            said += [f"option {k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        else:
            said.append(f"{key}: {old!r} -> {new!r}")
    return "; ".join(said)


def _read_part(part: Path, columns=None) -> list[dict]:
    try:
        if part.suffix == ".parquet":
            return _pyarrow().parquet.read_table(part, columns=columns).to_pylist()
        with open(part, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except Exception as err:  # cut short by a power loss: say which, and how to go on
        raise Seq2SeqOnnxError(f"{part} is unreadable ({type(err).__name__}); move it out of the folder and rerun "
                               "to generate its rows again") from None
    return rows if columns is None else [{k: r.get(k) for k in columns} for r in rows]


def read_results(path) -> list[dict]:
    """The rows of a job's output folder, in input order (by id): id, prompt, output, error (and score).

    Raises Seq2SeqOnnxError when `path` is not a job output folder.
    """
    path = Path(path)
    if not (path / JOB_FILE).is_file():
        raise Seq2SeqOnnxError(f"{path} is not a job output folder (no {JOB_FILE})")
    parts = sorted(p for p in path.iterdir() if _PART.match(p.name))
    return sorted((row for part in parts for row in _read_part(part)), key=lambda r: r["id"])
