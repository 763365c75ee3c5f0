"""The PyTorch side of verification: references, and whether they could reveal a lost cache.

A reference is PyTorch `generate`'s plain greedy answer to one prompt, with its step logits.
Small random or badly trained models often answer with one token repeated, and then a decoder
that lost its cache gives the "right" ids; `assess_strength` notices (no reference token followed
by two different ones), adds a history-dependent probe prompt when it can find one, and measures
how far PyTorch's own logits move when the decoder sees the last token alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

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


def _as_eos_set(eos) -> set[int]:
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}


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

    from ..export.graphs import cache_kwarg

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

    from ..errors import Seq2SeqOnnxError

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
