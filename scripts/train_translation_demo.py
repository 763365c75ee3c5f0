"""Train the translation demo shipped in demo/marian-demo: a Marian (opus-mt layout) model, English to French and German.

    python scripts/train_translation_demo.py [--out demo/marian-demo] [--steps 4000] [--seed 0]

A multi-target opus-mt model in miniature (like Helsinki-NLP/opus-mt-en-mul): the target language
is a `>>fra<<` / `>>deu<<` tag at the start of the source text (`--tgt-lang fra` puts it there).
Every answer can be checked exactly:

    >>fra<< 4521                                   -> quatre mille cinq cent vingt et un
    >>deu<< four thousand five hundred twenty-one  -> viertausendfünfhunderteinundzwanzig
    >>fra<< March 3, 2021                          -> 3 mars 2021      (also "3rd of March 2021", "Mar 3rd 2021", ...)
    >>deu<< 1st of May 1999                        -> 1. Mai 1999

Numbers 0 to 9999 (as digits or English words), dates 1950 to 2049. French numbers follow the
traditional spelling (hyphens below a hundred, "et un", "quatre-vingts", "deux cents"); German
numbers are one word ("einhundert", "eintausend").

Marian's files: source.spm (English) and target.spm (French + German) sentencepiece models and one
vocab.json shared by both sides, tied embeddings, sinusoidal positions, post-layer-norm, swish, the
decoder starting from <pad>, <pad> banned and </s> forced at the end (opus-mt's generation config,
with num_beams 4). Seeded, CPU only. Writes the checkpoint, the held-out set (held_out.jsonl, whose
numbers and dates never occur in training) and the model card (README.md) with the scores.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_demo import DATE_FORMATS, MAX_NUMBER, number_to_words, random_date  # noqa: E402

LANGS = ("fra", "deu")
HELD_OUT_PER_TASK = 50  # per task and language
TASKS = ("digits", "words", "date")

FR_ONES = ("zéro un deux trois quatre cinq six sept huit neuf dix onze douze treize quatorze quinze seize "
           "dix-sept dix-huit dix-neuf").split()
FR_TENS = "_ _ vingt trente quarante cinquante soixante".split()
FR_MONTHS = "janvier février mars avril mai juin juillet août septembre octobre novembre décembre".split()
DE_ONES = ("null eins zwei drei vier fünf sechs sieben acht neun zehn elf zwölf dreizehn vierzehn fünfzehn "
           "sechzehn siebzehn achtzehn neunzehn").split()
DE_TENS = "_ _ zwanzig dreißig vierzig fünfzig sechzig siebzig achtzig neunzig".split()
DE_MONTHS = "Januar Februar März April Mai Juni Juli August September Oktober November Dezember".split()


def french(n: int) -> str:
    """0..9999 in French words, traditional spelling: 71 soixante et onze, 80 quatre-vingts, 200 deux cents."""
    if n < 20:
        return FR_ONES[n]
    if n < 100:
        tens, unit = divmod(n, 10)
        if tens in (7, 9):  # soixante-dix.., quatre-vingt-dix..
            base, unit = ("soixante" if tens == 7 else "quatre-vingt"), 10 + unit
            joiner = " et " if (tens == 7 and unit == 11) else "-"
            return base + joiner + FR_ONES[unit]
        if tens == 8:
            return "quatre-vingts" if unit == 0 else "quatre-vingt-" + FR_ONES[unit]
        if unit == 0:
            return FR_TENS[tens]
        return FR_TENS[tens] + (" et un" if unit == 1 else "-" + FR_ONES[unit])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        head = "cent" if hundreds == 1 else FR_ONES[hundreds] + " cent" + ("s" if rest == 0 else "")
        return head if rest == 0 else head + " " + french(rest)
    thousands, rest = divmod(n, 1000)
    head = "mille" if thousands == 1 else french(thousands) + " mille"
    return head if rest == 0 else head + " " + french(rest)


def german(n: int) -> str:
    """0..9999 in German words, one word: 21 einundzwanzig, 101 einhunderteins, 4521 viertausendfünfhunderteinundzwanzig."""
    def below_100(k: int, final: bool) -> str:
        if k == 1:
            return "eins" if final else "ein"
        if k < 20:
            return DE_ONES[k]
        tens, unit = divmod(k, 10)
        return DE_TENS[tens] if unit == 0 else ("ein" if unit == 1 else DE_ONES[unit]) + "und" + DE_TENS[tens]

    if n == 0:
        return "null"
    thousands, rest = divmod(n, 1000)
    hundreds, rest = divmod(rest, 100)
    words = ""
    if thousands:
        words += below_100(thousands, False) + "tausend"
    if hundreds:
        words += below_100(hundreds, False) + "hundert"
    if rest:
        words += below_100(rest, True)
    return words


def target_date(lang: str, y: int, m: int, d: int) -> str:
    if lang == "fra":
        return f"{'1er' if d == 1 else d} {FR_MONTHS[m - 1]} {y}"
    return f"{d}. {DE_MONTHS[m - 1]} {y}"


def example(task: str, lang: str, value, fmt: int = 0) -> dict:
    if task == "date":
        y, m, d = value
        source, target = DATE_FORMATS[fmt](y, m, d), target_date(lang, y, m, d)
    else:
        source = str(value) if task == "digits" else number_to_words(value)
        target = french(value) if lang == "fra" else german(value)
    return {"task": f"{task} → {lang}", "input": f">>{lang}<< {source}", "target": target}


def held_out_set(seed: int) -> tuple[list[dict], set[int], set[tuple[int, int, int]]]:
    """HELD_OUT_PER_TASK examples per task and language whose numbers and dates never occur in training."""
    rng = random.Random(seed + 1)
    n = HELD_OUT_PER_TASK * len(LANGS)
    numbers = rng.sample(range(MAX_NUMBER + 1), 2 * n)
    dates: set = set()
    while len(dates) < n:
        dates.add(random_date(rng))
    dates_list = sorted(dates)
    rows = []
    for i, lang in enumerate(LANGS):
        part = slice(i * HELD_OUT_PER_TASK, (i + 1) * HELD_OUT_PER_TASK)
        rows += [example("digits", lang, v) for v in numbers[:n][part]]
        rows += [example("words", lang, v) for v in numbers[n:][part]]
        rows += [example("date", lang, v, j % len(DATE_FORMATS)) for j, v in enumerate(dates_list[part])]
    return rows, set(numbers), dates


def training_batch(rng: random.Random, size: int, banned_numbers: set[int], banned_dates: set) -> list[dict]:
    rows = []
    while len(rows) < size:
        task, lang = rng.choice(TASKS), rng.choice(LANGS)
        if task == "date":
            value = random_date(rng)
            if value in banned_dates:
                continue
            rows.append(example(task, lang, value, rng.randrange(len(DATE_FORMATS))))
        else:
            # small numbers and round hundreds are rare under a uniform draw and carry the special cases
            r = rng.random()
            value = rng.randint(0, 100) if r < 0.15 else rng.randint(1, 99) * 100 if r < 0.2 else rng.randint(0, MAX_NUMBER)
            if value in banned_numbers:
                continue
            rows.append(example(task, lang, value))
    return rows


def train_tokenizer(out: Path, seed: int) -> None:
    """source.spm (English), target.spm (French + German), vocab.json shared: tags first, <pad> last, as opus-mt."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    rng = random.Random(seed + 2)
    rows = training_batch(rng, 40000, set(), set())
    sources = [r["input"].split(" ", 1)[1] for r in rows]  # MarianTokenizer cuts the tag before sentencepiece
    targets = [r["target"] for r in rows]
    for name, lines, size in (("source", sources, 120), ("target", targets, 300)):
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_prefix=str(out / name), vocab_size=size, hard_vocab_limit=False,
            split_digits=True, model_type="unigram", character_coverage=1.0, num_threads=1, minloglevel=2,
            unk_id=2, bos_id=-1, eos_id=1, pad_id=-1)
        (out / f"{name}.vocab").unlink()
        (out / f"{name}.model").rename(out / f"{name}.spm")
    pieces = []
    for name in ("source", "target"):
        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString((out / f"{name}.spm").read_bytes())
        pieces += [p.piece for p in proto.pieces if p.type == 1]
    vocab = {"</s>": 0, "<unk>": 1}
    for piece in [f">>{lang}<<" for lang in LANGS] + sorted(set(pieces)):
        vocab.setdefault(piece, len(vocab))
    vocab["<pad>"] = len(vocab)
    (out / "vocab.json").write_text(json.dumps(vocab, indent=2, ensure_ascii=False) + "\n")
    specials = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    (out / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "MarianTokenizer", "source_lang": "en", "target_lang": "mul", "separate_vocabs": False,
         "target_vocab_file": None, **specials, "model_max_length": 512, "sp_model_kwargs": {}}, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")


def exact_match(model, tokenizer, rows: list[dict], num_beams: int, batch_size: int = 100) -> tuple[float, list[str]]:
    import torch

    predictions = []
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            enc = tokenizer([r["input"] for r in rows[i : i + batch_size]], return_tensors="pt", padding=True)
            out = model.generate(**enc, max_new_tokens=48, num_beams=num_beams, do_sample=False)
            predictions += tokenizer.batch_decode(out, skip_special_tokens=True)
    correct = sum(p.strip() == r["target"] for p, r in zip(predictions, rows))
    return correct / len(rows), predictions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "demo" / "marian-demo")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from transformers import GenerationConfig, MarianConfig, MarianMTModel, MarianTokenizer

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    train_tokenizer(out, args.seed)
    tokenizer = MarianTokenizer.from_pretrained(out)
    vocab = json.loads((out / "vocab.json").read_text())
    pad, eos = vocab["<pad>"], vocab["</s>"]

    held_out, banned_numbers, banned_dates = held_out_set(args.seed)
    config = MarianConfig(
        vocab_size=len(vocab), d_model=128, encoder_layers=3, decoder_layers=3, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=512, decoder_ffn_dim=512, max_position_embeddings=256,
        activation_function="swish", scale_embedding=True, share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True, dropout=0.1, attention_dropout=0.0, activation_dropout=0.0,
        pad_token_id=pad, eos_token_id=eos, bos_token_id=eos, decoder_start_token_id=pad, forced_eos_token_id=eos,
    )
    model = MarianMTModel(config)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"parameters: {params / 1e6:.2f} M, vocab {len(vocab)}")

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warmup = 400
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps))
    )
    rng = random.Random(args.seed)
    started = time.time()
    model.train()
    for step in range(1, args.steps + 1):
        rows = training_batch(rng, args.batch_size, banned_numbers, banned_dates)
        enc = tokenizer([r["input"] for r in rows], text_target=[r["target"] for r in rows], return_tensors="pt",
                        padding=True)
        enc["labels"][enc["labels"] == pad] = -100
        loss = model(**enc).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % 250 == 0 or step == 1:
            print(f"step {step:5d}  loss {loss.item():.4f}  {time.time() - started:6.0f} s", flush=True)
    model.eval()
    minutes = (time.time() - started) / 60

    scores = {}
    for beams in (1, 4):
        score, predictions = exact_match(model, tokenizer, held_out, beams)
        by_task: dict[str, list[bool]] = {}
        for row, pred in zip(held_out, predictions):
            by_task.setdefault(row["task"], []).append(pred.strip() == row["target"])
        scores[beams] = (score, by_task)
        print(f"held-out exact match, {beams} beam(s): {score:.1%}  "
              + "  ".join(f"{t}: {sum(v) / len(v):.0%}" for t, v in by_task.items()))
        for row, pred in list(zip(held_out, predictions))[:0]:
            print(row, pred)

    model.config.dropout = 0.0
    model.save_pretrained(out)
    # opus-mt's generation_config.json (with a demo-sized max_length)
    GenerationConfig(bad_words_ids=[[pad]], bos_token_id=eos, decoder_start_token_id=pad, eos_token_id=eos,
                     forced_eos_token_id=eos, pad_token_id=pad, max_length=64, num_beams=4).save_pretrained(out)
    with open(out / "held_out.jsonl", "w", encoding="utf-8") as f:
        for row in held_out:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    write_card(out, args, params, len(vocab), scores, minutes)


def write_card(out: Path, args, params: int, vocab: int, scores: dict, minutes: float) -> None:
    tasks = list(scores[1][1])
    rows = "\n".join(
        f"| {task} | " + " | ".join(f"{sum(scores[b][1][task]) / len(scores[b][1][task]):.0%}" for b in (1, 4)) + " |"
        for task in tasks)
    (out / "README.md").write_text(f"""# marian-demo

A small Marian model in opus-mt's layout (like `Helsinki-NLP/opus-mt-en-mul`: one model, several
target languages chosen by a `>>xx<<` tag at the start of the source), trained from scratch by
`scripts/train_translation_demo.py` to be the offline translation quickstart and quality yardstick of
seq2seq-onnx. It is a toy: it translates numbers and dates from English into French and German and
nothing else.

| | |
|---|---|
| parameters | {params / 1e6:.2f} M ({params * 4 / 1e6:.1f} MB fp32) |
| shape | d_model 128, ffn 512, 4 heads, 3 encoder + 3 decoder layers, swish, post-layer-norm, sinusoidal positions, vocab {vocab} |
| tokenizer | source.spm (English) and target.spm (French, German), sentencepiece unigram trained on the task text, digits split; vocab.json shared, `>>fra<<` `>>deu<<` tags first, `<pad>` last |
| generation | opus-mt's: decoder starts from `<pad>`, `<pad>` banned, `</s>` forced at the end, 4 beams |

## Tasks

| source | target |
|---|---|
| `>>fra<< 4521` | `quatre mille cinq cent vingt et un` |
| `>>deu<< four thousand five hundred twenty-one` | `viertausendfünfhunderteinundzwanzig` |
| `>>fra<< March 3, 2021` (also `3rd of March 2021`, `3 March 2021`, `Mar 3rd 2021`, `3 Mar 2021`) | `3 mars 2021` |
| `>>deu<< 1st of May 1999` | `1. Mai 1999` |

Numbers 0 to 9999 as digits or English words; dates 1950 to 2049. French numbers in the traditional
spelling, German numbers as one word.

## Data

Generated on the fly, seeded: {args.steps} steps of {args.batch_size} examples mixed from the three
tasks and two languages. `held_out.jsonl` holds {HELD_OUT_PER_TASK} examples per task and language whose
numbers and dates never appear in training.

## Training

```bash
python scripts/train_translation_demo.py --steps {args.steps} --batch-size {args.batch_size} --lr {args.lr} --seed {args.seed}
```

CPU, {args.threads} threads, {minutes:.0f} minutes on a 2-core machine.

## Scores (PyTorch, held-out set, exact match)

| task | greedy | 4 beams |
|---|---|---|
{rows}
| **all** | **{scores[1][0]:.1%}** | **{scores[4][0]:.1%}** |
""")


if __name__ == "__main__":
    main()
