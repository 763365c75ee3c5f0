"""Inspect stage: diagnose any export folder, ours or not, without loading its weights.

Reads graph structure only (`onnx.load(..., load_external_data=False)`), so an untrusted or huge
folder costs little, and external-data references that point outside the folder are refused
before anything would follow them. The verdict says what Transformers.js will do with the folder
and what to run to fix it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .runtime import DTYPE_SUFFIXES

EXIT_HEALTHY, EXIT_PROBLEMS, EXIT_NOT_AN_EXPORT = 0, 1, 2
GRAPH_NAMES = ("encoder_model", "decoder_model_merged", "decoder_model", "decoder_with_past_model")


@dataclass
class GraphInfo:
    file: str
    opset: int | None = None
    ir_version: int | None = None
    inputs: dict[str, list] = field(default_factory=dict)  # name -> [elem type, dims]
    outputs: dict[str, list] = field(default_factory=dict)
    external_data: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class InspectReport:
    folder: str
    graphs: dict[str, GraphInfo] = field(default_factory=dict)
    dtypes_present: list[str] = field(default_factory=list)
    transformersjs_dtypes: list[str] = field(default_factory=list)
    tokenizer_files: dict[str, bool] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    is_export: bool = True

    @property
    def exit_code(self) -> int:
        if not self.is_export:
            return EXIT_NOT_AN_EXPORT
        return EXIT_PROBLEMS if self.problems else EXIT_HEALTHY

    def to_dict(self) -> dict:
        data = asdict(self)
        data["exit_code"] = self.exit_code
        data["verdict"] = self.verdict()
        return data

    def verdict(self) -> str:
        if not self.is_export:
            return "not an export folder: " + "; ".join(self.problems)
        if self.problems:
            return "PROBLEMS: " + " ".join(self.problems)
        return f"healthy: Transformers.js can load dtypes {', '.join(self.transformersjs_dtypes)}"


_ELEM = {1: "float32", 10: "float16", 7: "int64", 6: "int32", 9: "bool", 11: "float64"}


def _value_info(value) -> list:
    t = value.type.tensor_type
    dims = [d.dim_param or d.dim_value for d in t.shape.dim] if t.HasField("shape") else None
    return [_ELEM.get(t.elem_type, str(t.elem_type)), dims]


def _external_locations(model) -> list[str]:
    from .merge import _all_nodes
    import onnx

    locations = []
    tensors = list(model.graph.initializer)
    for node in _all_nodes(model.graph):
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                tensors.append(attr.t)
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location" and entry.value not in locations:
                    locations.append(entry.value)
    return locations


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
    info.external_data = _external_locations(model)
    for location in info.external_data:
        if unsafe_location(path.parent, location):
            info.error = (f"{path.name} refers to external data {location!r} outside its folder; "
                          "refusing to read it (a malicious or broken export)")
        elif not (path.parent / location).is_file():
            info.error = f"{path.name} needs external data file {location!r}, which is missing"
    return info


def _expected_cache(config: dict) -> tuple[int, int, int] | None:
    """(layers, heads, head size) of the decoder cache from config.json, for the families we know."""
    from .families import family_for

    family = family_for(config.get("model_type", ""))
    if family is None:
        return None

    class _Config:  # the adapter reads attributes, as on a transformers config
        def __init__(self, data):
            self.__dict__.update(data)

        def __getattr__(self, name):
            return None

    try:
        layout = family.cache_layout(_Config(config))
    except (TypeError, KeyError):
        return None
    return layout.num_layers, layout.num_heads, layout.head_dim


def inspect_folder(folder) -> InspectReport:
    folder = Path(folder)
    report = InspectReport(folder=str(folder))
    onnx_dir = folder / "onnx"
    if not folder.is_dir():
        report.is_export = False
        report.problems.append(f"{folder} is not a folder")
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

    from .families import family_for, transformersjs_supports

    model_type = config.get("model_type", "")
    if config and family_for(model_type) is not None and not transformersjs_supports(model_type):
        report.problems.append(
            f"config.json says model_type {model_type!r}, which Transformers.js (4.3.1) does not support "
            "(`Unsupported model type`); the files run in ONNX Runtime"
        )
    expected = _expected_cache(config) if config else None
    fix = "Re-export with `seq2seq-onnx convert SOURCE -o OUT`."
    for name, info in report.graphs.items():
        if info.error or not name.startswith("decoder_model_merged"):
            continue
        past = [n for n in info.inputs if n.startswith("past_key_values.")]
        if not past:
            report.problems.append(
                f"{name} has no past_key_values inputs: Transformers.js will feed it one token per step and "
                f"the output goes wrong from the second token (repeats, loops). {fix}"
            )
            continue
        if "use_cache_branch" not in info.inputs:
            report.warnings.append(f"{name} has no use_cache_branch input: it is not a merged decoder (with-past only?)")
        if not any(o.startswith("present.") for o in info.outputs):
            report.problems.append(f"{name} has no present.* outputs: the cache cannot be carried to the next step. {fix}")
        if expected:
            layers, heads, head_dim = expected
            found_layers = len({n.split(".")[1] for n in past})
            dims = info.inputs[past[0]][1] or []
            if found_layers != layers:
                report.problems.append(f"{name} has cache inputs for {found_layers} layers, config.json says {layers}. {fix}")
            if len(dims) == 4 and isinstance(dims[1], int) and isinstance(dims[3], int) and (dims[1], dims[3]) != (heads, head_dim):
                report.problems.append(
                    f"{name} caches {dims[1]} heads of {dims[3]}, config.json says {heads} heads of {head_dim}. {fix}"
                )
    if not report.transformersjs_dtypes:
        if any(n.startswith("decoder_model") and not n.startswith("decoder_model_merged") for n in report.graphs):
            report.problems.append(
                "no decoder_model_merged*.onnx: Transformers.js fails with ModelFileNotFoundError (it does not "
                f"fall back to decoder_model.onnx or decoder_with_past_model.onnx). {fix}"
            )
        else:
            report.problems.append("no dtype has both encoder_model{sfx}.onnx and decoder_model_merged{sfx}.onnx")
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
                + (", use_cache_branch" if "use_cache_branch" in info.inputs else "")
                + extra
            )
        present = [k for k, v in report.tokenizer_files.items() if v]
        lines.append(f"  tokenizer/config files: {', '.join(present) or 'none'}")
    for w in report.warnings:
        lines.append(f"warning: {w}")
    lines.append("verdict: " + report.verdict())
    return "\n".join(lines)
