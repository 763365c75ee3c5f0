"""Translation inputs: `src_lang` / `tgt_lang`, by each family's rule, from the export's tokenizer files alone.

The rules are transformers' recipes, and what Transformers.js 4.3.1 does in
`_build_translation_inputs` (tokenization_utils.js), so that the same call gives the same ids in
Python and in the browser:

- mBART-50, M2M100, NLLB: the language codes are special added tokens of tokenizer.json
  (`en_XX`; `__en__`, also accepted as `en`; `eng_Latn`). `src_lang` replaces the code in the
  post-processor's template (prefix, or suffix for mBART cc25 and legacy NLLB files);
  `tgt_lang` becomes `forced_bos_token_id`, the first generated token.
- mBART cc25 (tokenizer class MBartTokenizer): the target code is the decoder start token
  (as mbart-large-en-ro's config has it), not a forced first token.
- Marian: multi-target checkpoints read a `>>xx<<` tag at the start of the source text; `tgt_lang`
  puts it there. Bilingual checkpoints have no tags and take no languages.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path

# tokenizer_class -> the pattern of its language codes (Transformers.js 4.3.1's, per tokenizer class)
_PATTERNS = {
    "MBartTokenizer": r"^[a-z]{2}_[A-Z]{2}$",
    "MBart50Tokenizer": r"^[a-z]{2}_[A-Z]{2}$",
    "M2M100Tokenizer": r"^__[a-z]{2,3}__$",
    "NllbTokenizer": r"^[a-z]{3}_[A-Z][a-z]{3}$",
}
_MARIAN_TAG = re.compile(r"^>>[\w-]+<<$")
_NONCHARACTERS = "".join(chr(c) for c in range(0xFDD0, 0xFDF0))


class UnknownLanguageError(ValueError):
    """A language code the tokenizer does not have; the message lists close ones."""


@dataclass
class Translation:
    """What a (src_lang, tgt_lang) call changes: the tokenizer to encode with, a text prefix, generation options."""

    tokenizer: object  # tokenizers.Tokenizer
    prefix: str = ""
    options: dict | None = None


class Languages:
    """The language codes of an export folder and how to apply them."""

    def __init__(self, folder: Path, tokenizer):
        self.folder = Path(folder)
        self.tokenizer = tokenizer
        config_path = self.folder / "tokenizer_config.json"
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        self.tokenizer_class = str(config.get("tokenizer_class") or "").removesuffix("Fast")
        self._json: dict | None = None
        self._by_source: dict[str, object] = {}
        special = [t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special]
        pattern = _PATTERNS.get(self.tokenizer_class)
        if pattern:
            self.kind = "forced_bos" if self.tokenizer_class != "MBartTokenizer" else "decoder_start"
            self.codes = [t for t in special if re.match(pattern, t)]
        elif self.tokenizer_class == "MarianTokenizer":
            # tags as typed at the start of the text; the vocabulary may hold them under a marked name
            # (export/spm_json.py makes them reachable only there, as MarianTokenizer cuts them)
            self.kind = "marian"
            self.codes = sorted({t.lstrip(_NONCHARACTERS) for t in tokenizer.get_vocab()
                                 if _MARIAN_TAG.match(t.lstrip(_NONCHARACTERS))})
        else:
            self.kind, self.codes = None, []

    def _token(self, code: str, role: str) -> str:
        """The tokenizer's token for a user's code: exact, or M2M100's `fr` for `__fr__`, Marian's `fra` for `>>fra<<`."""
        candidates = [code, f"__{code}__", f">>{code}<<"]
        for token in candidates:
            if token in self.codes:
                return token
        if not self.codes:
            raise UnknownLanguageError(
                f"{role}={code!r}: this model's tokenizer has no language codes, so it takes no {role} (a "
                "bilingual model translates its one pair; T5-style models take the languages in the prompt, e.g. "
                "'translate English to German: ...')"
            )
        shown = [c.strip("_<>") if self.kind == "marian" or c.startswith("__") else c for c in self.codes]
        close = difflib.get_close_matches(code, shown, n=5, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(shown[:20])}" + (
            " ..." if len(shown) > 20 else "")
        raise UnknownLanguageError(f"unknown {role} {code!r} for this model{hint}")

    def _with_source(self, token: str):
        """The tokenizer with `token` as the source code in its post-processor template (as Transformers.js rewrites it)."""
        if token not in self._by_source:
            from tokenizers import Tokenizer

            if self._json is None:
                self._json = json.loads((self.folder / "tokenizer.json").read_text(encoding="utf-8"))
            data = json.loads(json.dumps(self._json))  # a private copy to edit
            post = data.get("post_processor") or {}
            if post.get("type") != "TemplateProcessing":
                raise UnknownLanguageError("src_lang: tokenizer.json has no TemplateProcessing post-processor to put it in")
            token_id = self.tokenizer.token_to_id(token)
            replaced = None
            for item in post.get("single", []):
                special = item.get("SpecialToken")
                if special and special["id"] in self.codes:
                    replaced, special["id"] = special["id"], token
                    break
            if replaced is None:
                raise UnknownLanguageError("src_lang: tokenizer.json's template has no language code to replace")
            for item in post.get("pair", []):
                special = item.get("SpecialToken")
                if special and special["id"] == replaced:
                    special["id"] = token
            post.setdefault("special_tokens", {})[token] = {"id": token, "ids": [token_id], "tokens": [token]}
            self._by_source[token] = Tokenizer.from_str(json.dumps(data))
        return self._by_source[token]

    def apply(self, src_lang: str | None, tgt_lang: str | None) -> Translation:
        """How to encode and generate for this pair. Raises UnknownLanguageError for a code the model lacks."""
        result = Translation(tokenizer=self.tokenizer, options={})
        if self.kind == "marian":
            if src_lang is not None:
                raise UnknownLanguageError(
                    f"src_lang={src_lang!r}: Marian models take the source language they were trained on; leave it out")
            if tgt_lang is not None:
                result.prefix = self._token(tgt_lang, "tgt_lang") + " "
            return result
        if src_lang is not None:
            result.tokenizer = self._with_source(self._token(src_lang, "src_lang"))
        if tgt_lang is not None:
            token_id = self.tokenizer.token_to_id(self._token(tgt_lang, "tgt_lang"))
            key = "decoder_start_token_id" if self.kind == "decoder_start" else "forced_bos_token_id"
            result.options[key] = token_id
        return result
