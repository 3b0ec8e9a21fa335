// The dashboard (/ui/) in Debian's headless chromium, driven by
// playwright-core, against the djob-api and djob-worker that
// browser_test.py started on the dev stack.
//
// usage: node dashboard_test.mjs <case>
//
// Environment (set by browser_test.py): DJOB_BROWSER_API (the API's base
// URL, with tokens), DJOB_BROWSER_OPEN_API (one without tokens, for the
// cases that need it), DJOB_BROWSER_WORKER (the worker's base URL),
// DJOB_BROWSER_TOKENS (JSON {"submit":..,"worker":..,"admin":..}).
// DJOB_SCREENSHOTS=1 writes docs/dashboard.png and docs/dashboard-job.png
// into DJOB_SCREENSHOTS_DIR. Exit status 0 when the case passed, 1 with
// one line on standard error otherwise.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
const API = process.env.DJOB_BROWSER_API;
const WORKER = process.env.DJOB_BROWSER_WORKER;
const TOKENS = JSON.parse(process.env.DJOB_BROWSER_TOKENS || '{}');
const STATES = ['queued', 'scheduled', 'processing', 'completed', 'failed', 'cancelled'];

class Failure extends Error {}

function check(cond, msg) {
  if (!cond) throw new Failure(msg);
}

const sha256 = (s) => createHash('sha256').update(s).digest('hex');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* Poll fn() until it returns something truthy; fail saying `what`. */
async function until(fn, what, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e.message;
    }
    await sleep(100);
  }
  throw new Failure(`${what} (within ${timeoutMs / 1000} s; last: ${JSON.stringify(last)})`);
}

/* One request to the API (or the worker) outside the browser. */
async function call(base, method, p, { body, token } = {}) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = 'Bearer ' + token;
  const res = await fetch(base + p, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch (e) { json = null; }
  return { status: res.status, json, text };
}

async function submit(job, token = TOKENS.admin) {
  const r = await call(API, 'POST', '/jobs', { body: job, token });
  check(r.status === 201, `POST /jobs ${JSON.stringify(job)}: ${r.status} ${r.text}`);
  return r.json.jobId;
}

async function jobDoc(id, base = API) {
  const r = await call(base, 'GET', '/jobs/' + id, { token: TOKENS.admin });
  check(r.status === 200, `GET /jobs/${id}: ${r.status} ${r.text}`);
  return r.json;
}

async function waitStatus(id, status, base = API) {
  return until(async () => {
    const d = await jobDoc(id, base);
    return d.status === status ? d : null;
  }, `job ${id} did not become ${status}`, 60000);
}

const ok = (n) => ({ type: 'compute', payload: { input: 'hello ' + n } });
// The e2e plugin fails a job whose payload asks it to (tests/e2e/e2e_plugin.c).
const failing = (n, maxAttempts = 1) =>
  ({ type: 'compute', payload: { input: 'bad ' + n, failFirst: 9 }, maxAttempts });

async function stopWorker() {
  const r = await call(WORKER, 'POST', '/stop', { token: TOKENS.admin });
  check(r.status === 200, `worker /stop: ${r.status} ${r.text}`);
}

/* ---- the browser ---- */

let browser;
const pages = [];

/* A new tab at 1280x800 on `base`/ui/, signed in with `token` (kept in
 * sessionStorage as the token form keeps it), or not signed in. */
async function open(token, base = API) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  if (token) {
    await ctx.addInitScript((t) => sessionStorage.setItem('djob.token', t), token);
  }
  const page = await ctx.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (m) => {
    // A blocked resource or script would show up here first.
    if (/Content Security Policy|Refused to/.test(m.text())) problems.push(m.text());
  });
  pages.push(problems);
  await page.goto(base + '/ui/');
  return page;
}

const text = (page, sel) => page.locator(sel).first().textContent();
const visible = (page, sel) => page.locator(sel).first().isVisible();

async function rowStatus(page, id) {
  const row = page.locator(`#jobs tr[data-id="${id}"] .status`);
  return (await row.count()) ? (await row.textContent()).trim() : null;
}

async function listedIds(page) {
  return page.locator('#jobs tbody tr[data-id]').evaluateAll((rows) => rows.map((r) => r.dataset.id));
}

async function openJob(page, id) {
  await until(async () => (await page.locator(`#jobs tr[data-id="${id}"]`).count()) > 0,
    `job ${id} is not in the list`);
  await page.click(`#jobs tr[data-id="${id}"]`);
  await until(async () => (await text(page, '#d-id')) === id, `the detail of ${id} did not open`);
}

async function field(page, name) {
  const f = page.locator(`#d-fields tr[data-field="${name}"] td`);
  return (await f.count()) ? (await f.textContent()).trim() : null;
}

/* The counts the page shows, as GET /stats spells them. */
async function shownCounts(page) {
  const out = { total: Number(await text(page, '#count-total')), byStatus: {}, byType: {} };
  for (const st of STATES) out.byStatus[st] = Number(await text(page, '#count-' + st));
  for (const row of await page.locator('#types tbody tr[data-type]').all()) {
    const type = await row.getAttribute('data-type');
    out.byType[type] = { total: Number(await row.locator('td[data-status="total"]').textContent()) };
    for (const st of STATES) {
      out.byType[type][st] = Number(await row.locator(`td[data-status="${st}"]`).textContent());
    }
  }
  return out;
}

/* The figures of GET /stats (or of the page), types in name order. */
function statsCounts(s) {
  const out = { total: s.total, byStatus: {}, byType: {} };
  for (const st of STATES) out.byStatus[st] = s.byStatus[st];
  for (const [type, c] of Object.entries(s.byType).sort((a, b) => a[0].localeCompare(b[0]))) {
    out.byType[type] = { total: c.total };
    for (const st of STATES) out.byType[type][st] = c[st];
  }
  return out;
}

async function screenshot(page, name, fullPage = false) {
  if (process.env.DJOB_SCREENSHOTS !== '1') return;
  const dir = process.env.DJOB_SCREENSHOTS_DIR;
  check(dir && existsSync(dir), `DJOB_SCREENSHOTS_DIR is not a folder: ${dir}`);
  await page.screenshot({ path: path.join(dir, name), fullPage });
  console.log('wrote ' + path.join(dir, name));
}

/* ---- cases ---- */

const cases = {};

cases.submitted_jobs_are_listed_opened_and_counted = async () => {
  const good = [];
  for (let i = 0; i < 6; i++) good.push(await submit(ok(i)));
  const bad = [await submit(failing(1, 2)), await submit(failing(2))];
  // No handler of these types runs here (the worker has the e2e plugin's
  // compute only): they stay queued.
  const waiting = [await submit({ type: 'file', payload: { path: 'report.csv' } }),
    await submit({ type: 'data', payload: { op: 'sum', values: [1, 2, 3] } })];
  for (const id of good) await waitStatus(id, 'completed');
  for (const id of bad) await waitStatus(id, 'failed');
  const page = await open(TOKENS.admin);

  // Every job in the list with its status.
  for (const id of good) {
    await until(async () => (await rowStatus(page, id)) === 'completed', `${id} not listed completed`);
  }
  for (const id of bad) {
    await until(async () => (await rowStatus(page, id)) === 'failed', `${id} not listed failed`);
  }
  for (const id of waiting) {
    await until(async () => (await rowStatus(page, id)) === 'queued', `${id} not listed queued`);
  }

  // The counts are GET /stats' (both read once the figures settled).
  let seen = null;
  await until(async () => {
    const s = (await call(API, 'GET', '/stats', { token: TOKENS.admin })).json;
    const want = JSON.stringify(statsCounts(s));
    const got = JSON.stringify(statsCounts(await shownCounts(page)));
    seen = { stats: s.asOf + ' ' + want, shown: got };
    if (s.total !== 10 || s.byStatus.completed !== 6 || s.byStatus.queued !== 2) return null;
    return got === want ? got : null;
    // GET /stats answers its last reading, which may be older than a
    // second (libdjob/store_stats.c): wait for the figures to settle.
  }, 'the counts shown are not those of GET /stats', 60000).catch((e) => {
    throw new Failure(e.message + '; last seen ' + JSON.stringify(seen));
  });
  // The chart has a bar for the finished jobs.
  check(await page.locator('#chart svg rect.bar.completed').count() > 0, 'no completed bar in the chart');
  check(/6 completed, 2 failed in the last hour/.test(await text(page, '#chart-sum')),
    `chart total: ${await text(page, '#chart-sum')}`);
  // The jobs finished seconds ago: the per-second view holds them too.
  await page.click('#range-minute');
  check(/6 completed, 2 failed in the last minute/.test(await text(page, '#chart-sum')),
    `chart total per second: ${await text(page, '#chart-sum')}`);
  check(await page.locator('#chart svg rect.bar.failed').count() > 0, 'no failed bar per second');
  await page.click('#range-hour');

  // The workers panel: the table, or the API's sentence when it has none.
  const w = await call(API, 'GET', '/workers', { token: TOKENS.admin });
  if (w.status === 200) {
    for (const x of w.json.workers) {
      await until(async () => (await page.locator(`#workers tr[data-worker="${x.id}"]`).count()) > 0,
        `worker ${x.id} is not in the workers panel`);
    }
  } else {
    check(w.json && w.json.error, `GET /workers ${w.status} without an error sentence: ${w.text}`);
    await until(async () => (await text(page, '#w-error')) === w.json.error,
      `the workers panel does not say "${w.json.error}"`);
  }
  await page.waitForTimeout(300);
  await screenshot(page, 'dashboard.png', true);

  // A completed job's detail: its result and its one attempt.
  await openJob(page, good[0]);
  check(JSON.parse(await text(page, '#d-result')).value === sha256('hello 0'),
    `result shown: ${await text(page, '#d-result')}`);
  check(JSON.parse(await text(page, '#d-payload')).input === 'hello 0', 'payload not shown');
  check(await field(page, 'status') === 'completed', `status field ${await field(page, 'status')}`);
  check(await field(page, 'attempts') === '1', `attempts field ${await field(page, 'attempts')}`);
  check((await page.locator('#d-history tbody tr').count()) === 1, 'not one attempt in the history');
  check(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/.test(await field(page, 'finishedAt')),
    `finished field ${await field(page, 'finishedAt')}`);

  // A failed one: its error and both attempts.
  await openJob(page, bad[0]);
  check((await text(page, '#d-error')) === 'Failing on purpose', `error shown: ${await text(page, '#d-error')}`);
  const hist = await page.locator('#d-history tbody tr').allTextContents();
  check(hist.length === 2 && hist.every((h) => /failed/.test(h) && /Failing on purpose/.test(h)),
    `history shown: ${JSON.stringify(hist)}`);
  check(await visible(page, '#d-retry'), 'no Retry button on a failed job for an admin');
  await page.locator('#detail').scrollIntoViewIfNeeded();
  await screenshot(page, 'dashboard-job.png');
};

cases.failed_job_retried_from_the_ui_is_requeued = async () => {
  const id = await submit(failing(1));
  await waitStatus(id, 'failed');
  await stopWorker(); // so that the requeued job stays queued to be seen
  const page = await open(TOKENS.admin);
  await openJob(page, id);
  check(await visible(page, '#d-retry'), 'no Retry button on a failed job');
  check(!(await visible(page, '#d-cancel')), 'a Cancel button on a failed job');
  await page.click('#d-retry');
  await until(async () => (await text(page, '#d-note')) === 'Requeued: the job is now queued.',
    'no note that the job was requeued');
  await until(async () => (await rowStatus(page, id)) === 'queued', 'the list does not show it queued');
  const doc = await jobDoc(id);
  check(doc.status === 'queued' && doc.attempts === 0 && doc.error === undefined,
    `after retry the API has ${JSON.stringify(doc)}`);
  check(await field(page, 'status') === 'queued', 'the detail does not say queued');
  // Queued: now it may be cancelled, not retried.
  check(!(await visible(page, '#d-retry')), 'a Retry button on a queued job');
  check(await visible(page, '#d-cancel'), 'no Cancel button on a queued job');
  await page.click('#d-cancel');
  await until(async () => (await text(page, '#d-note')) === 'Cancelled: the job is now cancelled.',
    'no note that the job was cancelled');
  check((await jobDoc(id)).status === 'cancelled', 'the API does not have it cancelled');
  await until(async () => (await rowStatus(page, id)) === 'cancelled', 'the list does not show it cancelled');
};

cases.filters_paging_and_search_by_id = async () => {
  const good = [];
  for (let i = 0; i < 14; i++) good.push(await submit(ok(i)));
  const bad = [await submit(failing(1)), await submit(failing(2))];
  for (const id of good) await waitStatus(id, 'completed');
  for (const id of bad) await waitStatus(id, 'failed');
  await stopWorker();
  const files = [await submit({ type: 'file', payload: { path: 'a.txt' } }),
    await submit({ type: 'file', payload: { path: 'b.txt' } })];
  const all = [...good, ...bad, ...files];
  const page = await open(TOKENS.submit);
  const same = (a, b) => JSON.stringify([...a].sort()) === JSON.stringify([...b].sort());

  // Paging: 15 a page, newest first, with the next cursor.
  await until(async () => (await listedIds(page)).length === 15, 'page 1 does not hold 15 jobs');
  const page1 = await listedIds(page);
  check(!(await page.locator('#page-next').isDisabled()), 'no next page');
  await page.click('#page-next');
  await until(async () => (await text(page, '#page-no')) === 'page 2', 'page 2 did not open');
  const page2 = await until(async () => { const ids = await listedIds(page); return ids.length === 3 && ids; },
    'page 2 does not hold the 3 oldest jobs');
  check(same([...page1, ...page2], all), 'the two pages are not all the jobs, each once');
  check(await page.locator('#page-next').isDisabled(), 'a next page after the last');
  await page.click('#page-prev');
  await until(async () => same(await listedIds(page), page1), 'previous page is not page 1');

  // Filters: by status, by type, and both.
  await page.selectOption('#f-status', 'failed');
  await until(async () => same(await listedIds(page), bad), 'status=failed does not list the failed jobs');
  await page.selectOption('#f-status', '');
  await page.selectOption('#f-type', 'file');
  await until(async () => same(await listedIds(page), files), 'type=file does not list the file jobs');
  await page.selectOption('#f-status', 'completed');
  await until(async () => (await listedIds(page)).length === 0 && await visible(page, '#jobs-empty'),
    'status=completed, type=file is not empty');
  await page.selectOption('#f-type', 'compute');
  await until(async () => same(await listedIds(page), good), 'status=completed, type=compute');
  check(await page.locator('#page-next').isDisabled(), 'a next page after 14 jobs');

  // Search by id: found, unknown, malformed (the API's sentences).
  await page.fill('#search-id', files[0]);
  await page.click('#search button');
  await until(async () => (await text(page, '#d-id')) === files[0], 'search did not open the job');
  check(await field(page, 'type') === 'file', 'the searched job is not the file job');
  const unknown = '00000000-0000-4000-8000-000000000000';
  const nf = await call(API, 'GET', '/jobs/' + unknown, { token: TOKENS.submit });
  check(nf.status === 404, `GET unknown id: ${nf.status}`);
  await page.fill('#search-id', unknown);
  await page.click('#search button');
  await until(async () => (await text(page, '#search-error')) === nf.json.error,
    `search of an unknown id does not say "${nf.json.error}"`);
  const bad400 = await call(API, 'GET', '/jobs/not-an-id', { token: TOKENS.submit });
  check(bad400.status >= 400 && bad400.status < 500 && bad400.json.error, `GET /jobs/not-an-id: ${bad400.text}`);
  await page.fill('#search-id', 'not-an-id');
  await page.click('#search button');
  await until(async () => (await text(page, '#search-error')) === bad400.json.error,
    `search of a malformed id does not say "${bad400.json.error}"`);
};

cases.submit_and_worker_tokens_see_no_retry_or_cancel = async () => {
  const failed = await submit(failing(1));
  await waitStatus(failed, 'failed');
  await stopWorker();
  const queued = await submit(ok(1));
  for (const [role, token] of [['submit', TOKENS.submit], ['worker', TOKENS.worker]]) {
    const page = await open(token);
    await until(async () => (await text(page, '#role')) === 'role: ' + role, `role shown for ${role}`);
    for (const id of [failed, queued]) {
      await openJob(page, id);
      await page.waitForTimeout(200);
      check(!(await visible(page, '#d-retry')), `a ${role} token sees Retry on ${id}`);
      check(!(await visible(page, '#d-cancel')), `a ${role} token sees Cancel on ${id}`);
      check(await page.locator('#d-retry, #d-cancel').evaluateAll((b) => b.every((x) => x.hidden)),
        `a ${role} token has a Retry or Cancel control`);
    }
  }
  const page = await open(TOKENS.admin);
  await until(async () => (await text(page, '#role')) === 'role: admin', 'role shown for admin');
  await openJob(page, failed);
  check(await visible(page, '#d-retry') && !(await visible(page, '#d-cancel')), 'admin on a failed job');
  await openJob(page, queued);
  check(await visible(page, '#d-cancel') && !(await visible(page, '#d-retry')), 'admin on a queued job');
};

cases.token_form_on_401_wrong_token_and_sign_out = async () => {
  const id = await submit(ok(1));
  // /ui sends the browser to /ui/; without a token the form shows.
  const page = await open(null);
  await page.goto(API + '/ui');
  check(new URL(page.url()).pathname === '/ui/', `GET /ui ended at ${page.url()}`);
  await until(() => visible(page, '#login'), 'no token form on 401');
  check(!(await visible(page, '#dashboard')), 'the dashboard shows without a token');
  check(!(await text(page, '#login-error')), 'an error before any token was tried');

  await page.fill('#token', 'not-a-token');
  await page.click('#token-form button');
  await until(async () => (await text(page, '#login-error')) === 'Missing or invalid bearer token',
    'a wrong token does not show the API\'s sentence');
  check(!(await visible(page, '#dashboard')), 'the dashboard shows with a wrong token');

  await page.fill('#token', TOKENS.submit);
  await page.click('#token-form button');
  await until(() => visible(page, '#dashboard'), 'the dashboard does not show with a good token');
  check(!(await visible(page, '#login')), 'the form stays with a good token');
  await until(async () => (await rowStatus(page, id)) !== null, 'the job is not listed once signed in');
  check(await page.evaluate(() => sessionStorage.getItem('djob.token')) === TOKENS.submit,
    'the token is not in sessionStorage');
  check(await text(page, '#role') === 'role: submit', `role shown: ${await text(page, '#role')}`);

  await page.click('#signout');
  await until(() => visible(page, '#login'), 'sign out does not show the form');
  check(!(await visible(page, '#dashboard')), 'the dashboard stays after sign out');
  check(await page.evaluate(() => sessionStorage.getItem('djob.token')) === null,
    'the token stays in sessionStorage after sign out');
  await page.reload();
  await until(() => visible(page, '#login'), 'after sign out and reload the form does not show');

  // An API without tokens: no form, every control, no sign-out link.
  const openApi = process.env.DJOB_BROWSER_OPEN_API;
  const p2 = await open(null, openApi);
  await until(() => visible(p2, '#dashboard'), 'the dashboard of an API without tokens');
  check(!(await visible(p2, '#login')), 'a token form on an API without tokens');
  check(!(await visible(p2, '#signout')), 'a sign-out link on an API without tokens');
  check((await text(p2, '#role')) === 'no tokens (open API)', `role shown: ${await text(p2, '#role')}`);
  await until(async () => (await rowStatus(p2, id)) !== null, 'the job is not listed on the open API');
  await openJob(p2, id);
};

cases.api_errors_are_shown_as_their_sentence = async () => {
  const id = await submit(ok(1));
  await waitStatus(id, 'completed');
  // The browser's requests are answered here instead of by the API: a 503
  // with a sentence, a 500 without JSON, no answer at all.
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await ctx.addInitScript((t) => sessionStorage.setItem('djob.token', t), TOKENS.admin);
  await ctx.route(/\/stats$/, (r) => r.fulfill({
    status: 503, contentType: 'application/json', body: '{"error":"MongoDB is unreachable"}',
  }));
  await ctx.route(/\/jobs\?/, (r) => r.fulfill({ status: 500, contentType: 'text/html', body: '<h1>oops</h1>' }));
  await ctx.route(/\/workers$/, (r) => r.abort('connectionrefused'));
  const page = await ctx.newPage();
  await page.goto(API + '/ui/');
  await until(async () => (await text(page, '#stats-error')) === 'MongoDB is unreachable',
    'the stats panel does not say the API\'s sentence');
  await until(async () => (await text(page, '#jobs-error')) === 'The API answered HTTP 500',
    'the job list does not say that the API failed');
  await until(async () => /^The API did not answer/.test(await text(page, '#w-error')),
    'the workers panel does not say that the API did not answer');
  // The rest still works: a job opens by its id.
  await page.fill('#search-id', id);
  await page.click('#search button');
  await until(async () => (await field(page, 'status')) === 'completed', 'search by id with the list failing');
  await ctx.close();
};

/* ---- running one ---- */

async function main() {
  const name = process.argv[2];
  const fn = cases[name];
  if (!fn) {
    console.error(`unknown case ${name}`);
    return 2;
  }
  if (!existsSync(CHROMIUM)) {
    console.error(`FAIL ${name}: ${CHROMIUM} is missing (Debian's chromium package: run scripts/install)`);
    return 1;
  }
  try {
    check(API && WORKER, 'DJOB_BROWSER_API and DJOB_BROWSER_WORKER must be set (run through browser_test.py)');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    await fn();
    const problems = pages.flat();
    check(problems.length === 0, 'the page reported: ' + problems.join('; '));
  } catch (e) {
    console.error(`FAIL ${name}: ${e instanceof Failure ? e.message : e.stack || e}`);
    return 1;
  } finally {
    if (browser) await browser.close();
  }
  return 0;
}

process.exitCode = await main();
