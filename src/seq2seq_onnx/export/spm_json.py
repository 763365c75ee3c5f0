"""tokenizer.json for the sentencepiece translation and summarization families, faithful to their Python tokenizers.

Transformers.js reads only `tokenizer.json` and `tokenizer_config.json`, so those files must give the ids the model
was trained with. transformers 5 cannot always write them:

- mBART, mBART-50, NLLB, Pegasus: transformers 5 writes a `tokenizer.json`, but its text pipeline (a `Precompiled`
  normalizer, ``Replace(" {2,}", " ")``, `Metaspace`) differs from sentencepiece: a chunk that ends in whitespace
  gets an extra "▁" id, and whitespace at the start is not removed. mBART cc25's class also drops the normalizer (no
  NFKC at all). `patch_spm_json` replaces that pipeline with one that follows the model's own `NormalizerSpec`
  (`spm_pipeline`). The id layouts it writes are checked against the fairseq dictionary the model was trained with
  (`family_layout`) and repaired where they differ: NLLB (transformers 5 puts `<mask>` before the 202 language codes,
  fairseq after them) and Pegasus (`<mask_1>` / `<mask_2>` swapped).
- Marian and M2M100: transformers 5 has only Python tokenizers (sentencepiece + vocab.json), no tokenizer.json.
  `marian_tokenizer_json` and `m2m100_tokenizer_json` build one: a model over vocab.json's ids in which only the
  source sentencepiece model's pieces are reachable, runs of unknown characters looked up as transformers does,
  M2M100's language codes as special tokens, Marian's leading `>>xx<<` tag cut off as MarianTokenizer does (which
  Transformers.js never does by itself).
- For every family the normalizer runs NFKC before the charsmap and settles three characters around it
  (`_charsmap_step`), so that tokenizers (Rust, which mishandles decomposed text in its Precompiled) and
  Transformers.js (whose Precompiled ignores the charsmap) both normalize as sentencepiece does.

`tokenizer_json_for(folder, kind)` is the entry point: the export's tokenizer.json and tokenizer_config.json for a
checkpoint folder, checked against sentencepiece on probe texts before it is returned.

Sources of the rules, named where they are applied:
  [spm]   sentencepiece's `NormalizerSpec` and encoder (normalizer.cc, unigram/bpe models, `kUnkPenalty` = 10),
  [tf4]   transformers 4.x slow tokenizers (MBartTokenizer, MBart50Tokenizer, NllbTokenizer, PegasusTokenizer): the
          fairseq id mapping, templates and special tokens,
  [tf5]   transformers 5.24's MarianTokenizer, M2M100Tokenizer and the TokenizersBackend classes,
  [tjs]   Transformers.js 4.3.1 (@huggingface/transformers + @huggingface/tokenizers).
No torch here.
"""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NoTokenizerError, TokenizerMismatchError

# sentencepiece ModelProto.SentencePiece.Type
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

KINDS = ("mbart", "mbart50", "nllb", "pegasus", "m2m100", "marian")

# Language codes, copied from transformers 5.24 (FAIRSEQ_LANGUAGE_CODES of tokenization_mbart, _mbart50, _nllb,
# _m2m_100). Their order is the order of the ids: code i has id (sentencepiece size + 1 + i) in mBART / mBART-50 /
# NLLB, and (len(vocab.json) + i) in M2M100.
MBART_LANGUAGE_CODES = (
    "ar_AR", "cs_CZ", "de_DE", "en_XX", "es_XX", "et_EE", "fi_FI", "fr_XX", "gu_IN", "hi_IN", "it_IT", "ja_XX",
    "kk_KZ", "ko_KR", "lt_LT", "lv_LV", "my_MM", "ne_NP", "nl_XX", "ro_RO", "ru_RU", "si_LK", "tr_TR", "vi_VN",
    "zh_CN",
)
MBART50_LANGUAGE_CODES = (
    "ar_AR", "cs_CZ", "de_DE", "en_XX", "es_XX", "et_EE", "fi_FI", "fr_XX", "gu_IN", "hi_IN", "it_IT", "ja_XX",
    "kk_KZ", "ko_KR", "lt_LT", "lv_LV", "my_MM", "ne_NP", "nl_XX", "ro_RO", "ru_RU", "si_LK", "tr_TR", "vi_VN",
    "zh_CN", "af_ZA", "az_AZ", "bn_IN", "fa_IR", "he_IL", "hr_HR", "id_ID", "ka_GE", "km_KH", "mk_MK", "ml_IN",
    "mn_MN", "mr_IN", "pl_PL", "ps_AF", "pt_XX", "sv_SE", "sw_KE", "ta_IN", "te_IN", "th_TH", "tl_XX", "uk_UA",
    "ur_PK", "xh_ZA", "gl_ES", "sl_SI",
)
NLLB_LANGUAGE_CODES = (
    "ace_Arab", "ace_Latn", "acm_Arab", "acq_Arab", "aeb_Arab", "afr_Latn", "ajp_Arab", "aka_Latn", "amh_Ethi",
    "apc_Arab", "arb_Arab", "ars_Arab", "ary_Arab", "arz_Arab", "asm_Beng", "ast_Latn", "awa_Deva", "ayr_Latn",
    "azb_Arab", "azj_Latn", "bak_Cyrl", "bam_Latn", "ban_Latn", "bel_Cyrl", "bem_Latn", "ben_Beng", "bho_Deva",
    "bjn_Arab", "bjn_Latn", "bod_Tibt", "bos_Latn", "bug_Latn", "bul_Cyrl", "cat_Latn", "ceb_Latn", "ces_Latn",
    "cjk_Latn", "ckb_Arab", "crh_Latn", "cym_Latn", "dan_Latn", "deu_Latn", "dik_Latn", "dyu_Latn", "dzo_Tibt",
    "ell_Grek", "eng_Latn", "epo_Latn", "est_Latn", "eus_Latn", "ewe_Latn", "fao_Latn", "pes_Arab", "fij_Latn",
    "fin_Latn", "fon_Latn", "fra_Latn", "fur_Latn", "fuv_Latn", "gla_Latn", "gle_Latn", "glg_Latn", "grn_Latn",
    "guj_Gujr", "hat_Latn", "hau_Latn", "heb_Hebr", "hin_Deva", "hne_Deva", "hrv_Latn", "hun_Latn", "hye_Armn",
    "ibo_Latn", "ilo_Latn", "ind_Latn", "isl_Latn", "ita_Latn", "jav_Latn", "jpn_Jpan", "kab_Latn", "kac_Latn",
    "kam_Latn", "kan_Knda", "kas_Arab", "kas_Deva", "kat_Geor", "knc_Arab", "knc_Latn", "kaz_Cyrl", "kbp_Latn",
    "kea_Latn", "khm_Khmr", "kik_Latn", "kin_Latn", "kir_Cyrl", "kmb_Latn", "kon_Latn", "kor_Hang", "kmr_Latn",
    "lao_Laoo", "lvs_Latn", "lij_Latn", "lim_Latn", "lin_Latn", "lit_Latn", "lmo_Latn", "ltg_Latn", "ltz_Latn",
    "lua_Latn", "lug_Latn", "luo_Latn", "lus_Latn", "mag_Deva", "mai_Deva", "mal_Mlym", "mar_Deva", "min_Latn",
    "mkd_Cyrl", "plt_Latn", "mlt_Latn", "mni_Beng", "khk_Cyrl", "mos_Latn", "mri_Latn", "zsm_Latn", "mya_Mymr",
    "nld_Latn", "nno_Latn", "nob_Latn", "npi_Deva", "nso_Latn", "nus_Latn", "nya_Latn", "oci_Latn", "gaz_Latn",
    "ory_Orya", "pag_Latn", "pan_Guru", "pap_Latn", "pol_Latn", "por_Latn", "prs_Arab", "pbt_Arab", "quy_Latn",
    "ron_Latn", "run_Latn", "rus_Cyrl", "sag_Latn", "san_Deva", "sat_Beng", "scn_Latn", "shn_Mymr", "sin_Sinh",
    "slk_Latn", "slv_Latn", "smo_Latn", "sna_Latn", "snd_Arab", "som_Latn", "sot_Latn", "spa_Latn", "als_Latn",
    "srd_Latn", "srp_Cyrl", "ssw_Latn", "sun_Latn", "swe_Latn", "swh_Latn", "szl_Latn", "tam_Taml", "tat_Cyrl",
    "tel_Telu", "tgk_Cyrl", "tgl_Latn", "tha_Thai", "tir_Ethi", "taq_Latn", "taq_Tfng", "tpi_Latn", "tsn_Latn",
    "tso_Latn", "tuk_Latn", "tum_Latn", "tur_Latn", "twi_Latn", "tzm_Tfng", "uig_Arab", "ukr_Cyrl", "umb_Latn",
    "urd_Arab", "uzn_Latn", "vec_Latn", "vie_Latn", "war_Latn", "wol_Latn", "xho_Latn", "ydd_Hebr", "yor_Latn",
    "yue_Hant", "zho_Hans", "zho_Hant", "zul_Latn",
)
M2M100_LANGUAGE_CODES = (
    "af", "am", "ar", "ast", "az", "ba", "be", "bg", "bn", "br", "bs", "ca", "ceb", "cs", "cy", "da", "de", "el",
    "en", "es", "et", "fa", "ff", "fi", "fr", "fy", "ga", "gd", "gl", "gu", "ha", "he", "hi", "hr", "ht", "hu", "hy",
    "id", "ig", "ilo", "is", "it", "ja", "jv", "ka", "kk", "km", "kn", "ko", "lb", "lg", "ln", "lo", "lt", "lv", "mg",
    "mk", "ml", "mn", "mr", "ms", "my", "ne", "nl", "no", "ns", "oc", "or", "pa", "pl", "ps", "pt", "ro", "ru", "sd",
    "si", "sk", "sl", "so", "sq", "sr", "ss", "su", "sv", "sw", "ta", "th", "tl", "tn", "tr", "uk", "ur", "uz", "vi",
    "wo", "xh", "yi", "yo", "zh", "zu",
)
WMT21_LANGUAGE_CODES = ("en", "ha", "is", "ja", "cs", "ru", "zh", "de")
M2M100_CODE_SETS = {"m2m100": M2M100_LANGUAGE_CODES, "wmt21": WMT21_LANGUAGE_CODES}

# A vocabulary entry that no text can reach: Metaspace turns every space into "▁", so a model piece starting with
# a space never matches. Used for ids that must exist (and decode) but that the Python tokenizer never produces.
UNREACHABLE = " "
# Zero-width markers around runs of characters the source sentencepiece model has no piece for (Marian, M2M100).
# The nmt_nfkc charsmap (sentencepiece, tokenizers' Precompiled) and Transformers.js's Precompiled both delete
# U+0001 and U+0002, so they never survive from the input text into the markers' place.
RUN_START, RUN_END = "\u0001", "\u0002"
# The charsmap step. tokenizers' Precompiled (Rust) follows the charsmap but mishandles combining sequences
# (decomposed text: "e" + U+0301, "て" + U+3099 come out unlike sentencepiece); Transformers.js's Precompiled ignores
# the charsmap and applies fixed nmt_nfkc-like rules (NFKC except U+FF5E, control characters removed, a fixed set of
# spaces) [tjs]. Both agree with sentencepiece when the text is put in NFKC first (sentencepiece's nmt_nfkc is NFKC
# plus those rules, so NFKC before it changes nothing there), U+FF5E being kept out of it as sentencepiece keeps it.
# Normalizing every code point both ways leaves three that Transformers.js's rules map unlike the charsmap:
# U+200D zero-width joiner (inside emoji sequences; kept by sentencepiece, a space in Transformers.js), U+061C
# arabic letter mark (a space / kept) and U+0344 (decomposed without composing with the letter before it). Each is
# swapped for a noncharacter (which NFKC and the charsmap keep, and no text contains) across the step and then
# replaced by what the charsmap makes of it.
NFKC_RULES = ("nmt_nfkc", "nfkc", "nmt_nfkc_cf", "nfkc_cf")
TJS_PRECOMPILED_FIXES = ("\u200d", "\u061c", "\u0344")
STANDINS = ("\ufdd0", "\ufdd3", "\ufdd4")
FULLWIDTH_TILDE, TILDE_STANDIN = "\uff5e", "\ufdd5"
# Marian's leading target-language tag (see marian_tokenizer_json): noncharacters the normalizer puts in its place.
TAG_MARK, UNKNOWN_TAG = "\ufdd1", "\ufdd2"


def load_spm(path) -> "sentencepiece_model_pb2.ModelProto":  # noqa: F821
    """The parsed sentencepiece model at `path` (a ModelProto). Raises NoTokenizerError when missing or unreadable."""
    from google.protobuf.message import DecodeError
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(Path(path).read_bytes())
    except (OSError, DecodeError) as err:
        raise NoTokenizerError(f"cannot read the sentencepiece model {path}: {err}") from None
    if not proto.pieces:
        raise NoTokenizerError(f"{path} is not a sentencepiece model (no pieces)")
    return proto


def _as_proto(spm):
    return spm if hasattr(spm, "normalizer_spec") else load_spm(spm)


def _charsmap_step(normalizer_spec) -> list[dict]:
    """The normalizers for the charsmap: Precompiled, with NFKC before it for NFKC-based rules, and the characters
    Transformers.js maps otherwise settled around it (see TJS_PRECOMPILED_FIXES). The charsmap's own results are
    computed with tokenizers' Precompiled on each character alone."""
    from tokenizers import normalizers

    charsmap = normalizer_spec.precompiled_charsmap
    precompiled = normalizers.Precompiled(charsmap)

    def replace(old, new):
        return {"type": "Replace", "pattern": {"String": old}, "content": new}

    before, after = [], []
    for char, standin in zip(TJS_PRECOMPILED_FIXES, STANDINS):
        if precompiled.normalize_str(standin) == standin:
            before.append(replace(char, standin))
            after.append(replace(standin, precompiled.normalize_str(char)))
    if normalizer_spec.name in NFKC_RULES:
        tilde = precompiled.normalize_str(FULLWIDTH_TILDE)
        before += [replace(FULLWIDTH_TILDE, TILDE_STANDIN), {"type": "NFKC"}]
        after.insert(0, replace(TILDE_STANDIN, tilde))
    return before + [{"type": "Precompiled", "precompiled_charsmap": base64.b64encode(charsmap).decode()}] + after


def spm_pipeline(spm, unreachable_prefix: bool = False) -> dict:
    """{"normalizer", "pre_tokenizer", "decoder"} for tokenizer.json that split text as sentencepiece does.

    `spm`: a sentencepiece ModelProto or the path of a .model/.spm file. The steps follow its NormalizerSpec
    [spm] and are applied by tokenizers / Transformers.js to each chunk between added tokens, as transformers' slow
    tokenizers called sentencepiece on each such chunk [tf4]:
      1. the precompiled charsmap (nmt_nfkc: NFKC, control characters removed, tabs/newlines/odd spaces -> " "),
         after NFKC, with the characters Transformers.js's Precompiled maps otherwise settled around it
         (`_charsmap_step`);
      2. `remove_extra_whitespaces`: leading and trailing spaces dropped, runs of spaces collapsed (U+0020 only,
         after the charsmap);
      3. `add_dummy_prefix`: "▁" is prepended even to a text that starts with a literal "▁" (Metaspace alone would
         not), hence the extra "▁" a Replace puts there;
      4. Metaspace: spaces to "▁", split at them when the model was trained with `split_by_whitespace`.
    `unreachable_prefix=True` adds a decoder step that removes UNREACHABLE from pieces (constructions that keep
    vocabulary entries no text may reach). Raises NoTokenizerError for sentencepiece options tokenizer.json cannot
    express (no whitespace escaping, whitespace as suffix, byte fallback).
    """
    proto = _as_proto(spm)
    ns, ts = proto.normalizer_spec, proto.trainer_spec
    if not ns.escape_whitespaces or ts.treat_whitespace_as_suffix or ts.byte_fallback:
        raise NoTokenizerError(
            "this sentencepiece model uses options a tokenizer.json cannot express "
            f"(escape_whitespaces={ns.escape_whitespaces}, treat_whitespace_as_suffix={ts.treat_whitespace_as_suffix}, "
            f"byte_fallback={ts.byte_fallback})")
    norms = []
    if ns.precompiled_charsmap:
        norms += _charsmap_step(ns)
    if ns.remove_extra_whitespaces:
        norms.append({"type": "Replace", "pattern": {"Regex": r"\A +| +\z"}, "content": ""})
        norms.append({"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "})
    if ns.add_dummy_prefix:
        norms.append({"type": "Replace", "pattern": {"Regex": r"\A▁"}, "content": "▁▁"})
    split = ts.split_by_whitespace if ts.HasField("split_by_whitespace") else True
    meta = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always" if ns.add_dummy_prefix else "never",
            "split": bool(split)}
    decoder = dict(meta)
    if unreachable_prefix:
        decoder = {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": UNREACHABLE}, "content": ""}, dict(meta)]}
    return {"normalizer": {"type": "Sequence", "normalizers": norms} if norms else None,
            "pre_tokenizer": meta, "decoder": decoder}


def patch_spm_json(tokenizer_json: dict, spm) -> dict:
    """A copy of a tokenizer.json transformers 5 wrote for mBART / mBART-50 / NLLB / Pegasus, with the text pipeline
    (normalizer, pre-tokenizer, decoder) replaced by `spm_pipeline(spm)`; vocabulary, merges, added tokens and
    post-processor are kept (`apply_layout` checks and repairs those)."""
    patched = copy.deepcopy(tokenizer_json)
    patched.update(spm_pipeline(spm))
    return patched


# --- id layouts ----------------------------------------------------------------------------------------------------

@dataclass
class Layout:
    """The ids a family's model was trained with: every reachable sentencepiece piece, the special tokens (language
    codes included) and the template around a text. `prefix`/`suffix` name special tokens."""

    pieces: dict[str, int]
    unk_id: int
    specials: dict[str, int]
    prefix: list[str]
    suffix: list[str]
    lstrip: set[str] = field(default_factory=set)
    lang_codes: dict[str, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return max([*self.pieces.values(), *self.specials.values(), self.unk_id]) + 1


FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")


def family_layout(spm, kind: str, src_lang: str | None = None, codes=None, mask_token: str = "<mask>",
                  offset: int = 103, mask_token_sent: str | None = "<mask_1>",
                  pegasus_mask: str = "<mask_2>", legacy_behaviour: bool = False) -> Layout:
    """The id layout of `kind` ("mbart", "mbart50", "nllb", "pegasus") for sentencepiece model `spm` [tf4].

    mBART, mBART-50, NLLB (fairseq dictionary, `fairseq_offset` 1): <s> 0, <pad> 1, </s> 2, <unk> 3; sentencepiece
    piece i -> i + 1 (its unknown piece -> 3); language code j -> size(spm) + 1 + j; <mask> last (lstrip). Templates:
    mBART cc25 and NLLB with `legacy_behaviour` `X </s> src_lang`, mBART-50 and NLLB `src_lang X </s>`.
    Pegasus (`offset` 103): <pad> 0, </s> 1, <mask_1> 2, <mask_2> 3, <unk_2>..<unk_102> 4..104; sentencepiece piece
    i -> i + 103 (its <unk>, id 2 in Pegasus models, -> 105); template `X </s>`.
    """
    proto = _as_proto(spm)
    n = len(proto.pieces)
    reachable = [(i, p.piece) for i, p in enumerate(proto.pieces) if p.type in (NORMAL, USER_DEFINED)]
    spm_unk = next((i for i, p in enumerate(proto.pieces) if p.type == UNKNOWN), 0)
    if kind == "pegasus":
        specials = {"<pad>": 0, "</s>": 1}
        extra = []
        if mask_token_sent is not None:
            specials.update({mask_token_sent: 2, pegasus_mask: 3})
            extra = [f"<unk_{i}>" for i in range(2, offset)]
        for j, token in enumerate(extra):
            specials[token] = 4 + j
        unk_piece = proto.pieces[spm_unk].piece
        specials[unk_piece] = spm_unk + offset
        pieces = {p: i + offset for i, p in reachable}
        return Layout(pieces, spm_unk + offset, specials, [], ["</s>"])
    if kind not in ("mbart", "mbart50", "nllb"):
        raise ValueError(f"no fairseq layout for {kind!r}")
    codes = list(codes if codes is not None else
                 {"mbart": MBART_LANGUAGE_CODES, "mbart50": MBART50_LANGUAGE_CODES, "nllb": NLLB_LANGUAGE_CODES}[kind])
    specials = {t: i for i, t in enumerate(FAIRSEQ_SPECIALS)}
    lang_codes = {c: n + 1 + j for j, c in enumerate(codes)}
    specials.update(lang_codes)
    specials[mask_token] = n + 1 + len(codes)
    src = src_lang or {"nllb": "eng_Latn"}.get(kind, "en_XX")
    if src not in lang_codes:
        raise NoTokenizerError(f"src_lang {src!r} is not one of the {kind} language codes")
    suffix_code = kind == "mbart" or (kind == "nllb" and legacy_behaviour)
    prefix, suffix = ([], ["</s>", src]) if suffix_code else ([src], ["</s>"])
    pieces = {p: i + 1 for i, p in reachable if i != spm_unk}
    return Layout(pieces, 3, specials, prefix, suffix, {mask_token}, lang_codes)


def added_token(id_: int, content: str, special: bool = True, lstrip: bool = False) -> dict:
    """An `added_tokens` entry of tokenizer.json, matched in the raw text (normalized=False) as transformers' slow
    tokenizers split their added tokens out of the text before sentencepiece [tf4]."""
    return {"id": id_, "content": content, "single_word": False, "lstrip": lstrip, "rstrip": False,
            "normalized": False, "special": special}


def template(prefix: list[str], suffix: list[str], ids: dict[str, int]) -> dict:
    """A TemplateProcessing post-processor `prefix $A suffix` (pair: `prefix $A $B suffix`, as transformers builds
    pairs for these families). Transformers.js's `_build_translation_inputs` rewrites the first language code of
    `single` to `src_lang`, so the code must be a SpecialToken item of a top-level TemplateProcessing [tjs]."""
    def items(tokens):
        return [{"SpecialToken": {"id": t, "type_id": 0}} for t in tokens]

    def seq(name):
        return {"Sequence": {"id": name, "type_id": 0}}

    return {"type": "TemplateProcessing",
            "single": items(prefix) + [seq("A")] + items(suffix),
            "pair": items(prefix) + [seq("A"), seq("B")] + items(suffix),
            "special_tokens": {t: {"id": t, "ids": [ids[t]], "tokens": [t]} for t in dict.fromkeys(prefix + suffix)}}


def apply_layout(tokenizer_json: dict, layout: Layout) -> tuple[dict, list[str]]:
    """`tokenizer_json` with the special tokens, unknown id and post-processor of `layout`; returns it and a list of
    the repairs made (empty when transformers had written the layout already).

    Every sentencepiece piece must already have its layout id in the model's vocabulary (transformers' converters
    keep sentencepiece's order); if one does not, the file cannot be repaired here and TokenizerMismatchError says
    which. Special tokens are re-placed: inside the model's vocabulary by renaming the entry at their id (Pegasus'
    masks), beyond it as added tokens (NLLB's codes and <mask>).
    """
    tj = copy.deepcopy(tokenizer_json)
    model = tj["model"]
    fixes: list[str] = []
    if model["type"] == "Unigram":
        entries = model["vocab"]
        names = [e[0] for e in entries]
    elif model["type"] == "BPE":
        names = [None] * (max(model["vocab"].values()) + 1)
        for piece, i in model["vocab"].items():
            names[i] = piece
    else:
        raise TokenizerMismatchError(f"unexpected tokenizer.json model {model['type']} for a sentencepiece family")
    wrong = [(p, i, names[i] if i < len(names) else None) for p, i in layout.pieces.items()
             if i >= len(names) or names[i] != p]
    if wrong:
        shown = ", ".join(f"{p!r} should be {i} (found {n!r})" for p, i, n in wrong[:5])
        raise TokenizerMismatchError(f"tokenizer.json does not give the model's ids to {len(wrong)} sentencepiece "
                                     f"pieces: {shown}")
    old_ids = {t["content"]: t["id"] for t in tj.get("added_tokens", [])}
    for token, i in layout.specials.items():
        if old_ids.get(token, i) != i or (i < len(names) and names[i] != token):
            fixes.append(f"{token} {old_ids.get(token, '?')} -> {i}")
        if i < len(names) and names[i] != token:
            names[i] = token
    if model["type"] == "Unigram":
        model["vocab"] = [[name, entry[1]] for name, entry in zip(names, entries)]
        model["unk_id"] = layout.unk_id
    else:
        model["vocab"] = {name: i for i, name in enumerate(names) if name is not None}
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[:5]
        raise TokenizerMismatchError(f"tokenizer.json has duplicate vocabulary entries after repair: {dup}")
    special_ids = set(layout.specials.values())
    kept = [t for t in tj.get("added_tokens", []) if t["content"] not in layout.specials and t["id"] not in special_ids
            and t["id"] >= layout.size]
    tj["added_tokens"] = sorted(
        [added_token(i, t, lstrip=t in layout.lstrip) for t, i in layout.specials.items()] + kept,
        key=lambda t: t["id"])
    tj["post_processor"] = template(layout.prefix, layout.suffix, layout.specials)
    return tj, fixes


# --- constructions over vocab.json (Marian, M2M100) -----------------------------------------------------------------

def _read_vocab_json(path) -> tuple[dict[str, int], list[str]]:
    try:
        vocab = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise NoTokenizerError(f"cannot read {path}: {err}") from None
    if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
        raise NoTokenizerError(f"{path} is not a vocab.json (token -> id)")
    by_id = sorted((i, p) for p, i in vocab.items())
    if [i for i, _ in by_id] != list(range(len(by_id))):
        raise NoTokenizerError(f"the ids of {path} are not 0..{len(by_id) - 1} without gaps")
    return vocab, [p for _, p in by_id]


def _char_class(chars) -> str:
    return "".join("\\" + c if c in "\\]^-[" else c for c in sorted(chars))


def _unigram_over_vocab(pieces: list[str], proto, specials: set[str], reachable_extra: set[str] = frozenset(),
                        wrap_unknown_runs: bool = True, never_in_runs: set[str] = frozenset()):
    """A Unigram vocabulary in vocab.json's order (ids = vocab.json ids) that segments like sentencepiece `proto`.

    Pieces of the sentencepiece model keep its score [spm]; entries it cannot produce (target-side pieces, made-up
    words) are made unreachable but kept, so their ids decode. The score 0.0 of those never lowers the minimum
    score, from which both sentencepiece and tokenizers derive the unknown-character penalty (min - 10).

    sentencepiece turns a run of characters it has no piece for into one piece (the run's text), and MarianTokenizer
    / M2M100Tokenizer look that text up in vocab.json [tf5], where it may exist (a target-side piece, an entry of
    fairseq's dictionary). With `wrap_unknown_runs` the normalizer marks every such run (RUN_START/RUN_END, zero
    width) and vocab.json entries made only of such characters take the marked form: they match a whole run and
    nothing else, and an unmatched run is fused into one <unk> as sentencepiece does. Characters in `never_in_runs`
    (markers of other rules) are never taken for part of a run.
    Returns (vocab entries, extra normalizers, extra decoders, info).
    """
    scores = {p.piece: p.score for p in proto.pieces if p.type in (NORMAL, USER_DEFINED)}
    known = {p for p in scores if len(p) == 1} | {" ", "\u2581"} | set(never_in_runs)
    runs = {p for p in pieces if p not in specials and p not in reachable_extra and p not in scores
            and all(c not in known for c in p)}
    vocab, unreachable = [], []
    for piece in pieces:
        if piece in specials or piece in reachable_extra:
            vocab.append([piece, 0.0])
        elif piece in scores:
            vocab.append([piece, scores[piece]])
        elif wrap_unknown_runs and piece in runs:
            vocab.append([RUN_START + piece + RUN_END, 0.0])
        else:
            vocab.append([UNREACHABLE + piece, 0.0])
            unreachable.append(piece)
    norms, decoders = [], []
    if wrap_unknown_runs and runs:
        unknown = "[^" + _char_class(known | {RUN_START, RUN_END}) + "]"
        norms = [{"type": "Replace", "pattern": {"Regex": f"(?<!{unknown})(?={unknown})"}, "content": RUN_START},
                 {"type": "Replace", "pattern": {"Regex": f"(?<={unknown})(?!{unknown})"}, "content": RUN_END}]
        decoders = [{"type": "Replace", "pattern": {"String": m}, "content": ""} for m in (RUN_START, RUN_END)]
    info = {"unreachable": unreachable, "unknown_run_entries": sorted(runs) if wrap_unknown_runs else [],
            "missing_from_vocab_json": sorted(set(scores) - set(pieces))}
    return vocab, norms, decoders, info


def _assemble(pipeline: dict, extra_norms: list, extra_decoders: list) -> dict:
    normalizer = pipeline["normalizer"] or {"type": "Sequence", "normalizers": []}
    normalizer["normalizers"] += extra_norms
    decoder = pipeline["decoder"]
    if extra_decoders:
        decoder = {"type": "Sequence", "decoders": extra_decoders + (
            decoder["decoders"] if decoder["type"] == "Sequence" else [decoder])}
    return {"normalizer": normalizer, "pre_tokenizer": pipeline["pre_tokenizer"], "decoder": decoder}


def _regex_literal(text: str) -> str:
    """`text` as a regex matching itself, in both Oniguruma (tokenizers) and JavaScript with the u flag
    (Transformers.js), which rejects escapes of characters that are not syntax characters."""
    return "".join("\\" + c if c in "^$\\.*+?()[]{}|/" else c for c in text)


def marian_tokenizer_json(source_spm, target_spm, vocab_json, *, separate_vocabs: bool = False,
                          target_vocab_json=None, vocab_size: int | None = None,
                          decoder_vocab_size: int | None = None, wrap_unknown_runs: bool = True) -> tuple[dict, dict]:
    """tokenizer.json for a Marian (opus-mt) checkpoint: (tokenizer.json dict, info).

    Inputs: the checkpoint's `source.spm`, `target.spm` and shared `vocab.json`; `separate_vocabs`,
    `target_vocab_json` (tokenizer_config.json) and `vocab_size` / `decoder_vocab_size` (config.json) only to refuse
    what one tokenizer.json cannot represent.

    The rules of transformers 5's MarianTokenizer [tf5]: each chunk of text between special tokens is cut by
    `source.spm` and each piece looked up in vocab.json (a piece missing there -> <unk>); `</s>` is appended;
    target ids (what the model generates) are decoded through the same vocab.json. Here: a Unigram model over
    vocab.json ids in which only the source model's pieces are reachable, with its scores (`_unigram_over_vocab`);
    target-only pieces are kept unreachable so that they decode. The target.spm is only checked to be readable.

    Target-language tags: MarianTokenizer cuts a chunk's leading `>>xx<<` (up to the first "<<") off before
    sentencepiece and looks it up in vocab.json (unknown -> <unk>); a tag elsewhere, or after a space, is plain
    text. Transformers.js 4.3.1 never does this (its `_encode_text` override is not called) [tjs], so the
    tokenizer.json does it in its normalizer, whose first rules see the raw chunk as MarianTokenizer does: a known
    leading tag gets TAG_MARK before it and a space after it (its vocabulary entry is named with the mark, so no
    other text reaches it), an unknown one becomes UNKNOWN_TAG and a space (a character without a piece: <unk>).
    Because the tag takes no dummy-prefix "▁" while the text after it does, the "▁" sentencepiece prepends is
    added by a normalizer rule that skips the marks, and Metaspace prepends nothing.

    info: {"lang_codes": {tag: id}, "unreachable": [vocab.json entries no source text reaches],
    "missing_from_vocab_json": [source pieces that become <unk>], "unknown_run_entries": [...], "vocab_size"}.
    Raises NoTokenizerError for separate source/target vocabularies (`separate_vocabs`, a target_vocab.json, or
    `decoder_vocab_size` != `vocab_size`): Transformers.js decodes the generated ids with the one tokenizer.json it
    encodes with, so target ids with their own vocabulary cannot be represented.
    """
    if separate_vocabs or target_vocab_json is not None or (
            decoder_vocab_size is not None and vocab_size is not None and decoder_vocab_size != vocab_size):
        raise NoTokenizerError(
            "this Marian checkpoint has separate source and target vocabularies (separate_vocabs / target_vocab.json / "
            f"decoder_vocab_size {decoder_vocab_size} != vocab_size {vocab_size}); Transformers.js decodes generated "
            "ids with the same tokenizer.json that encodes the input, so one tokenizer.json cannot represent it")
    src = _as_proto(source_spm)
    if target_spm is not None:
        _as_proto(target_spm)  # readable, as MarianTokenizer requires it
    vocab, pieces = _read_vocab_json(vocab_json)
    for token in ("</s>", "<unk>", "<pad>"):
        if token not in vocab:
            raise NoTokenizerError(f"{vocab_json} has no {token}, which MarianTokenizer needs")
    if vocab_size is not None and len(vocab) > vocab_size:
        raise TokenizerMismatchError(f"vocab.json has {len(vocab)} entries but the model only {vocab_size} ids")
    specials = {"</s>", "<unk>", "<pad>"}
    codes = [p for p in pieces if p.startswith(">>") and p.endswith("<<") and len(p) > 4 and "<" not in p[2:-2]]
    tag_chars = {TAG_MARK, UNKNOWN_TAG, "<", ">"} | {c for code in codes for c in code}
    uni, norms, decoders, info = _unigram_over_vocab(pieces, src, specials, set(codes), wrap_unknown_runs, tag_chars)
    for entry in uni:
        if entry[0] in codes:
            entry[0] = TAG_MARK + entry[0]
    pipeline = spm_pipeline(src, unreachable_prefix=True)
    dummy = pipeline["pre_tokenizer"]["prepend_scheme"] == "always"
    gap = " " if dummy else ""  # the text after a tag gets its own dummy prefix, as sentencepiece gives it one
    tag_rules = []
    if codes:
        tags = [_regex_literal(c) for c in codes]
        # the mark goes in by replacing the first ">": tokenizers panics in a later NFKC after a zero-width insertion
        # at the start of the text
        names = "|".join(t[2:-2] for t in tags)
        tag_rules.append({"type": "Replace", "pattern": {"Regex": rf"\A>(?=>(?:{names})<<)"},
                          "content": TAG_MARK + ">"})
        if gap:  # top-level alternatives of fixed length: the lookbehind both regex engines accept
            behind = "|".join(TAG_MARK + t for t in tags)
            tag_rules.append({"type": "Replace", "pattern": {"Regex": f"(?<={behind})"}, "content": gap})
    tag_rules.append({"type": "Replace", "pattern": {"Regex": r"\A>>[\s\S]*?<<"}, "content": UNKNOWN_TAG + gap})
    parts = _assemble(pipeline, norms, [{"type": "Replace", "pattern": {"String": TAG_MARK}, "content": ""}] + decoders)
    rules = parts["normalizer"]["normalizers"]
    if dummy:  # the dummy prefix as a rule that skips the marks (this also covers a text starting with "▁")
        at = next(i for i, r in enumerate(rules) if r.get("pattern") == {"Regex": r"\A▁"})
        rules[at] = {"type": "Replace", "pattern": {"Regex": f"\\A(?=[^{TAG_MARK}{UNKNOWN_TAG}])"}, "content": "\u2581"}
    rules[:0] = tag_rules
    pre_tokenizer = dict(parts["pre_tokenizer"], prepend_scheme="never")
    added = [added_token(vocab[t], t) for t in ("</s>", "<unk>", "<pad>")]
    tj = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": sorted(added, key=lambda t: t["id"]),
          "normalizer": parts["normalizer"], "pre_tokenizer": pre_tokenizer,
          "post_processor": template([], ["</s>"], vocab), "decoder": parts["decoder"],
          "model": {"type": "Unigram", "unk_id": vocab["<unk>"], "vocab": uni, "byte_fallback": False}}
    info.update({"lang_codes": {c: vocab[c] for c in codes}, "vocab_size": len(vocab)})
    return tj, info


def madeup_words(n: int) -> list[str]:
    """M2M100's placeholder words after the language codes (fairseq `madeupwordNNNN`) [tf5]."""
    return [f"madeupword{i:04d}" for i in range(n)]


def m2m100_tokenizer_json(spm, vocab_json, codes=M2M100_LANGUAGE_CODES, src_lang: str = "en",
                          num_madeup_words: int = 8, wrap_unknown_runs: bool = True) -> tuple[dict, dict]:
    """tokenizer.json for an M2M100 checkpoint: (tokenizer.json dict, info).

    Inputs: `sentencepiece.bpe.model`, `vocab.json` (fairseq's dictionary), the language codes (transformers'
    `language_codes` "m2m100" or "wmt21"), `src_lang` and `num_madeup_words` from tokenizer_config.json.

    The rules of transformers 5's M2M100Tokenizer [tf5]: sentencepiece pieces looked up in vocab.json (missing ->
    <unk>); `__xx__` code i has id len(vocab.json) + i; input `__src__ X </s>`; the model's vocabulary continues
    with `num_madeup_words` placeholders (kept here as unreachable entries that decode to the text "<unk>", as
    transformers decodes them even with skip_special_tokens). A Unigram sentencepiece model becomes a Unigram over
    vocab.json ids (`_unigram_over_vocab`); a BPE one a BPE model whose merges follow sentencepiece's piece ranks (a
    piece is merged in the order of its id, its score) [spm]. Codes are special added tokens and the template a
    top-level TemplateProcessing, which Transformers.js's `_build_translation_inputs` needs [tjs].

    info: {"lang_codes": {"__xx__": id}, "unreachable", "missing_from_vocab_json", "unknown_run_entries",
    "vocab_size"}. Raises NoTokenizerError for unreadable files or an unknown `src_lang`.
    """
    proto = _as_proto(spm)
    vocab, pieces = _read_vocab_json(vocab_json)
    specials = {"<s>", "<pad>", "</s>", "<unk>"}
    for token in specials:
        if token not in vocab:
            raise NoTokenizerError(f"{vocab_json} has no {token}, which M2M100Tokenizer needs")
    n = len(pieces)
    lang_tokens = [f"__{c}__" for c in codes]
    src_token = f"__{src_lang}__"
    if src_token not in lang_tokens:
        raise NoTokenizerError(f"src_lang {src_lang!r} is not one of the language codes")
    madeup = madeup_words(num_madeup_words)
    ids = dict(vocab)
    ids.update({t: n + i for i, t in enumerate(lang_tokens)})
    model_type = proto.trainer_spec.model_type
    norms, decoders = [], []
    if model_type == 1:  # Unigram
        uni, norms, decoders, info = _unigram_over_vocab(pieces, proto, specials, wrap_unknown_runs=wrap_unknown_runs)
        uni += [[t, 0.0] for t in lang_tokens] + [[UNREACHABLE + w, 0.0] for w in madeup]
        model = {"type": "Unigram", "unk_id": vocab["<unk>"], "vocab": uni, "byte_fallback": False}
    elif model_type == 2:  # BPE
        rank = {p.piece: i for i, p in enumerate(proto.pieces) if p.type in (NORMAL, USER_DEFINED)}
        usable = {p for p in rank if p in vocab}
        merges = sorted((rank[p], p[:k], p[k:]) for p in usable for k in range(1, len(p))
                        if p[:k] in usable and p[k:] in usable)
        bpe_vocab = dict(vocab)
        bpe_vocab.update({t: n + i for i, t in enumerate(lang_tokens)})
        bpe_vocab.update({UNREACHABLE + w: n + len(lang_tokens) + i for i, w in enumerate(madeup)})
        model = {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                 "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": False, "ignore_merges": False,
                 "vocab": bpe_vocab, "merges": [[a, b] for _, a, b in merges]}
        info = {"unreachable": [p for p in pieces if p not in rank and p not in specials],
                "unknown_run_entries": [], "missing_from_vocab_json": sorted(set(rank) - set(pieces))}
    else:
        raise NoTokenizerError(f"sentencepiece model type {model_type} is not supported for M2M100 (Unigram or BPE)")
    # transformers decodes a made-up word's id as the text "<unk>" (its id is not special, so it is not skipped)
    decoders = [{"type": "Replace", "pattern": {"Regex": UNREACHABLE + "madeupword[0-9]+"}, "content": "<unk>"},
                *decoders]
    parts = _assemble(spm_pipeline(proto, unreachable_prefix=True), norms, decoders)
    added = [added_token(vocab[t], t) for t in ("<s>", "<pad>", "</s>", "<unk>")]
    added += [added_token(n + i, t) for i, t in enumerate(lang_tokens)]
    tj = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": sorted(added, key=lambda t: t["id"]),
          **{k: parts[k] for k in ("normalizer", "pre_tokenizer")},
          "post_processor": template([src_token], ["</s>"], ids), "decoder": parts["decoder"], "model": model}
    info.update({"lang_codes": {t: ids[t] for t in lang_tokens}, "vocab_size": n + len(lang_tokens) + len(madeup)})
    return tj, info


# --- checks ----------------------------------------------------------------------------------------------------------

# Plain texts (no special tokens typed in them) on which every tokenizer.json made here is compared with
# sentencepiece + the family's id mapping before it is returned: whitespace at both ends and inside, tabs and
# newlines, accents (composed and decomposed), compatibility characters, CJK, emoji with joiners.
CHECK_TEXTS = (
    "the house is wonderful.",
    " leading space",
    "trailing spaces   ",
    "  multiple   internal    spaces  ",
    "\ttab\tseparated\t",
    "new\nline\r\nand\n\nmore\n",
    "café cafe\u0301 naïve cœur garçon Straße Grüße",
    "ﬁne ＡＢＣ１２３ ① ½ ｶﾀｶﾅ a\u00a0b a\u3000b",
    "literal ▁ block and ▁▁ twice",
    "东京是日本的首都。你好世界！これはテストです",
    "emoji 😀👍🏽 👨\u200d👩\u200d👧 ❤️",
    "Numbers 12345 and 3.14, symbols #@%&*; quotes 'single' \"double\"",
    "",
    "   ",
)


def check_against_sentencepiece(tokenizer_json: dict, spm_path, mapping: dict[str, int], unk_id: int,
                                prefix_ids: list[int], suffix_ids: list[int], skip_pieces=(),
                                texts=CHECK_TEXTS) -> list[str]:
    """Texts on which `tokenizer_json` (in tokenizers) and sentencepiece + `mapping` (piece -> id, anything else
    `unk_id`, wrapped in the template's ids) disagree, one line each. Texts whose sentencepiece pieces include one
    of `skip_pieces` (pieces the vocabulary lacks: known not to be representable) are not compared."""
    import sentencepiece
    from tokenizers import Tokenizer

    sp = sentencepiece.SentencePieceProcessor(model_file=str(spm_path))
    tok = Tokenizer.from_str(json.dumps(tokenizer_json))
    skip = set(skip_pieces)
    problems = []
    for text in texts:
        pieces = sp.encode(text, out_type=str)
        want = prefix_ids + [mapping.get(p, unk_id) for p in pieces] + suffix_ids
        if skip.intersection(pieces):
            continue
        got = tok.encode(text).ids
        if got != want:
            problems.append(f"{text!r}: sentencepiece {want} vs tokenizer.json {got}")
    return problems


# --- the export's files for a checkpoint folder ----------------------------------------------------------------------

_SPM_FILE = {"mbart": "sentencepiece.bpe.model", "mbart50": "sentencepiece.bpe.model",
             "nllb": "sentencepiece.bpe.model", "pegasus": "spiece.model", "m2m100": "sentencepiece.bpe.model",
             "marian": "source.spm"}
_CLASS = {"mbart": "MBartTokenizer", "mbart50": "MBart50Tokenizer", "nllb": "NllbTokenizer",
          "pegasus": "PegasusTokenizer", "m2m100": "M2M100Tokenizer", "marian": "MarianTokenizer"}
# Keys transformers 5 writes into tokenizer_config.json that describe the save, not the tokenizer.
_SAVE_KEYS = ("is_local", "local_files_only", "backend", "unk_id", "name_or_path", "tokenizer_file",
              "special_tokens_map_file", "added_tokens_decoder", "auto_map")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise NoTokenizerError(f"cannot read {path}: {err}") from None


def _quiet_transformers() -> None:
    """transformers' warnings about the files it falls back from are ours to word (as export/tokenizer.py does)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


def _token(value):
    return value.get("content") if isinstance(value, dict) else value


def _fairseq_family(folder: Path, kind: str, tok_config: dict) -> tuple[dict, dict, dict]:
    import tempfile

    import transformers

    spm_path = folder / _SPM_FILE[kind]
    proto = load_spm(spm_path)
    codes = {"mbart": MBART_LANGUAGE_CODES, "mbart50": MBART50_LANGUAGE_CODES, "nllb": NLLB_LANGUAGE_CODES}.get(kind)
    try:  # the family's class, which AutoTokenizer would pick too (AutoTokenizer itself imports torch)
        tok = getattr(transformers, _CLASS[kind]).from_pretrained(str(folder))
        with tempfile.TemporaryDirectory() as tmp:
            tok.save_pretrained(tmp)
            written = json.loads((Path(tmp) / "tokenizer.json").read_text(encoding="utf-8"))
            config = json.loads((Path(tmp) / "tokenizer_config.json").read_text(encoding="utf-8"))
    except Exception as err:  # corrupt files: tokenizers, sentencepiece and transformers raise all kinds
        first = (str(err).strip().splitlines() or [""])[0]
        raise NoTokenizerError(f"transformers' {_CLASS[kind]} cannot load the tokenizer of {folder} "
                               f"({type(err).__name__}: {first})") from None
    if kind == "pegasus":
        layout = family_layout(proto, kind, offset=int(tok_config.get("offset", 103)),
                               mask_token_sent=_token(tok_config.get("mask_token_sent", "<mask_1>")),
                               pegasus_mask=_token(tok_config.get("mask_token", "<mask_2>")))
    else:
        src = getattr(tok, "src_lang", None) or tok_config.get("src_lang")
        layout = family_layout(proto, kind, src_lang=src, codes=codes,
                               mask_token=_token(tok_config.get("mask_token", "<mask>")),
                               legacy_behaviour=bool(tok_config.get("legacy_behaviour", False)))
    tj, fixes = apply_layout(patch_spm_json(written, proto), layout)
    problems = check_against_sentencepiece(tj, spm_path, layout.pieces, layout.unk_id,
                                           [layout.specials[t] for t in layout.prefix],
                                           [layout.specials[t] for t in layout.suffix])
    if problems:
        model = {1: "Unigram", 2: "BPE"}.get(proto.trainer_spec.model_type, "other")
        hint = "" if written["model"]["type"] == model else (
            f" (transformers' {_CLASS[kind]} builds a {written['model']['type']} model; this sentencepiece model is "
            f"{model})")
        raise TokenizerMismatchError(f"the {kind} tokenizer.json does not tokenize like {spm_path.name}{hint}:\n  "
                                     + "\n  ".join(problems[:5]))
    for key in _SAVE_KEYS:
        config.pop(key, None)
    config["tokenizer_class"] = _CLASS[kind]
    if kind != "pegasus":
        config["src_lang"] = layout.prefix[0] if layout.prefix else layout.suffix[-1]
        config["tgt_lang"] = getattr(tok, "tgt_lang", None) or tok_config.get("tgt_lang")
    config["clean_up_tokenization_spaces"] = bool(getattr(tok, "clean_up_tokenization_spaces", False))
    info = {"kind": kind, "method": "transformers 5 tokenizer.json, text pipeline replaced" +
            (", special-token ids repaired" if fixes else ""),
            "repaired": fixes, "lang_codes": dict(layout.lang_codes), "vocab_size": layout.size,
            "unreachable": [], "missing_from_vocab_json": []}
    return tj, config, info


def _python_tokenizer(cls_name: str, folder: Path):
    import warnings

    import transformers

    try:
        with warnings.catch_warnings():  # MarianTokenizer asks for sacremoses, which its tokenization never uses
            warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")
            return getattr(transformers, cls_name).from_pretrained(str(folder))
    except Exception as err:  # corrupt files: sentencepiece and transformers raise all kinds
        first = (str(err).strip().splitlines() or [""])[0]
        raise NoTokenizerError(f"transformers' {cls_name} cannot load {folder} ({type(err).__name__}: {first})") \
            from None


def _marian(folder: Path, tok_config: dict, model_config: dict) -> tuple[dict, dict, dict]:
    for name in ("source.spm", "target.spm", "vocab.json"):
        if not (folder / name).is_file():
            raise NoTokenizerError(f"{folder} has no {name}, which a Marian tokenizer needs")
    target_vocab = folder / "target_vocab.json"
    tj, info = marian_tokenizer_json(
        folder / "source.spm", folder / "target.spm", folder / "vocab.json",
        separate_vocabs=bool(tok_config.get("separate_vocabs", False)),
        target_vocab_json=target_vocab if target_vocab.is_file() and tok_config.get("separate_vocabs") else None,
        vocab_size=model_config.get("vocab_size"), decoder_vocab_size=model_config.get("decoder_vocab_size"))
    if model_config.get("share_encoder_decoder_embeddings") is False:
        raise NoTokenizerError("this Marian model does not share its encoder and decoder embeddings "
                               "(share_encoder_decoder_embeddings false): separate vocabularies cannot be represented "
                               "by one tokenizer.json")
    tok = _python_tokenizer("MarianTokenizer", folder)
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    problems = check_against_sentencepiece(tj, folder / "source.spm", vocab, vocab["<unk>"], [], [vocab["</s>"]],
                                           skip_pieces=info["missing_from_vocab_json"])
    if problems:
        raise TokenizerMismatchError("the Marian tokenizer.json does not tokenize like source.spm + vocab.json:\n  "
                                     + "\n  ".join(problems[:5]))
    config = {"tokenizer_class": "MarianTokenizer", "source_lang": tok.source_lang, "target_lang": tok.target_lang,
              "separate_vocabs": False, "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
              "model_max_length": int(tok.model_max_length),
              "clean_up_tokenization_spaces": bool(tok.clean_up_tokenization_spaces)}
    info.update({"kind": "marian", "method": "constructed from source.spm + vocab.json", "repaired": []})
    return tj, config, info


def _m2m100(folder: Path, tok_config: dict) -> tuple[dict, dict, dict]:
    for name in ("sentencepiece.bpe.model", "vocab.json"):
        if not (folder / name).is_file():
            raise NoTokenizerError(f"{folder} has no {name}, which an M2M100 tokenizer needs")
    code_set = tok_config.get("language_codes", "m2m100")
    if code_set not in M2M100_CODE_SETS:
        raise NoTokenizerError(f"unknown M2M100 language_codes {code_set!r} (m2m100 or wmt21)")
    codes = M2M100_CODE_SETS[code_set]
    src_lang = tok_config.get("src_lang") or "en"
    madeup = int(tok_config.get("num_madeup_words", 8))
    tj, info = m2m100_tokenizer_json(folder / "sentencepiece.bpe.model", folder / "vocab.json", codes, src_lang, madeup)
    tok = _python_tokenizer("M2M100Tokenizer", folder)
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    problems = check_against_sentencepiece(tj, folder / "sentencepiece.bpe.model", vocab, vocab["<unk>"],
                                           [info["lang_codes"][f"__{src_lang}__"]], [vocab["</s>"]],
                                           skip_pieces=info["missing_from_vocab_json"])
    if problems:
        raise TokenizerMismatchError("the M2M100 tokenizer.json does not tokenize like sentencepiece + vocab.json:\n  "
                                     + "\n  ".join(problems[:5]))
    config = {"tokenizer_class": "M2M100Tokenizer", "src_lang": src_lang, "tgt_lang": tok_config.get("tgt_lang"),
              "language_codes": code_set, "num_madeup_words": madeup, "bos_token": "<s>", "eos_token": "</s>",
              "sep_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
              "model_max_length": int(tok.model_max_length),
              "clean_up_tokenization_spaces": bool(tok.clean_up_tokenization_spaces)}
    info.update({"kind": "m2m100", "method": "constructed from sentencepiece.bpe.model + vocab.json", "repaired": []})
    return tj, config, info


def tokenizer_json_for(source_folder, kind: str) -> tuple[dict, dict, dict]:
    """The export's (tokenizer.json, tokenizer_config.json, info) for a checkpoint folder of family `kind`.

    kind: "mbart" (cc25 and its fine-tunes), "mbart50", "nllb", "pegasus": transformers 5's class for the family
    (the one AutoTokenizer picks; called directly, as AutoTokenizer imports torch) loads the folder, from its
    tokenizer.json if it ships one, else from the sentencepiece model; the tokenizer.json it saves is patched with
    `spm_pipeline`, and its special-token ids checked and repaired with `family_layout` / `apply_layout`.
    "m2m100", "marian": built with `m2m100_tokenizer_json` / `marian_tokenizer_json`. The folder holds the files
    the hub checkpoint ships (sentencepiece model(s), vocab.json, tokenizer_config.json; config.json for Marian's
    vocabulary sizes).

    tokenizer_config.json states `tokenizer_class` (Transformers.js picks its tokenizer class by it: translation
    inputs and language codes for mBART / M2M100 / NLLB), the special tokens, `src_lang`/`tgt_lang`
    (`source_lang`/`target_lang` for Marian) and `clean_up_tokenization_spaces` explicitly, with the value
    transformers 5 uses for the class (Transformers.js cleans up when the key is absent).

    Before returning, the tokenizer.json is compared with sentencepiece + the family's id mapping on CHECK_TEXTS
    (TokenizerMismatchError when they differ). info: {"kind", "method", "repaired": [special-token ids moved],
    "lang_codes": {token: id}, "vocab_size": ids the tokenizer uses, "unreachable": [vocab.json entries no input
    text reaches], "missing_from_vocab_json": [sentencepiece pieces that become <unk>, as in transformers]}.
    Raises NoTokenizerError when files are missing or unreadable or the tokenizer cannot be represented (Marian
    with separate vocabularies).

    Python readers of the export should load it with `PreTrainedTokenizerFast` (or `tokenizers`): transformers 5's
    family classes rebuild the text pipeline from their own code (the whitespace fault again) or, for Marian and
    M2M100, need the sentencepiece files.
    """
    folder = Path(source_folder)
    if kind not in KINDS:
        raise ValueError(f"unknown tokenizer family {kind!r}: one of {', '.join(KINDS)}")
    if not (folder / _SPM_FILE[kind]).is_file():
        raise NoTokenizerError(f"{folder} has no {_SPM_FILE[kind]}: no {kind} tokenizer to convert")
    _quiet_transformers()
    tok_config = _read_json(folder / "tokenizer_config.json")
    if kind == "marian":
        return _marian(folder, tok_config, _read_json(folder / "config.json"))
    if kind == "m2m100":
        return _m2m100(folder, tok_config)
    return _fairseq_family(folder, kind, tok_config)
