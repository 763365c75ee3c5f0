"""Every supported family and config shape converts, and greedy ONNX generation equals PyTorch."""

import json

import numpy as np
import onnx
import pytest

from seq2seq_onnx.convert import convert

from cases import FAMILY_CASES

# Cases only the T5 family has, on top of every family's cases.
T5_CASES = {
    "other relative attention buckets": ("t5", {"relative_attention_num_buckets": 8, "relative_attention_max_distance": 12}),
    "spiece.model only, no tokenizer.json": ("flan-t5", {"tokenizer_json": False}),
}


@pytest.mark.parametrize("case", list(FAMILY_CASES) + list(T5_CASES))
def test_convert_gives_pytorch_tokens(make_model, family_export, tmp_path, case):
    if case in FAMILY_CASES:
        src, out, result = family_export(case)
    else:
        variant, config = T5_CASES[case]
        src, out = make_model(variant, **config), tmp_path / "out"
        result = convert(str(src), out, progress=False)

    report = result.verification
    assert report.verdict == "PASSED", report.summary()  # and able to catch a lost cache
    assert [c.name for c in report.cases][:2] == ["single", "padded batch"]
    batch = report.cases[1]
    assert len(batch.prompts) > 1 and batch.onnx_ids == batch.reference_ids
    # the recorded ids are real generations, not empty
    assert all(len(ids) > 2 for ids in batch.reference_ids[:2])

    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                 "onnx/encoder_model.onnx", "onnx/decoder_model_merged.onnx"):
        assert (out / name).is_file(), name
    for name in ("spiece.model", "sentencepiece.bpe.model", "source.spm", "target.spm"):
        assert (out / name).is_file() == (src / name).is_file(), name  # kept: Python tokenizers reload from them
    assert not (out / "onnx" / "decoder_model.onnx").exists()
    assert json.loads((out / "config.json").read_text())["model_type"] == json.loads((src / "config.json").read_text())["model_type"]


def test_merged_decoder_graph_contract(converted, make_model):
    """Names, types and dynamic axes that Transformers.js relies on."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(make_model("flan-t5"))
    layers, heads, head_dim = config.num_decoder_layers, config.num_heads, config.d_kv
    model = onnx.load(str(converted / "onnx" / "decoder_model_merged.onnx"))
    inputs = {i.name: i for i in model.graph.input}
    outputs = [o.name for o in model.graph.output]

    expected_past = [f"past_key_values.{i}.{part}.{kv}" for i in range(layers) for part in ("decoder", "encoder") for kv in ("key", "value")]
    assert list(inputs) == ["input_ids", "encoder_attention_mask", "encoder_hidden_states", *expected_past, "use_cache_branch"]
    assert outputs == ["logits", *[n.replace("past_key_values", "present") for n in expected_past]]

    flag = inputs["use_cache_branch"].type.tensor_type
    assert flag.elem_type == onnx.TensorProto.BOOL and [d.dim_value for d in flag.shape.dim] == [1]
    for name in expected_past:
        dims = inputs[name].type.tensor_type.shape.dim
        assert dims[1].dim_value == heads and dims[3].dim_value == head_dim  # static, as Transformers.js reads them
        assert dims[0].dim_param and dims[2].dim_param  # batch and length dynamic
    ids_dims = inputs["input_ids"].type.tensor_type.shape.dim
    assert all(d.dim_param for d in ids_dims)

    (if_node,) = model.graph.node
    assert if_node.op_type == "If"

    encoder = onnx.load(str(converted / "onnx" / "encoder_model.onnx"))
    assert [i.name for i in encoder.graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in encoder.graph.output] == ["last_hidden_state"]


def test_merged_decoder_stores_weights_once(make_model, tmp_path):
    """The merged file must not be about twice one decoder: initializers are shared by both branches."""
    from transformers import AutoModelForSeq2SeqLM

    from seq2seq_onnx.export.graphs import export_decoder
    from seq2seq_onnx.export.families import T5
    from seq2seq_onnx.export.onnx_io import initializer_bytes

    src = make_model("flan-t5", d_model=64, d_ff=256, vocab_size=1000)
    out = tmp_path / "out"
    convert(str(src), out, progress=False, validate=False)
    model = AutoModelForSeq2SeqLM.from_pretrained(src, attn_implementation="eager").eval()
    export_decoder(model, T5.cache_layout(model.config), tmp_path / "decoder.onnx", with_past=False)
    single = initializer_bytes(onnx.load(str(tmp_path / "decoder.onnx")))
    merged = initializer_bytes(onnx.load(str(out / "onnx" / "decoder_model_merged.onnx")))
    assert merged <= single * 1.01
    file_size = (out / "onnx" / "decoder_model_merged.onnx").stat().st_size
    assert file_size < 1.5 * (tmp_path / "decoder.onnx").stat().st_size


@pytest.mark.parametrize("variant", ["bart", "marian", "t5"])
def test_tied_embedding_stored_once(make_model, tmp_path, variant):
    """A tied output projection reads the embedding transposed; the file holds the embedding once (a Transpose
    node, folded by ONNX Runtime at load), the export keeps PyTorch's tokens, and quantized files still quantize
    the projection (as an initializer of its own again)."""
    import numpy as np
    from transformers import AutoModelForSeq2SeqLM

    from seq2seq_onnx.export.merge import TRANSPOSED_WEIGHT_PREFIX, all_nodes
    from seq2seq_onnx.export.onnx_io import initializer_bytes

    shape = dict(d_model=64, vocab_size=2048) if variant != "t5" else dict(d_model=64, d_ff=128, vocab_size=2048)
    src = make_model(variant, **shape)
    out = tmp_path / "out"
    result = convert(str(src), out, progress=False, quantize=["q8", "q4"])
    assert result.verification.passed, result.verification.summary()
    merged = onnx.load(str(out / "onnx" / "decoder_model_merged.onnx"))
    (transpose,) = [n for n in merged.graph.node if n.name.startswith(TRANSPOSED_WEIGHT_PREFIX)]
    weights = {t.name: t for t in merged.graph.initializer}
    assert list(weights[transpose.input[0]].dims) == [2048, 64]
    model = AutoModelForSeq2SeqLM.from_pretrained(src)
    decoder_params = sum(p.numel() for n, p in model.named_parameters() if not n.removeprefix("model.").startswith("encoder."))
    assert initializer_bytes(merged) < 4 * decoder_params * 1.05  # one copy (a second would add 2048 * 64 * 4 bytes)

    for suffix, op in (("_quantized", "MatMulInteger"), ("_q4", "MatMulNBits")):
        quantized = onnx.load(str(out / "onnx" / f"decoder_model_merged{suffix}.onnx"))
        ops = [n for n in all_nodes(quantized.graph) if n.op_type == op]
        # the output projection (d_model -> vocab) is quantized too: no float copy of it is left
        assert ops and not any(n.name.startswith(TRANSPOSED_WEIGHT_PREFIX) for n in quantized.graph.node)
        float_weights = [t for t in quantized.graph.initializer if t.data_type == onnx.TensorProto.FLOAT
                         and np.prod(t.dims) >= 2048 * 64 and tuple(t.dims) == (64, 2048)]
        assert not float_weights, suffix


def test_long_prompt_and_long_generation(make_model, tmp_path):
    """Lengths far from the tracing examples: a dimension baked in by the tracer would break here."""
    from transformers import AutoModelForSeq2SeqLM

    from seq2seq_onnx.verify import verify_export

    src = make_model("t5")
    out = tmp_path / "out"
    convert(str(src), out, progress=False, validate=False)
    model = AutoModelForSeq2SeqLM.from_pretrained(src, attn_implementation="eager").eval()
    long_prompt = " ".join(["the house is wonderful and the question has an answer"] * 12)
    report = verify_export(out, model, prompts=(long_prompt, "Hi", "summarize: one two three"), max_new_tokens=48)
    assert report.passed, report.summary()
    assert max(len(ids) for ids in report.cases[1].reference_ids) > 40


def test_verifier_catches_the_repeated_token_bug(make_model, tmp_path):
    """A decoder without cache under the merged name (the classic mistake) must fail verification."""
    import shutil

    from transformers import AutoModelForSeq2SeqLM


    src = make_model("flan-t5")
    no_past = tmp_path / "no-past"
    result = convert(str(src), no_past, progress=False, no_past=True)
    assert result.verification.passed  # fed its whole prefix, a no-past decoder is correct ...
    assert (no_past / "onnx" / "decoder_model.onnx").is_file()
    assert not (no_past / "onnx" / "decoder_model_merged.onnx").exists()

    # ... but renamed to the merged name, Transformers.js feeds it one token per step.
    shutil.copy(no_past / "onnx" / "decoder_model.onnx", no_past / "onnx" / "decoder_model_merged.onnx")
    model = AutoModelForSeq2SeqLM.from_pretrained(src, attn_implementation="eager").eval()
    from seq2seq_onnx import verify

    # Emulate Transformers.js exactly: after step 1 it holds a (possibly empty) cache and feeds only the last token.
    enc = verify.ort.ort_session(no_past / "onnx" / "encoder_model.onnx")
    dec = verify.ort.ort_session(no_past / "onnx" / "decoder_model_merged.onnx")
    tok = verify.reference.load_prompts_tokenizer(no_past)
    ids, mask = verify.reference.encode_batch(tok, verify.DEFAULT_PROMPTS[:1], 0, model.config.vocab_size)
    ref, _ = verify.reference_greedy(model, ids, mask, 0, {1}, 0, 20)
    feed_last_token = lambda seq: seq[:, -1:]
    got = _last_token_only_greedy(enc, dec, ids, mask, steps=ref.shape[1] - 1, last=feed_last_token)
    assert got[0, 1] == ref[0, 1]  # the first token is right
    assert not np.array_equal(got, ref)  # and then it goes wrong


def _last_token_only_greedy(enc, dec, ids, mask, steps, last):
    (hidden,) = enc.run(None, {"input_ids": ids, "attention_mask": mask})
    seq = np.zeros((ids.shape[0], 1), dtype=np.int64)
    for step in range(steps):
        feed = {"input_ids": seq if step == 0 else last(seq), "encoder_attention_mask": mask, "encoder_hidden_states": hidden}
        logits = dec.run(["logits"], feed)[0]
        seq = np.concatenate([seq, logits[:, -1].argmax(-1)[:, None]], axis=1)
    return seq


def test_checkpoint_generation_settings_do_not_leak_into_the_reference(make_model, tmp_path):
    """Verification compares plain greedy; a checkpoint's own decoding settings must not apply to one side."""
    import shutil

    src = tmp_path / "src"
    shutil.copytree(make_model("flan-t5"), src)
    gen = json.loads((src / "generation_config.json").read_text())
    gen.update(no_repeat_ngram_size=2, repetition_penalty=1.5, min_new_tokens=5, num_beams=4, max_length=64)
    (src / "generation_config.json").write_text(json.dumps(gen))
    result = convert(str(src), tmp_path / "out", progress=False)
    assert result.verification.passed, result.verification.summary()
    # and the output keeps the checkpoint's settings for the runtimes that honour them
    assert json.loads((tmp_path / "out" / "generation_config.json").read_text())["no_repeat_ngram_size"] == 2
