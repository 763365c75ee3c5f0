"""M2M100 and NLLB (model_type `m2m_100`): scaled embeddings, sinusoidal positions, pre-layer-norm.

Both mark the source with its language code first (`__en__ X </s>`, `eng_Latn X </s>`) and
force the target code as the first generated token. M2M100's tokenizer is Python-only in
transformers 5 (vocab.json + sentencepiece), so tokenizer.json is built here; NLLB's
sentencepiece model is BPE and its language codes follow the vocabulary.
"""

from __future__ import annotations

from .bart import BartLikeFamily
from .base import hub_names

M2M100 = BartLikeFamily(
    name="M2M100/NLLB",
    model_types=("m2m_100",),
    transformersjs_model_types=("m2m_100",),
    tokenizer_kind="m2m100",
    hub_checkpoints={
        **hub_names("facebook", "m2m100", ("418M", "1.2B")),
        "m2m100_418M": "facebook/m2m100_418M",
        "m2m100_1.2B": "facebook/m2m100_1.2B",
        **hub_names("facebook", "nllb-200", ("distilled-600M", "distilled-1.3B", "1.3B", "3.3B")),
    },
)
