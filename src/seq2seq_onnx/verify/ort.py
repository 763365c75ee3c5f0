"""Verification at conversion: the ONNX files in Python ONNX Runtime, fed the way Transformers.js feeds them.

The ONNX side is driven the way Transformers.js drives it, not the way we would like it to
be driven: step 1 gets empty caches (every symbolic dimension 0) and `use_cache_branch=false`;
every later step gets only the last token, `use_cache_branch=true`, the self-attention cache
from the previous step and the cross-attention cache from step 1. An export that only works
when fed the whole prefix (the repeated-token bug) fails here, as it fails in the browser.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..export.merge import USE_CACHE_BRANCH
from ..inspect import merged_decoder_problem
from .reference import (
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_PROMPTS,
    LOGITS_RTOL,
    Reference,
    Strength,
    assess_strength,
    compare_logits,
    encode_batch,
    load_prompts_tokenizer,
    reference_greedy,
    special_ids,
)


@dataclass
class CaseResult:
    name: str
    prompts: list[str]
    reference_ids: list[list[int]]
    onnx_ids: list[list[int]]
    max_logits_diff: float
    logits_scale: float
    tokens_match: bool
    logits_match: bool

    @property
    def passed(self) -> bool:
        return self.tokens_match and self.logits_match


@dataclass
class VerificationReport:
    cases: list[CaseResult] = field(default_factory=list)
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    logits_rtol: float = LOGITS_RTOL
    structure_problem: str = ""  # the decoder is not what its file name says (no comparison was run)
    strength: Strength = field(default_factory=Strength)

    @property
    def passed(self) -> bool:
        return not self.structure_problem and bool(self.cases) and all(c.passed for c in self.cases)

    @property
    def verdict(self) -> str:
        """PASSED, FAILED, or INCONCLUSIVE (everything agrees, but the check could not have caught a lost cache)."""
        if not self.passed:
            return "FAILED"
        return "PASSED" if self.strength.strong else "INCONCLUSIVE"

    def summary(self) -> str:
        lines = [f"structure: {self.structure_problem}"] if self.structure_problem else []
        for c in self.cases:
            status = "ok" if c.passed else "MISMATCH"
            lines.append(
                f"{c.name}: {status} (tokens {'equal' if c.tokens_match else 'differ'}, "
                f"max |logit diff| {c.max_logits_diff:.2e} for logits up to {c.logits_scale:.1f})"
            )
            if not c.tokens_match:
                for ref, got in zip(c.reference_ids, c.onnx_ids):
                    if ref != got:
                        lines.append(f"    PyTorch: {ref}\n    ONNX:    {got}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "verdict": self.verdict,
            "max_new_tokens": self.max_new_tokens,
            "logits_rtol": self.logits_rtol,
            "structure_problem": self.structure_problem,
            "strength": self.strength.to_dict(),
            "cases": [{**asdict(c), "passed": c.passed} for c in self.cases],
        }


def ort_session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_greedy(encoder, decoder, input_ids, attention_mask, start_id, eos_ids, pad_id, max_new_tokens,
                transformersjs_feeding: bool = True):
    """Greedy decoding over ONNX Runtime sessions, feeding the decoder as Transformers.js does.

    Returns (sequences [batch, 1 + steps], per-step logits [steps][batch, vocab]).
    After step 1 only the last token is fed, cache or no cache: Transformers.js holds a (possibly
    empty) cache object from step 1 on and always feeds one token, so a decoder without cache
    under the merged name goes wrong here as it does there. `transformersjs_feeding=False` feeds
    a cache-less decoder (`decoder_model.onnx` of `--no-past`) its whole prefix, its correct use
    in other runtimes.
    """
    input_ids = np.asarray(input_ids, dtype=np.int64)
    attention_mask = np.asarray(attention_mask, dtype=np.int64)
    batch = input_ids.shape[0]
    (hidden,) = encoder.run(["last_hidden_state"], {"input_ids": input_ids, "attention_mask": attention_mask})

    dec_inputs = {i.name: i for i in decoder.get_inputs()}
    out_names = [o.name for o in decoder.get_outputs()]
    past_names = [n for n in dec_inputs if n.startswith("past_key_values.")]
    has_cache = bool(past_names)
    last_token_only = has_cache or transformersjs_feeding
    # Step 1: empty caches shaped from the graph's metadata, symbolic dimensions set to 0.
    past = {
        n: np.zeros([d if isinstance(d, int) else 0 for d in dec_inputs[n].shape], dtype=np.float32) for n in past_names
    }
    sequences = np.full((batch, 1), start_id, dtype=np.int64)
    finished = np.zeros(batch, dtype=bool)
    step_logits = []
    for step in range(max_new_tokens):
        feed = {
            "input_ids": sequences[:, -1:] if (last_token_only and step > 0) else sequences,
            "encoder_attention_mask": attention_mask,
            "encoder_hidden_states": hidden,
        }
        feed = {k: v for k, v in feed.items() if k in dec_inputs}
        if has_cache:
            feed.update(past)
        if USE_CACHE_BRANCH in dec_inputs:
            feed[USE_CACHE_BRANCH] = np.array([step > 0])
        outputs = dict(zip(out_names, decoder.run(out_names, feed)))
        logits = outputs["logits"][:, -1, :]
        step_logits.append(logits)
        next_ids = logits.argmax(-1).astype(np.int64)
        next_ids = np.where(finished, pad_id, next_ids)
        sequences = np.concatenate([sequences, next_ids[:, None]], axis=1)
        finished |= np.isin(next_ids, list(eos_ids))
        if has_cache:
            for name in past_names:
                present = "present." + name[len("past_key_values.") :]
                # Like Transformers.js: the cross-attention cache is kept from step 1.
                if ".decoder." in name or step == 0:
                    past[name] = outputs[present]
        if finished.all():
            break
    return sequences, step_logits


def verify_export(
    folder: Path,
    model,
    decoder_file: str = "decoder_model_merged.onnx",
    prompts=DEFAULT_PROMPTS,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> VerificationReport:
    """Compare greedy generation over `folder`'s ONNX files with PyTorch `model.generate`.

    Cases: the first prompt alone, all prompts as a padded batch, and (when the fixed prompts
    cannot reveal a lost cache by their ids) a history-dependent probe prompt. The report's
    `strength` says whether the check could have caught a lost cache at all.
    """
    folder = Path(folder)
    report = VerificationReport(max_new_tokens=max_new_tokens)
    encoder = ort_session(folder / "onnx" / "encoder_model.onnx")
    decoder = ort_session(folder / "onnx" / decoder_file)
    merged = decoder_file.startswith("decoder_model_merged")
    if merged:
        problem = merged_decoder_problem([i.name for i in decoder.get_inputs()], [o.name for o in decoder.get_outputs()])
        if problem:
            report.structure_problem = f"{decoder_file}: {problem}. Re-export with `seq2seq-onnx convert SOURCE -o OUT`"
            return report
    tokenizer = load_prompts_tokenizer(folder)
    start_id, eos_ids, pad_id = special_ids(model)

    def run_case(name: str, case_prompts: list[str], new_tokens: int):
        ids, mask = encode_batch(tokenizer, case_prompts, pad_id, model.config.vocab_size)
        args = (ids, mask, start_id, eos_ids, pad_id, new_tokens)
        ref_seq, ref_logits = reference_greedy(model, *args)
        got_seq, got_logits = onnx_greedy(encoder, decoder, *args, transformersjs_feeding=merged)
        max_diff, scale = compare_logits(ref_seq, ref_logits, got_seq, got_logits)
        report.cases.append(
            CaseResult(
                name=name,
                prompts=case_prompts,
                reference_ids=ref_seq.tolist(),
                onnx_ids=got_seq.tolist(),
                max_logits_diff=max_diff,
                logits_scale=scale,
                tokens_match=ref_seq.shape == got_seq.shape and bool((ref_seq == got_seq).all()),
                logits_match=max_diff <= max(LOGITS_RTOL * scale, 1e-3),
            )
        )
        return ids, ref_seq, ref_logits

    ids, ref_seq, ref_logits = run_case("single", list(prompts[:1]), max_new_tokens)
    run_case("padded batch", list(prompts), max_new_tokens)
    references = {prompts[0]: Reference(ids, ref_seq[0].tolist(), [row[0] for row in ref_logits], max_new_tokens)}
    report.strength = assess_strength(model, tokenizer, references, max_new_tokens)
    if report.strength.probe is not None:
        run_case("history probe", [report.strength.probe], 2 * max_new_tokens)
    return report
