"""Generation options: transformers' names, meanings and defaults, validated before any work."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np


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
        "forced_bos_token_id", "forced_eos_token_id", "decoder_start_token_id",
    )
    # Passed as None, these are unset (transformers' `GenerationConfig.update` sets what the call passes,
    # None included): `max_new_tokens=None` lets a max_length win over generation_config.json's max_new_tokens.
    # (`max_length=None` makes transformers fail; here it means the default, 20 new tokens.)
    _UNSETTABLE = ("max_new_tokens", "min_new_tokens", "min_length", "max_length", "seed", "forced_bos_token_id",
                   "forced_eos_token_id")

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
