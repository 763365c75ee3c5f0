"""seq2seq-onnx: convert Hugging Face encoder-decoder models to ONNX for Transformers.js and ONNX Runtime.

    from seq2seq_onnx import Seq2SeqOnnxModel, pipeline   # run an export (ONNX Runtime, no torch)
    from seq2seq_onnx.convert import convert              # make one (needs torch and transformers)
"""

__version__ = "0.1.0"

__all__ = ["Seq2SeqOnnxModel", "pipeline", "__version__"]


def __getattr__(name: str):
    # Lazy: `import seq2seq_onnx` stays light, and `python -m seq2seq_onnx.convert` imports cleanly.
    if name in ("Seq2SeqOnnxModel", "pipeline"):
        from . import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'seq2seq_onnx' has no attribute {name!r}")
