"""ONNX Runtime sessions for an export folder, and one decoder step over any decoder layout.

The decoder may come in any of the layouts found in the wild:

- merged (`decoder_model_merged*.onnx`, ours and Optimum's): one graph, `use_cache_branch`;
- split (`decoder_model.onnx` + `decoder_with_past_model.onnx`, older Optimum exports);
- without cache (`decoder_model.onnx` only): fed the whole prefix every step. Correct, slower,
  and never the last-token-only mistake that makes Transformers.js repeat tokens.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

# Transformers.js's dtype names and the file suffixes it loads for them.
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


def open_session(path: Path, threads: int | None, providers):
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


class DecoderRunner:
    """One decoder step over whichever decoder layout the folder has; keeps the cache between steps."""

    def __init__(self, onnx_dir: Path, suffix: str, threads, providers):
        merged = onnx_dir / f"decoder_model_merged{suffix}.onnx"
        plain = onnx_dir / f"decoder_model{suffix}.onnx"
        with_past = onnx_dir / f"decoder_with_past_model{suffix}.onnx"
        if merged.exists():
            self.first = self.later = open_session(merged, threads, providers)
            self.layout = "merged"
        elif plain.exists() and with_past.exists():
            self.first = open_session(plain, threads, providers)
            self.later = open_session(with_past, threads, providers)
            self.layout = "split"
        elif plain.exists():
            self.first = self.later = open_session(plain, threads, providers)
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


class DecodingState:
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
