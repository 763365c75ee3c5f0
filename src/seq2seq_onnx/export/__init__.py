"""Export stage: a PyTorch checkpoint to the ONNX graphs and files Transformers.js loads.

    source.py     SOURCE (hub id or folder) -> Source (config, family); the PyTorch model
    families/     one small adapter per family: cache layout, tokenizer class, hub ids, Transformers.js support
    graphs.py     torch.onnx wrappers: encoder, decoder without past, decoder with past
    merge.py      the two decoders -> one decoder_model_merged.onnx (If on use_cache_branch)
    onnx_io.py    saving, with external data past 1.8 GB
    tokenizer.py  tokenizer.json and friends, checked against sentencepiece
    configs.py    config.json (+ transformers.js_config) and generation_config.json

Importing this package does not import torch; `export_graphs` and `graphs.py` do.
"""

from __future__ import annotations

from pathlib import Path

ENCODER_FILE = "encoder_model.onnx"
MERGED_DECODER_FILE = "decoder_model_merged.onnx"
NO_PAST_DECODER_FILE = "decoder_model.onnx"


def export_graphs(model, layout, onnx_dir: Path, work: Path, with_past: bool, opset: int, stages) -> dict[str, bool]:
    """Write onnx/encoder_model.onnx and onnx/decoder_model_merged.onnx (or, without past,
    onnx/decoder_model.onnx) of a PyTorch `model` into `onnx_dir`, using `work` for scratch graphs.

    `stages` gets start(name)/done() calls for a progress display. Returns {file name: uses
    external data}. Raises ExportError when torch.onnx cannot export the model.
    """
    import onnx

    from .graphs import export_decoder, export_encoder
    from .merge import merge_decoders, share_transposed_weights
    from .onnx_io import save_model

    external = {}
    stages.start("exporting encoder")
    export_encoder(model, work / "encoder.onnx", opset)
    external[ENCODER_FILE] = save_model(onnx.load(str(work / "encoder.onnx")), onnx_dir / ENCODER_FILE)
    stages.done()

    stages.start("exporting decoder")
    export_decoder(model, layout, work / "decoder.onnx", with_past=False, opset=opset)
    stages.done()
    if not with_past:
        decoder = onnx.load(str(work / "decoder.onnx"))
        share_transposed_weights(decoder)
        external[NO_PAST_DECODER_FILE] = save_model(decoder, onnx_dir / NO_PAST_DECODER_FILE)
        return external

    stages.start("exporting decoder with past")
    export_decoder(model, layout, work / "decoder_with_past.onnx", with_past=True, opset=opset)
    stages.done()

    stages.start("merging decoders")
    merged = merge_decoders(onnx.load(str(work / "decoder.onnx")), onnx.load(str(work / "decoder_with_past.onnx")))
    share_transposed_weights(merged)  # a tied output projection: one copy of the embedding, not two
    external[MERGED_DECODER_FILE] = save_model(merged, onnx_dir / MERGED_DECODER_FILE)
    del merged
    # Structure check from the file: in memory, onnx cannot check a model over 2 GB.
    onnx.checker.check_model(str(onnx_dir / MERGED_DECODER_FILE))
    stages.done()
    return external
