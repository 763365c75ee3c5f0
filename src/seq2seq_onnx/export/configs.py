"""config.json and generation_config.json for the export folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .tokenizer import find_file


def copy_file(source, name: str, dest: Path) -> bool:
    found = find_file(source.ref, name, **source.hub_kwargs)
    if found is None:
        return False
    shutil.copyfile(found, dest / name)
    return True


def write_configs(source, model, dest: Path, external: dict[str, bool]) -> None:
    """config.json as the source has it (transformers 5 rewrites T5's tie/scale fields), plus what Transformers.js needs."""
    if not copy_file(source, "config.json", dest):
        model.config.save_pretrained(dest)
    path = dest / "config.json"
    cfg = json.loads(path.read_text())
    tjs = cfg.get("transformers.js_config", {})
    if any(external.values()):
        tjs["use_external_data_format"] = {name: True for name, ext in external.items() if ext}
    else:
        tjs.pop("use_external_data_format", None)  # a re-converted export may carry a stale one
    if tjs:
        cfg["transformers.js_config"] = tjs
    else:
        cfg.pop("transformers.js_config", None)
    path.write_text(json.dumps(cfg, indent=2) + "\n")
    if not copy_file(source, "generation_config.json", dest):
        from transformers import GenerationConfig

        GenerationConfig.from_model_config(model.config).save_pretrained(dest)
