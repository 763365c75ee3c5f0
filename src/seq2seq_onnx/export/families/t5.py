"""T5, t5-v1_1, flan-t5, mT5, umT5: relative attention, no position ids, `d_kv` may differ from d_model/heads."""

from __future__ import annotations

from dataclasses import dataclass

from .base import CacheLayout, ModelFamily, hub_names


@dataclass(frozen=True)
class T5Family(ModelFamily):
    def cache_layout(self, config) -> CacheLayout:
        layers = getattr(config, "num_decoder_layers", None) or config.num_layers
        return CacheLayout(num_layers=layers, num_heads=config.num_heads, head_dim=config.d_kv)


T5 = T5Family(
    name="T5",
    model_types=("t5", "mt5", "umt5"),
    sentencepiece_tokenizer="T5Tokenizer",
    transformersjs_model_types=("t5", "mt5"),  # no "umt5" in @huggingface/transformers 4.3.1
    spiece_ids_are_token_ids=True,
    hub_checkpoints={
        **hub_names("google-t5", "t5", ("small", "base", "large", "3b", "11b")),
        **hub_names("google", "flan-t5", ("small", "base", "large", "xl", "xxl")),
        **hub_names("google", "t5-v1_1", ("small", "base", "large", "xl", "xxl")),
        **hub_names("google", "mt5", ("small", "base", "large", "xl", "xxl")),
        **hub_names("google", "umt5", ("small", "base", "xl", "xxl")),
        **hub_names("google", "t5-efficient", ("tiny", "mini", "small", "base")),
    },
)
