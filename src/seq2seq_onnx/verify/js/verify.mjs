// Greedy generation with Transformers.js, fully offline, for `seq2seq-onnx verify`.
// stdin: {"folder": "/abs/path", "dtype": "fp32", "prompts": ["..."], "max_new_tokens": 20, "logits": true}
// stdout: {"results": [{"prompt", "input_ids", "ids", "text", "logits": [base64 float32 per step]}]}
// or, for {"folder", "decode": [[ids], ...]}: {"texts": [...]} (the tokenizer alone)
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
if (request.decode) {  // {"decode": [[ids], ...]}: only Transformers.js's text for those ids
  const texts = request.decode.map((ids) => tokenizer.decode(ids, { skip_special_tokens: true }));
  process.stdout.write(JSON.stringify({ texts }));
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
