"""The sentencepiece families' tokenizer.json (mBART, mBART-50, NLLB, M2M100, Marian, Pegasus) gives the ids of the
family's Python tokenizer, in tokenizers (Python) and in Transformers.js (Node), decodes generated ids to the same
text, and lets Transformers.js build translation inputs (src_lang in the template, tgt_lang as forced BOS).

Each family's checkpoint files are made once (`build_tokenizer_files`), converted with `tokenizer_json_for`, and
compared on hard probe texts; Transformers.js runs once per family (all probes, decodes and translations batched).

References:
- Marian, M2M100: transformers 5.24's own MarianTokenizer / M2M100Tokenizer (sentencepiece + vocab.json).
- mBART, mBART-50, NLLB, Pegasus: transformers 5's tokenizer.json is itself wrong for these (whitespace handling,
  NLLB's and Pegasus' special-token ids), so the reference is written out below: what transformers 4.57's slow
  (sentencepiece) tokenizers did (`SlowReference`).

Every probe gives the reference's ids in both runtimes; no encoding difference is listed as expected. The one known
residual is in decoding: whitespace at the very ends of the text when generated ids start or end with a lone "▁"
next to a skipped special token (`test_known_difference_whitespace_at_the_ends_of_decoded_text`). Limits of the
constructions that no probe can reach (documented in spm_json): a text containing one of the noncharacters
U+FDD0-U+FDD5 the normalizer uses as stand-ins; Marian source models without a piece for "<" or ">".
"""

import json
import os
import re
import shutil
import warnings

import pytest

from seq2seq_onnx.errors import NoTokenizerError, TokenizerMismatchError
from seq2seq_onnx.export import spm_json
from seq2seq_onnx.testing import build_tokenizer_files

# Hard texts: whitespace at both ends, runs of it, tabs, newlines, accents composed and decomposed, compatibility
# characters, CJK, emoji with joiners, unknown characters, and every family's special tokens typed into the text.
PROBES = [
    "the house is wonderful.",
    "Hello world!",
    " leading space",
    "trailing space ",
    "trailing spaces   ",
    "  multiple   internal    spaces  ",
    "\ttab\tseparated\t",
    "new\nline",
    "\n\nleading newlines",
    "trailing newline\n",
    "windows\r\nline",
    "café cafe\u0301 naïve cœur garçon Straße Grüße",
    "ﬁne ligature ＡＢＣ１２３ full width ① ™ ½ Ⅻ ｶﾀｶﾅ",
    "a\u00a0b nbsp, a\u200bb zwsp, a\u3000b ideographic space",
    "wave 〜 and fullwidth tilde ～ here",
    "literal ▁ lower one eighth block",
    "▁starts with the block",
    "东京是日本的首都。你好世界！",
    "これはテストです",
    "emoji 😀👍🏽 👨‍👩‍👧 ❤️ 🇫🇷",
    "rare ꙮ ☃ 𝔘𝔫𝔦 chars",
    "arabic letter mark a\u061cb",
    "dialytika tonos x\u0344y and zero-width joiner a\u200db",
    "decomposed: cafe\u0301, \u3066\u3099, \u30ab\u3099, ｶﾞ, n\u0303o",
    "en_XX hello",
    "hello en_XX",
    "ro_RO",
    "__en__ hello __fr__",
    "eng_Latn hello fra_Latn",
    ">>fra<< the house",
    ">>fra<<the house",
    " >>fra<< the house",
    "the >>fra<< house",
    ">>xyz<< unknown code",
    "</s>",
    "hello</s>world",
    "hello </s> world",
    "<s> start <pad> pad <unk> unk",
    "<mask> masked and <mask_1> <mask_2> <unk_2>",
    "masked <mask> here and <unk_102>",
    "control\u0001char\u007fdel",
    "numbers 12345 and 3.14, symbols #@%&*; quotes 'single' \"double\"",
    "",
    "   ",
    "X",
    "Hello Müller, 你好世界 你 好 x你好y Grüße ÄÖÜ",
    "HELLO WORLD THE HOUSE",
    "the 東京 house and 你好",
    "Ünïcödé ß üß",
]

# What the model generates, decoded back: target-language text (ids made from it below).
TARGET_TEXTS = [
    "la maison est merveilleuse, très bientôt.",
    "das Haus ist wunderbar. Grüße, Mädchen!",
    "你好世界。これはテストです",
    "naïve cœur  été   déjà",
    "l'ami d'un garçon (42%)",
]

KINDS = {  # build_tokenizer_files kind -> tokenizer_json_for family
    "mbart50": "mbart50", "mbart": "mbart", "nllb": "nllb", "pegasus": "pegasus",
    "m2m100": "m2m100", "m2m100-bpe": "m2m100", "marian": "marian", "marian-multi": "marian",
}
TARGET_LANG = {"mbart50": "ro_RO", "mbart": "ro_RO", "nllb": "fra_Latn", "m2m100": "fr", "m2m100-bpe": "fr"}


class SlowReference:
    """transformers 4.57's slow MBartTokenizer / MBart50Tokenizer / NllbTokenizer / PegasusTokenizer, written out.

    Encoding (PreTrainedTokenizer.tokenize): the text is split at the added tokens (longest match first); a token
    with lstrip (<mask>) also removes the whitespace before it; every other chunk is cut by sentencepiece
    (`encode(chunk)`), and the pieces mapped to the model's ids; then the template is added.

    Id mapping (the fairseq dictionary the models were trained with):
    - mBART, mBART-50, NLLB: <s> 0, <pad> 1, </s> 2, <unk> 3; sentencepiece piece i -> i + 1 (fairseq_offset; its
      unknown piece, id 0 -> 3); language code j -> len(spm) + 1 + j; <mask> = len(spm) + 1 + len(codes), last.
      Template: mBART cc25 `X </s> src_lang`; mBART-50 and NLLB `src_lang X </s>`.
    - Pegasus (offset 103): <pad> 0, </s> 1, <mask_1> 2, <mask_2> 3, <unk_2>..<unk_102> 4..104; sentencepiece
      piece i -> i + 103 (its <unk>, spm id 2 -> 105). Template `X </s>`.
    Decoding with skip_special_tokens: special ids dropped, the rest mapped back to sentencepiece pieces, joined with
    "▁" as spaces, and the result stripped (`convert_tokens_to_string`).
    """

    def __init__(self, spm_path, kind):
        import sentencepiece

        self.spm_path = spm_path
        self.sp = sentencepiece.SentencePieceProcessor(model_file=str(spm_path))
        n = self.sp.get_piece_size()
        self.kind = kind
        if kind == "pegasus":
            self.specials = {"<pad>": 0, "</s>": 1, "<mask_1>": 2, "<mask_2>": 3,
                             **{f"<unk_{k}>": k + 2 for k in range(2, 103)}, "<unk>": self.sp.unk_id() + 103}
            self.offset, self.lstrip, self.codes = 103, set(), {}
        else:
            codes = {"mbart": spm_json.MBART_LANGUAGE_CODES, "mbart50": spm_json.MBART50_LANGUAGE_CODES,
                     "nllb": spm_json.NLLB_LANGUAGE_CODES}[kind]
            self.codes = {c: n + 1 + j for j, c in enumerate(codes)}
            self.specials = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, **self.codes, "<mask>": n + 1 + len(codes)}
            self.offset, self.lstrip = 1, {"<mask>"}
        self.split = re.compile("(" + "|".join(map(re.escape, sorted(self.specials, key=len, reverse=True))) + ")")

    def piece_id(self, spm_id: int) -> int:
        return self.specials["<unk>"] if spm_id == self.sp.unk_id() else spm_id + self.offset

    def encode(self, text: str, src_lang: str | None = None) -> list[int]:
        chunks = self.split.split(text)
        for i, chunk in enumerate(chunks):
            if chunk in self.lstrip and i > 0:
                chunks[i - 1] = chunks[i - 1].rstrip()
        ids = []
        for chunk in chunks:
            if chunk in self.specials:
                ids.append(self.specials[chunk])
            elif chunk:
                ids += [self.piece_id(i) for i in self.sp.encode(chunk)]
        if self.kind == "pegasus":
            return ids + [1]
        src = self.codes[src_lang or {"nllb": "eng_Latn"}.get(self.kind, "en_XX")]
        return ids + [2, src] if self.kind == "mbart" else [src] + ids + [2]

    def target_ids(self, text: str, tgt_lang: str | None) -> list[int]:
        """What the model generates for `text`: decoder start, forced language code, pieces, </s>."""
        ids = [self.piece_id(i) for i in self.sp.encode(text)]
        if self.kind == "pegasus":
            return [0] + ids + [1]
        return [2, self.codes[tgt_lang]] + ids + [2]

    def decode(self, ids: list[int]) -> str:
        special = set(self.specials.values())
        pieces = [self.sp.id_to_piece(i - self.offset) for i in ids if i not in special]
        return "".join(pieces).replace("\u2581", " ").strip()


def _python_reference(kind, folder):
    """(encode(text) -> ids, decode(ids) -> text, target_ids(text, tgt_lang) -> ids, tokenizer) of the reference."""
    import sentencepiece
    from transformers import M2M100Tokenizer, MarianTokenizer

    if kind.startswith("marian"):
        with warnings.catch_warnings():  # "Recommended: pip install sacremoses", which tokenizing never uses
            warnings.simplefilter("ignore", UserWarning)
            tok = MarianTokenizer.from_pretrained(str(folder))
        vocab = json.loads((folder / "vocab.json").read_text())
        target = sentencepiece.SentencePieceProcessor(model_file=str(folder / "target.spm"))

        def marian_target(text, tgt_lang=None):  # decoder starts from <pad>; target.spm pieces through vocab.json
            return [vocab["<pad>"]] + [vocab.get(p, vocab["<unk>"]) for p in target.encode(text, out_type=str)] + [0]

        return lambda t: tok(t).input_ids, lambda ids: tok.decode(ids, skip_special_tokens=True), marian_target, tok
    if kind.startswith("m2m100"):
        tok = M2M100Tokenizer.from_pretrained(str(folder))

        def m2m_target(text, tgt_lang):  # decoder starts from </s>, then the forced target code
            tok.tgt_lang = tgt_lang
            return [2] + tok(text_target=text).input_ids

        return lambda t: tok(t).input_ids, lambda ids: tok.decode(ids, skip_special_tokens=True), m2m_target, tok
    ref = SlowReference(folder / ("spiece.model" if kind == "pegasus" else "sentencepiece.bpe.model"), kind)
    return ref.encode, ref.decode, ref.target_ids, ref


def _odd_targets(kind, targets, facts, info):
    """Generated ids beyond plain text: an <unk> inside, a language tag first (Marian), a made-up word (M2M100)."""
    unk = {"pegasus": 105}.get(kind, 1 if kind.startswith("marian") else 3)
    odd = [targets[1][:3] + [unk] + targets[1][3:]]
    if facts["lang_codes"] and kind.startswith("marian"):
        odd.append(targets[0][:1] + [facts["lang_codes"][">>fra<<"]] + targets[0][1:])
    if kind.startswith("m2m100"):
        odd.append(targets[0][:-1] + [info["vocab_size"] - 8, targets[0][-1]])  # madeupword0000
    return odd


def build_family(base, kind) -> dict:
    """The checkpoint's tokenizer files (base/checkpoint), the export's (base/export), the reference's ids and texts."""
    from tokenizers import Tokenizer

    facts = build_tokenizer_files(base / "checkpoint", kind)
    tj, config, info = spm_json.tokenizer_json_for(base / "checkpoint", KINDS[kind])
    export = base / "export"
    export.mkdir()
    (export / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False))
    (export / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False))
    encode, decode, target_ids, ref = _python_reference(kind, base / "checkpoint")
    targets = [target_ids(t, TARGET_LANG.get(kind)) for t in TARGET_TEXTS]
    targets += _odd_targets(kind, targets, facts, info)
    rust = Tokenizer.from_str(json.dumps(tj))
    # the known residual (test_known_difference_...): "... bientôt." "▁" <unk> </s>
    edge = targets[0][:-1] + [rust.token_to_id("\u2581"), rust.token_to_id("<unk>"), targets[0][-1]]
    return {
        "checkpoint": base / "checkpoint", "export": export, "facts": facts, "tokenizer_json": tj, "config": config,
        "info": info, "ref": ref, "rust": rust,
        "ref_ids": [encode(t) for t in PROBES], "rust_ids": [rust.encode(t).ids for t in PROBES],
        "targets": targets, "ref_texts": [decode(ids) for ids in targets],
        "rust_texts": [rust.decode(ids, skip_special_tokens=True) for ids in targets],
        "edge": edge, "edge_ref_text": decode(edge), "edge_rust_text": rust.decode(edge, skip_special_tokens=True),
    }


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    """family(kind) -> build_family's dict, built once per module."""
    cache = {}

    def make(kind):
        if kind not in cache:
            cache[kind] = build_family(tmp_path_factory.mktemp(kind), kind)
        return cache[kind]

    return make


def _node_or_skip():
    from seq2seq_onnx.verify.transformersjs import TransformersJsUnavailable, ensure_installed

    if shutil.which("node") is None:
        if os.environ.get("CI"):
            pytest.fail("Node.js is required in CI for the Transformers.js tokenizer tests", pytrace=False)
        pytest.skip("Node.js is not installed: the Transformers.js half of the tokenizer tests cannot run")
    try:
        ensure_installed()
    except TransformersJsUnavailable as err:
        if os.environ.get("CI"):
            pytest.fail(str(err), pytrace=False)
        pytest.skip(f"Transformers.js is not available: {err}")


# kind -> [(src_lang, tgt_lang)] as the translation pipeline takes them (M2M100's codes without the underscores).
# Several source languages in a row: Transformers.js rewrites the template's code for each.
TRANSLATIONS = {
    "mbart50": [("en_XX", "ro_RO"), ("fr_XX", "de_DE"), ("ja_XX", "zh_CN")],
    "mbart": [("en_XX", "ro_RO"), ("ro_RO", "en_XX")],
    "nllb": [("eng_Latn", "fra_Latn"), ("deu_Latn", "zho_Hans"), ("fra_Latn", "eng_Latn")],
    "m2m100": [("en", "fr"), ("de", "zh"), ("fr", "en")],
    "m2m100-bpe": [("en", "fr"), ("ja", "ru")],
}
TRANSLATE_TEXTS = ["the house is wonderful.", "  Hello   world  ", "东京是日本的首都。"]
TJS_CLASS = {"mbart50": "MBart50Tokenizer", "mbart": "MBartTokenizer", "nllb": "NllbTokenizer",
             "m2m100": "M2M100Tokenizer", "m2m100-bpe": "M2M100Tokenizer", "marian": "MarianTokenizer",
             "marian-multi": "MarianTokenizer", "pegasus": "PreTrainedTokenizer"}  # Transformers.js has no Pegasus


@pytest.fixture(scope="module")
def transformersjs(family):
    """transformersjs(kind) -> Transformers.js on the export: probe ids, decoded targets, translation inputs (one Node
    run per kind); skipped without Node (failed in CI)."""
    from seq2seq_onnx.verify.transformersjs import tokenizer_run

    cache = {}

    def run(kind):
        if kind not in cache:
            _node_or_skip()
            fam = family(kind)
            translate = [{"text": t, "src_lang": s, "tgt_lang": g} for s, g in TRANSLATIONS.get(kind, [])
                         for t in TRANSLATE_TEXTS]
            if kind in TRANSLATIONS:  # a target language the model does not have
                translate.append({"text": "hello", "src_lang": TRANSLATIONS[kind][0][0], "tgt_lang": "xx_Yyyy"})
            cache[kind] = tokenizer_run(fam["export"], texts=PROBES, id_lists=fam["targets"] + [fam["edge"]],
                                        translations=translate)
            cache[kind]["edge_text"] = cache[kind]["texts"].pop()
        return cache[kind]

    return run


def _differences(ref, got):
    return {PROBES[i]: {"reference": ref[i], "got": got[i]} for i in range(len(PROBES)) if ref[i] != got[i]}


@pytest.mark.parametrize("kind", list(KINDS))
def test_ids_equal_the_reference_in_python(family, kind):
    fam = family(kind)
    assert _differences(fam["ref_ids"], fam["rust_ids"]) == {}


@pytest.mark.parametrize("kind", list(KINDS))
def test_ids_equal_the_reference_in_transformersjs(family, transformersjs, kind):
    fam, out = family(kind), transformersjs(kind)
    assert out["tokenizer_class"] == TJS_CLASS[kind]
    assert _differences(fam["ref_ids"], out["ids"]) == {}


@pytest.mark.parametrize("kind", list(KINDS))
def test_generated_ids_decode_to_the_reference_text_in_python(family, kind):
    fam = family(kind)
    assert fam["rust_texts"] == fam["ref_texts"]
    assert fam["ref_texts"][0] == TARGET_TEXTS[0]  # the reference itself round-trips plain text


@pytest.mark.parametrize("kind", list(KINDS))
def test_generated_ids_decode_to_the_reference_text_in_transformersjs(family, transformersjs, kind):
    assert transformersjs(kind)["texts"] == family(kind)["ref_texts"]


@pytest.mark.parametrize("kind", list(TRANSLATIONS))
def test_transformersjs_builds_translation_inputs(family, transformersjs, kind):
    """src_lang puts the source code into the template (rewritten for each call), tgt_lang gives forced_bos_token_id:
    the ids transformers builds for translation."""
    fam, out = family(kind), transformersjs(kind)
    pairs = [(s, g, t) for s, g in TRANSLATIONS[kind] for t in TRANSLATE_TEXTS]
    *results, bad_target = out["translations"]
    assert len(out["language_codes"]) == len(fam["info"]["lang_codes"])
    for (src, tgt, text), got in zip(pairs, results):
        if kind.startswith("m2m100"):
            want = fam["ref"]._build_translation_inputs(text, src_lang=src, tgt_lang=tgt)
            want_ids, want_bos = want["input_ids"], want["forced_bos_token_id"]
        else:
            want_ids, want_bos = fam["ref"].encode(text, src), fam["ref"].codes[tgt]
        assert got == {"input_ids": want_ids, "forced_bos_token_id": want_bos}, (src, tgt, text)
    # the source code really moved with src_lang: same text, different first (or last, mBART cc25) id
    first = {s: r["input_ids"] for (s, _, t), r in zip(pairs, results) if t == TRANSLATE_TEXTS[0]}
    assert len({tuple(ids) for ids in first.values()}) == len(first)
    assert "is not valid" in bad_target["error"]


@pytest.mark.parametrize("kind", list(KINDS))
def test_config_and_facts(family, kind):
    """tokenizer_config.json states the class, cleanup and languages; the ids build_tokenizer_files reports for the
    model's config are the tokenizer's."""
    fam = family(kind)
    config, facts, info, rust = fam["config"], fam["facts"], fam["info"], fam["rust"]
    assert config["tokenizer_class"] == CLASSES[kind]
    assert config["clean_up_tokenization_spaces"] is False  # transformers 5's value for all six classes
    assert config["eos_token"] == "</s>" and config["unk_token"] == "<unk>" and config["pad_token"] == "<pad>"
    if kind in TRANSLATE_LANGS:
        assert (config["src_lang"], config["tgt_lang"]) == TRANSLATE_LANGS[kind]
    if kind.startswith("marian"):
        assert config["source_lang"] == "en" and config["separate_vocabs"] is False
    assert info["lang_codes"] == facts["lang_codes"]
    assert info["vocab_size"] == facts["vocab_size"]
    assert rust.get_vocab_size() <= facts["vocab_size"]
    for name in ("pad", "eos"):
        token = {"pad": "<pad>", "eos": "</s>"}[name]
        assert rust.token_to_id(token) == facts[f"{name}_token_id"]
    assert all(rust.token_to_id(code) == i for code, i in facts["lang_codes"].items() if not code.startswith(">>"))
    assert info["missing_from_vocab_json"] == [] and info["repaired"] == EXPECTED_REPAIRS.get(kind, info["repaired"])


CLASSES = {"mbart50": "MBart50Tokenizer", "mbart": "MBartTokenizer", "nllb": "NllbTokenizer",
           "pegasus": "PegasusTokenizer", "m2m100": "M2M100Tokenizer", "m2m100-bpe": "M2M100Tokenizer",
           "marian": "MarianTokenizer", "marian-multi": "MarianTokenizer"}
TRANSLATE_LANGS = {"mbart50": ("en_XX", "ro_RO"), "mbart": ("en_XX", "ro_RO"), "nllb": ("eng_Latn", "fra_Latn"),
                   "m2m100": ("en", "fr"), "m2m100-bpe": ("en", "fr")}
# special-token ids transformers 5 gets wrong and apply_layout moves (NLLB's 203: test_nllb_codes_before_mask_...)
EXPECTED_REPAIRS = {"mbart50": [], "mbart": [], "pegasus": ["<mask_1> 3 -> 2", "<mask_2> 2 -> 3"],
                    "m2m100": [], "m2m100-bpe": [], "marian": [], "marian-multi": []}


def test_nllb_codes_before_mask_as_fairseq(family):
    """transformers 5 puts NLLB's <mask> right after the sentencepiece pieces and shifts the 202 codes; the model was
    trained with the codes first and <mask> last."""
    fam = family("nllb")
    n = fam["ref"].sp.get_piece_size()
    assert fam["rust"].token_to_id("ace_Arab") == n + 1 and fam["rust"].token_to_id("zul_Latn") == n + 202
    assert fam["rust"].token_to_id("<mask>") == n + 203
    assert f"<mask> {n + 1} -> {n + 203}" in fam["info"]["repaired"]


@pytest.mark.parametrize("kind", ["mbart50", "nllb", "pegasus"])
def test_transformers_5_tokenizer_json_is_what_needs_fixing(family, tmp_path, kind):
    """Why the module exists: the tokenizer.json transformers 5.24 writes adds a "▁" id when a chunk ends in
    whitespace; with the sentencepiece pipeline (`patch_spm_json`) mBART-50 is right, while NLLB and Pegasus still
    need their special-token ids moved (`apply_layout`)."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    fam = family(kind)
    AutoTokenizer.from_pretrained(str(fam["checkpoint"])).save_pretrained(str(tmp_path))
    written = json.loads((tmp_path / "tokenizer.json").read_text())
    assert Tokenizer.from_str(json.dumps(written)).encode("trailing space ").ids != fam["ref"].encode("trailing space ")
    patched = spm_json.patch_spm_json(written, fam["ref"].spm_path)
    tok = Tokenizer.from_str(json.dumps(patched))
    assert (_differences(fam["ref_ids"], [tok.encode(t).ids for t in PROBES]) == {}) == (kind == "mbart50")
    fixed, repairs = spm_json.apply_layout(patched, spm_json.family_layout(fam["ref"].spm_path, kind))
    tok = Tokenizer.from_str(json.dumps(fixed))
    assert _differences(fam["ref_ids"], [tok.encode(t).ids for t in PROBES]) == {}
    assert bool(repairs) == (kind != "mbart50")


def test_layout_that_cannot_be_repaired_is_an_error(family):
    """A tokenizer.json whose sentencepiece pieces sit at other ids is refused, not patched over."""
    fam = family("mbart50")
    tj = json.loads(json.dumps(fam["tokenizer_json"]))
    tj["model"]["vocab"][10], tj["model"]["vocab"][11] = tj["model"]["vocab"][11], tj["model"]["vocab"][10]
    layout = spm_json.family_layout(fam["ref"].spm_path, "mbart50")
    with pytest.raises(TokenizerMismatchError, match="sentencepiece pieces"):
        spm_json.apply_layout(tj, layout)


def _copy_checkpoint(fam, tmp_path):
    folder = tmp_path / "checkpoint"
    shutil.copytree(fam["checkpoint"], folder)
    return folder


@pytest.mark.parametrize("change, match", [
    ({"tokenizer_config.json": {"separate_vocabs": True}}, "separate source and target vocabularies"),
    ({"config.json": {"vocab_size": 10_000, "decoder_vocab_size": 5_000}}, "decoder_vocab_size 5000 != vocab_size"),
    ({"config.json": {"share_encoder_decoder_embeddings": False}}, "share_encoder_decoder_embeddings"),
])
def test_marian_with_separate_vocabularies_is_refused(family, tmp_path, change, match):
    """Transformers.js decodes generated ids with the tokenizer.json that encodes the input: one vocabulary only."""
    folder = _copy_checkpoint(family("marian"), tmp_path)
    for name, values in change.items():
        path = folder / name
        path.write_text(json.dumps({**(json.loads(path.read_text()) if path.exists() else {}), **values}))
    with pytest.raises(NoTokenizerError, match=match):
        spm_json.tokenizer_json_for(folder, "marian")


@pytest.mark.parametrize("kind", ["m2m100", "marian"])
def test_pieces_missing_from_vocab_json_are_reported(family, tmp_path, kind):
    """A sentencepiece piece without a vocab.json entry becomes <unk> in transformers, which a tokenizer.json cannot
    express (one id per piece): reported in info, and the rest still checked against sentencepiece."""
    fam = family(kind)
    folder = _copy_checkpoint(fam, tmp_path)
    vocab = json.loads((folder / "vocab.json").read_text())
    spm_file = "source.spm" if kind == "marian" else "sentencepiece.bpe.model"
    normal = [p.piece for p in spm_json.load_spm(folder / spm_file).pieces if p.type == spm_json.NORMAL]
    dropped = next(p for p in normal if len(p) > 3 and p.startswith("▁") and p in vocab)
    order = [p for p, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if p != dropped]
    (folder / "vocab.json").write_text(json.dumps({p: i for i, p in enumerate(order)}))
    _, _, info = spm_json.tokenizer_json_for(folder, kind)
    assert info["missing_from_vocab_json"] == [dropped]


def test_missing_files_are_refused(tmp_path):
    for kind in ("mbart50", "marian", "m2m100", "pegasus"):
        with pytest.raises(NoTokenizerError, match="has no"):
            spm_json.tokenizer_json_for(tmp_path, kind)
    (tmp_path / "spiece.model").write_bytes(b"not a sentencepiece model")
    with pytest.raises(NoTokenizerError, match="cannot read"):
        spm_json.tokenizer_json_for(tmp_path, "pegasus")


@pytest.mark.parametrize("kind", ["mbart50", "nllb", "pegasus"])
def test_checkpoint_that_ships_a_tokenizer_json(family, tmp_path, kind):
    """Many hub checkpoints ship a tokenizer.json (here the one transformers 5 writes, wrong ids included): the
    export's tokenizer.json is the same as from the sentencepiece model alone."""
    from transformers import AutoTokenizer

    fam = family(kind)
    folder = _copy_checkpoint(fam, tmp_path)
    AutoTokenizer.from_pretrained(str(folder)).save_pretrained(str(folder))
    assert (folder / "tokenizer.json").is_file()
    tj, config, info = spm_json.tokenizer_json_for(folder, kind)
    assert tj == fam["tokenizer_json"]
    assert config["tokenizer_class"] == fam["config"]["tokenizer_class"]


@pytest.mark.parametrize("kind", list(KINDS))
def test_export_reads_in_python_as_a_fast_tokenizer(family, kind):
    """Python readers of the export: transformers 5's PreTrainedTokenizerFast takes tokenizer.json as it is (its
    family classes rebuild the text pipeline, or need the sentencepiece files) and gives the reference's ids."""
    from transformers import PreTrainedTokenizerFast

    fam = family(kind)
    tok = PreTrainedTokenizerFast.from_pretrained(str(fam["export"]))
    assert _differences(fam["ref_ids"], [tok(t).input_ids for t in PROBES]) == {}
    assert [tok.decode(ids, skip_special_tokens=True) for ids in fam["targets"]] == fam["ref_texts"]


def test_encode_helper(family):
    """`transformersjs.encode`, the one-call form for other checks."""
    from seq2seq_onnx.verify import transformersjs

    _node_or_skip()
    fam = family("mbart50")
    assert transformersjs.encode(fam["export"], PROBES[:6]) == fam["ref_ids"][:6]


def test_no_torch_import(family):
    """The conversion of every family's tokenizer runs without torch (transformers' AutoTokenizer would import it)."""
    import subprocess
    import sys

    folders = {kind: str(family(kind)["checkpoint"]) for kind in ("mbart50", "nllb", "pegasus", "m2m100", "marian")}
    code = ("import json, sys; from seq2seq_onnx.export.spm_json import tokenizer_json_for\n"
            f"for kind, folder in {folders!r}.items(): tokenizer_json_for(folder, kind)\n"
            "print(json.dumps('torch' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) is False


@pytest.mark.parametrize("kind", list(KINDS))
def test_known_difference_whitespace_at_the_ends_of_decoded_text(family, transformersjs, kind):
    """The one known residual: transformers strips the decoded string (`convert_tokens_to_string`), while tokenizers
    and Transformers.js only drop the first piece's "▁". They differ when generated ids start with a lone "▁" piece
    followed by a skipped special token, or end that way: a space more at that end. Inside the text, and for text
    that starts with a word, they agree (the decode tests above)."""
    fam = family(kind)
    assert fam["edge_ref_text"] == TARGET_TEXTS[0]
    assert fam["edge_rust_text"] == TARGET_TEXTS[0] + " "
    assert transformersjs(kind)["edge_text"] == TARGET_TEXTS[0] + " "
