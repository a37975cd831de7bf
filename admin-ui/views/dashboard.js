// #/dashboard: the appliance at a glance, from the live status snapshots: GPUs (or the CPU
// KV pool when there is none), one row per engine, and 15-minute charts of output tokens/s,
// queue depth and TTFT accumulated in the browser.
import { lineChart } from '../lib/chart.js';
import { fill, h, setText } from '../lib/dom.js';
import * as f from '../lib/format.js';
import { WINDOW_MS } from '../lib/history.js';
import { enginesOf } from '../lib/status.js';
import { badge, bar, card, empty, setBadge, setBar, syncRows } from '../lib/ui.js';

export const title = 'Dashboard';

const sum = (xs) => xs.reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);

/** One stat tile: a label over a big value and a small line under it. */
function tile(label, valueAttrs = {}) {
  const value = h('div', { class: 'tile-value', ...valueAttrs }, '\u2014');
  const sub = h('div', { class: 'tile-sub' });
  return { el: h('div', { class: 'tile' }, h('div', { class: 'tile-label' }, label), value, sub), value, sub };
}

/** A stacked bar with a legend: parts are {label, bytes, cls}. */
function stacked(parts, total) {
  const t = total > 0 ? total : sum(parts.map((p) => p.bytes)) || 1;
  return h('div', { class: 'stack' },
    h('div', { class: 'stack-bar' }, parts.map((p) => h('span', {
      class: `stack-seg ${p.cls}`, title: `${p.label}: ${f.bytes(p.bytes)}`,
      style: { width: `${Math.max(0, Math.min(100, (p.bytes / t) * 100)).toFixed(2)}%` },
    }))),
    h('ul', { class: 'stack-legend' }, parts.map((p) => h('li', null, h('span', { class: `swatch ${p.cls}` }),
      h('span', { class: 'stack-label' }, p.label), h('span', { class: 'stack-value' }, f.bytes(p.bytes))))));
}

/** Which GPU an engine runs on: its `device` is "cpu", "cuda" or "cuda:N". */
function gpuIndexOf(e) {
  const d = typeof e.device === 'string' ? e.device : '';
  if (!d.startsWith('cuda')) return -1;
  const n = Number.parseInt(d.split(':')[1], 10);
  return Number.isFinite(n) ? n : 0;
}

function gpuCard(g, engines) {
  const mine = engines.filter((e) => gpuIndexOf(e) === g.index && e.memory);
  const weights = sum(mine.map((e) => e.memory.weights_bytes));
  const kv = sum(mine.map((e) => e.memory.kv_cache_bytes));
  const used = Number.isFinite(g.memory_used) ? g.memory_used : weights + kv;
  const other = Math.max(0, used - weights - kv);
  const util = Number.isFinite(g.utilization) ? g.utilization / 100 : null;
  return h('div', { class: 'gpu-card', 'data-gpu': g.index },
    h('div', { class: 'gpu-head' },
      h('div', null, h('div', { class: 'gpu-name' }, g.name || `GPU ${g.index}`),
        h('div', { class: 'gpu-sub' }, `GPU ${g.index}${mine.length ? ` \u00b7 ${mine.map((e) => e.model).join(', ')}` : ''}`)),
      h('div', { class: 'gpu-util' }, h('span', { class: 'gpu-util-value' }, f.pct(util)), h('span', { class: 'gpu-util-label' }, 'utilization'))),
    bar(util, 'accent'),
    h('div', { class: 'gpu-mem-title' }, 'Memory',
      h('span', { class: 'muted' }, ` ${f.bytes(used)} of ${f.bytes(g.memory_total)} used`)),
    stacked([
      { label: 'Model weights', bytes: weights, cls: 'c-weights' },
      { label: 'KV cache', bytes: kv, cls: 'c-kv' },
      { label: 'Other', bytes: other, cls: 'c-other' },
      { label: 'Free', bytes: g.memory_free, cls: 'c-free' },
    ], g.memory_total),
    Number.isFinite(g.temperature) && g.temperature > 0 ? h('div', { class: 'gpu-foot muted' }, `${g.temperature} \u00b0C`) : null);
}

/** No GPU: say so plainly, and show what the engines hold in RAM instead. */
function cpuCard(st, engines) {
  const withMem = engines.filter((e) => e.memory);
  const pool = sum(withMem.map((e) => e.memory.kv_cache_bytes));
  const kvUsed = sum(withMem.map((e) => (e.kv_usage || 0) * (e.memory.kv_cache_bytes || 0)));
  const usage = pool > 0 ? kvUsed / pool : null;
  return h('div', { class: 'nogpu' },
    h('div', { class: 'nogpu-head' },
      h('div', { class: 'nogpu-icon', 'aria-hidden': 'true' }, 'CPU'),
      h('div', null, h('div', { class: 'nogpu-title' }, 'No GPU on this machine'),
        h('div', { class: 'nogpu-sub' }, 'Engines run on the CPU; their KV cache lives in RAM.'),
        st.gpus_note ? h('div', { class: 'nogpu-note' }, st.gpus_note) : null)),
    h('div', { class: 'nogpu-grid' },
      h('div', null,
        h('div', { class: 'gpu-mem-title' }, 'CPU KV cache pool',
          h('span', { class: 'muted' }, pool ? ` ${f.bytes(pool)} \u00b7 ${f.pct(usage, 1)} used` : ' no engine running')),
        stacked([
          { label: 'KV in use', bytes: kvUsed, cls: 'c-kv' },
          { label: 'KV free', bytes: Math.max(0, pool - kvUsed), cls: 'c-free' },
        ], pool)),
      h('div', null,
        h('div', { class: 'gpu-mem-title' }, 'Memory held by engines',
          h('span', { class: 'muted' }, ` ${f.bytes(sum(withMem.map((e) => sum(Object.values(e.memory)))))}`)),
        stacked([
          { label: 'Model weights', bytes: sum(withMem.map((e) => e.memory.weights_bytes)), cls: 'c-weights' },
          { label: 'KV cache', bytes: pool, cls: 'c-kv' },
          { label: 'Activations', bytes: sum(withMem.map((e) => e.memory.activation_bytes)), cls: 'c-act' },
          { label: 'Other', bytes: sum(withMem.map((e) => e.memory.other_bytes)), cls: 'c-other' },
        ]))));
}

const FIELDS = [
  ['state', 'State'], ['uptime', 'Uptime'], ['restarts', 'Restarts'], ['kv', 'KV cache'], ['running', 'Running'],
  ['waiting', 'Waiting'], ['preempted', 'Preempted'], ['hit_rate', 'Prefix hits'], ['tps', 'Tokens/s'],
];

/** An engine's row, built once and updated in place on each snapshot. */
function engineRow() {
  const name = h('span', { class: 'cell-name' });
  const def = h('span', { class: 'badge badge-accent', hidden: true }, 'default');
  const device = h('span', { class: 'cell-sub' });
  const err = h('div', { class: 'cell-error', hidden: true });
  const cells = {};
  const stateBadge = badge('');
  const kvBar = bar(0);
  const kvText = h('span', { class: 'kv-text' });
  for (const [key] of FIELDS) cells[key] = h('td', { 'data-field': key, class: key === 'state' ? '' : 'num' });
  cells.state.append(stateBadge);
  cells.kv.classList.add('cell-kv');
  cells.kv.append(kvBar, kvText);
  const tr = h('tr', null, h('td', { class: 'cell-model' }, h('div', { class: 'cell-model-line' }, name, def), device, err),
    FIELDS.map(([key]) => cells[key]));
  return {
    tr,
    update(e, isDefault) {
      tr.dataset.engine = e.model;
      setText(name, e.model);
      def.hidden = !isDefault;
      setText(device, [e.device, e.pid ? `pid ${e.pid}` : ''].filter(Boolean).join(' \u00b7 '));
      setText(err, e.last_error || '');
      err.title = e.last_error || '';
      err.hidden = !e.last_error;
      setBadge(stateBadge, e.state);
      setText(cells.uptime, f.duration(e.uptime_s));
      setText(cells.restarts, f.num(e.restarts));
      setBar(kvBar, e.kv_usage);
      setText(kvText, f.pct(e.kv_usage, 1));
      setText(cells.running, f.num(e.running));
      setText(cells.waiting, f.num(e.waiting));
      setText(cells.preempted, f.num(e.preempted));
      setText(cells.hit_rate, f.pct(e.prefix_hit_rate, 1));
      setText(cells.tps, f.num(e.tokens_per_s, 1));
    },
  };
}

export function mount(root, ctx) {
  const { live, history } = ctx;
  const tDefault = tile('Default model', { id: 'default-model' });
  const tEngines = tile('Engines ready');
  const tTps = tile('Output tokens/s');
  const tQueue = tile('Queue');
  const tiles = h('div', { class: 'tiles' }, tDefault.el, tEngines.el, tTps.el, tQueue.el);

  const gpus = h('div', { id: 'gpus', class: 'gpus' });
  const tbody = h('tbody');
  const table = h('table', { id: 'engines', class: 'table' },
    h('thead', null, h('tr', null, h('th', null, 'Model'), FIELDS.map(([key, label]) => h('th', { class: key === 'state' ? '' : 'num' }, label)))),
    tbody);
  const noEngines = empty('No engine is running', 'Load a model on the Models page and its engine appears here.');
  const enginesBody = h('div', { class: 'table-wrap' }, table, noEngines);

  const chartHost = (id) => h('div', { id, class: 'chart' });
  const hTps = chartHost('chart-tps');
  const hQueue = chartHost('chart-queue');
  const hTtft = chartHost('chart-ttft');
  const upTo = h('span', { class: 'muted' });
  root.append(
    tiles,
    card({ title: 'Accelerators', subtitle: 'Memory and utilization per device', cls: 'card-gpus' }, gpus),
    card({ title: 'Engines', subtitle: 'One folio-engine process per loaded model', actions: upTo }, enginesBody),
    h('div', { class: 'charts' },
      card({ title: 'Output tokens/s', subtitle: 'Sum over engines, last 15 minutes' }, hTps),
      card({ title: 'Queue depth', subtitle: 'Running + waiting requests, summed' }, hQueue),
      card({ title: 'Time to first token', subtitle: 'p50 and p99 of the slowest engine' }, hTtft)));

  const charts = [
    lineChart(hTps, { series: [{ key: 'tps', label: 'tokens/s' }], windowMs: WINDOW_MS,
      format: (v) => f.num(v, v < 10 && v % 1 ? 1 : 0) }),
    lineChart(hQueue, { series: [{ key: 'running', label: 'running' }, { key: 'waiting', label: 'waiting' }],
      windowMs: WINDOW_MS, integer: true, format: (v) => f.num(v) }),
    lineChart(hTtft, { series: [{ key: 'ttft_p50', label: 'p50' }, { key: 'ttft_p99', label: 'p99' }], windowMs: WINDOW_MS,
      format: (v) => f.ms(v), emptyText: 'No data yet: engines report TTFT once they have served a request' }),
  ];

  const rows = new Map(); // engine model name -> row
  let gpuSig = '';

  function update(st) {
    if (!st) return;
    const engines = enginesOf(st);
    // Tiles.
    setText(tDefault.value, st.default_model || 'none');
    tDefault.value.classList.toggle('is-none', !st.default_model);
    setText(tDefault.sub, st.default_model ? 'serves the model "default"' : 'activate a model on the Models page');
    const ready = engines.filter((e) => e.state === 'ready').length;
    const active = engines.filter((e) => e.state !== 'stopped');
    setText(tEngines.value, `${ready} / ${active.length}`);
    setText(tEngines.sub, active.length ? active.filter((e) => e.state !== 'ready').map((e) => `${e.model}: ${e.state}`).join(', ') || 'all ready' : 'none loaded');
    setText(tTps.value, f.num(sum(engines.map((e) => e.tokens_per_s)), 1));
    setText(tTps.sub, `${f.num(active.length)} engine${active.length === 1 ? '' : 's'} running`);
    const running = sum(engines.map((e) => e.running));
    const waiting = sum(engines.map((e) => e.waiting));
    setText(tQueue.value, f.num(running + waiting));
    setText(tQueue.sub, `${f.num(running)} running \u00b7 ${f.num(waiting)} waiting`);
    setText(upTo, `foliod ${st.version || ''} \u00b7 up ${f.duration(st.uptime_s)}`);

    // GPUs: rebuilt only when what they show changed (they hold no controls).
    const sig = JSON.stringify([st.gpus, st.gpus_note, engines.map((e) => [e.model, e.device, e.memory, e.kv_usage])]);
    if (sig !== gpuSig) {
      gpuSig = sig;
      const list = st.gpus || [];
      if (list.length) fill(gpus, h('div', { class: 'gpu-grid' }, list.map((g) => gpuCard(g, engines))));
      else fill(gpus, cpuCard(st, engines));
    }

    // Engines: keyed by model name, rows updated in place.
    syncRows(tbody, rows, engines, (e) => e.model, engineRow, (row, e) => row.update(e, e.model === st.default_model));
    table.hidden = engines.length === 0;
    noEngines.hidden = engines.length > 0;
  }

  const redrawCharts = () => charts.forEach((c) => c.update(history.samples));
  update(live.status);
  redrawCharts();
  const offStatus = live.on('status', (st) => {
    update(st);
    redrawCharts();
  });
  // While the stream is down no snapshot comes: keep the time axis moving so the gap shows.
  const tick = setInterval(() => {
    if (live.state !== 'live') redrawCharts();
  }, 2000);

  return () => {
    offStatus();
    clearInterval(tick);
    charts.forEach((c) => c.destroy());
  };
}
