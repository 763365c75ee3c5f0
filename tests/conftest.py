import atexit
import json
import os
import shutil
import tempfile

import pytest

from seq2seq_onnx.testing import build_model

# The hub is never reachable here; make transformers fail fast instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Conversions check in Transformers.js only where a test asks for it (tests/test_transformersjs.py):
# Node takes a few seconds per run, and most tests are about other things.
os.environ["SEQ2SEQ_ONNX_TRANSFORMERSJS"] = "0"
# The runtime's slimmed graphs (runtime/sessions.runtime_graph, encoder_graph) go to a folder of this run, not ~/.cache.
os.environ["SEQ2SEQ_ONNX_CACHE"] = tempfile.mkdtemp(prefix="seq2seq-onnx-test-graphs-")
atexit.register(shutil.rmtree, os.environ["SEQ2SEQ_ONNX_CACHE"], ignore_errors=True)


@pytest.fixture(scope="session")
def make_model(tmp_path_factory):
    """Build (once per session) a random-weight checkpoint folder: make_model(variant, **config)."""
    cache = {}

    def make(variant="flan-t5", **kwargs):
        key = (variant, tuple(sorted(kwargs.items())))
        if key not in cache:
            name = variant + "".join(f"-{k}{v}" for k, v in sorted(kwargs.items()))
            cache[key] = build_model(tmp_path_factory.mktemp(name) / "model", variant, **kwargs)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def converted(make_model, tmp_path_factory):
    """A converted (and verified) tiny flan-t5 export folder, shared by read-only tests."""
    from seq2seq_onnx.convert import convert

    src = make_model("flan-t5")
    out = tmp_path_factory.mktemp("converted") / "flan-t5-tiny"
    convert(str(src), out, progress=False)
    return out


@pytest.fixture(scope="session")
def node_packages():
    """Transformers.js and playwright-core installed (npm ci of the package's lock), for the Node and browser tests."""
    from seq2seq_onnx.verify.transformersjs import ensure_installed

    return ensure_installed()


@pytest.fixture(scope="session")
def family_export(make_model, tmp_path_factory):
    """family_export(case) -> (checkpoint, export folder, ConversionResult) for a case of cases.FAMILY_CASES,
    converted and verified once per session."""
    from cases import FAMILY_CASES

    from seq2seq_onnx.convert import convert

    cache = {}

    def export(case: str):
        if case not in cache:
            variant, config = FAMILY_CASES[case]
            src = make_model(variant, **config)
            out = tmp_path_factory.mktemp("export") / case.replace(" ", "_").replace("*", "x").replace("!", "")
            cache[case] = (src, out, convert(str(src), out, progress=False))
        return cache[case]

    return export


@pytest.fixture(scope="session")
def family_quantized(family_export, tmp_path_factory):
    """family_quantized(case) -> (export folder with every dtype, [VariantReport]) for a case of cases.FAMILY_CASES:
    a copy of family_export(case) quantized once per session, each dtype checked in ONNX Runtime and (where
    Transformers.js knows the model type and Node is installed) in Transformers.js before it is kept."""
    import shutil

    from seq2seq_onnx.export.families import transformersjs_supports
    from seq2seq_onnx.quantize import MODES, quantize_folder

    cache = {}

    def quantized(case: str):
        if case not in cache:
            _, out, _ = family_export(case)
            folder = tmp_path_factory.mktemp("quantized") / out.name
            shutil.copytree(out, folder)
            model_type = json.loads((folder / "config.json").read_text())["model_type"]
            node = shutil.which("node") is not None and transformersjs_supports(model_type)
            if os.environ.get("CI") and transformersjs_supports(model_type):
                assert node, "Node.js is required in CI"
            cache[case] = (folder, quantize_folder(folder, MODES, transformersjs=node))
        return cache[case]

    return quantized


@pytest.fixture(scope="session")
def demo_export(tmp_path_factory):
    """The shipped demo model (demo/t5-demo) converted once, fp32."""
    from pathlib import Path

    from seq2seq_onnx.convert import convert

    out = tmp_path_factory.mktemp("demo") / "t5-demo"
    result = convert(str(Path(__file__).resolve().parents[1] / "demo" / "t5-demo"), out, progress=False)
    assert result.verification.passed, result.verification.summary()
    return out
