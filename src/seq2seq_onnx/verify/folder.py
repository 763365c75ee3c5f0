"""`seq2seq-onnx verify`: an existing export folder, every dtype, in Python ONNX Runtime, Transformers.js
under Node and headless Chromium, against PyTorch on the source checkpoint."""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..inspect import merged_decoder_problem
from .ort import ort_session, onnx_greedy
from .reference import (
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_PROMPTS,
    Reference,
    Strength,
    assess_strength,
    compare_logits,
    load_prompts_tokenizer,
    logits_tolerance,
    reference_for,
    special_ids,
)


@dataclass
class RuntimeCheck:
    dtype: str
    runtime: str
    passed: bool = False
    exact: bool = False
    agreement: float | None = None  # share of generated positions equal to PyTorch's
    error: str = ""
    cases: list[dict] = field(default_factory=list)
    ms_per_token: float | None = None  # measured in the browser
    max_logits_diff: float | None = None  # fp32: over the steps whose inputs matched PyTorch's
    logits_ok: bool | None = None
    text_ok: bool | None = None  # the runtime's decoded text equals transformers' for the same ids

    def failure(self) -> str:
        """Why the check failed, in a few words ('' when it passed)."""
        if self.passed:
            return ""
        if self.error:
            return self.error
        reasons = []
        if self.dtype == "fp32" and not self.exact:
            reasons.append("greedy ids differ from PyTorch")
        if self.logits_ok is False:
            reasons.append(f"step logits differ from PyTorch's by up to {self.max_logits_diff:.1e}")
        if self.text_ok is False:
            bad = next(c for c in self.cases if c.get("text") != c.get("expected_text"))
            reasons.append(f"decoded text {bad['text']!r} where transformers gives {bad['expected_text']!r}")
        return "; ".join(reasons) or "failed"


@dataclass
class FolderVerification:
    folder: str
    reference: str
    checks: list[RuntimeCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    strength: Strength = field(default_factory=Strength)
    # What is wrong with the folder itself, whatever the runtimes say (its config.json against the
    # reference, faults `inspect` finds); any problem fails the verification.
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems and bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def verdict(self) -> str:
        if not self.passed:
            return "FAILED"
        return "PASSED" if self.strength.strong else "INCONCLUSIVE"

    def to_dict(self) -> dict:
        return {"folder": self.folder, "reference": self.reference, "passed": self.passed, "verdict": self.verdict,
                "strength": self.strength.to_dict(), "problems": self.problems, "notes": self.notes,
                "checks": [asdict(c) for c in self.checks]}


def token_agreement(reference: list[int], got: list[int]) -> float:
    length = max(len(reference), len(got)) - 1
    if length <= 0:
        return 1.0
    same = sum(1 for a, b in zip(reference[1:], got[1:]) if a == b)
    return same / length


def _score(check: RuntimeCheck, dtype: str, references: dict | None = None, text_of=None) -> None:
    """Fill `check`'s verdict from its cases ({prompt, reference_ids, ids[, text][, logits]}).

    fp32 must give PyTorch's ids exactly and, where the runtime reported them, its step logits
    within tolerance; quantized dtypes legitimately differ, so they must run (agreement reported).
    Every dtype's decoded text must equal transformers' decoding of the same ids (`text_of`).
    """
    check.exact = all(c["ids"] == c["reference_ids"] for c in check.cases)
    check.agreement = sum(token_agreement(c["reference_ids"], c["ids"]) for c in check.cases) / len(check.cases)
    if dtype == "fp32" and references is not None and any(c.get("logits") for c in check.cases):
        worst, ok = 0.0, True
        for c in check.cases:
            ref = references[c["prompt"]]
            diff, _ = compare_logits([ref.ids], ref.logits, [c["ids"]], c.pop("logits"))
            worst = max(worst, diff)
            ok = ok and diff <= logits_tolerance(ref.logits)
        check.max_logits_diff, check.logits_ok = worst, ok
    for c in check.cases:
        c.pop("logits", None)
    if text_of is not None and all("text" in c for c in check.cases):
        for c in check.cases:
            c["expected_text"] = text_of(c["ids"])
        same = getattr(text_of, "same", lambda got, expected: got == expected)
        check.text_ok = all(same(c["text"], c["expected_text"]) for c in check.cases)
    check.passed = (check.exact and check.logits_ok is not False if dtype == "fp32" else True) and check.text_ok is not False


def transformersjs_available() -> bool:
    """Node and the installed npm packages are there (conversion never installs them itself)."""
    import os
    import shutil

    from .transformersjs import node_dir

    if os.environ.get("SEQ2SEQ_ONNX_TRANSFORMERSJS", "1") == "0" or shutil.which("node") is None:
        return False
    return (node_dir() / "node_modules" / "@huggingface" / "transformers" / "package.json").is_file()


def _transformers_decoder(folder: Path):
    """ids -> text as transformers decodes them with the folder's tokenizer files (special tokens skipped).

    For Marian and M2M100, whose Python tokenizers strip decoded text while tokenizer.json's decoder
    (Transformers.js) keeps a space a lone "▁" leaves at either end, the comparison is made on the
    stripped texts: that end whitespace is the one difference tokenizer.json cannot express.
    """
    from transformers import AutoTokenizer

    from ..runtime.text import strips_decoded_text

    with warnings.catch_warnings():  # MarianTokenizer asks for sacremoses, which its tokenization never calls
        warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if strips_decoded_text(folder):
        return _StrippedText(lambda ids: tokenizer.decode(ids, skip_special_tokens=True))
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=True)


class _StrippedText:
    """A decoder whose texts are compared without leading and trailing whitespace."""

    def __init__(self, decode):
        self.decode = decode

    def __call__(self, ids):
        return self.decode(ids)

    @staticmethod
    def same(got: str, expected: str) -> bool:
        return got.strip() == expected.strip()


def _js_rows(runtime: str, folder: Path, references: dict[str, Reference], dtype: str) -> tuple[list[dict], float | None]:
    """Greedy rows of Transformers.js (Node or browser) for every reference prompt, each with its own token budget."""
    from . import transformersjs

    rows, ms = [], []
    budgets = sorted({r.max_new_tokens for r in references.values()})
    for budget in budgets:
        prompts = [p for p, r in references.items() if r.max_new_tokens == budget]
        if runtime == "browser":
            page = transformersjs.browser_generate(folder, prompts, dtype, budget, logits=dtype == "fp32")
            rows += page["results"]
            ms.append(page["ms_per_token"])
        else:
            rows += transformersjs.generate(folder, prompts, dtype, budget, logits=dtype == "fp32")
    return rows, (sum(ms) / len(ms) if ms else None)


def transformersjs_check(folder: Path, model, prompts=DEFAULT_PROMPTS, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                         dtype: str = "fp32", probe: str | None = None) -> RuntimeCheck:
    """Greedy ids, step logits and text of `folder` in Transformers.js against PyTorch `model`, one prompt at a time.

    `probe`: the history-dependent prompt `verify_export` added (`report.strength.probe`), run
    with twice the tokens as there.
    """
    check = RuntimeCheck(dtype=dtype, runtime="transformers.js")
    try:
        tokenizer = load_prompts_tokenizer(folder)
        references = {p: reference_for(model, tokenizer, p, max_new_tokens) for p in prompts}
        if probe is not None:
            references[probe] = reference_for(model, tokenizer, probe, 2 * max_new_tokens)
        rows, _ = _js_rows("transformers.js", Path(folder), references, dtype)
        for row in rows:
            check.cases.append({"prompt": row["prompt"], "reference_ids": references[row["prompt"]].ids,
                                "ids": row["ids"], "text": row["text"], "logits": row["logits"]})
        _score(check, dtype, references, _transformers_decoder(Path(folder)))
    except Exception as err:
        check.error = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
    return check


def recorded_source(folder: Path) -> str | None:
    """The source checkpoint seq2seq_onnx.json records, or None. Raises Seq2SeqOnnxError when the file is unreadable."""
    from ..errors import Seq2SeqOnnxError

    info = folder / "seq2seq_onnx.json"
    if not info.is_file():
        return None
    try:
        data = json.loads(info.read_text())
    except (OSError, ValueError) as err:
        raise Seq2SeqOnnxError(f"{info} is not valid JSON ({err}); pass --reference SOURCE") from None
    return data.get("source") if isinstance(data, dict) else None


def config_mismatches(folder: Path, reference_config) -> list[str]:
    """Where the export's config.json disagrees with the reference checkpoint's config on what runtimes read.

    Python ONNX Runtime never reads config.json, but Transformers.js sizes the cache and picks the
    model class from it: an export whose config.json says another model_type, vocabulary or cache
    layout runs in Python and fails (or is refused) in Transformers.js.
    """
    from ..export.families import family_for

    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as err:
        return [f"config.json cannot be read ({err})"]
    if not isinstance(config, dict):
        return ["config.json does not hold a JSON object"]
    problems = []
    for key in ("model_type", "vocab_size"):
        if config.get(key) != getattr(reference_config, key, None):
            problems.append(f"config.json says {key} {config.get(key)!r}, the reference checkpoint "
                            f"{getattr(reference_config, key, None)!r}")
    family = family_for(reference_config.model_type)
    if family is not None and config.get("model_type") == reference_config.model_type:
        from types import SimpleNamespace

        try:
            mine = family.cache_layout(SimpleNamespace(**{**{k: None for k in vars(reference_config)}, **config}))
        except (AttributeError, KeyError, TypeError):
            mine = None
        expected = family.cache_layout(reference_config)
        if mine != expected:
            problems.append(f"config.json describes a decoder cache of {mine}, the reference checkpoint {expected}: "
                            "Transformers.js would size the cache wrongly")
    return problems


def _graph_io(path: Path) -> tuple[list[str], list[str]]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [i.name for i in graph.input], [o.name for o in graph.output]


def verify_folder(folder, reference: str | None = None, dtypes=None, runtimes=("python", "transformers.js"),
                  prompts=DEFAULT_PROMPTS, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> FolderVerification:
    """Greedy ids of every dtype of an export, in each runtime, against PyTorch on the source checkpoint.

    fp32 must give PyTorch's ids and step logits in every runtime; quantized dtypes must run. A
    decoder under the merged name without a cache fails outright (structure), and when the
    reference could not reveal a lost cache the verdict is INCONCLUSIVE, never PASSED.
    Raises Seq2SeqOnnxError for a folder that is not an export, a missing reference or dtype,
    or a runtime asked for alone that is not installed.
    """
    from ..errors import Seq2SeqOnnxError
    from ..runtime.sessions import DTYPE_SUFFIXES

    if not str(folder).strip():
        raise Seq2SeqOnnxError("the folder to verify is empty (''); give an export folder")
    folder = Path(folder)
    if not folder.is_dir():
        raise Seq2SeqOnnxError(f"{folder} is not a folder: give an export folder (see `seq2seq-onnx convert`)")
    onnx_dir = folder / "onnx"
    if not (folder / "config.json").is_file() or not onnx_dir.is_dir():
        raise Seq2SeqOnnxError(f"{folder} is not an export folder (it needs config.json and onnx/)")
    tokenizer = load_prompts_tokenizer(folder)
    reference = reference or recorded_source(folder)
    if not reference:
        raise Seq2SeqOnnxError(f"{folder} records no source checkpoint (no seq2seq_onnx.json): pass --reference SOURCE")
    present = [d for d, s in DTYPE_SUFFIXES.items() if (onnx_dir / f"encoder_model{s}.onnx").is_file()]
    dtypes = list(dtypes or present)
    missing = [d for d in dtypes if d not in present]
    if missing:
        raise Seq2SeqOnnxError(f"{folder} has no {', '.join(missing)} files; dtypes present: {', '.join(present) or 'none'}")

    from ..export.source import load_model, resolve_source

    model = load_model(resolve_source(reference), trust_remote_code=False)
    result = FolderVerification(folder=str(folder), reference=reference)
    result.problems += config_mismatches(folder, model.config)
    from ..export.families import transformersjs_supports
    from ..inspect import inspect_folder

    runtimes = list(runtimes)
    js_runtimes = [r for r in runtimes if r in ("transformers.js", "browser")]
    if js_runtimes:
        # What Transformers.js will do with the folder, whether or not Node is here to show it
        # (its not knowing the model type is handled below, as a note).
        result.problems += [f"inspect: {p}" for p in inspect_folder(folder).problems_besides_model_type()]
    if js_runtimes and not transformersjs_supports(model.config.model_type):
        message = f"Transformers.js (4.3.1) does not support model_type {model.config.model_type!r}"
        if not [r for r in runtimes if r not in js_runtimes]:
            raise Seq2SeqOnnxError(message + "; verify it with --runtime python")
        result.notes.append(message + "; checked in Python ONNX Runtime only")
        runtimes = [r for r in runtimes if r not in js_runtimes]
    if any(r in runtimes for r in ("transformers.js", "browser")):
        from .transformersjs import TransformersJsUnavailable, _chromium, ensure_installed

        for runtime in [r for r in runtimes if r in ("transformers.js", "browser")]:
            try:
                ensure_installed()
                if runtime == "browser":
                    _chromium()
            except TransformersJsUnavailable as err:
                if list(runtimes) == [runtime]:
                    raise Seq2SeqOnnxError(f"cannot verify in {runtime}: {err}") from None
                result.notes.append(f"not checked in {runtime}: {err}")
                runtimes = [r for r in runtimes if r != runtime]

    references = {p: reference_for(model, tokenizer, p, max_new_tokens) for p in prompts}
    result.strength = assess_strength(model, tokenizer, references, max_new_tokens)
    if not result.strength.strong:
        result.notes.append(result.strength.weakness())
    start_id, eos_ids, pad_id = special_ids(model)
    text_of = _transformers_decoder(folder) if set(runtimes) - {"python"} else None

    for dtype in dtypes:
        suffix = DTYPE_SUFFIXES[dtype]
        merged = onnx_dir / f"decoder_model_merged{suffix}.onnx"
        try:
            structure = merged_decoder_problem(*_graph_io(merged)) if merged.is_file() else None
        except Exception as err:  # not a readable ONNX file: every check of this dtype fails, the others go on
            structure = f"cannot be read as ONNX ({type(err).__name__})"
        for runtime in runtimes:
            check = RuntimeCheck(dtype=dtype, runtime=runtime)
            if structure:
                check.error = f"{merged.name}: {structure}. Re-export with `seq2seq-onnx convert SOURCE -o OUT`"
                result.checks.append(check)
                continue
            try:
                if runtime == "python":
                    decoder = merged if merged.is_file() else onnx_dir / f"decoder_model{suffix}.onnx"
                    encoder = ort_session(onnx_dir / f"encoder_model{suffix}.onnx")
                    session = ort_session(decoder)
                    for prompt, ref in references.items():
                        got, logits = onnx_greedy(encoder, session, ref.input_ids, np.ones_like(ref.input_ids), start_id,
                                                  eos_ids, pad_id, ref.max_new_tokens,
                                                  transformersjs_feeding=merged.is_file())
                        check.cases.append({"prompt": prompt, "reference_ids": ref.ids, "ids": got[0].tolist(),
                                            "logits": [row[0] for row in logits]})
                    _score(check, dtype, references)
                else:
                    rows, check.ms_per_token = _js_rows(runtime, folder, references, dtype)
                    for row in rows:
                        ids = references[row["prompt"]].input_ids[0].tolist()
                        if row["input_ids"] != ids:
                            result.notes.append(f"{runtime} tokenizes {row['prompt']!r} as {row['input_ids']}, "
                                                f"the tokenizers library as {ids}")
                        check.cases.append({"prompt": row["prompt"], "reference_ids": references[row["prompt"]].ids,
                                            "ids": row["ids"], "text": row["text"], "logits": row["logits"]})
                    _score(check, dtype, references, text_of)
            except Exception as err:  # a dtype that does not load or run is a failed check, not a crash
                check.error = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
                check.passed = False
            result.checks.append(check)
    return result
