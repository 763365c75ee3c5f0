"""Tokenizer files: `tokenizer.json` always written, and proven to tokenize like sentencepiece.

Transformers.js reads only `tokenizer.json` and `tokenizer_config.json`. Many T5-family
checkpoints ship only `spiece.model`, and a careless conversion to `tokenizer.json` drops the
leading `▁` piece, so ids differ from the model's training. We load with transformers'
AutoTokenizer (which converts sentencepiece correctly on transformers 5), save, and then check
the written `tokenizer.json` against the sentencepiece model itself on probe texts.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path

from ..errors import NoTokenizerError, Seq2SeqOnnxError, TokenizerMismatchError

PROBE_TEXTS = (
    "translate English to German: The house is wonderful.",
    "Hello world!",
    " leading space and  double  spaces",
    "Numbers 12345 and 3.14, symbols #@%&*; quotes 'single' \"double\"",
    "Ünïcödé àccents, ß, and 東京",
    "summarize: studies have shown that owning a dog is good for you",
)

# Keys transformers 5 writes into tokenizer_config.json that describe the save, not the tokenizer.
_LOCAL_KEYS = ("is_local", "local_files_only")

# Files that hold a tokenizer's vocabulary, in the formats transformers' tokenizers load. A
# checkpoint with none of them (config and weights only) gets an empty tokenizer from
# AutoTokenizer (special tokens only), which would "convert" and then generate empty text.
VOCABULARY_FILES = ("tokenizer.json", "spiece.model", "sentencepiece.bpe.model", "source.spm", "vocab.json",
                    "vocab.txt", "tokenizer.model")


def require_vocabulary(source: str, local_files_only: bool = False) -> None:
    """Raise NoTokenizerError when `source` has none of VOCABULARY_FILES."""
    if any(find_file(source, name, local_files_only) is not None for name in VOCABULARY_FILES):
        return
    raise NoTokenizerError(
        f"no tokenizer in {source}: it has none of {', '.join(VOCABULARY_FILES)}, so the export could not turn "
        "text into ids. Copy the tokenizer files of the checkpoint it was fine-tuned from (for T5: spiece.model, "
        "tokenizer.json, tokenizer_config.json, special_tokens_map.json) into it, then convert again"
    )


def find_file(source: str, name: str, local_files_only: bool = False) -> Path | None:
    """A file of a local folder or hub checkpoint, or None when the checkpoint has no such file."""
    from transformers.utils import cached_file

    path = cached_file(
        source,
        name,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
        local_files_only=local_files_only,
    )
    return Path(path) if path else None


def sentencepiece_mismatches(tokenizer_json: Path, spiece_model: Path) -> list[str]:
    """Probe texts on which tokenizer.json and sentencepiece (+ eos) give different ids."""
    import sentencepiece as spm
    from tokenizers import Tokenizer

    sp = spm.SentencePieceProcessor(model_file=str(spiece_model))
    fast = Tokenizer.from_file(str(tokenizer_json))
    problems = []
    for text in PROBE_TEXTS:
        expected = sp.encode(text) + ([sp.eos_id()] if sp.eos_id() >= 0 else [])
        got = fast.encode(text).ids
        if got != expected:
            problems.append(f"{text!r}: sentencepiece {expected} vs tokenizer.json {got}")
    return problems


def _save(tokenizer, out_dir: Path) -> None:
    tokenizer.save_pretrained(out_dir)
    cfg_path = out_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    for key in _LOCAL_KEYS:
        cfg.pop(key, None)
    # Always explicit: transformers 5 removes the space before . , ? ! (and in 's, n't) only when
    # this is true, Transformers.js 4.3.1 when it is true *or absent*; the same ids must give the
    # same text in both.
    cfg["clean_up_tokenization_spaces"] = bool(getattr(tokenizer, "clean_up_tokenization_spaces", False))
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    special = {k: v for k, v in tokenizer.special_tokens_map.items() if v}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2, ensure_ascii=False) + "\n")


def _load(source: str, sentencepiece_class: str | None, prefer_sentencepiece: bool = False, **load_kwargs):
    import transformers
    from transformers import AutoTokenizer

    fallback = getattr(transformers, sentencepiece_class) if sentencepiece_class else None
    if prefer_sentencepiece and fallback is not None:
        return fallback.from_pretrained(source)
    try:
        with warnings.catch_warnings():  # MarianTokenizer asks for sacremoses, which its tokenization never calls
            warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")
            return AutoTokenizer.from_pretrained(source, **load_kwargs)
    except (ValueError, OSError, TypeError) as err:
        local_only = load_kwargs.get("local_files_only", False)
        if fallback is None or find_file(source, "spiece.model", local_only) is None:
            raise NoTokenizerError(f"cannot load the tokenizer of {source}: {err}") from None
        return fallback.from_pretrained(source, local_files_only=local_only)


def write_tokenizer_files(
    source: str,
    out_dir: Path,
    sentencepiece_class: str | None = None,
    trust_remote_code: bool = False,
    local_files_only: bool = False,
    check_spiece: bool = True,
) -> list[str]:
    """Write tokenizer.json, tokenizer_config.json, special_tokens_map.json (and spiece.model).

    `sentencepiece_class` names the transformers class that can convert the family's
    spiece.model when AutoTokenizer cannot. `check_spiece`: the family's token ids are
    spiece.model's own ids (T5), so tokenizer.json is checked against sentencepiece itself;
    families that shift them (Pegasus) or map them through a vocabulary are not. Returns notes for the user (e.g. that the source's own tokenizer.json had to be rebuilt).
    Raises NoTokenizerError (exit 2) when the source's tokenizer files are missing or unreadable,
    TokenizerMismatchError (exit 1) if no tokenizer.json we can make agrees with spiece.model.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # its warnings about files it falls back from are ours to word
    notes: list[str] = []
    try:
        tokenizer = _load(source, sentencepiece_class, trust_remote_code=trust_remote_code, local_files_only=local_files_only)
        _save(tokenizer, out_dir)
    except Seq2SeqOnnxError:
        raise
    except Exception as err:  # corrupt files: tokenizers, sentencepiece and transformers raise all kinds
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise NoTokenizerError(
            f"cannot read the tokenizer files of {source} ({type(err).__name__}: {first}); check tokenizer.json, "
            "spiece.model and tokenizer_config.json (a corrupt or truncated download?)"
        ) from None
    if not (out_dir / "tokenizer.json").exists():
        raise TokenizerMismatchError(
            f"the tokenizer of {source} ({type(tokenizer).__name__}) cannot be saved as tokenizer.json, "
            "which Transformers.js needs"
        )
    spiece = find_file(source, "spiece.model", local_files_only)
    if spiece is not None and not check_spiece:
        shutil.copyfile(spiece, out_dir / "spiece.model")  # kept for other tools; its ids are not the model's
        return notes
    if spiece is None:
        return notes
    shutil.copyfile(spiece, out_dir / "spiece.model")
    problems = sentencepiece_mismatches(out_dir / "tokenizer.json", spiece)
    if problems and find_file(source, "tokenizer.json", local_files_only) is not None:
        # The source's own tokenizer.json is wrong (a known failure of older conversions):
        # rebuild it from spiece.model alone.
        notes.append("the source's tokenizer.json disagrees with its spiece.model; rebuilt it from spiece.model")
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copyfile(spiece, Path(tmp) / "spiece.model")
            shutil.copyfile(out_dir / "tokenizer_config.json", Path(tmp) / "tokenizer_config.json")
            _save(_load(tmp, sentencepiece_class, prefer_sentencepiece=True), out_dir)
        problems = sentencepiece_mismatches(out_dir / "tokenizer.json", spiece)
    if problems:
        raise TokenizerMismatchError(
            "tokenizer.json does not tokenize like spiece.model, so the exported model would get wrong ids:\n  "
            + "\n  ".join(problems)
        )
    return notes


# The files a family's tokenizer is built from (export/spm_json.py), kept in the export so that
# transformers can reload the tokenizer from them too.
_FAMILY_FILES = ("tokenizer_config.json", "special_tokens_map.json", "config.json", "sentencepiece.bpe.model",
                 "spiece.model", "source.spm", "target.spm", "vocab.json")


def family_tokenizer_kind(family_kind: str, source: str, local_files_only: bool = False) -> str:
    """The tokenizer construction for a checkpoint: mBART cc25 or mBART-50, M2M100 or NLLB, by tokenizer_config.json."""
    path = find_file(source, "tokenizer_config.json", local_files_only)
    cls = ""
    if path is not None:
        try:
            cls = str(json.loads(path.read_text()).get("tokenizer_class") or "").removesuffix("Fast")
        except (OSError, ValueError):
            cls = ""
    if family_kind == "mbart" and cls == "MBart50Tokenizer":
        return "mbart50"
    if family_kind == "m2m100" and cls == "NllbTokenizer":
        return "nllb"
    return family_kind


def write_family_tokenizer_files(source: str, out_dir: Path, family_kind: str, local_files_only: bool = False) -> list[str]:
    """tokenizer.json + tokenizer_config.json built by the family's construction (see export/spm_json.py).

    For mBART, NLLB and Pegasus transformers 5 writes a tokenizer.json whose whitespace handling
    differs from sentencepiece; Marian and M2M100 have no tokenizer.json in transformers 5 at all.
    Returns notes for the user. Raises NoTokenizerError / TokenizerMismatchError (see `tokenizer_json_for`).
    """
    from .spm_json import tokenizer_json_for

    kind = family_tokenizer_kind(family_kind, source, local_files_only)
    found = {name: find_file(source, name, local_files_only) for name in _FAMILY_FILES}
    present = {name: path for name, path in found.items() if path is not None}
    if not present:
        raise NoTokenizerError(f"no tokenizer in {source}: none of {', '.join(_FAMILY_FILES)}")
    folder = next(iter(present.values())).parent  # a local folder, or the hub snapshot the files came into
    tokenizer_json, tokenizer_config, info = tokenizer_json_for(folder, kind)
    (out_dir / "tokenizer.json").write_text(json.dumps(tokenizer_json, ensure_ascii=False, indent=1) + "\n")
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False) + "\n")
    for name in ("sentencepiece.bpe.model", "spiece.model", "source.spm", "target.spm", "vocab.json",
                 "special_tokens_map.json"):
        if name in present:
            shutil.copyfile(present[name], out_dir / name)
    notes = []
    if info.get("missing_from_vocab_json"):
        missing = info["missing_from_vocab_json"]
        notes.append(f"{len(missing)} sentencepiece pieces are not in vocab.json and become <unk>, as in transformers "
                     f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''})")
    if info.get("repaired"):
        notes.append(f"tokenizer.json: special-token ids repaired to the checkpoint's layout ({len(info['repaired'])})")
    return notes
