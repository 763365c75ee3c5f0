"""Run an exported folder on ONNX Runtime: no torch, no transformers modeling code.

`Seq2SeqOnnxModel.from_pretrained(folder, dtype=...)` loads the encoder and decoder files of the
requested dtype (Transformers.js file suffixes, see `sessions.py`), the tokenizer
(`tokenizer.json`) and `generation_config.json`; `generate` drives a decoding strategy
(`decoding.py`) over a `DecodingState`; `pipeline()` is transformers' text2text interface.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from .decoding import GreedyOrSampling, decoder_for
from .options import GenerationOptions
from .sessions import DTYPE_SUFFIXES, DecoderRunner, ModelFolderError, DecodingState, encoder_graph, open_session
from .text import clean_up_tokenization, cleans_up_spaces, stable_prefix_length, strips_decoded_text
from .translation import Languages, Translation


_CONFIG_KEYS = (
    "max_new_tokens", "max_length", "min_new_tokens", "min_length", "num_beams", "length_penalty",
    "early_stopping", "num_return_sequences", "do_sample", "temperature", "top_k", "top_p",
    "repetition_penalty", "no_repeat_ngram_size", "bad_words_ids", "forced_bos_token_id", "forced_eos_token_id",
)
_UNSUPPORTED_KEYS = {
    "suppress_tokens": None, "begin_suppress_tokens": None, "encoder_no_repeat_ngram_size": 0,
    "encoder_repetition_penalty": 1.0, "exponential_decay_length_penalty": None, "renormalize_logits": False,
    "sequence_bias": None, "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "min_p": None,
    "diversity_penalty": 0.0, "num_beam_groups": 1, "penalty_alpha": None, "guidance_scale": None,
    "max_time": None, "stop_strings": None, "remove_invalid_values": False,
}


_RELATIVE_POSITIONS = ("t5", "mt5", "umt5")  # position buckets: no length limit


def max_source_positions(folder: Path) -> int | None:
    """The longest input the encoder takes, in tokens: config.json's `max_position_embeddings` for models with a
    position table (BART, mBART, Marian, M2M100/NLLB, Pegasus), None for T5's relative positions.

    Past it, the exported position lookup fails inside ONNX Runtime ("indices element out of data bounds").
    """
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    limit = config.get("max_position_embeddings")
    if config.get("model_type") in _RELATIVE_POSITIONS or not isinstance(limit, int) or limit <= 0:
        return None
    return limit


def options_from_folder(folder: Path) -> GenerationOptions:
    """Default generation options: generation_config.json, then config.json, then transformers' defaults."""
    config = json.loads((folder / "config.json").read_text())
    gen_path = folder / "generation_config.json"
    gen = json.loads(gen_path.read_text()) if gen_path.exists() else {}

    def pick(key, default=None):
        value = gen.get(key)
        return config.get(key, default) if value is None else value

    eos = pick("eos_token_id", 1)
    pad = pick("pad_token_id", 0)
    # No length in the file: left unset, so that a max_length passed to generate() decides, as in
    # transformers; with none at all, GenerationOptions.new_tokens gives transformers' 20 new tokens.
    values = {k: gen[k] for k in _CONFIG_KEYS if gen.get(k) is not None}
    if "bad_words_ids" in values:
        values["bad_words_ids"] = tuple(tuple(s) for s in values["bad_words_ids"])
    ignored = [k for k, default in _UNSUPPORTED_KEYS.items() if gen.get(k, default) != default]
    if ignored:
        warnings.warn(
            f"{gen_path} sets {', '.join(ignored)}, which seq2seq-onnx does not implement; ignored", stacklevel=3
        )
    options = GenerationOptions(
        decoder_start_token_id=int(pick("decoder_start_token_id", pad)),
        eos_token_ids=tuple(int(e) for e in (eos if isinstance(eos, list) else [eos])),
        pad_token_id=int(pad),
        **values,
    )
    options.validate()
    return options


def _open_encoder(path: Path, threads, providers):
    """The encoder's session: its slimmed graph (`encoder_graph`), or the file itself when there is none or it does
    not load (a damaged cache entry). It runs once per generation, so its threads do not spin (see `open_session`)."""
    graph = encoder_graph(path)
    if graph:
        try:
            return open_session(graph, threads, providers, name=path.name, spinning=False)
        except ModelFolderError:
            pass
    return open_session(path, threads, providers, spinning=False)


class Seq2SeqOnnxModel:
    """An exported encoder-decoder model on ONNX Runtime.

    Thread-safe: sessions are shared, and every call keeps its own decoding state.
    """

    def __init__(self, folder: Path, dtype: str, encoder, decoder: DecoderRunner, tokenizer, options: GenerationOptions,
                 clean_up_tokenization_spaces: bool = False):
        self.folder = folder
        self.dtype = dtype
        self.encoder = encoder
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.generation_options = options
        # tokenizer_config.json's `clean_up_tokenization_spaces`, as transformers' decode honours it
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        # Marian / M2M100: transformers' Python tokenizers strip decoded text (see runtime/text.py)
        self.strip_decoded = strips_decoded_text(folder)
        self._languages: Languages | None = None
        self.max_source_positions = max_source_positions(folder)

    @classmethod
    def from_pretrained(cls, folder, dtype: str = "fp32", threads: int | None = None, providers=None) -> "Seq2SeqOnnxModel":
        """Load `folder`'s encoder and decoder of `dtype` (Transformers.js file suffixes), tokenizer and generation defaults."""
        folder = Path(folder)
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise ValueError(f"threads must be a positive integer (or None for all cores), got {threads!r}")
        if dtype not in DTYPE_SUFFIXES:
            raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPE_SUFFIXES)}")
        if not (folder / "config.json").is_file():
            raise ModelFolderError(f"{folder} has no config.json: not an exported model folder")
        suffix = DTYPE_SUFFIXES[dtype]
        onnx_dir = folder / "onnx" if (folder / "onnx").is_dir() else folder
        encoder_path = onnx_dir / f"encoder_model{suffix}.onnx"
        if not encoder_path.exists():
            present = [d for d, s in DTYPE_SUFFIXES.items() if (onnx_dir / f"encoder_model{s}.onnx").exists()]
            raise ModelFolderError(
                f"no {encoder_path.name} in {onnx_dir} (dtype {dtype}); dtypes present: {', '.join(present) or 'none'}"
            )
        if not (folder / "tokenizer.json").is_file():
            raise ModelFolderError(f"{folder} has no tokenizer.json")
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            options = options_from_folder(folder)
            clean_up = cleans_up_spaces(folder, tokenizer)
        except Exception as err:  # the tokenizers library raises plain Exception on bad JSON
            raise ModelFolderError(f"cannot read the tokenizer or configs of {folder}: {err}") from None
        return cls(
            folder,
            dtype,
            _open_encoder(encoder_path, threads, providers),
            DecoderRunner(onnx_dir, suffix, threads, providers),
            tokenizer,
            options,
            clean_up_tokenization_spaces=clean_up,
        )

    @property
    def languages(self) -> Languages:
        """The model's language codes and the family's rule for src_lang / tgt_lang (see runtime/translation.py)."""
        if self._languages is None:
            self._languages = Languages(self.folder, self.tokenizer)
        return self._languages

    def _translation(self, src_lang: str | None, tgt_lang: str | None) -> Translation:
        if src_lang is None and tgt_lang is None:
            return Translation(tokenizer=self.tokenizer, options={})
        return self.languages.apply(src_lang, tgt_lang)

    def tokenize(self, texts: list[str], src_lang: str | None = None, tgt_lang: str | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Right-padded ids [batch, length] and attention mask (int64), as the families' tokenizers pad.

        `src_lang` / `tgt_lang` apply the family's translation rule to the input (source code in the
        template; Marian's `>>xx<<` tag); the target's generation options come from `generate_text`.
        Raises ValueError for no text or an input longer than the model's position table
        (`max_source_positions`), UnknownLanguageError for a code the model lacks.
        """
        if not texts:
            raise ValueError("no input text")
        translation = self._translation(src_lang, tgt_lang)
        encodings = translation.tokenizer.encode_batch([translation.prefix + t for t in texts])
        width = max(len(e.ids) for e in encodings)
        limit = self.max_source_positions
        if limit is not None and width > limit:
            longest = max(range(len(encodings)), key=lambda i: len(encodings[i].ids))
            which = "the input" if len(encodings) == 1 else f"input {longest} of the batch"
            raise ValueError(f"{which} is {width} tokens long; this model takes at most {limit} "
                             "(max_position_embeddings in config.json): shorten it")
        ids = np.full((len(encodings), width), self.generation_options.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for i, e in enumerate(encodings):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        return ids, mask

    def _start(self, input_ids, attention_mask, copies: int) -> tuple[DecodingState, int]:
        input_ids = np.asarray(input_ids, dtype=np.int64)
        if input_ids.ndim == 1:
            input_ids = input_ids[None, :]
        if input_ids.ndim != 2 or input_ids.shape[1] == 0:
            raise ValueError(f"input_ids must be [batch, length] with length > 0, got shape {input_ids.shape}")
        mask = np.ones_like(input_ids) if attention_mask is None else np.asarray(attention_mask, dtype=np.int64)
        if mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask shape {mask.shape} differs from input_ids shape {input_ids.shape}")
        feed = {"input_ids": input_ids, "attention_mask": mask}
        wanted = {i.name for i in self.encoder.get_inputs()}  # a slimmed encoder may have dropped an unused input
        (states,) = self.encoder.run(["last_hidden_state"], {k: v for k, v in feed.items() if k in wanted})
        if copies > 1:  # encoder once per input, its output shared by the beams / samples
            states, mask = np.repeat(states, copies, axis=0), np.repeat(mask, copies, axis=0)
        return DecodingState(self.decoder, states, mask), input_ids.shape[0]

    def generate(self, input_ids, attention_mask=None, return_dict: bool = False, **options):
        """Generate ids shaped like transformers' generate: [batch * num_return_sequences, 1 + new tokens].

        Options (transformers' names and meanings, defaults from generation_config.json): max_new_tokens,
        max_length, min_new_tokens, min_length, num_beams, length_penalty, early_stopping,
        num_return_sequences, do_sample, temperature, top_k, top_p, repetition_penalty,
        no_repeat_ngram_size, bad_words_ids, seed. With return_dict=True, a GenerationResult with beam scores.

        Lengths as in transformers 5: max_length and min_length count the decoder start token;
        max_new_tokens and min_new_tokens, when set by generation_config.json or the call, take
        precedence over them (pass max_new_tokens=None to let a max_length decide).
        """
        opts = self.generation_options.updated(**options)
        strategy = decoder_for(opts)
        copies = opts.num_beams if opts.num_beams > 1 else opts.num_return_sequences
        state, batch = self._start(input_ids, attention_mask, copies)
        result = strategy.run(state, batch) if opts.num_beams > 1 else strategy.run(state, batch * copies)
        return result if return_dict else result.sequences

    def decode(self, ids) -> list[str]:
        """Texts of id rows, as transformers' `tokenizer.batch_decode(ids, skip_special_tokens=True)`."""
        texts = self.tokenizer.decode_batch([list(map(int, row)) for row in ids], skip_special_tokens=True)
        return [self._finish(t) for t in texts]

    def _finish(self, text: str) -> str:
        text = clean_up_tokenization(text) if self.clean_up_tokenization_spaces else text
        return text.strip() if self.strip_decoded else text

    def _decode_one(self, ids: list[int]) -> str:
        return self._finish(self.tokenizer.decode(ids, skip_special_tokens=True))

    def generate_text(self, texts, src_lang: str | None = None, tgt_lang: str | None = None, **options):
        """Texts in, texts out (one string per input, or per returned sequence with num_return_sequences).

        `src_lang` / `tgt_lang`: translation languages by the family's rule (mBART-50, M2M100, NLLB:
        source code in the input, target as forced first token; mBART cc25: target as decoder
        start; Marian: `>>xx<<` tag), as transformers' recipes and Transformers.js do.
        """
        single = isinstance(texts, str)
        translation = self._translation(src_lang, tgt_lang)
        ids, mask = self.tokenize([texts] if single else list(texts), src_lang, tgt_lang)
        out = self.decode(self.generate(ids, mask, **{**translation.options, **options}))
        return out[0] if single and len(out) == 1 else out

    def stream(self, text: str, src_lang: str | None = None, tgt_lang: str | None = None, **options) -> Iterator[str]:
        """Yield pieces of the generated text as tokens arrive (greedy or sampling, one input)."""
        translation = self._translation(src_lang, tgt_lang)
        opts = self.generation_options.updated(**{**translation.options, **options})
        if opts.num_beams > 1 or opts.num_return_sequences > 1:
            raise ValueError("stream() generates one sequence: use num_beams=1 and num_return_sequences=1")
        ids, mask = self.tokenize([text], src_lang, tgt_lang)
        state, _ = self._start(ids, mask, 1)
        generated: list[int] = []
        shown = ""
        clean_up = self.clean_up_tokenization_spaces
        for column in GreedyOrSampling(opts).steps(state, 1):
            generated.append(int(column[0]))
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            # hold back a character still being assembled from byte pieces (decoded as U+FFFD)
            stable = text.rstrip("\ufffd")
            if clean_up:
                # and text whose clean-up the next tokens may change (" ." -> "."): the pieces
                # must add up to the final text, and a yielded space cannot be taken back
                stable = clean_up_tokenization(stable[: stable_prefix_length(stable)])
            if self.strip_decoded:
                # transformers strips the whole text: no leading space, and a trailing one only once text follows
                stable = stable.lstrip().rstrip()
            if len(stable) > len(shown) and stable.startswith(shown):
                yield stable[len(shown) :]
                shown = stable
        final = self._decode_one(generated)
        if final != shown:
            yield final[len(shown) :] if final.startswith(shown) else final


class Text2TextPipeline:
    """`pipeline("text2text-generation" | "translation" | "summarization", folder)`, for people coming from transformers.

    Results are keyed as transformers' pipelines key them: `generated_text`, `translation_text`,
    `summary_text`. A translation pipeline takes `src_lang` / `tgt_lang`.
    """

    _KEYS = {"text2text-generation": "generated_text", "translation": "translation_text", "summarization": "summary_text"}

    def __init__(self, model: Seq2SeqOnnxModel, task: str = "text2text-generation"):
        self.model = model
        self.task = task

    def __call__(self, inputs, **options):
        single = isinstance(inputs, str)
        texts = [inputs] if single else list(inputs)
        outputs = self.model.generate_text(texts, **options)
        outputs = [outputs] if isinstance(outputs, str) else outputs
        per_input = len(outputs) // len(texts)
        key = self._KEYS[self.task]
        grouped = [[{key: t} for t in outputs[i * per_input : (i + 1) * per_input]] for i in range(len(texts))]
        if single:
            return grouped[0]
        return [g[0] for g in grouped] if per_input == 1 else grouped


def pipeline(task: str, model, **load_options) -> Text2TextPipeline:
    if task not in ("text2text-generation", "translation", "summarization"):
        raise ValueError(f"unsupported task {task!r}: seq2seq-onnx runs text2text-generation")
    if not isinstance(model, Seq2SeqOnnxModel):
        model = Seq2SeqOnnxModel.from_pretrained(model, **load_options)
    return Text2TextPipeline(model, task)
