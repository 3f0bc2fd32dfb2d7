// profstore web UI: a single page over the daemon's public HTTP API.
//
// Everything the page shows is named by its URL (see `State`): reload and
// Back restore the view. Names of functions, labels and files come from
// whoever pushed a profile, so they are only ever set as text
// (textContent, never innerHTML), and the page runs under a
// Content-Security-Policy that allows no inline script.
'use strict';

(function () {
  const ROW = 18;
  const MAX_NODES = 8192;
  const PRESETS = ['15m', '1h', '6h', '24h', '7d'];
  const COMPARE = ['1h', '24h', '7d'];
  const PALETTES = {
    default: { grown: [214, 39, 40], shrunk: [44, 160, 44] },
    cb: { grown: [230, 97, 1], shrunk: [33, 102, 172] },
  };
  const SERIES_COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd',
    '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

  // ---- small helpers -------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  /** An element with attributes and children; strings become text nodes. */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (k === 'text') e.textContent = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return e;
  }

  function svgEl(tag, attrs) {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }

  const UNITS = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 604800e3 };

  function parseDuration(s) {
    const m = /^(\d+)([smhdw])$/.exec(s);
    return m ? Number(m[1]) * UNITS[m[2]] : NaN;
  }

  /** ms since the epoch of `now`, `now-<duration>`, unix seconds or ms, or RFC 3339. */
  function parseTime(s, now) {
    if (s === undefined || s === null || s === '') return NaN;
    s = String(s).trim();
    if (s === 'now') return now;
    const rel = /^now-(\d+[smhdw])$/.exec(s);
    if (rel) return now - parseDuration(rel[1]);
    if (/^\d+(\.\d+)?$/.test(s)) {
      const n = Number(s);
      return n > 1e11 ? n : n * 1000;
    }
    return Date.parse(s);
  }

  /** RFC 3339 in UTC, to the second. */
  function iso(ms) {
    return new Date(ms).toISOString().replace('.000Z', 'Z');
  }

  function utc(ms) {
    return iso(ms).replace('T', ' ').replace('Z', ' UTC');
  }

  function fmtValue(v, unit) {
    const a = Math.abs(v);
    if (unit === 'nanoseconds') {
      if (a >= 1e9) return (v / 1e9).toFixed(2) + ' s';
      if (a >= 1e6) return (v / 1e6).toFixed(2) + ' ms';
      if (a >= 1e3) return (v / 1e3).toFixed(2) + ' µs';
      return v + ' ns';
    }
    if (unit === 'bytes') {
      if (a >= 2 ** 30) return (v / 2 ** 30).toFixed(2) + ' GiB';
      if (a >= 2 ** 20) return (v / 2 ** 20).toFixed(2) + ' MiB';
      if (a >= 2 ** 10) return (v / 2 ** 10).toFixed(2) + ' KiB';
      return v + ' B';
    }
    if (a >= 1e9) return (v / 1e9).toFixed(2) + 'G';
    if (a >= 1e6) return (v / 1e6).toFixed(2) + 'M';
    if (a >= 1e4) return (v / 1e3).toFixed(1) + 'k';
    return String(v);
  }

  function pct(v, total) {
    return total ? (100 * v / total).toFixed(2) + '%' : '0%';
  }

  async function api(path, params) {
    const q = new URLSearchParams(params || {});
    const r = await fetch(path + (q.toString() ? '?' + q : ''));
    let body;
    try {
      body = await r.json();
    } catch (e) {
      throw new Error(`${path}: HTTP ${r.status}`);
    }
    if (body.status !== 'success') throw new Error(body.error || `${path}: HTTP ${r.status}`);
    return body.data;
  }

  // ---- state and URL -------------------------------------------------------

  // Every field is a query-string parameter of the same name.
  const FIELDS = ['query', 'from', 'to', 'group_by', 'a_from', 'a_to', 'b_from', 'b_to',
    'query_b', 'view', 'mode', 'focus', 'search', 'fn', 'sort', 'diff', 'palette', 'brush'];
  const DEFAULTS = { from: 'now-1h', to: 'now', view: 'both', mode: 'icicle', diff: 'abs',
    palette: 'default', sort: '-flat', brush: 'a' };

  let state = readState();
  let now = Date.now();

  function readState() {
    const q = new URLSearchParams(location.search);
    const s = {};
    for (const f of FIELDS) s[f] = q.get(f) || DEFAULTS[f] || '';
    return s;
  }

  function stateQuery(s, freeze) {
    const q = new URLSearchParams();
    for (const f of FIELDS) {
      let v = s[f];
      if (freeze && (f === 'from' || f === 'to')) v = iso(parseTime(v, now));
      if (v && v !== DEFAULTS[f]) q.set(f, v);
    }
    return q.toString();
  }

  /** Changes the state, records it in the URL (a new history entry unless `replace`) and redraws. */
  function go(changes, opts) {
    Object.assign(state, changes);
    const url = location.pathname + '?' + stateQuery(state, false);
    if (opts && opts.replace) history.replaceState(null, '', url);
    else history.pushState(null, '', url);
    render(opts && opts.only);
  }

  window.addEventListener('popstate', () => {
    state = readState();
    syncControls();
    render();
  });

  // ---- the selector: profile type + label matchers -------------------------

  const METRIC = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

  /** Splits a query into its profile type and the rest of its matchers. */
  function splitQuery(q) {
    q = (q || '').trim();
    let type = '';
    let rest = q;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{.*\})?$/s.exec(q);
    if (m) {
      type = m[1];
      rest = m[2] || '{}';
    }
    const named = /__name__\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?\s*/.exec(rest);
    if (named) {
      type = named[1].replace(/\\(.)/g, '$1');
      rest = rest.replace(named[0], '').replace(/,\s*\}/, '}');
    }
    return { type, matchers: rest === '{}' ? '' : rest };
  }

  function joinQuery(type, matchers) {
    matchers = (matchers || '').trim();
    const inner = matchers.replace(/^\{/, '').replace(/\}$/, '').trim();
    if (!type) return matchers;
    if (METRIC.test(type)) return inner ? `${type}{${inner}}` : type;
    const name = `__name__="${type.replace(/["\\]/g, '\\$&')}"`;
    return inner ? `{${name}, ${inner}}` : `{${name}}`;
  }

  // ---- layout --------------------------------------------------------------

  let types = [];

  function buildApp() {
    const app = $('app');
    app.replaceChildren(
      el('form', { class: 'bar', id: 'query-form', onsubmit: (e) => { e.preventDefault(); runQuery(); } },
        el('select', { id: 'type', title: 'profile type', onchange: runQuery }),
        el('div', { class: 'selector-box' },
          el('input', { id: 'selector', autocomplete: 'off', spellcheck: 'false',
            placeholder: '{job="api"}', 'aria-label': 'label selector' }),
          el('ul', { id: 'suggest', class: 'hidden', role: 'listbox' })),
        el('button', { type: 'submit', id: 'run' }, 'Run')),
      el('div', { class: 'bar' },
        el('label', {}, 'Range'),
        ...PRESETS.map((p) => el('button', { type: 'button', class: 'preset', 'data-preset': p,
          onclick: () => go({ from: `now-${p}`, to: 'now', a_from: '', a_to: '', b_from: '', b_to: '' }) }, p)),
        el('input', { id: 'from', size: 22, title: 'from: now-1h, RFC 3339 or unix seconds' }),
        el('span', {}, '→'),
        el('input', { id: 'to', size: 22, title: 'to' }),
        el('button', { type: 'button', onclick: () => go({ from: $('from').value, to: $('to').value }) }, 'Apply'),
        el('span', { id: 'range-utc', class: 'muted' })),
      el('div', { class: 'bar groupby', id: 'groupby' }),
      el('div', { id: 'chart' },
        el('div', { id: 'readout' })),
      el('div', { id: 'legend' }),
      el('div', { class: 'bar' },
        el('label', {}, 'Drag selects'),
        el('button', { type: 'button', id: 'brush-a', onclick: () => go({ brush: 'a' }, { replace: true, only: 'controls' }) }, 'A'),
        el('button', { type: 'button', id: 'brush-b', onclick: () => go({ brush: 'b' }, { replace: true, only: 'controls' }) }, 'B (compare)'),
        el('label', {}, 'Compare with'),
        ...COMPARE.map((c) => el('button', { type: 'button', class: 'compare', 'data-compare': c, onclick: () => compareWith(c) }, `${c} earlier`)),
        el('button', { type: 'button', id: 'clear-sel', onclick: () => go({ a_from: '', a_to: '', b_from: '', b_to: '', query_b: '' }) }, 'Clear selection'),
        el('span', { id: 'sel-text', class: 'muted' })),
      el('div', { class: 'bar', id: 'b-bar' },
        el('label', {}, 'B selector'),
        el('input', { id: 'query-b', class: 'grow', placeholder: 'same as A', spellcheck: 'false' }),
        el('button', { type: 'button', onclick: () => go({ query_b: $('query-b').value.trim() }) }, 'Set')),
      el('div', { class: 'bar' },
        el('label', {}, 'View'),
        ...['both', 'flame', 'table', 'sandwich'].map((v) =>
          el('button', { type: 'button', class: 'view', 'data-view': v, onclick: () => go({ view: v }, { only: 'profile' }) }, v)),
        el('button', { type: 'button', id: 'mode', onclick: () => go({ mode: state.mode === 'flame' ? 'icicle' : 'flame' }, { only: 'profile' }) }),
        el('input', { id: 'search', placeholder: 'search (regex)', spellcheck: 'false',
          oninput: debounce(() => go({ search: $('search').value }, { replace: true, only: 'profile' }), 250) }),
        el('span', { id: 'search-share', class: 'muted' }),
        el('span', { id: 'diff-controls' })),
      el('div', { id: 'profile-status', class: 'note' }),
      el('div', { id: 'breadcrumb' }),
      el('div', { class: 'panes' },
        el('div', { id: 'flame-pane' }),
        el('div', { id: 'table-pane' })),
      el('div', { id: 'tooltip' }),
      el('h3', {}, 'Download this view'),
      el('div', { class: 'downloads', id: 'downloads' }),
      el('div', { class: 'bar' },
        el('input', { id: 'pprof-cmd', readonly: true, 'aria-label': 'go tool pprof command' })),
      el('div', { class: 'bar' },
        el('button', { type: 'button', id: 'copy-link', onclick: copyLink }, 'Copy link'),
        el('input', { id: 'link', class: 'grow', readonly: true, 'aria-label': 'link to this view' })),
    );
    setupSuggest();
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && state.focus) go({ focus: '' }, { only: 'profile' });
    });
  }

  function debounce(f, ms) {
    let t;
    return (...a) => { clearTimeout(t); t = setTimeout(() => f(...a), ms); };
  }

  function runQuery() {
    const q = joinQuery($('type').value, $('selector').value);
    hideSuggest();
    go({ query: q, focus: '', fn: '' });
  }

  function compareWith(c) {
    const sel = selection();
    const [s, e] = sel.b || sel.a || sel.range;
    const d = parseDuration(c);
    go({ b_from: iso(s), b_to: iso(e), a_from: iso(s - d), a_to: iso(e - d) });
  }

  async function copyLink() {
    const url = location.origin + location.pathname + '?' + stateQuery(state, true);
    $('link').value = url;
    try {
      await navigator.clipboard.writeText(url);
      $('copy-link').textContent = 'Copied';
    } catch (e) {
      $('link').select();
    }
  }

  /** Puts the state into the controls. */
  function syncControls() {
    const { type, matchers } = splitQuery(state.query);
    if (type && ![...$('type').options].some((o) => o.value === type)) {
      $('type').append(el('option', { value: type }, type));
    }
    $('type').value = type;
    $('selector').value = matchers;
    $('from').value = state.from;
    $('to').value = state.to;
    $('query-b').value = state.query_b;
    $('search').value = state.search;
    $('mode').textContent = state.mode === 'flame' ? 'flame ↑' : 'icicle ↓';
    for (const b of document.querySelectorAll('button.view')) b.classList.toggle('on', b.dataset.view === state.view);
    for (const b of document.querySelectorAll('button.preset')) b.classList.toggle('on', state.from === `now-${b.dataset.preset}` && state.to === 'now');
    $('brush-a').classList.toggle('on', state.brush !== 'b');
    $('brush-b').classList.toggle('on', state.brush === 'b');
    const f = parseTime(state.from, now);
    const t = parseTime(state.to, now);
    $('range-utc').textContent = isNaN(f) || isNaN(t) ? 'invalid time' : `${utc(f)} → ${utc(t)}`;
  }

  async function loadTypes() {
    try {
      types = await api('/api/v1/profile_types');
    } catch (e) {
      types = [];
    }
    const sel = $('type');
    sel.replaceChildren(el('option', { value: '' }, '— profile type —'));
    const groups = new Map();
    for (const t of types) {
      if (!groups.has(t.name)) groups.set(t.name, []);
      groups.get(t.name).push(t);
    }
    for (const [name, list] of groups) {
      const g = el('optgroup', { label: name });
      for (const t of list) {
        g.append(el('option', { value: t.id, title: t.id },
          `${t.sample_type} (${t.sample_unit})${t.delta ? ' · delta' : ''}`));
      }
      sel.append(g);
    }
    if (!state.query && types.length) {
      state.query = joinQuery(types[0].id, '');
      history.replaceState(null, '', location.pathname + '?' + stateQuery(state, false));
    }
  }

  // ---- autocompletion -------------------------------------------------------

  const cache = new Map();
  let suggestions = [];
  let active = -1;

  async function cached(key, f) {
    if (!cache.has(key)) cache.set(key, f().catch(() => []));
    return cache.get(key);
  }

  function typeMatch() {
    const type = $('type').value;
    return type ? { 'match[]': joinQuery(type, '') } : {};
  }

  function setupSuggest() {
    const input = $('selector');
    const update = debounce(suggest, 120);
    input.addEventListener('input', update);
    input.addEventListener('focus', update);
    input.addEventListener('click', update);
    input.addEventListener('keydown', (e) => {
      const list = $('suggest');
      if (list.classList.contains('hidden') || !suggestions.length) return;
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        active = (active + (e.key === 'ArrowDown' ? 1 : suggestions.length - 1)) % suggestions.length;
        drawSuggest();
      } else if ((e.key === 'Enter' || e.key === 'Tab') && active >= 0) {
        e.preventDefault();
        accept(suggestions[active]);
      } else if (e.key === 'Escape') {
        hideSuggest();
      }
    });
    input.addEventListener('blur', () => setTimeout(() => {
      if (document.activeElement !== input) hideSuggest();
    }, 200));
  }

  function hideSuggest() {
    suggestSeq++;
    $('suggest').classList.add('hidden');
    suggestions = [];
  }

  /** What the text before the cursor is completing: a label name or a value. */
  function context(text) {
    const v = /([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)$/.exec(text);
    if (v) return { kind: 'value', label: v[1], prefix: v[3], start: text.length - v[3].length };
    const n = /(^|[{,])\s*([a-zA-Z_][a-zA-Z0-9_]*)?$/.exec(text);
    if (n) {
      const p = n[2] || '';
      return { kind: 'name', prefix: p, start: text.length - p.length };
    }
    return null;
  }

  let suggestSeq = 0;

  async function suggest() {
    const seq = ++suggestSeq;
    const input = $('selector');
    const text = input.value.slice(0, input.selectionStart);
    const ctx = context(text);
    if (!ctx) return hideSuggest();
    let items;
    if (ctx.kind === 'name') {
      const names = await cached('names ' + $('type').value, () => api('/api/v1/labels', typeMatch()));
      items = names.filter((n) => n !== '__name__' && n.startsWith(ctx.prefix));
    } else {
      const values = await cached(`values ${$('type').value} ${ctx.label}`,
        () => api(`/api/v1/label/${encodeURIComponent(ctx.label)}/values`, typeMatch()));
      items = values.filter((v) => v.startsWith(ctx.prefix));
    }
    // A later keystroke asked again meanwhile: its answer wins.
    if (seq !== suggestSeq || document.activeElement !== input) return;
    suggestions = items.slice(0, 200).map((text) => ({ text, ctx }));
    active = suggestions.length ? 0 : -1;
    drawSuggest();
  }

  function drawSuggest() {
    const list = $('suggest');
    list.replaceChildren(...suggestions.map((s, i) =>
      el('li', { class: i === active ? 'active' : '', role: 'option',
        onmousedown: (e) => { e.preventDefault(); accept(s); } }, s.text)));
    list.classList.toggle('hidden', !suggestions.length);
  }

  function accept(s) {
    const input = $('selector');
    const cur = input.selectionStart;
    const before = input.value.slice(0, s.ctx.start);
    let after = input.value.slice(cur);
    let ins;
    if (s.ctx.kind === 'name') {
      ins = (before.includes('{') ? '' : '{') + `${s.text}="`;
    } else {
      ins = s.text.replace(/["\\]/g, '\\$&') + '"';
      if (after.startsWith('"')) after = after.slice(1);
    }
    input.value = before + ins + after;
    const pos = before.length + ins.length;
    input.setSelectionRange(pos, pos);
    input.focus();
    hideSuggest();
    if (s.ctx.kind === 'name') suggest();
  }

  // ---- group by and the totals chart ---------------------------------------

  async function drawGroupBy() {
    const box = $('groupby');
    const chosen = new Set(state.group_by ? state.group_by.split(',') : []);
    let names = [];
    if (state.query) {
      names = await cached('names ' + splitQuery(state.query).type, () => api('/api/v1/labels', { 'match[]': state.query }));
    }
    box.replaceChildren(el('label', {}, 'Group by'),
      ...names.filter((n) => n !== '__name__').map((n) => el('label', {},
        el('input', { type: 'checkbox', value: n, checked: chosen.has(n), onchange: () => {
          const on = [...box.querySelectorAll('input:checked')].map((i) => i.value);
          go({ group_by: on.join(',') });
        } }), n)));
  }

  function selection() {
    const f = parseTime(state.from, now);
    const t = parseTime(state.to, now);
    const range = [f, t];
    const pair = (a, b) => (state[a] && state[b] ? [parseTime(state[a], now), parseTime(state[b], now)] : null);
    return { range, a: pair('a_from', 'a_to'), b: pair('b_from', 'b_to') };
  }

  let chartData = null;
  let chartMouseUp = null;

  async function drawChart() {
    const box = $('chart');
    for (const c of [...box.children]) if (c.id !== 'readout') c.remove();
    $('legend').replaceChildren();
    const { range } = selection();
    if (!state.query || isNaN(range[0]) || isNaN(range[1])) return;
    const step = Math.max(10, Math.ceil((range[1] - range[0]) / 1000 / 150 / 10) * 10);
    let query = state.query;
    if (state.group_by) query = `sum by (${state.group_by}) (${state.query})`;
    let result;
    try {
      const data = await api('/api/v1/query_range', { query, start: range[0] / 1000, end: range[1] / 1000, step: `${step}s` });
      result = data.result;
    } catch (e) {
      box.append(el('div', { class: 'error', id: 'chart-error' }, String(e.message)));
      return;
    }
    chartData = { result, range, step: step * 1000 };
    const W = Math.max(box.clientWidth, 400);
    const H = 220;
    const pad = { l: 64, r: 8, t: 8, b: 22 };
    const svg = svgEl('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', id: 'chart-svg' });
    let max = 0;
    for (const s of result) for (const [, v] of s.values) max = Math.max(max, Number(v));
    max = max || 1;
    const x = (ms) => pad.l + (ms - range[0]) / (range[1] - range[0] || 1) * (W - pad.l - pad.r);
    const y = (v) => H - pad.b - v / max * (H - pad.t - pad.b);
    const unit = typeUnit();
    svg.append(svgEl('line', { class: 'axis', x1: pad.l, x2: W - pad.r, y1: H - pad.b, y2: H - pad.b }));
    svg.append(svgEl('line', { class: 'axis', x1: pad.l, x2: pad.l, y1: pad.t, y2: H - pad.b }));
    for (const frac of [0, 0.5, 1]) {
      const t = svgEl('text', { x: 2, y: y(max * frac) + 4 });
      t.textContent = fmtValue(Math.round(max * frac), unit);
      svg.append(t);
    }
    for (const frac of [0, 0.5, 1]) {
      const ms = range[0] + (range[1] - range[0]) * frac;
      const t = svgEl('text', { x: Math.min(x(ms), W - 130), y: H - 6 });
      t.textContent = utc(ms).slice(5);
      svg.append(t);
    }
    const sel = selection();
    for (const [cls, r] of [['sel-a', sel.a], ['sel-b', sel.b]]) {
      if (!r) continue;
      svg.append(svgEl('rect', { class: cls, id: cls, x: x(r[0]), y: pad.t, width: Math.max(2, x(r[1]) - x(r[0])), height: H - pad.t - pad.b }));
    }
    result.forEach((s, i) => {
      const color = SERIES_COLORS[i % SERIES_COLORS.length];
      const pts = s.values.map(([t, v]) => `${x(t * 1000).toFixed(1)},${y(Number(v)).toFixed(1)}`);
      if (pts.length === 1) {
        const [px, py] = pts[0].split(',');
        svg.append(svgEl('circle', { cx: px, cy: py, r: 2.5, fill: color, class: 'point' }));
      }
      svg.append(svgEl('polyline', { class: 'line series-line', points: pts.join(' '), stroke: color }));
      $('legend').append(el('span', { class: 'legend-item' },
        el('span', { class: 'swatch', style: null }), seriesName(s.metric)));
      $('legend').lastChild.firstChild.style.background = color;
    });
    if (!result.length) box.append(el('div', { class: 'note', id: 'chart-empty' }, 'No profiles in this range.'));
    const hover = svgEl('line', { class: 'hover-line', y1: pad.t, y2: H - pad.b, x1: -10, x2: -10 });
    const brush = svgEl('rect', { class: state.brush === 'b' ? 'sel-b' : 'sel-a', y: pad.t, height: H - pad.t - pad.b, x: 0, width: 0 });
    svg.append(hover, brush);
    box.prepend(svg);
    const toMs = (ev) => {
      const r = svg.getBoundingClientRect();
      const px = (ev.clientX - r.left) / r.width * W;
      return range[0] + (px - pad.l) / (W - pad.l - pad.r) * (range[1] - range[0]);
    };
    const bucket = (ms) => {
      const k = Math.floor((ms - range[0]) / chartData.step);
      return range[0] + Math.max(0, k) * chartData.step;
    };
    let down = null;
    svg.addEventListener('mousedown', (ev) => { down = { ms: toMs(ev), x: ev.clientX }; ev.preventDefault(); });
    svg.addEventListener('mousemove', (ev) => {
      const ms = toMs(ev);
      hover.setAttribute('x1', x(ms));
      hover.setAttribute('x2', x(ms));
      showReadout(ev, ms, unit);
      if (down) {
        const [a, b] = [Math.min(down.ms, ms), Math.max(down.ms, ms)];
        brush.setAttribute('x', x(a));
        brush.setAttribute('width', x(b) - x(a));
      }
    });
    svg.addEventListener('mouseleave', () => { $('readout').style.display = 'none'; });
    window.removeEventListener('mouseup', chartMouseUp);
    chartMouseUp = (ev) => {
      if (!down) return;
      const start = down;
      down = null;
      let a;
      let b;
      if (Math.abs(ev.clientX - start.x) < 4) {
        a = bucket(start.ms);
        b = a + chartData.step - 1;
      } else {
        const end = toMs(ev);
        [a, b] = [Math.min(start.ms, end), Math.max(start.ms, end)];
        a = Math.max(range[0], Math.round(a / 1000) * 1000);
        b = Math.min(range[1], Math.round(b / 1000) * 1000);
      }
      const which = state.brush === 'b' ? 'b' : 'a';
      go({ [`${which}_from`]: iso(a), [`${which}_to`]: iso(b), focus: '' });
    };
    window.addEventListener('mouseup', chartMouseUp);
  }

  function seriesName(metric) {
    const parts = Object.entries(metric).filter(([k]) => k !== '__name__').map(([k, v]) => `${k}="${v}"`);
    return parts.length ? `{${parts.join(', ')}}` : (metric.__name__ || '{}');
  }

  function typeUnit() {
    const t = types.find((t) => t.id === splitQuery(state.query).type);
    return t ? t.sample_unit : '';
  }

  /** The value of each series nearest to the time `t` (within a few steps). */
  function showReadout(ev, t, unit) {
    const ro = $('readout');
    if (!chartData) return;
    const near = Math.max(chartData.step * 2, (chartData.range[1] - chartData.range[0]) / 12);
    let at = null;
    const rows = chartData.result.map((s) => {
      let best = null;
      for (const [pt, v] of s.values) {
        const d = Math.abs(pt * 1000 - t);
        if (d <= near && (!best || d < best.d)) best = { d, t: pt * 1000, v: Number(v) };
      }
      if (best && (at === null || best.d < Math.abs(at - t))) at = best.t;
      return best ? [seriesName(s.metric), best.v] : null;
    }).filter(Boolean).sort((a, b) => b[1] - a[1]).slice(0, 12);
    ro.replaceChildren(el('div', {}, el('b', {}, utc(at === null ? t : at))),
      ...rows.map(([n, v]) => el('div', {}, `${fmtValue(v, unit)}  ${n}`)));
    const box = $('chart').getBoundingClientRect();
    ro.style.display = 'block';
    ro.style.left = Math.max(0, Math.min(ev.clientX - box.left + 12, box.width - 320)) + 'px';
    ro.style.top = '10px';
  }

  // ---- the profile: flame graph, table, sandwich, diff ---------------------

  /** The API request for the current selection: a merge or a diff. */
  function profileRequest() {
    const sel = selection();
    if (sel.b) {
      const a = sel.a || sel.range;
      return {
        path: '/api/v1/profile/diff',
        params: { query_a: state.query, start_a: iso(a[0]), end_a: iso(a[1]),
          query_b: state.query_b || state.query, start_b: iso(sel.b[0]), end_b: iso(sel.b[1]) },
        diff: true,
      };
    }
    const r = sel.a || sel.range;
    return { path: '/api/v1/profile/merge', params: { query: state.query, start: iso(r[0]), end: iso(r[1]) }, diff: false };
  }

  let flame = null;
  let top = null;

  async function loadProfile() {
    flame = null;
    top = null;
    const status = $('profile-status');
    $('flame-pane').replaceChildren();
    $('table-pane').replaceChildren();
    const sel = selection();
    $('sel-text').textContent = [sel.a ? `A: ${utc(sel.a[0])} → ${utc(sel.a[1])}` : '',
      sel.b ? `B: ${utc(sel.b[0])} → ${utc(sel.b[1])}` : ''].filter(Boolean).join('   ');
    $('b-bar').classList.toggle('hidden', !sel.b);
    if (!state.query) {
      status.textContent = 'Pick a profile type.';
      return;
    }
    const req = profileRequest();
    drawDownloads(req);
    status.textContent = 'Loading…';
    try {
      // One merge gives both the flame graph and the table.
      const view = await api(req.path, { ...req.params, format: 'view', max_nodes: MAX_NODES });
      flame = view.flamegraph;
      top = view.top;
    } catch (e) {
      status.replaceChildren(el('span', { class: 'error', id: 'profile-error' }, e.message));
      return;
    }
    const what = req.diff ? 'Diff of B against A' : (sel.a ? 'Merge of selection A' : 'Merge of the whole range');
    status.textContent = `${what}: ${fmtValue(flame.root.total, flame.unit)}` +
      (flame.diff ? ` (base ${fmtValue(flame.root.base_total, flame.unit)})` : '') +
      (flame.trimmed ? ` — trimmed to ${flame.nodes} nodes (small nodes are folded into "other")` : '');
    drawProfile();
  }

  function drawProfile() {
    if (!flame) return;
    const search = compileSearch();
    const view = state.view;
    $('flame-pane').classList.toggle('hidden', view === 'table');
    $('table-pane').classList.toggle('hidden', view === 'flame' || view === 'sandwich');
    drawDiffControls();
    if (view === 'sandwich') drawSandwich(search);
    else if (view !== 'table') drawFlame($('flame-pane'), flame.root, search, true);
    else $('breadcrumb').replaceChildren();
    if (view !== 'flame' && view !== 'sandwich') drawTable(search);
    drawSearchShare(search);
  }

  function compileSearch() {
    $('search').classList.remove('error');
    if (!state.search) return null;
    try {
      return new RegExp(state.search);
    } catch (e) {
      $('search').classList.add('error');
      return null;
    }
  }

  /** The node at `path` (names below the root). */
  function findPath(root, path) {
    let n = root;
    const chain = [root];
    for (const name of path) {
      n = (n.children || []).find((c) => c.name === name && !c.other);
      if (!n) return null;
      chain.push(n);
    }
    return chain;
  }

  function focusPath() {
    if (!state.focus) return [];
    try {
      const p = JSON.parse(state.focus);
      return Array.isArray(p) ? p.map(String) : [];
    } catch (e) {
      return [];
    }
  }

  function weight(n) {
    return flame.diff ? Math.abs(n.total) + Math.abs(n.base_total || 0) : n.total;
  }

  function depthOf(n) {
    let d = 0;
    for (const c of n.children || []) d = Math.max(d, 1 + depthOf(c));
    return d;
  }

  function diffColor(n, rootN) {
    const pal = PALETTES[state.palette] || PALETTES.default;
    let delta;
    if (state.diff === 'prop') {
      const a = rootN.base_total ? n.base_total / rootN.base_total : 0;
      const b = rootN.total ? n.total / rootN.total : 0;
      delta = b - a;
    } else {
      const scale = Math.max(rootN.total, rootN.base_total) || 1;
      delta = (n.total - n.base_total) / scale;
    }
    const mag = Math.min(1, Math.abs(delta) * 4);
    if (Math.abs(delta) < 0.0005) return { cls: 'same', color: 'rgb(200,200,200)' };
    const [r, g, b] = delta > 0 ? pal.grown : pal.shrunk;
    const mix = (c) => Math.round(255 - (255 - c) * (0.25 + 0.75 * mag));
    return { cls: delta > 0 ? 'grown' : 'shrunk', color: `rgb(${mix(r)},${mix(g)},${mix(b)})` };
  }

  function hashColor(name) {
    let h = 0;
    for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
    const hue = 10 + (h % 50);
    const light = 62 + (h >> 8) % 16;
    return `hsl(${hue}, 85%, ${light}%)`;
  }

  /**
   * Draws `root` (a tree in the flame graph JSON shape) into `pane`. With
   * `main`, the focus (state.focus) applies and the breadcrumb is drawn.
   */
  function drawFlame(pane, root, search, main, opts) {
    const options = opts || {};
    let chain = [root];
    if (main) {
      chain = findPath(root, focusPath()) || [root];
      drawBreadcrumb(chain);
    }
    const top = chain[chain.length - 1];
    const ancestors = chain.slice(0, -1);
    const width = Math.max(pane.clientWidth || 0, 300);
    const depth = ancestors.length + 1 + depthOf(top);
    const flameMode = options.flame !== undefined ? options.flame : state.mode === 'flame';
    const box = el('div', { class: 'flame', 'data-role': options.role || 'main' });
    box.style.height = depth * ROW + 'px';
    const yOf = (d) => (flameMode ? (depth - 1 - d) * ROW : d * ROW);
    const rootW = weight(top) || 1;
    const nodes = [];
    const add = (n, d, x, w, path, cls) => {
      const div = el('div', { class: `fg-node ${cls}` }, n.name);
      div.dataset.name = n.name;
      div.style.left = x + 'px';
      div.style.width = Math.max(w - 1, 1) + 'px';
      div.style.top = yOf(d) + 'px';
      if (flame.diff && !options.plain) {
        const c = diffColor(n, flame.root);
        div.classList.add(c.cls);
        div.style.background = c.color;
      } else {
        div.style.background = n.other ? '#c8c8c8' : hashColor(n.name);
      }
      if (search) {
        if (search.test(n.name)) div.classList.add('match');
        else div.classList.add('dim');
      }
      div.addEventListener('mousemove', (ev) => showTooltip(ev, n, top));
      div.addEventListener('mouseleave', hideTooltip);
      div.addEventListener('click', (ev) => {
        if (!main || n.other) return;
        if (ev.altKey) go({ view: 'sandwich', fn: n.name }, { only: 'profile' });
        else go({ focus: path.length ? JSON.stringify(path) : '' }, { only: 'profile' });
      });
      nodes.push(div);
    };
    ancestors.forEach((n, d) => add(n, d, 0, width, chain.slice(1, d + 1).map((c) => c.name), 'ancestor'));
    const walk = (n, d, x, path) => {
      const w = weight(n) / rootW * width;
      if (w < 0.5) return;
      add(n, d, x, w, path, n.other ? 'other' : '');
      let cx = x;
      for (const c of n.children || []) {
        const cw = weight(c) / rootW * width;
        walk(c, d + 1, cx, c.other ? path : [...path, c.name]);
        cx += cw;
      }
    };
    walk(top, ancestors.length, 0, chain.slice(1).map((c) => c.name));
    box.append(...nodes);
    if (options.append) pane.append(box);
    else pane.replaceChildren(box);
    return box;
  }

  function drawBreadcrumb(chain) {
    const bc = $('breadcrumb');
    if (chain.length <= 1) {
      bc.replaceChildren();
      return;
    }
    const parts = [];
    chain.forEach((n, i) => {
      if (i) parts.push(' › ');
      const path = chain.slice(1, i + 1).map((c) => c.name);
      parts.push(el('a', { class: 'crumb', onclick: () => go({ focus: path.length ? JSON.stringify(path) : '' }, { only: 'profile' }) }, i ? n.name : 'all'));
    });
    bc.replaceChildren(el('span', { class: 'muted' }, 'Focus: '), ...parts);
  }

  function showTooltip(ev, n, focusRoot) {
    const tt = $('tooltip');
    const unit = flame.unit;
    const rows = [el('div', {}, el('b', {}, n.name))];
    if (n.other) rows.push(el('div', { class: 'muted' }, 'small nodes folded together'));
    rows.push(el('div', {}, `total ${fmtValue(n.total, unit)} (${pct(n.total, flame.root.total)} of all, ${pct(n.total, focusRoot.total)} of focus)`));
    rows.push(el('div', {}, `self ${fmtValue(n.self, unit)} (${pct(n.self, flame.root.total)})`));
    if (flame.diff) {
      rows.push(el('div', {}, `A (base): total ${fmtValue(n.base_total, unit)} (${pct(n.base_total, flame.root.base_total)}), self ${fmtValue(n.base_self, unit)}`));
      rows.push(el('div', {}, `change: ${n.total - n.base_total >= 0 ? '+' : ''}${fmtValue(n.total - n.base_total, unit)}`));
    }
    rows.push(el('div', { class: 'muted' }, 'click: focus · alt-click: sandwich'));
    tt.replaceChildren(...rows);
    tt.style.display = 'block';
    tt.style.left = Math.min(ev.clientX + 14, window.innerWidth - 420) + 'px';
    tt.style.top = ev.clientY + 14 + 'px';
  }

  function hideTooltip() {
    $('tooltip').style.display = 'none';
  }

  /** Share of the total held by frames matching `search` (nested matches count once). */
  function drawSearchShare(search) {
    const out = $('search-share');
    if (!search) {
      out.textContent = state.search ? 'invalid regex' : '';
      return;
    }
    let matched = 0;
    const walk = (n) => {
      if (search.test(n.name) && !n.other) {
        matched += n.total;
        return;
      }
      for (const c of n.children || []) walk(c);
    };
    for (const c of flame.root.children || []) walk(c);
    out.textContent = `matched ${fmtValue(matched, flame.unit)} of ${fmtValue(flame.root.total, flame.unit)} (${pct(matched, flame.root.total)})`;
  }

  function drawDiffControls() {
    const box = $('diff-controls');
    if (!flame.diff) {
      box.replaceChildren();
      return;
    }
    const pal = PALETTES[state.palette] || PALETTES.default;
    const sw = (c) => {
      const s = el('span', { class: 'swatch' });
      s.style.background = `rgb(${c.join(',')})`;
      return s;
    };
    box.replaceChildren(el('span', { class: 'legend-diff', id: 'diff-legend' },
      el('span', {}, sw(pal.grown), ' grown in B'),
      el('span', {}, sw(pal.shrunk), ' shrunk in B'),
      el('button', { type: 'button', id: 'diff-mode', onclick: () => go({ diff: state.diff === 'prop' ? 'abs' : 'prop' }, { only: 'profile' }) },
        state.diff === 'prop' ? 'proportional' : 'absolute'),
      el('button', { type: 'button', id: 'palette', onclick: () => go({ palette: state.palette === 'cb' ? 'default' : 'cb' }, { only: 'profile' }) },
        state.palette === 'cb' ? 'colour-blind palette' : 'red/green palette')));
  }

  /** Callers of `fn` above it (an upside-down tree) and its callees below. */
  function drawSandwich(search) {
    const pane = $('flame-pane');
    $('breadcrumb').replaceChildren();
    const fn = state.fn;
    if (!fn) {
      pane.replaceChildren(el('p', { class: 'note' }, 'Pick a function: alt-click a frame, or a name in the table.'));
      drawTable(search);
      $('table-pane').classList.remove('hidden');
      return;
    }
    const mk = (name) => ({ name, self: 0, total: 0, base_self: 0, base_total: 0, children: [] });
    const callers = mk(fn);
    const callees = mk(fn);
    const addTo = (tree, src) => {
      tree.total += src.total;
      tree.base_total += src.base_total || 0;
      tree.self += src.self;
      tree.base_self += src.base_self || 0;
      for (const c of src.children || []) {
        let t = tree.children.find((x) => x.name === c.name);
        if (!t) tree.children.push(t = mk(c.name));
        addTo(t, c);
      }
    };
    const walk = (n, up) => {
      if (n.name === fn && !n.other) {
        addTo(callees, n);
        let t = callers;
        t.total += n.total;
        t.base_total += n.base_total || 0;
        for (let i = up.length - 1; i >= 1; i--) {
          let c = t.children.find((x) => x.name === up[i].name);
          if (!c) t.children.push(c = mk(up[i].name));
          c.total += n.total;
          c.base_total += n.base_total || 0;
          t = c;
        }
        t.self += n.total;
        t.base_self += n.base_total || 0;
        return;
      }
      for (const c of n.children || []) walk(c, [...up, n]);
    };
    walk(flame.root, []);
    pane.replaceChildren(el('div', { class: 'sandwich', id: 'sandwich' },
      el('h3', {}, 'Callers of ', el('code', {}, fn)),
      el('div', { id: 'sandwich-callers' }),
      el('h3', {}, 'Callees of ', el('code', {}, fn)),
      el('div', { id: 'sandwich-callees' })));
    drawFlame($('sandwich-callers'), callers, search, false, { flame: true, role: 'callers' });
    drawFlame($('sandwich-callees'), callees, search, false, { flame: false, role: 'callees' });
  }

  function drawTable(search) {
    const pane = $('table-pane');
    const diff = flame.diff;
    const cols = [['name', 'name'], ['flat', 'flat'], ['flat_percent', 'flat %'], ['cum', 'cum'], ['cum_percent', 'cum %']];
    if (diff) cols.push(['base_flat', 'base flat'], ['base_cum', 'base cum'], ['delta_flat', 'Δ flat'], ['delta_cum', 'Δ cum']);
    let rows = top.functions.map((f) => ({ ...f, delta_flat: f.flat - (f.base_flat || 0), delta_cum: f.cum - (f.base_cum || 0) }));
    if (search) rows = rows.filter((f) => search.test(f.name));
    const desc = state.sort.startsWith('-');
    const key = state.sort.replace(/^-/, '') || 'flat';
    rows.sort((a, b) => {
      const x = a[key];
      const y = b[key];
      const c = typeof x === 'string' ? x.localeCompare(y) : x - y;
      return desc ? -c : c;
    });
    const shown = rows.slice(0, 500);
    const unit = top.unit;
    const fmt = (k, v) => (k.endsWith('percent') ? v.toFixed(2) + '%' : fmtValue(v, unit));
    pane.replaceChildren(el('table', { class: 'top', id: 'top-table' },
      el('thead', {}, el('tr', {}, ...cols.map(([k, label]) => el('th', {
        class: k === 'name' ? 'name' : '', 'data-key': k,
        onclick: () => go({ sort: (key === k && desc) ? k : '-' + k }, { replace: true, only: 'profile' }),
      }, label + (key === k ? (desc ? ' ▼' : ' ▲') : ''))))),
      el('tbody', {}, ...shown.map((f) => el('tr', { class: search && search.test(f.name) ? 'match' : '' },
        ...cols.map(([k]) => (k === 'name'
          ? el('td', { class: 'name' }, el('a', { title: 'sandwich view', onclick: () => go({ view: 'sandwich', fn: f.name }, { only: 'profile' }) }, f.name))
          : el('td', { 'data-key': k }, fmt(k, f[k] || 0)))))))),
    ...(rows.length > shown.length ? [el('p', { class: 'note' }, `${rows.length - shown.length} more not shown`)] : []));
  }

  function drawDownloads(req) {
    const base = location.origin + req.path + '?';
    const link = (format, label) => {
      const q = new URLSearchParams({ ...req.params, format });
      return el('a', { href: req.path + '?' + q, download: '', 'data-format': format }, label);
    };
    $('downloads').replaceChildren(link('pprof', 'pprof'), link('folded', 'folded'),
      link('svg', 'SVG'), link('flamegraph', 'flame graph JSON'));
    const q = new URLSearchParams(req.params);
    $('pprof-cmd').value = `go tool pprof -http=: '${base}${q}'`;
  }

  // ---- targets --------------------------------------------------------------

  async function drawTargets() {
    const app = $('app');
    app.replaceChildren(el('h2', {}, 'Scrape targets'), el('div', { id: 'targets' }, 'Loading…'));
    let data;
    try {
      data = await api('/api/v1/targets');
    } catch (e) {
      $('targets').replaceChildren(el('span', { class: 'error' }, e.message));
      return;
    }
    const rows = data.activeTargets;
    if (!rows.length) {
      $('targets').replaceChildren(el('p', { class: 'note' }, 'No scrape targets (see --scrape-config).'));
      return;
    }
    $('targets').replaceChildren(el('table', { class: 'targets' },
      el('thead', {}, el('tr', {}, ...['job', 'URL', 'health', 'last scrape', 'duration', 'interval', 'last error'].map((h) => el('th', {}, h)))),
      el('tbody', {}, ...rows.map((t) => el('tr', {},
        el('td', {}, t.scrapePool),
        el('td', {}, t.scrapeUrl),
        el('td', { class: `health-${t.health}` }, t.health),
        el('td', {}, t.lastScrape.startsWith('0001') ? 'never' : t.lastScrape),
        el('td', {}, `${(t.lastScrapeDuration * 1000).toFixed(1)} ms`),
        el('td', {}, t.scrapeInterval),
        el('td', { class: 'error' }, t.lastError || ''))))));
  }

  // ---- main -----------------------------------------------------------------

  async function render(only) {
    now = Date.now();
    syncControls();
    if (only === 'controls') return;
    if (only === 'profile') {
      drawProfile();
      return;
    }
    await Promise.all([drawGroupBy(), drawChart(), loadProfile()]);
    document.body.dataset.renders = String(Number(document.body.dataset.renders || 0) + 1);
  }

  async function start() {
    const ssr = $('ssr');
    if (ssr) ssr.classList.add('hidden');
    const app = $('app');
    app.classList.remove('hidden');
    if (location.pathname.replace(/\/$/, '').endsWith('/targets')) {
      await drawTargets();
      return;
    }
    buildApp();
    await loadTypes();
    await render();
  }

  // Errors are recorded on the page too (tests read them).
  window.addEventListener('error', (e) => { document.body.dataset.error = String(e.message); });
  window.addEventListener('unhandledrejection', (e) => { document.body.dataset.error = String(e.reason); });

  start();
})();
