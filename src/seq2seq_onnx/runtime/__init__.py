"""Runtime stage: run an export folder on ONNX Runtime, without torch or transformers' modeling code.

    sessions.py    the folder's files by dtype, ONNX Runtime sessions, one decoder step (any layout)
    options.py     GenerationOptions: transformers' names, meanings and defaults
    processors.py  logits processors and warpers, one small class each
    decoding.py    strategies: greedy / sampling, beam search (transformers' ids)
    text.py        ids to text as transformers decodes them
    model.py       Seq2SeqOnnxModel and pipeline()
"""

from .decoding import BeamSearch, GenerationResult, GreedyOrSampling, decoder_for
from .model import Seq2SeqOnnxModel, Text2TextPipeline, options_from_folder, pipeline
from .options import GenerationOptions, InvalidGenerationOptions
from .sessions import DTYPE_SUFFIXES, DecoderRunner, ModelFolderError
from .text import clean_up_tokenization

__all__ = [
    "BeamSearch", "DTYPE_SUFFIXES", "DecoderRunner", "GenerationOptions", "GenerationResult", "GreedyOrSampling",
    "InvalidGenerationOptions", "ModelFolderError", "Seq2SeqOnnxModel", "Text2TextPipeline", "clean_up_tokenization",
    "decoder_for", "options_from_folder", "pipeline",
]
