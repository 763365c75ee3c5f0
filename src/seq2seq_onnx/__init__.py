"""seq2seq-onnx: convert Hugging Face encoder-decoder models to ONNX for Transformers.js and ONNX Runtime.

Conversion from Python: `from seq2seq_onnx.convert import convert`.
"""

__version__ = "0.1.0"
