"""Run an exported folder on ONNX Runtime: no torch, no transformers modeling code.

`Seq2SeqOnnxModel.from_pretrained(folder, dtype=...)` loads the encoder and decoder files of the
requested dtype (Transformers.js file suffixes), the tokenizer (`tokenizer.json`) and
`generation_config.json`. The decoder may come in any of the layouts found in the wild:

- merged (`decoder_model_merged*.onnx`, ours and Optimum's): one graph, `use_cache_branch`;
- split (`decoder_model.onnx` + `decoder_with_past_model.onnx`, older Optimum exports);
- without cache (`decoder_model.onnx` only): fed the whole prefix every step. Correct, slower,
  and never the last-token-only mistake that makes Transformers.js repeat tokens.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from .generation import GenerationOptions, GreedyOrSampling, decoder_for

DTYPE_SUFFIXES = {
    "fp32": "",
    "fp16": "_fp16",
    "int8": "_int8",
    "uint8": "_uint8",
    "q8": "_quantized",
    "q4": "_q4",
    "q4f16": "_q4f16",
    "bnb4": "_bnb4",
}
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class ModelFolderError(ValueError):
    """The folder lacks the files a dtype or layout needs."""


def _session(path: Path, threads: int | None, providers):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelFolderError(f"ONNX Runtime cannot load {path.name}: {first}") from None


# generation_config.json keys we honour, and those we know but do not implement (warned about).
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


def _stable_cut(text: str) -> int:
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


class DecoderRunner:
    """One decoder step over whichever decoder layout the folder has; keeps the cache between steps."""

    def __init__(self, onnx_dir: Path, suffix: str, threads, providers):
        merged = onnx_dir / f"decoder_model_merged{suffix}.onnx"
        plain = onnx_dir / f"decoder_model{suffix}.onnx"
        with_past = onnx_dir / f"decoder_with_past_model{suffix}.onnx"
        if merged.exists():
            self.first = self.later = _session(merged, threads, providers)
            self.layout = "merged"
        elif plain.exists() and with_past.exists():
            self.first = _session(plain, threads, providers)
            self.later = _session(with_past, threads, providers)
            self.layout = "split"
        elif plain.exists():
            self.first = self.later = _session(plain, threads, providers)
            self.layout = "no-cache"
        else:
            raise ModelFolderError(f"no decoder_model_merged{suffix}.onnx or decoder_model{suffix}.onnx in {onnx_dir}")
        # Cache inputs are those of the graph that runs the later steps (the with-past one when split).
        self.inputs = {i.name: i for i in self.later.get_inputs()}
        self.past_names = [n for n in self.inputs if n.startswith("past_key_values.")]
        if self.layout == "merged" and not self.past_names:
            self.layout = "no-cache"  # a no-past decoder renamed to the merged name
        if self.layout == "no-cache":
            warnings.warn(
                f"{onnx_dir} has a decoder without key/value cache: generation feeds the whole prefix "
                "every step (correct but slower). Re-export with `seq2seq-onnx convert` for a cached decoder.",
                stacklevel=3,
            )
        self.output_names = [o.name for o in self.first.get_outputs()]
        self.later_output_names = [o.name for o in self.later.get_outputs()]
        self.first_inputs = {i.name for i in self.first.get_inputs()}
        self.later_inputs = set(self.inputs)

    def empty_cache(self, batch: int, encoder_states: np.ndarray) -> dict[str, np.ndarray]:
        cache = {}
        for name in self.past_names:
            meta = self.inputs[name]
            shape = [d if isinstance(d, int) else 0 for d in meta.shape]
            shape[0] = batch
            cache[name] = np.zeros(shape, dtype=_NUMPY_TYPES.get(meta.type, np.float32))
        return cache

    def step(self, tokens: np.ndarray, step: int, encoder_states, encoder_mask, cache: dict) -> np.ndarray:
        """Logits for the last position; `tokens` is the whole sequence so far. Updates `cache` in place.

        The cache stays in ONNX Runtime values (IO binding): a step's `present.*` outputs are
        bound as the next step's `past_key_values.*` inputs without a numpy round trip.
        """
        use_cache = self.layout != "no-cache" and step > 0
        session, names = (self.later, self.later_output_names) if use_cache else (self.first, self.output_names)
        wanted = self.later_inputs if use_cache else self.first_inputs
        binding = session.io_binding()
        feed = {
            "input_ids": np.ascontiguousarray(tokens[:, -1:] if use_cache else tokens),
            "encoder_attention_mask": encoder_mask,
            "encoder_hidden_states": encoder_states,
        }
        if "use_cache_branch" in wanted:
            feed["use_cache_branch"] = np.array([use_cache])
        for name, value in feed.items():
            if name in wanted:
                binding.bind_cpu_input(name, value)
        if self.layout != "no-cache":
            for name, value in cache.items():
                if name in wanted:
                    if isinstance(value, np.ndarray):
                        binding.bind_cpu_input(name, value)
                    else:
                        binding.bind_ortvalue_input(name, value)
        for name in names:
            binding.bind_output(name, "cpu")
        session.run_with_iobinding(binding)
        outputs = dict(zip(names, binding.get_outputs()))
        for name in self.past_names:
            present = "present." + name[len("past_key_values.") :]
            # The cross-attention cache is computed once, at step 0; later steps keep it.
            if present in outputs and (".decoder." in name or step == 0):
                cache[name] = outputs[present]
        return outputs["logits"].numpy()[:, -1, :]


def _numpy(value) -> np.ndarray:
    return value if isinstance(value, np.ndarray) else value.numpy()


class _DecodingState:
    """The per-call state of one generation: encoder output, mask and cache of the rows still running."""

    def __init__(self, runner: DecoderRunner, states: np.ndarray, mask: np.ndarray):
        self.runner = runner
        self.states = states
        self.mask = mask
        self.cache = runner.empty_cache(states.shape[0], states)

    def logits(self, tokens: np.ndarray, step: int) -> np.ndarray:
        return self.runner.step(tokens, step, self.states, self.mask, self.cache)

    def select(self, rows: np.ndarray) -> None:
        self.states, self.mask = self.states[rows], self.mask[rows]
        self.cache = {k: _numpy(v)[rows] for k, v in self.cache.items()}

    def reorder_beams(self, rows: np.ndarray) -> None:
        # Beams of one input share its cross-attention cache; only the self-attention cache moves.
        if np.array_equal(rows, np.arange(len(rows))):
            return  # every beam continues itself: nothing to move
        for name, value in self.cache.items():
            if ".decoder." in name:
                self.cache[name] = _numpy(value)[rows]


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
            _session(encoder_path, threads, providers),
            DecoderRunner(onnx_dir, suffix, threads, providers),
            tokenizer,
            options,
            clean_up_tokenization_spaces=clean_up,
        )

    def tokenize(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Right-padded ids and attention mask, as T5 tokenizers pad."""
        if not texts:
            raise ValueError("no input text")
        encodings = self.tokenizer.encode_batch(list(texts))
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.generation_options.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for i, e in enumerate(encodings):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        return ids, mask

    def _start(self, input_ids, attention_mask, copies: int) -> tuple[_DecodingState, int]:
        input_ids = np.asarray(input_ids, dtype=np.int64)
        if input_ids.ndim == 1:
            input_ids = input_ids[None, :]
        if input_ids.ndim != 2 or input_ids.shape[1] == 0:
            raise ValueError(f"input_ids must be [batch, length] with length > 0, got shape {input_ids.shape}")
        mask = np.ones_like(input_ids) if attention_mask is None else np.asarray(attention_mask, dtype=np.int64)
        if mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask shape {mask.shape} differs from input_ids shape {input_ids.shape}")
        (states,) = self.encoder.run(["last_hidden_state"], {"input_ids": input_ids, "attention_mask": mask})
        if copies > 1:  # encoder once per input, its output shared by the beams / samples
            states, mask = np.repeat(states, copies, axis=0), np.repeat(mask, copies, axis=0)
        return _DecodingState(self.decoder, states, mask), input_ids.shape[0]

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
        return [clean_up_tokenization(t) for t in texts] if self.clean_up_tokenization_spaces else texts

    def _decode_one(self, ids: list[int]) -> str:
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return clean_up_tokenization(text) if self.clean_up_tokenization_spaces else text

    def generate_text(self, texts, **options):
        """Texts in, texts out (one string per input, or per returned sequence with num_return_sequences)."""
        single = isinstance(texts, str)
        ids, mask = self.tokenize([texts] if single else list(texts))
        out = self.decode(self.generate(ids, mask, **options))
        return out[0] if single and len(out) == 1 else out

    def stream(self, text: str, **options) -> Iterator[str]:
        """Yield pieces of the generated text as tokens arrive (greedy or sampling, one input)."""
        opts = self.generation_options.updated(**options)
        if opts.num_beams > 1 or opts.num_return_sequences > 1:
            raise ValueError("stream() generates one sequence: use num_beams=1 and num_return_sequences=1")
        ids, mask = self.tokenize([text])
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
                stable = clean_up_tokenization(stable[: _stable_cut(stable)])
            if len(stable) > len(shown) and stable.startswith(shown):
                yield stable[len(shown) :]
                shown = stable
        final = self._decode_one(generated)
        if final != shown:
            yield final[len(shown) :] if final.startswith(shown) else final


class Text2TextPipeline:
    """`pipeline("text2text-generation", folder)`, for people coming from transformers."""

    def __init__(self, model: Seq2SeqOnnxModel):
        self.model = model

    def __call__(self, inputs, **options):
        single = isinstance(inputs, str)
        texts = [inputs] if single else list(inputs)
        outputs = self.model.generate_text(texts, **options)
        outputs = [outputs] if isinstance(outputs, str) else outputs
        per_input = len(outputs) // len(texts)
        grouped = [[{"generated_text": t} for t in outputs[i * per_input : (i + 1) * per_input]] for i in range(len(texts))]
        if single:
            return grouped[0]
        return [g[0] for g in grouped] if per_input == 1 else grouped


def pipeline(task: str, model, **load_options) -> Text2TextPipeline:
    if task not in ("text2text-generation", "translation", "summarization"):
        raise ValueError(f"unsupported task {task!r}: seq2seq-onnx runs text2text-generation")
    if not isinstance(model, Seq2SeqOnnxModel):
        model = Seq2SeqOnnxModel.from_pretrained(model, **load_options)
    return Text2TextPipeline(model)
