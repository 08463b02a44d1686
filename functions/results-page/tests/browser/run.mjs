// The results page in a real Chromium (Debian's /usr/bin/chromium), driven by
// Playwright, against real functions over a real PostgreSQL + PgBouncer.
// Started by the Rust test functions/exam-results/tests/browser.rs, which
// serves the functions and passes their URLs:
//   PAGE_URL         results-page, reading from a get-result with CORS
//   LIMITED_URL      results-page, reading from a get-result limited to 1 request/s
//   UNREACHABLE_URL  results-page whose get-result URL has nothing listening
//   ROLL_FOUND, ROLL_OTHER, YEAR  seeded results; ROLL_MISSING has none
//   UNPUBLISHED_YEAR  a year whose publication time is two hours away (ROLL_FOUND has a result)
// Screenshots, axe and Lighthouse reports go to ./artifacts (git-ignored).
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { gzipSync } from 'node:zlib';
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';

const here = dirname(new URL(import.meta.url).pathname);
const artifacts = join(here, 'artifacts');
mkdirSync(artifacts, { recursive: true });
const env = (name) => { const v = process.env[name]; assert.ok(v, `${name} is not set`); return v; };
const PAGE = env('PAGE_URL'), LIMITED = env('LIMITED_URL'), UNREACHABLE = env('UNREACHABLE_URL');
const YEAR = env('YEAR'), FOUND = env('ROLL_FOUND'), OTHER = env('ROLL_OTHER'), MISSING = env('ROLL_MISSING');
const UNPUBLISHED = env('UNPUBLISHED_YEAR');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const LIMIT_BYTES = 15 * 1024;
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const profiles = [];
// Nothing here may hang a `make test`: a whole run takes about a minute.
setTimeout(() => { console.error('not ok - the browser tests took over 5 minutes'); process.exit(1); }, 300000).unref();

// A fresh profile per browser (launchPersistentContext passes it as --user-data-dir).
async function browser(options = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'results-page-chromium-'));
  profiles.push(dir);
  return chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM, headless: true, args: FLAGS,
    viewport: { width: 360, height: 740 }, ...options,
  });
}

let passed = 0;
async function check(name, body) {
  const started = Date.now();
  await body();
  passed += 1;
  console.log(`ok ${passed} - ${name} (${Date.now() - started} ms)`);
}

async function lookup(page, year, roll) {
  await page.fill('#y', year);
  await page.fill('#r', roll);
  await page.click('button[type=submit]');
}

async function axe(page, label) {
  const result = await page.evaluate(`${axeSource};axe.run(document, {resultTypes: ['violations']})`);
  writeFileSync(join(artifacts, `axe-${label}.json`), JSON.stringify(result.violations, null, 2));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad.map((v) => `${v.id}: ${v.help}`), [], `axe (${label}): serious or critical violations`);
}

const context = await browser();
try {
  const page = context.pages()[0] || await context.newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));

  await check('a first visit is one same-origin request under 15 KB, compressed or not', async () => {
    const transfers = [];
    page.on('response', async (r) => transfers.push(r));
    await page.goto(PAGE, { waitUntil: 'load' });
    await page.waitForTimeout(200);
    const origin = new URL(PAGE).origin;
    let raw = 0, gzipped = 0;
    for (const r of transfers) {
      assert.equal(new URL(r.url()).origin, origin, `third-party request: ${r.url()}`);
      const body = await r.body();
      const head = Object.entries(await r.allHeaders()).map(([k, v]) => `${k}: ${v}\r\n`).join('');
      raw += head.length + body.length;
      gzipped += head.length + gzipSync(body, { level: 6 }).length;
    }
    page.removeAllListeners('response');
    writeFileSync(join(artifacts, 'weight.json'), JSON.stringify({ requests: transfers.length, bytes: raw, gzip_bytes: gzipped }, null, 2));
    console.log(`# first visit: ${transfers.length} request(s), ${raw} bytes, ${gzipped} bytes with gzip`);
    assert.equal(transfers.length, 1, transfers.map((r) => r.url()).join(', '));
    assert.ok(gzipped < LIMIT_BYTES, `${gzipped} bytes compressed`);
    assert.ok(raw < LIMIT_BYTES, `${raw} bytes uncompressed`);
  });

  await check('the empty page has labelled fields and no serious accessibility violation', async () => {
    assert.equal(await page.getAttribute('#out', 'aria-live'), 'polite');
    assert.equal(await page.textContent('label[for=y]'), 'Exam year');
    assert.equal(await page.textContent('label[for=r]'), 'Roll number');
    await axe(page, 'empty');
  });

  await check('an existing result shows its marks and takes the focus', async () => {
    await lookup(page, YEAR, FOUND);
    await page.waitForSelector('#out dl');
    const text = await page.textContent('#out');
    assert.match(text, new RegExp(`Roll number${FOUND}Exam year${YEAR}Marks91OutcomePassGradeA\\+`));
    assert.equal(await page.evaluate(() => document.activeElement.id), 'out');
    await axe(page, 'result');
    await page.screenshot({ path: join(artifacts, 'results-page-360.png'), fullPage: true });
  });

  await check('a missing result says so', async () => {
    await lookup(page, YEAR, MISSING);
    await page.waitForSelector('#out.err');
    assert.match(await page.textContent('#out'), new RegExp(`No result was found for roll number ${MISSING} in ${YEAR}`));
    await axe(page, 'not-found');
  });

  await check('a year not yet published shows its publication time and no result', async () => {
    let reply;
    page.on('response', (r) => { if (r.url().includes(`/results/${UNPUBLISHED}/`)) reply = r; });
    await lookup(page, UNPUBLISHED, FOUND);
    await page.waitForFunction(() => /not published yet/.test(document.getElementById('out').textContent));
    page.removeAllListeners('response');
    // get-result's 404 results_not_published, Retry-After readable across origins.
    assert.equal(reply.status(), 404);
    assert.equal((await reply.json()).error.code, 'results_not_published');
    const wait = Number(reply.headers()['retry-after']);
    assert.ok(wait > 7000 && wait <= 7200, `Retry-After ${wait}`);
    const text = await page.textContent('#out');
    assert.match(text, new RegExp(`Results for ${UNPUBLISHED} are not published yet\\. They will be published on .+\\.`));
    assert.doesNotMatch(text, /Marks/);
    await axe(page, 'not-published');
    await page.screenshot({ path: join(artifacts, 'results-page-not-published.png'), fullPage: true });
  });

  await check('typed leading zeros are dropped, letters refused before any request', async () => {
    await lookup(page, YEAR, `00${FOUND}`);
    await page.waitForSelector('#out dl');
    await lookup(page, YEAR, 'abc');
    await page.waitForSelector('#out.err');
    assert.match(await page.textContent('#out'), /four-digit exam year/);
    assert.equal(await page.evaluate(() => document.activeElement.id), 'r');
  });

  await check('Bangla from Accept-Language, and the page is usable at 320 px', async () => {
    const bn = await browser({ locale: 'bn-BD', viewport: { width: 320, height: 640 } });
    try {
      const p = bn.pages()[0] || await bn.newPage();
      await p.goto(PAGE);
      assert.equal(await p.getAttribute('html', 'lang'), 'bn');
      await lookup(p, YEAR, FOUND);
      await p.waitForSelector('#out dl');
      assert.match(await p.textContent('#out'), /প্রাপ্ত নম্বর91/);
      const overflow = await p.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
      assert.equal(overflow, false, 'no horizontal scrolling at 320 px');
      await axe(p, 'bangla');
      await p.screenshot({ path: join(artifacts, 'results-page-320-bn.png'), fullPage: true });
    } finally { await bn.close(); }
  });

  await check('at 1280 px', async () => {
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.goto(PAGE);
    await lookup(page, YEAR, FOUND);
    await page.waitForSelector('#out dl');
    await page.screenshot({ path: join(artifacts, 'results-page-1280.png') });
    await page.setViewportSize({ width: 360, height: 740 });
  });

  await check('a 429 is shown and retried after Retry-After, without hammering', async () => {
    const calls = [];
    page.on('request', (r) => { if (r.url().includes('/results/')) calls.push(Date.now()); });
    await page.goto(LIMITED);
    await lookup(page, YEAR, FOUND); // takes the one request the bucket holds
    await page.waitForSelector('#out dl');
    await lookup(page, YEAR, OTHER);
    await page.waitForFunction(() => /Too many requests/.test(document.getElementById('out').textContent));
    await page.screenshot({ path: join(artifacts, 'results-page-429.png') });
    await page.waitForFunction((roll) => document.querySelector('#out dl') && document.getElementById('out').textContent.includes(roll), OTHER, { timeout: 20000 });
    page.removeAllListeners('request');
    assert.ok(calls.length <= 4, `${calls.length} requests`);
    const gaps = calls.slice(2).map((t, i) => t - calls[i + 1]);
    assert.ok(gaps.every((g) => g >= 900), `retries waited at least Retry-After: ${gaps}`);
  });

  await check('an unreachable service is retried with growing waits, then the page gives up', async () => {
    const calls = [];
    page.on('requestfailed', (r) => { if (r.url().includes('/results/')) calls.push(Date.now()); });
    await page.goto(UNREACHABLE);
    await lookup(page, YEAR, FOUND);
    await page.waitForFunction(() => /busy or cannot be reached/.test(document.getElementById('out').textContent));
    await page.waitForFunction(() => /still unavailable/.test(document.getElementById('out').textContent), null, { timeout: 60000 });
    page.removeAllListeners('requestfailed');
    const gaps = calls.slice(1).map((t, i) => t - calls[i]);
    console.log(`# waits between tries: ${gaps.join(', ')} ms`);
    assert.equal(calls.length, 6, 'one try and five retries');
    for (let i = 1; i < gaps.length; i++) assert.ok(gaps[i] >= 1000 * Math.pow(2, i) / 2 - 100, `wait ${i}: ${gaps[i]} ms`);
  });

  assert.deepEqual(consoleErrors.filter((e) => !/Failed to load resource|ERR_CONNECTION_REFUSED|429/.test(e)), [], 'console errors (CSP included)');
} finally {
  await context.close();
}

await check('without JavaScript the form is answered by the server', async () => {
  const nojs = await browser({ javaScriptEnabled: false });
  try {
    const p = nojs.pages()[0] || await nojs.newPage();
    await p.goto(PAGE);
    await lookup(p, YEAR, FOUND);
    await p.waitForURL(/exam_year=/);
    assert.match(await p.textContent('#out'), /Marks91/);
    await lookup(p, YEAR, MISSING);
    await p.waitForURL(new RegExp(`roll_number=${MISSING}`));
    assert.match(await p.textContent('#out'), /No result was found/);
    await lookup(p, UNPUBLISHED, FOUND);
    await p.waitForURL(new RegExp(`exam_year=${UNPUBLISHED}`));
    assert.match(await p.textContent('#out'), new RegExp(`Results for ${UNPUBLISHED} are not published yet\\. They will be published on \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d UTC\\.`));
    // (axe needs JavaScript; the markup is the one checked above.)
    await p.screenshot({ path: join(artifacts, 'results-page-nojs.png'), fullPage: true });
  } finally { await nojs.close(); }
});

if (process.env.LIGHTHOUSE !== '0') {
  await check('Lighthouse (mobile): performance and accessibility', async () => {
    const profile = mkdtempSync(join(tmpdir(), 'results-page-lighthouse-'));
    profiles.push(profile);
    const out = join(artifacts, 'lighthouse.json');
    execFileSync(process.execPath, [join(here, 'node_modules/lighthouse/cli/index.js'), PAGE,
      '--quiet', '--only-categories=performance,accessibility', '--output=json', `--output-path=${out}`,
      `--chrome-flags=${[...FLAGS, `--user-data-dir=${profile}`].join(' ')}`],
    { env: { ...process.env, CHROME_PATH: CHROMIUM }, stdio: ['ignore', 'inherit', 'inherit'], timeout: 180000 });
    const report = JSON.parse(readFileSync(out, 'utf8'));
    const scores = Object.fromEntries(Object.entries(report.categories).map(([k, v]) => [k, Math.round(v.score * 100)]));
    const metric = (id) => report.audits[id].displayValue;
    const summary = { lighthouse: report.lighthouseVersion, chromium: report.environment.hostUserAgent, scores,
      fcp: metric('first-contentful-paint'), lcp: metric('largest-contentful-paint'), tbt: metric('total-blocking-time'), cls: metric('cumulative-layout-shift') };
    writeFileSync(join(artifacts, 'lighthouse-summary.json'), JSON.stringify(summary, null, 2));
    console.log(`# lighthouse ${JSON.stringify(summary)}`);
    assert.ok(scores.accessibility >= 95, `accessibility ${scores.accessibility}`);
    assert.ok(scores.performance >= 90, `performance ${scores.performance}`);
  });
}

for (const dir of profiles) rmSync(dir, { recursive: true, force: true });
console.log(`# ${passed} passed`);
