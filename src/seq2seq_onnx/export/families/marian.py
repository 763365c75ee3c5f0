"""Marian (Helsinki-NLP/opus-mt-*): scaled embeddings, sinusoidal positions, the decoder starts from <pad>.

Checkpoints ship two sentencepiece models (source.spm, target.spm) and one vocab.json; the
tokenizer is Python-only in transformers 5, so tokenizer.json is built here with the source
model's pieces and vocab.json's ids. Multi-target checkpoints read a `>>xx<<` tag at the start of
the text. generation_config.json bans <pad> (`bad_words_ids`) and forces </s> at the end.
"""

from __future__ import annotations

from .bart import BartLikeFamily

MARIAN = BartLikeFamily(
    name="Marian",
    model_types=("marian",),
    transformersjs_model_types=("marian",),
    tokenizer_kind="marian",
    hub_checkpoints={
        f"opus-mt-{pair}": f"Helsinki-NLP/opus-mt-{pair}"
        for pair in ("en-de", "de-en", "en-fr", "fr-en", "en-es", "es-en", "en-ro", "ro-en", "en-zh", "zh-en",
                     "en-ru", "ru-en", "en-jap", "en-mul", "mul-en", "en-ROMANCE", "ROMANCE-en", "en-it", "it-en")
    },
)
