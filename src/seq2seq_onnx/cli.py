"""The `seq2seq-onnx` command, and the old Transformers.js `scripts/convert.py` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from . import __version__
from .errors import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_INCONCLUSIVE,
    EXIT_VERIFICATION_FAILED as EXIT_FAILED,
    Seq2SeqOnnxError,
    VerificationError,
)

CONVERT_EPILOG = """\
examples:
  seq2seq-onnx convert google/flan-t5-small -o models/flan-t5-small
  seq2seq-onnx convert ./my-finetuned-t5 -o out/my-t5 --overwrite --json

The output folder holds onnx/encoder_model.onnx and onnx/decoder_model_merged.onnx (decoder with
key/value cache, one graph for the first and later steps), config.json, generation_config.json
and the tokenizer files: what Transformers.js (`@huggingface/transformers`) loads.

exit codes: 0 converted and verified; 1 the export failed or does not match PyTorch (nothing written);
2 bad input (unknown model, unsupported architecture, no usable tokenizer, output in the way);
3 converted, but verification INCONCLUSIVE (the model's outputs ignore earlier tokens, so a lost
cache could not have shown); 130 interrupted (Ctrl-C), 143 terminated (SIGTERM). An interrupted run
leaves the output as it was, and no partial folder.
"""


def _human_size(n: float) -> str:
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1000
        if n < 1000 or unit == "GB":
            break
    return f"{n:.1f} {unit}"


def format_summary(result) -> str:
    lines = [f"Converted {result.source} ({result.model_type}, {result.task}) in {result.seconds:.1f} s", f"  -> {result.output}", ""]
    width = max(len(f) for f in result.files)
    lines.append(f"  {'file':<{width}}  {'size':>9}")
    for name, size in result.files.items():
        lines.append(f"  {name:<{width}}  {_human_size(size):>9}")
    lines.append("")
    report = result.verification
    if report is None:
        lines.append("Verification: skipped")
    else:
        lines.append(
            f"Verification: {report.verdict} "
            f"(greedy, up to {report.max_new_tokens} new tokens; PyTorch generate vs ONNX Runtime fed like Transformers.js)"
        )
        for case in report.cases:
            lines.append(
                f"  {case.name:<15} {'ok' if case.passed else 'MISMATCH':<8} "
                f"tokens {'identical' if case.tokens_match else 'differ'}, "
                f"max |logit diff| {case.max_logits_diff:.1e}"
            )
    if result.transformersjs is not None:
        check = result.transformersjs
        logits = f", max |logit diff| {check.max_logits_diff:.1e}" if check.max_logits_diff is not None else ""
        text = ", text identical" if check.text_ok else ""
        lines.append(f"  {'Transformers.js':<15} {'ok' if check.passed else 'MISMATCH':<8} "
                     f"{len(check.cases)} prompts in Node, tokens {'identical' if check.exact else 'differ'}{logits}{text}")
    if result.quantization:
        lines.append("")
        lines.append(format_quantization(result.quantization))
    for note in result.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def format_quantization(reports) -> str:
    lines = ["Quantized variants (checked in ONNX Runtime; token agreement with fp32 on 2 prompts x 16 tokens):"]
    for r in reports:
        if r.kept:
            size = sum(r.files.values())
            agreement = f"{r.token_agreement:.0%}" if r.token_agreement is not None else "-"
            lines.append(f"  {r.dtype:<6} written  {_human_size(size):>9}  tokens as fp32: {agreement}")
        else:
            lines.append(f"  {r.dtype:<6} DROPPED  {r.reason}")
    return "\n".join(lines)


def _positive_int(value: str) -> int:
    """argparse type for thread counts: a whole number >= 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _port(value: str) -> int:
    """argparse type for a TCP port: 0 (any free port) to 65535."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {value!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535 (0 picks a free port), got {number}")
    return number


def _add_convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="hub model id (e.g. google/flan-t5-small) or local checkpoint folder")
    p.add_argument("-o", "--output", required=True, help="output folder (written atomically; see --overwrite)")
    p.add_argument(
        "--task",
        default="auto",
        choices=["auto", "text2text-generation-with-past", "text2text-generation"],
        help="export task (default: auto, inferred from the config). Both tasks export the decoder "
        "with past key values, which Transformers.js needs",
    )
    p.add_argument("--no-past", action="store_true", help="export a decoder without cache as onnx/decoder_model.onnx "
                   "(Transformers.js cannot use it; for other runtimes only)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset, 12 to 20 (default: 17)")
    p.add_argument("--skip-validation", action="store_true", help="do not compare the export with PyTorch (not recommended)")
    p.add_argument("--skip-transformersjs", action="store_true",
                   help="do not also check the export in Transformers.js under Node (done when Node and its packages are installed)")
    p.add_argument("--overwrite", action="store_true", help="replace the output folder if it is an earlier export "
                   "(never a folder holding files seq2seq-onnx did not write)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow checkpoints with custom modeling code")
    p.add_argument("--quantize", nargs="*", metavar="DTYPE", default=None,
                   help="also write quantized variants for Transformers.js: q8 int8 uint8 q4 q4f16 bnb4 fp16 "
                   "(bare --quantize: all)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout (no progress bar)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seq2seq-onnx",
        description="Convert Hugging Face encoder-decoder models (T5, flan-t5, mT5, umT5) to ONNX with "
        "past key values, in the layout Transformers.js loads, verified token for token against PyTorch.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    conv = sub.add_parser(
        "convert",
        help="convert a checkpoint to ONNX (encoder + merged decoder with cache) and verify it",
        description="Convert a checkpoint to ONNX (encoder + merged decoder with cache) and verify it against PyTorch.",
        epilog=CONVERT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_convert_args(conv)

    gen = sub.add_parser(
        "generate",
        help="generate text with an exported folder on ONNX Runtime",
        description="Generate text with an exported folder on ONNX Runtime, no PyTorch needed. Options have "
        "transformers' names and meanings; their defaults come from the folder's generation_config.json.",
        epilog="examples:\n"
        '  seq2seq-onnx generate models/t5-demo "spell out: 4521"\n'
        '  seq2seq-onnx generate models/t5-demo "spell out: 17" --num-beams 4 --num-return-sequences 2 --json\n'
        "  seq2seq-onnx generate models/t5-demo --input prompts.jsonl --output answers.jsonl --batch-size 32\n\n"
        'JSONL input: one {"input": "..."} object per line ("text", "prompt" or --text-column also do); other\n'
        'fields are copied to the output line. A row that fails to generate gets "output": null and an "error".\n'
        "With --ray: --output is a folder of result parts, and rerunning resumes (see README).\n"
        "exit codes: 0 done; 1 some input lines were bad or failed (reported; the rest done); 2 bad arguments or folder.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gen.add_argument("folder", help="exported model folder (config.json, tokenizer.json, onnx/)")
    gen.add_argument("texts", nargs="*", metavar="TEXT", help="input text(s), generated as one batch")
    gen.add_argument("--input", help="JSONL file of inputs (instead of TEXT); with --ray also Parquet (a file or folder)")
    gen.add_argument("--output", help="JSONL file for the results, {input, output} per line, for TEXT or --input "
                     "(default: stdout); written in full or not at all. With --ray: a folder of result parts")
    gen.add_argument("--overwrite", action="store_true", help="replace an existing --output file (with --ray: start the "
                     "job's folder again, removing only the files the job wrote)")
    gen.add_argument("--batch-size", type=int, default=16, help="inputs per batch with --input (default 16)")
    gen.add_argument("--dtype", default="fp32", help="which ONNX files to load: fp32 (default), fp16, q8, int8, uint8, q4, q4f16, bnb4")
    gen.add_argument("--threads", type=_positive_int, default=None, help="ONNX Runtime intra-op threads (default: all cores)")
    gen.add_argument("--json", action="store_true", help="print JSON lines {input, output} instead of plain text "
                     "(with --ray: the job's summary as JSON)")
    gen.add_argument("--text-column", help="field of --input holding the text (default: the first of text, prompt, input)")
    ray = gen.add_argument_group("Ray (pip install 'seq2seq-onnx[ray]'): --input FILE --output FOLDER --ray, resumable")
    ray.add_argument("--ray", action="store_true", help="run on Ray Data: a pool of actors, each with the model loaded "
                     "once; --output is a folder of result parts; rerunning with the same folder resumes")
    ray.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (e.g. auto, or HEAD:6379 after "
                     "`ray start --head`); default: start a local Ray with actors x threads CPUs")
    ray.add_argument("--actors", type=_positive_int, help="actors (model copies) at once (default: CPUs // threads per actor)")
    ray.add_argument("--threads-per-actor", type=_positive_int,
                     help="ONNX Runtime threads per actor, and the CPUs each actor asks of Ray (default 1)")
    ray.add_argument("--output-format", choices=["parquet", "jsonl"],
                     help="format of the result parts (default parquet)")
    ray.add_argument("--output-scores", action="store_true", help="add each output's sequence score (beam search)")
    langs = gen.add_argument_group("translation (mBART-50, M2M100, NLLB, multi-target Marian)")
    langs.add_argument("--src-lang", help="source language code, e.g. en_XX, en (M2M100), eng_Latn (NLLB)")
    langs.add_argument("--tgt-lang", help="target language code, e.g. fr_XX, fr, fra_Latn, fra (Marian >>fra<<)")
    decoding = gen.add_argument_group("decoding options (default: generation_config.json)")
    decoding.add_argument("--max-new-tokens", type=int, help="tokens to generate at most (takes precedence over max_length)")
    decoding.add_argument("--max-length", type=int, help="decoder length at most, start token included (transformers' "
                          "max_length); replaces generation_config.json's max_new_tokens, gives way to --max-new-tokens")
    decoding.add_argument("--min-new-tokens", type=int, help="tokens to generate at least (takes precedence over min_length)")
    decoding.add_argument("--min-length", type=int, help="decoder length at least, start token included (transformers' "
                          "min_length); replaces generation_config.json's min_new_tokens, gives way to --min-new-tokens")
    decoding.add_argument("--num-beams", type=int)
    decoding.add_argument("--length-penalty", type=float)
    decoding.add_argument("--early-stopping", choices=["true", "false", "never"])
    decoding.add_argument("--num-return-sequences", type=int)
    decoding.add_argument("--do-sample", action="store_true", default=None)
    decoding.add_argument("--temperature", type=float)
    decoding.add_argument("--top-k", type=int)
    decoding.add_argument("--top-p", type=float)
    decoding.add_argument("--repetition-penalty", type=float)
    decoding.add_argument("--no-repeat-ngram-size", type=int)
    decoding.add_argument("--seed", type=int)

    qz = sub.add_parser(
        "quantize",
        help="write quantized variants (q8, int8, uint8, q4, q4f16, bnb4, fp16) of an existing export",
        description="Write quantized variants of an export folder's fp32 files, with Transformers.js file suffixes "
        "(_quantized, _int8, _uint8, _q4, _q4f16, _bnb4, _fp16), and quantize_config.json. Each variant is loaded "
        "and run in ONNX Runtime before it is kept; one that fails is not written, and the summary says why.",
        epilog="example:\n  seq2seq-onnx quantize models/t5-demo --modes q8 q4 fp16\n\n"
        "A file seq2seq-onnx did not write (a variant from another tool) is never replaced: that dtype is skipped.\n"
        "exit codes: 0 every dtype written; 1 some dtype not written (the summary says why); 2 bad arguments or folder.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    qz.add_argument("folder", help="export folder with onnx/encoder_model.onnx and onnx/decoder_model_merged.onnx")
    qz.add_argument("--modes", nargs="+", default=None, metavar="DTYPE", help="default: all")
    qz.add_argument("--json", action="store_true", help="print the result as JSON")

    ver = sub.add_parser(
        "verify",
        help="greedy ids of an export against PyTorch, in Python ONNX Runtime and in Transformers.js (Node)",
        description="Check an export folder against PyTorch on its source checkpoint: greedy generation on fixed "
        "prompts, for every dtype present, in Python ONNX Runtime (fed as Transformers.js feeds it) and in real "
        "Transformers.js under Node (offline). fp32 must give PyTorch's ids exactly; quantized dtypes must run, "
        "and their agreement with PyTorch is reported.",
        epilog="fp32 must match PyTorch's ids and step logits in every runtime, and the text each runtime decodes "
        "must equal transformers' for the same ids; quantized dtypes must run. When no answer shows a token "
        "followed by two different tokens (so its ids cannot reveal a lost cache), extra prompts and longer outputs "
        "are tried; if even PyTorch's logits ignore earlier tokens, a lost cache could not show and the verdict is "
        "INCONCLUSIVE.\n\nexit codes: 0 passed; 1 a check failed; 2 bad arguments, no reference, or a runtime "
        "asked for alone that is not installed; 3 inconclusive.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ver.add_argument("folder", help="export folder")
    ver.add_argument("--reference", help="source checkpoint (hub id or folder); default: the one recorded at conversion")
    ver.add_argument("--dtype", nargs="+", default=None, help="dtypes to check (default: all present)")
    ver.add_argument("--runtime", choices=["python", "transformers.js", "browser", "all"], default="all",
                     help="all = python, transformers.js (Node) and browser (headless Chromium, WASM) when present")
    ver.add_argument("--max-new-tokens", type=int, default=20)
    ver.add_argument("--json", action="store_true", help="print the result as JSON")

    srv = sub.add_parser(
        "serve",
        help="serve a page on 127.0.0.1 to try an export in your own browser (Transformers.js, WASM, offline)",
        description="Serve a small page where a person can try the export in their own browser: prompt box, "
        "dtype choice among those present, the text streaming in, tokens/s. Everything (library, WASM, model) "
        "comes from this local server; nothing from a CDN.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    srv.add_argument("folder", help="export folder")
    srv.add_argument("--port", type=_port, default=8000, help="port on 127.0.0.1, 0 for any free port (default 8000)")

    ins = sub.add_parser(
        "inspect",
        help="diagnose any export folder (ours or not) and say whether Transformers.js will run it right",
        description="Diagnose an export folder without loading its weights: files by dtype, which dtypes "
        "Transformers.js will find, opset, IR version, inputs and outputs, the decoder cache (past_key_values, "
        "use_cache_branch) against config.json, tokenizer files; then a verdict a person can act on.",
        epilog="exit codes: 0 healthy; 1 problems found; 2 not an export folder.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ins.add_argument("folder", help="export folder (config.json, tokenizer files, onnx/)")
    ins.add_argument("--json", action="store_true", help="print the report as JSON")

    ev = sub.add_parser(
        "eval",
        help="exact match and speed of an exported folder on a JSONL set",
        description='Exact match (overall and per task) and ms per example of an exported folder on a JSONL file '
        'whose lines are {"input": ..., "target": ..., "task": ...}.',
        epilog="example:\n  seq2seq-onnx eval models/t5-demo --data demo/t5-demo/held_out.jsonl",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("folder", help="exported model folder")
    ev.add_argument("--data", required=True, help="JSONL file with input and target fields")
    ev.add_argument("--dtype", default="fp32", help="which ONNX files to evaluate (default fp32)")
    ev.add_argument("--batch-size", type=_positive_int, default=32, help="examples per batch (default 32)")
    ev.add_argument("--limit", type=int, default=None, help="only the first N examples")
    ev.add_argument("--threads", type=_positive_int, default=None, help="ONNX Runtime intra-op threads (default: all cores)")
    ev.add_argument("--num-beams", type=_positive_int, default=None,
                    help="beams (default: generation_config.json's, e.g. 4 for opus-mt; 1 = greedy)")
    ev.add_argument("--src-lang", help="source language code for every example (as generate --src-lang)")
    ev.add_argument("--tgt-lang", help="target language code for every example (as generate --tgt-lang)")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


_DECODING_FLAGS = ("max_new_tokens", "max_length", "min_new_tokens", "min_length", "num_beams", "length_penalty", "early_stopping",
                   "num_return_sequences", "do_sample", "temperature", "top_k", "top_p", "repetition_penalty",
                   "no_repeat_ngram_size", "seed")


def _decoding_options(args) -> dict:
    options = {k: getattr(args, k) for k in _DECODING_FLAGS if getattr(args, k) is not None}
    if "early_stopping" in options:
        options["early_stopping"] = {"true": True, "false": False}.get(options["early_stopping"], "never")
    # A length flag is this command's explicit choice, so generation_config.json's max_new_tokens
    # (min_new_tokens) must not override it; as in transformers, the *_new_tokens flag wins when both are given.
    for total, new in (("max_length", "max_new_tokens"), ("min_length", "min_new_tokens")):
        if total in options and new not in options:
            options[new] = None
    return options


def _run_generate(args) -> int:
    import warnings

    from .runtime import Seq2SeqOnnxModel

    if bool(args.texts) == bool(args.input):
        raise Seq2SeqOnnxError("give either TEXT arguments or --input FILE")
    if args.ray:
        return _run_generate_on_ray(args)
    for flag in ("ray_address", "actors", "output_scores", "threads_per_actor", "output_format"):
        if getattr(args, flag):
            raise Seq2SeqOnnxError(f"--{flag.replace('_', '-')} goes with --ray (without it, --output is one JSONL file)")
    if args.batch_size < 1:
        raise Seq2SeqOnnxError(f"--batch-size must be at least 1, got {args.batch_size}")
    target = _check_output_file(args.output, args.overwrite) if args.output else None  # before any work
    options = _decoding_options(args)
    model = Seq2SeqOnnxModel.from_pretrained(args.folder, dtype=args.dtype, threads=args.threads)
    with warnings.catch_warnings():  # (advice about the options is given once, when generating)
        warnings.simplefilter("ignore")
        model.generation_options.updated(**options)  # bad values fail here, before any input is read
    languages = {"src_lang": args.src_lang, "tgt_lang": args.tgt_lang}
    if any(languages.values()):
        model.languages.apply(**languages)  # unknown codes fail here too, before any input is read
    options = {**languages, **options}
    if args.texts and target is None:
        outputs = model.generate_text(list(args.texts), **options)
        per_input = len(outputs) // len(args.texts)
        for i, text in enumerate(args.texts):
            mine = outputs[i * per_input : (i + 1) * per_input]
            if args.json:
                value = mine[0] if per_input == 1 else mine
                print(json.dumps({"input": text, "output": value}, ensure_ascii=False))
            else:
                print("\n".join(mine))
        return EXIT_OK
    if args.texts:
        rows, bad = [(i + 1, {"input": text}, text) for i, text in enumerate(args.texts)], []
    else:
        rows, bad = _read_input_lines(args.input, args.text_column)
        for number, reason in bad:
            print(f"{args.input}:{number}: {reason}; skipped", file=sys.stderr)
    failed = _generate_rows(model, rows, options, args.batch_size, target, args.overwrite)
    for number, reason in failed:
        print(f"{args.input or 'TEXT'}:{number}: {reason}; written with an \"error\" field", file=sys.stderr)
    if bad or failed:
        print(f"{len(bad)} bad line(s) skipped; {len(rows) - len(failed)} generated, {len(failed)} failed", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _read_input_lines(path: str, text_column: str | None):
    """JSONL rows [(line number, row, its text)] and bad lines [(line number, reason)]."""
    from pathlib import Path

    from .jobs import input_format, read_prompts

    if input_format(Path(path)) == "parquet":
        raise Seq2SeqOnnxError(f"{path}: Parquet input goes with --ray (a folder of results); without it, give JSONL")
    columns = (text_column,) if text_column else ("input", "text", "prompt")  # `input` first, as before --text-column
    prompts = read_prompts(path, text_column, candidates=columns)
    rows, bad = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [line for line in f]
    for p in prompts:
        if p.error:
            bad.append((p.id + 1, p.error.split(": ", 1)[-1]))
            continue
        row = json.loads(lines[p.id])
        column = next(c for c in columns if c in row and row[c] == p.text)
        rows.append((p.id + 1, row, row[column]))
    return rows, bad


def _run_generate_on_ray(args) -> int:
    from .ray import run_job

    if not args.input or not args.output:
        raise Seq2SeqOnnxError("--ray takes --input FILE and --output FOLDER (not TEXT arguments)")
    if args.threads:
        raise Seq2SeqOnnxError("with --ray, threads are per actor: use --threads-per-actor")
    options = {**_decoding_options(args), "src_lang": args.src_lang, "tgt_lang": args.tgt_lang}
    options = {k: v for k, v in options.items() if v is not None or k in ("max_new_tokens", "min_new_tokens")}
    summary = run_job(args.folder, args.input, args.output, address=args.ray_address, actors=args.actors,
                      threads_per_actor=args.threads_per_actor or 1, batch_size=args.batch_size, dtype=args.dtype,
                      text_column=args.text_column, output_format=args.output_format or "parquet",
                      output_scores=args.output_scores, overwrite=args.overwrite, options=options,
                      progress=sys.stderr.isatty())
    if args.json:
        print(json.dumps(summary, indent=2))
    elif summary["skipped"] == summary["rows"]:
        print(f"nothing to do: all {summary['rows']} rows are already in {summary['output']} "
              f"({summary['failed_total']} of them failed)", file=sys.stderr)
    else:
        print(f"{summary['rows']} rows: {summary['skipped']} already done, {summary['generated']} generated, "
              f"{summary['failed']} failed in this run ({summary['rows_per_second']} rows/s, {summary['actors']} actors x "
              f"{summary['threads_per_actor']} threads); results in {summary['output']}", file=sys.stderr)
        if summary["failed_total"]:
            print(f"{summary['failed_total']} row(s) failed: see their `error` column", file=sys.stderr)
    return EXIT_FAILED if summary["failed_total"] else EXIT_OK


def _check_output_file(output: str, overwrite: bool):
    """The --output path, checked before any work: its folder exists, and an existing file is replaced only with --overwrite."""
    from pathlib import Path

    target = Path(output)
    if not output.strip():
        raise Seq2SeqOnnxError("--output is empty; give a file name for the JSONL results")
    if target.is_dir():
        raise Seq2SeqOnnxError(f"--output {target} is a folder; give a file name for the JSONL results")
    if not target.parent.is_dir():
        raise Seq2SeqOnnxError(f"--output {target}: folder {target.parent} does not exist")
    if target.exists() and target.is_file() and not overwrite:
        raise Seq2SeqOnnxError(f"--output {target} already exists; pass --overwrite to replace it")
    return target


def _generate_rows(model, rows, options, batch_size: int, target, overwrite: bool) -> list[tuple[int, str]]:
    """Generate for [(line number, row, text)] in batches; JSON lines to stdout or to `target`, written in full or not
    at all; returns the rows that failed [(line number, error)] (their lines carry "output": null and "error").

    A regular file is built as a hidden partial file and published at the end (never over a file
    that appeared meanwhile, unless --overwrite); a device or pipe (/dev/stdout) is written to directly.
    """
    from tqdm.auto import tqdm

    from .jobs import generate_batch
    from .outputs import partial_file, publish_file, remove_stale

    failed: list[tuple[int, str]] = []
    partial = None
    if target is None:
        out = sys.stdout
    elif target.exists() and not target.is_file():
        out = open(target, "w", encoding="utf-8")
    else:
        remove_stale(target.resolve())
        partial = partial_file(target.resolve())
        out = open(partial, "w", encoding="utf-8")
    try:
        with tqdm(total=len(rows), unit="input", file=sys.stderr, disable=target is None or not sys.stderr.isatty()) as bar:
            for start in range(0, len(rows), batch_size):
                batch = rows[start : start + batch_size]
                # a batch that fails is retried row by row: a bad row (too long, ...) gets its error, the others their output
                results = generate_batch(model, [text for _, _, text in batch], options)
                for (number, row, _), result in zip(batch, results):
                    line = {**row, "output": result["output"]}
                    if result["error"]:
                        line["error"] = result["error"]
                        failed.append((number, result["error"]))
                    out.write(json.dumps(line, ensure_ascii=False) + "\n")
                bar.update(len(batch))
        if partial is not None:
            out.close()
            publish_file(partial, target, overwrite)
    finally:
        if out is not sys.stdout:
            out.close()
        if partial is not None:
            partial.unlink(missing_ok=True)
    return failed


def _run_quantize(args) -> int:
    from dataclasses import asdict

    from .quantize import MODES, quantize_folder

    reports = quantize_folder(args.folder, args.modes or MODES, progress=not args.json and sys.stderr.isatty())
    if args.json:
        print(json.dumps([asdict(r) for r in reports], indent=2))
    else:
        print(format_quantization(reports))
    return EXIT_OK if all(r.kept for r in reports) else EXIT_FAILED


def _run_verify(args) -> int:
    from .verify import verify_folder

    if args.runtime == "all":
        import shutil

        runtimes = ["python", "transformers.js"] + (["browser"] if shutil.which("chromium") else [])
    else:
        runtimes = [args.runtime]
    result = verify_folder(args.folder, reference=args.reference, dtypes=args.dtype, runtimes=runtimes,
                           max_new_tokens=args.max_new_tokens)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(f"{result.folder} against {result.reference} (PyTorch greedy, up to {args.max_new_tokens} new tokens)")
        for c in result.checks:
            if not c.passed:
                status = f"FAILED  {c.failure()}"
            else:
                status = "ok      " + ("ids identical" if c.exact else f"ids differ, {c.agreement:.0%} of tokens agree")
                status += f", max |logit diff| {c.max_logits_diff:.1e}" if c.max_logits_diff is not None else ""
                status += ", text identical" if c.text_ok else ""
            speed = f" ({c.ms_per_token:.1f} ms/token)" if c.ms_per_token else ""
            print(f"  {c.dtype:<6} {c.runtime:<16} {status}{speed}")
        for problem in result.problems:
            print(f"problem: {problem}")
        for note in result.notes:
            print(f"note: {note}")
        print("verification " + result.verdict)
    return {"PASSED": EXIT_OK, "FAILED": EXIT_FAILED}.get(result.verdict, EXIT_INCONCLUSIVE)


def _run_serve(args) -> int:
    from pathlib import Path

    from .verify.transformersjs import ensure_installed, serve

    from .verify.transformersjs import TransformersJsUnavailable

    folder = Path(args.folder)
    if not (folder / "config.json").is_file():
        raise Seq2SeqOnnxError(f"{folder} has no config.json: not an export folder")
    try:
        node = ensure_installed()
    except TransformersJsUnavailable as err:
        raise Seq2SeqOnnxError(f"serve needs Transformers.js's browser files from npm, which it serves locally: {err}") from None
    try:
        server = serve(node, folder, args.port)
    except OSError as err:
        import errno

        if err.errno == errno.EADDRINUSE:
            raise Seq2SeqOnnxError(f"port {args.port} on 127.0.0.1 is in use; choose another with --port N "
                                   "(--port 0 picks a free one)") from None
        raise
    print(f"Serving {folder} on http://127.0.0.1:{server.server_address[1]}/  (Ctrl-C to stop)", flush=True)
    try:
        import time

        while True:
            time.sleep(3600)
    finally:
        server.shutdown()
        server.server_close()


def _run_inspect(args) -> int:
    from .inspect import format_report, inspect_folder

    report = inspect_folder(args.folder)
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    return report.exit_code


def _run_eval(args) -> int:
    from .evaluate import evaluate

    options = {"num_beams": args.num_beams} if args.num_beams is not None else {}
    result = evaluate(args.folder, args.data, dtype=args.dtype, batch_size=args.batch_size, limit=args.limit,
                      threads=args.threads, src_lang=args.src_lang, tgt_lang=args.tgt_lang, **options)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return EXIT_OK
    print(f"{result.folder} ({result.dtype}) on {args.data}: {result.examples} examples")
    print(f"  exact match  {result.exact_match:.1%}")
    for task, score in result.by_task.items():
        print(f"    {task:<20} {score:.1%}")
    print(f"  speed        {result.ms_per_example:.1f} ms/example, {result.ms_per_token:.2f} ms/token "
          f"({'greedy' if result.num_beams == 1 else f'{result.num_beams} beams'}, batch {result.batch_size})")
    for m in result.mistakes[:5]:
        print(f"  wrong: {m['input']!r} -> {m['prediction']!r} (expected {m['target']!r})")
    return EXIT_OK


def _run_convert(source, output, *, as_json: bool, **kwargs) -> int:
    from .convert import convert

    try:
        with _plain_warnings():
            result = convert(source, output, progress=not as_json and sys.stderr.isatty(), **kwargs)
    except KeyboardInterrupt as err:
        print("interrupted: nothing was written", file=sys.stderr)
        return _interrupted_code(err)
    except Seq2SeqOnnxError as err:
        if as_json:
            payload = {"error": str(err), "exit_code": err.exit_code}
            if isinstance(err, VerificationError) and err.report is not None:
                payload["verification"] = err.report.to_dict()
            print(json.dumps(payload, indent=2))
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except Exception as err:  # a bug, or a checkpoint we did not foresee: one clear line, traceback on request
        if _interrupt_in_disguise():
            print("interrupted: nothing was written", file=sys.stderr)
            return _interrupted_code(None)
        if os.environ.get("SEQ2SEQ_ONNX_DEBUG"):
            raise
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        if as_json:
            print(json.dumps({"error": f"{type(err).__name__}: {message}", "exit_code": EXIT_FAILED}, indent=2))
        print(
            f"error: conversion failed unexpectedly ({type(err).__name__}: {message}); nothing was written.\n"
            "Run again with SEQ2SEQ_ONNX_DEBUG=1 for the traceback, and please report it.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print(json.dumps(result.to_dict(), indent=2) if as_json else format_summary(result))
    if result.verification is not None and result.verification.verdict == "INCONCLUSIVE":
        return EXIT_INCONCLUSIVE  # written, but the check could not have caught a lost cache
    return EXIT_OK


@contextlib.contextmanager
def _plain_warnings():
    """Warnings as `warning: ...` lines on stderr, like the tool's other messages (not Python's file:line form)."""
    import warnings

    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *args, **kwargs: print(f"warning: {message}", file=sys.stderr)
        yield


def _interrupted_code(err: KeyboardInterrupt | None) -> int:
    """130 for Ctrl-C, 143 for SIGTERM (`err` None: the signal this process received)."""
    import signal

    from .outputs import Terminated, interrupted_by

    if err is None:
        return EXIT_TERMINATED if interrupted_by() == signal.SIGTERM else EXIT_INTERRUPTED
    return EXIT_TERMINATED if isinstance(err, Terminated) else EXIT_INTERRUPTED


def _interrupt_in_disguise() -> bool:
    """An exception that an interrupt caused (a signal landing in a C extension's import surfaces as ImportError)."""
    from .outputs import interrupted_by

    return interrupted_by() is not None


def main(argv: list[str] | None = None) -> int:
    """The `seq2seq-onnx` command; returns its exit code. Ctrl-C at any moment exits 130 without a traceback."""
    from .outputs import interrupt_on_sigterm

    try:
        with interrupt_on_sigterm():
            return _main(argv)
    except KeyboardInterrupt as err:
        print("interrupted", file=sys.stderr)
        return _interrupted_code(err)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("generate", "eval", "quantize", "verify", "inspect", "serve"):
        from .runtime import ModelFolderError

        run = {"generate": _run_generate, "eval": _run_eval, "quantize": _run_quantize, "verify": _run_verify,
               "inspect": _run_inspect, "serve": _run_serve}[args.command]
        try:
            with _plain_warnings():
                return run(args)
        except KeyboardInterrupt as err:
            print("interrupted", file=sys.stderr)
            return _interrupted_code(err)
        except (Seq2SeqOnnxError, ModelFolderError, ValueError, TypeError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_USAGE
        except Exception as err:  # one clear line; the traceback on request
            if _interrupt_in_disguise():
                print("interrupted", file=sys.stderr)
                return _interrupted_code(None)
            if os.environ.get("SEQ2SEQ_ONNX_DEBUG"):
                raise
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            print(f"error: {args.command} failed ({type(err).__name__}: {first}). "
                  "Run again with SEQ2SEQ_ONNX_DEBUG=1 for the traceback.", file=sys.stderr)
            return EXIT_FAILED
    if args.command == "convert":
        return _run_convert(
            args.source,
            args.output,
            as_json=args.json,
            task=args.task,
            opset=args.opset,
            no_past=args.no_past,
            validate=not args.skip_validation,
            overwrite=args.overwrite,
            trust_remote_code=args.trust_remote_code,
            quantize=_quantize_modes(args.quantize),
            transformersjs=False if args.skip_transformersjs else None,
        )
    return EXIT_USAGE


def _quantize_modes(value) -> tuple[str, ...]:
    """--quantize absent: none; bare: all; with names: those."""
    from .quantize import MODES

    if value is None or value is False:
        return ()
    if value is True or value == []:
        return MODES
    return tuple(value)


def _flag(value: str | None) -> bool:
    """HfArgumentParser-style booleans (transformers' `string_to_bool`): `--quantize` or `--quantize true`."""
    if value is None:
        return True
    if value.lower() in ("true", "1", "yes", "y", "t"):
        return True
    if value.lower() in ("false", "0", "no", "n", "f"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


# Flags of the old script that this tool has no use for; accepted so old commands still run.
_IGNORED_LEGACY = ("library_name", "variant", "custom_onnx_configs", "block_size", "accuracy_level", "quant_type",
                   "tokenizer_id")
_IGNORED_LEGACY_LISTS = ("op_block_list",)  # nargs="+" in the old script
# Boolean flags of the old script (HfArgumentParser: bare, or with a true/false value).
# Quantizer settings, honoured (quantize.QuantizeSettings; the defaults are the old script's for T5,
# which turned per_channel and reduce_range off only for its NO_PER_CHANNEL_REDUCE_RANGE_MODELS):
_LEGACY_QUANTIZER_FLAGS = ("per_channel", "reduce_range", "is_symmetric")
# Others, with what seq2seq-onnx always does: asking for the other value is noted as ignored.
_LEGACY_BOOLEANS = {
    "skip_onnxslim": (True, "seq2seq-onnx does not run onnxslim"),
    "split_modalities": (False, "the old script used it for CLIP models only"),
    "output_attentions": (False, "the old script used it for Whisper models only"),
}


def legacy_main(argv: list[str] | None = None) -> int:
    """`python -m seq2seq_onnx.convert --model_id ID ...`, as Transformers.js's former scripts/convert.py."""
    from .outputs import interrupt_on_sigterm

    try:
        with interrupt_on_sigterm():
            return _legacy_main(argv)
    except KeyboardInterrupt as err:
        print("interrupted", file=sys.stderr)
        return _interrupted_code(err)


def _legacy_main(argv: list[str] | None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m seq2seq_onnx.convert",
        description="Compatibility entry point for Transformers.js's former scripts/convert.py. "
        "Writes OUTPUT_PARENT_DIR/MODEL_ID/. Prefer `seq2seq-onnx convert`.",
    )
    p.add_argument("--model_id", required=True, help="hub model id or local checkpoint folder")
    p.add_argument("--task", default="auto", help="auto, text2text-generation-with-past or text2text-generation "
                   "(all export the decoder with past key values)")
    p.add_argument("--quantize", nargs="?", const=None, default=False, type=_flag, metavar="BOOL",
                   help="also write quantized variants (all of --modes)")
    p.add_argument("--modes", nargs="+", default=None, help="dtypes for --quantize (default: all)")
    p.add_argument("--output_parent_dir", default="./models/", help="parent folder of the output (default: ./models/)")
    p.add_argument("--opset", type=int, default=None)
    p.add_argument("--device", default="cpu", help="accepted for compatibility; export runs on the CPU")
    p.add_argument("--skip_validation", nargs="?", const=None, default=False, type=_flag, metavar="BOOL")
    p.add_argument("--trust_remote_code", nargs="?", const=None, default=False, type=_flag, metavar="BOOL")
    p.add_argument("--overwrite", action="store_true", help="replace the output folder if it is an earlier export "
                   "(never a folder holding files seq2seq-onnx did not write)")
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    for name in _IGNORED_LEGACY:
        p.add_argument(f"--{name}", default=None, help=argparse.SUPPRESS)
    for name in _IGNORED_LEGACY_LISTS:
        p.add_argument(f"--{name}", nargs="+", default=None, help=argparse.SUPPRESS)
    for name in (*_LEGACY_QUANTIZER_FLAGS, *_LEGACY_BOOLEANS):
        p.add_argument(f"--{name}", nargs="?", const=True, default=None, type=_flag, metavar="BOOL", help=argparse.SUPPRESS)
    # HfArgumentParser also made `--no_NAME` for booleans whose default was True (is_symmetric; per_channel
    # and reduce_range in the older scripts). Added after the flag, so that its default (None: not given) stands.
    for name in _LEGACY_QUANTIZER_FLAGS:
        p.add_argument(f"--no_{name}", dest=name, action="store_false", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quantize is None:
        args.quantize = True
    for flag in ("skip_validation", "trust_remote_code"):
        if getattr(args, flag) is None:
            setattr(args, flag, True)
    for name in _IGNORED_LEGACY + _IGNORED_LEGACY_LISTS:
        if getattr(args, name) is not None:
            print(f"note: --{name} is not used by seq2seq-onnx and was ignored", file=sys.stderr)
    for name, (ours, why) in _LEGACY_BOOLEANS.items():
        if getattr(args, name) is not None and getattr(args, name) != ours:
            print(f"note: --{name} {str(getattr(args, name)).lower()} ignored: {why}", file=sys.stderr)
    if args.device != "cpu":
        print(f"note: --device {args.device} ignored; the export runs on the CPU", file=sys.stderr)

    from pathlib import Path

    local = Path(args.model_id).expanduser()
    name = local.resolve().name if local.is_dir() else args.model_id
    output = Path(args.output_parent_dir) / name
    modes = (tuple(args.modes) if args.modes else _quantize_modes(True)) if args.quantize else ()
    from .quantize import MODES, QuantizeSettings

    settings = {n: getattr(args, n) for n in _LEGACY_QUANTIZER_FLAGS if getattr(args, n) is not None}
    custom = bool(modes) and any(getattr(QuantizeSettings(), n) != v for n, v in settings.items())
    unknown = [m for m in modes if m not in MODES]
    if custom and unknown:  # (convert checks them itself when it quantizes)
        print(f"error: unknown quantization mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}", file=sys.stderr)
        return EXIT_USAGE
    code = _run_convert(
        args.model_id,
        output,
        as_json=args.json,
        quantize=() if custom else modes,  # `convert` quantizes with the default settings only
        task=args.task,
        opset=args.opset,
        validate=not args.skip_validation,
        overwrite=args.overwrite,
        trust_remote_code=args.trust_remote_code,
    )
    if code != EXIT_OK or not custom:
        return code
    return _legacy_quantize(output, modes, QuantizeSettings(**settings), as_json=args.json)


def _legacy_quantize(folder, modes, settings, *, as_json: bool) -> int:
    """The old script's quantize step with other than the default settings, on the export just written."""
    from dataclasses import asdict

    from .quantize import quantize_folder

    try:
        reports = quantize_folder(folder, modes, settings=settings, progress=not as_json and sys.stderr.isatty())
    except KeyboardInterrupt as err:
        print("interrupted: the fp32 export is in place; quantized variants finished before the interrupt were kept "
              "(see quantize_config.json), the others were not written", file=sys.stderr)
        return _interrupted_code(err)
    except Seq2SeqOnnxError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    if as_json:
        print(json.dumps([asdict(r) for r in reports], indent=2))
    else:
        print(format_quantization(reports))
    for r in reports:
        if not r.kept:
            print(f"note: {r.dtype} not written: {r.reason}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
