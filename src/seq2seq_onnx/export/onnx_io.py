"""Saving ONNX files the way Transformers.js can load them, large ones included."""

from __future__ import annotations

from pathlib import Path

import onnx

# protobuf cannot serialize a message over 2 GiB; keep a margin for the graph itself.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def initializer_bytes(model: onnx.ModelProto) -> int:
    total = 0
    for tensor in model.graph.initializer:
        if tensor.HasField("raw_data"):
            total += len(tensor.raw_data)
        else:
            total += tensor.ByteSize()
    return total


def save_model(model: onnx.ModelProto, path: Path) -> bool:
    """Save `model` to `path`; weights go to one `<name>.onnx_data` file when they are too large.

    Returns True when external data was used. One data file per graph, named after it, is
    the layout Transformers.js loads with `use_external_data_format: true`.
    """
    path = Path(path)
    external = initializer_bytes(model) > EXTERNAL_DATA_THRESHOLD
    data_path = path.with_name(path.name + "_data")
    data_path.unlink(missing_ok=True)
    if external:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data_path.name,
            size_threshold=1024,
        )
    else:
        onnx.save_model(model, str(path))
    return external
