// UnCLIP gallery: one ES module, no framework, no build step. Talks to the native API (/api, see /openapi.json).

const $ = (s, root = document) => root.querySelector(s);
function el(tag, props = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k.includes('-') || !(k in e)) e.setAttribute(k, v === true ? '' : v);
    else e[k] = v;
  }
  for (const kid of kids.flat()) if (kid != null && kid !== false) e.append(kid);
  return e;
}
const KINDS = { 'text-to-image': 'text to image', variation: 'variation', interpolation: 'interpolation',
  'text-diff': 'nudge', source: 'source', edit: 'edit' };
const kindName = k => KINDS[k] || k;
const altOf = g => (g.prompt && g.prompt.trim()) || g.kind;
const isFinal = s => s === 'done' || s === 'failed' || s === 'cancelled';
const num = (input) => { const v = input.valueAsNumber; return Number.isFinite(v) ? v : undefined; };
const fmt = (x, d = 3) => typeof x === 'number' ? (Number.isInteger(x) ? String(x) : x.toFixed(d).replace(/0+$/, '').replace(/\.$/, '')) : String(x);
function secs(s) {
  if (s == null || !Number.isFinite(s)) return '';
  if (s < 1) return '<1 s';
  if (s < 60) return Math.round(s) + ' s';
  return Math.floor(s / 60) + ' min ' + Math.round(s % 60) + ' s';
}
const sleep = ms => new Promise(r => setTimeout(r, ms));

// ---------------------------------------------------------------- API

const KEY = 'unclip.key';
let apiKey = localStorage.getItem(KEY) || '';
class APIError extends Error {
  constructor(message, status, field) { super(message); this.status = status; this.field = field; }
}
let keyPrompt = null;
function askKey(refused) {
  if (keyPrompt) return keyPrompt;
  const dlg = $('#keydlg'), input = $('#key');
  $('#key-h').textContent = refused ? 'API key (the last one was refused)' : 'API key';
  input.value = '';
  keyPrompt = new Promise(resolve => {
    dlg.addEventListener('close', () => {
      const k = input.value.trim();
      keyPrompt = null;
      if (!k) { resolve(askKey(refused)); return; }
      apiKey = k; localStorage.setItem(KEY, k); resolve();
    }, { once: true });
  });
  dlg.showModal();
  return keyPrompt;
}
function authHeaders(h = {}) { if (apiKey) h.Authorization = 'Bearer ' + apiKey; return h; }

async function api(path, { method = 'GET', body } = {}) {
  for (;;) {
    const headers = authHeaders(body === undefined ? {} : { 'Content-Type': 'application/json' });
    let r;
    try {
      r = await fetch(path, { method, headers, credentials: 'omit', body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) { throw new APIError('The server cannot be reached (' + e.message + ')', 0); }
    if (r.status === 401) { const had = !!apiKey; apiKey = ''; localStorage.removeItem(KEY); await askKey(had); resetImages(); continue; }
    if (r.status === 204) return null;
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = null; }
    if (!r.ok) {
      const e = data && data.error;
      throw new APIError((e && e.message) || `${r.status} ${r.statusText || 'error'}`, r.status, e && e.field);
    }
    return data;
  }
}

// Images: plain URLs without a key; with one, <img> cannot send the header, so they come as blobs.
const blobs = new Map();
function blobURL(url) {
  let p = blobs.get(url);
  if (p) { blobs.delete(url); blobs.set(url, p); return p; }
  p = fetch(url, { headers: authHeaders(), credentials: 'omit' })
    .then(r => r.ok ? r.blob() : Promise.reject(new Error('HTTP ' + r.status)))
    .then(b => URL.createObjectURL(b));
  p.catch(() => blobs.delete(url));
  blobs.set(url, p);
  while (blobs.size > 800) {
    const [k, old] = blobs.entries().next().value;
    blobs.delete(k); old.then(u => URL.revokeObjectURL(u), () => {});
  }
  return p;
}
function setSrc(img, url) {
  if (!apiKey) { if (img.getAttribute('src') !== url) img.src = url; return; }
  img.dataset.src = url;
  blobURL(url).then(u => { if (img.dataset.src === url) img.src = u; }, () => {});
}
function resetImages() { for (const n of nodes.values()) n.remove(); nodes.clear(); render(); }
async function download(url, name) {
  const a = el('a', { download: name });
  a.href = apiKey ? await blobURL(url) : url;
  document.body.append(a); a.click(); a.remove();
}
function toBase64(blob) {
  return new Promise((resolve, reject) => {
    const fr = new FileReader();
    fr.onload = () => resolve(fr.result); fr.onerror = () => reject(fr.error);
    fr.readAsDataURL(blob);
  });
}

// ---------------------------------------------------------------- Messages

const toasts = $('#toasts');
function toast(message, error = false) {
  const t = el('div', { class: 'toast' + (error ? ' err' : ''), role: error ? 'alert' : 'status', text: message });
  toasts.append(t);
  while (toasts.childElementCount > 4) toasts.firstElementChild.remove();
  try { if (toasts.matches(':popover-open')) toasts.hidePopover(); toasts.showPopover(); } catch { /* no popover support */ }
  setTimeout(() => { t.remove(); if (!toasts.childElementCount) try { toasts.hidePopover(); } catch { /* closed */ } }, error ? 9000 : 4500);
}
function say(node, message, error = false) { node.textContent = message; node.classList.toggle('err', error); }

// ---------------------------------------------------------------- Models, samplers, the generate form

let models = [];
const form = $('#gen'), modelSel = $('#model'), genMsg = $('#gen-msg');
const FORM_KEY = 'unclip.form';
const saved = (() => { try { return JSON.parse(localStorage.getItem(FORM_KEY)) || {}; } catch { return {}; } })();

async function loadModels() {
  models = await api('/api/models');
  modelSel.replaceChildren(...models.map(m => el('option', { value: m.name, text: `${m.name} (${m.native_size}px)`, selected: m.default })));
  $('#f-model').append(...models.map(m => el('option', { value: m.name, text: m.name })));
  try {
    const samplers = await api('/sdapi/v1/samplers');
    const sel = $('#sampler');
    for (const s of samplers) {
      const aliases = s.aliases && s.aliases.length ? s.aliases : [s.name];
      for (const a of aliases) sel.append(el('option', { value: a, text: s.name + (/karras/.test(a) && !/karras/i.test(s.name) ? ' Karras' : '') }));
    }
  } catch { /* the model's sampler stays */ }
  restoreForm();
  modelChanged(false);
}
const currentModel = () => models.find(m => m.name === modelSel.value) || models[0];
function modelChanged(resize = true) {
  const m = currentModel();
  if (!m) return;
  if (resize || !$('#width').value) $('#width').value = m.native_size;
  if (resize || !$('#height').value) $('#height').value = m.native_size;
  $('#guidance').placeholder = m.guidance != null ? `default ${fmt(m.guidance)}` : 'default';
}
const FIELDS = ['prompt', 'negative', 'width', 'height', 'steps', 'guidance', 'sampler', 'seed', 'count', 'prior_candidates',
  'noise_level', 'model', 'prior_steps', 'prior_guidance', 'preview_every'];
function restoreForm() {
  for (const f of FIELDS) {
    const input = $('#' + f);
    if (saved[f] == null) continue;
    if (input.tagName === 'SELECT' && ![...input.options].some(o => o.value === saved[f])) continue;
    input.value = saved[f];
  }
}
function saveForm() {
  const o = {};
  for (const f of FIELDS) o[f] = $('#' + f).value;
  try { localStorage.setItem(FORM_KEY, JSON.stringify(o)); } catch { /* full or disabled */ }
}
function formBody() {
  const body = { kind: 'text-to-image', prompt: $('#prompt').value.trim() };
  const neg = $('#negative').value.trim();
  if (neg) body.negative_prompt = neg;
  for (const [id, key] of [['width', 'width'], ['height', 'height'], ['steps', 'steps'], ['guidance', 'guidance'], ['seed', 'seed'],
    ['count', 'count'], ['prior_candidates', 'prior_candidates'], ['noise_level', 'noise_level'], ['prior_steps', 'prior_steps'],
    ['prior_guidance', 'prior_guidance'], ['preview_every', 'preview_every']]) {
    const v = num($('#' + id));
    if (v !== undefined) body[key] = v;
  }
  if ($('#sampler').value) body.scheduler = $('#sampler').value;
  if (modelSel.value) body.model = modelSel.value;
  return body;
}
async function generate(ev) {
  ev && ev.preventDefault();
  for (const i of form.querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
  const body = formBody();
  const bad = [...form.querySelectorAll('input')].find(i => !i.validity.valid);
  if (bad) {
    say(genMsg, `${form.querySelector(`label[for="${bad.id}"]`).textContent}: ${bad.validationMessage}`, true);
    bad.setAttribute('aria-invalid', 'true'); bad.focus(); return;
  }
  if (!body.prompt) { say(genMsg, 'Write a prompt first.', true); $('#prompt').setAttribute('aria-invalid', 'true'); $('#prompt').focus(); return; }
  saveForm();
  const button = $('#generate');
  button.disabled = true;
  try {
    const job = await submit(body, { label: body.prompt, onDone: j => { showResults(j); say(genMsg, `Job #${j.id} done.`); } });
    say(genMsg, job.position ? `Queued as job #${job.id} (position ${job.position}).` : `Job #${job.id} started.`);
  } catch (e) {
    say(genMsg, e.message, true);
    const input = e.field && form.querySelector(`[name="${e.field}"]`);
    if (input) { input.setAttribute('aria-invalid', 'true'); input.focus(); }
  } finally { button.disabled = false; }
}
form.addEventListener('submit', generate);
form.addEventListener('keydown', e => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) generate(e); });
form.addEventListener('change', saveForm);
modelSel.addEventListener('change', () => modelChanged(true));
$('#dice').addEventListener('click', () => { $('#seed').value = Math.floor(Math.random() * 4294967296); saveForm(); });
$('#clear-seed').addEventListener('click', () => { $('#seed').value = ''; saveForm(); });
let lastSeed = null;
$('#last-seed').addEventListener('click', () => {
  const s = lastSeed ?? (G.items[0] && G.items[0].seed);
  if (s == null) toast('No picture yet to take a seed from.'); else { $('#seed').value = s; saveForm(); }
});

// ---------------------------------------------------------------- Jobs: queue, events, progress

const jobs = new Map();          // our jobs: id -> state
const queueEl = $('#queue'), bar = $('#progress'), barText = $('#progress-text'), previewImg = $('#preview');
let queueTimer = 0, topTimer = 0, lastLine = null, lastQueue = { running: [], queued: [] };

async function submit(body, opts = {}) {
  const job = await api('/api/jobs', { method: 'POST', body });
  jobs.set(job.id, { ...job, label: opts.label || '', from: opts.from ?? null, what: opts.what || job.kind, onDone: opts.onDone, images: [] });
  $('.run').classList.add('busy');
  watch();
  refreshQueue();
  return job;
}
// At most two event streams at once (browsers allow six connections per host); the queue poll covers the rest.
function watch() {
  const all = [...jobs.values()].filter(j => !isFinal(j.status));
  let open = all.filter(j => j.stream).length;
  for (const j of all.sort((a, b) => a.id - b.id)) {
    if (open >= 2) break;
    if (!j.stream) { follow(j); open++; }
  }
}
function follow(j) {
  if (apiKey || typeof EventSource === 'undefined') { j.stream = 'poll'; poll(j); return; }
  const es = new EventSource(`/api/jobs/${j.id}/events`);
  j.stream = es;
  const on = (name, fn) => es.addEventListener(name, ev => { let d; try { d = JSON.parse(ev.data); } catch { return; } fn(d); });
  on('state', d => { Object.assign(j, { status: d.status, position: d.position, progress: d.progress }); showJob(j); });
  on('queued', d => { j.status = 'queued'; j.position = d.position; showJob(j); });
  on('running', () => { j.status = 'running'; j.position = null; showJob(j); });
  on('progress', d => { j.status = 'running'; j.live = d; j.progress = d.progress; showJob(j); });
  on('preview', d => { if (d.png) { previewImg.src = 'data:image/png;base64,' + d.png; previewImg.hidden = false; } });
  on('image', d => { j.images.push(d.generation); clearTimeout(topTimer); topTimer = setTimeout(refreshTop, 250); });
  on('warning', d => toast(d.message || 'warning'));
  for (const f of ['done', 'failed', 'cancelled']) on(f, d => finish(j, d));
  on('interrupted', d => { toast(d.message || 'The server stopped.', true); es.close(); j.stream = null; });
  es.onerror = () => {
    if (isFinal(j.status)) return;
    es.close(); j.stream = null;
    setTimeout(() => checkJob(j), 1000);
  };
}
async function poll(j) {
  while (!isFinal(j.status)) {
    try {
      const d = await api(`/api/jobs/${j.id}`);
      if (isFinal(d.status)) { finish(j, d); return; }
      Object.assign(j, { status: d.status, position: d.position, progress: d.progress });
      if (d.status === 'running') j.live = { progress: d.progress, eta: d.eta };
      showJob(j);
    } catch (e) { if (e.status === 404) { jobs.delete(j.id); return; } }
    await sleep(500);
  }
}
async function checkJob(j) {
  if (isFinal(j.status) || (j.stream && j.stream !== 'poll' && j.stream.readyState !== 2)) return;
  try {
    const d = await api(`/api/jobs/${j.id}`);
    if (isFinal(d.status)) finish(j, d); else { j.stream = null; watch(); }
  } catch (e) { if (e.status === 404) jobs.delete(j.id); }
}
function finish(j, d) {
  if (isFinal(j.status)) return;
  Object.assign(j, { status: d.status, error: d.error, generations: d.generations || [] });
  if (j.stream && j.stream !== 'poll') j.stream.close();
  j.stream = null;
  const n = j.generations.length;
  lastLine = { value: d.status === 'done' ? 1 : j.progress || 0,
    text: `#${j.id} ${j.what}${j.label && j.what === 'text-to-image' ? ': ' + j.label : ''} · ${d.status === 'done' ? `100% · done, ${n} picture${n === 1 ? '' : 's'}` : d.status}` };
  if (d.status === 'done') {
    if (j.onDone) j.onDone(j); else showResults(j);
    refreshTop();
    refreshLineage();
  } else if (d.status === 'failed') toast(`Job #${j.id} (${j.what}) failed: ${d.error || 'unknown error'}`, true);
  else toast(`Job #${j.id} cancelled.`);
  showJob(j);
  renderDetailJobs();
  setTimeout(() => { if (!j.keep) jobs.delete(j.id); }, 60000);
  watch();
  refreshQueue();
}
function progressText(j) {
  const d = j.live;
  if (j.status === 'queued') return `#${j.id} ${j.what}: queued${j.position ? ' (position ' + j.position + ')' : ''}`;
  if (!d) return `#${j.id} ${j.what}: ${j.status}${j.progress ? ' ' + Math.round(j.progress * 100) + '%' : ''}`;
  // The job's ETA from its own pace since we started watching (the event's eta covers only the current stage).
  const p = d.progress || 0, now = performance.now();
  if (!j.p0 || p < j.p0.p) j.p0 = { t: now, p };
  const done = p - j.p0.p, elapsed = (now - j.p0.t) / 1000;
  const eta = done > 0.02 && elapsed > 0.3 ? elapsed * (1 - p) / done : d.eta;
  const parts = [`#${j.id} ${j.what}`, `${Math.round(p * 100)}%`];
  if (d.total && d.stage !== 'start') parts.push(`${d.stage} ${d.step}/${d.total}`);
  if (d.images > 1) parts.push(`image ${d.image + 1}/${d.images}`);
  if (eta != null) parts.push('ETA ' + secs(eta));
  return parts.join(' · ');
}
function showJob(j) {
  if (j.status === 'running' || (!isFinal(j.status) && !anyRunning())) {
    bar.value = j.status === 'running' ? (j.progress || 0) : 0;
    bar.textContent = Math.round((j.progress || 0) * 100) + '%';
    barText.textContent = progressText(j);
  }
  if (isFinal(j.status) && !anyRunning()) idle();
  const li = queueEl.querySelector(`li[data-job="${j.id}"] .st`);
  if (li) li.textContent = statusOf(j);
  renderDetailJobs();
}
const anyRunning = () => [...jobs.values()].some(j => j.status === 'running');
function idle() {
  const other = lastQueue.running[0];
  if (other && !jobs.has(other.id)) {
    bar.value = other.progress || 0;
    barText.textContent = `#${other.id} ${other.kind} (another client) · ${Math.round((other.progress || 0) * 100)}%` + (other.eta ? ' · ETA ' + secs(other.eta) : '');
    return;
  }
  const waiting = [...jobs.values()].some(j => !isFinal(j.status));
  bar.value = !waiting && lastLine ? lastLine.value : 0;
  bar.textContent = Math.round(bar.value * 100) + '%';
  barText.textContent = waiting ? 'Waiting…' : lastLine ? lastLine.text : 'Idle';
  previewImg.hidden = true;
}
const statusOf = j => j.status === 'running' ? `running ${Math.round((j.progress || 0) * 100)}%` : j.status === 'queued' ? `queued #${j.position ?? '?'}` : j.status;

async function refreshQueue() {
  clearTimeout(queueTimer);
  try {
    const q = await api('/api/queue');
    lastQueue = q;
    renderQueue(q);
    const present = new Set([...q.running, ...q.queued].map(j => j.id));
    for (const j of jobs.values()) {
      if (isFinal(j.status)) continue;
      if (!present.has(j.id) && !j.stream) checkJob(j);
      const r = q.running.find(x => x.id === j.id);
      if (r && !j.stream && j.status !== 'running') { j.status = 'running'; watch(); }
    }
    if (!anyRunning()) idle();
  } catch (e) { if (e.status !== 401) barText.textContent = e.message; }
  const busy = lastQueue.running.length || lastQueue.queued.length || [...jobs.values()].some(j => !isFinal(j.status));
  $('.run').classList.toggle('busy', !!busy);
  queueTimer = setTimeout(refreshQueue, document.hidden ? 15000 : busy ? 1500 : 6000);
}
function renderQueue(q) {
  const list = [...q.running, ...q.queued];
  const old = new Map([...queueEl.children].map(li => [li.dataset.job, li]));
  const items = list.map(job => {
    const mine = jobs.get(job.id);
    const j = mine && !isFinal(mine.status) ? { ...job, ...mine, status: job.status === 'running' ? 'running' : mine.status, position: job.position ?? mine.position } : job;
    let li = old.get(String(job.id));
    if (!li) {
      li = el('li', { 'data-job': job.id },
        el('span', { class: 'what' }), el('span', { class: 'st' }),
        el('button', { type: 'button', text: 'Cancel', title: `Cancel job #${job.id}`, onclick: () => cancel(job.id) }));
    }
    li.className = job.status;
    $('.what', li).textContent = `#${job.id} ${mine ? mine.what : job.kind}${mine && mine.label ? ': ' + mine.label : ''}`;
    $('.what', li).title = $('.what', li).textContent;
    $('.st', li).textContent = statusOf(j);
    return li;
  });
  items.forEach((li, i) => { if (queueEl.children[i] !== li) queueEl.insertBefore(li, queueEl.children[i] || null); });
  while (queueEl.children.length > items.length) queueEl.lastElementChild.remove();
}
async function cancel(id) {
  try {
    const j = await api(`/api/jobs/${id}`, { method: 'DELETE' });
    if (j && isFinal(j.status) && jobs.has(id)) finish(jobs.get(id), j);
    else if (!(jobs.has(id) && isFinal(jobs.get(id).status))) toast(`Cancelling job #${id}…`);
  } catch (e) { toast(e.message, true); }
  refreshQueue();
}
function thumbLink(id, alt, caption, size = 128) {
  const img = el('img', { alt, width: 64, height: 64, class: 'px' });
  setSrc(img, `/api/generations/${id}/thumbnail?size=${size}`);
  const a = el('a', { href: `#g=${id}`, class: 'tl', title: caption || `#${id}` }, caption ? el('figure', {}, img, el('figcaption', { text: caption })) : img);
  a.addEventListener('click', e => { if (e.ctrlKey || e.metaKey || e.shiftKey || e.button) return; e.preventDefault(); openDetail(id); });
  return a;
}
function showResults(j) {
  const ids = j.generations || [];
  if (!ids.length) return;
  $('#results').replaceChildren(...ids.map((id, i) => thumbLink(id, j.label || j.what, ids.length > 1 ? String(i + 1) : '')));
  previewImg.hidden = true;
  toast(`Job #${j.id} done: ${ids.length} picture${ids.length === 1 ? '' : 's'}.`);
}

// ---------------------------------------------------------------- Gallery (windowed: only the visible rows are in the DOM)

const gallery = $('#gallery'), gStatus = $('#gallery-status');
const G = { items: [], at: new Map(), cursor: null, more: true, loading: false, mode: 'gallery', scores: new Map(), gen: 0, fresh: new Set() };
const nodes = new Map();
const sel = new Set();
let anchor = null, cols = 4, cellW = 150, rowH = 158, pending = 0, lastScroll = 0, settleTimer = 0;
const GAP = 8, PAGE = 150, MAX_CELLS = 360;

function reindex() { G.at = new Map(G.items.map((g, i) => [g.id, i])); }
function layout() {
  const w = gallery.clientWidth || 600;
  const min = w < 520 ? 100 : 140;
  cols = Math.max(2, Math.floor((w + GAP) / (min + GAP)));
  cellW = Math.floor((w - GAP * (cols - 1)) / cols);
  rowH = cellW + GAP;
  render();
}
function schedule() { if (!pending) pending = requestAnimationFrame(() => { pending = 0; render(); }); }
function render() {
  const n = G.items.length, rows = Math.ceil(n / cols);
  gallery.style.height = Math.max(0, rows * rowH - GAP) + 'px';
  const top = gallery.getBoundingClientRect().top, vh = window.innerHeight;
  const visible = Math.ceil(vh / rowH) + 1;
  const buffer = Math.max(1, Math.min(8, Math.floor((MAX_CELLS / cols - visible) / 2)));
  const first = Math.max(0, Math.floor(-top / rowH) - buffer);
  const last = Math.min(rows - 1, Math.floor((vh - top) / rowH) + buffer);
  const lo = first * cols, hi = Math.min(n, (last + 1) * cols);
  const active = document.activeElement;
  for (const [id, node] of nodes) {
    const i = G.at.get(id);
    if (i === undefined || ((i < lo || i >= hi) && !node.contains(active))) {
      node.querySelector('img').removeAttribute('src'); // stops a load still under way
      node.remove(); nodes.delete(id);
    }
  }
  // While scrolling fast, pictures wait until the scrolling pauses: no thousands of loads for cells long gone.
  const settled = performance.now() - lastScroll > 120;
  if (!settled) { clearTimeout(settleTimer); settleTimer = setTimeout(schedule, 140); }
  const dpr = window.devicePixelRatio || 1;
  const size = [64, 128, 256, 512].find(s => s >= cellW * dpr) || 512;
  let prev = null;
  for (let i = lo; i < hi; i++) {
    const g = G.items[i];
    let node = nodes.get(g.id);
    if (!node) { node = cell(g); nodes.set(g.id, node); }
    place(node, i, g, settled ? size : node._size);
    const want = prev ? prev.nextSibling : gallery.firstChild;
    if (node !== want) gallery.insertBefore(node, want);
    prev = node;
  }
  // One tab stop for the whole grid (roving tabindex): the last focused picture, else the first one shown.
  const tabId = nodes.has(G.focusId) ? G.focusId : (G.items[lo] && G.items[lo].id);
  for (const [id, node] of nodes) node.firstChild.tabIndex = id === tabId ? 0 : -1;
  if (G.ready && G.mode === 'gallery' && G.more && !G.loading && hi >= n - cols * 3) loadMore();
}
function cell(g) {
  const img = el('img', { alt: altOf(g), decoding: 'async', draggable: false });
  const node = el('div', { class: 'cell', role: 'listitem', 'data-id': g.id },
    el('a', { class: 'open', href: `#g=${g.id}`, title: `#${g.id} · ${kindName(g.kind)}${g.prompt ? ' · ' + g.prompt : ''}` }, img),
    el('input', { type: 'checkbox', class: 'sel', 'aria-label': `Select #${g.id}`, tabIndex: -1 }),
    el('span', { class: 'cap', 'aria-hidden': 'true', text: g.prompt || kindName(g.kind) }));
  node._size = 0;
  if (G.fresh.has(g.id)) { node.classList.add('new'); G.fresh.delete(g.id); }
  return node;
}
function place(node, i, g, size) {
  const x = (i % cols) * (cellW + GAP), y = Math.floor(i / cols) * rowH;
  const key = `${x},${y},${cellW}`;
  if (node._key !== key) {
    node._key = key;
    node.style.transform = `translate(${x}px,${y}px)`;
    node.style.width = node.style.height = cellW + 'px';
  }
  node.setAttribute('aria-posinset', i + 1);
  node.setAttribute('aria-setsize', G.more ? -1 : G.items.length);
  const img = node.querySelector('img');
  if (size && node._size !== size) {
    node._size = size;
    setSrc(img, `${g.thumbnail}?size=${size}`);
    img.classList.toggle('px', Math.max(g.width, g.height) * 1.5 < cellW * (window.devicePixelRatio || 1));
  }
  const on = sel.has(g.id);
  node.classList.toggle('selected', on);
  const box = node.querySelector('.sel');
  if (box.checked !== on) box.checked = on;
  let badge = node.querySelector('.badge');
  if (g.starred && !badge) node.append(el('span', { class: 'badge', 'aria-hidden': 'true', title: 'starred', text: '★' }));
  else if (!g.starred && badge) badge.remove();
  const score = G.mode === 'search' ? G.scores.get(g.id) : undefined;
  let s = node.querySelector('.score');
  if (score !== undefined) {
    if (!s) { s = el('span', { class: 'score' }); node.insertBefore(s, node.querySelector('.cap')); }
    s.textContent = score.toFixed(3); s.title = 'similarity score';
  } else if (s) s.remove();
}
function refreshNode(id) {
  const node = nodes.get(id), i = G.at.get(id);
  if (node && i !== undefined) place(node, i, G.items[i], node._size);
}

function filterQuery() {
  const q = new URLSearchParams();
  const kinds = checkedKinds();
  if (kinds.length) q.set('kind', kinds.join(','));
  if ($('#f-model').value) q.set('model', $('#f-model').value);
  if ($('#f-since').value) q.set('since', $('#f-since').value);
  if ($('#f-starred').checked) q.set('starred', 'true');
  return q;
}
const checkedKinds = () => [...document.querySelectorAll('#kinds input:checked')].map(i => i.value);

function setItems(items) {
  G.items = items; reindex();
  for (const node of nodes.values()) node.remove();
  nodes.clear();
  render(); updateStatus();
}
function reset() {
  G.gen++; G.mode = 'gallery'; G.cursor = null; G.more = true; G.loading = false; G.scores.clear();
  $('#mode').hidden = true;
  setItems([]);
  loadMore();
}
async function loadMore() {
  if (G.loading || !G.more || G.mode !== 'gallery') return;
  G.loading = true;
  const gen = G.gen;
  updateStatus();
  try {
    const q = filterQuery();
    q.set('limit', PAGE);
    if (G.cursor) q.set('cursor', G.cursor);
    const page = await api('/api/generations?' + q);
    if (gen !== G.gen) return;
    const add = page.generations.filter(g => !G.at.has(g.id));
    const start = G.items.length;
    G.items.push(...add);
    add.forEach((g, i) => G.at.set(g.id, start + i));
    G.cursor = page.next_cursor; G.more = page.next_cursor != null;
  } catch (e) {
    if (gen !== G.gen) return;
    G.more = false; toast(e.message, true);
  } finally {
    if (gen === G.gen) { G.loading = false; updateStatus(); schedule(); if (detail.open) updateNav(); }
  }
}
async function refreshTop() {
  if (G.mode !== 'gallery') return;
  const gen = G.gen, top = G.items.length ? G.items[0].id : 0;
  try {
    const q = filterQuery(); q.set('limit', 100);
    const page = await api('/api/generations?' + q);
    if (gen !== G.gen) return;
    const fresh = page.generations.filter(g => g.id > top && !G.at.has(g.id));
    if (!fresh.length) return;
    if (fresh.length === page.generations.length && page.next_cursor && G.items.length) { reset(); return; }
    lastSeed = fresh[0].seed;
    for (const g of fresh) G.fresh.add(g.id);
    const y = window.scrollY, galleryTop = gallery.getBoundingClientRect().top + y;
    G.items.unshift(...fresh); reindex();
    if (y > galleryTop) window.scrollTo(0, y + Math.ceil(fresh.length / cols) * rowH);
    render(); updateStatus();
  } catch { /* the next job brings them */ }
}
function updateStatus() {
  const n = G.items.length;
  $('#count-text').textContent = G.mode === 'gallery' ? `${n.toLocaleString()}${G.more ? '+' : ''} picture${n === 1 ? '' : 's'}` : '';
  let text = '';
  if (G.loading) text = 'Loading…';
  else if (!n) text = G.mode === 'search' ? 'Nothing found.' : (filterQuery().toString() ? 'No pictures match these filters.' : 'No pictures yet: write a prompt and press Generate.');
  else if (G.mode === 'gallery' && !G.more && n > cols * 4) text = 'That is all of them.';
  gStatus.textContent = text;
}

// Selection: checkbox, ctrl/cmd-click toggles, shift-click selects a range, space on a focused picture toggles.
function select(id, how) {
  if (how === 'range' && anchor != null && G.at.has(anchor)) {
    const a = G.at.get(anchor), b = G.at.get(id);
    for (let i = Math.min(a, b); i <= Math.max(a, b); i++) sel.add(G.items[i].id);
  } else {
    if (sel.has(id)) sel.delete(id); else sel.add(id);
    anchor = id;
  }
  selectionChanged();
}
function selectionChanged() {
  for (const id of nodes.keys()) refreshNode(id);
  const n = sel.size;
  $('#bulk').hidden = !n || $('#detail').open;
  $('#bulk-text').textContent = `${n} selected`;
  gallery.classList.toggle('selecting', n > 0);
}
gallery.addEventListener('click', e => {
  const node = e.target.closest('.cell');
  if (!node) return;
  const id = Number(node.dataset.id);
  if (e.target.classList.contains('sel')) { e.preventDefault(); select(id, e.shiftKey ? 'range' : 'toggle'); return; }
  if (!e.target.closest('a.open')) return;
  if (e.button !== 0) return;
  e.preventDefault();
  if (pickFor) { pickTarget(id); return; }
  if (e.shiftKey) select(id, 'range');
  else if (e.ctrlKey || e.metaKey) select(id, 'toggle');
  else openDetail(id);
});
gallery.addEventListener('focusin', e => { const node = e.target.closest('.cell'); if (node) G.focusId = Number(node.dataset.id); });
gallery.addEventListener('keydown', e => {
  const node = e.target.closest('.cell');
  if (!node || e.altKey) return;
  const i = G.at.get(Number(node.dataset.id));
  const page = cols * Math.max(1, Math.floor(window.innerHeight / rowH) - 1);
  const step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -cols, ArrowDown: cols, PageUp: -page, PageDown: page, Home: -Infinity, End: Infinity }[e.key];
  if (e.key === ' ') { e.preventDefault(); select(Number(node.dataset.id), e.shiftKey ? 'range' : 'toggle'); return; }
  if (step === undefined || i === undefined) return;
  e.preventDefault();
  focusIndex(Math.max(0, Math.min(G.items.length - 1, i + step)));
});
function focusIndex(i) {
  const g = G.items[i];
  if (!g) return;
  const rowTop = gallery.getBoundingClientRect().top + window.scrollY + Math.floor(i / cols) * rowH;
  const headH = $('.top').offsetHeight;
  if (rowTop < window.scrollY + headH) window.scrollTo(0, rowTop - headH - GAP);
  else if (rowTop + rowH > window.scrollY + window.innerHeight) window.scrollTo(0, rowTop + rowH - window.innerHeight + GAP);
  render();
  const node = nodes.get(g.id);
  G.focusId = g.id;
  render();
  if (node) node.querySelector('a.open').focus({ preventScroll: true });
}

// Bulk actions
$('#bulk-clear').addEventListener('click', () => { sel.clear(); selectionChanged(); });
async function starMany(ids, on) {
  let failed = 0;
  await Promise.all(ids.map(async id => {
    try { await api(`/api/generations/${id}/star`, { method: on ? 'PUT' : 'DELETE' }); setStarred(id, on); } catch { failed++; }
  }));
  toast(`${on ? 'Starred' : 'Unstarred'} ${ids.length - failed} picture${ids.length - failed === 1 ? '' : 's'}${failed ? `; ${failed} failed` : ''}.`, failed > 0);
}
function setStarred(id, on) {
  const i = G.at.get(id);
  if (i !== undefined) { G.items[i].starred = on; refreshNode(id); }
  if (D.g && D.g.id === id) { D.g.starred = on; $('#d-star').setAttribute('aria-pressed', String(on)); }
}
$('#bulk-star').addEventListener('click', () => starMany([...sel], true));
$('#bulk-unstar').addEventListener('click', () => starMany([...sel], false));
$('#bulk-delete').addEventListener('click', async () => {
  const starred = id => { const i = G.at.get(id); return i !== undefined && G.items[i].starred; };
  const kept = [...sel].filter(starred), ids = [...sel].filter(id => !starred(id));
  if (!ids.length) { toast(`Refused: the ${kept.length === 1 ? 'selected picture is' : kept.length + ' selected pictures are'} starred (unstar first): ${kept.map(i => '#' + i).join(', ')}.`, true); return; }
  if (!confirm(`Delete ${ids.length} picture${ids.length === 1 ? '' : 's'}?${kept.length ? ` ${kept.length} starred will be kept.` : ''} This cannot be undone.`)) return;
  const failed = [], gone = [];
  for (const id of ids) {
    try { await api(`/api/generations/${id}`, { method: 'DELETE' }); gone.push(id); } catch (e) {
      if (e.status === 409) kept.push(id); else if (e.status === 404) gone.push(id); else failed.push(`#${id}: ${e.message}`);
    }
  }
  removeItems(gone);
  for (const id of gone) sel.delete(id);
  selectionChanged();
  let msg = `Deleted ${gone.length} picture${gone.length === 1 ? '' : 's'}.`;
  if (kept.length) msg += ` Refused ${kept.length} starred (unstar first): ${kept.map(i => '#' + i).join(', ')}.`;
  if (failed.length) msg += ' Failed: ' + failed.join('; ');
  toast(msg, kept.length + failed.length > 0);
});
$('#bulk-export').addEventListener('click', async () => {
  const ids = [...sel];
  for (const id of ids) {
    const i = G.at.get(id);
    try { await download(`/api/generations/${id}/image`, `unclip-${id}${i !== undefined && G.items[i].seed != null ? '-' + G.items[i].seed : ''}.png`); }
    catch (e) { toast(`#${id}: ${e.message}`, true); }
    await sleep(300);
  }
  toast(`Exported ${ids.length} picture${ids.length === 1 ? '' : 's'}.`);
});
function removeItems(ids) {
  if (!ids.length) return;
  const drop = new Set(ids);
  G.items = G.items.filter(g => !drop.has(g.id)); reindex();
  render(); updateStatus();
}

// Filters
for (const [k, label] of Object.entries(KINDS)) {
  $('#kinds').append(el('label', {}, el('input', { type: 'checkbox', value: k }), ' ' + label.charAt(0).toUpperCase() + label.slice(1)));
}
function filtersChanged() {
  const kinds = checkedKinds();
  $('#kinds-summary').textContent = kinds.length ? `Kinds: ${kinds.map(kindName).join(', ')}` : 'All kinds';
  const q = filterQuery();
  history.replaceState(null, '', (q.toString() ? '?' + q : location.pathname) + location.hash);
  if (G.mode === 'search' && G.lastSearch) runSearch(G.lastSearch.body, G.lastSearch.label); else reset();
}
for (const id of ['#kinds', '#f-model', '#f-since', '#f-starred']) $(id).addEventListener('change', filtersChanged);
document.addEventListener('click', e => { const m = $('#kinds-menu'); if (m.open && !m.contains(e.target)) m.open = false; });
function filtersFromURL() {
  const q = new URLSearchParams(location.search);
  const kinds = (q.get('kind') || '').split(',');
  for (const i of document.querySelectorAll('#kinds input')) i.checked = kinds.includes(i.value);
  if (q.get('model')) $('#f-model').value = q.get('model');
  if (q.get('since')) $('#f-since').value = q.get('since');
  $('#f-starred').checked = q.get('starred') === 'true';
  const k = checkedKinds();
  $('#kinds-summary').textContent = k.length ? `Kinds: ${k.map(kindName).join(', ')}` : 'All kinds';
}

// ---------------------------------------------------------------- Search (text, picture, like)

const searchBox = $('#search');
let searchTimer = 0;
async function runSearch(body, label, picture) {
  const gen = ++G.gen;
  G.mode = 'search'; G.loading = true; G.lastSearch = { body, label };
  $('#mode').hidden = false;
  $('#mode-text').textContent = 'Searching ' + label + '…';
  if (picture !== undefined) { $('#query-picture').hidden = !picture; if (picture) $('#query-picture').src = picture; }
  setItems([]);
  try {
    const kinds = checkedKinds();
    const r = await api('/api/search', { method: 'POST', body: { ...body, limit: 200, ...(kinds.length ? { kind: kinds } : {}) } });
    if (gen !== G.gen) return;
    const model = $('#f-model').value, since = $('#f-since').value, starred = $('#f-starred').checked;
    const results = r.results.filter(g => (!model || g.model === model) && (!starred || g.starred) && (!since || g.created_at.slice(0, 10) >= since));
    G.scores = new Map(results.map(g => [g.id, g.score]));
    G.loading = false;
    $('#mode-text').textContent = `${results.length} result${results.length === 1 ? '' : 's'} ${label}, best first`;
    setItems(results);
    const galleryTop = gallery.getBoundingClientRect().top + window.scrollY - $('.top').offsetHeight - 60;
    if (window.scrollY > galleryTop) window.scrollTo(0, Math.max(0, galleryTop));
  } catch (e) {
    if (gen !== G.gen) return;
    G.loading = false;
    $('#mode-text').textContent = `Search ${label} failed: ${e.message}`;
    toast(e.message, true); updateStatus();
  }
}
function searchText(text) {
  text = text.trim();
  if (!text) { if (G.mode === 'search') backToGallery(); return; }
  runSearch({ text }, `for “${text}”`, null);
}
function backToGallery() {
  searchBox.value = ''; $('#query-picture').hidden = true; G.lastSearch = null;
  reset();
}
$('#search-form').addEventListener('submit', e => { e.preventDefault(); clearTimeout(searchTimer); searchText(searchBox.value); });
searchBox.addEventListener('input', () => {
  clearTimeout(searchTimer);
  const v = searchBox.value.trim();
  if (!v) { if (G.mode === 'search' && G.lastSearch && G.lastSearch.body.text != null) backToGallery(); return; }
  if (v.length >= 3) searchTimer = setTimeout(() => searchText(v), 600);
});
$('#back').addEventListener('click', backToGallery);
function moreLike(id) { searchBox.value = ''; runSearch({ like: id }, `like #${id}`, null); }

async function searchPicture(file) {
  if (!file || !/^image\//.test(file.type)) { toast('That is not a picture.', true); return; }
  try {
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(1, 512 / Math.max(bitmap.width, bitmap.height));
    const canvas = el('canvas', { width: Math.max(1, Math.round(bitmap.width * scale)), height: Math.max(1, Math.round(bitmap.height * scale)) });
    canvas.getContext('2d').drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    const data = canvas.toDataURL('image/png');
    if ($('#detail').open) $('#detail').close();
    searchBox.value = '';
    runSearch({ image: data }, `like the picture ${file.name && file.name !== 'image.png' ? '“' + file.name + '”' : 'given'}`, data);
  } catch (e) { toast('Cannot read that picture: ' + e.message, true); }
}
$('#find-picture').addEventListener('click', () => $('#picture-file').click());
$('#picture-file').addEventListener('change', e => { searchPicture(e.target.files[0]); e.target.value = ''; });
let dragDepth = 0;
const hasFiles = e => e.dataTransfer && [...e.dataTransfer.types].includes('Files');
document.addEventListener('dragenter', e => { if (hasFiles(e)) { dragDepth++; $('#drop').hidden = false; } });
document.addEventListener('dragleave', e => { if (hasFiles(e) && --dragDepth <= 0) { dragDepth = 0; $('#drop').hidden = true; } });
document.addEventListener('dragover', e => { if (hasFiles(e)) e.preventDefault(); });
document.addEventListener('drop', e => {
  if (!hasFiles(e)) return;
  e.preventDefault(); dragDepth = 0; $('#drop').hidden = true;
  searchPicture([...e.dataTransfer.files].find(f => f.type.startsWith('image/')));
});
document.addEventListener('paste', e => {
  const file = [...(e.clipboardData ? e.clipboardData.files : [])].find(f => f.type.startsWith('image/'));
  if (file) { e.preventDefault(); searchPicture(file); }
});

// ---------------------------------------------------------------- Detail view

const detail = $('#detail'), dMsg = $('#d-msg');
const D = { id: null, g: null, token: 0 };
const ROLE_HEAD = { variation: 'Variation of', edit: 'Edit of', 'text-diff': 'Nudge of', interpolation: 'Interpolation between' };
const CHILD = { variation: 'variation', edit: 'edit', 'text-diff': 'nudge', interpolation: 'interpolation frame', 'text-to-image': 'text to image', source: 'source' };

function human(key) {
  const names = { samplerName: 'Sampler', schedulerName: 'Scheduler', modelName: 'Model', modelHash: 'Model hash', guidance: 'Guidance (CFG)',
    noiseLevel: 'Noise level', negativePrompt: 'Negative prompt', t: 'Position (t)', initSHA256: 'Init SHA-256', maskSHA256: 'Mask SHA-256', clipModel: 'CLIP model' };
  return names[key] || key.replace(/_/g, ' ').replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase().replace(/^./, c => c.toUpperCase());
}
function dl(target, pairs) {
  target.replaceChildren(...pairs.filter(([, v]) => v !== undefined && v !== null && v !== '').flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: String(v) })]));
}
async function openDetail(id) {
  const token = ++D.token;
  let g;
  try { g = await api(`/api/generations/${id}`); } catch (e) { toast(e.status === 404 ? `Picture #${id} no longer exists.` : e.message, true); return; }
  if (token !== D.token) return;
  D.id = id; D.g = g;
  history.replaceState(null, '', location.pathname + location.search + '#g=' + id);
  fillDetail(g);
  if (!detail.open) { detail.showModal(); $('#bulk').hidden = true; }
  if (!detail.contains(document.activeElement) || document.activeElement === detail) $('#d-close').focus();
}
function fillDetail(g) {
  const title = `#${g.id} · ${kindName(g.kind)}`;
  $('#d-title').textContent = title + (g.prompt ? ' · ' + g.prompt : '');
  const img = $('#d-img');
  img.alt = altOf(g);
  img.removeAttribute('src');
  setSrc(img, g.image);
  img.classList.toggle('px', Math.max(g.width, g.height) < 256);
  $('#d-full').href = apiKey ? '#g=' + g.id : g.image;
  $('#d-download').href = apiKey ? '#g=' + g.id : g.image;
  $('#d-download').download = `unclip-${g.id}${g.seed != null ? '-' + g.seed : ''}.png`;
  $('#d-star').setAttribute('aria-pressed', String(g.starred));
  $('#d-star').title = g.starred ? 'Starred: press to unstar' : 'Press to star';
  $('#d-prompt').textContent = g.prompt || '';
  $('#d-neg').textContent = g.negative_prompt ? 'Negative: ' + g.negative_prompt : '';
  const s = g.settings || {};
  dl($('#d-meta'), [['Seed', g.seed], ['Size', `${g.width}×${g.height}`], ['Model', g.model || s.modelName], ['Sampler', s.samplerName || s.scheduler],
    ['Steps', s.steps], ['Guidance (CFG)', s.guidance], ['Created', new Date(g.created_at).toLocaleString()],
    ['Time', g.seconds != null ? fmt(g.seconds, 2) + ' s' : null], ['Job', g.job != null ? '#' + g.job : null], ['SHA-256', g.sha256.slice(0, 16) + '…']]);
  dl($('#d-settings'), Object.entries(s).map(([k, v]) => [human(k), typeof v === 'object' ? JSON.stringify(v) : typeof v === 'number' ? fmt(v, 4) : v]));
  $('#d-params').textContent = g.parameters || '';
  // Prior candidates and their CLIP scores.
  const prior = $('#d-prior');
  prior.replaceChildren();
  if (g.prior && g.prior.scores && g.prior.scores.length) {
    const max = Math.max(...g.prior.scores), min = Math.min(...g.prior.scores, 0);
    prior.append(el('h3', { text: `Prior: ${g.prior.candidates} candidate${g.prior.candidates === 1 ? '' : 's'} (CLIP score)` }),
      el('div', { class: 'prior' }, g.prior.scores.map((sc, i) => el('div', { class: 'row' + (i === g.prior.chosen ? ' kept' : '') },
        el('span', { text: `Candidate ${i + 1}${i === g.prior.chosen ? ' · kept' : ''}` }),
        el('span', { class: 'bar', 'aria-hidden': 'true' }, el('i', { style: `width:${max > min ? Math.max(4, 100 * (sc - min) / (max - min)) : 100}%` })),
        el('span', { text: sc.toFixed(4) })))));
  }
  renderLineage(g);
  if (!$('#a-edit-prompt').dataset.for || $('#a-edit-prompt').dataset.for !== String(g.id)) {
    $('#a-edit-prompt').value = g.prompt || '';
    $('#a-edit-prompt').dataset.for = g.id;
    $('#a-nudge-from').value = '';
    $('#a-interp-to').value = '';
    $('#a-nudge-from').placeholder = g.prompt ? 'its prompt' : 'required: no prompt';
  }
  updateNav();
  say(dMsg, '');
  renderDetailJobs();
}
// Lineage: parents (by role) and children (by kind), as links to their own detail.
function renderLineage(g) {
  const lin = $('#d-lineage');
  lin.replaceChildren();
  if (g.parents.length) {
    const head = ROLE_HEAD[g.kind] || 'Made from';
    lin.append(el('h3', { text: head }), el('div', { class: 'lineage' }, g.parents.map(p => {
      const caption = g.kind === 'interpolation' ? `${p.role} #${p.id}` : `#${p.id}`;
      if (!p.exists) return el('span', { class: 'gone-tile', title: 'deleted' }, el('span', { class: 'gone', text: 'deleted' }), el('span', { text: caption }));
      const a = thumbLink(p.id, '', caption);
      a.setAttribute('aria-label', `${head} ${caption}`);
      return a;
    })));
  }
  if (g.children.length) {
    const box = el('div', { class: 'lineage' });
    lin.append(el('h3', { text: `Made from this (${g.children.length})` }), box);
    const token = D.token;
    api(`/api/generations?parent=${g.id}&limit=60`).then(page => {
      if (token !== D.token) return;
      box.replaceChildren(...page.generations.sort((a, b) => a.id - b.id).map(c => {
        const caption = `${CHILD[c.kind] || c.kind} #${c.id}`;
        return thumbLink(c.id, '', caption);
      }));
      if (g.children.length > page.generations.length) box.append(el('span', { class: 'muted', text: `+${g.children.length - page.generations.length} more` }));
    }, () => box.replaceChildren(...g.children.slice(0, 60).map(id => thumbLink(id, '', `#${id}`))));
  }
}
// After a job ends, the open picture may have new children (or a parent gone).
async function refreshLineage() {
  if (!detail.open || !D.g) return;
  const token = D.token, id = D.id;
  try {
    const g = await api(`/api/generations/${id}`);
    if (token === D.token && D.id === id) { D.g = g; renderLineage(g); }
  } catch { /* it was deleted: the next action says so */ }
}
function updateNav() {
  const i = G.at.get(D.id);
  $('#d-prev').disabled = !(i > 0);
  $('#d-next').disabled = i === undefined || (i >= G.items.length - 1 && !(G.mode === 'gallery' && G.more));
}
async function step(delta) {
  const i = G.at.get(D.id);
  if (i === undefined) return;
  let j = i + delta;
  if (j >= G.items.length && G.mode === 'gallery' && G.more) {
    loadMore();
    for (let k = 0; k < 100 && G.loading; k++) await sleep(50);
  }
  if (j < 0 || j >= G.items.length) return;
  openDetail(G.items[j].id);
}
$('#d-prev').addEventListener('click', () => step(-1));
$('#d-next').addEventListener('click', () => step(1));
$('#d-close').addEventListener('click', () => detail.close());
detail.addEventListener('click', e => { if (e.target === detail) detail.close(); });
// On the document, not the dialog: a button disabled under the focus (the first picture's ‹) leaves the focus on <body>.
document.addEventListener('keydown', e => {
  if (!detail.open || e.defaultPrevented || e.altKey || e.ctrlKey || e.metaKey || $('#keydlg').open) return;
  const t = e.target;
  if (t.matches('input:not([type=range]):not([type=checkbox]), textarea, select') || (t.type === 'range' && (e.key === 'ArrowLeft' || e.key === 'ArrowRight'))) return;
  if (e.key === 'ArrowLeft') { e.preventDefault(); step(-1); }
  else if (e.key === 'ArrowRight') { e.preventDefault(); step(1); }
});
detail.addEventListener('close', () => {
  D.token++;
  history.replaceState(null, '', location.pathname + location.search);
  $('#bulk').hidden = !sel.size;
  const id = D.id;
  if (G.at.has(id)) {
    focusIndex(G.at.get(id));
  }
});
window.addEventListener('hashchange', () => { const m = /^#g=(\d+)$/.exec(location.hash); if (m) openDetail(Number(m[1])); });

// Detail actions
$('#d-star').addEventListener('click', async () => {
  const g = D.g, on = !g.starred;
  setStarred(g.id, on); // at once: a Delete right after must already know
  try { await api(`/api/generations/${g.id}/star`, { method: on ? 'PUT' : 'DELETE' }); say(dMsg, on ? 'Starred.' : 'Unstarred.'); }
  catch (e) { setStarred(g.id, !on); say(dMsg, e.message, true); }
});
$('#d-copy').addEventListener('click', async () => {
  const text = D.g.parameters || '';
  try { await navigator.clipboard.writeText(text); } catch {
    const ta = el('textarea', { value: text, readOnly: true, style: 'position:fixed;opacity:0' });
    detail.append(ta); ta.select();
    let ok = false; try { ok = document.execCommand('copy'); } catch { ok = false; }
    ta.remove();
    if (!ok) { say(dMsg, 'The clipboard is not available: the parameters are under “All settings”.', true); $('#d-settings-box').open = true; return; }
  }
  say(dMsg, 'Parameters copied.');
});
$('#d-download').addEventListener('click', e => {
  if (!apiKey) return;
  e.preventDefault();
  download(D.g.image, $('#d-download').download).catch(err => say(dMsg, err.message, true));
});
$('#d-full').addEventListener('click', e => { if (apiKey) e.preventDefault(); });
$('#d-like').addEventListener('click', () => { const id = D.id; detail.close(); moreLike(id); });
$('#d-delete').addEventListener('click', async () => {
  const g = D.g;
  if (g.starred) { say(dMsg, `Refused: #${g.id} is starred. Unstar it before deleting it.`, true); return; }
  if (!confirm(`Delete picture #${g.id}? This cannot be undone.`)) return;
  try {
    await api(`/api/generations/${g.id}`, { method: 'DELETE' });
    const i = G.at.get(g.id);
    removeItems([g.id]); sel.delete(g.id); selectionChanged();
    toast(`Deleted #${g.id}.`);
    const next = i !== undefined ? (G.items[i] || G.items[i - 1]) : null;
    if (next) openDetail(next.id); else detail.close();
  } catch (e) { say(dMsg, e.status === 409 ? `Refused: ${e.message}` : e.message, true); }
});
$('#d-reuse').addEventListener('click', () => {
  const g = D.g, s = g.settings || {};
  const set = (id, v) => { if (v !== undefined && v !== null) $('#' + id).value = v; };
  set('prompt', g.prompt || ''); $('#negative').value = g.negative_prompt || s.negativePrompt || '';
  set('width', g.width); set('height', g.height); set('steps', s.steps); set('guidance', s.guidance); set('seed', g.seed);
  set('noise_level', s.noiseLevel); set('prior_candidates', s.priorCandidates); set('prior_steps', s.priorSteps); set('prior_guidance', s.priorGuidance);
  if (g.model && models.some(m => m.name === g.model)) modelSel.value = g.model;
  const sampler = $('#sampler'), opts = [...sampler.options];
  const match = opts.find(o => o.value && o.value === s.scheduler) || opts.find(o => o.value && o.text === s.samplerName);
  sampler.value = match ? match.value : '';
  saveForm(); detail.close();
  $('#prompt').focus();
  toast(`Settings of #${g.id} are in the Generate panel.`);
});
function detailJob(kind, body, what) {
  const from = D.id, every = num($('#preview_every'));
  if (every !== undefined && kind !== 'regenerate') body.preview_every = every;
  return submit(body, { from, what, label: `${what} of #${from}`, onDone: j => { showResults(j); renderDetailJobs(); } })
    .then(job => { say(dMsg, `${what}: job #${job.id} queued.`); const j = jobs.get(job.id); if (j) j.keep = true; renderDetailJobs(); },
      e => { say(dMsg, e.message, true); const f = e.field && { noise_level: '#a-var-noise', count: '#a-var-count', toward: '#a-nudge-toward', from: '#a-nudge-from', amount: '#a-nudge-amount', to: '#a-interp-to', frames: '#a-interp-frames', prompt: '#a-edit-prompt', strength: '#a-edit-strength' }[e.field]; if (f) $(f).focus(); });
}
$('#d-regen').addEventListener('click', () => detailJob('regenerate', { kind: 'regenerate', id: D.id }, 'Regenerate'));
$('#a-var').addEventListener('click', () => {
  const body = { kind: 'variation', id: D.id };
  const count = num($('#a-var-count')), noise = num($('#a-var-noise'));
  if (count !== undefined) body.count = count;
  if (noise !== undefined) body.noise_level = noise;
  detailJob('variation', body, 'Variations');
});
$('#a-nudge').addEventListener('click', () => {
  const toward = $('#a-nudge-toward').value.trim();
  if (!toward) { say(dMsg, 'Nudge: write the text to turn toward first.', true); $('#a-nudge-toward').focus(); return; }
  const body = { kind: 'nudge', id: D.id, toward, amount: Number($('#a-nudge-amount').value) };
  const from = $('#a-nudge-from').value.trim();
  if (from) body.from = from;
  else if (!(D.g.prompt || '').trim()) { say(dMsg, 'Nudge: this picture has no prompt; write the text to move away from.', true); $('#a-nudge-from').focus(); return; }
  detailJob('nudge', body, 'Nudge');
});
$('#a-interp').addEventListener('click', () => {
  let to = num($('#a-interp-to'));
  if (to === undefined) { const others = [...sel].filter(id => id !== D.id); if (others.length === 1) to = others[0]; }
  if (to === undefined) { startPick(D.id); return; }
  if (to === D.id) { say(dMsg, 'Interpolate: choose a second, different picture.', true); $('#a-interp-to').focus(); return; }
  interpolate(D.id, to);
});
function interpolate(from, to) {
  const body = { kind: 'interpolate', from, to };
  const frames = num($('#a-interp-frames'));
  if (frames !== undefined) body.frames = frames;
  $('#a-interp-to').value = to;
  detailJob('interpolate', body, 'Interpolate');
}
$('#a-edit').addEventListener('click', async () => {
  const prompt = $('#a-edit-prompt').value.trim();
  if (!prompt) { say(dMsg, 'Edit: write what the picture should become first.', true); $('#a-edit-prompt').focus(); return; }
  const g = D.g;
  say(dMsg, 'Edit: reading the picture…');
  let image;
  try {
    const r = await fetch(g.image, { headers: authHeaders(), credentials: 'omit' });
    if (!r.ok) throw new Error('HTTP ' + r.status);
    image = await toBase64(await r.blob());
  } catch (e) { say(dMsg, 'Cannot read the picture: ' + e.message, true); return; }
  if (D.g !== g) return;
  detailJob('edit', { kind: 'edit', prompt, image, strength: Number($('#a-edit-strength').value) }, 'Edit');
});
for (const [range, out] of [['#a-nudge-amount', '#a-nudge-out'], ['#a-edit-strength', '#a-edit-out']]) {
  const sync = () => { $(out).value = Number($(range).value).toFixed(2); };
  $(range).addEventListener('input', sync); sync();
}
function renderDetailJobs() {
  if (!detail.open) return;
  const box = $('#d-jobs');
  const list = [...jobs.values()].filter(j => j.from === D.id).slice(-4);
  const rows = list.map(j => {
    const text = `${j.label}: ${j.status === 'running' ? progressText(j) : j.status}${j.error ? ' — ' + j.error : ''}`;
    let row = box.querySelector(`[data-job="${j.id}"]`);
    // Rows are rebuilt only when their job's status changes, so a Cancel button stays put under the pointer.
    if (row && row.dataset.state === j.status) {
      row.firstChild.textContent = text;
      const bar = row.querySelector('progress');
      if (bar) bar.value = j.progress || 0;
      return row;
    }
    row = el('div', { class: 'job', 'data-job': j.id, 'data-state': j.status }, el('div', { text }));
    if (!isFinal(j.status)) row.append(el('progress', { max: 1, value: j.progress || 0, 'aria-label': `Job #${j.id} progress` }),
      el('button', { type: 'button', text: 'Cancel', title: `Cancel job #${j.id}`, onclick: () => cancel(j.id) }));
    if (j.status === 'done' && j.generations && j.generations.length) {
      if (j.what === 'Regenerate') row.append(el('div', { class: 'muted', text: 'Made again from its seed: identical to the recorded picture.' }));
      else row.append(el('div', { class: 'strip' }, j.generations.map((id, i) =>
        thumbLink(id, `${j.what} result ${i + 1}`, j.what === 'Interpolate' ? `frame ${i + 1}` : `#${id}`))));
    }
    return row;
  });
  for (const old of [...box.children]) if (!rows.includes(old)) old.remove();
  rows.forEach((row, i) => { if (box.children[i] !== row) box.insertBefore(row, box.children[i] || null); });
}

// Pick mode: choose the second picture of an interpolation in the gallery.
let pickFor = null;
function startPick(from) {
  pickFor = from;
  detail.close();
  $('#pick').hidden = false;
  document.body.classList.add('picking');
  toast('Choose the picture to interpolate to, or select it with its checkbox first.');
}
function stopPick() { pickFor = null; $('#pick').hidden = true; document.body.classList.remove('picking'); }
async function pickTarget(id) {
  const from = pickFor;
  stopPick();
  if (id === from) { toast('Choose a different picture.', true); startPick(from); return; }
  await openDetail(from);
  interpolate(from, id);
}
$('#pick-stop').addEventListener('click', stopPick);

// ---------------------------------------------------------------- Keyboard, scrolling, start

document.addEventListener('keydown', e => {
  if (e.key === 'Escape' && pickFor) { stopPick(); return; }
  if (e.key === '/' && !e.target.closest('input, textarea, select, [contenteditable]') && !detail.open) { e.preventDefault(); searchBox.focus(); }
});
window.addEventListener('scroll', () => { lastScroll = performance.now(); schedule(); }, { passive: true });
window.addEventListener('resize', schedule);
new ResizeObserver(() => layout()).observe(gallery);
new ResizeObserver(() => document.documentElement.style.setProperty('--head', $('.top').offsetHeight + 'px')).observe($('.top'));
document.addEventListener('visibilitychange', () => { if (!document.hidden) refreshQueue(); });

async function start() {
  layout();
  try { await loadModels(); } catch (e) { toast('Cannot load the models: ' + e.message, true); }
  filtersFromURL();
  G.ready = true;
  reset();
  refreshQueue();
  const m = /^#g=(\d+)$/.exec(location.hash);
  if (m) openDetail(Number(m[1]));
}
start();
