"""What a family adapter says: the few facts that differ between encoder-decoder architectures."""

from __future__ import annotations

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
    # The model's token ids are spiece.model's own ids (plus EOS), so tokenizer.json can be checked
    # against sentencepiece itself (T5); other families shift or remap them.
    spiece_ids_are_token_ids: bool = False
    # How the export's tokenizer.json is made (export/spm_json.py `tokenizer_json_for`): None = as
    # transformers saves it; "mbart", "m2m100", "marian", "pegasus": the family's construction.
    tokenizer_kind: str | None = None

    def cache_layout(self, config) -> CacheLayout:  # pragma: no cover - abstract
        """The decoder cache's shape from a transformers config (or any object with its attributes)."""
        raise NotImplementedError


def hub_names(org: str, prefix: str, sizes: tuple[str, ...]) -> dict[str, str]:
    """{'prefix-size': 'org/prefix-size'} for the did-you-mean table."""
    return {f"{prefix}-{s}": f"{org}/{prefix}-{s}" for s in sizes}
