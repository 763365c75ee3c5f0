"""Logits processors and warpers: (tokens [rows, cur_len], scores [rows, vocab]) -> scores.

Each is a small class, as transformers' `LogitsProcessor`s, applied in transformers' order by
`build_processors`; float32 arithmetic and the -inf / -1e9 masks as there, so ids stay equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .options import GenerationOptions

NEG_INF = np.float32(-np.inf)




class LogitsProcessor(Protocol):
    def __call__(self, tokens: np.ndarray, scores: np.ndarray) -> np.ndarray: ...


@dataclass
class RepetitionPenalty:
    penalty: float

    def __call__(self, tokens, scores):
        vocab = scores.shape[-1]
        ids = np.minimum(tokens, vocab)  # ids outside the output vocab land in a padding column
        padded = np.concatenate([scores, np.zeros((scores.shape[0], 1), scores.dtype)], axis=1)
        picked = np.take_along_axis(padded, ids, axis=1)
        picked = np.where(picked < 0, picked * np.float32(self.penalty), picked / np.float32(self.penalty))
        np.put_along_axis(padded, ids, picked.astype(scores.dtype), axis=1)
        return padded[:, :vocab]


@dataclass
class NoRepeatNGram:
    size: int

    def __call__(self, tokens, scores):
        cur_len = tokens.shape[1]
        if cur_len < self.size:
            return scores
        scores = scores.copy()
        n = self.size
        for row in range(tokens.shape[0]):
            seq = tokens[row].tolist()
            prefix = tuple(seq[cur_len + 1 - n :])
            banned = {seq[i + n - 1] for i in range(cur_len - n + 1) if tuple(seq[i : i + n - 1]) == prefix}
            banned = [t for t in banned if t < scores.shape[1]]
            scores[row, banned] = NEG_INF
        return scores


@dataclass
class NoBadWords:
    sequences: tuple[tuple[int, ...], ...]
    eos_token_ids: tuple[int, ...]
    single: list[int] = field(init=False)
    multi: list[tuple[int, ...]] = field(init=False)

    def __post_init__(self):
        kept = [s for s in self.sequences if not (len(s) == 1 and s[0] in self.eos_token_ids)]
        self.single = sorted({s[0] for s in kept if len(s) == 1})
        self.multi = [s for s in kept if len(s) > 1]

    def __call__(self, tokens, scores):
        scores = scores.copy()
        vocab = scores.shape[1]
        scores[:, [t for t in self.single if t < vocab]] = NEG_INF
        for seq in self.multi:
            prefix = np.array(seq[:-1])
            if len(prefix) > tokens.shape[1] or seq[-1] >= vocab:
                continue
            rows = (tokens[:, -len(prefix) :] == prefix).all(axis=1)
            scores[rows, seq[-1]] = NEG_INF
        return scores


@dataclass
class SuppressEos:
    """min_length / min_new_tokens: no end of sequence while the sequence is shorter than `min_length`."""

    min_length: int  # counted in decoder tokens, start token included
    eos_token_ids: tuple[int, ...]

    def __call__(self, tokens, scores):
        if tokens.shape[1] < self.min_length:
            scores = scores.copy()
            scores[:, [e for e in self.eos_token_ids if e < scores.shape[1]]] = NEG_INF
        return scores


@dataclass
class ForceToken:
    """forced_bos_token_id (at length 1) and forced_eos_token_id (at max_length - 1)."""

    token_id: int
    at_length: int

    def __call__(self, tokens, scores):
        if tokens.shape[1] == self.at_length:
            scores = np.full_like(scores, NEG_INF)
            scores[:, self.token_id] = 0
        return scores


@dataclass
class Temperature:
    temperature: float

    def __call__(self, tokens, scores):
        return scores / np.float32(self.temperature)


@dataclass
class TopK:
    top_k: int
    min_tokens_to_keep: int = 1

    def __call__(self, tokens, scores):
        k = min(max(self.top_k, self.min_tokens_to_keep), scores.shape[-1])
        kth = -np.partition(-scores, k - 1, axis=-1)[:, k - 1 : k]
        return np.where(scores < kth, NEG_INF, scores)


@dataclass
class TopP:
    top_p: float
    min_tokens_to_keep: int = 1

    def __call__(self, tokens, scores):
        order = np.argsort(scores, axis=-1, kind="stable")
        sorted_scores = np.take_along_axis(scores, order, axis=-1)
        cumulative = np.cumsum(softmax(sorted_scores), axis=-1)
        remove_sorted = cumulative <= (1 - self.top_p)
        remove_sorted[:, -self.min_tokens_to_keep :] = False
        remove = np.zeros_like(remove_sorted)
        np.put_along_axis(remove, order, remove_sorted, axis=-1)
        return np.where(remove, NEG_INF, scores)


_TOPK_SESSION = None
_ORT_MIN_COLUMNS = 4096  # rows narrower than this stay in numpy (a session call costs more there)


def _ort_top_k(x: np.ndarray, k: int) -> np.ndarray:
    """ONNX Runtime's TopK (largest, sorted): its ties go to the lower index, as the ONNX spec requires."""
    global _TOPK_SESSION
    import onnxruntime as ort
    from onnx import TensorProto, helper

    if _TOPK_SESSION is None:
        graph = helper.make_graph(
            [helper.make_node("TopK", ["x", "k"], ["values", "indices"], axis=-1, largest=1, sorted=1)], "top_k",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", "columns"]),
             helper.make_tensor_value_info("k", TensorProto.INT64, [1])],
            [helper.make_tensor_value_info("values", TensorProto.FLOAT, ["rows", "k"]),
             helper.make_tensor_value_info("indices", TensorProto.INT64, ["rows", "k"])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # no second pool of spinning threads beside the decoder's
        _TOPK_SESSION = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return _TOPK_SESSION.run(["indices"], {"x": x, "k": np.array([k], dtype=np.int64)})[0]


def top_k_indices(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values per row, largest first, ties to the lower index (a stable sort's first k).

    Wide float32 rows (beam search's num_beams * vocab scores, sampling's top_k over the vocabulary) go
    to ONNX Runtime's TopK, whose tie rule is the same (ONNX spec) and which is far faster than numpy
    here (1 ms instead of about 25 for 8 x 128512 scores); narrow rows, and rows with NaN, are sorted.
    """
    if x.dtype == np.float32 and k < x.shape[1] and x.shape[1] >= _ORT_MIN_COLUMNS and not np.isnan(x).any():
        return _ort_top_k(np.ascontiguousarray(x), k)
    return np.argsort(-x, axis=1, kind="stable")[:, :k]


def softmax(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    x64 = x64 - x64.max(axis=-1, keepdims=True)
    e = np.exp(x64)
    return e / e.sum(axis=-1, keepdims=True)


_LOG_SOFTMAX_SESSION = None


def _ort_log_softmax(x: np.ndarray) -> np.ndarray:
    global _LOG_SOFTMAX_SESSION
    import onnxruntime as ort
    from onnx import TensorProto, helper

    if _LOG_SOFTMAX_SESSION is None:
        graph = helper.make_graph(
            [helper.make_node("LogSoftmax", ["x"], ["y"], axis=-1)], "log_softmax",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", "columns"])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", "columns"])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        _LOG_SOFTMAX_SESSION = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return _LOG_SOFTMAX_SESSION.run(["y"], {"x": x})[0]


def log_softmax(x: np.ndarray) -> np.ndarray:
    """log_softmax over the last axis in float32, as torch computes it for float32 logits.

    Vocabulary-wide float32 rows go to ONNX Runtime's LogSoftmax: closer to torch than numpy
    (97% of values bit-equal to torch.log_softmax on 32 x 32128 logits, max difference 1.9e-6,
    against 0.3% and 7.6e-6 for numpy's exp) and twice as fast; this runs on every beam's row.
    """
    if x.dtype == np.float32 and x.ndim == 2 and x.shape[1] >= _ORT_MIN_COLUMNS:
        return _ort_log_softmax(np.ascontiguousarray(x))
    shifted = x - x.max(axis=-1, keepdims=True)
    total = np.exp(shifted).sum(axis=-1, keepdims=True)
    shifted -= np.log(total)  # in place: the same arithmetic as `shifted - log(total)`, one array fewer
    return shifted


def build_processors(o: GenerationOptions) -> tuple[list, list]:
    """(processors, warpers) in transformers' order; warpers only when sampling."""
    processors: list = []
    if o.repetition_penalty != 1.0:
        processors.append(RepetitionPenalty(o.repetition_penalty))
    if o.no_repeat_ngram_size > 0:
        processors.append(NoRepeatNGram(o.no_repeat_ngram_size))
    if o.bad_words_ids:
        processors.append(NoBadWords(o.bad_words_ids, o.eos_token_ids))
    if o.min_total_length > 1:  # min_new_tokens replaces min_length, as in transformers
        processors.append(SuppressEos(o.min_total_length, o.eos_token_ids))
    if o.forced_bos_token_id is not None:
        processors.append(ForceToken(o.forced_bos_token_id, at_length=1))
    if o.forced_eos_token_id is not None:
        processors.append(ForceToken(o.forced_eos_token_id, at_length=1 + o.new_tokens - 1))
    warpers: list = []
    if o.do_sample:
        keep = len(o.eos_token_ids) + 1 if o.num_beams > 1 else 1
        if o.temperature != 1.0:
            warpers.append(Temperature(o.temperature))
        if o.top_k:
            warpers.append(TopK(o.top_k, keep))
        if o.top_p < 1.0:
            warpers.append(TopP(o.top_p, keep))
    return processors, warpers


def apply_chain(chain, tokens, scores):
    for processor in chain:
        scores = processor(tokens, scores)
    return scores
