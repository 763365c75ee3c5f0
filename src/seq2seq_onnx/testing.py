"""Build small seq2seq checkpoints offline, for tests and benchmarks.

No machine here reaches the Hugging Face hub, so tests make their own models: seeded random
weights in a real architecture, saved with `save_pretrained`, plus a tokenizer of the family's
kind (sentencepiece or byte-level BPE) trained on generated text. The folders look exactly like
hub checkpoints (config.json, generation_config.json, model.safetensors, tokenizer files).

Weights are initialised for well-conditioned, history-dependent outputs (unit-variance
activations, attention scores of unit scale, logits spread over a few units), not transformers'
small defaults, under which random models answer every prompt with one token and parity tests
could not fail.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

# Shapes named after the checkpoints they imitate. TINY/FLAN_T5_SMALL keys are T5Config
# arguments, BART_TINY/BART_BASE BartConfig-style ones (the BART-like families share them).
TINY = dict(d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=2, num_decoder_layers=2)
FLAN_T5_SMALL = dict(d_model=512, d_ff=1024, d_kv=64, num_heads=6, num_layers=8, num_decoder_layers=8, vocab_size=32128)
BART_TINY = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                 encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=256)
BART_BASE = dict(d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12, decoder_attention_heads=12,
                 encoder_ffn_dim=3072, decoder_ffn_dim=3072, max_position_embeddings=1024, vocab_size=50265)
# The smallest real checkpoint of each BART-like family, as its config.json has it (vocabulary included;
# the fixture tokenizer covers only its first ids).
OPUS_MT_EN_DE = dict(d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8, decoder_attention_heads=8,
                     encoder_ffn_dim=2048, decoder_ffn_dim=2048, max_position_embeddings=512, activation_function="swish",
                     vocab_size=58101)
M2M100_418M = dict(d_model=1024, encoder_layers=12, decoder_layers=12, encoder_attention_heads=16,
                   decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096, max_position_embeddings=1024,
                   activation_function="relu", vocab_size=128112)
MBART_LARGE_50 = dict(d_model=1024, encoder_layers=12, decoder_layers=12, encoder_attention_heads=16,
                      decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096,
                      max_position_embeddings=1024, activation_function="gelu", vocab_size=250054)
PEGASUS_XSUM = dict(d_model=1024, encoder_layers=16, decoder_layers=16, encoder_attention_heads=16,
                    decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096, max_position_embeddings=512,
                    activation_function="relu", vocab_size=96103)
# {family: (build_model variant, shape, the checkpoint it imitates)}
REAL_SIZES = {
    "T5": ("flan-t5", FLAN_T5_SMALL, "google/flan-t5-small"),
    "BART": ("bart", BART_BASE, "facebook/bart-base"),
    "Marian": ("marian", OPUS_MT_EN_DE, "Helsinki-NLP/opus-mt-en-de"),
    "M2M100/NLLB": ("m2m100", M2M100_418M, "facebook/m2m100_418M"),
    "mBART": ("mbart50", MBART_LARGE_50, "facebook/mbart-large-50-many-to-many-mmt"),
    "Pegasus": ("pegasus", PEGASUS_XSUM, "google/pegasus-xsum"),
}

VARIANTS = {
    # original T5: relu feed-forward, lm_head tied to the embedding, logits scaled by d_model**-0.5
    "t5": dict(model_type="t5", feed_forward_proj="relu", tied=True),
    # t5-v1_1 / flan-t5: gated-gelu, separate lm_head, no logits scale
    "flan-t5": dict(model_type="t5", feed_forward_proj="gated-gelu", tied=False),
    "mt5": dict(model_type="mt5", feed_forward_proj="gated-gelu", tied=False),
    "umt5": dict(model_type="umt5", feed_forward_proj="gated-gelu", tied=False),
    # BART (bart-large-cnn's settings): byte-level BPE, tied embeddings, final_logits_bias,
    # decoder starts from </s>, forced <s> first and </s> at the end
    "bart": dict(model_type="bart", tied=True, scale_embedding=False, tokenizer="bpe",
                 special=dict(pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2),
                 generation=dict(forced_bos_token_id=0, forced_eos_token_id=2)),
    # Pegasus (pegasus-xsum's settings): sentencepiece shifted by 103 reserved ids, scaled
    # embeddings, sinusoidal positions, pre-layer-norm; decoder starts from <pad>
    "pegasus": dict(model_type="pegasus", tied=True, scale_embedding=True, tokenizer="pegasus",
                    special=dict(pad_token_id=0, eos_token_id=1, decoder_start_token_id=0),
                    generation=dict(forced_eos_token_id=1)),
    # The translation families: ids come from `build_tokenizer_files` (the hub checkpoints' files).
    # mBART-50: pre-layer-norm, language codes first in the source, target forced as first token
    "mbart50": dict(model_type="mbart", tied=True, scale_embedding=True, tokenizer="mbart50", generation={}),
    # mBART cc25 / en-ro: the code after </s>; the decoder starts from the target code
    "mbart": dict(model_type="mbart", tied=True, scale_embedding=True, tokenizer="mbart", generation={}),
    # M2M100 (vocab.json + sentencepiece) and NLLB (BPE sentencepiece, 202 codes): model_type m2m_100
    "m2m100": dict(model_type="m2m_100", tied=True, scale_embedding=True, tokenizer="m2m100", generation={}),
    "nllb": dict(model_type="m2m_100", tied=True, scale_embedding=True, tokenizer="nllb", generation={}),
    # Marian (opus-mt): decoder starts from <pad>, <pad> banned, </s> forced at the end
    "marian": dict(model_type="marian", tied=True, scale_embedding=True, tokenizer="marian", generation="marian"),
    "marian-multi": dict(model_type="marian", tied=True, scale_embedding=True, tokenizer="marian-multi",
                         generation="marian"),
}

REPEATED_TOKEN = 7  # the answer of build_model(degenerate="repeat")
SPM_VOCAB = 200  # sentencepiece pieces; the model vocab adds extra ids and padding on top


def sample_text(n_lines: int = 3000, seed: int = 0) -> list[str]:
    """Readable-ish lines from a generated lexicon, enough for a 200-piece sentencepiece model."""
    rng = random.Random(seed)
    lexicon = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 8))) for _ in range(400)]
    lexicon += "the house is wonderful translate english german summarize question answer".split()
    lines = []
    for _ in range(n_lines):
        line = " ".join(rng.choice(lexicon) for _ in range(rng.randint(3, 12)))
        line += rng.choice([".", "!", "?", "", " 42.", ":"])
        lines.append(line.capitalize() if rng.random() < 0.3 else line)
    return lines


def train_sentencepiece(folder: Path, vocab_size: int = SPM_VOCAB, seed: int = 0) -> Path:
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sample_text(seed=seed)),
        model_prefix=str(folder / "spiece"),
        vocab_size=vocab_size,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        model_type="unigram",
        character_coverage=1.0,
        minloglevel=2,
        num_threads=1,
    )
    (folder / "spiece.vocab").unlink(missing_ok=True)
    return folder / "spiece.model"


def build_model(
    folder: str | Path,
    variant: str = "flan-t5",
    seed: int = 0,
    extra_ids: int = 4,
    tokenizer_json: bool = True,
    degenerate: str | None = None,
    **config_overrides,
) -> Path:
    """Write a random-weight checkpoint of `variant` (see VARIANTS) to `folder` and return it.

    `config_overrides` are config arguments of the variant's family (e.g. `num_decoder_layers` for
    T5, `decoder_layers` for BART).

    `tokenizer_json=False` leaves only `spiece.model`, like many older hub checkpoints, so
    the converter has to make `tokenizer.json` itself. `degenerate` makes the models that defeat
    naive verification: "repeat" answers every prompt with one token repeated (its logits still
    depend on earlier tokens), "constant" gives logits that depend on nothing at all.
    """
    folder = Path(folder)
    if degenerate not in (None, "repeat", "constant"):
        raise ValueError(f"unknown degenerate model {degenerate!r}: 'repeat' or 'constant'")
    if VARIANTS[variant]["model_type"] in ("t5", "mt5", "umt5"):
        return _build_t5(folder, variant, seed, extra_ids, tokenizer_json, degenerate, **config_overrides)
    return _build_bart_like(folder, variant, seed, degenerate, **config_overrides)


def _build_t5(folder: Path, variant: str, seed: int, extra_ids: int, tokenizer_json: bool, degenerate: str | None,
              **config_overrides) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, GenerationConfig, T5Tokenizer

    folder = Path(folder)
    spec = VARIANTS[variant]
    shape = {**TINY, **config_overrides}
    shape.setdefault("vocab_size", SPM_VOCAB + extra_ids + 4)  # padded past the tokenizer, like flan-t5's 32128
    config = AutoConfig.for_model(
        spec["model_type"],
        feed_forward_proj=spec["feed_forward_proj"],
        tie_word_embeddings=spec["tied"],
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
        **shape,
    )
    torch.manual_seed(seed)
    model = AutoModelForSeq2SeqLM.from_config(config).eval()
    with torch.no_grad():
        # Unit-variance activations everywhere, attention scores of unit scale (T5 has no
        # 1/sqrt(d) in attention, so the query carries it), and logits spread over a few units:
        # greedy ties are then vanishingly rare, and the model is as well conditioned as a
        # trained one (too sharp a softmax makes fp32 rounding flip tokens in PyTorch itself).
        for name, param in model.named_parameters():
            if "relative_attention_bias" in name:
                param.normal_(0.0, 1.0)
            elif "layer_norm" in name:
                param.normal_(1.0, 0.1)
            elif name.endswith((".q.weight",)):
                param.normal_(0.0, (param.shape[-1] * config.d_kv) ** -0.5)
            else:
                param.normal_(0.0, 1.0 / max(param.shape[-1], 1) ** 0.5)
        if not spec["tied"]:
            # transformers 5 ties lm_head to the embedding in memory; give it its own weights,
            # which is how flan-t5 and t5-v1_1 checkpoints are stored.
            model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.shared.weight) * shape["d_model"] ** -0.5)
        if degenerate == "repeat":
            # A constant component in every embedding, which the last layer norm passes on, read by
            # one lm_head row: that token wins every step, the other logits still vary with history.
            model.shared.weight[:, 0] = 10.0
            model.lm_head.weight[REPEATED_TOKEN] = 0.0
            model.lm_head.weight[REPEATED_TOKEN, 0] = 3.0
        elif degenerate == "constant":
            model.decoder.final_layer_norm.weight.zero_()  # every logit 0 at every step
    model.save_pretrained(folder)
    GenerationConfig(decoder_start_token_id=0, pad_token_id=0, eos_token_id=1).save_pretrained(folder)

    # The model's config.json as the hub would have it: untied checkpoints say so.
    cfg_path = folder / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tie_word_embeddings"] = spec["tied"]
    cfg.pop("scale_decoder_outputs", None)
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")

    train_sentencepiece(folder, seed=seed)
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "T5Tokenizer",
                "extra_ids": extra_ids,
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "pad_token": "<pad>",
                "model_max_length": 512,
                "legacy": False,
            },
            indent=2,
        )
    )
    if tokenizer_json:
        T5Tokenizer.from_pretrained(folder).save_pretrained(folder)
    return folder


def _init_bart_like(model, seed: int) -> None:
    """Unit-scale activations: positions N(0, 1), linear layers N(0, 1/fan_in), layer norms near 1.

    Token embeddings get N(0, 0.3): the lm_head is tied to them, and at unit scale the residual
    stream carries the input token's own embedding to the output, so the model copies its last
    token forever (no history dependence for verification to check).
    """
    import torch

    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "layer_norm" in name or "layernorm" in name:
                param.normal_(1.0 if name.endswith("weight") else 0.0, 0.1)
            elif "embed_positions" in name:
                param.normal_(0.0, 1.0)
            elif "embed" in name or name.endswith("shared.weight"):
                # 0.3 after the embedding scale (sqrt(d_model) where the family scales)
                scale = model.config.d_model ** 0.5 if getattr(model.config, "scale_embedding", False) else 1.0
                param.normal_(0.0, 0.3 / scale)
            elif name.endswith("bias"):
                param.normal_(0.0, 0.1)
            else:
                param.normal_(0.0, 1.0 / max(param.shape[-1], 1) ** 0.5)
        if getattr(model, "final_logits_bias", None) is not None:
            model.final_logits_bias.normal_(0.0, 0.5)  # a buffer: the export must carry it


def _save_tokenizer(folder: Path, tokenizer_class: str) -> int:
    """tokenizer.json and friends from the files in `folder`, as transformers writes them; returns the vocabulary size."""
    from transformers import AutoTokenizer

    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": tokenizer_class}))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.save_pretrained(folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    for key in ("is_local", "local_files_only"):
        config.pop(key, None)
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return len(tokenizer)


def _train_tokenizer(folder: Path, kind: str, seed: int) -> int:
    """The family's kind of tokenizer, trained on generated text; returns its vocabulary size."""
    if kind == "bpe":  # BART: byte-level BPE, vocab.json + merges.txt
        from tokenizers import ByteLevelBPETokenizer

        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator(sample_text(seed=seed), vocab_size=400, min_frequency=2,
                                special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
        bpe.save_model(str(folder))
        return _save_tokenizer(folder, "BartTokenizer")
    if kind == "pegasus":  # sentencepiece with pad 0, eos 1, unk 2; the tokenizer shifts it by 103
        train_sentencepiece(folder, seed=seed)
        return _save_tokenizer(folder, "PegasusTokenizer")
    raise ValueError(f"unknown tokenizer kind {kind!r}")


def _build_bart_like(folder: Path, variant: str, seed: int, degenerate: str | None, **config_overrides) -> Path:
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, GenerationConfig

    spec = VARIANTS[variant]
    folder.mkdir(parents=True, exist_ok=True)
    shape = {**BART_TINY, **config_overrides}
    generation = spec["generation"]
    if "special" in spec:
        shape.setdefault("vocab_size", _train_tokenizer(folder, spec["tokenizer"], seed))
        special = spec["special"]
    else:
        facts = build_tokenizer_files(folder, spec["tokenizer"], seed)
        shape.setdefault("vocab_size", facts["vocab_size"])
        special = {k: facts[k] for k in ("pad_token_id", "eos_token_id", "bos_token_id", "decoder_start_token_id")
                   if facts.get(k) is not None}
        if generation == "marian":  # opus-mt's generation_config.json
            generation = dict(bad_words_ids=[[facts["pad_token_id"]]], forced_eos_token_id=facts["eos_token_id"])
    config = AutoConfig.for_model(spec["model_type"], scale_embedding=spec["scale_embedding"],
                                  tie_word_embeddings=spec["tied"], **special, **shape)
    model = AutoModelForSeq2SeqLM.from_config(config).eval()
    _init_bart_like(model, seed)
    if degenerate is not None:
        import torch

        with torch.no_grad():
            bias = getattr(model, "final_logits_bias", None)
            if degenerate == "repeat":  # as in _build_t5: one embedding component read by one output row
                model.model.shared.weight[:, 0] = 10.0
                bias.zero_()
                bias[0, REPEATED_TOKEN] = 60.0
            else:
                model.model.shared.weight.mul_(0.0)
                if bias is not None:
                    bias.zero_()
    model.save_pretrained(folder)
    GenerationConfig(**special, **generation).save_pretrained(folder)
    return folder


# --- Tokenizer files of the sentencepiece translation / summarization families ----------------------
#
# `build_tokenizer_files(folder, kind)` writes what a hub checkpoint of each family ships next to its
# weights (sentencepiece model(s), vocab.json where the family has one, tokenizer_config.json and
# special_tokens_map.json as the real checkpoints have them) and returns the ids the model's config
# must use. The sentencepiece models are trained on generated multilingual text (Latin with accents,
# Cyrillic, CJK, kana, a few emoji), small enough to train in about a second.

TOKENIZER_KINDS = ("mbart50", "mbart", "nllb", "m2m100", "m2m100-bpe", "marian", "marian-multi", "pegasus")

_LEXICON = {
    "en": "the house is wonderful and the weather today was nice we went to the market with friends people say "
          "hello world translation model small test numbers quick brown fox jumps over lazy dog studies have shown "
          "that owning a dog is good summarize question answer".split(),
    "fr": "la maison est merveilleuse et le temps aujourd'hui était beau nous sommes allés au marché avec des amis "
          "été déjà où français garçon très bientôt cœur naïve l'ami d'un".split(),
    "de": "das Haus ist wunderbar und das Wetter heute war schön wir gingen mit Freunden zum Markt Straße Grüße "
          "Mädchen über".split(),
    "ro": "casa este minunată și vremea astăzi a fost frumoasă am mers la piață cu prietenii".split(),
    "ru": "дом прекрасен и погода сегодня была хорошая мы пошли на рынок с друзьями".split(),
}
_CHARS = {"zh": "东京是日本的首都你好世界我们今天去市场天气很好朋友", "ja": "これはテストですカタカナひらがな漢字"}
_EMOJI = ["😀", "👍", "🎉", "❤️", "🚀"]
_PUNCT = [".", ",", "!", "?", ";", ":", "'", '"', "(", ")", "-", "%", "&", "<", ">"]


def multilingual_text(langs, n_lines: int = 2000, seed: int = 0) -> list[str]:
    """Generated lines in `langs` (keys of the lexicon above, or "zh"/"ja" for character text)."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        lang = rng.choice(langs)
        if lang in _CHARS:
            line = "".join(rng.choice(_CHARS[lang]) for _ in range(rng.randint(3, 14)))
            lines.append(line + ("。" if lang == "zh" else ""))
            continue
        line = " ".join(rng.choice(_LEXICON[lang]) for _ in range(rng.randint(3, 12)))
        if rng.random() < 0.3:
            line += rng.choice(_PUNCT)
        if rng.random() < 0.2:
            line += " " + str(rng.randint(0, 99999))
        if rng.random() < 0.05:
            line += " " + rng.choice(_EMOJI)
        lines.append(line.capitalize() if rng.random() < 0.3 else line)
    return lines


def _train_spm(prefix: Path, langs, vocab_size: int, seed: int, model_type: str = "unigram", **ids) -> Path:
    import sentencepiece as spm

    prefix.parent.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(multilingual_text(langs, seed=seed)), model_prefix=str(prefix), vocab_size=vocab_size,
        model_type=model_type, character_coverage=1.0, minloglevel=2, num_threads=1, **ids)
    Path(str(prefix) + ".vocab").unlink(missing_ok=True)
    return Path(str(prefix) + ".model")


def _spm_pieces(model: Path) -> list[tuple[str, int]]:
    """(piece, type) of every piece of a sentencepiece model, in id order."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model.read_bytes())
    return [(p.piece, p.type) for p in proto.pieces]


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def _added_token(content: str, lstrip: bool = False, normalized: bool = True) -> dict:
    return {"content": content, "single_word": False, "lstrip": lstrip, "rstrip": False, "normalized": normalized,
            "special": True, "__type": "AddedToken"}


def build_tokenizer_files(folder, kind: str, seed: int = 0) -> dict:
    """Write the tokenizer files a hub checkpoint of `kind` ships into `folder`; return the ids its config needs.

    kind: "mbart50" (facebook/mbart-large-50-*: sentencepiece.bpe.model, MBart50Tokenizer with src_lang/tgt_lang),
    "mbart" (mbart-large-cc25 / en-ro: MBartTokenizer), "nllb" (sentencepiece.bpe.model of BPE type,
    NllbTokenizer with its 202 language codes), "m2m100" (vocab.json in fairseq dictionary order +
    sentencepiece.bpe.model, M2M100Tokenizer with language_codes "m2m100" and 8 made-up words; "m2m100-bpe" the
    same with a BPE sentencepiece model),
    "marian" / "marian-multi" (opus-mt: source.spm, target.spm and one vocab.json shared by both sides, <pad>
    last; "-multi" adds `>>xx<<` target-language tags to vocab.json, as opus-mt-en-mul does), "pegasus"
    (spiece.model with pad 0, eos 1, unk 2; PegasusTokenizer shifts it by 103).

    Returns {"vocab_size", "pad_token_id", "eos_token_id", "bos_token_id", "decoder_start_token_id",
    "lang_codes": {language token as written in text ("en_XX", "eng_Latn", "__en__", ">>fra<<"): id}}:
    the sizes and ids the model's config.json / generation_config.json must use (the family's usual choices:
    Marian starts the decoder from <pad>, mBART / M2M100 / NLLB from </s> = 2, Pegasus from <pad> = 0; mbart-large-
    en-ro starts from its target code instead, lang_codes has it). The files are what `spm_json.tokenizer_json_for`
    converts; tokenizer.json is not among them (the converter writes it).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r}: one of {', '.join(TOKENIZER_KINDS)}")
    from .export import spm_json

    all_langs = ["en", "fr", "de", "ro", "ru", "zh", "ja"]
    fairseq_specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
                        "pad_token": "<pad>", "cls_token": "<s>"}
    fairseq_ids = {"pad_token_id": 1, "eos_token_id": 2, "bos_token_id": 0, "decoder_start_token_id": 2}

    if kind in ("mbart50", "mbart", "nllb"):
        model_type = "bpe" if kind == "nllb" else "unigram"  # NLLB's sentencepiece.bpe.model really is BPE
        spm_file = _train_spm(folder / "sentencepiece.bpe", all_langs, 800, seed, model_type)
        codes = {"mbart50": spm_json.MBART50_LANGUAGE_CODES, "mbart": spm_json.MBART_LANGUAGE_CODES,
                 "nllb": spm_json.NLLB_LANGUAGE_CODES}[kind]
        n = len(_spm_pieces(spm_file))
        # fairseq dictionary: <s> <pad> </s> <unk>, sentencepiece ids 3.. shifted by one, the codes, <mask> last
        lang_codes = {code: n + 1 + i for i, code in enumerate(codes)}
        src, tgt = {"mbart50": ("en_XX", "ro_RO"), "mbart": ("en_XX", "ro_RO"), "nllb": ("eng_Latn", "fra_Latn")}[kind]
        cls = {"mbart50": "MBart50Tokenizer", "mbart": "MBartTokenizer", "nllb": "NllbTokenizer"}[kind]
        config = {"tokenizer_class": cls, "src_lang": src, "tgt_lang": tgt, **fairseq_specials,
                  "mask_token": _added_token("<mask>", lstrip=True), "model_max_length": 1024, "sp_model_kwargs": {},
                  "additional_special_tokens": list(codes)}
        if kind == "nllb":
            config["legacy_behaviour"] = False
        _write_json(folder / "tokenizer_config.json", config)
        _write_json(folder / "special_tokens_map.json", {**fairseq_specials, "mask_token": config["mask_token"],
                                                         "additional_special_tokens": list(codes)})
        return {"vocab_size": n + 1 + len(codes) + 1, **fairseq_ids, "lang_codes": lang_codes}

    if kind in ("m2m100", "m2m100-bpe"):
        model_type = "bpe" if kind == "m2m100-bpe" else "unigram"
        spm_file = _train_spm(folder / "sentencepiece.bpe", all_langs, 800, seed, model_type)
        pieces = [p for p, t in _spm_pieces(spm_file) if t == 1]  # normal pieces; <unk>, <s>, </s> are control
        random.Random(seed).shuffle(pieces)  # fairseq's dictionary is ordered by corpus frequency, not spm score
        vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
        for piece in pieces:
            vocab[piece] = len(vocab)
        _write_json(folder / "vocab.json", vocab)
        codes = spm_json.M2M100_LANGUAGE_CODES
        config = {"tokenizer_class": "M2M100Tokenizer", "src_lang": "en", "tgt_lang": "fr", "language_codes": "m2m100",
                  "num_madeup_words": 8, **{k: v for k, v in fairseq_specials.items() if k != "cls_token"},
                  "model_max_length": 1024, "sp_model_kwargs": {},
                  "additional_special_tokens": [f"__{c}__" for c in codes]}
        _write_json(folder / "tokenizer_config.json", config)
        _write_json(folder / "special_tokens_map.json", {k: v for k, v in config.items() if k.endswith("_token")
                                                         or k == "additional_special_tokens"})
        lang_codes = {f"__{c}__": len(vocab) + i for i, c in enumerate(codes)}
        return {"vocab_size": len(vocab) + len(codes) + 8, **fairseq_ids, "lang_codes": lang_codes}

    if kind in ("marian", "marian-multi"):
        multi = kind == "marian-multi"
        _train_spm(folder / "source", ["en", "en", "en", "ru"], 400, seed).rename(folder / "source.spm")
        target_langs = ["fr", "de", "ro", "zh", "ja"] if multi else ["fr", "fr", "de"]
        _train_spm(folder / "target", target_langs, 500, seed + 1).rename(folder / "target.spm")
        src_p = [p for p, t in _spm_pieces(folder / "source.spm") if t == 1]
        tgt_p = [p for p, t in _spm_pieces(folder / "target.spm") if t == 1]
        body = sorted(set(src_p) | set(tgt_p))
        random.Random(seed).shuffle(body)  # Marian's vocabulary order is its own, unrelated to either spm
        tags = [">>fra<<", ">>deu<<", ">>ron<<", ">>zho<<", ">>jpn<<"] if multi else []
        vocab = {"</s>": 0, "<unk>": 1}
        for piece in tags + body:
            vocab[piece] = len(vocab)
        vocab["<pad>"] = len(vocab)
        _write_json(folder / "vocab.json", vocab)
        specials = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
        _write_json(folder / "tokenizer_config.json", {
            "tokenizer_class": "MarianTokenizer", "source_lang": "en", "target_lang": "mul" if multi else "fr",
            "separate_vocabs": False, "target_vocab_file": None, **specials, "model_max_length": 512,
            "sp_model_kwargs": {}})
        _write_json(folder / "special_tokens_map.json", specials)
        pad = vocab["<pad>"]
        return {"vocab_size": len(vocab), "pad_token_id": pad, "eos_token_id": 0, "bos_token_id": 0,
                "decoder_start_token_id": pad, "lang_codes": {t: vocab[t] for t in tags}}

    # pegasus: ids 0..104 are <pad> </s> <mask_1> <mask_2> <unk_2>..<unk_102>; sentencepiece id i is i + 103
    # (its <unk>, id 2, is 105)
    spm_file = _train_spm(folder / "spiece", all_langs, 600, seed, pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
    n = len(_spm_pieces(spm_file))
    extra = ["<mask_1>"] + [f"<unk_{i}>" for i in range(2, 103)]
    config = {"tokenizer_class": "PegasusTokenizer", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
              "mask_token": "<mask_2>", "mask_token_sent": "<mask_1>", "offset": 103,
              "additional_special_tokens": extra, "model_max_length": 512, "sp_model_kwargs": {}}
    _write_json(folder / "tokenizer_config.json", config)
    _write_json(folder / "special_tokens_map.json", {k: config[k] for k in
                                                     ("pad_token", "eos_token", "unk_token", "mask_token",
                                                      "additional_special_tokens")})
    return {"vocab_size": n + 103, "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": None,
            "decoder_start_token_id": 0, "lang_codes": {}}
