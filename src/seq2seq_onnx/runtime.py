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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
    return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])


@dataclass
class GenerationDefaults:
    """What generation_config.json (or config.json) says, with transformers' fallbacks."""

    decoder_start_token_id: int
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    max_new_tokens: int

    @classmethod
    def from_folder(cls, folder: Path) -> "GenerationDefaults":
        config = json.loads((folder / "config.json").read_text())
        gen_path = folder / "generation_config.json"
        gen = json.loads(gen_path.read_text()) if gen_path.exists() else {}

        def pick(key, default=None):
            value = gen.get(key)
            return config.get(key, default) if value is None else value

        eos = pick("eos_token_id", 1)
        pad = pick("pad_token_id", 0)
        start = pick("decoder_start_token_id", pad)
        if gen.get("max_new_tokens") is not None:
            max_new = gen["max_new_tokens"]
        else:  # transformers counts the decoder start token in max_length (default 20)
            max_new = int(gen.get("max_length") or 20) - 1
        return cls(
            decoder_start_token_id=int(start),
            eos_token_ids=tuple(int(e) for e in (eos if isinstance(eos, list) else [eos])),
            pad_token_id=int(pad),
            max_new_tokens=int(max_new),
        )


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

    def empty_cache(self, batch: int, encoder_states: np.ndarray) -> dict[str, np.ndarray]:
        cache = {}
        for name in self.past_names:
            meta = self.inputs[name]
            shape = [d if isinstance(d, int) else 0 for d in meta.shape]
            shape[0] = batch
            cache[name] = np.zeros(shape, dtype=_NUMPY_TYPES.get(meta.type, np.float32))
        return cache

    def step(self, tokens: np.ndarray, step: int, encoder_states, encoder_mask, cache: dict) -> np.ndarray:
        """Logits for the last position; `tokens` is the whole sequence so far. Updates `cache` in place."""
        use_cache = self.layout != "no-cache" and step > 0
        feed = {
            "input_ids": tokens[:, -1:] if use_cache else tokens,
            "encoder_attention_mask": encoder_mask,
            "encoder_hidden_states": encoder_states,
        }
        session, names = (self.later, self.later_output_names) if use_cache else (self.first, self.output_names)
        wanted = {i.name for i in session.get_inputs()}
        if "use_cache_branch" in wanted:
            feed["use_cache_branch"] = np.array([use_cache])
        if self.layout != "no-cache":
            feed.update({k: v for k, v in cache.items() if k in wanted})
        feed = {k: v for k, v in feed.items() if k in wanted}
        outputs = dict(zip(names, session.run(names, feed)))
        for name in self.past_names:
            present = "present." + name[len("past_key_values.") :]
            # The cross-attention cache is computed once, at step 0; later steps keep it.
            if present in outputs and (".decoder." in name or step == 0):
                cache[name] = outputs[present]
        return outputs["logits"][:, -1, :]


class Seq2SeqOnnxModel:
    """An exported encoder-decoder model on ONNX Runtime."""

    def __init__(self, folder: Path, dtype: str, encoder, decoder: DecoderRunner, tokenizer, defaults: GenerationDefaults):
        self.folder = folder
        self.dtype = dtype
        self.encoder = encoder
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.defaults = defaults

    @classmethod
    def from_pretrained(cls, folder, dtype: str = "fp32", threads: int | None = None, providers=None) -> "Seq2SeqOnnxModel":
        folder = Path(folder)
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
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        return cls(
            folder,
            dtype,
            _session(encoder_path, threads, providers),
            DecoderRunner(onnx_dir, suffix, threads, providers),
            tokenizer,
            GenerationDefaults.from_folder(folder),
        )

    def tokenize(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        encodings = self.tokenizer.encode_batch(list(texts))
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.defaults.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for i, e in enumerate(encodings):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        return ids, mask

    def generate(self, input_ids, attention_mask=None, max_new_tokens: int | None = None) -> np.ndarray:
        """Greedy decoding. Returns ids shaped like transformers' generate: [batch, 1 + new tokens], start token first."""
        input_ids = np.asarray(input_ids, dtype=np.int64)
        if input_ids.ndim == 1:
            input_ids = input_ids[None, :]
        attention_mask = np.ones_like(input_ids) if attention_mask is None else np.asarray(attention_mask, dtype=np.int64)
        max_new_tokens = self.defaults.max_new_tokens if max_new_tokens is None else max_new_tokens
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        batch = input_ids.shape[0]
        (states,) = self.encoder.run(["last_hidden_state"], {"input_ids": input_ids, "attention_mask": attention_mask})
        cache = self.decoder.empty_cache(batch, states)
        tokens = np.full((batch, 1), self.defaults.decoder_start_token_id, dtype=np.int64)
        finished = np.zeros(batch, dtype=bool)
        eos = np.array(self.defaults.eos_token_ids)
        for step in range(max_new_tokens):
            logits = self.decoder.step(tokens, step, states, attention_mask, cache)
            next_ids = np.where(finished, self.defaults.pad_token_id, logits.argmax(-1))
            tokens = np.concatenate([tokens, next_ids[:, None].astype(np.int64)], axis=1)
            finished |= np.isin(next_ids, eos)
            if finished.all():
                break
        return tokens

    def decode(self, ids) -> list[str]:
        return self.tokenizer.decode_batch([list(map(int, row)) for row in ids], skip_special_tokens=True)

    def generate_text(self, texts, max_new_tokens: int | None = None) -> list[str]:
        single = isinstance(texts, str)
        ids, mask = self.tokenize([texts] if single else texts)
        out = self.decode(self.generate(ids, mask, max_new_tokens=max_new_tokens))
        return out[0] if single else out
