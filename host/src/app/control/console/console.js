// The operator console's script. Everything it shows comes from the control API's JSON
// endpoints; every value is put in the page as text (textContent, never as markup),
// since record values come from the apps. The session cookie is HttpOnly: this script
// only holds the CSRF token, which it sends with every request that changes something.
'use strict';

const state = { csrf: null, timer: null, last: null, run: null, preview: null };

// ----- DOM helpers (text only) -----
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat()) {
    if (kid === undefined || kid === null || kid === false) continue;
    e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return e;
}
const NS = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, ...kids) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const kid of kids.flat()) {
    if (kid === undefined || kid === null) continue;
    e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return e;
}
const $ = (id) => document.getElementById(id);
function when(unix) {
  if (!unix) return '—';
  return new Date(unix * 1000).toLocaleString();
}
function flash(text, bad) {
  const f = $('flash');
  f.textContent = text || '';
  f.className = bad ? 'error' : '';
}
// Puts `kids` (nodes, texts, nested arrays; null skipped) in the page.
function show(...kids) {
  $('page').replaceChildren(...kids.flat(Infinity).filter((k) => k !== null && k !== undefined && k !== false));
}
function table(head, rows, attrs) {
  return el('table', attrs || {},
    el('thead', {}, el('tr', {}, head.map((h) => el('th', {}, h)))),
    el('tbody', {}, rows));
}

// ----- API -----
class SignedOut extends Error {}
async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-Tandem-CSRF'] = state.csrf || '';
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (resp.status === 401) { showSignIn(); throw new SignedOut('not signed in'); }
  const text = await resp.text();
  const json = text ? JSON.parse(text) : {};
  if (!resp.ok) throw new Error(json.error || ('HTTP ' + resp.status));
  return json;
}
const enc = encodeURIComponent;

// ----- Sign in / out -----
function showSignIn() {
  state.csrf = null;
  stopPolling();
  $('nav').hidden = true;
  show();
  $('sign-in').hidden = false;
}
async function signIn(ev) {
  ev.preventDefault();
  $('sign-in-error').textContent = '';
  const resp = await fetch('/console/session', {
    method: 'POST', credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ token: $('token').value }),
  });
  const json = await resp.json();
  $('token').value = '';
  if (!resp.ok) { $('sign-in-error').textContent = json.error; return; }
  state.csrf = json.csrf;
  signedIn();
}
async function signOut() {
  await fetch('/console/sign-out', {
    method: 'POST', credentials: 'same-origin', headers: { 'X-Tandem-CSRF': state.csrf || '' },
  });
  showSignIn();
}
function signedIn() {
  $('sign-in').hidden = true;
  $('nav').hidden = false;
  route();
}

// ----- Health -----
function health(s) {
  if (s.running) return ['running', 'run in progress'];
  if (s.status === 'paused') return ['excluded', 'paused'];
  if (s.status === 'halted' || s.last_error || (s.last_run && ['failed', 'halted'].includes(s.last_run.outcome)))
    return ['failing', s.status === 'halted' ? 'halted' : 'failing'];
  if ((s.ambiguous && s.ambiguous.length) || (s.attention && s.attention.length))
    return ['waiting', 'waiting for a decision'];
  if (!s.last_run) return ['waiting', 'not run yet'];
  return ['in-sync', 'in sync'];
}
function badge(s) {
  const [cls, text] = health(s);
  return el('span', { class: 'badge ' + cls, 'data-health': cls }, text);
}
function sum(counters, key) {
  return Object.values(counters || {}).reduce((n, c) => n + (c[key] || 0), 0);
}
const KEYS = ['created', 'updated', 'removed', 'linked', 'skipped', 'failed', 'parked', 'conflicts'];

// ----- Polling: a page's refresh runs every 2 s and redraws only when its data changed -----
function stopPolling() { if (state.timer) clearInterval(state.timer); state.timer = null; }
function poll(load, draw) {
  stopPolling();
  state.last = null;
  const tick = async () => {
    try {
      const data = await load();
      const key = JSON.stringify(data);
      if (key !== state.last) { state.last = key; draw(data); }
    } catch (e) {
      if (!(e instanceof SignedOut)) flash(e.message, true);
    }
  };
  tick();
  state.timer = setInterval(tick, 2000);
}

// ----- Pages -----
function route() {
  if (!state.csrf) return;
  const hash = location.hash || '#/';
  document.querySelectorAll('header nav a').forEach((a) => a.classList.remove('active'));
  const parts = hash.slice(2).split('/').map(decodeURIComponent);
  flash('');
  state.preview = null;
  if (parts[0] === 'sync' && parts[1]) return pageSync(parts[1], parts[2] ? Number(parts[2]) : null);
  if (parts[0] === 'attention') { $('nav-attention').classList.add('active'); return pageAttention(); }
  if (parts[0] === 'person') { $('nav-person').classList.add('active'); return pagePerson(parts[1], parts[2]); }
  if (parts[0] === 'connections') { $('nav-connections').classList.add('active'); return pageConnections(); }
  $('nav-overview').classList.add('active');
  return pageOverview();
}

function pageOverview() {
  poll(() => api('GET', '/v1/syncs'), (data) => {
    const rows = data.syncs.map((s) => el('tr', { 'data-sync': s.name },
      el('td', {}, el('a', { href: '#/sync/' + enc(s.name) }, s.name)),
      el('td', {}, badge(s)),
      el('td', {}, s.a + ' ⇄ ' + s.b, el('div', { class: 'muted' }, s.direction)),
      el('td', {}, s.last_run ? ('#' + s.last_run.id + ' ' + s.last_run.outcome + ', ' + when(s.last_run.started_at)) : '—'),
      el('td', {}, s.status === 'paused' ? 'paused' : when(s.next_run_at)),
      el('td', { class: 'num' }, s.links),
      el('td', { class: 'num' }, (s.ambiguous || []).length + (s.attention || []).length),
      el('td', {}, s.owner || 'this daemon'),
    ));
    show(
      el('h1', {}, 'Syncs'),
      table(['sync', 'health', 'apps', 'last run', 'next run', 'links', 'decisions', 'owner'], rows, { id: 'syncs' }),
    );
  });
}

function countersTable(counters, a, b) {
  const label = { 'a-to-b': 'to ' + b + ' (B)', 'b-to-a': 'to ' + a + ' (A)', both: 'both' };
  const rows = Object.entries(counters || {}).map(([dir, c]) =>
    el('tr', {}, el('td', {}, label[dir] || dir), KEYS.map((k) => el('td', { class: 'num' }, c[k] || 0))));
  return table(['direction', ...KEYS], rows);
}

function chart(runs) {
  const W = 760, H = 180, pad = 30, series = ['created', 'updated', 'removed', 'failed'];
  const shown = runs.slice(-30);
  const totals = shown.map((r) => series.map((k) => sum(r.run.counters, k)));
  const max = Math.max(1, ...totals.map((t) => t.reduce((x, y) => x + y, 0)));
  const bw = Math.min(40, Math.max(4, Math.floor((W - 2 * pad) / Math.max(shown.length, 1)) - 4));
  const colors = { created: '#12b76a', updated: '#2e90fa', removed: '#f79009', failed: '#f04438' };
  const g = svg('svg', { class: 'chart', id: 'runs-chart', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img' },
    svg('title', {}, 'created, updated, removed and failed per run'),
    svg('line', { x1: pad, y1: H - pad, x2: W - pad, y2: H - pad, stroke: '#98a2b3' }),
    svg('text', { x: 2, y: pad }, max));
  shown.forEach((r, i) => {
    let y = H - pad;
    const x = pad + 2 + i * (bw + 4);
    series.forEach((k, j) => {
      const h = Math.round((totals[i][j] / max) * (H - 2 * pad));
      if (h > 0) {
        y -= h;
        g.append(svg('rect', { x, y, width: bw, height: h, fill: colors[k] },
          svg('title', {}, `run ${r.run.id}: ${totals[i][j]} ${k}`)));
      }
    });
    g.append(svg('text', { x, y: H - pad + 14 }, r.run.id));
  });
  const legend = el('div', { class: 'legend' },
    series.map((k) => el('span', {}, el('i', { class: 'sw c-' + k }), k)));
  return [g, legend];
}

// The share (0 to 1) of an account's quota used as a run ended: the fullest of its
// request windows and of the app's own X-RateLimit count; null when nothing is known.
function quotaUsed(q) {
  if (!q) return null;
  const shares = (q.windows || []).filter((w) => w.limit > 0).map((w) => w.used / w.limit);
  if (q.app && q.app.limit) shares.push((q.app.limit - q.app.remaining) / q.app.limit);
  return shares.length ? Math.min(1, Math.max(...shares)) : null;
}
function runQuota(r) {
  const q = r.requests;
  if (!q) return null;
  const shares = [quotaUsed(q.a), quotaUsed(q.b)].filter((x) => x !== null);
  return shares.length ? Math.max(...shares) : null;
}
const pct = (f) => f === null ? '—' : Math.round(f * 100) + '%';

// Per run: the API requests it made on each side (stacked bars, left axis), and the
// fuller of the two accounts' quotas as it ended (dots, right axis, 0-100 %).
function requestsChart(runs, a, b) {
  const W = 760, H = 160, pad = 30;
  const shown = runs.slice(-30);
  if (!shown.some((r) => r.run.requests)) {
    return el('p', { class: 'muted', id: 'requests-chart' }, 'No run has recorded its API requests yet.');
  }
  const max = Math.max(1, ...shown.map((r) => r.run.requests ? r.run.requests.a.sent + r.run.requests.b.sent : 0));
  const bw = Math.min(40, Math.max(4, Math.floor((W - 2 * pad) / Math.max(shown.length, 1)) - 4));
  const inner = H - 2 * pad;
  const g = svg('svg', { class: 'chart', id: 'requests-chart', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img' },
    svg('title', {}, 'API requests per run on each side, and the accounts’ quota used as it ended'),
    svg('line', { x1: pad, y1: H - pad, x2: W - pad, y2: H - pad, stroke: '#98a2b3' }),
    svg('text', { x: 2, y: pad }, max),
    svg('text', { x: W - pad + 2, y: pad }, '100%'),
    svg('text', { x: W - pad + 2, y: H - pad }, '0%'));
  shown.forEach((r, i) => {
    const x = pad + 2 + i * (bw + 4);
    const q = r.run.requests;
    if (q) {
      let y = H - pad;
      [['a', a, '#7a5af8'], ['b', b, '#0ba5ec']].forEach(([side, conn, color]) => {
        const n = q[side].sent;
        const h = Math.round((n / max) * inner);
        if (h > 0) {
          y -= h;
          g.append(svg('rect', { x, y, width: bw, height: h, fill: color, 'data-side': side },
            svg('title', {}, `run ${r.run.id}: ${n} requests to ${conn} (${side.toUpperCase()}), quota ${pct(quotaUsed(q[side]))} used at its end`)));
        }
      });
      const share = runQuota(r.run);
      if (share !== null) {
        g.append(svg('circle', { cx: x + bw / 2, cy: H - pad - share * inner, r: 3, fill: '#f04438' },
          svg('title', {}, `run ${r.run.id}: quota ${pct(share)} used at its end`)));
      }
    }
    g.append(svg('text', { x, y: H - pad + 14 }, r.run.id));
  });
  const legend = el('div', { class: 'legend' },
    el('span', {}, el('i', { class: 'sw c-req-a' }), 'requests to ' + a + ' (A)'),
    el('span', {}, el('i', { class: 'sw c-req-b' }), 'requests to ' + b + ' (B)'),
    el('span', {}, el('i', { class: 'sw c-quota' }), 'quota used at the run’s end'));
  return [g, legend];
}
function requestsCell(r) {
  const q = r.requests;
  if (!q) return el('td', { class: 'num', 'data-requests': '' }, '—');
  return el('td', { class: 'num', 'data-requests': q.a.sent + ' ' + q.b.sent }, q.a.sent + ' / ' + q.b.sent);
}

function budgetsTable(budgets) {
  const rows = [];
  for (const b of budgets) {
    for (const w of b.windows) {
      const frac = w.requests ? Math.min(1, w.used / w.requests) : 0;
      rows.push(el('tr', {},
        el('td', { class: 'mono' }, b.account),
        el('td', {}, w.requests + ' per ' + w.period + ' s'),
        el('td', {}, svg('svg', { width: 200, height: 10, class: 'quota' },
          svg('rect', { x: 0, y: 0, width: 200, height: 10, fill: '#eaecf0' }),
          svg('rect', { x: 0, y: 0, width: Math.round(200 * frac), height: 10, fill: frac > 0.8 ? '#f04438' : '#2e90fa' })),
        ' ', w.used + ' used'),
        el('td', {}, b.app ? `${b.app.remaining} of ${b.app.limit} left${b.app.paused ? ' (paused until reset)' : ''}` : 'no X-RateLimit headers'),
        el('td', { class: 'num' }, b.requests),
        el('td', { class: 'num' }, b.rate_limited),
      ));
    }
  }
  return table(['account', 'window', 'used', 'X-RateLimit', 'requests', '429s'], rows, { id: 'budgets' });
}

function runEvents(log, a, b) {
  const rows = log.events.slice(0, 200).map((e) => el('tr', { 'data-action': e.action },
    el('td', {}, e.action), el('td', {}, e.direction), el('td', {}, e.entity),
    el('td', { class: 'mono' }, e.records.join(' ')), el('td', {}, e.reason)));
  return [
    el('h2', {}, 'Run #' + log.run.id + ' — ' + log.run.kind + ', ' + log.run.outcome + (log.run.message ? ': ' + log.run.message : '')),
    log.run.requests ? el('p', { id: 'run-requests' }, 'API requests: ' + log.run.requests.a.sent + ' to ' + a + ' (A, quota ' + pct(quotaUsed(log.run.requests.a)) + ' used at the end), ' +
      log.run.requests.b.sent + ' to ' + b + ' (B, ' + pct(quotaUsed(log.run.requests.b)) + ')') : null,
    countersTable(log.run.counters, a, b),
    table(['action', 'direction', 'entity', 'records', 'reason'], rows, { id: 'events' }),
    log.events.length > 200 ? el('p', { class: 'muted' }, (log.events.length - 200) + ' more events: tandem sync logs --run ' + log.run.id + ' --limit 0') : null,
  ];
}

function previewCard(p) {
  if (!p) return null;
  if (p.error) return el('div', { class: 'card error', id: 'preview' }, p.error);
  const ops = p.ops.slice(0, 100).map((o) => el('tr', {},
    el('td', {}, o.side.toUpperCase()), el('td', {}, o.kind), el('td', {}, o.entity),
    el('td', { class: 'mono' }, o.link), el('td', {}, o.reason)));
  const notes = (title, list) => list.length ? [el('h2', {}, title),
    table(['subject', 'detail'], list.slice(0, 50).map((n) => el('tr', {}, el('td', { class: 'mono' }, n.subject), el('td', {}, n.detail))))] : [];
  return el('div', { class: 'card', id: 'preview' },
    el('h2', {}, 'Preview of the next run (nothing written)'),
    p.outcome === 'paused' ? el('p', {}, 'The sync is paused: nothing was read.') : null,
    p.halted ? el('p', { class: 'error' }, 'The breaker would halt it: ' + p.halted + ' (' + p.withheld + ' writes withheld)') : null,
    el('p', { id: 'preview-summary' }, p.ops.length + ' writes, ' + p.links + ' new links, ' + p.skips.length + ' skipped, ' + p.conflicts.length + ' conflicts, ' + p.ambiguous.length + ' ambiguous'),
    ops.length ? table(['side', 'write', 'entity', 'link', 'reason'], ops) : null,
    notes('Conflicts', p.conflicts), notes('Ambiguous', p.ambiguous), notes('Skipped', p.skips));
}

function pageSync(name, runId) {
  const base = '/v1/syncs/' + enc(name);
  const act = async (button, method, path, done) => {
    button.disabled = true;
    try { const r = await api(method, path); flash(done(r)); state.last = null; } catch (e) { if (!(e instanceof SignedOut)) flash(e.message, true); }
    button.disabled = false;
  };
  const load = async () => {
    const [s, logs, budgets] = await Promise.all([api('GET', base), api('GET', base + '/logs?runs=30'), api('GET', '/v1/budgets')]);
    return { s, logs, budgets, preview: state.preview };
  };
  poll(load, ({ s, logs, budgets, preview }) => {
    const chosen = logs.runs.find((r) => r.run.id === runId) || logs.runs[logs.runs.length - 1];
    const runRows = logs.runs.slice().reverse().map((r) => el('tr', { 'data-run': r.run.id },
      el('td', {}, el('a', { href: '#/sync/' + enc(name) + '/' + r.run.id }, '#' + r.run.id)),
      el('td', {}, r.run.kind), el('td', {}, when(r.run.started_at)), el('td', {}, r.run.outcome),
      ['created', 'updated', 'removed', 'linked', 'failed', 'conflicts'].map((k) => el('td', { class: 'num' }, sum(r.run.counters, k))),
      requestsCell(r.run), el('td', { class: 'num' }, pct(runQuota(r.run)))));
    const paused = s.status === 'paused';
    const bPreview = el('button', { id: 'preview-button', onclick: async () => {
      bPreview.disabled = true;
      flash('Reading both sides…');
      try { state.preview = await api('POST', base + '/plan'); flash(''); } catch (e) { state.preview = { error: e.message }; flash(''); }
      state.last = null;
    } }, 'Preview next run');
    const bRun = el('button', { id: 'run-button', class: 'primary', onclick: () => act(bRun, 'POST', base + '/run', () => 'A run of ' + name + ' is scheduled') }, 'Run now');
    const bPause = paused
      ? el('button', { id: 'resume-button', onclick: () => act(bPause, 'POST', base + '/resume', () => name + ' resumed') }, 'Resume')
      : el('button', { id: 'pause-button', onclick: () => act(bPause, 'POST', base + '/pause', () => name + ' paused') }, 'Pause');
    show(
      el('h1', {}, name, ' ', badge(s)),
      el('p', { class: 'muted' }, s.a + ' ⇄ ' + s.b + ' (' + s.direction + '), every ' + s.interval_secs + ' s; ' + s.links + ' links, ' + s.retrying + ' retrying, ' + s.parked + ' parked',
        s.reason ? '; halted: ' + s.reason : '', s.last_error ? '; last error: ' + s.last_error : ''),
      el('div', { class: 'toolbar' }, bPreview, bRun, bPause, el('span', { id: 'status', 'data-status': s.status }, 'status: ' + s.status)),
      previewCard(preview),
      el('h2', {}, 'Runs'),
      chart(logs.runs),
      el('h2', {}, 'API requests per run, against the accounts\u2019 quota'),
      requestsChart(logs.runs, s.a, s.b),
      el('h2', {}, 'Account budgets now'),
      budgetsTable(budgets.budgets),
      table(['run', 'kind', 'started', 'outcome', 'created', 'updated', 'removed', 'linked', 'failed', 'conflicts', 'requests A / B', 'quota used'], runRows, { id: 'runs' }),
      chosen ? runEvents(chosen, s.a, s.b) : el('p', { class: 'muted' }, 'No run yet.'),
    );
  });
}

function pageAttention() {
  const resolve = async (button, sync, body) => {
    button.disabled = true;
    try {
      const r = await api('POST', '/v1/syncs/' + enc(sync) + '/resolve', body);
      flash(r.message);
      state.last = null;
    } catch (e) { if (!(e instanceof SignedOut)) flash(e.message, true); button.disabled = false; }
  };
  poll(() => api('GET', '/v1/syncs'), (data) => {
    const blocks = [el('h1', {}, 'Waiting for a decision')];
    let any = false;
    for (const s of data.syncs) {
      const rows = [];
      for (const p of s.ambiguous || []) {
        const actions = [];
        for (const a of p.a) for (const b of p.b) {
          const link = el('button', { class: 'primary', 'data-link': a + ' ' + b }, 'Link A ' + a + ' ⇄ B ' + b);
          link.addEventListener('click', () => resolve(link, s.name, { link: { a, b } }));
          const apart = el('button', { 'data-keep-apart': a + ' ' + b }, 'Keep apart');
          apart.addEventListener('click', () => resolve(apart, s.name, { 'keep-apart': { a, b } }));
          actions.push(el('div', {}, link, apart));
        }
        rows.push(el('tr', { 'data-kind': 'ambiguous', 'data-email': p.email }, el('td', {}, 'ambiguous match'), el('td', {}, p.email),
          el('td', {}, p.reason, el('div', { class: 'muted' }, 'A: ' + p.a.join(', ') + ' — B: ' + p.b.join(', '))), el('td', {}, actions)));
      }
      for (const t of s.attention || []) {
        const record = t.records[0];
        let actions;
        if (t.kind === 'conflict') {
          const ta = el('button', { 'data-take': 'a' }, 'Take A');
          ta.addEventListener('click', () => resolve(ta, s.name, { take: { record, field: t.field, side: 'a' } }));
          const tb = el('button', { 'data-take': 'b' }, 'Take B');
          tb.addEventListener('click', () => resolve(tb, s.name, { take: { record, field: t.field, side: 'b' } }));
          actions = [ta, tb];
        } else {
          const rel = el('button', { 'data-release': record }, 'Release');
          rel.addEventListener('click', () => resolve(rel, s.name, { release: { record } }));
          actions = [rel];
        }
        rows.push(el('tr', { 'data-kind': t.kind }, el('td', {}, t.kind === 'conflict' ? 'manual conflict on ' + t.field : 'quarantined link'),
          el('td', { class: 'mono' }, t.records.join(' ')), el('td', {}, t.detail), el('td', {}, actions)));
      }
      if (rows.length) {
        any = true;
        blocks.push(el('h2', {}, el('a', { href: '#/sync/' + enc(s.name) }, s.name)),
          table(['what', 'records', 'detail', 'decide'], rows, { 'data-sync': s.name }));
      }
    }
    if (!any) blocks.push(el('p', { id: 'nothing-waits' }, 'Nothing waits for a decision.'));
    show(...blocks);
  });
}

async function pagePerson(sync, q) {
  stopPolling();
  const syncs = (await api('GET', '/v1/syncs')).syncs;
  const select = el('select', { id: 'person-sync' }, syncs.map((s) => el('option', { value: s.name, selected: s.name === sync }, s.name)));
  const input = el('input', { id: 'person-q', placeholder: 'e-mail, or record id (a:ID, b:ID)', value: q || '' });
  const form = el('form', { id: 'person-form' }, select, ' ', input, ' ', el('button', { type: 'submit', class: 'primary' }, 'Find'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    location.hash = '#/person/' + enc(select.value) + '/' + enc(input.value.trim());
  });
  const out = el('div', { id: 'person-result' });
  show(el('h1', {}, 'Person'), form, out);
  if (!sync || !q) return;
  try {
    const p = await api('GET', '/v1/syncs/' + enc(sync) + '/person?q=' + enc(q));
    if (!p.links.length) { out.append(el('p', {}, 'No linked record matches ' + q + ' in ' + sync + '.')); return; }
    for (const l of p.links) {
      out.append(el('div', { class: 'card', 'data-link': l.link },
        el('h2', {}, l.records.join(' ⇄ '), ' ', el('span', { class: 'badge in-sync' }, l.state)),
        el('p', { class: 'muted' }, 'link ' + l.link + (l.email ? ', matched on ' + l.email : '')),
        table(['field', 'value both sides agreed on'], l.fields.map(([k, v]) => el('tr', {}, el('td', { class: 'mono' }, k), el('td', {}, typeof v === 'string' ? v : JSON.stringify(v))))),
        el('h2', {}, 'History'),
        table(['run', 'action', 'direction', 'why (which side won)'], l.history.map((e) => el('tr', { 'data-action': e.action },
          el('td', {}, el('a', { href: '#/sync/' + enc(sync) + '/' + e.run }, '#' + e.run)), el('td', {}, e.action), el('td', {}, e.direction), el('td', {}, e.reason))))));
    }
  } catch (e) { if (!(e instanceof SignedOut)) flash(e.message, true); }
}

async function pageConnections() {
  stopPolling();
  try {
    const c = await api('GET', '/v1/connections');
    const rows = c.connections.map((x) => el('tr', {},
      el('td', {}, x.name), el('td', {}, x.plugin + ' (' + x.source + ')'),
      el('td', {}, x.version || x.error || '—'), el('td', { class: 'mono' }, x.sha256 ? x.sha256.slice(0, 16) + '…' : '—'),
      el('td', { class: 'mono' }, x.origins.join(' ') + (x.loopback ? ' +loopback' : '') + (x.private_networks ? ' +private networks' : ''))));
    show(el('h1', {}, 'Connections'),
      table(['connection', 'plugin', 'version', 'sha256', 'granted origins'], rows, { id: 'connections' }),
      el('h2', {}, 'Account budgets and X-RateLimit state'), budgetsTable(c.budgets));
  } catch (e) { if (!(e instanceof SignedOut)) flash(e.message, true); }
}

// ----- Start -----
document.addEventListener('DOMContentLoaded', async () => {
  $('sign-in-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', signOut);
  window.addEventListener('hashchange', route);
  const resp = await fetch('/console/session', { credentials: 'same-origin' });
  if (resp.ok) { state.csrf = (await resp.json()).csrf; signedIn(); } else showSignIn();
});
