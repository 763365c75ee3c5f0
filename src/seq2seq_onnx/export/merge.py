"""Merge stage: two decoder graphs into one `decoder_model_merged.onnx`, weights stored once.

The merged graph has the union of both decoders' inputs plus `use_cache_branch` (bool[1]) and
one `If` node: `false` runs the decoder without past (first step, computes the cross-attention
cache), `true` runs the decoder with past (one new token, both caches read). This is the
layout Optimum produced and Transformers.js loads. Optimum's merger cannot be installed beside
transformers 5, and onnx has no If-merge, so this is written here; it is plain graph surgery.

In the cached branch the cross-attention cache does not change, so its `present.*.encoder.*`
outputs are the `past_key_values.*.encoder.*` inputs passed through (Identity), not
placeholders: a runtime that reads them gets the right tensors.

Memory: the no-past model is turned into the merged one in place and keeps its initializers;
only the (rare) weights that the with-past decoder has alone are copied. Merging an XL model
therefore costs about the two loaded decoders, not several copies of them.
"""

from __future__ import annotations

import hashlib

import onnx
from onnx import TensorProto, helper

USE_CACHE_BRANCH = "use_cache_branch"


def _tensor_key(tensor: TensorProto) -> tuple:
    """Content identity of a weight: the two exporter runs give the same tensor different names."""
    if tensor.HasField("raw_data"):
        digest = hashlib.sha256(tensor.raw_data).hexdigest()
    else:
        copy = TensorProto()
        copy.CopyFrom(tensor)
        copy.name = ""
        digest = hashlib.sha256(copy.SerializeToString()).hexdigest()
    return tensor.data_type, tuple(tensor.dims), digest


def _rename_inputs(graph: onnx.GraphProto, mapping: dict[str, str]) -> None:
    """Rewrite references to renamed values, nested subgraphs included."""
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in mapping:
                node.input[i] = mapping[name]
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _rename_inputs(attr.g, mapping)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    _rename_inputs(g, mapping)


def _branch(graph: onnx.GraphProto, prefix: str, init_names: dict[str, str], name: str, output_order: list[str]):
    """Turn a decoder graph's nodes into an If branch: no inputs or initializers of its own.

    Inputs become references to the outer graph's inputs; initializers to the outer graph's
    deduplicated ones; every value the branch computes gets `prefix` so that the two branches
    and the outer graph never share a name.
    """
    mapping = dict(init_names)
    for node in graph.node:
        for out in node.output:
            if out:
                mapping[out] = prefix + out
    for node in graph.node:
        node.name = prefix + node.name if node.name else ""
        for i, out in enumerate(node.output):
            if out:
                node.output[i] = mapping[out]
    _rename_inputs(graph, mapping)
    elem_types = {o.name: o.type.tensor_type.elem_type for o in graph.output}
    outputs = [helper.make_tensor_value_info(mapping.get(n, n), elem_types[n], None) for n in output_order]
    return helper.make_graph(list(graph.node), name, inputs=[], outputs=outputs)


def merge_decoders(no_past: onnx.ModelProto, with_past: onnx.ModelProto) -> onnx.ModelProto:
    """Return the merged decoder, built in place from `no_past` (both arguments are consumed).

    Both decoders must come from the same model: weights are deduplicated by content.
    """
    g0, g1 = no_past.graph, with_past.graph
    output_names = [o.name for o in g0.output]

    # Initializers: the no-past graph's stay where they are (minus its own duplicates); the
    # with-past graph's are mapped onto them by content, and only new ones are added.
    by_key: dict[tuple, str] = {}
    names0: dict[str, str] = {}
    duplicates = []
    for index, tensor in enumerate(g0.initializer):
        key = _tensor_key(tensor)
        if key in by_key:
            duplicates.append(index)
        else:
            by_key[key] = tensor.name
        names0[tensor.name] = by_key[key]
    for index in reversed(duplicates):
        del g0.initializer[index]
    used = set(by_key.values())
    names1: dict[str, str] = {}
    for tensor in g1.initializer:
        key, original = _tensor_key(tensor), tensor.name
        if key not in by_key:
            new_name = original if original not in used else "decoder_with_past/init/" + original
            used.add(new_name)
            by_key[key] = new_name
            tensor.name = new_name
            g0.initializer.append(tensor)
        names1[original] = by_key[key]

    # Outer inputs: the union, in the no-past decoder's order, then the cache, then the flag.
    inputs, seen = [], set()
    for graph in (g0, g1):
        for inp in graph.input:
            if inp.name not in seen and inp.name not in names0 and inp.name not in names1:
                seen.add(inp.name)
                copy = onnx.ValueInfoProto()
                copy.CopyFrom(inp)
                inputs.append(copy)
    inputs.append(helper.make_tensor_value_info(USE_CACHE_BRANCH, TensorProto.BOOL, [1]))

    # The cached branch does not recompute the cross-attention cache: pass it through.
    with_past_outputs = {o.name for o in g1.output}
    for name in output_names:
        if name in with_past_outputs:
            continue
        if not (name.startswith("present.") and ".encoder." in name):
            raise ValueError(f"decoder with past lacks output {name!r}")
        source = "past_key_values." + name[len("present.") :]
        g1.node.append(helper.make_node("Identity", [source], [name], name=f"passthrough_{name}"))
        g1.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))

    else_branch = _branch(g0, "decoder/", names0, "decoder_without_past", output_names)
    then_branch = _branch(g1, "decoder_with_past/", names1, "decoder_with_past", output_names)
    if_node = helper.make_node(
        "If", [USE_CACHE_BRANCH], output_names, name="optional_cache_branch", then_branch=then_branch, else_branch=else_branch
    )

    outputs = []
    for out in g0.output:
        tensor_type = out.type.tensor_type
        dims = [d.dim_param or d.dim_value for d in tensor_type.shape.dim] if tensor_type.HasField("shape") else None
        if dims and out.name.startswith("present.") and ".decoder." in out.name:
            dims[2] = "present_sequence_length"
        outputs.append(helper.make_tensor_value_info(out.name, tensor_type.elem_type, dims))

    del g0.node[:]
    g0.node.append(if_node)
    del g0.input[:]
    g0.input.extend(inputs)
    del g0.output[:]
    g0.output.extend(outputs)
    del g0.value_info[:]
    g0.name = "merged_decoder"
    no_past.producer_name = "seq2seq-onnx"
    return no_past


def all_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from all_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from all_nodes(g)


TRANSPOSED_WEIGHT_PREFIX = "shared_transpose/"
_MIN_SHARED_ELEMENTS = 1 << 16  # only weights big enough to matter (embeddings, output projections)


def share_transposed_weights(model: onnx.ModelProto) -> list[str]:
    """Store a weight once when the graph also holds its transpose; returns the names replaced.

    A tied output projection (BART, mBART, Marian, M2M100/NLLB, Pegasus, original T5) reads the
    embedding transposed, and the TorchScript exporter folds that transpose into a second copy of
    the embedding: vocab x d_model x 4 bytes more (155 MB for bart-base, 1 GB for mbart-large-50).
    Each such initializer is replaced by a `Transpose` node of the other one in the main graph
    (visible to the `If` branches as an outer-scope value); ONNX Runtime folds it at load time, so
    speed and results are unchanged while the file holds one copy. Quantizers need the weight as an
    initializer again: see `materialize_transposed_weights`.
    """
    from onnx import numpy_helper

    graph = model.graph
    gathered = {node.input[0] for node in all_nodes(graph) if node.op_type == "Gather" and node.input}
    candidates = [t for t in graph.initializer
                  if len(t.dims) == 2 and t.data_type == TensorProto.FLOAT and t.dims[0] * t.dims[1] >= _MIN_SHARED_ELEMENTS]
    by_shape: dict[tuple, list[TensorProto]] = {}
    for tensor in candidates:
        by_shape.setdefault(tuple(tensor.dims), []).append(tensor)
    replaced: dict[str, str] = {}  # transposed copy -> the weight it is the transpose of
    for tensor in candidates:
        if tensor.name in replaced or tensor.name not in gathered:
            continue  # keep the weight a Gather reads (the embedding) and replace its transposed copy
        array = None
        for other in by_shape.get(tuple(reversed(tensor.dims)), []):
            if other.name in replaced or other.name == tensor.name or other.name in gathered:
                continue
            if array is None:
                array = numpy_helper.to_array(tensor)
            if (numpy_helper.to_array(other) == array.T).all():
                replaced[other.name] = tensor.name
    if not replaced:
        return []
    keep = [t for t in graph.initializer if t.name not in replaced]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    for index, (copy, original) in enumerate(sorted(replaced.items())):
        graph.node.insert(index, helper.make_node("Transpose", [original], [copy], perm=[1, 0],
                                                  name=f"{TRANSPOSED_WEIGHT_PREFIX}{copy}"))
    return sorted(replaced)


def materialize_transposed_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """Undo `share_transposed_weights` in place (the Transpose nodes it added become initializers again).

    Quantizers only quantize a MatMul whose weight is an initializer; without this the tied output
    projection would stay float32 in every quantized file.
    """
    from onnx import numpy_helper

    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    ours = [n for n in graph.node if n.op_type == "Transpose" and n.name.startswith(TRANSPOSED_WEIGHT_PREFIX)
            and n.input[0] in initializers]
    for node in ours:
        array = numpy_helper.to_array(initializers[node.input[0]]).T.copy()
        graph.initializer.append(numpy_helper.from_array(array, node.output[0]))
        graph.node.remove(node)
    return model
