"""Model families: the few facts that differ between encoder-decoder architectures.

Everything family-specific lives here, one small adapter per family, so that the
exporter, merger and verifier stay generic. Adding BART, Marian, M2M100 or Pegasus
means adding an adapter, not touching the stages.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CacheLayout:
    """Shape of the decoder's key/value cache: one self- and one cross-attention pair per layer."""

    num_layers: int
    num_heads: int
    head_dim: int


@dataclass(frozen=True)
class ModelFamily:
    name: str
    model_types: tuple[str, ...]
    # Known hub checkpoints, by the bare name people type (used for "did you mean ...?").
    hub_checkpoints: dict[str, str] = field(default_factory=dict)
    # transformers tokenizer class that converts the family's sentencepiece model, for
    # checkpoints whose AutoTokenizer mapping cannot (transformers 5 maps umt5 to a class
    # that needs tokenizer.json).
    sentencepiece_tokenizer: str | None = None
    # model_type values Transformers.js (4.3.1) knows; others run in ONNX Runtime only.
    transformersjs_model_types: tuple[str, ...] = ()

    def cache_layout(self, config) -> CacheLayout:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class T5Family(ModelFamily):
    """T5, t5-v1_1, flan-t5, mT5, umT5: relative attention, no position ids, `d_kv` may differ from d_model/heads."""

    def cache_layout(self, config) -> CacheLayout:
        layers = getattr(config, "num_decoder_layers", None) or config.num_layers
        return CacheLayout(num_layers=layers, num_heads=config.num_heads, head_dim=config.d_kv)


def _names(org: str, prefix: str, sizes: tuple[str, ...]) -> dict[str, str]:
    return {f"{prefix}-{s}": f"{org}/{prefix}-{s}" for s in sizes}


T5 = T5Family(
    name="T5",
    model_types=("t5", "mt5", "umt5"),
    sentencepiece_tokenizer="T5Tokenizer",
    transformersjs_model_types=("t5", "mt5"),  # no "umt5" in @huggingface/transformers 4.3.1
    hub_checkpoints={
        **_names("google-t5", "t5", ("small", "base", "large", "3b", "11b")),
        **_names("google", "flan-t5", ("small", "base", "large", "xl", "xxl")),
        **_names("google", "t5-v1_1", ("small", "base", "large", "xl", "xxl")),
        **_names("google", "mt5", ("small", "base", "large", "xl", "xxl")),
        **_names("google", "umt5", ("small", "base", "xl", "xxl")),
        **_names("google", "t5-efficient", ("tiny", "mini", "small", "base")),
    },
)

FAMILIES: tuple[ModelFamily, ...] = (T5,)

# Families people ask for that we do not export yet: their checkpoints still get a "did you mean".
_PLANNED_CHECKPOINTS = {
    **_names("facebook", "bart", ("base", "large", "large-cnn")),
    **_names("google", "pegasus", ("xsum", "large")),
}


def supported_model_types() -> list[str]:
    return [t for family in FAMILIES for t in family.model_types]


def family_for(model_type: str) -> ModelFamily | None:
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    return None


def transformersjs_supports(model_type: str) -> bool:
    family = family_for(model_type)
    return family is not None and model_type in family.transformersjs_model_types


def suggest_checkpoint(name: str) -> str | None:
    """The full hub id for a bare or misspelt checkpoint name, e.g. 'flan-t5-small' -> 'google/flan-t5-small'."""
    table = {k: v for family in FAMILIES for k, v in family.hub_checkpoints.items()}
    table.update(_PLANNED_CHECKPOINTS)
    key = name.strip().rstrip("/").split("/")[-1].lower()
    if key in table:
        found = table[key]
    else:
        close = difflib.get_close_matches(key, list(table), n=1, cutoff=0.85)
        found = table[close[0]] if close else None
    return found if found != name else None
