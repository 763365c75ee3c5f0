// Greedy generation with Transformers.js, fully offline, for `seq2seq-onnx verify`.
// stdin: {"folder": "/abs/path", "dtype": "fp32", "prompts": ["..."], "max_new_tokens": 20, "logits": true}
// stdout: {"results": [{"prompt", "input_ids", "ids", "text", "logits": [base64 float32 per step]}]}
// or, for the tokenizer alone, {"folder", "encode": [texts], "decode": [[ids], ...], "translate": [{text, src_lang,
// tgt_lang}]} (any of the three): {"tokenizer_class", "language_codes", "ids", "texts", "translations"}
// `logits` are the raw next-token logits Transformers.js computed at each step (a logits processor
// placed after the others, which the neutral settings below switch off), so the caller can compare
// them with PyTorch's even when the ids agree.
import { AutoTokenizer, AutoModelForSeq2SeqLM, env } from '@huggingface/transformers';
import { readFileSync } from 'node:fs';

// Nothing to clean up: SIGTERM/SIGINT end it at once (Node's default). When the parent (Python) is
// killed outright, stop too instead of generating for nobody (process.ppid is read once; /proc has
// the current parent).
const parent = process.ppid;
function parentNow() {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    try { process.kill(parent, 0); return parent; } catch { return -1; }
  }
}
setInterval(() => { if (parentNow() !== parent) process.exit(1); }, 1000).unref();

env.allowRemoteModels = false;
env.useFSCache = false;

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const request = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const tokenizer = await AutoTokenizer.from_pretrained(request.folder);
if (request.decode || request.encode || request.translate) {  // the tokenizer alone, no model
  const out = { tokenizer_class: tokenizer.constructor.name, language_codes: tokenizer.language_codes ?? null };
  // {"encode": [texts]}: input_ids with the special tokens the template adds (as tokenizer(text) gives them)
  if (request.encode) out.ids = request.encode.map((text) => tokenizer.encode(text).map(Number));
  // {"decode": [[ids], ...]}: the text for those ids, special tokens skipped
  if (request.decode) out.texts = request.decode.map((ids) => tokenizer.decode(ids, { skip_special_tokens: true }));
  // {"translate": [{"text", "src_lang", "tgt_lang"}]}: what the translation pipeline feeds generate(): the
  // tokenizer's _build_translation_inputs with the pipeline's options, in order (it rewrites the template's
  // language code for later calls, as in the pipeline)
  if (request.translate) {
    out.translations = request.translate.map(({ text, src_lang, tgt_lang }) => {
      const kwargs = { src_lang, tgt_lang };
      try {
        const inputs = tokenizer._build_translation_inputs([text], { padding: true, truncation: true }, kwargs);
        return { input_ids: inputs.input_ids.tolist()[0].map(Number), forced_bos_token_id: kwargs.forced_bos_token_id ?? null };
      } catch (e) {
        return { error: String(e?.message ?? e) };
      }
    });
  }
  // exit only once the output is flushed: a pipe takes 64 KiB at a time, and process.exit() would cut the rest
  await new Promise((resolve) => process.stdout.write(JSON.stringify(out), resolve));
  process.exit(0);
}
const model = await AutoModelForSeq2SeqLM.from_pretrained(request.folder, { dtype: request.dtype });
const results = [];
for (const prompt of request.prompts) {
  const inputs = tokenizer(prompt);
  const steps = [];
  const record = (ids, logits) => {
    if (request.logits) {
      const row = logits.dims.length === 2 ? logits.data.subarray(0, logits.dims[1]) : logits.data;
      steps.push(Buffer.from(new Float32Array(row).buffer).toString('base64'));
    }
    return logits;
  };
  const output = await model.generate({
    ...inputs,
    max_new_tokens: request.max_new_tokens,
    do_sample: false,
    num_beams: 1,
    // plain greedy, like the PyTorch reference: neutralize decoding settings of the folder's
    // generation_config.json that Transformers.js would otherwise apply
    repetition_penalty: 1.0,
    no_repeat_ngram_size: 0,
    min_length: 0,
    min_new_tokens: null,
    bad_words_ids: null,
    forced_bos_token_id: null,
    forced_eos_token_id: null,
    suppress_tokens: null,
    begin_suppress_tokens: null,
    logits_processor: [record],
  });
  const ids = output.tolist()[0].map(Number);
  results.push({
    prompt,
    input_ids: Array.from(inputs.input_ids.data, Number),
    ids,
    text: tokenizer.decode(ids, { skip_special_tokens: true }),
    logits: steps,
  });
}
process.stdout.write(JSON.stringify({ results }));
