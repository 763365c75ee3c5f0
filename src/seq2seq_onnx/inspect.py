"""Inspect stage: diagnose any export folder, ours or not, without loading its weights.

Reads graph structure only (`onnx.load(..., load_external_data=False)`) and small JSON files, so
an untrusted or huge folder costs little, and external-data references that point outside the
folder are refused before anything would follow them. The verdict says what Transformers.js will
do with the folder and what to run to fix it; every problem is one line of its own.

What is checked, and where each rule comes from (Transformers.js 4.3.1; see
`shared/reference/transformersjs-seq2seq.md` beside the checkout and the library's `dist/transformers*.js`):

- files: `config.json`, `tokenizer.json`, `tokenizer_config.json`, and for some dtype both
  `onnx/encoder_model{suffix}.onnx` and `onnx/decoder_model_merged{suffix}.onnx` (no fallback to
  `decoder_model.onnx`);
- every graph parses, and its external data stays inside the folder and exists;
- IR version and default-domain opset are within what the ONNX Runtime builds pinned by
  Transformers.js load (`TRANSFORMERSJS_MAX_IR_VERSION`, `TRANSFORMERSJS_MAX_OPSET`, measured);
- the merged decoder has `past_key_values.*` inputs and `present.*` outputs, as many cache layers
  and heads as config.json says, and its `If` on `use_cache_branch` has the branches the right way
  round (`then_branch`, taken when `use_cache_branch` is true, reads the self-attention cache;
  `else_branch`, the first step, does not read the cross-attention cache `past_key_values.*.encoder.*`);
  and the graph really reads what it declares: every self-attention cache input
  `past_key_values.*.decoder.*` and `use_cache_branch` is on the way to `logits` (a decoder without
  past given unused cache inputs, or a decoder with past given an unused `use_cache_branch`, has the
  merged decoder's names and loads, then goes wrong);
- graphs with external data are announced in `config.json["transformers.js_config"]
  ["use_external_data_format"]` the way Transformers.js resolves it, and the data files it will
  fetch exist;
- `tokenizer.json` covers `config.json`'s `vocab_size`: not a near-empty vocabulary, no id at or
  above `vocab_size`;
- `model_type` is one Transformers.js supports (`InspectReport.transformersjs_unsupported_model_type`
  tells callers apart from other problems); a `model_type` of a family we do not know is only a
  warning: its cache layout is not checked against config.json.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .export.merge import USE_CACHE_BRANCH
from .runtime.sessions import DTYPE_SUFFIXES

EXIT_HEALTHY, EXIT_PROBLEMS, EXIT_NOT_AN_EXPORT = 0, 1, 2
GRAPH_NAMES = ("encoder_model", "decoder_model_merged", "decoder_model", "decoder_with_past_model")
TRANSFORMERSJS_GRAPHS = ("encoder_model", "decoder_model_merged")  # the files Transformers.js loads

# What the ONNX Runtime builds that Transformers.js 4.3.1 runs on accept: onnxruntime-node 1.30.0
# (Node) and onnxruntime-web 1.31.0-dev.20260914 (browser, WASM). Measured, not taken from release
# notes: a tiny Add graph and our own T5 exports (encoder, merged decoder, fp16/q8/q4) were
# re-stamped with each IR version 8-15 and each default-domain opset 17-29 and loaded with
# `InferenceSession.create` of onnxruntime-node 1.30.0 and of onnxruntime-web (its Node build, the
# same WASM core as the browser's). IR 13 loads, IR 14 fails in both ("Unsupported model IR
# version: 14, max supported IR version: 13"); opset 26 loads, opset 27 fails in both ("Opset 27 is
# under development and support for this is limited"). The IR-14 and opset-27 failures were seen
# again through Transformers.js itself, in Node and in headless Chromium. These are onnx 1.21's
# limits (IR 13, opset 26); Python onnxruntime 1.32 accepts IR 14 and opset 28, so a folder that
# passes there can still fail in Transformers.js. Update both when Transformers.js is bumped.
TRANSFORMERSJS_MAX_IR_VERSION = 13
TRANSFORMERSJS_MAX_OPSET = 26
TRANSFORMERSJS_RUNTIMES = "Transformers.js 4.3.1 (onnxruntime-node 1.30 / onnxruntime-web 1.31)"

# IR version that introduced each tensor type (onnx.proto's IR_VERSION comments); a graph using
# none of them, with opsets that allow it, can be re-stamped with a lower IR version unchanged.
_TYPE_IR = {
    "FLOAT8E4M3FN": 9, "FLOAT8E4M3FNUZ": 9, "FLOAT8E5M2": 9, "FLOAT8E5M2FNUZ": 9, "UINT4": 10, "INT4": 10,
    "FLOAT4E2M1": 11, "FLOAT8E8M0": 12, "UINT2": 13, "INT2": 13, "FLOAT6E2M3": 14, "FLOAT6E3M2": 14,
}
_OPAQUE_TYPE_IR = 14  # IR 14 made TypeProto.Opaque available outside ONNX-ML

# Transformers.js fetches at most this many external-data chunks per graph (MAX_EXTERNAL_DATA_CHUNKS).
TRANSFORMERSJS_MAX_DATA_CHUNKS = 100

# A tokenizer must have at least this share of config.json's vocab_size as regular (non-special)
# tokens. Healthy checkpoints are far above it: flan-t5 has 32100 tokens for vocab_size 32128
# (about 31997 regular, 99.6%), mT5 250100 for 250112, our test fixtures 197 regular of 208 (95%);
# the embedding is only padded past the tokenizer to a multiple of 64 or 128. Below half, most of
# the embedding is unreachable: the tokenizer belongs to another (smaller) model or lost its
# vocabulary (an empty T5 tokenizer keeps only <pad>, </s>, <unk> and the <extra_id_*> tokens).
MIN_TOKENIZER_COVERAGE = 0.5


@dataclass
class GraphInfo:
    file: str
    opset: int | None = None
    ir_version: int | None = None
    inputs: dict[str, list] = field(default_factory=dict)  # name -> [elem type, dims]
    outputs: dict[str, list] = field(default_factory=dict)
    external_data: list[str] = field(default_factory=list)
    # the lowest IR version this graph's opsets and tensor types allow (a re-stamp to it is valid)
    lowest_ir_version: int | None = None
    # one entry per top-level If on use_cache_branch: the past_key_values.* inputs each branch reads
    cache_branches: list[dict] = field(default_factory=list)
    # graph inputs nothing on the way to `logits` reads (to any output when there is no logits output)
    inputs_not_read: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class InspectReport:
    folder: str
    graphs: dict[str, GraphInfo] = field(default_factory=dict)
    dtypes_present: list[str] = field(default_factory=list)
    transformersjs_dtypes: list[str] = field(default_factory=list)
    tokenizer_files: dict[str, bool] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # one line each
    warnings: list[str] = field(default_factory=list)
    is_export: bool = True
    model_type: str = ""  # config.json's
    # True when one of `problems` is only that Transformers.js 4.3.1 lacks config.json's model_type (umt5):
    # the files may still be fine for ONNX Runtime; see `problems_besides_model_type()`
    transformersjs_unsupported_model_type: bool = False

    @property
    def exit_code(self) -> int:
        if not self.is_export:
            return EXIT_NOT_AN_EXPORT
        return EXIT_PROBLEMS if self.problems else EXIT_HEALTHY

    def problems_besides_model_type(self) -> list[str]:
        """`problems` without the one that says Transformers.js does not support the model_type."""
        if not self.transformersjs_unsupported_model_type:
            return list(self.problems)
        line = unsupported_model_type_problem(self.model_type)
        return [p for p in self.problems if p != line]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["exit_code"] = self.exit_code
        data["verdict"] = self.verdict()
        return data

    def verdict(self) -> str:
        """One line when healthy; otherwise a header and one `  - ` line per problem."""
        lines = [" ".join(p.split()) for p in self.problems]  # a problem never spans lines
        if not self.is_export:
            return "not an export folder: " + "; ".join(lines)
        if lines:
            return f"PROBLEMS ({len(lines)}):" + "".join(f"\n  - {line}" for line in lines)
        return f"healthy: Transformers.js can load dtypes {', '.join(self.transformersjs_dtypes)}"


def unsupported_model_type_problem(model_type: str) -> str:
    return (f"config.json says model_type {model_type!r}, which Transformers.js (4.3.1) does not support "
            "(`Unsupported model type`); the files run in ONNX Runtime")


_ELEM = {1: "float32", 10: "float16", 7: "int64", 6: "int32", 9: "bool", 11: "float64", 16: "bfloat16"}


def _value_info(value) -> list:
    t = value.type.tensor_type
    dims = [d.dim_param or d.dim_value for d in t.shape.dim] if t.HasField("shape") else None
    return [_ELEM.get(t.elem_type, str(t.elem_type)), dims]


def _subgraphs(node):
    import onnx

    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def _all_graphs(graph):
    yield graph
    for node in graph.node:
        for sub in _subgraphs(node):
            yield from _all_graphs(sub)


def _outer_references(graph) -> set[str]:
    """Names a subgraph reads from enclosing scopes.

    ONNX subgraphs (If branches, Loop/Scan bodies) do not declare outer-scope values as inputs:
    their nodes, nested subgraphs included, name them directly. These are the names used inside
    and defined nowhere inside (node outputs, subgraph inputs, initializers).
    """
    used, defined = set(), set()
    for g in _all_graphs(graph):
        defined.update(i.name for i in g.input)
        defined.update(t.name for t in g.initializer)
        defined.update(t.values.name for t in g.sparse_initializer)
        for node in g.node:
            used.update(n for n in node.input if n)
            defined.update(n for n in node.output if n)
    return used - defined


def _inputs_not_read(graph) -> list[str]:
    """Graph inputs that no node on the way to the `logits` output reads (to any output when there is
    no `logits`), nested subgraphs included: a node that is needed needs all its inputs and every value
    its subgraphs read from outside (both branches of an If). A value only passed to unused nodes, or
    straight through to another output, is not read."""
    outputs = [o.name for o in graph.output]
    live = {"logits"} if "logits" in outputs else set(outputs)
    needs = []
    for node in graph.node:
        names = {n for n in node.input if n}
        for sub in _subgraphs(node):
            names |= _outer_references(sub)
        needs.append(({n for n in node.output if n}, names))
    changed = True
    while changed:  # one pass when the nodes are sorted, as ONNX requires; more if an export is not
        changed = False
        for produced, names in reversed(needs):
            if produced & live and not names <= live:
                live |= names
                changed = True
    initializers = {t.name for t in graph.initializer}
    return [i.name for i in graph.input if i.name not in live and i.name not in initializers]


def _cache_branches(graph) -> list[dict]:
    """For each top-level If whose condition comes from use_cache_branch: the past_key_values.*
    graph inputs its then_branch and else_branch read (also through top-level nodes before the
    If, such as the Casts an fp16 conversion inserts)."""
    origins = {i.name: {i.name} for i in graph.input}  # value -> graph inputs it is computed from
    found = []
    for node in graph.node:
        branches = {a.name: a.g for a in node.attribute if a.name in ("then_branch", "else_branch")}
        sources = set()
        for name in node.input:
            sources |= origins.get(name, set())
        for sub in _subgraphs(node):
            for name in _outer_references(sub):
                sources |= origins.get(name, set())
        for name in node.output:
            origins[name] = sources
        if node.op_type == "If" and node.input and USE_CACHE_BRANCH in origins.get(node.input[0], ()) and len(branches) == 2:
            reads = {}
            for key, branch in branches.items():
                names = set()
                for ref in _outer_references(branch):
                    names |= {n for n in origins.get(ref, ()) if n.startswith("past_key_values.")}
                reads[key] = sorted(names)
            found.append({"node": node.name, "then_reads": reads["then_branch"], "else_reads": reads["else_branch"]})
    return found


def _scan(model) -> tuple[list[str], int]:
    """External-data locations, and the lowest IR version the opsets and tensor types allow."""
    import onnx
    from onnx import helper

    type_ir = {}
    for type_name, ir in _TYPE_IR.items():
        if type_name in onnx.TensorProto.DataType.keys():
            type_ir[onnx.TensorProto.DataType.Value(type_name)] = ir
    try:
        lowest = helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    except Exception:  # an opset newer than the installed onnx knows: no lower stamp is known valid
        lowest = model.ir_version

    locations, tensors, elem_types = [], [], set()
    for graph in _all_graphs(model.graph):
        tensors.extend(graph.initializer)
        for value in (*graph.input, *graph.output, *graph.value_info):
            if value.type.WhichOneof("value") == "opaque_type":
                lowest = max(lowest, _OPAQUE_TYPE_IR)
            elem_types.add(value.type.tensor_type.elem_type)
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    tensors.append(attr.t)
                elif attr.type == onnx.AttributeProto.INT and attr.name in ("to", "dtype", "output_dtype"):
                    elem_types.add(attr.i)
    for tensor in tensors:
        elem_types.add(tensor.data_type)
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location" and entry.value not in locations:
                    locations.append(entry.value)
    lowest = max([lowest] + [type_ir[t] for t in elem_types if t in type_ir])
    return locations, lowest


def unsafe_location(folder: Path, location: str) -> bool:
    """True when an external-data path would read outside `folder` (absolute, `..`, or a link out)."""
    if os.path.isabs(location) or location.startswith(("/", "\\")) or ":" in location.split("/")[0]:
        return True
    target = (folder / location).resolve()
    return folder.resolve() not in target.parents


def read_graph(path: Path) -> GraphInfo:
    """Structure of one .onnx file; problems are reported in `error`, never raised."""
    import onnx

    info = GraphInfo(file=str(path))
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf says DecodeError for truncated files, others for garbage
        info.error = f"cannot read {path.name}: not a valid ONNX file ({type(err).__name__})"
        return info
    info.ir_version = model.ir_version
    info.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    info.inputs = {i.name: _value_info(i) for i in model.graph.input}
    info.outputs = {o.name: _value_info(o) for o in model.graph.output}
    info.external_data, info.lowest_ir_version = _scan(model)
    if USE_CACHE_BRANCH in info.inputs:
        info.cache_branches = _cache_branches(model.graph)
    info.inputs_not_read = _inputs_not_read(model.graph)
    for location in info.external_data:
        if unsafe_location(path.parent, location):
            info.error = (f"{path.name} refers to external data {location!r} outside its folder; "
                          "refusing to read it (a malicious or broken export)")
        elif not (path.parent / location).is_file():
            info.error = f"{path.name} needs external data file {location!r}, which is missing"
    return info


def _expected_cache(config: dict) -> tuple[int, int, int] | str:
    """(layers, heads, head size) of the decoder cache from config.json, for the families we know;
    otherwise why not (the end of a sentence: "... could not be checked against config.json <why>")."""
    from .export.families import family_for, supported_model_types

    model_type = config.get("model_type")
    family = family_for(model_type) if isinstance(model_type, str) else None
    if family is None:
        known = ", ".join(supported_model_types())
        if not model_type:
            return f"(it has no model_type; seq2seq-onnx knows {known})"
        return f"for model_type {model_type!r}, a family seq2seq-onnx does not know ({known})"

    class _Config:  # the adapter reads attributes, as on a transformers config
        def __init__(self, data):
            self.__dict__.update(data)

        def __getattr__(self, name):
            return None

    try:
        layout = family.cache_layout(_Config(config))
    except (TypeError, KeyError, AttributeError):
        layout = None
    found = (layout.num_layers, layout.num_heads, layout.head_dim) if layout else ()
    if len(found) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in found):
        return f"(it lacks the {model_type} fields the layout is read from, or they are not positive integers)"
    return found


def merged_decoder_problem(inputs, outputs) -> str | None:
    """Why a graph under the name `decoder_model_merged*.onnx` cannot be what its name says, or None.

    `inputs`, `outputs`: the graph's input and output names. Structure, not behaviour: a decoder
    without past inputs under the merged name (the classic repeated-token export) is refused even
    when the model's outputs could not reveal it.
    """
    inputs, outputs = set(inputs), set(outputs)
    if not any(n.startswith("past_key_values.") for n in inputs):
        return (
            "it has no past_key_values inputs: Transformers.js will feed it one token per step and the "
            "output goes wrong from the second token (repeats, loops)"
        )
    if not any(n.startswith("present.") for n in outputs):
        return "it has no present.* outputs: the cache cannot be carried to the next step"
    if USE_CACHE_BRANCH not in inputs:
        return ("it has no use_cache_branch input: it is not a merged decoder (a decoder with past only gets an "
                "empty cross-attention cache at the first step)")
    return None


def _check_versions(report: InspectReport, fix: str) -> None:
    """IR version and default-domain opset against what Transformers.js's runtimes load."""
    for name, info in report.graphs.items():
        if info.error or info.ir_version is None:
            continue
        loaded = name.startswith(TRANSFORMERSJS_GRAPHS)
        found = []
        opset_ok = info.opset is None or info.opset <= TRANSFORMERSJS_MAX_OPSET
        if info.ir_version > TRANSFORMERSJS_MAX_IR_VERSION:
            if opset_ok and (info.lowest_ir_version or 0) <= TRANSFORMERSJS_MAX_IR_VERSION:
                path = Path(os.path.relpath(info.file, report.folder)).as_posix()
                remedy = (
                    f"Lower the stamp, valid for this graph (its opsets and tensor types need only IR "
                    f"{info.lowest_ir_version}), in the export folder: python -c \"import onnx; m = onnx.load('{path}', "
                    f"load_external_data=False); m.ir_version = {TRANSFORMERSJS_MAX_IR_VERSION}; onnx.save(m, '{path}')\"; "
                    f"or re-export with `seq2seq-onnx convert SOURCE -o OUT`."
                )
            else:
                remedy = fix
            found.append(
                f"{name} has IR version {info.ir_version}; {TRANSFORMERSJS_RUNTIMES} loads at most IR "
                f"{TRANSFORMERSJS_MAX_IR_VERSION} (\"Unsupported model IR version: {info.ir_version}, max supported "
                f"IR version: {TRANSFORMERSJS_MAX_IR_VERSION}\"). {remedy}"
            )
        if not opset_ok:
            found.append(
                f"{name} uses opset {info.opset}; {TRANSFORMERSJS_RUNTIMES} loads at most opset "
                f"{TRANSFORMERSJS_MAX_OPSET} (\"Opset {info.opset} is under development and support for this is "
                f"limited\"). Re-export at a lower opset, e.g. `seq2seq-onnx convert SOURCE -o OUT --opset 17` "
                "(changing the opset stamp alone is not valid: operators change meaning between opsets)."
            )
        for line in found:
            (report.problems if loaded else report.warnings).append(
                line if loaded else f"{line} (Transformers.js does not load this file; other runtimes may)"
            )


# What Transformers.js 4.3.1 feeds each graph (`encoder_forward`, `seq2seq_forward`, `decoder_forward`
# and `validateInputs` in its dist/transformers.node.mjs): it picks these names from what it has and
# fails with "Missing the following inputs: ..." for any other input the graph declares. Ids and
# masks come from its tokenizer as int64, use_cache_branch as a bool[1].
_ENCODER_FEEDS = {"input_ids": "int64", "attention_mask": "int64", "token_type_ids": "int64"}
_DECODER_FEEDS = {"input_ids": "int64", "encoder_attention_mask": "int64", "encoder_hidden_states": None,
                  USE_CACHE_BRANCH: "bool", "num_logits_to_keep": "int64"}


def _check_io(report: InspectReport, fix: str) -> None:
    """Input names and types against what Transformers.js feeds, and the outputs it reads."""
    for name, info in report.graphs.items():
        if info.error or not name.startswith(TRANSFORMERSJS_GRAPHS):
            continue
        encoder = name.startswith("encoder_model")
        feeds = _ENCODER_FEEDS if encoder else _DECODER_FEEDS
        unknown = [n for n in info.inputs if n not in feeds and (encoder or not n.startswith("past_key_values."))]
        if unknown:
            report.problems.append(
                f"{name} has inputs Transformers.js does not feed ({', '.join(unknown)}): it fails with \"Missing the "
                f"following inputs: {', '.join(unknown)}\". {fix}"
            )
        if "input_ids" not in info.inputs:
            report.problems.append(f"{name} has no input_ids input, which Transformers.js feeds the token ids through. {fix}")
        wrong = [(n, info.inputs[n][0], want) for n, want in feeds.items()
                 if want and n in info.inputs and info.inputs[n][0] != want]
        if wrong:
            report.problems.append(
                f"{name}: {', '.join(f'{n} is {got}' for n, got, _ in wrong)}, but Transformers.js feeds "
                f"{', '.join(f'{n} as {want}' for n, _, want in wrong)} (ONNX Runtime: \"Unexpected input data "
                f"type\"). {fix}"
            )
        needed = "last_hidden_state" if encoder else "logits"
        if needed not in info.outputs:
            report.problems.append(f"{name} has no {needed} output, which Transformers.js reads. {fix}")


def _check_cache_branches(report: InspectReport, name: str, info: GraphInfo, fix: str) -> bool:
    """The If on use_cache_branch: then_branch (true: steps after the first) must read the
    self-attention cache; else_branch (false: the first step, all caches empty) must not read the
    cross-attention cache, which it has to compute from encoder_hidden_states. True when a
    then_branch that ignores the self-attention cache was reported."""
    ignored = False
    for branch in info.cache_branches:
        then_decoder = [n for n in branch["then_reads"] if ".decoder." in n]
        else_encoder = [n for n in branch["else_reads"] if ".encoder." in n]
        more = f" (+{len(else_encoder) - 1} more)" if len(else_encoder) > 1 else ""
        crash = ("the first step fails in every runtime with a broadcast error "
                 "(\"Can broadcast 0 by 0 or 1\")")
        if else_encoder and not branch["then_reads"]:
            report.problems.append(
                f"{name}: the If on use_cache_branch has its branches swapped: else_branch (use_cache_branch=false, "
                f"the first step) reads the cross-attention cache {else_encoder[0]}{more} and then_branch reads no "
                f"past_key_values; {crash}. Swap the If's then_branch and else_branch back, or re-export with "
                "`seq2seq-onnx convert SOURCE -o OUT`."
            )
            continue
        if else_encoder:
            report.problems.append(
                f"{name}: the If's else_branch (use_cache_branch=false, the first step) reads the cross-attention "
                f"cache {else_encoder[0]}{more}, which is empty then (it must compute it from encoder_hidden_states); "
                f"{crash}. {fix}"
            )
        if not then_decoder:
            ignored = True
            report.problems.append(
                f"{name}: the If's then_branch (use_cache_branch=true, every step after the first) reads no "
                "past_key_values.*.decoder.* input: it ignores the cache while Transformers.js feeds it only the last "
                f"token, so the output goes wrong from the second token. {fix}"
            )
    return ignored


def _check_cache_reads(report: InspectReport, name: str, info: GraphInfo, fix: str, then_reported: bool) -> None:
    """A merged decoder must read what it declares: its self-attention cache and use_cache_branch.

    Names alone prove nothing: a decoder without past given (unused) past_key_values.* inputs and
    use_cache_branch has the merged decoder's interface, loads, and Transformers.js feeds it one token
    per step. One line for the cache (unless the If check already said then_branch ignores it), one
    for use_cache_branch."""
    unread = set(info.inputs_not_read)
    own = [n for n in info.inputs if n.startswith("past_key_values.") and ".decoder." in n]
    ignored = [n for n in own if n in unread]
    wrong = ("Transformers.js feeds it only the last token after the first step, so the output goes wrong from "
             "the second token (repeats, loops)")
    if not own:
        report.problems.append(
            f"{name} has no self-attention cache inputs (past_key_values.*.decoder.*), only "
            f"{', '.join(n for n in info.inputs if n.startswith('past_key_values.'))}: {wrong}. {fix}"
        )
    elif ignored and not then_reported:
        if len(ignored) == len(own):
            what = (f"declares {len(own)} self-attention cache inputs (past_key_values.*.decoder.*) but never reads "
                    "them: its logits are computed without the cache (a decoder without past under the merged name)")
        else:
            more = f" (+{len(ignored) - 1} more)" if len(ignored) > 1 else ""
            what = (f"never reads {ignored[0]}{more} of its {len(own)} self-attention cache inputs "
                    "(past_key_values.*.decoder.*): those layers compute the logits without their cache")
        report.problems.append(f"{name} {what}; {wrong}. {fix}")
    if USE_CACHE_BRANCH in info.inputs and USE_CACHE_BRANCH in unread:
        report.problems.append(
            f"{name} declares use_cache_branch but never reads it, so the first step (use_cache_branch=false, every "
            "cache empty) runs the same computation as the later ones: it is not a merged decoder (a decoder with "
            "past alone reads the empty cross-attention cache at the first step, one without past ignores the "
            f"cache). {fix}"
        )


_JS_DECIMAL = re.compile(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
_JS_INTEGER = re.compile(r"0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+")


def _js_number(value) -> float:
    """JavaScript's unary `+value` for JSON values (true -> 1, "2" -> 2, null -> 0, other -> NaN)."""
    if value is None or isinstance(value, bool):
        return float(bool(value))
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 0.0
        if _JS_DECIMAL.fullmatch(text):
            return float(text)
        if _JS_INTEGER.fullmatch(text):
            return float(int(text, 0))
        return math.nan
    return math.nan


def external_data_chunks(setting, full_name: str, file_name: str) -> int:
    """How many external-data files Transformers.js 4.3.1 fetches for one graph.

    Mirrors `resolveExternalDataFormat(config, fullName, fileName)`: falsy -> 0; an object is looked
    up by the full file name (`decoder_model_merged_fp16.onnx`), then by the bare name without
    dtype suffix or extension (`decoder_model_merged`), else 0; anything else is `+setting`
    (`true` -> 1, a number N -> N). The files are then `<full name>_data`, `_data_1`, ... (a
    fractional N rounds up, as the JavaScript loop does).
    """
    if isinstance(setting, dict):
        if full_name in setting:
            value = _js_number(setting[full_name])
        elif file_name in setting:
            value = _js_number(setting[file_name])
        else:
            return 0
    elif isinstance(setting, list):
        return 0  # an array is an object without those keys
    else:
        value = _js_number(setting)
    if math.isinf(value) and value > 0:
        return TRANSFORMERSJS_MAX_DATA_CHUNKS + 1  # refused as too many, like Infinity in JavaScript
    return math.ceil(value) if value > 0 else 0  # NaN > 0 is false


def external_data_names(full_name: str, chunks: int) -> list[str]:
    """The files Transformers.js fetches for `chunks` external-data chunks (getExternalDataChunkNames)."""
    return [f"{full_name}_data" + ("" if i == 0 else f"_{i}") for i in range(chunks)]


def _external_data_setting(config: dict, file_name: str, default_device: str):
    """`use_external_data_format` as Transformers.js sees it for one file on one default device:
    `transformers.js_config`, overridden by its `device_config[device]`."""
    tjs = config.get("transformers.js_config")
    if not isinstance(tjs, dict):
        return None
    device = tjs.get("device") or default_device
    if isinstance(device, dict):
        device = device.get(file_name, default_device)
    per_device = tjs.get("device_config")
    if isinstance(per_device, dict) and isinstance(per_device.get(device), dict) \
            and "use_external_data_format" in per_device[device]:
        return per_device[device]["use_external_data_format"]
    return tjs.get("use_external_data_format")


def _check_external_data(report: InspectReport, config: dict, onnx_dir: Path) -> None:
    """Graphs with external data must be announced in config.json the way Transformers.js reads it.

    Without the setting Node still loads them (ONNX Runtime reads the data beside the file), but the
    browser build has no file system: it mounts only the files the setting names, and fails with
    "Module.MountedFiles is not available". With it, every named file must exist (else
    ModelFileNotFoundError) and hold all the graph's data.
    """
    missing_entry: dict[str, object] = {}
    for dtype in report.transformersjs_dtypes:
        suffix = DTYPE_SUFFIXES[dtype]
        for file_name in TRANSFORMERSJS_GRAPHS:
            full = f"{file_name}{suffix}.onnx"
            info = report.graphs.get(full)
            if info is None or info.error:
                continue
            settings = {}  # chunk count -> where it applies
            for where, device in (("the browser", "wasm"), ("Node", "cpu")):
                chunks = external_data_chunks(_external_data_setting(config, file_name, device), full, file_name)
                settings.setdefault(chunks, []).append(where)
            for chunks, where in settings.items():
                fetched = external_data_names(full, chunks)
                if chunks > TRANSFORMERSJS_MAX_DATA_CHUNKS:
                    report.problems.append(
                        f"config.json's use_external_data_format gives {full} {chunks} external-data chunks; "
                        f"Transformers.js refuses more than {TRANSFORMERSJS_MAX_DATA_CHUNKS}."
                    )
                    continue
                if info.external_data and not chunks:
                    if "the browser" in where:
                        one = f"{full}_data"
                        if info.external_data == [one]:
                            missing_entry[full] = True
                        elif sorted(info.external_data) == sorted(external_data_names(full, len(info.external_data))):
                            missing_entry[full] = len(info.external_data)
                        else:
                            missing_entry[full] = None
                    continue
                # Node hands ONNX Runtime the file path, and it reads any location beside the graph; the
                # browser mounts only the fetched files ("File not found in preloaded files").
                stray = [loc for loc in info.external_data if loc not in fetched]
                if stray and chunks and "the browser" in where:
                    report.problems.append(
                        f"{full} reads external data from {', '.join(stray)}, but Transformers.js fetches only "
                        f"{', '.join(fetched)} for it: Node loads it, the browser fails (\"File not found in preloaded "
                        f"files\"). Re-save its weights into one file named {full}_data (onnx.save_model(model, path, "
                        f"save_as_external_data=True, all_tensors_to_one_file=True, location='{full}_data')) or re-export."
                    )
                absent = [n for n in fetched if not (onnx_dir / n).is_file()]
                if absent:
                    node_error = " (ModelFileNotFoundError in Node)" if "Node" in where else ""
                    report.problems.append(
                        f"config.json's transformers.js_config.use_external_data_format makes Transformers.js fetch "
                        f"{', '.join(absent)} for {full}, and the folder lacks it: loading dtype {dtype} fails in "
                        f"{' and '.join(where)}{node_error}. Fix the entry for {full} "
                        "(true for one <file>_data, N for N chunks, absent or false for none)."
                    )
    if missing_entry:
        odd = [name for name, value in missing_entry.items() if value is None]
        entry = ", ".join(f'"{name}": {json.dumps(value if value is not None else True)}'
                          for name, value in missing_entry.items())
        extra = (f" (first re-save {', '.join(odd)} with its data in one file named <file>_data: the browser "
                 "fetches only that name)" if odd else "")
        keep, them = ("keeps its", "it") if len(missing_entry) == 1 else ("keep their", "them")
        report.problems.append(
            f"{', '.join(missing_entry)} {keep} weights in external data files but config.json's "
            f"transformers.js_config.use_external_data_format does not cover {them}: Node loads {them}, the browser fails "
            f"(\"Module.MountedFiles is not available\"). Add to config.json: "
            f"\"transformers.js_config\": {{\"use_external_data_format\": {{{entry}}}}}{extra}."
        )


def _tokenizer_vocabulary(data: dict) -> tuple[dict[int, str], set[str]] | None:
    """{id: token} of tokenizer.json's model vocabulary plus added_tokens, and the special tokens."""
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict):
        return None
    tokens: dict[int, str] = {}
    vocab = model.get("vocab")
    if isinstance(vocab, list):  # Unigram: [[piece, score], ...], the id is the position
        for index, entry in enumerate(vocab):
            if isinstance(entry, (list, tuple)) and entry:
                tokens[index] = str(entry[0])
    elif isinstance(vocab, dict):  # BPE, WordPiece, WordLevel: {piece: id}
        for piece, index in vocab.items():
            if isinstance(index, int):
                tokens[index] = piece
    else:
        return None
    special = set()
    for added in data.get("added_tokens") or []:
        if isinstance(added, dict) and isinstance(added.get("id"), int):
            tokens[added["id"]] = str(added.get("content", ""))
            if added.get("special"):
                special.add(str(added.get("content", "")))
    return tokens, special


def regular_token_count(path: Path) -> int | None:
    """How many tokens of tokenizer.json at `path` are not special (None when it cannot be read)."""
    try:
        found = _tokenizer_vocabulary(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None
    if found is None:
        return None
    tokens, special = found
    return sum(1 for token in tokens.values() if token not in special)


def max_token_id(path: Path) -> int | None:
    """The largest token id of tokenizer.json at `path` (None when it cannot be read)."""
    try:
        found = _tokenizer_vocabulary(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None
    return max(found[0]) if found and found[0] else None


def tokenizer_problems(path: Path, vocab_size) -> list[str]:
    """What is wrong with tokenizer.json at `path` for a model of `vocab_size` (config.json): ids out of
    range, vocabulary (nearly) empty, unreadable. Each problem is one sentence without the fix.

    Counts model.vocab plus added_tokens from the JSON alone (no tokenizer is built). Regular tokens
    are those not marked special in added_tokens.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ["tokenizer.json is not valid JSON (Transformers.js cannot load the tokenizer)."]
    found = _tokenizer_vocabulary(data)
    if found is None or not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size <= 0:
        return []
    tokens, special = found
    problems = []
    beyond = sorted(i for i in tokens if i >= vocab_size)
    if beyond:
        problems.append(
            f"tokenizer.json has {len(beyond)} token ids at or above config.json's vocab_size {vocab_size} "
            f"(up to {beyond[-1]}, e.g. {tokens[beyond[0]]!r}): text containing them indexes past the model's "
            f"embedding and ONNX Runtime fails (Gather: \"indices element out of data bounds\")."
        )
    regular = sum(1 for token in tokens.values() if token not in special)
    if regular < MIN_TOKENIZER_COVERAGE * vocab_size:
        problems.append(
            f"tokenizer.json has only {regular} regular tokens (plus {len(tokens) - regular} special) for a model "
            f"with vocab_size {vocab_size} (config.json): it is not this model's tokenizer or lost its vocabulary "
            f"(e.g. an empty T5 tokenizer); text encodes to <unk> and generated ids decode to nothing."
        )
    return problems


def _check_tokenizer(report: InspectReport, folder: Path, config: dict) -> None:
    path = folder / "tokenizer.json"
    if not path.is_file():
        return
    fix = "Copy tokenizer.json and tokenizer_config.json from the source checkpoint, or re-export."
    for problem in tokenizer_problems(path, config.get("vocab_size")):
        report.problems.append(f"{problem} {fix}")


def inspect_folder(folder) -> InspectReport:
    folder = Path(folder)
    report = InspectReport(folder=str(folder))
    onnx_dir = folder / "onnx"
    if not folder.is_dir():
        report.is_export = False
        if not folder.exists():
            report.problems.append(f"{folder} does not exist")
        else:
            kind = "is a file" if folder.is_file() else "is not a regular folder"
            report.problems.append(f"{folder} {kind}, not a folder: give the export folder (the one with onnx/)")
        return report
    if not onnx_dir.is_dir():
        found = list(folder.glob("*.onnx"))
        if not found:
            report.is_export = False
            report.problems.append(f"{folder} has no onnx/ subfolder and no .onnx files")
            return report
        onnx_dir = folder
        report.problems.append("the .onnx files are not in an onnx/ subfolder, where Transformers.js looks for them")

    config = {}
    if (folder / "config.json").is_file():
        try:
            config = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            report.problems.append("config.json is not valid JSON")
        if not isinstance(config, dict):
            report.problems.append("config.json does not hold a JSON object")
            config = {}
    else:
        report.problems.append("config.json is missing (Transformers.js needs it)")

    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "spiece.model", "generation_config.json"):
        report.tokenizer_files[name] = (folder / name).is_file()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if not report.tokenizer_files[name]:
            report.problems.append(f"{name} is missing (Transformers.js loads the tokenizer from it)")

    for dtype, suffix in DTYPE_SUFFIXES.items():
        for graph in GRAPH_NAMES:
            path = onnx_dir / f"{graph}{suffix}.onnx"
            if path.is_file():
                report.graphs[path.name] = read_graph(path)
                if dtype not in report.dtypes_present:
                    report.dtypes_present.append(dtype)
        if (onnx_dir / f"encoder_model{suffix}.onnx").is_file() and (onnx_dir / f"decoder_model_merged{suffix}.onnx").is_file():
            report.transformersjs_dtypes.append(dtype)
    if not report.graphs:
        report.is_export = False
        report.problems.append(f"no encoder_model*.onnx or decoder*.onnx files in {onnx_dir}")
        return report

    for info in report.graphs.values():
        if info.error:
            report.problems.append(info.error + ".")

    from .export.families import family_for, transformersjs_supports

    model_type = config.get("model_type", "")
    report.model_type = model_type if isinstance(model_type, str) else json.dumps(model_type)
    if config and family_for(model_type) is not None and not transformersjs_supports(model_type):
        report.problems.append(unsupported_model_type_problem(model_type))
        report.transformersjs_unsupported_model_type = True
    fix = "Re-export with `seq2seq-onnx convert SOURCE -o OUT`."
    _check_versions(report, fix)
    _check_io(report, fix)
    expected = _expected_cache(config) if config else None
    unchecked = []  # merged decoders whose cache layout config.json could not tell
    for name, info in report.graphs.items():
        if info.error or not name.startswith("decoder_model_merged"):
            continue
        problem = merged_decoder_problem(info.inputs, info.outputs)
        if problem:
            report.problems.append(f"{name}: {problem}. {fix}")
            if any(n.startswith("past_key_values.") for n in info.inputs):
                _check_cache_reads(report, name, info, fix, then_reported=False)
            continue
        past = [n for n in info.inputs if n.startswith("past_key_values.")]
        then_reported = _check_cache_branches(report, name, info, fix)
        _check_cache_reads(report, name, info, fix, then_reported)
        if isinstance(expected, str):
            unchecked.append(name)
        elif expected:
            layers, heads, head_dim = expected
            found_layers = len({n.split(".")[1] for n in past})
            dims = info.inputs[past[0]][1] or []
            if found_layers != layers:
                report.problems.append(f"{name} has cache inputs for {found_layers} layers, config.json says {layers}. {fix}")
            if len(dims) == 4 and isinstance(dims[1], int) and isinstance(dims[3], int) and (dims[1], dims[3]) != (heads, head_dim):
                report.problems.append(
                    f"{name} caches {dims[1]} heads of {dims[3]}, config.json says {heads} heads of {head_dim}. {fix}"
                )
    if unchecked:
        report.warnings.append(
            f"the cache layout (layers, heads, head size) of {', '.join(unchecked)} could not be checked against "
            f"config.json {expected}; Transformers.js reads the layout from config.json, so a mismatch would only "
            "show when it runs (e.g. `seq2seq-onnx verify`)"
        )
    if not report.transformersjs_dtypes:
        if any(n.startswith("decoder_model") and not n.startswith("decoder_model_merged") for n in report.graphs):
            report.problems.append(
                "no decoder_model_merged*.onnx: Transformers.js fails with ModelFileNotFoundError (it does not "
                f"fall back to decoder_model.onnx or decoder_with_past_model.onnx). {fix}"
            )
        else:
            report.problems.append(
                "no dtype has both files Transformers.js loads, an encoder and a merged decoder with the same suffix "
                "(encoder_model.onnx + decoder_model_merged.onnx for fp32, encoder_model_quantized.onnx + "
                f"decoder_model_merged_quantized.onnx for q8, ...); found only {', '.join(report.graphs)}"
            )
    _check_external_data(report, config, onnx_dir)
    _check_tokenizer(report, folder, config)
    return report


def format_report(report: InspectReport) -> str:
    lines = [f"{report.folder}"]
    if report.graphs:
        lines.append(f"  dtypes present: {', '.join(report.dtypes_present) or 'none'}; "
                     f"Transformers.js can load: {', '.join(report.transformersjs_dtypes) or 'none'}")
        for name, info in report.graphs.items():
            if info.error:
                lines.append(f"  {name}: {info.error}")
                continue
            past = [n for n in info.inputs if n.startswith("past_key_values.")]
            extra = f", external data {', '.join(info.external_data)}" if info.external_data else ""
            lines.append(
                f"  {name}: opset {info.opset}, IR {info.ir_version}, {len(info.inputs)} inputs, {len(info.outputs)} outputs"
                + (f", {len(past)} cache inputs" if past else "")
                + (", use_cache_branch" if USE_CACHE_BRANCH in info.inputs else "")
                + extra
            )
        present = [k for k, v in report.tokenizer_files.items() if v]
        lines.append(f"  tokenizer/config files: {', '.join(present) or 'none'}")
    for w in report.warnings:
        lines.append(f"warning: {' '.join(w.split())}")
    lines.append("verdict: " + report.verdict())
    return "\n".join(lines)
