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

from .inspect import merged_decoder_problem
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


def logits_tolerance(reference_logits) -> float:
    """The allowed |logit difference| for a run: LOGITS_RTOL of its largest reference logit, at least 1e-3."""
    scale = max([float(np.abs(r).max()) for r in reference_logits] + [1.0])
    return max(LOGITS_RTOL * scale, 1e-3)


@dataclass
class Strength:
    """Could this check tell a lost cache from a working one?

    `history_dependent`: some reference token is followed by two different tokens, so a decoder
    that sees only the last token must give other ids. `lost_cache_diff`: how far PyTorch's own
    logits move when the decoder sees only the last token; above `tolerance` the logits comparison
    catches a lost cache even where the ids cannot. `probe`: the extra prompt that was added when
    the fixed prompts were not history-dependent.
    """

    history_dependent: bool = False
    lost_cache_diff: float = 0.0
    tolerance: float = 0.0
    probe: str | None = None

    @property
    def strong(self) -> bool:
        return self.history_dependent or self.lost_cache_diff > self.tolerance

    def weakness(self) -> str:
        return (
            "the reference cannot tell a lost cache from a working one: no reference token is followed by two "
            f"different tokens (extra prompts and longer outputs tried), and PyTorch's logits move by only "
            f"{self.lost_cache_diff:.1e} (tolerance {self.tolerance:.1e}) when the decoder sees the last token alone. "
            "The model's outputs do not depend on earlier tokens (an untrained or degenerate model?)"
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "strong": self.strong}


@dataclass
class VerificationReport:
    cases: list[CaseResult] = field(default_factory=list)
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    logits_rtol: float = LOGITS_RTOL
    structure_problem: str = ""  # the decoder is not what its file name says (no comparison was run)
    strength: Strength = field(default_factory=Strength)

    @property
    def passed(self) -> bool:
        return not self.structure_problem and bool(self.cases) and all(c.passed for c in self.cases)

    @property
    def verdict(self) -> str:
        """PASSED, FAILED, or INCONCLUSIVE (everything agrees, but the check could not have caught a lost cache)."""
        if not self.passed:
            return "FAILED"
        return "PASSED" if self.strength.strong else "INCONCLUSIVE"

    def summary(self) -> str:
        lines = [f"structure: {self.structure_problem}"] if self.structure_problem else []
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
            "verdict": self.verdict,
            "max_new_tokens": self.max_new_tokens,
            "logits_rtol": self.logits_rtol,
            "structure_problem": self.structure_problem,
            "strength": self.strength.to_dict(),
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


def onnx_greedy(encoder, decoder, input_ids, attention_mask, start_id, eos_ids, pad_id, max_new_tokens,
                transformersjs_feeding: bool = True):
    """Greedy decoding over ONNX Runtime sessions, feeding the decoder as Transformers.js does.

    Returns (sequences [batch, 1 + steps], per-step logits [steps][batch, vocab]).
    After step 1 only the last token is fed, cache or no cache: Transformers.js holds a (possibly
    empty) cache object from step 1 on and always feeds one token, so a decoder without cache
    under the merged name goes wrong here as it does there. `transformersjs_feeding=False` feeds
    a cache-less decoder (`decoder_model.onnx` of `--no-past`) its whole prefix, its correct use
    in other runtimes.
    """
    input_ids = np.asarray(input_ids, dtype=np.int64)
    attention_mask = np.asarray(attention_mask, dtype=np.int64)
    batch = input_ids.shape[0]
    (hidden,) = encoder.run(["last_hidden_state"], {"input_ids": input_ids, "attention_mask": attention_mask})

    dec_inputs = {i.name: i for i in decoder.get_inputs()}
    out_names = [o.name for o in decoder.get_outputs()]
    past_names = [n for n in dec_inputs if n.startswith("past_key_values.")]
    has_cache = bool(past_names)
    last_token_only = has_cache or transformersjs_feeding
    # Step 1: empty caches shaped from the graph's metadata, symbolic dimensions set to 0.
    past = {
        n: np.zeros([d if isinstance(d, int) else 0 for d in dec_inputs[n].shape], dtype=np.float32) for n in past_names
    }
    sequences = np.full((batch, 1), start_id, dtype=np.int64)
    finished = np.zeros(batch, dtype=bool)
    step_logits = []
    for step in range(max_new_tokens):
        feed = {
            "input_ids": sequences[:, -1:] if (last_token_only and step > 0) else sequences,
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


def history_dependent(sequences, eos_ids) -> bool:
    """Whether some token of a sequence is followed by two different tokens (up to its first EOS).

    A decoder that lost its cache sees only the last token, so its next token is a function of the
    last one: on such a reference it must produce different ids, and the ids alone can catch it.
    """
    for seq in sequences:
        followers: dict[int, int] = {}
        for a, b in zip(list(seq), list(seq)[1:]):
            if followers.setdefault(int(a), int(b)) != int(b):
                return True
            if int(b) in eos_ids:
                break
    return False


def lost_cache_logits_diff(model, input_ids, attention_mask, sequences, logits) -> float:
    """How far PyTorch's step logits move when the decoder sees only the last token (a lost cache).

    Step k >= 2 is recomputed from `sequences[:, k-1]` alone at position 0, which is what a
    cache-less decoder under the merged name computes in Transformers.js. Returns the largest
    |difference| from `logits` (the reference's per-step logits); 0.0 with fewer than 2 steps.
    """
    import torch
    from transformers.modeling_outputs import BaseModelOutput

    if len(logits) < 2:
        return 0.0
    with torch.no_grad():
        ids = torch.as_tensor(np.asarray(input_ids, dtype=np.int64))
        mask = torch.as_tensor(np.asarray(attention_mask, dtype=np.int64))
        hidden = model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        worst = 0.0
        for step in range(1, len(logits)):
            out = model(
                encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                attention_mask=mask,
                decoder_input_ids=torch.as_tensor(np.asarray(sequences)[:, step : step + 1]),
                use_cache=False,
            )
            worst = max(worst, float(np.abs(out.logits[:, -1].float().numpy() - logits[step]).max()))
    return worst


def probe_prompts(tokenizer, count: int = 8, seed: int = 0) -> list[str]:
    """Extra prompts made of the tokenizer's own word pieces (seeded), for a reference that needs strengthening."""
    import random

    rng = random.Random(seed)
    vocab = tokenizer.get_vocab()
    special = {t.content for t in tokenizer.get_added_tokens_decoder().values()}
    words = sorted(w.lstrip("\u2581Ġ") for w in vocab if w not in special and w.lstrip("\u2581Ġ").isalpha())
    if not words:
        return []
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 16))) for _ in range(count)]


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

    from .errors import Seq2SeqOnnxError

    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise Seq2SeqOnnxError(f"{path} is missing: an export needs tokenizer.json (Transformers.js loads the tokenizer from it)")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as err:  # the tokenizers library raises plain Exception
        raise Seq2SeqOnnxError(f"cannot read {path}: {err}") from None


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


def special_ids(model) -> tuple[int, set[int], int]:
    """(decoder start id, EOS ids, pad id) of a PyTorch model, as its generate() uses them."""
    config, gen = model.config, getattr(model, "generation_config", None)
    start_id = config.decoder_start_token_id
    if start_id is None and gen is not None:
        start_id = gen.decoder_start_token_id
    pad_id = config.pad_token_id if config.pad_token_id is not None else 0
    eos = gen.eos_token_id if gen is not None and gen.eos_token_id is not None else config.eos_token_id
    return start_id, _as_eos_set(eos), pad_id


def _same_prefix_steps(ref_seq: np.ndarray, got_seq: np.ndarray, steps: int) -> int:
    """How many leading steps had identical decoder inputs on both sides (their logits are comparable)."""
    same = 0
    while (
        same < steps
        and same + 1 < min(ref_seq.shape[1], got_seq.shape[1])
        and (ref_seq[:, : same + 1] == got_seq[:, : same + 1]).all()
    ):
        same += 1
    return same


def compare_logits(ref_seq, ref_logits, got_seq, got_logits) -> tuple[float, float]:
    """(max |logit difference| over the steps whose inputs were identical, the reference's logit scale)."""
    ref_seq, got_seq = np.atleast_2d(np.asarray(ref_seq)), np.atleast_2d(np.asarray(got_seq))
    same = _same_prefix_steps(ref_seq, got_seq, min(len(ref_logits), len(got_logits)))
    diffs = [np.abs(np.asarray(r) - np.asarray(g)).max() for r, g in zip(ref_logits[:same], got_logits[:same])]
    scale = max([float(np.abs(r).max()) for r in ref_logits[:same]] + [1.0])
    return (float(max(diffs)) if diffs else float("inf")), scale


@dataclass
class Reference:
    """PyTorch's plain greedy answer to one prompt: what every runtime is compared with."""

    input_ids: np.ndarray  # [1, prompt length]
    ids: list[int]  # decoder start token + generated tokens
    logits: list[np.ndarray]  # per step, [vocab]
    max_new_tokens: int


def reference_for(model, tokenizer, prompt: str, max_new_tokens: int) -> Reference:
    start_id, eos_ids, pad_id = special_ids(model)
    ids, mask = encode_batch(tokenizer, [prompt], pad_id, model.config.vocab_size)
    seq, logits = reference_greedy(model, ids, mask, start_id, eos_ids, pad_id, max_new_tokens)
    return Reference(ids, seq[0].tolist(), [row[0] for row in logits], max_new_tokens)


def assess_strength(model, tokenizer, references: dict[str, Reference], max_new_tokens: int) -> Strength:
    """Whether `references` can catch a lost cache; adds a history-dependent probe prompt if they cannot.

    The probe (twice the tokens) is added to `references` so that every runtime is compared on it.
    """
    _, eos_ids, _ = special_ids(model)
    strength = Strength()
    strength.history_dependent = history_dependent([r.ids for r in references.values()], eos_ids)
    if not strength.history_dependent:
        for prompt in probe_prompts(tokenizer):
            probe = reference_for(model, tokenizer, prompt, 2 * max_new_tokens)
            if history_dependent([probe.ids], eos_ids):
                references[prompt] = probe
                strength.history_dependent, strength.probe = True, prompt
                break
    # How much would a lost cache move the logits? On the prompt with the longest reference.
    longest = max(references.values(), key=lambda r: len(r.ids))
    strength.tolerance = logits_tolerance(longest.logits)
    strength.lost_cache_diff = lost_cache_logits_diff(model, longest.input_ids, np.ones_like(longest.input_ids),
                                                      np.array([longest.ids]), [row[None, :] for row in longest.logits])
    return strength


def verify_export(
    folder: Path,
    model,
    decoder_file: str = "decoder_model_merged.onnx",
    prompts=DEFAULT_PROMPTS,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> VerificationReport:
    """Compare greedy generation over `folder`'s ONNX files with PyTorch `model.generate`.

    Cases: the first prompt alone, all prompts as a padded batch, and (when the fixed prompts
    cannot reveal a lost cache by their ids) a history-dependent probe prompt. The report's
    `strength` says whether the check could have caught a lost cache at all.
    """
    folder = Path(folder)
    report = VerificationReport(max_new_tokens=max_new_tokens)
    encoder = _session(folder / "onnx" / "encoder_model.onnx")
    decoder = _session(folder / "onnx" / decoder_file)
    merged = decoder_file.startswith("decoder_model_merged")
    if merged:
        problem = merged_decoder_problem([i.name for i in decoder.get_inputs()], [o.name for o in decoder.get_outputs()])
        if problem:
            report.structure_problem = f"{decoder_file}: {problem}. Re-export with `seq2seq-onnx convert SOURCE -o OUT`"
            return report
    tokenizer = load_prompts_tokenizer(folder)
    start_id, eos_ids, pad_id = special_ids(model)

    def run_case(name: str, case_prompts: list[str], new_tokens: int):
        ids, mask = encode_batch(tokenizer, case_prompts, pad_id, model.config.vocab_size)
        args = (ids, mask, start_id, eos_ids, pad_id, new_tokens)
        ref_seq, ref_logits = reference_greedy(model, *args)
        got_seq, got_logits = onnx_greedy(encoder, decoder, *args, transformersjs_feeding=merged)
        max_diff, scale = compare_logits(ref_seq, ref_logits, got_seq, got_logits)
        report.cases.append(
            CaseResult(
                name=name,
                prompts=case_prompts,
                reference_ids=ref_seq.tolist(),
                onnx_ids=got_seq.tolist(),
                max_logits_diff=max_diff,
                logits_scale=scale,
                tokens_match=ref_seq.shape == got_seq.shape and bool((ref_seq == got_seq).all()),
                logits_match=max_diff <= max(LOGITS_RTOL * scale, 1e-3),
            )
        )
        return ids, ref_seq, ref_logits

    ids, ref_seq, ref_logits = run_case("single", list(prompts[:1]), max_new_tokens)
    run_case("padded batch", list(prompts), max_new_tokens)
    references = {prompts[0]: Reference(ids, ref_seq[0].tolist(), [row[0] for row in ref_logits], max_new_tokens)}
    report.strength = assess_strength(model, tokenizer, references, max_new_tokens)
    if report.strength.probe is not None:
        run_case("history probe", [report.strength.probe], 2 * max_new_tokens)
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

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def verdict(self) -> str:
        if not self.passed:
            return "FAILED"
        return "PASSED" if self.strength.strong else "INCONCLUSIVE"

    def to_dict(self) -> dict:
        return {"folder": self.folder, "reference": self.reference, "passed": self.passed, "verdict": self.verdict,
                "strength": self.strength.to_dict(), "notes": self.notes, "checks": [asdict(c) for c in self.checks]}


def _agreement(reference: list[int], got: list[int]) -> float:
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
    check.agreement = sum(_agreement(c["reference_ids"], c["ids"]) for c in check.cases) / len(check.cases)
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
        check.text_ok = all(c["text"] == c["expected_text"] for c in check.cases)
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
    """ids -> text as transformers decodes them with the folder's tokenizer files (special tokens skipped)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=True)


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
    info = folder / "seq2seq_onnx.json"
    if info.is_file():
        return json.loads(info.read_text()).get("source")
    return None


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
    from .errors import Seq2SeqOnnxError
    from .runtime import DTYPE_SUFFIXES

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

    from .convert import _load_model
    from .source import resolve_source

    model = _load_model(resolve_source(reference), trust_remote_code=False)
    result = FolderVerification(folder=str(folder), reference=reference)
    from .families import transformersjs_supports

    runtimes = list(runtimes)
    js_runtimes = [r for r in runtimes if r in ("transformers.js", "browser")]
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
        structure = merged_decoder_problem(*_graph_io(merged)) if merged.is_file() else None
        for runtime in runtimes:
            check = RuntimeCheck(dtype=dtype, runtime=runtime)
            if structure:
                check.error = f"{merged.name}: {structure}. Re-export with `seq2seq-onnx convert SOURCE -o OUT`"
                result.checks.append(check)
                continue
            try:
                if runtime == "python":
                    decoder = merged if merged.is_file() else onnx_dir / f"decoder_model{suffix}.onnx"
                    encoder = _session(onnx_dir / f"encoder_model{suffix}.onnx")
                    session = _session(decoder)
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
