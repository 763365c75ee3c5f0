"""Decoding strategies, in numpy, with transformers' option names and meanings.

Modelled on openai/whisper's `decoding.py`: options are one dataclass (`options.py`), each logits
processor is a small class (`processors.py`), and each strategy (greedy/sampling, beam search) is a
small class here that drives a `DecoderState` (one decoder step at a time, cache kept inside).
Greedy and beam search follow transformers 5's `generate` step for step, float32 arithmetic
included, so that the ids are the same; sampling uses numpy's generator, so it is reproducible
with `seed` but not equal to torch's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

import numpy as np

from .options import GenerationOptions
from .processors import NEG_INF, apply_chain, log_softmax, softmax, top_k_indices, build_processors

_BIG = np.float32(-1.0e9)  # transformers' "never choose this" offset, in float32 like there


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
            scores = apply_chain(self.processors, current, np.asarray(state.logits(current, step), dtype=np.float32))
            if o.do_sample:
                scores = apply_chain(self.warpers, current, scores)
                probs = softmax(scores)
                picked = np.array([self.rng.choice(probs.shape[1], p=p) for p in probs], dtype=np.int64)
            else:
                picked = scores.argmax(axis=-1)
            column = np.full(rows, o.pad_token_id, dtype=np.int64)
            column[active] = picked
            tokens = np.concatenate([tokens, column[:, None]], axis=1)
            yield column
            done_now = (picked[:, None] == eos).any(axis=1)  # np.isin costs ~0.1 ms per call
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
            log_probs = log_softmax(np.asarray(state.logits(flat, cur_len - 1), dtype=np.float32))
            log_probs = apply_chain(self.processors, flat, log_probs)
            if o.do_sample:
                log_probs = apply_chain(self.warpers, flat, log_probs)
            vocab = log_probs.shape[-1]
            totals = (log_probs.reshape(batch, K, vocab) + running_scores[:, :, None]).reshape(batch, K * vocab)

            if o.do_sample:
                # `keep` draws without replacement (Gumbel top-k): zero-probability entries come last
                # instead of failing, as torch.multinomial does when too few entries are non-zero
                with np.errstate(divide="ignore"):
                    keys = np.log(softmax(totals)) + self.rng.gumbel(size=totals.shape)
                picks = top_k_indices(keys, keep)
                top_scores = np.take_along_axis(totals, picks, axis=1)
                order = np.argsort(-top_scores, axis=1, kind="stable")
                top_scores = np.take_along_axis(top_scores, order, axis=1)
                top_indices = np.take_along_axis(picks, order, axis=1)
            else:
                top_indices = top_k_indices(totals, keep)
                top_scores = np.take_along_axis(totals, top_indices, axis=1)
            from_beam = top_indices // vocab
            new_tokens = top_indices % vocab
            top_sequences = np.take_along_axis(running, from_beam[:, :, None], axis=1)
            top_sequences[:, :, cur_len] = new_tokens
            top_idx = np.take_along_axis(running_idx, from_beam[:, :, None], axis=1)
            top_idx[:, :, cur_len - 1] = from_beam + offsets

            hits = (new_tokens[:, :, None] == eos).any(axis=-1) | (cur_len + 1 >= max_length)

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

