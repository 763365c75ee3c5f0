"""Quantize stage: the Transformers.js dtypes, beside the fp32 files, each checked before it is kept.

    onnx/encoder_model{sfx}.onnx  onnx/decoder_model_merged{sfx}.onnx
    q8 _quantized, int8 _int8, uint8 _uint8, q4 _q4, q4f16 _q4f16, bnb4 _bnb4, fp16 _fp16

onnxruntime's tools do the work, with the settings of Transformers.js's former quantize script:
dynamic 8-bit quantization with `EnableSubgraph` (the merged decoder's MatMuls sit inside the `If`
branches; without it the decoder silently stays float), `MatMulNBitsQuantizer` for q4 and
`MatMulBnb4Quantizer` for bnb4, onnxruntime's float16 converter for fp16. Inputs and outputs stay
float32 in every dtype, which is what Transformers.js feeds.

fp16 and T5: flan-t5's feed-forward output (`wo`) and residual stream pass 65504 and become inf
in float16 (transformers keeps `wo` in float32 for that reason). Our fp16 files store the weights
in float16 and compute in float32, so no activation can overflow; only the weights' rounding
differs from fp32, and their files take half the space.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from .errors import Seq2SeqOnnxError
from .export.merge import all_nodes, materialize_transposed_weights
from .export.onnx_io import save_model
from .runtime.sessions import DTYPE_SUFFIXES

MODES = ("q8", "int8", "uint8", "q4", "q4f16", "bnb4", "fp16")
GRAPHS = ("encoder_model", "decoder_model_merged")


# onnxruntime's quantizers log every node at INFO level
for _name in ("onnxruntime.quantization", "onnxruntime.quantization.matmul_nbits_quantizer",
              "onnxruntime.quantization.matmul_bnb4_quantizer", "onnxruntime.transformers.float16"):
    logging.getLogger(_name).setLevel(logging.WARNING)


@dataclass
class QuantizeSettings:
    per_channel: bool = True
    reduce_range: bool = True
    block_size_q4: int = 32
    block_size_bnb4: int = 64
    is_symmetric: bool = True
    bnb4_quant_type: int = 1  # NF4


@dataclass
class VariantReport:
    dtype: str
    files: dict[str, int] = field(default_factory=dict)
    kept: bool = False
    reason: str = ""
    token_agreement: float | None = None  # share of greedy tokens equal to fp32's on the check prompts
    seconds: float = 0.0


def _quantize_8bit(model: onnx.ModelProto, weight_type, s: QuantizeSettings) -> onnx.ModelProto:
    from onnxruntime.quantization import QuantizationMode
    from onnxruntime.quantization.onnx_quantizer import ONNXQuantizer
    from onnxruntime.quantization.registry import IntegerOpsRegistry
    from onnxruntime.quantization.quant_utils import QuantType

    quantizer = ONNXQuantizer(
        model,
        s.per_channel,
        s.reduce_range,
        mode=QuantizationMode.IntegerOps,
        static=False,
        weight_qType=weight_type,
        activation_qType=QuantType.QUInt8,  # dynamic activations are uint8
        tensors_range=None,
        nodes_to_quantize=[],
        nodes_to_exclude=[],
        op_types_to_quantize=set(IntegerOpsRegistry.keys()),
        extra_options={"EnableSubgraph": True, "MatMulConstBOnly": True},
    )
    quantizer.quantize_model()
    return quantizer.model.model


def _quantize_q4(model: onnx.ModelProto, s: QuantizeSettings) -> onnx.ModelProto:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(model, block_size=s.block_size_q4, is_symmetric=s.is_symmetric)
    quantizer.process()
    return quantizer.model.model


def _quantize_bnb4(model: onnx.ModelProto, s: QuantizeSettings) -> onnx.ModelProto:
    from onnxruntime.quantization.matmul_bnb4_quantizer import MatMulBnb4Quantizer

    quantizer = MatMulBnb4Quantizer(model, s.bnb4_quant_type, s.block_size_bnb4)
    quantizer.process()
    return quantizer.model.model


def op_types(model: onnx.ModelProto) -> set[str]:
    """Every op type in the model, `If` branches included."""
    return {node.op_type for node in all_nodes(model.graph)}


def _to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Store the weights in float16, compute in float32.

    Each large float weight becomes a float16 initializer followed by one `Cast` to float32 in
    the main graph, which ONNX Runtime folds at load time. Activations never pass through
    float16, so T5's feed-forward and residual values beyond 65504 cannot overflow (converters
    that run the matrix products in float16 round-trip them through float16 at every boundary);
    the files take half the space, and inputs and outputs stay float32.
    """
    from onnx import numpy_helper

    graph = model.graph
    used = {name for node in all_nodes(graph) for name in node.input}
    casts = []
    for tensor in graph.initializer:
        if tensor.data_type != onnx.TensorProto.FLOAT or tensor.name not in used:
            continue
        array = numpy_helper.to_array(tensor)
        if array.size < 1024 or not np.isfinite(array).all() or np.abs(array).max() > 65504:
            continue  # small tensors, and weights outside the float16 range, stay as they are
        name = tensor.name
        tensor.CopyFrom(numpy_helper.from_array(array.astype(np.float16), name + "_fp16"))
        casts.append(onnx.helper.make_node("Cast", [name + "_fp16"], [name], to=onnx.TensorProto.FLOAT,
                                           name=f"weight_to_fp32/{name}"))
    for cast in reversed(casts):
        graph.node.insert(0, cast)
    return model


def quantize_graph(model: onnx.ModelProto, mode: str, settings: QuantizeSettings) -> onnx.ModelProto:
    from onnxruntime.quantization.quant_utils import QuantType

    if mode != "fp16":  # quantizers need a tied output projection's weight as an initializer
        materialize_transposed_weights(model)

    if mode == "q8":
        # signed weights are faster on most CPUs; Transformers.js's rule: unsigned only with Conv
        weight_type = QuantType.QUInt8 if "Conv" in op_types(model) else QuantType.QInt8
        return _quantize_8bit(model, weight_type, settings)
    if mode == "int8":
        return _quantize_8bit(model, QuantType.QInt8, settings)
    if mode == "uint8":
        return _quantize_8bit(model, QuantType.QUInt8, settings)
    if mode == "q4":
        return _quantize_q4(model, settings)
    if mode == "q4f16":
        return _to_fp16(_quantize_q4(model, settings))  # 4-bit MatMuls, the rest (embedding) in float16
    if mode == "bnb4":
        return _quantize_bnb4(model, settings)
    if mode == "fp16":
        return _to_fp16(model)
    raise Seq2SeqOnnxError(f"unknown quantization mode {mode!r}; choose from {', '.join(MODES)}")


def _check_variant(folder: Path, mode: str, reference: np.ndarray | None, prompts) -> tuple[bool, str, float | None]:
    """Load the variant in ONNX Runtime and generate: no load error, no NaN/inf, and the token agreement with fp32."""
    from .runtime import Seq2SeqOnnxModel

    try:
        model = Seq2SeqOnnxModel.from_pretrained(folder, dtype=mode)
        ids, mask = model.tokenize(list(prompts))
        logits = model.decoder.step(
            np.full((ids.shape[0], 1), model.generation_options.decoder_start_token_id, dtype=np.int64), 0,
            model.encoder.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})[0], mask,
            model.decoder.empty_cache(ids.shape[0], None),
        )
        if not np.isfinite(logits).all():
            return False, "non-finite logits (overflow)", None
        got = model.generate(ids, mask, max_new_tokens=max(reference.shape[1] - 1, 1)) if reference is not None else None
    except Exception as err:  # a variant onnxruntime cannot load or run is dropped, with the reason
        return False, f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}", None
    agreement = None
    if reference is not None:
        from .verify.folder import token_agreement

        agreement = float(np.mean([token_agreement(r.tolist(), g.tolist()) for r, g in zip(reference, got)]))
    return True, "", agreement


CHECK_PROMPTS = (
    "translate English to German: The house is wonderful.",
    "summarize: studies have shown that owning a dog is good for you",
)


def _check_in_transformersjs(folder: Path, mode: str) -> tuple[bool, str]:
    from .verify import transformersjs

    try:
        transformersjs.generate(folder, CHECK_PROMPTS[:1], dtype=mode, max_new_tokens=4)
    except Exception as err:
        return False, f"Transformers.js cannot run it: {str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}"
    return True, ""


def quantize_folder(folder, modes=MODES, settings: QuantizeSettings | None = None, progress: bool = False,
                    check_tokens: int = 16, transformersjs: bool | None = None) -> list[VariantReport]:
    """Write the quantized variants of an export folder's fp32 files; drop (and report) any that fail their check.

    The check loads and runs each variant in ONNX Runtime, and in Transformers.js under Node too
    (`transformersjs`: None = when Node and its npm packages are installed and know the model type).
    """
    from tqdm.auto import tqdm

    from .runtime import Seq2SeqOnnxModel

    folder = Path(folder)
    settings = settings or QuantizeSettings()
    onnx_dir = folder / "onnx"
    for graph in GRAPHS:
        if not (onnx_dir / f"{graph}.onnx").is_file():
            raise Seq2SeqOnnxError(f"{onnx_dir / (graph + '.onnx')} is missing: quantize needs the fp32 export")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise Seq2SeqOnnxError(f"unknown quantization mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")

    from .outputs import is_ours, record_files, remove_stale_scratch, scratch_folder

    remove_stale_scratch(folder, "quantize")  # working folders of runs that were killed

    if (folder / "quantize_config.json").exists() and not is_ours(folder, "quantize_config.json"):
        raise Seq2SeqOnnxError(
            f"{folder / 'quantize_config.json'} was not written by seq2seq-onnx, and quantize would replace it: "
            "quantize an export of `seq2seq-onnx convert` instead (or move the file away)"
        )
    if transformersjs is None:
        from .export.families import transformersjs_supports
        from .verify import transformersjs_available

        model_type = json.loads((folder / "config.json").read_text()).get("model_type", "")
        transformersjs = transformersjs_available() and transformersjs_supports(model_type)
    check_transformersjs = transformersjs
    fp32 = Seq2SeqOnnxModel.from_pretrained(folder)
    ids, mask = fp32.tokenize(list(CHECK_PROMPTS))
    reference = fp32.generate(ids, mask, max_new_tokens=check_tokens)
    external: dict[str, bool] = {}
    reports = []
    bar = tqdm(list(modes), disable=not progress, unit="dtype", leave=False)
    for mode in bar:
        bar.set_description(f"quantizing {mode}")
        started = time.perf_counter()
        report = VariantReport(dtype=mode)
        suffix = DTYPE_SUFFIXES[mode]
        existing = [p for graph in GRAPHS for p in sorted(onnx_dir.glob(f"{graph}{suffix}.onnx*"))]
        foreign = [p.name for p in existing if not is_ours(folder, f"onnx/{p.name}")]
        if foreign:  # never replace (or remove) a file we did not write
            report.reason = (f"onnx/{foreign[0]} exists and was not written by seq2seq-onnx; move it away to write "
                             f"{mode} here")
            report.seconds = time.perf_counter() - started
            reports.append(report)
            continue
        tmp = scratch_folder(folder, "quantize")
        try:
            try:
                for graph in GRAPHS:
                    model = onnx.load(str(onnx_dir / f"{graph}.onnx"))
                    if save_model(quantize_graph(model, mode, settings), tmp / f"{graph}{suffix}.onnx"):
                        external[f"{graph}{suffix}.onnx"] = True
                    del model
            except Exception as err:
                report.reason = f"quantization failed: {type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            else:
                # check it from a folder that has only this variant beside the configs
                check = tmp / "check"
                (check / "onnx").mkdir(parents=True)
                for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
                    if (folder / name).exists():
                        shutil.copy(folder / name, check / name)
                for produced in tmp.glob("*.onnx*"):
                    os.link(produced, check / "onnx" / produced.name)
                ok, reason, agreement = _check_variant(check, mode, reference, CHECK_PROMPTS)
                if ok and check_transformersjs:
                    ok, reason = _check_in_transformersjs(check, mode)
                report.kept, report.reason, report.token_agreement = ok, reason, agreement
                if ok:
                    produced = sorted(tmp.glob("*.onnx*"))
                    # recorded first: an interrupt between the two leaves files that are known to be ours
                    record_files(folder, [f"onnx/{f.name}" for f in produced])
                    for file in produced:
                        os.replace(file, onnx_dir / file.name)
                        report.files[f"onnx/{file.name}"] = (onnx_dir / file.name).stat().st_size
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if not report.kept:
            for graph in GRAPHS:  # never leave half a dtype behind (a stale one from an earlier run included)
                for stale in onnx_dir.glob(f"{graph}{suffix}.onnx*"):
                    stale.unlink()
        report.seconds = time.perf_counter() - started
        reports.append(report)
    bar.close()
    kept_files = {Path(name).name for r in reports if r.kept for name in r.files}
    external = {name: True for name in external if name in kept_files}
    if external:  # announce large variants to Transformers.js, as convert does for fp32
        config_path = folder / "config.json"
        model_config = json.loads(config_path.read_text())
        formats = model_config.setdefault("transformers.js_config", {}).setdefault("use_external_data_format", {})
        formats.update(external)
        config_path.write_text(json.dumps(model_config, indent=2) + "\n")
    config = {
        "modes": [r.dtype for r in reports if r.kept],
        "settings": asdict(settings),
        "variants": [asdict(r) for r in reports],
    }
    record_files(folder, ["quantize_config.json"])
    (folder / "quantize_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return reports
