"""mBART (cc25, en-ro) and mBART-50: BART's layout with pre-layer-norm and a final layer norm; language codes.

mBART-50 marks the source with its code first (`en_XX X </s>`) and forces the target code as
the first generated token (`forced_bos_token_id`); mBART cc25 puts the code last
(`X </s> en_XX`) and starts the decoder from the target code. Without a forced target language
mBART-50 echoes its input.
"""

from __future__ import annotations

from .bart import BartLikeFamily
from .base import hub_names

MBART = BartLikeFamily(
    name="mBART",
    model_types=("mbart",),
    transformersjs_model_types=("mbart",),
    tokenizer_kind="mbart",
    hub_checkpoints={
        **hub_names("facebook", "mbart-large", ("cc25", "en-ro", "50", "50-many-to-many-mmt", "50-one-to-many-mmt",
                                                "50-many-to-one-mmt")),
    },
)
