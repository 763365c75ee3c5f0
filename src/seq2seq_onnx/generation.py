"""Decoding strategies, in numpy, with transformers' option names and meanings.

Modelled on openai/whisper's `decoding.py`: options are one dataclass, each logits processor
is a small class, and each strategy (greedy/sampling, beam search) is a small class that drives
a `DecoderState` (one decoder step at a time, cache kept inside). Greedy and beam search follow
transformers 5's `generate` step for step, float32 arithmetic included, so that the ids are the
same; sampling uses numpy's generator, so it is reproducible with `seed` but not equal to torch's.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Iterator, Protocol

import numpy as np

NEG_INF = np.float32(-np.inf)
_BIG = np.float32(-1.0e9)  # transformers' "never choose this" offset, in float32 like there


class InvalidGenerationOptions(ValueError):
    """An option value that makes no sense; raised before any work is done."""


@dataclass(frozen=True)
class GenerationOptions:
    """The generation options, named and defaulted as in transformers' GenerationConfig."""

    # Lengths, as in transformers for encoder-decoder models: max_length and min_length count the
    # whole decoder sequence, decoder start token included; max_new_tokens and min_new_tokens count
    # generated tokens only and, when set (by generation_config.json or the call), take precedence.
    max_new_tokens: int | None = None
    min_new_tokens: int | None = None
    min_length: int | None = None
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    num_return_sequences: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    bad_words_ids: tuple[tuple[int, ...], ...] | None = None
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | None = None
    seed: int | None = None
    # special tokens
    decoder_start_token_id: int = 0
    eos_token_ids: tuple[int, ...] = (1,)
    pad_token_id: int = 0
    max_length: int | None = None  # None: nobody set a length, and transformers generates 20 new tokens

    # Options a user may pass to generate(); the special tokens come from the model folder.
    USER_OPTIONS = (
        "max_new_tokens", "max_length", "min_new_tokens", "min_length", "num_beams", "length_penalty",
        "early_stopping", "num_return_sequences", "do_sample", "temperature", "top_k", "top_p",
        "repetition_penalty", "no_repeat_ngram_size", "bad_words_ids", "seed",
    )
    # Passed as None, these are unset (transformers' `GenerationConfig.update` sets what the call passes,
    # None included): `max_new_tokens=None` lets a max_length win over generation_config.json's max_new_tokens.
    # (`max_length=None` makes transformers fail; here it means the default, 20 new tokens.)
    _UNSETTABLE = ("max_new_tokens", "min_new_tokens", "min_length", "max_length", "seed")

    @property
    def new_tokens(self) -> int:
        """How many tokens may be generated, by transformers 5's rules (generation/utils.py,
        `GenerationMixin._prepare_generated_length`): max_new_tokens when set; else max_length less
        the decoder start token; else the default max_length 20 plus that token, i.e. 20 new tokens
        (capped by `max_position_embeddings`, which T5-family configs do not have)."""
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        if self.max_length is not None:
            return self.max_length - 1
        return 20

    @property
    def min_total_length(self) -> int:
        """No end of sequence before the decoder sequence (start token included) is this long.

        transformers replaces min_length by min_new_tokens + 1 when min_new_tokens is set
        (`_prepare_generated_length`), then `MinLengthLogitsProcessor` suppresses EOS while shorter.
        """
        if self.min_new_tokens is not None:
            return 1 + self.min_new_tokens
        return self.min_length or 0

    def updated(self, **overrides) -> "GenerationOptions":
        unknown = sorted(set(overrides) - set(self.USER_OPTIONS))
        if unknown:
            raise TypeError(f"unknown generation option(s): {', '.join(unknown)}; known: {', '.join(self.USER_OPTIONS)}")
        overrides = {k: v for k, v in overrides.items() if v is not None or k in self._UNSETTABLE}
        if "bad_words_ids" in overrides and overrides["bad_words_ids"] is not None:
            overrides["bad_words_ids"] = tuple(tuple(int(t) for t in seq) for seq in overrides["bad_words_ids"])
        options = replace(self, **overrides)
        options.validate()
        # transformers logs the same advice (generation/utils.py, `_prepare_generated_length`)
        for total, new in (("max_length", "max_new_tokens"), ("min_length", "min_new_tokens")):
            if overrides.get(total) is not None and getattr(options, new) is not None:
                source = "this call" if new in overrides else "generation_config.json"
                warnings.warn(
                    f"{new}={getattr(options, new)} (from {source}) takes precedence over {total}={overrides[total]}, "
                    f"as in transformers; pass {new}=None to use {total}",
                    UserWarning,
                    stacklevel=3,
                )
        return options

    def validate(self) -> None:
        def check(ok: bool, message: str) -> None:
            if not ok:
                raise InvalidGenerationOptions(message)

        def is_int(v) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        check(is_int(self.num_beams) and self.num_beams >= 1, f"num_beams must be an integer >= 1, got {self.num_beams!r}")
        if self.max_new_tokens is not None:
            check(is_int(self.max_new_tokens) and self.max_new_tokens >= 1,
                  f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        # max_length counts the decoder start token, so 2 is the least that generates anything
        # (transformers raises for max_length <= 1 too); it is only checked where it decides
        check(self.max_length is None or is_int(self.max_length), f"max_length must be an integer, got {self.max_length!r}")
        if self.max_new_tokens is None and self.max_length is not None:
            check(self.max_length >= 2, f"max_length must be >= 2 (it counts the decoder start token), got {self.max_length!r}")
        check(self.min_new_tokens is None or (is_int(self.min_new_tokens) and self.min_new_tokens >= 0),
              f"min_new_tokens must be an integer >= 0, got {self.min_new_tokens!r}")
        check(self.min_length is None or (is_int(self.min_length) and self.min_length >= 0),
              f"min_length must be an integer >= 0, got {self.min_length!r}")
        check(is_int(self.num_return_sequences) and self.num_return_sequences >= 1,
              f"num_return_sequences must be an integer >= 1, got {self.num_return_sequences!r}")
        if self.num_beams > 1:
            check(self.num_return_sequences <= self.num_beams,
                  f"num_return_sequences ({self.num_return_sequences}) must be <= num_beams ({self.num_beams})")
        elif not self.do_sample:
            check(self.num_return_sequences == 1,
                  "greedy decoding returns one sequence per input: set do_sample=True or num_beams > 1 "
                  f"for num_return_sequences={self.num_return_sequences}")
        check(self.early_stopping in (True, False, "never"), f"early_stopping must be True, False or 'never', got {self.early_stopping!r}")
        check(isinstance(self.length_penalty, (int, float)), f"length_penalty must be a number, got {self.length_penalty!r}")
        if self.do_sample:  # a greedy config may carry temperature 0, as transformers allows
            check(self.temperature > 0, f"temperature must be > 0, got {self.temperature!r}")
        check(is_int(self.top_k) and self.top_k >= 0, f"top_k must be an integer >= 0, got {self.top_k!r}")
        check(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p!r}")
        check(self.repetition_penalty > 0, f"repetition_penalty must be > 0, got {self.repetition_penalty!r}")
        check(is_int(self.no_repeat_ngram_size) and self.no_repeat_ngram_size >= 0,
              f"no_repeat_ngram_size must be an integer >= 0, got {self.no_repeat_ngram_size!r}")
        if self.bad_words_ids is not None:
            check(all(len(seq) > 0 for seq in self.bad_words_ids), "bad_words_ids must be a list of non-empty lists of token ids")


# ---------------------------------------------------------------------------------------------
# Logits processors: (tokens [rows, cur_len], scores [rows, vocab]) -> scores, as transformers'.


class LogitsProcessor(Protocol):
    def __call__(self, tokens: np.ndarray, scores: np.ndarray) -> np.ndarray: ...


@dataclass
class RepetitionPenalty:
    penalty: float

    def __call__(self, tokens, scores):
        vocab = scores.shape[-1]
        ids = np.minimum(tokens, vocab)  # ids outside the output vocab land in a padding column
        padded = np.concatenate([scores, np.zeros((scores.shape[0], 1), scores.dtype)], axis=1)
        picked = np.take_along_axis(padded, ids, axis=1)
        picked = np.where(picked < 0, picked * np.float32(self.penalty), picked / np.float32(self.penalty))
        np.put_along_axis(padded, ids, picked.astype(scores.dtype), axis=1)
        return padded[:, :vocab]


@dataclass
class NoRepeatNGram:
    size: int

    def __call__(self, tokens, scores):
        cur_len = tokens.shape[1]
        if cur_len < self.size:
            return scores
        scores = scores.copy()
        n = self.size
        for row in range(tokens.shape[0]):
            seq = tokens[row].tolist()
            prefix = tuple(seq[cur_len + 1 - n :])
            banned = {seq[i + n - 1] for i in range(cur_len - n + 1) if tuple(seq[i : i + n - 1]) == prefix}
            banned = [t for t in banned if t < scores.shape[1]]
            scores[row, banned] = NEG_INF
        return scores


@dataclass
class NoBadWords:
    sequences: tuple[tuple[int, ...], ...]
    eos_token_ids: tuple[int, ...]
    single: list[int] = field(init=False)
    multi: list[tuple[int, ...]] = field(init=False)

    def __post_init__(self):
        kept = [s for s in self.sequences if not (len(s) == 1 and s[0] in self.eos_token_ids)]
        self.single = sorted({s[0] for s in kept if len(s) == 1})
        self.multi = [s for s in kept if len(s) > 1]

    def __call__(self, tokens, scores):
        scores = scores.copy()
        vocab = scores.shape[1]
        scores[:, [t for t in self.single if t < vocab]] = NEG_INF
        for seq in self.multi:
            prefix = np.array(seq[:-1])
            if len(prefix) > tokens.shape[1] or seq[-1] >= vocab:
                continue
            rows = (tokens[:, -len(prefix) :] == prefix).all(axis=1)
            scores[rows, seq[-1]] = NEG_INF
        return scores


@dataclass
class SuppressEos:
    """min_length / min_new_tokens: no end of sequence while the sequence is shorter than `min_length`."""

    min_length: int  # counted in decoder tokens, start token included
    eos_token_ids: tuple[int, ...]

    def __call__(self, tokens, scores):
        if tokens.shape[1] < self.min_length:
            scores = scores.copy()
            scores[:, [e for e in self.eos_token_ids if e < scores.shape[1]]] = NEG_INF
        return scores


@dataclass
class ForceToken:
    """forced_bos_token_id (at length 1) and forced_eos_token_id (at max_length - 1)."""

    token_id: int
    at_length: int

    def __call__(self, tokens, scores):
        if tokens.shape[1] == self.at_length:
            scores = np.full_like(scores, NEG_INF)
            scores[:, self.token_id] = 0
        return scores


@dataclass
class Temperature:
    temperature: float

    def __call__(self, tokens, scores):
        return scores / np.float32(self.temperature)


@dataclass
class TopK:
    top_k: int
    min_tokens_to_keep: int = 1

    def __call__(self, tokens, scores):
        k = min(max(self.top_k, self.min_tokens_to_keep), scores.shape[-1])
        kth = -np.partition(-scores, k - 1, axis=-1)[:, k - 1 : k]
        return np.where(scores < kth, NEG_INF, scores)


@dataclass
class TopP:
    top_p: float
    min_tokens_to_keep: int = 1

    def __call__(self, tokens, scores):
        order = np.argsort(scores, axis=-1, kind="stable")
        sorted_scores = np.take_along_axis(scores, order, axis=-1)
        cumulative = np.cumsum(_softmax(sorted_scores), axis=-1)
        remove_sorted = cumulative <= (1 - self.top_p)
        remove_sorted[:, -self.min_tokens_to_keep :] = False
        remove = np.zeros_like(remove_sorted)
        np.put_along_axis(remove, order, remove_sorted, axis=-1)
        return np.where(remove, NEG_INF, scores)


def _top_k_indices(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values per row, largest first, ties to the lower index (like a stable sort).

    argpartition first: a full sort of num_beams * vocab scores per step would cost more than the model.
    """
    if k >= x.shape[1]:
        return np.argsort(-x, axis=1, kind="stable")
    candidates = np.argpartition(-x, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(x, candidates, axis=1)
    order = np.lexsort((candidates, -values), axis=1)
    return np.take_along_axis(candidates, order, axis=1)


def _softmax(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    x64 = x64 - x64.max(axis=-1, keepdims=True)
    e = np.exp(x64)
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    """In float32, as torch computes it for float32 logits (and fast: this runs on every beam's full vocabulary)."""
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def build_processors(o: GenerationOptions) -> tuple[list, list]:
    """(processors, warpers) in transformers' order; warpers only when sampling."""
    processors: list = []
    if o.repetition_penalty != 1.0:
        processors.append(RepetitionPenalty(o.repetition_penalty))
    if o.no_repeat_ngram_size > 0:
        processors.append(NoRepeatNGram(o.no_repeat_ngram_size))
    if o.bad_words_ids:
        processors.append(NoBadWords(o.bad_words_ids, o.eos_token_ids))
    if o.min_total_length > 1:  # min_new_tokens replaces min_length, as in transformers
        processors.append(SuppressEos(o.min_total_length, o.eos_token_ids))
    if o.forced_bos_token_id is not None:
        processors.append(ForceToken(o.forced_bos_token_id, at_length=1))
    if o.forced_eos_token_id is not None:
        processors.append(ForceToken(o.forced_eos_token_id, at_length=1 + o.new_tokens - 1))
    warpers: list = []
    if o.do_sample:
        keep = len(o.eos_token_ids) + 1 if o.num_beams > 1 else 1
        if o.temperature != 1.0:
            warpers.append(Temperature(o.temperature))
        if o.top_k:
            warpers.append(TopK(o.top_k, keep))
        if o.top_p < 1.0:
            warpers.append(TopP(o.top_p, keep))
    return processors, warpers


def _apply(chain, tokens, scores):
    for processor in chain:
        scores = processor(tokens, scores)
    return scores


# ---------------------------------------------------------------------------------------------
# Strategies


class DecoderState(Protocol):
    """One decoder step at a time over a batch of rows; the runtime implements it."""

    def logits(self, tokens: np.ndarray, step: int) -> np.ndarray:
        """Logits [rows, vocab] for the next token; `tokens` [rows, cur_len] is every row's sequence so far."""

    def select(self, rows: np.ndarray) -> None:
        """Keep only these rows (in this order) from now on: finished rows stop costing work."""

    def reorder_beams(self, rows: np.ndarray) -> None:
        """Beam search: row i continues the self-attention cache of row rows[i] (same input)."""


@dataclass
class GenerationResult:
    sequences: np.ndarray  # [batch * num_return_sequences, 1 + new tokens], start token first
    scores: np.ndarray | None = None  # beam search: length-penalized sequence scores


class GreedyOrSampling:
    """Greedy decoding (argmax) or multinomial sampling, row by row; yields each step's tokens."""

    def __init__(self, options: GenerationOptions):
        self.o = options
        self.processors, self.warpers = build_processors(options)
        self.rng = np.random.default_rng(options.seed)

    def steps(self, state: DecoderState, rows: int) -> Iterator[np.ndarray]:
        """Yield the new token of every row at each step (pad for finished rows)."""
        o = self.o
        tokens = np.full((rows, 1), o.decoder_start_token_id, dtype=np.int64)
        finished = np.zeros(rows, dtype=bool)
        active = np.arange(rows)
        eos = np.array(o.eos_token_ids)
        for step in range(o.new_tokens):
            current = tokens[active]
            scores = _apply(self.processors, current, np.asarray(state.logits(current, step), dtype=np.float32))
            if o.do_sample:
                scores = _apply(self.warpers, current, scores)
                probs = _softmax(scores)
                picked = np.array([self.rng.choice(probs.shape[1], p=p) for p in probs], dtype=np.int64)
            else:
                picked = scores.argmax(axis=-1)
            column = np.full(rows, o.pad_token_id, dtype=np.int64)
            column[active] = picked
            tokens = np.concatenate([tokens, column[:, None]], axis=1)
            yield column
            done_now = np.isin(picked, eos)
            finished[active] |= done_now
            if finished.all():
                return
            if done_now.any():
                keep = ~done_now
                state.select(np.flatnonzero(keep))
                active = active[keep]

    def run(self, state: DecoderState, rows: int) -> GenerationResult:
        o = self.o
        columns = list(self.steps(state, rows))
        start = np.full((rows, 1), o.decoder_start_token_id, dtype=np.int64)
        return GenerationResult(np.concatenate([start, *[c[:, None] for c in columns]], axis=1))


class BeamSearch:
    """transformers 5's vectorized beam search (`GenerationMixin._beam_search`), ported to numpy."""

    def __init__(self, options: GenerationOptions):
        self.o = options
        self.processors, self.warpers = build_processors(options)
        self.rng = np.random.default_rng(options.seed)

    def run(self, state: DecoderState, batch: int) -> GenerationResult:
        o = self.o
        K = o.num_beams
        max_length = 1 + o.new_tokens
        keep = max(2, 1 + len(o.eos_token_ids)) * K
        top_mask = np.arange(keep) < K
        fill = o.pad_token_id or o.eos_token_ids[0]  # as transformers: pad 0 is falsy, so EOS fills
        eos = np.array(o.eos_token_ids)

        running = np.full((batch, K, max_length), fill, dtype=np.int64)
        running[:, :, 0] = o.decoder_start_token_id
        sequences = running.copy()
        running_scores = np.zeros((batch, K), dtype=np.float32)
        running_scores[:, 1:] = _BIG
        beam_scores = np.full((batch, K), _BIG, dtype=np.float32)
        finished = np.zeros((batch, K), dtype=bool)
        improvable = np.ones((batch, 1), dtype=bool)
        running_idx = np.full((batch, K, max(max_length - 1, 1)), -1, dtype=np.int64)
        beam_indices = running_idx.copy()
        offsets = (np.arange(batch) * K)[:, None]
        cur_len = 1
        while cur_len < max_length:
            flat = running[:, :, :cur_len].reshape(batch * K, cur_len)
            log_probs = _log_softmax(np.asarray(state.logits(flat, cur_len - 1), dtype=np.float32))
            log_probs = _apply(self.processors, flat, log_probs)
            if o.do_sample:
                log_probs = _apply(self.warpers, flat, log_probs)
            vocab = log_probs.shape[-1]
            totals = (log_probs.reshape(batch, K, vocab) + running_scores[:, :, None]).reshape(batch, K * vocab)

            if o.do_sample:
                # `keep` draws without replacement (Gumbel top-k): zero-probability entries come last
                # instead of failing, as torch.multinomial does when too few entries are non-zero
                with np.errstate(divide="ignore"):
                    keys = np.log(_softmax(totals)) + self.rng.gumbel(size=totals.shape)
                picks = _top_k_indices(keys, keep)
                top_scores = np.take_along_axis(totals, picks, axis=1)
                order = np.argsort(-top_scores, axis=1, kind="stable")
                top_scores = np.take_along_axis(top_scores, order, axis=1)
                top_indices = np.take_along_axis(picks, order, axis=1)
            else:
                top_indices = _top_k_indices(totals, keep)
                top_scores = np.take_along_axis(totals, top_indices, axis=1)
            from_beam = top_indices // vocab
            new_tokens = top_indices % vocab
            top_sequences = np.take_along_axis(running, from_beam[:, :, None], axis=1)
            top_sequences[:, :, cur_len] = new_tokens
            top_idx = np.take_along_axis(running_idx, from_beam[:, :, None], axis=1)
            top_idx[:, :, cur_len - 1] = from_beam + offsets

            hits = np.isin(new_tokens, eos) | (cur_len + 1 >= max_length)

            # beams that go on: the best K that did not just finish
            going_on = top_scores + hits.astype(np.float32) * _BIG
            nxt = np.argsort(-going_on, axis=1, kind="stable")[:, :K]
            running = np.take_along_axis(top_sequences, nxt[:, :, None], axis=1)
            running_scores = np.take_along_axis(going_on, nxt, axis=1)
            running_idx = np.take_along_axis(top_idx, nxt[:, :, None], axis=1)

            # finished hypotheses: keep the best K ever seen
            just_done = hits & top_mask[None, :]
            scored = top_scores / np.float32((cur_len + 1 - 1) ** o.length_penalty)
            full = finished.all(axis=-1, keepdims=True) & (o.early_stopping is True)
            scored = scored + full.astype(np.float32) * _BIG
            scored = scored + (~improvable).astype(np.float32) * _BIG
            scored = scored + (~just_done).astype(np.float32) * _BIG
            merged_scores = np.concatenate([beam_scores, scored], axis=1)
            best = np.argsort(-merged_scores, axis=1, kind="stable")[:, :K]
            sequences = np.take_along_axis(np.concatenate([sequences, top_sequences], axis=1), best[:, :, None], axis=1)
            beam_scores = np.take_along_axis(merged_scores, best, axis=1)
            beam_indices = np.take_along_axis(np.concatenate([beam_indices, top_idx], axis=1), best[:, :, None], axis=1)
            finished = np.take_along_axis(np.concatenate([finished, just_done], axis=1), best, axis=1)

            state.reorder_beams(running_idx[:, :, cur_len - 1].reshape(-1))
            cur_len += 1

            if o.early_stopping == "never" and o.length_penalty > 0.0:
                hypothetical = max_length - 1
            else:
                hypothetical = cur_len - 1
            best_running = running_scores[:, :1] / np.float32(hypothetical ** o.length_penalty)
            worst_done = np.where(finished, beam_scores.min(axis=1, keepdims=True), _BIG)
            improvable = improvable & (best_running > worst_done).any(axis=-1, keepdims=True)
            if not (improvable.any() and not (finished.all() and o.early_stopping is True) and not hits.all()):
                break

        R = o.num_return_sequences
        sequences = sequences[:, :R].reshape(batch * R, max_length)
        scores = beam_scores[:, :R].reshape(-1)
        generated = ((beam_indices[:, :R].reshape(batch * R, -1) + 1) != 0).sum(axis=1).max()
        return GenerationResult(sequences[:, : 1 + int(generated)], scores)


def decoder_for(options: GenerationOptions):
    return BeamSearch(options) if options.num_beams > 1 else GreedyOrSampling(options)

