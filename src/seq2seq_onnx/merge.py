"""Merge stage: two decoder graphs into one `decoder_model_merged.onnx`, weights stored once.

The merged graph has the union of both decoders' inputs plus `use_cache_branch` (bool[1]) and
one `If` node: `false` runs the decoder without past (first step, computes the cross-attention
cache), `true` runs the decoder with past (one new token, both caches read). This is the
layout Optimum produced and Transformers.js loads. Optimum's merger cannot be installed beside
transformers 5, and onnx has no If-merge, so this is written here; it is plain graph surgery.

In the cached branch the cross-attention cache does not change, so its `present.*.encoder.*`
outputs are the `past_key_values.*.encoder.*` inputs passed through (Identity), not
placeholders: a runtime that reads them gets the right tensors.
"""

from __future__ import annotations

import hashlib

import onnx
from onnx import TensorProto, helper, numpy_helper

USE_CACHE_BRANCH = "use_cache_branch"


def _tensor_key(tensor: TensorProto) -> tuple:
    data = numpy_helper.to_array(tensor).tobytes()
    return tensor.data_type, tuple(tensor.dims), hashlib.sha256(data).hexdigest()


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


def _as_branch(graph: onnx.GraphProto, prefix: str, init_names: dict[str, str], name: str) -> onnx.GraphProto:
    """Turn a decoder graph into an If branch: no inputs or initializers of its own.

    Inputs become references to the outer graph's inputs; initializers to the outer graph's
    deduplicated ones; every value the branch computes gets `prefix` so that the two branches
    and the outer graph never share a name.
    """
    mapping = dict(init_names)
    for node in graph.node:
        for out in node.output:
            if out:
                mapping[out] = prefix + out
        node.name = prefix + node.name if node.name else ""
    for node in graph.node:
        for i, out in enumerate(node.output):
            if out:
                node.output[i] = mapping[out]
    _rename_inputs(graph, mapping)
    outputs = []
    for out in graph.output:
        src = mapping.get(out.name, out.name)
        outputs.append(helper.make_tensor_value_info(src, out.type.tensor_type.elem_type, None))
    return helper.make_graph(list(graph.node), name, inputs=[], outputs=outputs)


def merge_decoders(no_past: onnx.ModelProto, with_past: onnx.ModelProto) -> onnx.ModelProto:
    """Return the merged decoder. Both inputs must come from the same model (weights are deduplicated by content)."""
    graphs = {"decoder/": no_past.graph, "decoder_with_past/": with_past.graph}

    # Initializers: one copy of each distinct tensor, whatever name each exporter run gave it.
    initializers: list[TensorProto] = []
    by_key: dict[tuple, str] = {}
    used: set[str] = set()
    init_names: dict[str, dict[str, str]] = {}
    for prefix, graph in graphs.items():
        names = init_names[prefix] = {}
        for tensor in graph.initializer:
            key = _tensor_key(tensor)
            if key not in by_key:
                new_name = tensor.name if tensor.name not in used else prefix + "init/" + tensor.name
                used.add(new_name)
                by_key[key] = new_name
                copy = TensorProto()
                copy.CopyFrom(tensor)
                copy.name = new_name
                initializers.append(copy)
            names[tensor.name] = by_key[key]

    # Outer inputs: the union, in the no-past decoder's order, then the cache, then the flag.
    inputs, seen = [], set()
    for graph in (no_past.graph, with_past.graph):
        for inp in graph.input:
            if inp.name not in seen and inp.name not in init_names["decoder/"] | init_names["decoder_with_past/"]:
                seen.add(inp.name)
                inputs.append(inp)
    inputs.append(helper.make_tensor_value_info(USE_CACHE_BRANCH, TensorProto.BOOL, [1]))

    output_names = [o.name for o in no_past.graph.output]
    missing = [n for n in output_names if n not in {o.name for o in with_past.graph.output}]
    with_past_graph = onnx.GraphProto()
    with_past_graph.CopyFrom(with_past.graph)
    for name in missing:
        if not name.startswith("present.") or ".encoder." not in name:
            raise ValueError(f"decoder with past lacks output {name!r}")
        source = "past_key_values." + name[len("present.") :]
        with_past_graph.node.append(helper.make_node("Identity", [source], [name], name=f"passthrough_{name}"))
        with_past_graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    # Branch outputs must come in the same order in both branches.
    order = {n: i for i, n in enumerate(output_names)}
    sorted_outputs = sorted(with_past_graph.output, key=lambda o: order[o.name])
    del with_past_graph.output[:]
    with_past_graph.output.extend(sorted_outputs)

    no_past_graph = onnx.GraphProto()
    no_past_graph.CopyFrom(no_past.graph)
    for g in (no_past_graph, with_past_graph):
        del g.initializer[:]
    else_branch = _as_branch(no_past_graph, "decoder/", init_names["decoder/"], "decoder_without_past")
    then_branch = _as_branch(with_past_graph, "decoder_with_past/", init_names["decoder_with_past/"], "decoder_with_past")

    if_node = helper.make_node(
        "If", [USE_CACHE_BRANCH], output_names, name="optional_cache_branch", then_branch=then_branch, else_branch=else_branch
    )
    outputs = []
    for out in no_past.graph.output:
        dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
        if out.name.startswith("present.") and ".decoder." in out.name:
            dims[2] = "present_sequence_length"
        outputs.append(helper.make_tensor_value_info(out.name, out.type.tensor_type.elem_type, dims))
    graph = helper.make_graph([if_node], "merged_decoder", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=list(no_past.opset_import), producer_name="seq2seq-onnx")
    model.ir_version = no_past.ir_version
    return model
