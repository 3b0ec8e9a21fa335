/*
 * The djob dashboard: plain JavaScript against djob-api's HTTP API, served
 * by djob-api itself (/ui/). No framework and nothing from outside: the
 * page's Content-Security-Policy allows only this origin. Every text from
 * the API goes in through textContent, never as markup.
 *
 * Flow: GET /auth tells whether the API has tokens and what this one may
 * do; a 401 shows the token form. Then stats, the job list, the open job
 * and the workers are fetched again every REFRESH_MS.
 */
'use strict';

const REFRESH_MS = 3000;
const PAGE_SIZE = 15;
const TOKEN_KEY = 'djob.token';
const STATES = ['queued', 'scheduled', 'processing', 'completed', 'failed', 'cancelled'];
const KNOWN_TYPES = ['compute', 'file', 'blockchain', 'data'];
const SVG = 'http://www.w3.org/2000/svg';

const state = {
  may: {},
  tokens: false,
  cursors: [null], // cursor of each page seen; the last is the current page
  next: null,
  jobId: null, // the job open in the detail panel
  range: 'perMinute',
  stats: null,
  timer: null,
};

const $ = (id) => document.getElementById(id);

/* An element with attributes and children (strings become text). */
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else if (k.startsWith('data-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
}

function svg(tag, attrs, ...kids) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const k of kids) if (k != null) e.append(k);
  return e;
}

/* Show `text` in element `id`, or hide it when text is empty. */
function say(id, text) {
  const e = $(id);
  e.textContent = text || '';
  e.hidden = !text;
}

/* "2026-12-04T19:00:00.000Z" as "2026-12-04 19:00:00"; '' for none. */
function when(iso) {
  if (typeof iso !== 'string') return '';
  return iso.replace('T', ' ').replace(/\.\d+Z$|Z$/, '');
}

function pretty(v) {
  return v === undefined ? '' : JSON.stringify(v, null, 2);
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/* One API call; resolves to the parsed JSON, or rejects with an ApiError
 * carrying the API's error sentence. Paths are relative to the API root
 * (the page lives at /ui/). */
async function api(method, path) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = 'Bearer ' + token;
  let res;
  try {
    res = await fetch(new URL('..' + path, location.href), { method, headers, cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, 'The API did not answer (' + e.message + ')');
  }
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (e) {
    body = null;
  }
  if (!res.ok) {
    const msg = body && typeof body.error === 'string' ? body.error
      : 'The API answered HTTP ' + res.status;
    if (res.status === 401) signedOut(token ? msg : '');
    throw new ApiError(res.status, msg);
  }
  if (body === null) throw new ApiError(res.status, 'The API answered without JSON');
  return body;
}

/* ---- signing in ---- */

function signedOut(message) {
  stopRefresh();
  $('dashboard').hidden = true;
  $('signout').hidden = true;
  $('role').hidden = true;
  $('login').hidden = false;
  say('login-error', message);
  $('token').focus();
}

async function start() {
  say('banner', '');
  let who;
  try {
    who = await api('GET', '/auth');
  } catch (e) {
    // Not a refused token: the API is down or failing; ask again.
    if (e.status !== 401) {
      say('banner', e.message);
      setTimeout(start, REFRESH_MS);
    }
    return;
  }
  state.tokens = who.tokens;
  state.may = who.may || {};
  $('login').hidden = true;
  say('login-error', '');
  $('dashboard').hidden = false;
  $('role').textContent = who.tokens ? 'role: ' + who.role : 'no tokens (open API)';
  $('role').hidden = false;
  $('signout').hidden = !who.tokens;
  await refresh();
  startRefresh();
}

function startRefresh() {
  stopRefresh();
  state.timer = setInterval(refresh, REFRESH_MS);
}

function stopRefresh() {
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
}

$('token-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $('token').value.trim());
  $('token').value = '';
  start();
});

$('signout').addEventListener('click', (ev) => {
  ev.preventDefault();
  sessionStorage.removeItem(TOKEN_KEY);
  closeJob();
  signedOut('');
});

/* ---- refreshing ---- */

let refreshing = false;

async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    await Promise.all([loadStats(), loadJobs(), loadWorkers(), state.jobId ? loadJob() : null]);
    $('refreshed').textContent = 'updated ' + new Date().toLocaleTimeString();
  } finally {
    refreshing = false;
  }
}

/* ---- counts and the chart (GET /stats) ---- */

async function loadStats() {
  try {
    const s = await api('GET', '/stats');
    state.stats = s;
    say('stats-error', '');
    drawCounts(s);
    drawTypes(s);
    drawChart();
    fillTypeFilter(Object.keys(s.byType || {}));
  } catch (e) {
    say('stats-error', e.message);
  }
}

function drawCounts(s) {
  const cards = [el('div', { class: 'card total', 'data-status': 'total' },
    el('span', { class: 'n', id: 'count-total' }, String(s.total)), el('span', {}, 'total'))];
  for (const st of STATES) {
    const n = (s.byStatus || {})[st] || 0;
    cards.push(el('button', {
      type: 'button', class: 'card st-' + st, 'data-status': st, title: 'List the ' + st + ' jobs',
      on: { click: () => { $('f-status').value = st; filtersChanged(); } },
    }, el('span', { class: 'n', id: 'count-' + st }, String(n)), el('span', {}, st)));
  }
  $('counts').replaceChildren(...cards);
  say('stats-asof', s.asOf ? 'as of ' + when(s.asOf) + ' UTC' : '');
}

function drawTypes(s) {
  const table = $('types');
  table.tHead.replaceChildren(el('tr', {}, el('th', {}, 'Type'), el('th', {}, 'total'),
    ...STATES.map((st) => el('th', { class: 'num' }, st))));
  const rows = Object.entries(s.byType || {})
    .sort((a, b) => b[1].total - a[1].total || a[0].localeCompare(b[0]))
    .map(([type, c]) => el('tr', { 'data-type': type }, el('td', {}, type),
      el('td', { class: 'num', 'data-status': 'total' }, String(c.total)),
      ...STATES.map((st) => el('td', { class: 'num', 'data-status': st }, String(c[st] || 0)))));
  if (!rows.length) rows.push(el('tr', {}, el('td', { colSpan: 8, class: 'muted' }, 'No jobs yet.')));
  table.tBodies[0].replaceChildren(...rows);
}

for (const [id, range] of [['range-hour', 'perMinute'], ['range-minute', 'perSecond']]) {
  $(id).addEventListener('click', () => {
    state.range = range;
    $('range-hour').classList.toggle('on', range === 'perMinute');
    $('range-minute').classList.toggle('on', range === 'perSecond');
    drawChart();
  });
}

/* Stacked bars, completed below failed, one per interval of the series. */
function drawChart() {
  const series = state.stats && state.stats.throughput && state.stats.throughput[state.range];
  const box = $('chart');
  if (!series) {
    box.replaceChildren(el('p', { class: 'muted' }, 'No throughput figures.'));
    return;
  }
  const done = series.completed || [];
  const failed = series.failed || [];
  const n = Math.max(done.length, failed.length, 1);
  const W = 720, H = 180, L = 40, B = 22, T = 8;
  let max = 0;
  for (let i = 0; i < n; i++) max = Math.max(max, (done[i] || 0) + (failed[i] || 0));
  const top = niceMax(max);
  const bw = (W - L) / n;
  const y = (v) => T + (H - T - B) * (1 - v / top);
  const kids = [];
  for (const frac of [0, 0.5, 1]) {
    const v = top * frac;
    kids.push(svg('line', { x1: L, x2: W, y1: y(v), y2: y(v), class: 'gridline' }));
    kids.push(svg('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'axis' },
      String(Math.round(v))));
  }
  const start = Date.parse(series.start);
  const step = (series.intervalSeconds || 60) * 1000;
  for (let i = 0; i < n; i++) {
    const c = done[i] || 0, f = failed[i] || 0;
    const x = L + i * bw + bw * 0.1, w = bw * 0.8;
    const label = when(new Date(start + i * step).toISOString()) + ': ' + c + ' completed, ' +
      f + ' failed';
    const g = svg('g', {}, svg('title', {}, label));
    if (c) g.append(svg('rect', { x, width: w, y: y(c), height: y(0) - y(c), class: 'bar completed' }));
    if (f) g.append(svg('rect', { x, width: w, y: y(c + f), height: y(c) - y(c + f), class: 'bar failed' }));
    kids.push(g);
  }
  const unit = state.range === 'perMinute' ? '60 min ago' : '60 s ago';
  kids.push(svg('text', { x: L, y: H - 6, class: 'axis' }, unit));
  kids.push(svg('text', { x: W, y: H - 6, 'text-anchor': 'end', class: 'axis' }, 'now'));
  box.replaceChildren(svg('svg', {
    viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'Jobs finished per interval',
  }, ...kids));
  const sum = (a) => a.reduce((x, v) => x + v, 0);
  $('chart-sum').textContent = '(' + sum(done) + ' completed, ' + sum(failed) + ' failed in ' +
    (state.range === 'perMinute' ? 'the last hour' : 'the last minute') + ')';
}

/* The least of 1, 2, 5 times a power of ten that is at least v (4 at least). */
function niceMax(v) {
  if (v <= 4) return 4;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fillTypeFilter(types) {
  const sel = $('f-type');
  const have = new Set([...sel.options].map((o) => o.value));
  for (const t of [...KNOWN_TYPES, ...types].sort()) {
    if (!have.has(t)) {
      sel.append(el('option', { value: t }, t));
      have.add(t);
    }
  }
}

/* ---- the job list (GET /jobs) ---- */

function listPath() {
  const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if ($('f-status').value) q.set('status', $('f-status').value);
  if ($('f-type').value) q.set('type', $('f-type').value);
  const cursor = state.cursors[state.cursors.length - 1];
  if (cursor) q.set('after', cursor);
  return '/jobs?' + q.toString();
}

async function loadJobs() {
  let page;
  try {
    page = await api('GET', listPath());
  } catch (e) {
    say('jobs-error', e.message);
    return;
  }
  say('jobs-error', '');
  state.next = page.next || null;
  const rows = (page.jobs || []).map((j) => el('tr', {
    'data-id': j._id, class: j._id === state.jobId ? 'sel' : '',
    on: { click: () => openJob(j._id) },
  },
  el('td', { class: 'mono', title: j._id },
    el('a', { href: '#', on: { click: (ev) => ev.preventDefault() } }, shortId(j._id))),
  el('td', {}, j.type || ''),
  el('td', { class: 'status' }, badge(j.status)),
  el('td', { class: 'num' }, String(j.attempts ?? '')),
  el('td', {}, when(j.createdAt)),
  el('td', {}, when(j.updatedAt))));
  $('jobs').tBodies[0].replaceChildren(...rows);
  $('jobs-empty').hidden = rows.length > 0;
  $('page-next').disabled = !state.next;
  $('page-prev').disabled = state.cursors.length < 2;
  $('page-first').disabled = state.cursors.length < 2;
  $('page-no').textContent = 'page ' + state.cursors.length;
}

/* The first group of a uuid, as a list shows it (the detail has it all). */
function shortId(id) {
  return typeof id === 'string' && id.length > 13 ? id.slice(0, 13) + '…' : String(id);
}

function badge(status) {
  return el('span', { class: 'badge st-' + status }, status || '?');
}

function filtersChanged() {
  state.cursors = [null];
  loadJobs();
}

$('f-status').addEventListener('change', filtersChanged);
$('f-type').addEventListener('change', filtersChanged);
$('filters').addEventListener('submit', (ev) => ev.preventDefault());
$('page-next').addEventListener('click', () => {
  if (!state.next) return;
  state.cursors.push(state.next);
  loadJobs();
});
$('page-prev').addEventListener('click', () => {
  if (state.cursors.length > 1) state.cursors.pop();
  loadJobs();
});
$('page-first').addEventListener('click', () => {
  state.cursors = [null];
  loadJobs();
});

$('search').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const id = $('search-id').value.trim();
  say('search-error', '');
  if (!id) return;
  try {
    const job = await api('GET', '/jobs/' + encodeURIComponent(id));
    state.jobId = job._id;
    drawJob(job);
  } catch (e) {
    say('search-error', e.message);
  }
});

/* ---- a job's detail (GET /jobs/:id), retry and cancel ---- */

function openJob(id) {
  state.jobId = id;
  say('d-note', '');
  say('d-error-msg', '');
  for (const tr of $('jobs').tBodies[0].rows) tr.classList.toggle('sel', tr.dataset.id === id);
  loadJob();
}

function closeJob() {
  state.jobId = null;
  $('d-body').hidden = true;
  $('d-none').hidden = false;
  $('d-id').textContent = '';
  for (const tr of $('jobs').tBodies[0].rows) tr.classList.remove('sel');
}

$('d-close').addEventListener('click', closeJob);

async function loadJob() {
  const id = state.jobId;
  try {
    const job = await api('GET', '/jobs/' + encodeURIComponent(id));
    if (state.jobId === id) drawJob(job);
  } catch (e) {
    if (state.jobId === id) say('d-error-msg', e.message);
  }
}

const FIELDS = [
  ['status', 'Status'], ['type', 'Type'], ['attempts', 'Attempts'],
  ['maxAttempts', 'Max attempts'], ['workerId', 'Worker'], ['createdAt', 'Created'],
  ['updatedAt', 'Updated'], ['startedAt', 'Started'], ['runAt', 'Runs at'],
  ['leaseUntil', 'Lease until'], ['finishedAt', 'Finished'], ['idempotencyKey', 'Idempotency key'],
];

function drawJob(job) {
  $('d-none').hidden = true;
  $('d-body').hidden = false;
  $('d-id').textContent = job._id;
  const rows = [];
  for (const [k, label] of FIELDS) {
    if (job[k] === undefined || job[k] === null) continue;
    const v = k === 'status' ? badge(job.status)
      : /At$|Until$/.test(k) ? when(job[k]) + ' UTC' : String(job[k]);
    rows.push(el('tr', { 'data-field': k }, el('th', {}, label), el('td', {}, v)));
  }
  $('d-fields').tBodies[0].replaceChildren(...rows);
  $('d-payload').textContent = pretty(job.payload) || '—';
  $('d-result').textContent = job.result === undefined ? '—' : pretty(job.result);
  $('d-error').textContent = job.error === undefined ? '—' : String(job.error);
  $('d-error').classList.toggle('bad', job.error !== undefined);
  const hist = Array.isArray(job.history) ? job.history : [];
  $('d-history').tBodies[0].replaceChildren(...hist.map((h) => el('tr', {},
    el('td', { class: 'num' }, String(h.attempt ?? '')),
    el('td', {}, h.workerId || ''),
    el('td', { class: 'wrap' }, badge(h.status), h.error ? el('div', { class: 'why' }, h.error) : null),
    el('td', {}, when(h.finishedAt)))));
  $('d-history').hidden = hist.length === 0;
  $('d-history-none').hidden = hist.length > 0;
  /* Only the controls this token may use, on the jobs they apply to. */
  $('d-retry').hidden = !(state.may.admin && ['failed', 'cancelled'].includes(job.status));
  $('d-cancel').hidden = !(state.may.admin &&
    ['queued', 'scheduled', 'processing'].includes(job.status));
}

async function act(method, suffix, done) {
  const id = state.jobId;
  say('d-note', '');
  say('d-error-msg', '');
  try {
    const job = await api(method, '/jobs/' + encodeURIComponent(id) + suffix);
    if (state.jobId !== id) return;
    drawJob(job);
    say('d-note', done + ': the job is now ' + job.status + '.');
    loadJobs();
    loadStats();
  } catch (e) {
    say('d-error-msg', e.message);
  }
}

$('d-retry').addEventListener('click', () => act('POST', '/retry', 'Requeued'));
$('d-cancel').addEventListener('click', () => act('DELETE', '', 'Cancelled'));

/* ---- workers and their lag (GET /workers) ---- */

async function loadWorkers() {
  let w;
  try {
    w = await api('GET', '/workers');
  } catch (e) {
    say('w-error', e.message);
    $('workers').hidden = true;
    $('w-summary').textContent = '';
    say('w-unassigned', '');
    return;
  }
  say('w-error', '');
  $('workers').hidden = false;
  const part = (p) => p.topic + '[' + p.partition + '] ' +
    (p.committed < 0 ? '—' : p.committed) + ' / ' + p.end + ', lag ' + p.lag;
  const rows = (w.workers || []).map((x) => el('tr', { 'data-worker': x.id },
    el('td', { class: 'mono' }, x.id), el('td', {}, x.host || ''),
    el('td', { class: 'wrap' }, ...(x.partitions || []).map((p) => el('div', {}, part(p)))),
    el('td', { class: 'num' }, String(x.lag))));
  if (!rows.length) rows.push(el('tr', {}, el('td', { colSpan: 4, class: 'muted' }, 'No worker in the group.')));
  $('workers').tBodies[0].replaceChildren(...rows);
  const lag = w.lag || {};
  $('w-summary').textContent = 'group ' + w.group + ', ' + w.state + ', total lag ' +
    (lag.total ?? 0) + (w.asOf ? ', as of ' + when(w.asOf) + ' UTC' : '');
  /* Partitions no worker holds: those with jobs waiting by name, the
   * others counted. */
  const un = w.unassigned || [];
  const waiting = un.filter((p) => p.lag > 0);
  const idle = un.length - waiting.length;
  say('w-unassigned', un.length ? 'Not assigned to any worker: ' +
    (waiting.length ? waiting.map(part).join('; ') : 'no jobs waiting') +
    (idle ? (waiting.length ? '; and ' : ' in ') + idle + ' partition' + (idle > 1 ? 's' : '') +
      ' without lag' : '') + '.' : '');
}

start();
