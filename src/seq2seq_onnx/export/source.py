"""Where a checkpoint comes from (a local folder or a hub id), what it is, and which task it gets."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from urllib.parse import urlparse
from pathlib import Path

from ..errors import SourceNotFoundError, UnsupportedModelError
from .families import ModelFamily, family_for, suggest_checkpoint, supported_model_types

TASK_AUTO = "auto"
TASK_WITH_PAST = "text2text-generation-with-past"
TASK_NO_PAST_NAME = "text2text-generation"
TASKS = (TASK_AUTO, TASK_WITH_PAST, TASK_NO_PAST_NAME)

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


@dataclass
class Source:
    """A resolved checkpoint: `ref` is what transformers' from_pretrained takes."""

    ref: str
    is_local: bool
    config: object  # transformers PretrainedConfig
    family: ModelFamily
    # Extra from_pretrained arguments: {"local_files_only": True} when the hub is out of reach
    # and the checkpoint comes from the local Hugging Face cache.
    hub_kwargs: dict = field(default_factory=dict)

    @property
    def model_type(self) -> str:
        return self.config.model_type


def _not_found(source: str, reason: str) -> SourceNotFoundError:
    hint = suggest_checkpoint(source)
    msg = f"cannot find model {source!r}: {reason}"
    if hint:
        msg += f"\ndid you mean {hint}?"
    return SourceNotFoundError(msg)


_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def hub_reachable(timeout: float = 5.0) -> bool:
    """A quick TCP check of the hub endpoint, so that an offline machine fails in seconds, not after retries."""
    import os

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return True  # behind a proxy a direct connection says nothing; let huggingface_hub try
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
        return True
    except OSError:
        return False


def _load_config(source: str, trust_remote_code: bool, **hub_kwargs):
    """The checkpoint's config, or None when the hub says there is no such repository."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code, **hub_kwargs)
    except (OSError, ValueError) as err:
        text = str(err).strip()
        first_line = text.splitlines()[0] if text else type(err).__name__
        chain = [err, err.__cause__, err.__context__]
        if any(isinstance(e, GatedRepoError) for e in chain):
            raise SourceNotFoundError(
                f"{source} is a gated model: accept its terms on the hub and log in (`hf auth login`)"
            ) from None
        if "does not recognize this architecture" in text or ("model_type" in text and "Unrecognized" in text):
            raise UnsupportedModelError(f"{source}: transformers does not know this architecture ({first_line})") from None
        if "trust_remote_code" in text:
            raise UnsupportedModelError(f"{source} uses custom code; pass --trust-remote-code if you trust it") from None
        if any(isinstance(e, RepositoryNotFoundError) for e in chain) or "is not a local folder" in text:
            return None
        if hub_kwargs.get("local_files_only"):
            return None  # not in the cache
        raise SourceNotFoundError(f"cannot read the config of {source}: {first_line}") from None


def resolve_source(source: str, trust_remote_code: bool = False) -> Source:
    """Find SOURCE as a local folder or hub id, load its config, and check we can export it."""
    path = Path(source).expanduser()
    hub_kwargs: dict = {}
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise SourceNotFoundError(f"{source} is a folder but has no config.json: not a Hugging Face checkpoint")
        ref, is_local = str(path.resolve()), True
        config = _load_config(ref, trust_remote_code)
        if config is None:
            raise SourceNotFoundError(f"cannot read the config of {source}")
    elif path.exists():
        raise SourceNotFoundError(f"{source} is a file; give the checkpoint's folder or a hub id")
    else:
        looks_like_path = source.startswith((".", "/", "~")) or source.count("/") > 1 or "\\" in source
        if looks_like_path or not _REPO_ID.match(source):
            raise _not_found(source, "no such folder")
        ref, is_local = source, False
        online = hub_reachable()
        hub_kwargs = {} if online else {"local_files_only": True}
        config = _load_config(source, trust_remote_code, **hub_kwargs)
        if config is None:
            where = "the Hugging Face hub has no such model" if online else (
                "not in the local Hugging Face cache, and the hub cannot be reached from this machine"
            )
            raise _not_found(source, f"not a local folder; {where}")

    family = family_for(config.model_type)
    if family is None or not getattr(config, "is_encoder_decoder", True):
        if getattr(config, "is_encoder_decoder", False):
            kind = "an encoder-decoder architecture this tool does not export yet"
        else:
            kind = "not an encoder-decoder (seq2seq) architecture"
        raise UnsupportedModelError(
            f"{source} is a {config.model_type!r} model, {kind}. "
            f"Supported model types: {', '.join(supported_model_types())}."
        )
    return Source(ref=ref, is_local=is_local, config=config, family=family, hub_kwargs=hub_kwargs)


def resolve_task(task: str, no_past: bool) -> tuple[bool, list[str]]:
    """Return (with_past, notes). The cache is kept unless --no-past is explicit."""
    if task not in TASKS:
        raise UnsupportedModelError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    notes = []
    if no_past and task == TASK_WITH_PAST:
        raise UnsupportedModelError(f"--no-past contradicts --task {TASK_WITH_PAST}; give one of them")
    if no_past:
        notes.append(
            "--no-past: the decoder is written as onnx/decoder_model.onnx without a key/value cache. "
            "Transformers.js cannot load it (it needs decoder_model_merged.onnx), and renaming it "
            "to that name makes its output repeat from the second token on."
        )
        return False, notes
    if task == TASK_NO_PAST_NAME:
        notes.append(
            "task text2text-generation: exporting with past key values anyway "
            "(text2text-generation-with-past), because Transformers.js feeds the decoder one token "
            "per step and a decoder without cache repeats tokens. Use --no-past to really drop the cache."
        )
    return True, notes


def load_model(source: Source, trust_remote_code: bool = False):
    """The checkpoint's `...ForConditionalGeneration` in fp32 with eager attention, in eval mode.

    Raises SourceNotFoundError when the weights cannot be read, UnsupportedModelError when
    decoder weights are missing (an encoder-only checkpoint must not become a random decoder).
    """
    import torch
    from transformers import AutoModelForSeq2SeqLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model, info = AutoModelForSeq2SeqLM.from_pretrained(
            source.ref,
            attn_implementation="eager",  # sdpa breaks both exporters on transformers 5
            dtype=torch.float32,
            trust_remote_code=trust_remote_code,
            output_loading_info=True,
            **source.hub_kwargs,
        )
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SourceNotFoundError(f"cannot load the weights of {source.ref}: {first_line}") from None
    tied = {k for k in getattr(model, "_tied_weights_keys", None) or {}}
    missing = [k for k in info.get("missing_keys", []) if k not in tied]
    if missing:
        shown = ", ".join(sorted(missing)[:4]) + (" ..." if len(missing) > 4 else "")
        raise UnsupportedModelError(
            f"{source.ref} lacks {len(missing)} weights of a {source.model_type} encoder-decoder ({shown}); "
            "an encoder-only checkpoint (e.g. T5EncoderModel) cannot be exported for generation"
        )
    return model.eval()
