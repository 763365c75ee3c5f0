// Run a page in Debian's headless Chromium (playwright-core, no browser download), offline.
// stdin: {"url": "http://127.0.0.1:PORT/verify.html?...", "timeout_ms": 120000,
//         optional "fill": {"selector": "...", "text": "..."}, "select": {"selector": "...", "value": "..."},
//         "click": "selector", "wait": "selector", "read": "selector"}
// stdout: {"result": <JSON in #result, or the text of "read">, "blocked": [urls that tried to leave 127.0.0.1]}
// However it ends (done, an error, SIGTERM/SIGINT/SIGHUP, the parent process gone) Chromium is closed
// and the profile folder (seq2seq-onnx-chromium-* in the temporary folder) removed before exiting
// (Playwright removes its own playwright_chromiumdev_profile-* when the browser closes).
import { chromium } from 'playwright-core';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';

let launching = null;
let home = null;
let closing = null;

function cleanup() {
  // once, however many signals arrive; Chromium first (also one still starting), then the folder
  closing ??= (async () => {
    try {
      const browser = launching && await launching.catch(() => null);
      // a wedged browser gets 5 s; process.exit then makes playwright SIGKILL its process group
      if (browser) await Promise.race([browser.close(), new Promise((done) => setTimeout(done, 5000).unref())]);
    } catch {
      // already gone
    } finally {
      if (home) rmSync(home, { recursive: true, force: true });
    }
  })();
  return closing;
}

function stop(code) {
  cleanup().finally(() => process.exit(code));
}

for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
  process.on(signal, () => stop(128 + constants.signals[signal]));
}
// The parent (Python) killed outright cannot stop us: notice that it is gone (we are re-parented).
// process.ppid is read once at start; /proc has the current one.
const parent = process.ppid;
function parentNow() {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    try { process.kill(parent, 0); return parent; } catch { return -1; }
  }
}
setInterval(() => { if (parentNow() !== parent) stop(1); }, 500).unref();

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const request = JSON.parse(Buffer.concat(chunks).toString('utf8'));

home = mkdtempSync(join(tmpdir(), 'seq2seq-onnx-chromium-'));
process.env.XDG_CONFIG_HOME = join(home, 'config');
process.env.XDG_CACHE_HOME = join(home, 'cache');
const blocked = [];
try {
  launching = chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,  // playwright gives the browser a fresh temporary profile
    // our handlers above close the browser and remove `home`; playwright's would only kill the browser
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-component-update',
           '--disable-sync', '--disable-background-networking',
           '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1'],
  });
  const browser = await launching;
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
  await cleanup();
}
