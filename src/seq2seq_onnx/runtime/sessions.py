"""ONNX Runtime sessions for an export folder, and one decoder step over any decoder layout.

The decoder may come in any of the layouts found in the wild:

- merged (`decoder_model_merged*.onnx`, ours and Optimum's): one graph, `use_cache_branch`;
- split (`decoder_model.onnx` + `decoder_with_past_model.onnx`, older Optimum exports);
- without cache (`decoder_model.onnx` only): fed the whole prefix every step. Correct, slower,
  and never the last-token-only mistake that makes Transformers.js repeat tokens.
"""

from __future__ import annotations

import os
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


def open_session(path, threads: int | None, providers, name: str | None = None, spinning: bool = True):
    """An ORT session for a file path, or for a serialized model (bytes; `name` for messages).

    `spinning=False` sets `session.intra_op.allow_spinning` to 0: the session's worker threads sleep
    as soon as a run ends instead of spinning. Each session has its own thread pool, so the spinning
    workers of a session that just ran (the encoder, the first decoder step) take the cores from the
    one that runs next; only the session that runs every step should spin. A/B, one process per
    variant, flan-t5-small shape, 2 threads, batch 1 greedy fp32: 10.35 ms/step with every session
    spinning, 9.21 with only the later steps' one; batch 8 (greedy fp32, 4 beams q8): within noise.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        model = path if isinstance(path, bytes) else str(path)
        return ort.InferenceSession(model, options, providers=providers or ["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelFolderError(f"ONNX Runtime cannot load {name or Path(path).name}: {first}") from None


# generation_config.json keys we honour, and those we know but do not implement (warned about).


_MAX_IN_MEMORY_GRAPH = 1_800_000_000  # protobuf's 2 GB limit, with room


def cached_branch_model(merged_path: Path) -> bytes | None:
    """The merged decoder's cached branch (`use_cache_branch` true) as a graph of its own, for this runtime only.

    Steps after the first run it instead of the merged graph: no `If`, and no `present.*.encoder.*`
    outputs, which in the merged graph are Identity copies of the cross-attention cache made at
    every step (a quarter of ONNX Runtime's time at batch 8 x 4 beams for flan-t5-small; this
    runtime keeps the step-0 cross-attention cache anyway). The file on disk is not touched:
    Transformers.js still loads the merged graph. Returns None when the graph is not a merged
    decoder of the usual shape or too large to build in memory (then the merged graph runs every step).
    """
    import onnx
    from onnx import helper

    try:
        if merged_path.stat().st_size > _MAX_IN_MEMORY_GRAPH or any(merged_path.parent.glob(merged_path.name + "_data*")):
            return None
        model = onnx.load(str(merged_path))
    except Exception:
        return None
    graph = model.graph
    ifs = [n for n in graph.node if n.op_type == "If"]
    if len(ifs) != 1 or graph.node[-1] is not ifs[0] or list(ifs[0].input) != ["use_cache_branch"]:
        return None
    if_node = ifs[0]
    branch = next((a.g for a in if_node.attribute if a.name == "then_branch"), None)
    if branch is None or len(branch.output) != len(if_node.output):
        return None
    keep = [i for i, name in enumerate(if_node.output) if not (name.startswith("present.") and ".encoder." in name)]
    # outputs: the branch's values under the merged graph's names (an Identity only where the names differ)
    renames = [helper.make_node("Identity", [branch.output[i].name], [if_node.output[i]], name=f"output/{if_node.output[i]}")
               for i in keep if branch.output[i].name != if_node.output[i]]
    outputs = {o.name: o for o in graph.output}
    nodes = [n for n in graph.node if n is not if_node] + list(branch.node) + renames
    used = {name for node in nodes for name in node.input}
    for node in nodes:  # names read inside nested subgraphs (none in our exports; others may have them)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                used |= {name for sub in attr.g.node for name in sub.input}
    new_graph = helper.make_graph(
        nodes, "decoder_with_past", [i for i in graph.input if i.name in used], [outputs[if_node.output[i]] for i in keep],
        [t for t in graph.initializer if t.name in used])
    new_graph.value_info.extend(branch.value_info)
    out = helper.make_model(new_graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    del model
    try:
        return out.SerializeToString()
    except ValueError:  # over 2 GB after all
        return None


RUNTIME_GRAPH_VERSION = 2  # bump when cached_branch_model or the slimming changes what it builds


def runtime_cache_dir() -> Path:
    """Where runtime-only graphs are cached: `$SEQ2SEQ_ONNX_CACHE`, default `~/.cache/seq2seq-onnx/runtime-graphs`."""
    base = os.environ.get("SEQ2SEQ_ONNX_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "seq2seq-onnx" / "runtime-graphs"


def runtime_graph(merged_path: Path) -> bytes | None:
    """The graph this runtime runs for steps after the first: the cached branch, slimmed by onnxslim, cached on disk.

    onnxslim folds the export's shape arithmetic (Shape -> Gather -> Unsqueeze -> Concat chains that
    TorchScript emits for every reshape) and constants, which ONNX Runtime otherwise runs as
    hundreds of tiny nodes each step: flan-t5-small's cached branch goes from 965 computing
    nodes to 742 (fp32); same-run A/B q8 batch 8 x 4 beams 182 -> 209 tok/s, fp32 batch 1
    11.1 -> 10.7 ms/step, ids unchanged. Built once per file (5-10 s for flan-t5-small) and kept in
    `runtime_cache_dir()` (see `_slimmed`). The files Transformers.js loads are never touched.
    None as for `cached_branch_model`.
    """
    return _slimmed(merged_path, "later-steps", lambda: cached_branch_model(merged_path))


def encoder_graph(encoder_path: Path) -> bytes | None:
    """The encoder as this runtime runs it: the file slimmed by onnxslim, cached on disk like `runtime_graph`.

    flan-t5-small's encoder goes from 883 to 481 nodes, with bit-identical outputs; same-run A/B
    (2 threads, 64-token inputs) batch 1 38.4 -> 34.9 ms, batch 8 239 -> 220 ms. None (load the
    file itself, by its path) for a file whose weights are external data, whatever their file names,
    or too large to slim in memory. onnxslim may drop inputs the graph does not use: feed only the
    session's own inputs.
    """
    def read():
        import onnx

        if encoder_path.stat().st_size > _MAX_IN_MEMORY_GRAPH:
            return None
        data = encoder_path.read_bytes()
        try:
            model = onnx.load_from_string(data)
        except Exception:  # not a model: ORT's own error, naming the file, comes when the path is opened
            return None
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
            return None
        return data

    return _slimmed(encoder_path, "encoder", read)


def _slimmed(path: Path, kind: str, build) -> bytes | None:
    """`build()`'s graph (serialized; None = nothing to run instead of the file) slimmed by onnxslim, cached on disk.

    Kept in `runtime_cache_dir()` under a key of the file's path, size and mtime, `kind` and the
    library versions; a cache that cannot be written only costs the rebuild. When slimming fails or
    gives a graph ONNX Runtime does not load, the unslimmed graph is returned (and nothing is cached).
    """
    import hashlib

    import onnxruntime

    try:
        import onnxslim
    except ImportError:  # an install without it still runs, a little slower
        onnxslim = None
    try:
        stat = path.stat()
    except OSError:
        return None
    key = hashlib.sha256(repr((str(path.resolve()), stat.st_size, stat.st_mtime_ns, kind, RUNTIME_GRAPH_VERSION,
                               onnxruntime.__version__, getattr(onnxslim, "__version__", None))).encode()).hexdigest()[:24]
    cached = runtime_cache_dir() / f"{path.stem}-{key}.onnx"
    try:
        return cached.read_bytes()
    except OSError:
        pass
    try:
        graph = build()
    except OSError:
        return None
    if graph is None or onnxslim is None:
        return graph
    try:
        import onnx

        import onnxruntime as ort

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = onnxslim.slim(onnx.load_from_string(graph))
        # onnxslim's shape inference leaves an undefined element type on outputs of contrib ops it does not
        # know (MatMulNBits, for q4 of small models), which ONNX Runtime refuses; it infers them itself.
        known = [v for v in model.graph.value_info if v.type.tensor_type.elem_type != 0]
        del model.graph.value_info[:]
        model.graph.value_info.extend(known)
        slim = model.SerializeToString()
        del model
        options = ort.SessionOptions()  # the slimmed graph must load, or the graph as it is runs
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.intra_op_num_threads = 1
        ort.InferenceSession(slim, options, providers=["CPUExecutionProvider"])
    except Exception:  # onnxslim cannot handle some graph: the graph as it is
        return graph
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(slim)
            os.replace(tmp, cached)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError:
        pass
    return slim


class DecoderRunner:
    """One decoder step over whichever decoder layout the folder has; keeps the cache between steps."""

    def __init__(self, onnx_dir: Path, suffix: str, threads, providers, cached_branch: bool = True):
        merged = onnx_dir / f"decoder_model_merged{suffix}.onnx"
        plain = onnx_dir / f"decoder_model{suffix}.onnx"
        with_past = onnx_dir / f"decoder_with_past_model{suffix}.onnx"
        # the session that runs once per generation (first step) does not spin; the one of later steps does
        if merged.exists():
            branch = runtime_graph(merged) if cached_branch else None
            self.first = self.later = open_session(merged, threads, providers, spinning=branch is None)
            self.layout = "merged"
            if branch is not None:
                try:
                    self.later = open_session(branch, threads, providers, name=merged.name)
                except ModelFolderError:  # e.g. a damaged cache entry: the merged graph runs every step
                    pass
        elif plain.exists() and with_past.exists():
            self.first = open_session(plain, threads, providers, spinning=False)
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
        if self.later is not self.first:  # the first step's graph may take cache inputs the later one lacks
            self.inputs = {**{i.name: i for i in self.first.get_inputs()}, **self.inputs}
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
        self.later_inputs = {i.name for i in self.later.get_inputs()}
        self.threads = threads
        self.self_attention_names = [n for n in self.past_names if ".decoder." in n]  # what beam search reorders
        self._gather = None  # the beam-reorder session, built on first use

    def gather_rows(self, values: list, rows: np.ndarray) -> list:
        """`value[rows]` of each cache tensor, done by ONNX Runtime (one Gather per tensor, ORT values in and out).

        Beam search reorders the self-attention cache at every step; in numpy that costs a copy out of
        ORT, the indexing copy and a copy back (9 ms of a 57 ms step at batch 8 x 4 beams, flan-t5-small).
        """
        import onnxruntime as ort
        from onnx import TensorProto, helper

        if self._gather is None:
            names = self.self_attention_names
            elem = {"tensor(float)": TensorProto.FLOAT, "tensor(float16)": TensorProto.FLOAT16}
            inputs = [helper.make_tensor_value_info(f"x{i}", elem.get(self.inputs[n].type, TensorProto.FLOAT), None)
                      for i, n in enumerate(names)]
            inputs.append(helper.make_tensor_value_info("rows", TensorProto.INT64, ["rows"]))
            outputs = [helper.make_tensor_value_info(f"y{i}", elem.get(self.inputs[n].type, TensorProto.FLOAT), None)
                       for i, n in enumerate(names)]
            nodes = [helper.make_node("Gather", [f"x{i}", "rows"], [f"y{i}"], axis=0) for i in range(len(names))]
            model = helper.make_model(helper.make_graph(nodes, "reorder_rows", inputs, outputs),
                                      opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
            options = ort.SessionOptions()
            # one thread: a second pool of spinning threads would fight the decoder's for the cores
            options.intra_op_num_threads = 1
            self._gather = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        binding = self._gather.io_binding()
        for i, value in enumerate(values):
            if isinstance(value, np.ndarray):
                binding.bind_cpu_input(f"x{i}", value)
            else:
                binding.bind_ortvalue_input(f"x{i}", value)
        binding.bind_cpu_input("rows", np.ascontiguousarray(rows, dtype=np.int64))
        for i in range(len(values)):
            binding.bind_output(f"y{i}", "cpu")
        self._gather.run_with_iobinding(binding)
        return binding.get_outputs()

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

        The cache stays in ONNX Runtime values: a step's `present.*` outputs are fed as the next
        step's `past_key_values.*` inputs without a numpy round trip. One `run_with_ort_values` call
        per step: binding 35 inputs and outputs one by one through an IO binding cost 0.4 ms/step more
        (7% of a q8 batch-1 step for flan-t5-small).
        """
        from onnxruntime import OrtValue

        use_cache = self.layout != "no-cache" and step > 0
        session, names = (self.later, self.later_output_names) if use_cache else (self.first, self.output_names)
        wanted = self.later_inputs if use_cache else self.first_inputs
        feed = {}
        for name, value in (("input_ids", np.ascontiguousarray(tokens[:, -1:] if use_cache else tokens)),
                            ("encoder_attention_mask", encoder_mask), ("encoder_hidden_states", encoder_states),
                            ("use_cache_branch", np.array([use_cache]))):
            if name in wanted:
                feed[name] = value
        if self.layout != "no-cache":
            for name, value in cache.items():
                if name in wanted:
                    feed[name] = value
        feed = {name: value if isinstance(value, OrtValue) else OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value))
                for name, value in feed.items()}
        outputs = dict(zip(names, session.run_with_ort_values(names, feed)))
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
        names = self.runner.self_attention_names
        if not names or names[0] not in self.cache:
            return
        for name, value in zip(names, self.runner.gather_rows([self.cache[n] for n in names], rows)):
            self.cache[name] = value
