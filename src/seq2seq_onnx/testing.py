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
                param.normal_(0.0, 0.3)
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
    shape.setdefault("vocab_size", _train_tokenizer(folder, spec["tokenizer"], seed))
    special = spec["special"]
    config = AutoConfig.for_model(spec["model_type"], scale_embedding=spec["scale_embedding"],
                                  tie_word_embeddings=spec["tied"], **special, **spec["generation"], **shape)
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
    GenerationConfig(**special, **spec["generation"]).save_pretrained(folder)
    return folder
