"""Batch generation at cluster scale on Ray Data (`pip install 'seq2seq-onnx[ray]'`).

Two entry points:

- `generate_dataset(ds, model_dir, ...) -> ray.data.Dataset`, for people who already hold a Ray
  Dataset: `ds.map_batches` with `OnnxGenerator`, a callable class that Ray runs as a pool of
  stateful actors (the model loaded once per actor, `threads_per_actor` ONNX Runtime intra-op
  threads each, and the same number of CPUs asked of Ray, so actors x threads never oversubscribes
  the CPUs Ray grants). Adds the columns `output`, `error` (and `score`); lazy, as Ray Datasets are.
- `run_job(...)`, behind `seq2seq-onnx generate MODEL --input PATH --output DIR --ray`: reads the
  prompts (`jobs.read_prompts`: JSONL or Parquet, a row id per input row), skips the ids the output
  folder already holds (`jobs.OutputFolder`: resume), sends the rest through `generate_dataset`, and
  writes results back as they stream in (`iter_batches`), in parts published atomically every few
  thousand rows or seconds. Ctrl-C or SIGTERM writes what is done and stops; a rerun resumes.

Why the driver writes the parts and not `Dataset.write_parquet`: resuming needs to know exactly
which rows are done, and a part must exist whole or not at all; Ray's writers name and commit
files per block on the workers, with no record to resume from. Results are small (texts), so the
stream back to the driver is cheap next to generation.

The model folder must be readable at the same path on every node: shared storage (NFS, a
mounted bucket), or copied to each node beforehand (e.g. `ray rsync-up`). Each node builds its
runtime graph cache once (`runtime/sessions.runtime_graph` and `encoder_graph`); the driver builds it first, so actors
on the driver's node load in about a second.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from .errors import Seq2SeqOnnxError
from .jobs import (OutputFolder, Prompt, check_scores_wanted, generate_batch, input_signature, read_prompts,
                   read_results)

# A part is written at least every FLUSH_ROWS results or FLUSH_SECONDS seconds (what a SIGKILL can lose at most).
FLUSH_ROWS = int(os.environ.get("SEQ2SEQ_ONNX_FLUSH_ROWS", "2000"))
FLUSH_SECONDS = float(os.environ.get("SEQ2SEQ_ONNX_FLUSH_SECONDS", "30"))


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise Seq2SeqOnnxError("--ray needs Ray Data: pip install 'seq2seq-onnx[ray]'") from None
    return ray


class OnnxGenerator:
    """The map_batches callable: one model per actor, batches of pyarrow rows in, the same rows plus results out.

    Columns added: `output` (string, or list of strings with num_return_sequences > 1; null on
    error), `error` (string or null), and `score` with output_scores (beam search's sequence score).
    A null or non-string text gives an error row, not a failed task.
    """

    def __init__(self, model_dir: str, dtype: str = "fp32", threads: int = 1, text_column: str = "text",
                 output_scores: bool = False, options: dict | None = None):
        from .runtime import Seq2SeqOnnxModel

        self.model = Seq2SeqOnnxModel.from_pretrained(model_dir, dtype=dtype, threads=threads)
        self.text_column = text_column
        self.output_scores = output_scores
        self.options = dict(options or {})
        opts = self.model.generation_options.updated(**{k: v for k, v in self.options.items()
                                                        if k not in ("src_lang", "tgt_lang")})
        self.many = opts.num_return_sequences > 1

    def __call__(self, batch):
        import pyarrow as pa

        texts = batch.column(self.text_column).to_pylist()
        results: list[dict | None] = [None] * len(texts)
        good = [i for i, t in enumerate(texts) if isinstance(t, str)]
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                results[i] = {"output": None, "score": None, "error": f"{self.text_column!r} is not a string ({t!r})"}
        if good:
            for i, result in zip(good, generate_batch(self.model, [texts[i] for i in good], self.options, self.output_scores)):
                results[i] = result
        text_type = pa.list_(pa.string()) if self.many else pa.string()
        batch = batch.append_column("output", pa.array([r["output"] for r in results], type=text_type))
        batch = batch.append_column("error", pa.array([r["error"] for r in results], type=pa.string()))
        if self.output_scores:
            score_type = pa.list_(pa.float64()) if self.many else pa.float64()
            batch = batch.append_column("score", pa.array([r["score"] for r in results], type=score_type))
        return batch


def generate_dataset(ds, model_dir, *, text_column: str = "text", dtype: str = "fp32", actors: int | None = None,
                     threads_per_actor: int = 1, batch_size: int = 16, output_scores: bool = False, **options):
    """`ds` with generated text: a lazy `ray.data.Dataset` with `output`, `error` (and `score`) columns added.

    Args:
        ds: a Ray Dataset with a string column `text_column`.
        model_dir: an exported folder (as `convert` writes it), at this path on every node.
        dtype: which ONNX files to load (fp32, q8, ...; Transformers.js's names).
        actors: size of the actor pool; default: the cluster's CPUs // threads_per_actor.
        threads_per_actor: ONNX Runtime intra-op threads per actor, and the CPUs each actor asks of Ray.
        batch_size: prompts per generate call.
        output_scores: add `score` (needs num_beams > 1).
        **options: generation options with transformers' names (max_new_tokens, num_beams, ...), and
            src_lang / tgt_lang for translation models.
    Raises:
        Seq2SeqOnnxError: Ray Data not installed, no such folder, more CPUs asked than the cluster has.
    """
    ray = _ray()
    if not Path(model_dir, "config.json").is_file():
        raise Seq2SeqOnnxError(f"{model_dir} has no config.json: not an exported model folder")
    if threads_per_actor < 1 or batch_size < 1 or (actors is not None and actors < 1):
        raise Seq2SeqOnnxError("actors, threads_per_actor and batch_size must be at least 1")
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if actors is None:
        actors = max(1, cpus // threads_per_actor)
    if actors * threads_per_actor > cpus:
        raise Seq2SeqOnnxError(f"{actors} actors x {threads_per_actor} threads = {actors * threads_per_actor} CPUs, "
                               f"but the Ray cluster has {cpus}: lower --actors or --threads-per-actor")
    return ds.map_batches(
        OnnxGenerator,
        fn_constructor_kwargs=dict(model_dir=str(Path(model_dir).resolve()), dtype=dtype, threads=threads_per_actor,
                                   text_column=text_column, output_scores=output_scores, options=options),
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=threads_per_actor,
    )


def run_job(model_dir, input_path, output_dir, *, address: str | None = None, actors: int | None = None,
            threads_per_actor: int = 1, batch_size: int = 16, dtype: str = "fp32", text_column: str | None = None,
            output_format: str = "parquet", output_scores: bool = False, overwrite: bool = False,
            options: dict | None = None, progress: bool = True) -> dict:
    """Generate for every row of `input_path` into the folder `output_dir`, resumably; returns a summary dict.

    Without `address`, starts a local Ray with actors x threads_per_actor CPUs (default: all cores);
    with it, joins that cluster (`ray start --head` on the head node; `auto` for the local one).
    Summary keys: rows, skipped (already in the folder), generated, failed (this run), failed_total
    (in the folder), seconds, rows_per_second, actors, threads_per_actor, output.
    Raises Seq2SeqOnnxError for bad arguments, inputs or folders, before Ray starts.
    """
    from .runtime import Seq2SeqOnnxModel

    ray = _ray()
    options = dict(options or {})
    if threads_per_actor < 1 or batch_size < 1 or (actors is not None and actors < 1):
        raise Seq2SeqOnnxError("--actors, --threads-per-actor and --batch-size must be at least 1")
    # The driver loads the model once: bad options and language codes fail here, before Ray starts, and the
    # runtime graph cache is built once for the actors on this node.
    try:
        model = Seq2SeqOnnxModel.from_pretrained(model_dir, dtype=dtype, threads=1)
    except (OSError, ValueError) as err:
        raise Seq2SeqOnnxError(str(err)) from None
    languages = {k: options[k] for k in ("src_lang", "tgt_lang") if options.get(k)}
    decoding = {k: v for k, v in options.items() if k not in ("src_lang", "tgt_lang")}
    try:
        effective = model.generation_options.updated(**decoding)
        if languages:
            model.languages.apply(**languages)
    except ValueError as err:
        raise Seq2SeqOnnxError(str(err)) from None
    check_scores_wanted(decoding, output_scores, model.generation_options.num_beams)
    del model
    if actors and not address and not ray.is_initialized():
        usable = _usable_cpus()
        if actors * threads_per_actor > usable:
            raise Seq2SeqOnnxError(f"{actors} actors x {threads_per_actor} threads = {actors * threads_per_actor} CPUs, "
                                   f"but this machine has {usable}: lower --actors or --threads-per-actor")
    prompts = read_prompts(input_path, text_column)
    job = {"model": str(Path(model_dir).resolve()), "dtype": dtype, "input": str(Path(input_path).resolve()),
           "input_signature": input_signature(input_path), "text_column": text_column,
           "options": {k: v for k, v in sorted(options.items()) if v is not None}, "output_scores": output_scores}
    folder = OutputFolder(output_dir, job, output_format, overwrite=overwrite,
                          sequences_per_input=effective.num_return_sequences, output_scores=output_scores)
    try:
        return _job(ray, folder, prompts, model_dir, address=address, actors=actors, threads_per_actor=threads_per_actor,
                    batch_size=batch_size, dtype=dtype, output_scores=output_scores, options=options, progress=progress)
    finally:
        folder.close()


def _job(ray, folder: OutputFolder, prompts: list[Prompt], model_dir, *, address, actors, threads_per_actor, batch_size,
         dtype, output_scores, options, progress) -> dict:
    folder.remove_debris()
    done = folder.done_ids()
    pending = [p for p in prompts if p.id not in done]
    unreadable = [p for p in pending if p.error]
    todo = [p for p in pending if not p.error]
    summary = {"rows": len(prompts), "skipped": len(prompts) - len(pending), "generated": 0, "failed": 0,
               "actors": actors, "threads_per_actor": threads_per_actor, "output": str(folder.path)}
    if unreadable:
        folder.write([{"id": p.id, "prompt": None, "output": None, "error": p.error,
                       **({"score": None} if output_scores else {})} for p in unreadable])
        summary["failed"] += len(unreadable)
    start = time.perf_counter()
    if todo:
        started_here = not ray.is_initialized()  # a local Ray we started, or a connection we opened
        _init_ray(ray, address, actors, threads_per_actor)
        try:
            summary["actors"] = actors or max(1, int(ray.cluster_resources().get("CPU", 1)) // threads_per_actor)
            _run(ray, folder, todo, model_dir, summary, dtype=dtype, actors=actors, threads_per_actor=threads_per_actor,
                 batch_size=batch_size, output_scores=output_scores, options=options, progress=progress)
        finally:
            if started_here:
                ray.shutdown()
    seconds = time.perf_counter() - start
    summary["seconds"] = round(seconds, 3)
    summary["rows_per_second"] = round(summary["generated"] / seconds, 2) if seconds > 0 and summary["generated"] else 0.0
    summary["failed_total"] = folder.failed_count()
    return summary


def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _init_ray(ray, address, actors, threads_per_actor) -> None:
    import logging

    if not ray.is_initialized():
        quiet = dict(log_to_driver=False, logging_level=logging.WARNING, configure_logging=True)
        if address:
            ray.init(address=address, **quiet)
        elif actors:  # a local Ray of exactly the CPUs asked for (run_job checked they are usable)
            ray.init(num_cpus=actors * threads_per_actor, include_dashboard=False, **quiet)
        else:
            ray.init(include_dashboard=False, **quiet)  # Ray counts the CPUs, container limits included
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours counts rows and rows/s over the whole job


def _run(ray, folder: OutputFolder, todo: list[Prompt], model_dir, summary: dict, *, dtype, actors, threads_per_actor,
         batch_size, output_scores, options, progress, log_every: float = 60.0) -> None:
    import pyarrow as pa
    from tqdm.auto import tqdm

    from .outputs import interrupt_on_sigterm, reclaim_sigterm

    # Blocks of 4 to 16 batches: enough of them to keep every actor busy, results (and progress) back every
    # few seconds, and not millions of tiny Ray blocks for a large corpus.
    workers = max(1, summary["actors"] or 1)
    chunk = batch_size * min(16, max(4, len(todo) // (batch_size * workers * 8)))
    tables = [pa.table({"id": pa.array([p.id for p in todo[i : i + chunk]], type=pa.int64()),
                        "prompt": pa.array([p.text for p in todo[i : i + chunk]], type=pa.string())})
              for i in range(0, len(todo), chunk)]
    ds = generate_dataset(ray.data.from_arrow(tables), model_dir, text_column="prompt", dtype=dtype, actors=actors,
                          threads_per_actor=threads_per_actor, batch_size=batch_size, output_scores=output_scores,
                          **options)
    buffer: list[dict] = []
    last = time.monotonic()
    already_failed = summary["failed"]

    def flush():
        nonlocal buffer, last
        rows, buffer, last = buffer, [], time.monotonic()  # taken out first: an interrupt mid-write never writes them twice
        if rows:
            folder.write(rows)

    bar = tqdm(total=len(todo), unit="row", file=sys.stderr, disable=not progress, smoothing=0.1)
    started, reported = time.monotonic(), time.monotonic()
    try:
        with interrupt_on_sigterm(), reclaim_sigterm():  # (ray.init replaced the SIGTERM handler)
            for out in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                for row in out.to_pylist():
                    buffer.append({"id": row["id"], "prompt": row["prompt"], "output": row["output"], "error": row["error"],
                                   **({"score": row["score"]} if output_scores else {})})
                    summary["failed" if row["error"] else "generated"] += 1
                bar.update(out.num_rows)
                if not progress and log_every and time.monotonic() - reported >= log_every:  # logs of unattended runs
                    reported = time.monotonic()
                    done = summary["generated"] + summary["failed"] - already_failed
                    rate = done / (reported - started)
                    print(f"{done}/{len(todo)} rows, {rate:.1f} rows/s, about {(len(todo) - done) / rate / 60:.0f} min left",
                          file=sys.stderr, flush=True)
                if len(buffer) >= FLUSH_ROWS or time.monotonic() - last >= FLUSH_SECONDS:
                    flush()
    except KeyboardInterrupt:
        flush()
        bar.close()
        print(f"stopped: {summary['generated'] + summary['failed'] - already_failed} rows of this run are saved in "
              f"{folder.path}; run the same command again to resume", file=sys.stderr)
        raise
    finally:
        flush()  # what is done is kept, also on Ctrl-C / SIGTERM: a rerun resumes after it
        bar.close()


__all__ = ["OnnxGenerator", "generate_dataset", "run_job", "read_results"]
