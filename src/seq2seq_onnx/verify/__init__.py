"""Verify stage: an export must reproduce PyTorch, in every runtime that will run it.

    reference.py       PyTorch's plain greedy answers and step logits; whether they could reveal a lost cache
    ort.py             conversion-time check: Python ONNX Runtime fed as Transformers.js feeds it
    transformersjs.py  real Transformers.js, offline: Node (js/verify.mjs) and headless Chromium (js/verify.html)
    folder.py          `seq2seq-onnx verify`: every dtype of a folder in every runtime
"""

from .folder import FolderVerification, RuntimeCheck, transformersjs_available, transformersjs_check, verify_folder
from .ort import CaseResult, VerificationReport, onnx_greedy, verify_export
from .reference import (
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_PROMPTS,
    LOGITS_RTOL,
    Reference,
    Strength,
    assess_strength,
    history_dependent,
    reference_for,
    reference_greedy,
)

__all__ = [
    "CaseResult", "DEFAULT_MAX_NEW_TOKENS", "DEFAULT_PROMPTS", "FolderVerification", "LOGITS_RTOL", "Reference",
    "RuntimeCheck", "Strength", "VerificationReport", "assess_strength", "history_dependent", "onnx_greedy",
    "reference_for", "reference_greedy", "transformersjs_available", "transformersjs_check", "verify_export",
    "verify_folder",
]
