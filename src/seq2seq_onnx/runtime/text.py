"""Text out of ids as transformers decodes it: the clean-up of tokenization spaces, and streaming."""

from __future__ import annotations

import json
from pathlib import Path


def clean_up_tokenization(text: str) -> str:
    """Remove the space before punctuation and English contractions, as transformers does.

    Ported as is from transformers 5's `PreTrainedTokenizerBase.clean_up_tokenization`
    (transformers/tokenization_utils_base.py), which `decode` applies when the tokenizer's
    `clean_up_tokenization_spaces` is true. Plain `str.replace` calls, in this order.
    """
    return (
        text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
    )


def stable_prefix_length(text: str) -> int:
    """The length of the longest prefix of `text` whose clean-up no later text can change.

    `clean_up_tokenization(a + b) == clean_up_tokenization(a) + clean_up_tokenization(b)` when `b`
    starts with a space and `a` ends with a character other than a space, an apostrophe or an "n".
    Every pattern starts with a space, so a replacement can only straddle such a cut by continuing
    from the end of `a` into `b` as cleaned so far: `a` ending in "'" with `b` = " ...", completing
    " ' "; `a` ending in "n" with `b` = " ' t..." (already "'t...") completing " n't"; `a` ending in a
    space with `b` = " ' s..." (already "'s...") completing " 's".
    """
    for i in range(len(text) - 1, 0, -1):
        if text[i] == " " and text[i - 1] not in " 'n":
            return i
    return 0


def cleans_up_spaces(folder: Path, tokenizer) -> bool:
    """Whether transformers' `AutoTokenizer.from_pretrained(folder).decode` would clean up spaces.

    transformers 5 reads `clean_up_tokenization_spaces` from tokenizer_config.json, False when
    absent (`PreTrainedTokenizerBase.__init__`, tokenization_utils_base.py), and skips the clean-up
    for BPE models unless `clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output`
    is set (`TokenizersBackend._decode`, tokenization_utils_tokenizers.py).
    """
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if not isinstance(config, dict) or not config.get("clean_up_tokenization_spaces", False):
        return False
    if type(tokenizer.model).__name__ == "BPE":
        return bool(config.get("clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output", False))
    return True


# transformers 5's Python-only tokenizers, whose decode joins pieces and strips the result
# (MarianTokenizer / M2M100Tokenizer `convert_tokens_to_string`), where tokenizer.json's decoder
# (tokenizers, Transformers.js) keeps a space left by a lone "▁" at either end.
_STRIPPING_CLASSES = ("MarianTokenizer", "M2M100Tokenizer")


def strips_decoded_text(folder: Path) -> bool:
    """Whether transformers' decode of this folder's tokenizer strips leading and trailing whitespace."""
    path = folder / "tokenizer_config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and str(config.get("tokenizer_class") or "").removesuffix("Fast") in _STRIPPING_CLASSES
