"""The model configurations every family-wide test runs on: one registry, so a new family is one entry.

Each case is (build_model variant, config overrides). Tests convert each case once per session
(`family_export` in conftest.py) and share the folder.
"""

FAMILY_CASES = {
    # T5 family
    "t5": ("t5", {}),  # relu, tied embeddings, logits scale
    "flan-t5": ("flan-t5", {}),  # gated-gelu, untied lm_head
    "mt5": ("mt5", {}),
    "umt5": ("umt5", {}),  # per-layer relative bias; not in Transformers.js
    "t5 more decoder than encoder layers": ("flan-t5", {"num_layers": 2, "num_decoder_layers": 3}),
    "t5 fewer decoder than encoder layers": ("t5", {"num_layers": 3, "num_decoder_layers": 1}),
    "t5 num_heads * d_kv != d_model": ("flan-t5", {"d_model": 32, "num_heads": 3, "d_kv": 16}),
    # BART family
    "bart": ("bart", {}),  # byte-level BPE, tied, final_logits_bias, forced BOS/EOS
    "bart more decoder than encoder layers": ("bart", {"encoder_layers": 1, "decoder_layers": 3}),
    # Pegasus
    "pegasus": ("pegasus", {}),  # sinusoidal positions, pre-layer-norm, scaled embeddings; not in Transformers.js
    # mBART: mBART-50 (codes first, forced target) and cc25 (codes last, decoder starts from the target)
    "mbart50": ("mbart50", {}),
    "mbart": ("mbart", {}),
    # M2M100 (vocab.json + sentencepiece, __xx__ codes) and NLLB (BPE sentencepiece, eng_Latn codes)
    "m2m100": ("m2m100", {}),
    "nllb": ("nllb", {}),
    # Marian: two sentencepiece models and one vocab.json; multi-target checkpoints with >>xx<< tags
    "marian": ("marian", {}),
    "marian-multi": ("marian-multi", {}),
    "marian fewer decoder than encoder layers": ("marian", {"encoder_layers": 3, "decoder_layers": 1}),
}

# Model types Transformers.js 4.3.1 does not know: exported for ONNX Runtime only.
NOT_IN_TRANSFORMERSJS = {"umt5", "pegasus"}

# One case per family for the slowest runtime (the browser).
BROWSER_CASES = ["t5", "flan-t5", "mt5", "t5 more decoder than encoder layers", "bart", "mbart50", "m2m100", "nllb",
                 "marian"]


def transformersjs_cases() -> dict:
    return {k: v for k, v in FAMILY_CASES.items() if v[0] not in NOT_IN_TRANSFORMERSJS}
