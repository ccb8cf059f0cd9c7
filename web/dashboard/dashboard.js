// labelbroker ops dashboard: polls GET /v1/vendors/scores and GET /v1/concentration with the key
// the operator pasted (kept in sessionStorage only) and renders vendor cards, share-over-time
// charts and market concentration. No framework, no build step; the page runs under a strict CSP,
// so everything is built with DOM calls and styled through classes and SVG attributes.

const KEY_STORAGE = 'labelbroker.dashboard.key';
const WINDOWS = ['24h', '7d', '30d', 'all'];
const INTERVALS = [5, 15, 60];
const REQUEST_TIMEOUT_MS = 10000;
const MAX_BACKOFF_MS = 60000;
const SVG_NS = 'http://www.w3.org/2000/svg';
const KEY_SHAPE = /^[\x21-\x7e]+$/; // header-safe: printable ASCII, no spaces

const $ = (selector, root = document) => root.querySelector(selector);

const ui = {
  error: $('#dashboard-error'),
  status: $('#dashboard-status'),
  keyPanel: $('#key-panel'),
  keyForm: $('#key-form'),
  keyInput: $('#key-input'),
  forget: $('#forget-key'),
  filters: $('#filters'),
  window: $('#filter-window'),
  domain: $('#filter-domain'),
  every: $('#filter-every'),
  dashboard: $('#dashboard'),
  market: $('#market'),
  cards: $('#vendor-cards'),
  charts: $('#share-charts'),
};

const state = {
  key: null,
  filters: { window: '7d', domain: '', every: 5 },
  cache: new Map(),        // url -> {etag, body}: the last 200 per URL, reused on 304
  timer: null,
  polling: false,          // a poll is in flight; polls never overlap
  repoll: false,           // filters changed during a poll: poll again as soon as it ends
  generation: 0,           // bumped on sign-out/filter change so late answers are dropped
  failures: 0,
  lastSuccess: null,       // Date of the last poll that got both answers
  rendered: { scores: null, concentration: null, filterKey: '' },
  knownDomains: [],
};

// ---------- formatting ----------

const nf = (min, max) => new Intl.NumberFormat('en-US', { minimumFractionDigits: min, maximumFractionDigits: max });
const fmt1 = nf(1, 1);
const fmt2 = nf(2, 2);
const fmt3 = nf(3, 3);
const fmtInt = nf(0, 0);
const fmtTime = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
const fmtHour = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', hour12: false });
const fmtDay = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const DASH = '—';

const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
const pct = (v) => (isNum(v) ? `${fmt1.format(v * 100)}%` : DASH);
const pctBare = (v) => fmt1.format(v * 100);
const count = (v) => (isNum(v) ? fmtInt.format(v) : DASH);

// USD amounts arrive as decimal strings ("0.088000"); amounts under a dollar get 4 decimals.
function usd(value) {
  if (value === null || value === undefined || value === '') return DASH;
  const n = Number(value);
  if (!Number.isFinite(n)) return DASH;
  const digits = Math.abs(n) < 1 && n !== 0 ? 4 : 2;
  return new Intl.NumberFormat('en-US', {
    style: 'currency', currency: 'USD', minimumFractionDigits: digits, maximumFractionDigits: digits,
  }).format(n);
}

function duration(ms) {
  if (!isNum(ms)) return DASH;
  if (ms < 10) return `${fmt1.format(ms)} ms`;
  if (ms < 1000) return `${fmtInt.format(ms)} ms`;
  if (ms < 10000) return `${fmt2.format(ms / 1000)} s`;
  if (ms < 120000) return `${fmt1.format(ms / 1000)} s`;
  if (ms < 2 * 3600000) return `${fmt1.format(ms / 60000)} min`;
  return `${fmt1.format(ms / 3600000)} h`;
}

// HHI: the brief specifies 0–1, older builds report points (0–10,000). A share-based HHI in
// points is at least 10,000 / vendors, so any value above 1 is in points.
function hhiFraction(v) {
  if (!isNum(v)) return null;
  return v > 1 ? v / 10000 : v;
}

function timeLabel(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? DASH : fmtTime.format(d);
}

// ---------- DOM helpers ----------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

function setAttrs(el, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') el.setAttribute('class', value);
    else if (name === 'text') el.textContent = value;
    else el.setAttribute(name, value === true ? '' : String(value));
  }
}

function setField(root, field, text) {
  const el = root.querySelector(`[data-field="${field}"]`);
  if (el) el.textContent = text;
  return el;
}

// ---------- vendor colours ----------

const colourIndex = new Map();
function colourClass(vendor) {
  if (!colourIndex.has(vendor)) colourIndex.set(vendor, colourIndex.size % 8);
  return `vc-${colourIndex.get(vendor)}`;
}

// ---------- filters in the URL hash ----------

function readHash() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  const window = params.get('window');
  const every = Number(params.get('every'));
  return {
    window: WINDOWS.includes(window) ? window : '7d',
    domain: params.get('domain') || '',
    every: INTERVALS.includes(every) ? every : 5,
  };
}

function writeHash() {
  const params = new URLSearchParams();
  params.set('window', state.filters.window);
  if (state.filters.domain) params.set('domain', state.filters.domain);
  if (state.filters.every !== 5) params.set('every', String(state.filters.every));
  history.replaceState(null, '', `#${params}`);
}

function syncFilterControls() {
  ui.window.value = state.filters.window;
  ui.every.value = String(state.filters.every);
  ensureDomainOption(state.filters.domain);
  ui.domain.value = state.filters.domain;
}

function ensureDomainOption(domain) {
  if (!domain) return;
  if (![...ui.domain.options].some((o) => o.value === domain)) {
    ui.domain.append(h('option', { value: domain, text: domain }));
  }
}

function updateDomainOptions(domains) {
  const names = [...new Set(domains)].sort();
  if (state.filters.domain && !names.includes(state.filters.domain)) names.push(state.filters.domain);
  const key = names.join('\n');
  if (key === state.knownDomains.join('\n')) return;
  state.knownDomains = names;
  ui.domain.replaceChildren(
    h('option', { value: '', text: 'All domains' }),
    ...names.map((d) => h('option', { value: d, text: d })),
  );
  ui.domain.value = state.filters.domain;
}

function onFiltersChanged() {
  state.filters = {
    window: ui.window.value,
    domain: ui.domain.value,
    every: Number(ui.every.value) || 5,
  };
  writeHash();
  state.generation += 1;
  pollSoon();
}

// ---------- messages ----------

function showError(kind, headline, detail) {
  ui.error.dataset.kind = kind;
  const children = [h('strong', { text: headline })];
  if (detail) children.push(h('span', { class: 'alert-detail', text: detail }));
  ui.error.replaceChildren(...children);
  ui.error.hidden = false;
}

function clearError() {
  if (ui.error.hidden) return;
  ui.error.hidden = true;
  ui.error.replaceChildren();
  delete ui.error.dataset.kind;
}

function setStatus(kind, text) {
  ui.status.dataset.state = kind;
  ui.status.textContent = text;
}

// ---------- key handling ----------

function showKeyForm() {
  ui.keyPanel.hidden = false;
  ui.dashboard.hidden = true;
  ui.filters.hidden = true;
  ui.forget.hidden = true;
  ui.keyInput.value = '';
  ui.keyInput.focus();
}

function showDashboard() {
  ui.keyPanel.hidden = true;
  ui.dashboard.hidden = false;
  ui.filters.hidden = false;
  ui.forget.hidden = false;
}

function signIn(key) {
  state.key = key;
  sessionStorage.setItem(KEY_STORAGE, key);
  state.cache.clear();
  state.failures = 0;
  state.generation += 1;
  setStatus('loading', 'Connecting…');
  pollSoon();
}

// Drop the key and everything fetched with it; the form comes back.
function signOut(status = 'Not connected') {
  state.key = null;
  sessionStorage.removeItem(KEY_STORAGE);
  state.cache.clear();
  state.generation += 1;
  state.lastSuccess = null;
  state.rendered = { scores: null, concentration: null, filterKey: '' };
  clearTimeout(state.timer);
  state.timer = null;
  ui.cards.replaceChildren();
  ui.charts.replaceChildren();
  setStatus('signed-out', status);
  showKeyForm();
}

// ---------- polling ----------

class HttpError extends Error {
  constructor(status, problem, retryAfterS) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.retryAfterS = retryAfterS;
  }
}

async function getJson(url, generation) {
  const headers = { Accept: 'application/json', Authorization: `Bearer ${state.key}` };
  const cached = state.cache.get(url);
  if (cached?.etag) headers['If-None-Match'] = cached.etag;
  const controller = new AbortController();
  const timeout = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
  let response;
  try {
    response = await fetch(url, { headers, cache: 'no-store', credentials: 'omit', signal: controller.signal });
  } finally {
    clearTimeout(timeout);
  }
  if (response.status === 304 && cached) return cached.body;
  if (!response.ok) {
    let problem = null;
    try { problem = await response.json(); } catch { /* not JSON: keep the status alone */ }
    const retryAfter = Number(response.headers.get('Retry-After'));
    throw new HttpError(response.status, problem, Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : null);
  }
  const body = await response.json();
  if (generation === state.generation) {
    state.cache.set(url, { etag: response.headers.get('ETag'), body });
  }
  return body;
}

function urls() {
  const scores = new URLSearchParams({ window: state.filters.window });
  if (state.filters.domain) scores.set('domain', state.filters.domain);
  const concentration = new URLSearchParams({ window: state.filters.window });
  return {
    scores: `/v1/vendors/scores?${scores}`,
    concentration: `/v1/concentration?${concentration}`,
  };
}

function pollSoon() {
  if (!state.key) return;
  if (state.polling) { state.repoll = true; return; }
  clearTimeout(state.timer);
  state.timer = null;
  poll();
}

function schedule(delayMs) {
  clearTimeout(state.timer);
  state.timer = null;
  if (!state.key) return;
  if (document.visibilityState === 'hidden') {
    setStatus('paused', 'Paused while the tab is hidden');
    return; // visibilitychange polls again
  }
  state.timer = setTimeout(poll, delayMs);
}

async function poll() {
  if (!state.key || state.polling) return;
  if (document.visibilityState === 'hidden') { schedule(0); return; }
  state.polling = true;
  state.repoll = false;
  const generation = state.generation;
  const filterKey = `${state.filters.window}|${state.filters.domain}`;
  const { scores: scoresUrl, concentration: concentrationUrl } = urls();
  let next = state.filters.every * 1000;
  try {
    const [scores, concentration] = await Promise.all([
      getJson(scoresUrl, generation),
      getJson(concentrationUrl, generation),
    ]);
    if (generation !== state.generation) return;
    state.failures = 0;
    state.lastSuccess = new Date();
    clearError();
    showDashboard();
    ui.dashboard.classList.remove('is-stale');
    render(scores, concentration, filterKey);
    setStatus('live', `Live · every ${state.filters.every} s`);
  } catch (err) {
    if (generation !== state.generation) return;
    next = handleFailure(err);
  } finally {
    state.polling = false;
    // A sign-in or filter change while this poll ran made its answer stale: poll again at once.
    if (state.key && next !== null) schedule(state.repoll || generation !== state.generation ? 0 : next);
  }
}

// Returns the delay before the next poll, or null to stop polling.
function handleFailure(err) {
  const detail = err instanceof HttpError ? err.problem?.detail : null;
  if (err instanceof HttpError && err.status === 401) {
    signOut('Key not accepted');
    showError('auth', 'The API key was not accepted (401). It is wrong, expired or revoked — paste a valid key.', detail);
    return null;
  }
  if (err instanceof HttpError && err.status === 403) {
    signOut('Key lacks permission');
    showError('auth', 'This key’s role cannot read vendor scores (403). Use a key with at least the viewer role.', detail);
    return null;
  }
  if (err instanceof HttpError && err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429) {
    // A request the broker rejects (say, a filter this build does not know): say so, keep polling.
    const title = err.problem?.title ? ` ${err.problem.title}` : '';
    showError('request', `The broker rejected the request (${err.status}${title}).`, detail);
    setStatus('error', 'Request rejected');
    return state.filters.every * 1000;
  }
  state.failures += 1;
  const base = state.filters.every * 1000;
  const backoff = Math.min(MAX_BACKOFF_MS, base * 2 ** Math.min(state.failures - 1, 6));
  const retryAfterMs = err instanceof HttpError && err.retryAfterS ? Math.min(err.retryAfterS * 1000, 5 * MAX_BACKOFF_MS) : 0;
  const delay = Math.max(retryAfterMs, Math.round(backoff * (0.8 + Math.random() * 0.4)));
  const last = state.lastSuccess ? `Last successful update at ${fmtTime.format(state.lastSuccess)}.` : 'No successful update yet.';
  const why = err instanceof HttpError ? `HTTP ${err.status}${detail ? `: ${detail}` : ''}` : (err?.name === 'AbortError' ? 'the request timed out' : 'no response');
  showError('retrying', 'The broker is unreachable — retrying.', `${last} Next attempt in ${Math.round(delay / 1000)} s (${why}).`);
  setStatus('retrying', `Retrying · last update ${state.lastSuccess ? fmtTime.format(state.lastSuccess) : DASH}`);
  ui.dashboard.classList.add('is-stale');
  return delay;
}

// ---------- rendering ----------

function render(scores, concentration, filterKey) {
  const domains = Array.isArray(concentration?.domains) ? concentration.domains : [];
  updateDomainOptions(domains.map((d) => d.domain).filter(Boolean));

  // Vendor order (and so colours) follows the server's list, then any vendor only seen in shares.
  const vendors = Array.isArray(scores?.vendors) ? scores.vendors : [];
  vendors.forEach((v) => colourClass(v.vendor));

  renderMarket(scores, concentration);
  const unchanged = state.rendered.scores === scores && state.rendered.concentration === concentration
    && state.rendered.filterKey === filterKey;
  if (unchanged) return; // 304s: same bodies, nothing to redraw (keeps a wall display still)
  state.rendered = { scores, concentration, filterKey };
  renderCards(scores, concentration);
  renderCharts(scores, concentration);
}

function selectedDomain(concentration) {
  if (!state.filters.domain) return null;
  return (concentration?.domains || []).find((d) => d.domain === state.filters.domain) || null;
}

function renderMarket(scores, concentration) {
  const root = ui.market;
  const overall = concentration?.overall || null;
  // With no routed items the server's HHI of 0 means "no data", not "perfectly spread".
  const routed = (overall ? overall.items : scores?.market?.items) || 0;
  const hhi = routed > 0 ? hhiFraction(overall ? overall.hhi : scores?.market?.hhi) : null;
  const eff = overall ? overall.effective_vendors : scores?.market?.effective_vendors;
  const vendorCount = (overall?.vendors || scores?.vendors || []).length;
  const active = (overall?.vendors || []).filter((v) => (v.items || 0) > 0).length;

  setField(root, 'hhi', isNum(hhi) ? fmt3.format(hhi) : DASH);
  setField(root, 'hhi-points', isNum(hhi) ? `${fmtInt.format(hhi * 10000)} points of 10,000` : 'no routed work yet');
  setField(root, 'effective-vendors', isNum(eff) && eff > 0 ? fmt2.format(eff) : DASH);
  setField(root, 'vendor-count', vendorCount ? `${active} of ${vendorCount} vendors got work` : DASH);
  setField(root, 'jobs-in-flight', count(scores?.jobs_in_flight));

  const domain = selectedDomain(concentration);
  const items = state.filters.domain ? domain?.items : overall?.items ?? scores?.market?.items;
  setField(root, 'items', count(items));
  setField(root, 'items-scope', `${state.filters.domain ? `${state.filters.domain}, ` : ''}${windowLabel()}`);

  setField(root, 'last-updated', state.lastSuccess ? fmtTime.format(state.lastSuccess) : DASH);
  setField(root, 'generated-at', scores?.generated_at ? `data as of ${timeLabel(scores.generated_at)}` : `every ${state.filters.every} s`);

  const body = root.querySelector('[data-field="domain-body"]');
  if (state.filters.domain) {
    setField(root, 'domain-title', `Domain · ${state.filters.domain}`);
    const dHhi = hhiFraction(domain?.hhi);
    body.replaceChildren(h('div', { class: 'domain-big' },
      h('div', {},
        h('p', { class: 'tile-value', 'data-field': 'domain-hhi', text: isNum(dHhi) ? fmt3.format(dHhi) : DASH }),
        h('p', { class: 'tile-sub', text: isNum(dHhi) ? `HHI · ${fmtInt.format(dHhi * 10000)} points` : 'HHI' })),
      h('div', {},
        h('p', { class: 'tile-value', 'data-field': 'domain-effective-vendors', text: isNum(domain?.effective_vendors) && domain.effective_vendors > 0 ? fmt2.format(domain.effective_vendors) : DASH }),
        h('p', { class: 'tile-sub', text: 'effective vendors' }))));
  } else {
    setField(root, 'domain-title', 'By domain');
    const rows = (concentration?.domains || []).map((d) => {
      const dh = hhiFraction(d.hhi);
      return h('tr', { 'data-domain': d.domain },
        h('td', { text: d.domain }),
        h('td', { text: isNum(dh) ? fmt3.format(dh) : DASH }),
        h('td', { text: isNum(d.effective_vendors) && d.effective_vendors > 0 ? fmt2.format(d.effective_vendors) : DASH }),
        h('td', { text: count(d.items) }));
    });
    body.replaceChildren(rows.length
      ? h('table', { class: 'domain-table' },
        h('thead', {}, h('tr', {}, h('th', { text: 'domain' }), h('th', { text: 'HHI' }), h('th', { text: 'eff.' }), h('th', { text: 'items' }))),
        h('tbody', {}, rows))
      : h('p', { class: 'tile-sub', text: 'No work routed in this window.' }));
  }
}

function windowLabel() {
  return { '24h': 'last 24 hours', '7d': 'last 7 days', '30d': 'last 30 days', all: 'all time' }[state.filters.window] || state.filters.window;
}

function capFor(concentration) {
  const scope = state.filters.domain ? selectedDomain(concentration) : concentration?.overall;
  const cap = scope?.cap ?? concentration?.overall?.cap;
  return isNum(cap) ? cap : null;
}

// A 0–100% bar; `range` draws [lower, upper] with a mean tick, `fill` draws 0..value.
function bar({ range = null, fill = null, mark = null, cap = null, label }) {
  const svg = s('svg', { class: 'bar', role: 'img', 'aria-label': label, preserveAspectRatio: 'none' });
  svg.append(s('rect', { class: 'bar-track', x: '0', y: '20%', width: '100%', height: '60%', rx: '3' }));
  const at = (v) => `${Math.max(0, Math.min(100, v * 100)).toFixed(2)}%`;
  if (range && isNum(range[0]) && isNum(range[1])) {
    svg.append(s('rect', { class: 'bar-range', x: at(range[0]), y: '20%', width: at(Math.max(0, range[1] - range[0])), height: '60%', rx: '3' }));
  }
  if (isNum(fill)) {
    svg.append(s('rect', { class: 'bar-fill', x: '0', y: '20%', width: at(fill), height: '60%', rx: '3' }));
  }
  if (isNum(mark)) svg.append(s('line', { class: 'bar-mean', x1: at(mark), x2: at(mark), y1: '0', y2: '100%' }));
  if (isNum(cap)) svg.append(s('line', { class: 'bar-cap', x1: at(cap), x2: at(cap), y1: '0', y2: '100%' }));
  return svg;
}

function field(name, label, value, ...extra) {
  return h('div', { class: 'field' },
    h('dt', { text: label }),
    h('dd', { class: 'field-value', 'data-field': name, text: value }),
    ...extra);
}

function renderCards(scores, concentration) {
  const vendors = Array.isArray(scores?.vendors) ? scores.vendors : [];
  const interval = isNum(scores?.credible_interval) ? Math.round(scores.credible_interval * 100) : 90;
  const cap = capFor(concentration);
  const note = [];
  note.push(windowLabel());
  if (state.filters.domain) note.push(`domain ${state.filters.domain}`);
  setField($('#vendors'), 'vendors-note', note.join(' · '));

  if (!vendors.length) {
    ui.cards.replaceChildren(h('p', { class: 'empty-note', text: 'The broker reports no vendors.' }));
    return;
  }
  ui.cards.replaceChildren(...vendors.map((v) => vendorCard(v, interval, cap)));
}

function vendorCard(v, interval, cap) {
  const gold = v.gold_accuracy || {};
  const hasGold = isNum(gold.mean);
  const goldText = hasGold
    ? `${pct(gold.mean)} (${isNum(gold.lower) ? pctBare(gold.lower) : DASH}–${isNum(gold.upper) ? pct(gold.upper) : DASH})`
    : DASH;
  const breaker = v.breaker?.state || null;
  const tags = [];
  if (v.enabled === false) tags.push(h('span', { class: 'badge badge-tag badge-disabled', text: 'disabled' }));
  if (v.draining === true) tags.push(h('span', { class: 'badge badge-tag badge-draining', text: 'draining' }));
  tags.push(h('span', {
    class: `badge ${breaker ? `badge-${breaker}` : ''}`.trim(),
    'data-field': 'breaker',
    'data-state': breaker || 'unknown',
    title: 'circuit breaker',
    text: breaker ? breaker.replace('_', '-') : `breaker ${DASH}`,
  }));

  const goldBlock = h('div', { class: 'field field-block' },
    h('dt', { text: `Gold accuracy · ${interval}% interval` }),
    h('dd', { 'data-field': 'gold-accuracy' },
      h('div', { class: 'gold-main' },
        h('span', { class: 'gold-mean num', text: hasGold ? pct(gold.mean) : DASH }),
        ' ',
        h('span', { class: 'gold-interval num', text: hasGold ? `(${isNum(gold.lower) ? pctBare(gold.lower) : DASH}–${isNum(gold.upper) ? pct(gold.upper) : DASH})` : '' })),
      bar({ range: [gold.lower, gold.upper], mark: gold.mean, label: `gold accuracy ${goldText}` }),
      ' ',
      h('span', { class: 'field-sub num', text: `n = ${count(gold.n)}${isNum(gold.correct) ? ` · ${count(gold.correct)} correct` : ''}${gold.n === 0 ? ' · prior only' : ''}` })));

  const shareBlock = h('div', { class: 'field field-block' },
    h('dt', { text: isNum(cap) ? `Share · cap ${pct(cap)}` : 'Share' }),
    h('dd', {},
      h('span', { class: 'field-value num', 'data-field': 'share', text: pct(v.share) }),
      bar({ fill: v.share, cap, label: `share ${pct(v.share)}` })));

  const costSub = h('span', { class: 'field-sub num', text: `per item ${usd(v.cost_per_item_usd)}` });
  const latencyText = v.latency_ms && (isNum(v.latency_ms.p50) || isNum(v.latency_ms.p95))
    ? `${duration(v.latency_ms.p50)} / ${duration(v.latency_ms.p95)}`
    : DASH;
  const latencySub = h('span', { class: 'field-sub num', text: `on time ${pct(v.on_time_rate)} · errors ${pct(v.error_rate)}` });
  const spendSub = h('span', { class: 'field-sub num', text: `${windowLabel()}: ${usd(v.spend_usd)}` });

  const foot = h('p', { class: 'card-foot' },
    `Dawid–Skene ${pct(v.ds_accuracy)} · ${count(v.judgments)} judgments · ${count(v.items)} items`);

  return h('article', { class: `vendor-card ${colourClass(v.vendor)}${v.enabled === false || v.draining ? ' is-off' : ''}`, 'data-vendor': v.vendor },
    h('header', { class: 'card-head' },
      h('h3', { class: 'card-name', text: v.vendor }),
      h('div', { class: 'card-tags' }, tags)),
    h('dl', { class: 'fields' },
      goldBlock,
      field('cost-per-correct', 'Cost per correct label', usd(v.cost_per_correct_label_usd), costSub),
      field('latency', 'Latency p50 / p95', latencyText, latencySub),
      shareBlock,
      field('spend-month', 'Spend this month', usd(v.spend_month_usd), spendSub)),
    foot);
}

// ---------- share charts ----------

const CHART = { w: 440, h: 200, left: 42, right: 58, top: 10, bottom: 26 };

function chartScopes(concentration) {
  const domains = Array.isArray(concentration?.domains) ? concentration.domains : [];
  if (state.filters.domain) {
    const d = domains.find((x) => x.domain === state.filters.domain);
    return [{ id: state.filters.domain, title: state.filters.domain, data: d || null, fallbackCap: concentration?.overall?.cap }];
  }
  const scopes = [];
  if (concentration?.overall) scopes.push({ id: 'all', title: 'All domains', data: concentration.overall, fallbackCap: null });
  for (const d of domains) scopes.push({ id: d.domain, title: d.domain, data: d, fallbackCap: concentration?.overall?.cap });
  return scopes;
}

function renderCharts(scores, concentration) {
  const bucket = concentration?.bucket;
  setField($('#shares'), 'shares-note', `${windowLabel()}${bucket ? ` · by ${bucket}` : ''} · latest point is now`);
  const scopes = chartScopes(concentration);
  if (!scopes.length) {
    ui.charts.replaceChildren(h('p', { class: 'empty-note', text: 'No concentration data yet.' }));
    return;
  }
  const order = (scores?.vendors || []).map((v) => v.vendor);
  const now = scores?.generated_at ? new Date(scores.generated_at) : new Date();
  ui.charts.replaceChildren(...scopes.map((scope) => shareFigure(scope, order, now, bucket)));
}

function shareFigure(scope, order, now, bucket) {
  const data = scope.data || {};
  const current = {};
  for (const v of data.vendors || []) current[v.vendor] = v.share;
  const vendorIds = [...order];
  for (const id of Object.keys(current)) if (!vendorIds.includes(id)) vendorIds.push(id);
  for (const b of data.series || []) for (const id of Object.keys(b.shares || {})) if (!vendorIds.includes(id)) vendorIds.push(id);

  // Server buckets, oldest first, then this poll's shares as the newest point.
  const points = (Array.isArray(data.series) ? data.series : [])
    .map((b) => ({ t: new Date(b.start).getTime(), items: b.items, shares: b.shares || {} }))
    .filter((p) => Number.isFinite(p.t))
    .sort((a, b) => a.t - b.t);
  const nowT = Math.max(now.getTime(), points.length ? points[points.length - 1].t : 0);
  if ((data.items || 0) > 0 || Object.keys(current).length) points.push({ t: nowT, items: data.items, shares: current, now: true });

  const cap = isNum(data.cap) ? data.cap : (isNum(scope.fallbackCap) ? scope.fallbackCap : null);
  const svg = shareChart(scope, points, vendorIds, cap, bucket);

  const legend = h('ul', { class: 'legend' }, vendorIds.map((id) => h('li', { class: colourClass(id) },
    h('span', { text: id }), h('span', { class: 'num', text: pct(current[id] ?? 0) }))));
  const meta = [`${count(data.items)} items`];
  const dh = hhiFraction(data.hhi);
  if (isNum(dh)) meta.push(`HHI ${fmt3.format(dh)}`);

  return h('figure', { class: 'chart' },
    h('figcaption', {}, h('span', { class: 'chart-title', text: scope.title }), h('span', { class: 'chart-meta', text: meta.join(' · ') })),
    svg,
    legend);
}

function shareChart(scope, points, vendorIds, cap, bucket) {
  const { w, h: H, left, right, top, bottom } = CHART;
  const plotW = w - left - right;
  const plotH = H - top - bottom;
  const y = (share) => top + plotH * (1 - Math.max(0, Math.min(1, share)));
  const t0 = points.length ? points[0].t : 0;
  const t1 = points.length ? points[points.length - 1].t : 1;
  const x = (t) => (points.length < 2 || t1 === t0 ? left + plotW / 2 : left + plotW * ((t - t0) / (t1 - t0)));

  const summary = vendorIds.map((id) => `${id} ${pct(points.length ? points[points.length - 1].shares[id] ?? 0 : null)}`).join(', ');
  const svg = s('svg', {
    class: 'share-chart', 'data-domain': scope.id, viewBox: `0 0 ${w} ${H}`, role: 'img',
    'aria-label': `Share of items over time, ${scope.title}: ${summary}${isNum(cap) ? `; cap ${pct(cap)}` : ''}`,
  });
  svg.append(s('title', { text: `Share over time · ${scope.title}` }));

  for (const tick of [0, 0.25, 0.5, 0.75, 1]) {
    svg.append(s('line', { class: tick === 0 ? 'axis' : 'grid', x1: left, x2: left + plotW, y1: y(tick), y2: y(tick) }));
    svg.append(s('text', { x: left - 6, y: y(tick) + 4, 'text-anchor': 'end', text: `${tick * 100}%` }));
  }

  if (!points.length) {
    svg.append(s('text', { class: 'empty', x: left + plotW / 2, y: top + plotH / 2, 'text-anchor': 'middle', text: 'no work routed yet' }));
  } else {
    const labels = [];
    const stamp = (t) => (bucket === 'hour' || t1 - t0 < 2 * 86400000 ? fmtHour.format(new Date(t)) : fmtDay.format(new Date(t)));
    if (points.length === 1) labels.push({ t: points[0].t, text: 'now', anchor: 'middle' });
    else {
      labels.push({ t: t0, text: stamp(t0), anchor: 'start' });
      if (points.length > 3) {
        const mid = points[Math.floor((points.length - 1) / 2)];
        labels.push({ t: mid.t, text: stamp(mid.t), anchor: 'middle' });
      }
      labels.push({ t: t1, text: 'now', anchor: 'end' });
    }
    for (const l of labels) svg.append(s('text', { x: x(l.t), y: H - 8, 'text-anchor': l.anchor, text: l.text }));

    for (const id of vendorIds) {
      const cls = colourClass(id);
      const coords = points.map((p) => [x(p.t), y(p.shares[id] ?? 0)]);
      if (coords.length > 1) {
        svg.append(s('polyline', {
          class: `series ${cls}`, 'data-vendor': id,
          points: coords.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(' '),
        }));
      }
      const markAt = coords.length === 1 ? coords : [coords[coords.length - 1]];
      for (const [px, py] of markAt) svg.append(s('circle', { class: `marker ${cls}`, 'data-vendor': id, cx: px.toFixed(1), cy: py.toFixed(1), r: 4 }));
    }
  }

  if (isNum(cap)) {
    svg.append(s('line', { class: 'cap-line', x1: left, x2: left + plotW, y1: y(cap), y2: y(cap) }));
    svg.append(s('text', { class: 'cap-label', x: left + plotW + 6, y: y(cap) + 4, text: `cap ${Math.round(cap * 1000) / 10}%` }));
  }
  return svg;
}

// ---------- wiring ----------

function start() {
  state.filters = readHash();
  syncFilterControls();
  writeHash();

  ui.keyForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const key = ui.keyInput.value.trim();
    if (!KEY_SHAPE.test(key)) {
      showError('auth', 'That does not look like an API key.', 'Paste the whole key, for example lbk_… with no spaces.');
      return;
    }
    clearError();
    ui.keyInput.value = '';
    signIn(key);
  });
  ui.forget.addEventListener('click', () => {
    clearError();
    signOut('Key forgotten');
  });
  for (const control of [ui.window, ui.domain, ui.every]) control.addEventListener('change', onFiltersChanged);
  ui.filters.addEventListener('submit', (event) => event.preventDefault());

  window.addEventListener('hashchange', () => {
    state.filters = readHash();
    syncFilterControls();
    state.generation += 1;
    pollSoon();
  });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') pollSoon();
    else { clearTimeout(state.timer); state.timer = null; if (state.key) setStatus('paused', 'Paused while the tab is hidden'); }
  });

  const saved = sessionStorage.getItem(KEY_STORAGE);
  // An older page version, or another tool, must never leave a key in localStorage.
  try { localStorage.removeItem(KEY_STORAGE); } catch { /* storage disabled */ }
  if (saved && KEY_SHAPE.test(saved)) signIn(saved);
  else showKeyForm();
}

start();
