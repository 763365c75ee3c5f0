"""Graphs from PyTorch: the encoder and both decoders through torch.onnx (TorchScript exporter).

We export three graphs: the encoder, the decoder without past (first step: it computes the
cross-attention cache from the encoder output) and the decoder with past (later steps: it
reads both caches and appends one position to the self-attention cache). `merge.py` then
joins the two decoders into one `decoder_model_merged.onnx`, the file Transformers.js loads.

Why TorchScript (`dynamo=False`) and not dynamo: on these 2-core machines it exports
flan-t5-small's three graphs in about 15 s instead of about 55 s, it is token-exact on
transformers 5 when the model is loaded with eager attention, and onnxruntime's transformer
optimizer (fused attention / layer norm for T5) was written against TorchScript-style graphs.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import torch
from torch import nn
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from ..errors import ExportError, Seq2SeqOnnxError
from .families import CacheLayout

DEFAULT_OPSET = 17
# Opsets of the TorchScript exporter (it stops at 20), all seen to verify token-exact on T5.
SUPPORTED_OPSETS = range(12, 21)

# Example sizes for tracing. They differ from each other on purpose, so that a dimension the
# tracer wrongly baked in as a constant shows up as a shape error in verification.
_BATCH, _ENC_LEN, _DEC_LEN, _PAST_LEN = 2, 7, 3, 5


def past_names(layout: CacheLayout, prefix: str = "past_key_values") -> list[str]:
    """Cache tensor names in the Optimum/Transformers.js order: per layer decoder key, value, encoder key, value."""
    names = []
    for i in range(layout.num_layers):
        for part in ("decoder", "encoder"):
            names += [f"{prefix}.{i}.{part}.key", f"{prefix}.{i}.{part}.value"]
    return names


def cache_kwarg(model: nn.Module) -> str:
    """transformers 5 renamed `past_key_values` to `cache`; accept both."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class EncoderForExport(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.encoder = model.get_encoder()

    def forward(self, input_ids, attention_mask):
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state


class DecoderForExport(nn.Module):
    """Runs the full seq2seq model on given encoder states, with the cache as flat tensors.

    Going through the model's own forward (not the bare decoder stack) keeps every
    family-specific detail, such as T5's tied-embedding logits scale or BART's final logits
    bias, in transformers' code rather than ours.
    """

    def __init__(self, model, layout: CacheLayout, with_past: bool):
        super().__init__()
        self.model = model
        self.layout = layout
        self.with_past = with_past
        self.cache_kwarg = cache_kwarg(model)

    def forward(self, input_ids, encoder_attention_mask, encoder_hidden_states, *past):
        n = self.layout.num_layers
        if self.with_past:
            self_attn = DynamicCache([(past[4 * i], past[4 * i + 1]) for i in range(n)])
            cross_attn = DynamicCache([(past[4 * i + 2], past[4 * i + 3]) for i in range(n)])
        else:
            self_attn, cross_attn = DynamicCache(), DynamicCache()
        cache = EncoderDecoderCache(self_attn, cross_attn)
        out = self.model(
            encoder_outputs=(encoder_hidden_states,),
            attention_mask=encoder_attention_mask,
            decoder_input_ids=input_ids,
            use_cache=True,
            return_dict=True,
            **{self.cache_kwarg: cache},
        )
        flat = [out.logits]
        for i in range(n):
            flat += [cache.self_attention_cache.layers[i].keys, cache.self_attention_cache.layers[i].values]
            if not self.with_past:
                flat += [cache.cross_attention_cache.layers[i].keys, cache.cross_attention_cache.layers[i].values]
        return tuple(flat)


def check_opset(opset: int) -> None:
    if opset not in SUPPORTED_OPSETS:
        raise Seq2SeqOnnxError(
            f"opset {opset} is not supported; use {SUPPORTED_OPSETS.start} to {SUPPORTED_OPSETS.stop - 1} "
            f"(default {DEFAULT_OPSET})"
        )


def _export(module, args, path: Path, input_names, output_names, dynamic_axes, opset: int) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter warns about its own deprecation and about traced Python
        # values; verification, not these warnings, tells whether the graph is right.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module,
                args,
                str(path),
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        except Exception as err:  # torch raises many types, with the whole IR graph in the message
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ExportError(f"torch.onnx could not export {path.stem} (opset {opset}): {first_line}") from err


def export_encoder(model, path: Path, opset: int = DEFAULT_OPSET) -> None:
    vocab = model.config.vocab_size
    ids = torch.randint(3, vocab, (_BATCH, _ENC_LEN))
    mask = torch.ones(_BATCH, _ENC_LEN, dtype=torch.long)
    mask[1, -2:] = 0
    _export(
        EncoderForExport(model).eval(),
        (ids, mask),
        path,
        ["input_ids", "attention_mask"],
        ["last_hidden_state"],
        {
            "input_ids": {0: "batch_size", 1: "encoder_sequence_length"},
            "attention_mask": {0: "batch_size", 1: "encoder_sequence_length"},
            "last_hidden_state": {0: "batch_size", 1: "encoder_sequence_length"},
        },
        opset,
    )


def export_decoder(model, layout: CacheLayout, path: Path, with_past: bool, opset: int = DEFAULT_OPSET) -> None:
    """Export the decoder without past (`with_past=False`) or with past (`with_past=True`)."""
    config = model.config
    d_model = config.d_model
    dec_len = 1 if with_past else _DEC_LEN
    ids = torch.randint(3, config.vocab_size, (_BATCH, dec_len))
    enc_mask = torch.ones(_BATCH, _ENC_LEN, dtype=torch.long)
    enc_mask[1, -2:] = 0
    enc_states = torch.randn(_BATCH, _ENC_LEN, d_model)
    args = [ids, enc_mask, enc_states]
    input_names = ["input_ids", "encoder_attention_mask", "encoder_hidden_states"]
    axes = {
        "input_ids": {0: "batch_size", 1: "decoder_sequence_length"},
        "encoder_attention_mask": {0: "batch_size", 1: "encoder_sequence_length"},
        "encoder_hidden_states": {0: "batch_size", 1: "encoder_sequence_length"},
        "logits": {0: "batch_size", 1: "decoder_sequence_length"},
    }
    if with_past:
        h, d = layout.num_heads, layout.head_dim
        for name in past_names(layout):
            is_self = ".decoder." in name
            args.append(torch.randn(_BATCH, h, _PAST_LEN if is_self else _ENC_LEN, d))
            input_names.append(name)
            axes[name] = {0: "batch_size", 2: "past_decoder_sequence_length" if is_self else "encoder_sequence_length"}
    output_names = ["logits"]
    for name in past_names(layout, prefix="present"):
        is_self = ".decoder." in name
        if with_past and not is_self:
            continue  # the cached branch re-uses the cross-attention cache; merge.py passes it through
        output_names.append(name)
        if is_self:
            length = "past_decoder_sequence_length + 1" if with_past else "decoder_sequence_length"
        else:
            length = "encoder_sequence_length"
        axes[name] = {0: "batch_size", 2: length}
    _export(
        DecoderForExport(model, layout, with_past).eval(),
        tuple(args),
        path,
        input_names,
        output_names,
        axes,
        opset,
    )
