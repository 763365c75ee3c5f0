"""Convert: the pipeline from a Hugging Face seq2seq checkpoint to the folder Transformers.js loads.

    out/
      config.json  generation_config.json  tokenizer.json  tokenizer_config.json
      special_tokens_map.json  [spiece.model]  seq2seq_onnx.json
      onnx/encoder_model.onnx  onnx/decoder_model_merged.onnx

Everything is written into a hidden temporary folder beside the output and moved into place
only after verification passed, so a crash, a mismatch or Ctrl-C never leaves a folder that
looks complete. The stages do the work: `export` (tokenizer, graphs, configs), `verify`
(against PyTorch, in ONNX Runtime and Transformers.js), `quantize`, and `outputs` (the folder).
Run as `python -m seq2seq_onnx.convert --model_id ...` (`__main__.py`) this package is also the
old Transformers.js `scripts/convert.py` command line.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import (
    NoTokenizerError,
    OutputExistsError,
    Seq2SeqOnnxError,
    VerificationError,
)
from ..export import ENCODER_FILE, MERGED_DECODER_FILE, NO_PAST_DECODER_FILE, export_graphs
from ..export.configs import write_configs
from ..export.source import TASK_WITH_PAST, load_model, resolve_source, resolve_task
from ..outputs import (
    INFO_FILE,
    MANIFEST_KEY,
    check_replaceable,
    interrupt_on_sigterm,
    partial_folder,
    put_in_place,
    remove_stale,
    signals_held,
)

__all__ = ["ConversionResult", "convert", "ENCODER_FILE", "MERGED_DECODER_FILE", "NO_PAST_DECODER_FILE"]


@dataclass
class ConversionResult:
    source: str
    output: Path
    model_type: str
    task: str
    files: dict[str, int] = field(default_factory=dict)  # relative path -> bytes
    verification: object | None = None  # VerificationReport, or None when skipped
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    quantization: list = field(default_factory=list)  # quantize.VariantReport per requested dtype
    transformersjs: object | None = None  # verify.RuntimeCheck when checked in Transformers.js

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "output": str(self.output),
            "model_type": self.model_type,
            "task": self.task,
            "files": self.files,
            "verification": self.verification.to_dict() if self.verification is not None else None,
            "notes": self.notes,
            "seconds": round(self.seconds, 2),
            "quantization": [asdict(v) for v in self.quantization],
            "transformersjs": asdict(self.transformersjs) if self.transformersjs is not None else None,
        }


class _Stages:
    """A progress bar over the conversion's stages (stderr; silent when disabled)."""

    def __init__(self, names: list[str], enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=len(names), disable=not enabled, unit="step", file=sys.stderr, leave=False)

    def start(self, name: str) -> None:
        self.bar.set_description(name)

    def done(self) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _check_output(output: Path, source, overwrite: bool) -> None:
    if source.is_local:
        src = Path(source.ref).resolve()
        if output == src or output in src.parents:
            raise OutputExistsError(f"output {output} would replace the source checkpoint {src}; choose another folder")
        if src in output.parents:
            raise OutputExistsError(f"output {output} is inside the source checkpoint {src}; choose a folder outside it")
    parent = next(p for p in output.parents if p.exists())
    if not parent.is_dir():
        raise OutputExistsError(f"cannot write the export to {output}: {parent} is a file, not a folder")
    if output.exists() or output.is_symlink():
        if not output.is_dir():
            raise OutputExistsError(f"output {output} is a file, not a folder; give a folder path for the export")
        if not overwrite:
            raise OutputExistsError(
                f"output folder {output} already exists; pass --overwrite to replace it (allowed only for an earlier "
                "export of seq2seq-onnx)"
            )
        check_replaceable(output)


def _make_parents(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; return those created, deepest first."""
    created = []
    for parent in [folder, *folder.parents]:
        if parent.exists():
            break
        created.append(parent)
    folder.mkdir(parents=True, exist_ok=True)
    return created


def convert(
    source: str,
    output: str | os.PathLike,
    *,
    task: str = "auto",
    opset: int | None = None,
    no_past: bool = False,
    validate: bool = True,
    overwrite: bool = False,
    trust_remote_code: bool = False,
    progress: bool = True,
    max_new_tokens: int | None = None,
    quantize: list[str] | tuple[str, ...] = (),
    transformersjs: bool | None = None,
) -> ConversionResult:
    """Export `source` (hub id or local folder) to `output`, verify it, and put it in place.

    `transformersjs`: also check the fp32 export in Transformers.js under Node (None: when Node
    and the npm packages are installed, see `seq2seq-onnx verify`). `quantize` names Transformers.js dtypes (q8, int8, uint8, q4, q4f16, bnb4, fp16) to write
    beside the fp32 files. Raises Seq2SeqOnnxError subclasses with a user-readable message;
    VerificationError carries the report. On any failure `output` is left as it was.
    """
    from ..export.graphs import DEFAULT_OPSET, check_opset

    started = time.perf_counter()
    opset = opset or DEFAULT_OPSET
    check_opset(opset)
    with_past, notes = resolve_task(task, no_past)
    src = resolve_source(source, trust_remote_code=trust_remote_code)
    if not str(output).strip():
        raise OutputExistsError("the output folder is empty (-o ''); give a folder for the export")
    output = Path(output).expanduser().resolve()
    # Debris of killed runs goes first: a previous export stranded mid-swap is put back, then checked like any.
    cleaned = remove_stale(output)
    try:
        _check_output(output, src, overwrite)
    except OutputExistsError as err:
        raise OutputExistsError("; ".join([str(err), *cleaned])) from None
    from ..export.tokenizer import require_vocabulary

    require_vocabulary(src.ref, **src.hub_kwargs)
    result = ConversionResult(
        source=source,
        output=output,
        model_type=src.model_type,
        task=TASK_WITH_PAST if with_past else "text2text-generation (no past)",
        notes=notes + cleaned,
    )

    if quantize:
        from ..quantize import MODES

        unknown = [m for m in quantize if m not in MODES]
        if unknown:
            raise Seq2SeqOnnxError(f"unknown quantization mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    with interrupt_on_sigterm():
        _convert_into(result, src, output, overwrite=overwrite, opset=opset, with_past=with_past, validate=validate,
                      trust_remote_code=trust_remote_code, max_new_tokens=max_new_tokens, quantize=quantize,
                      transformersjs=transformersjs, progress=progress)
    result.seconds = time.perf_counter() - started
    return result


def _convert_into(result, src, output, *, overwrite, opset, with_past, validate, trust_remote_code, max_new_tokens, quantize,
                  transformersjs, progress) -> None:
    """The conversion proper, in a partial folder moved to `output` at the end (SIGTERM acts as Ctrl-C here)."""
    from ..export.tokenizer import write_family_tokenizer_files, write_tokenizer_files
    from ..inspect import max_token_id, regular_token_count, tokenizer_problems
    from ..verify import DEFAULT_MAX_NEW_TOKENS, verify_export

    source = result.source
    stage_names = ["writing tokenizer", "loading model", "exporting encoder", "exporting decoder"]
    stage_names += ["exporting decoder with past", "merging decoders"] if with_past else []
    stage_names += ["writing configs"] + (["verifying against PyTorch"] if validate else [])
    stage_names += ["quantizing"] if quantize else []
    stages = _Stages(stage_names, enabled=progress)
    created_parents, tmp = [], None
    try:
        # Made with signals held: a Ctrl-C lands before the folder exists or once `tmp` names it for cleanup.
        with signals_held():
            try:
                created_parents = _make_parents(output.parent)
                tmp = partial_folder(output)
            except OSError as err:
                raise OutputExistsError(f"cannot write the export to {output}: {err.strerror or err}") from None
        # The tokenizer first: a checkpoint without a usable one fails before minutes of export.
        stages.start("writing tokenizer")
        if src.family.tokenizer_kind:
            result.notes += write_family_tokenizer_files(src.ref, tmp, src.family.tokenizer_kind, **src.hub_kwargs)
        else:
            result.notes += write_tokenizer_files(
                src.ref, tmp, src.family.sentencepiece_tokenizer, trust_remote_code=trust_remote_code,
                check_spiece=src.family.spiece_ids_are_token_ids, **src.hub_kwargs
            )
        if regular_token_count(tmp / "tokenizer.json") == 0:
            raise NoTokenizerError(
                f"no usable tokenizer in {source}: its tokenizer holds special tokens only, so text would encode to "
                "<unk> and answers decode to nothing. Give a checkpoint with its own tokenizer files (tokenizer.json, "
                "or spiece.model and tokenizer_config.json)"
            )
        beyond = max_token_id(tmp / "tokenizer.json")
        if beyond is not None and beyond >= src.config.vocab_size:
            raise NoTokenizerError(
                f"the tokenizer of {source} has ids up to {beyond}, past the model's vocabulary ({src.config.vocab_size} "
                "tokens): text containing them would crash the export. Is tokenizer_config.json missing or from "
                "another model?" + (" (Without it, T5's tokenizer adds 100 <extra_id_*> tokens.)"
                                    if src.family.sentencepiece_tokenizer == "T5Tokenizer" else "")
            )
        result.notes += [f"the tokenizer looks wrong for this model: {p}" for p in
                         tokenizer_problems(tmp / "tokenizer.json", src.config.vocab_size)]
        stages.done()

        stages.start("loading model")
        model = load_model(src, trust_remote_code)
        layout = src.family.cache_layout(model.config)
        stages.done()

        onnx_dir = tmp / "onnx"
        onnx_dir.mkdir()
        # Scratch graphs inside the partial folder: same disk, and gone with it however the run ends.
        with tempfile.TemporaryDirectory(prefix=".work-", dir=tmp) as work:
            external = export_graphs(model, layout, onnx_dir, Path(work), with_past, opset, stages)

        stages.start("writing configs")
        write_configs(src, model, tmp, external)
        stages.done()

        decoder_file = MERGED_DECODER_FILE if with_past else NO_PAST_DECODER_FILE
        if validate:
            stages.start("verifying against PyTorch")
            report = verify_export(tmp, model, decoder_file, max_new_tokens=max_new_tokens or DEFAULT_MAX_NEW_TOKENS)
            result.verification = report
            stages.done()
            if not report.passed:
                raise VerificationError(
                    "the ONNX export does not reproduce PyTorch's greedy tokens; nothing was written to "
                    f"{output}\n{report.summary()}",
                    report,
                )
            if not report.strength.strong:
                result.notes.append("verification INCONCLUSIVE: " + report.strength.weakness())
            from ..verify import transformersjs_available, transformersjs_check

            from ..export.families import transformersjs_supports

            if with_past and not transformersjs_supports(src.model_type):
                result.notes.append(
                    f"Transformers.js (4.3.1) does not know model_type {src.model_type!r}: this export runs in "
                    "ONNX Runtime (Python, `seq2seq_onnx.Seq2SeqOnnxModel`), not in Transformers.js"
                )
            elif with_past and transformersjs is False:
                result.notes.append("not checked in Transformers.js (--skip-transformersjs)")
            elif with_past and (transformersjs or transformersjs_available()):
                stages.start("verifying in Transformers.js")
                result.transformersjs = transformersjs_check(tmp, model, max_new_tokens=max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
                                                             probe=report.strength.probe)
                stages.done()
                if not result.transformersjs.passed:
                    reason = result.transformersjs.failure()
                    raise VerificationError(f"Transformers.js does not reproduce PyTorch on the export ({reason}); "
                                            f"nothing was written to {output}", report)
            elif with_past:
                result.notes.append("not checked in Transformers.js (Node.js or its npm packages not installed; "
                                    "`seq2seq-onnx verify OUT` installs them and checks)")
        else:
            result.notes.append("verification skipped (--skip-validation): the export was not compared with PyTorch")

        if quantize and not with_past:
            result.notes.append("--quantize ignored with --no-past: Transformers.js cannot load that layout anyway")
        elif quantize:
            from ..quantize import quantize_folder

            stages.start("quantizing")
            result.quantization = quantize_folder(tmp, quantize)
            stages.done()
            for variant in result.quantization:
                if not variant.kept:
                    result.notes.append(f"{variant.dtype} not written: {variant.reason}")

        info = {
            "source": source if not src.is_local else src.ref,
            "model_type": src.model_type,
            "task": result.task,
            "opset": opset,
            "seq2seq_onnx_version": __version__,
            "versions": _versions(),
            "verification": result.verification.to_dict() if result.verification is not None else None,
        }
        # The manifest: what `--overwrite` may replace later (every file of the folder, this one included).
        written = [p.relative_to(tmp).as_posix() for p in sorted(tmp.rglob("*")) if p.is_file()]
        info[MANIFEST_KEY] = sorted([*written, INFO_FILE])
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        result.files = {
            str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        put_in_place(tmp, output, overwrite)
    finally:
        stages.close()
        with signals_held(reraise=False):  # a second Ctrl-C must not leave half the cleanup undone
            if tmp is not None and tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
            if not output.exists():
                for parent in created_parents:  # leave no empty models/org/ behind
                    try:
                        parent.rmdir()
                    except OSError:
                        break


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "transformers", "onnx", "onnxruntime", "tokenizers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out
