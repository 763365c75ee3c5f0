"""Pegasus: sinusoidal positions, pre-layer-norm, scaled embeddings; sentencepiece ids shifted by 103.

Transformers.js 4.3.1 has no `pegasus` model type ("Unsupported model type"): exports run in
ONNX Runtime (Python, `Seq2SeqOnnxModel`), and convert, verify and inspect say so.
"""

from __future__ import annotations

from .bart import BartLikeFamily
from .base import hub_names

PEGASUS = BartLikeFamily(
    name="Pegasus",
    model_types=("pegasus",),
    transformersjs_model_types=(),
    tokenizer_kind="pegasus",
    hub_checkpoints={
        **hub_names("google", "pegasus", ("xsum", "large", "cnn_dailymail", "multi_news", "pubmed", "arxiv",
                                           "billsum", "gigaword", "newsroom", "wikihow", "reddit_tifu", "aeslc")),
    },
)
