"""User-facing errors: each carries the message a person reads and the exit code a script checks."""

from __future__ import annotations

# Exit codes of the `seq2seq-onnx` command. Scripts may rely on them.
EXIT_OK = 0
EXIT_VERIFICATION_FAILED = 1  # the export failed or does not match PyTorch; nothing was put in place
EXIT_USAGE = 2  # bad arguments, missing source, unsupported model, output folder in the way
EXIT_INCONCLUSIVE = 3  # `verify`: everything agreed, but the reference could not have revealed a lost cache
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT)
EXIT_TERMINATED = 143  # SIGTERM, handled like Ctrl-C


class Seq2SeqOnnxError(Exception):
    """An error we expect and explain; the CLI prints its message without a traceback."""

    exit_code = EXIT_USAGE


class SourceNotFoundError(Seq2SeqOnnxError):
    """SOURCE is neither a local folder nor a model the hub could give us."""


class UnsupportedModelError(Seq2SeqOnnxError):
    """The checkpoint is readable, but its architecture is not one we export."""


class OutputExistsError(Seq2SeqOnnxError):
    """The output folder exists and --overwrite was not given (or would destroy the source)."""


class ExportError(Seq2SeqOnnxError):
    """torch.onnx could not export the model (an operator or shape the exporter cannot handle)."""

    exit_code = EXIT_VERIFICATION_FAILED


class NoTokenizerError(Seq2SeqOnnxError):
    """The checkpoint has no tokenizer (or one that cannot cover its vocabulary): nothing to convert text with."""


class TokenizerMismatchError(Seq2SeqOnnxError):
    """The written tokenizer.json tokenizes differently from the source's sentencepiece model."""

    exit_code = EXIT_VERIFICATION_FAILED


class VerificationError(Seq2SeqOnnxError):
    """The ONNX export does not reproduce PyTorch's tokens; carries the report."""

    exit_code = EXIT_VERIFICATION_FAILED

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report
