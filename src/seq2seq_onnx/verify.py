"""Verify stage: greedy generation over the ONNX files must give PyTorch's tokens exactly.

The ONNX side is driven the way Transformers.js drives it, not the way we would like it to
be driven: step 1 gets empty caches (every symbolic dimension 0) and `use_cache_branch=false`;
every later step gets only the last token, `use_cache_branch=true`, the self-attention cache
from the previous step and the cross-attention cache from step 1. An export that only works
when fed the whole prefix (the repeated-token bug) fails here, as it fails in the browser.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .merge import USE_CACHE_BRANCH

# Prompts for the built-in check: different lengths so that a padded batch really pads.
DEFAULT_PROMPTS = (
    "translate English to German: The house is wonderful.",
    "summarize: the cat sat on the mat and looked at the dog for a long, long time, then slept",
    "Hello",
)
DEFAULT_MAX_NEW_TOKENS = 20
# Step logits may differ by float rounding between PyTorch and ONNX Runtime kernels; we allow
# this much, relative to the largest reference logit of the step (and at least 1e-3 absolute).
LOGITS_RTOL = 1e-4


@dataclass
class CaseResult:
    name: str
    prompts: list[str]
    reference_ids: list[list[int]]
    onnx_ids: list[list[int]]
    max_logits_diff: float
    logits_scale: float
    tokens_match: bool
    logits_match: bool

    @property
    def passed(self) -> bool:
        return self.tokens_match and self.logits_match


@dataclass
class VerificationReport:
    cases: list[CaseResult] = field(default_factory=list)
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    logits_rtol: float = LOGITS_RTOL

    @property
    def passed(self) -> bool:
        return bool(self.cases) and all(c.passed for c in self.cases)

    def summary(self) -> str:
        lines = []
        for c in self.cases:
            status = "ok" if c.passed else "MISMATCH"
            lines.append(
                f"{c.name}: {status} (tokens {'equal' if c.tokens_match else 'differ'}, "
                f"max |logit diff| {c.max_logits_diff:.2e} for logits up to {c.logits_scale:.1f})"
            )
            if not c.tokens_match:
                for ref, got in zip(c.reference_ids, c.onnx_ids):
                    if ref != got:
                        lines.append(f"    PyTorch: {ref}\n    ONNX:    {got}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "max_new_tokens": self.max_new_tokens,
            "logits_rtol": self.logits_rtol,
            "cases": [{**asdict(c), "passed": c.passed} for c in self.cases],
        }


def _session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _as_eos_set(eos) -> set[int]:
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}


def onnx_greedy(encoder, decoder, input_ids, attention_mask, start_id, eos_ids, pad_id, max_new_tokens):
    """Greedy decoding over ONNX Runtime sessions, feeding the decoder as Transformers.js does.

    Returns (sequences [batch, 1 + steps], per-step logits [steps][batch, vocab]).
    A decoder without cache inputs is fed the whole prefix every step (its only correct use).
    """
    input_ids = np.asarray(input_ids, dtype=np.int64)
    attention_mask = np.asarray(attention_mask, dtype=np.int64)
    batch = input_ids.shape[0]
    (hidden,) = encoder.run(["last_hidden_state"], {"input_ids": input_ids, "attention_mask": attention_mask})

    dec_inputs = {i.name: i for i in decoder.get_inputs()}
    out_names = [o.name for o in decoder.get_outputs()]
    past_names = [n for n in dec_inputs if n.startswith("past_key_values.")]
    has_cache = bool(past_names)
    # Step 1: empty caches shaped from the graph's metadata, symbolic dimensions set to 0.
    past = {
        n: np.zeros([d if isinstance(d, int) else 0 for d in dec_inputs[n].shape], dtype=np.float32) for n in past_names
    }
    sequences = np.full((batch, 1), start_id, dtype=np.int64)
    finished = np.zeros(batch, dtype=bool)
    step_logits = []
    for step in range(max_new_tokens):
        feed = {
            "input_ids": sequences[:, -1:] if (has_cache and step > 0) else sequences,
            "encoder_attention_mask": attention_mask,
            "encoder_hidden_states": hidden,
        }
        feed = {k: v for k, v in feed.items() if k in dec_inputs}
        if has_cache:
            feed.update(past)
        if USE_CACHE_BRANCH in dec_inputs:
            feed[USE_CACHE_BRANCH] = np.array([step > 0])
        outputs = dict(zip(out_names, decoder.run(out_names, feed)))
        logits = outputs["logits"][:, -1, :]
        step_logits.append(logits)
        next_ids = logits.argmax(-1).astype(np.int64)
        next_ids = np.where(finished, pad_id, next_ids)
        sequences = np.concatenate([sequences, next_ids[:, None]], axis=1)
        finished |= np.isin(next_ids, list(eos_ids))
        if has_cache:
            for name in past_names:
                present = "present." + name[len("past_key_values.") :]
                # Like Transformers.js: the cross-attention cache is kept from step 1.
                if ".decoder." in name or step == 0:
                    past[name] = outputs[present]
        if finished.all():
            break
    return sequences, step_logits


def reference_greedy(model, input_ids, attention_mask, start_id, eos_ids, pad_id, max_new_tokens):
    """PyTorch `generate`, plain greedy, returning (sequences, per-step logits)."""
    import torch
    from transformers import GenerationConfig
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    from .export import cache_kwarg

    config = GenerationConfig(
        decoder_start_token_id=start_id,
        eos_token_id=sorted(eos_ids),
        pad_token_id=pad_id,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        output_logits=True,
        return_dict_in_generate=True,
    )
    # generate() fills unset fields from model.generation_config: a checkpoint's own settings
    # (no_repeat_ngram_size, num_beams, min_new_tokens, ...) would leak into plain greedy.
    saved = model.generation_config
    model.generation_config = config
    try:
        with torch.no_grad():
            out = model.generate(
                input_ids=torch.as_tensor(input_ids),
                attention_mask=torch.as_tensor(attention_mask),
                generation_config=config,
                # An explicit cache: transformers 5's default one is sized by the encoder's layer
                # count and crashes when num_decoder_layers differs.
                **{cache_kwarg(model): EncoderDecoderCache(DynamicCache(), DynamicCache())},
            )
    finally:
        model.generation_config = saved
    return out.sequences.numpy(), [t.float().numpy() for t in out.logits]


def load_prompts_tokenizer(folder: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(folder / "tokenizer.json"))


def encode_batch(tokenizer, prompts, pad_id: int, vocab_size: int):
    encs = tokenizer.encode_batch(list(prompts))
    width = max(len(e.ids) for e in encs)
    ids = np.full((len(encs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(encs), width), dtype=np.int64)
    for i, e in enumerate(encs):
        ids[i, : len(e.ids)] = e.ids
        mask[i, : len(e.ids)] = 1
    if ids.max() >= vocab_size:
        raise ValueError("tokenizer produced ids outside the model's vocabulary")
    return ids, mask


def verify_export(
    folder: Path,
    model,
    decoder_file: str = "decoder_model_merged.onnx",
    prompts=DEFAULT_PROMPTS,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> VerificationReport:
    """Compare greedy generation over `folder`'s ONNX files with PyTorch `model.generate`."""
    folder = Path(folder)
    encoder = _session(folder / "onnx" / "encoder_model.onnx")
    decoder = _session(folder / "onnx" / decoder_file)
    tokenizer = load_prompts_tokenizer(folder)
    config = model.config
    gen = getattr(model, "generation_config", None)
    start_id = config.decoder_start_token_id
    if start_id is None and gen is not None:
        start_id = gen.decoder_start_token_id
    pad_id = config.pad_token_id if config.pad_token_id is not None else 0
    eos_ids = _as_eos_set(gen.eos_token_id if gen is not None and gen.eos_token_id is not None else config.eos_token_id)

    report = VerificationReport(max_new_tokens=max_new_tokens)
    cases = [("single", list(prompts[:1])), ("padded batch", list(prompts))]
    for name, case_prompts in cases:
        ids, mask = encode_batch(tokenizer, case_prompts, pad_id, config.vocab_size)
        args = (ids, mask, start_id, eos_ids, pad_id, max_new_tokens)
        ref_seq, ref_logits = reference_greedy(model, *args)
        got_seq, got_logits = onnx_greedy(encoder, decoder, *args)
        tokens_match = ref_seq.shape == got_seq.shape and bool((ref_seq == got_seq).all())
        # Compare logits only over steps whose inputs were identical on both sides.
        same_prefix = 0
        while (
            same_prefix < min(len(ref_logits), len(got_logits))
            and same_prefix + 1 < min(ref_seq.shape[1], got_seq.shape[1])
            and (ref_seq[:, : same_prefix + 1] == got_seq[:, : same_prefix + 1]).all()
        ):
            same_prefix += 1
        diffs = [np.abs(r - g).max() for r, g in zip(ref_logits[:same_prefix], got_logits[:same_prefix])]
        scale = max([float(np.abs(r).max()) for r in ref_logits[:same_prefix]] + [1.0])
        max_diff = float(max(diffs)) if diffs else float("inf")
        report.cases.append(
            CaseResult(
                name=name,
                prompts=case_prompts,
                reference_ids=ref_seq.tolist(),
                onnx_ids=got_seq.tolist(),
                max_logits_diff=max_diff,
                logits_scale=scale,
                tokens_match=tokens_match,
                logits_match=max_diff <= max(LOGITS_RTOL * scale, 1e-3),
            )
        )
    return report


# ---------------------------------------------------------------------------------------------
# `seq2seq-onnx verify`: an existing folder, every dtype, Python ONNX Runtime and Transformers.js


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


@dataclass
class FolderVerification:
    folder: str
    reference: str
    checks: list[RuntimeCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def to_dict(self) -> dict:
        return {"folder": self.folder, "reference": self.reference, "passed": self.passed, "notes": self.notes,
                "checks": [asdict(c) for c in self.checks]}


def _agreement(reference: list[int], got: list[int]) -> float:
    length = max(len(reference), len(got)) - 1
    if length <= 0:
        return 1.0
    same = sum(1 for a, b in zip(reference[1:], got[1:]) if a == b)
    return same / length


def _score(check: RuntimeCheck, dtype: str) -> None:
    check.exact = all(c["ids"] == c["reference_ids"] for c in check.cases)
    check.agreement = sum(_agreement(c["reference_ids"], c["ids"]) for c in check.cases) / len(check.cases)
    # fp32 must be PyTorch's ids exactly; quantized dtypes legitimately differ, so they must run
    check.passed = check.exact if dtype == "fp32" else True


def transformersjs_available() -> bool:
    """Node and the installed npm packages are there (conversion never installs them itself)."""
    import os
    import shutil

    from .transformersjs import node_dir

    if os.environ.get("SEQ2SEQ_ONNX_TRANSFORMERSJS", "1") == "0" or shutil.which("node") is None:
        return False
    return (node_dir() / "node_modules" / "@huggingface" / "transformers" / "package.json").is_file()


def transformersjs_check(folder: Path, model, prompts=DEFAULT_PROMPTS, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                         dtype: str = "fp32") -> RuntimeCheck:
    """Greedy ids of `folder` in Transformers.js against PyTorch `model`, one prompt at a time."""
    from . import transformersjs

    config, gen = model.config, model.generation_config
    pad_id = config.pad_token_id if config.pad_token_id is not None else 0
    eos_ids = _as_eos_set(gen.eos_token_id if gen.eos_token_id is not None else config.eos_token_id)
    check = RuntimeCheck(dtype=dtype, runtime="transformers.js")
    try:
        for row in transformersjs.generate(folder, prompts, dtype, max_new_tokens):
            ids = np.array([row["input_ids"]], dtype=np.int64)
            expected = reference_greedy(model, ids, np.ones_like(ids), config.decoder_start_token_id, eos_ids, pad_id,
                                        max_new_tokens)[0][0].tolist()
            check.cases.append({"prompt": row["prompt"], "reference_ids": expected, "ids": row["ids"]})
        _score(check, dtype)
    except Exception as err:
        check.error = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
    return check


def recorded_source(folder: Path) -> str | None:
    info = folder / "seq2seq_onnx.json"
    if info.is_file():
        return json.loads(info.read_text()).get("source")
    return None


def verify_folder(folder, reference: str | None = None, dtypes=None, runtimes=("python", "transformers.js"),
                  prompts=DEFAULT_PROMPTS, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> FolderVerification:
    """Greedy ids of every dtype of an export, in each runtime, against PyTorch on the source checkpoint."""
    from .errors import Seq2SeqOnnxError
    from .runtime import DTYPE_SUFFIXES

    folder = Path(folder)
    reference = reference or recorded_source(folder)
    if not reference:
        raise Seq2SeqOnnxError(f"{folder} records no source checkpoint (no seq2seq_onnx.json): pass --reference SOURCE")
    onnx_dir = folder / "onnx"
    present = [d for d, s in DTYPE_SUFFIXES.items() if (onnx_dir / f"encoder_model{s}.onnx").is_file()]
    dtypes = list(dtypes or present)
    missing = [d for d in dtypes if d not in present]
    if missing:
        raise Seq2SeqOnnxError(f"{folder} has no {', '.join(missing)} files; dtypes present: {', '.join(present) or 'none'}")

    from .convert import _load_model
    from .source import resolve_source

    model = _load_model(resolve_source(reference), trust_remote_code=False)
    tokenizer = load_prompts_tokenizer(folder)
    gen = model.generation_config
    start_id = model.config.decoder_start_token_id
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    eos_ids = _as_eos_set(gen.eos_token_id if gen.eos_token_id is not None else model.config.eos_token_id)
    expected, python_ids = {}, {}
    for prompt in prompts:
        ids, mask = encode_batch(tokenizer, [prompt], pad_id, model.config.vocab_size)
        expected[prompt] = reference_greedy(model, ids, mask, start_id, eos_ids, pad_id, max_new_tokens)[0][0].tolist()
        python_ids[prompt] = ids[0].tolist()

    result = FolderVerification(folder=str(folder), reference=reference)
    from .families import transformersjs_supports

    js_runtimes = [r for r in runtimes if r in ("transformers.js", "browser")]
    if js_runtimes and not transformersjs_supports(model.config.model_type):
        message = f"Transformers.js (4.3.1) does not support model_type {model.config.model_type!r}"
        if not [r for r in runtimes if r not in js_runtimes]:
            raise Seq2SeqOnnxError(message)
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
                    raise Seq2SeqOnnxError(str(err)) from None
                result.notes.append(str(err))
                runtimes = [r for r in runtimes if r != runtime]

    for dtype in dtypes:
        suffix = DTYPE_SUFFIXES[dtype]
        for runtime in runtimes:
            check = RuntimeCheck(dtype=dtype, runtime=runtime)
            try:
                if runtime == "python":
                    decoder = onnx_dir / f"decoder_model_merged{suffix}.onnx"
                    if not decoder.is_file():
                        decoder = onnx_dir / f"decoder_model{suffix}.onnx"
                    encoder = _session(onnx_dir / f"encoder_model{suffix}.onnx")
                    session = _session(decoder)
                    for prompt in prompts:
                        ids, mask = encode_batch(tokenizer, [prompt], pad_id, model.config.vocab_size)
                        got, _ = onnx_greedy(encoder, session, ids, mask, start_id, eos_ids, pad_id, max_new_tokens)
                        check.cases.append({"prompt": prompt, "reference_ids": expected[prompt], "ids": got[0].tolist()})
                elif runtime == "browser":
                    from . import transformersjs

                    page = transformersjs.browser_generate(folder, prompts, dtype, max_new_tokens)
                    check.ms_per_token = page["ms_per_token"]
                    for row in page["results"]:
                        check.cases.append({"prompt": row["prompt"], "reference_ids": expected[row["prompt"]], "ids": row["ids"]})
                else:
                    from . import transformersjs

                    for row in transformersjs.generate(folder, prompts, dtype, max_new_tokens):
                        if row["input_ids"] != python_ids[row["prompt"]]:
                            result.notes.append(
                                f"Transformers.js tokenizes {row['prompt']!r} as {row['input_ids']}, "
                                f"the tokenizers library as {python_ids[row['prompt']]}"
                            )
                        check.cases.append({"prompt": row["prompt"], "reference_ids": expected[row["prompt"]], "ids": row["ids"]})
                _score(check, dtype)
            except Exception as err:  # a dtype that does not load or run is a failed check, not a crash
                check.error = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            result.checks.append(check)
    return result
