"""Verify stage: greedy generation over the ONNX files must give PyTorch's tokens exactly.

The ONNX side is driven the way Transformers.js drives it, not the way we would like it to
be driven: step 1 gets empty caches (every symbolic dimension 0) and `use_cache_branch=false`;
every later step gets only the last token, `use_cache_branch=true`, the self-attention cache
from the previous step and the cross-attention cache from step 1. An export that only works
when fed the whole prefix (the repeated-token bug) fails here, as it fails in the browser.
"""

from __future__ import annotations

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
