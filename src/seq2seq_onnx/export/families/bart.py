"""BART and distilbart: learned positions, scaled or unscaled embeddings, `final_logits_bias`, post-layer-norm.

Every BART-like family (mBART, Marian, M2M100/NLLB, Pegasus, Blenderbot-small) has the same
cache layout: `decoder_layers` layers of `decoder_attention_heads` heads of
`d_model / decoder_attention_heads` (Optimum's and Transformers.js's rule; T5 alone has `d_kv`).
What differs between them (embedding scale, positions, layer-norm placement, final logits bias,
start and forced tokens) lives in the checkpoint's config and transformers' modeling code, which
the exporter runs as is.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import CacheLayout, ModelFamily, hub_names


@dataclass(frozen=True)
class BartLikeFamily(ModelFamily):
    def cache_layout(self, config) -> CacheLayout:
        heads = config.decoder_attention_heads
        return CacheLayout(num_layers=config.decoder_layers, num_heads=heads, head_dim=config.d_model // heads)


BART = BartLikeFamily(
    name="BART",
    model_types=("bart",),
    transformersjs_model_types=("bart",),
    hub_checkpoints={
        **hub_names("facebook", "bart", ("base", "large", "large-cnn", "large-xsum", "large-mnli")),
        **hub_names("sshleifer", "distilbart-cnn", ("12-6", "6-6", "12-3")),
        **hub_names("sshleifer", "distilbart-xsum", ("12-6", "6-6", "12-3", "12-1", "9-6")),
    },
)
