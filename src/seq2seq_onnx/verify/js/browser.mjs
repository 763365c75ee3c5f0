// Run a page in Debian's headless Chromium (playwright-core, no browser download), offline.
// stdin: {"url": "http://127.0.0.1:PORT/verify.html?...", "timeout_ms": 120000,
//         optional "fill": {"selector": "...", "text": "..."}, "select": {"selector": "...", "value": "..."},
//         "click": "selector", "wait": "selector", "read": "selector"}
// stdout: {"result": <JSON in #result, or the text of "read">, "blocked": [urls that tried to leave 127.0.0.1]}
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const request = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const home = mkdtempSync(join(tmpdir(), 'seq2seq-onnx-chromium-'));
process.env.XDG_CONFIG_HOME = join(home, 'config');
process.env.XDG_CACHE_HOME = join(home, 'cache');
const blocked = [];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,  // playwright gives the browser a fresh temporary profile
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-component-update',
         '--disable-sync', '--disable-background-networking',
         '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1'],
});
try {
  const page = await browser.newPage();
  await page.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.hostname === '127.0.0.1') return route.continue();
    blocked.push(route.request().url());
    return route.abort();
  });
  const errors = [];
  page.on('pageerror', (err) => errors.push(String(err)));
  const timeout = request.timeout_ms || 120000;
  await page.goto(request.url);
  if (request.select) {
    await page.waitForSelector(`${request.select.selector} option[value="${request.select.value}"]`, { state: 'attached', timeout });
    await page.selectOption(request.select.selector, request.select.value);
  }
  if (request.fill) await page.fill(request.fill.selector, request.fill.text);
  if (request.click) await page.click(request.click);
  await page.waitForSelector(request.wait || '#result[data-done]', { state: 'attached', timeout });
  const text = await page.textContent(request.read || '#result');
  const result = request.read ? text : JSON.parse(text);
  process.stdout.write(JSON.stringify({ result, blocked, errors }));
} finally {
  await browser.close();
  rmSync(home, { recursive: true, force: true });
}
