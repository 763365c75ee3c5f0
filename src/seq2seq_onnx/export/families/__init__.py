"""Model families: one small adapter module per family, and the registry the stages ask.

Everything family-specific lives in the adapters (`t5.py`, ...), so that the exporter, merger,
verifier and runtime stay generic. Adding a family means adding an adapter and listing it in
FAMILIES, not touching the stages.
"""

from __future__ import annotations

import difflib

from .bart import BART
from .base import CacheLayout, ModelFamily, hub_names
from .m2m100 import M2M100
from .marian import MARIAN
from .mbart import MBART
from .pegasus import PEGASUS
from .t5 import T5

FAMILIES: tuple[ModelFamily, ...] = (T5, BART, MBART, MARIAN, M2M100, PEGASUS)

# Families people ask for that we do not export yet: their checkpoints still get a "did you mean".
_PLANNED_CHECKPOINTS: dict[str, str] = {}


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
