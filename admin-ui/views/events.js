// #/events: foliod's events log (newest first, live from the SSE stream) and the tail of
// one engine's log file.
import { h, setText } from '../lib/dom.js';
import * as f from '../lib/format.js';
import { badge, busy, card, empty } from '../lib/ui.js';

export const title = 'Events & logs';

const KEEP = 500; // rows kept in the table; the server keeps the last 10,000
const SHOW = 200; // rows fetched at first

/** The newest `n` events. /api/events pages forward from `since` (oldest first, at most
 * 1000 a page), so walk to the end and keep the tail. */
async function newestEvents(api, n) {
  let since = 0;
  let tail = [];
  for (let page = 0; page < 12; page++) {
    const r = await api.get(`/api/events?since=${since}&limit=1000`);
    const evs = r.events || [];
    tail = tail.concat(evs).slice(-n);
    if (evs.length < 1000) break;
    since = evs[evs.length - 1].id;
  }
  return tail.reverse();
}

export function mount(root, ctx) {
  const { api, live } = ctx;
  let destroyed = false;
  let events = []; // newest first
  let maxId = 0;

  // ---- events ----
  const level = h('select', { id: 'event-level', 'aria-label': 'Level' },
    [['', 'All levels'], ['info', 'info'], ['warn', 'warn'], ['error', 'error']].map(([v, l]) => h('option', { value: v }, l)));
  const search = h('input', { id: 'event-search', type: 'search', placeholder: 'Filter messages', 'aria-label': 'Filter messages' });
  const tbody = h('tbody', { id: 'events' });
  const table = h('table', { class: 'table table-events' },
    h('thead', null, h('tr', null, h('th', null, 'Time'), h('th', null, 'Level'), h('th', null, 'Kind'), h('th', null, 'Message'))),
    tbody);
  const none = empty('No events', 'Model loads, engine restarts, pulls and logins appear here as they happen.');
  const evError = h('div', { class: 'form-error', hidden: true });

  const eventRow = (e) => h('tr', { 'data-event-id': e.id, 'data-level': e.level, class: e.fresh ? 'is-new' : '' },
    h('td', { class: 'cell-time', title: f.dateTime(e.ts) }, f.clock(e.ts)),
    h('td', null, badge(e.level)),
    h('td', null, h('code', { class: 'cell-mono' }, e.kind)),
    h('td', { class: 'cell-message' }, e.message));

  const matches = (e) => (!level.value || e.level === level.value) &&
    (!search.value || `${e.kind} ${e.message}`.toLowerCase().includes(search.value.toLowerCase()));

  function render() {
    const shown = events.filter(matches);
    tbody.replaceChildren(...shown.map(eventRow));
    table.hidden = shown.length === 0;
    none.hidden = shown.length > 0;
  }

  /** Merges events by id (the stream and a fetch may overlap). Live ones that are all
   * newer than what is shown go on top without redrawing the rest. */
  function add(list, fresh) {
    const known = new Set(events.map((e) => e.id));
    const added = list.filter((e) => !known.has(e.id)).sort((a, b) => b.id - a.id);
    if (!added.length) return;
    const onTop = fresh && added[added.length - 1].id > maxId;
    for (const e of added) e.fresh = fresh;
    maxId = Math.max(maxId, added[0].id);
    events = added.concat(events).sort((a, b) => b.id - a.id).slice(0, KEEP);
    if (!onTop) return render();
    for (const e of added.slice().reverse())
      if (matches(e)) tbody.insertBefore(eventRow(e), tbody.firstChild);
    while (tbody.children.length > KEEP) tbody.lastChild.remove();
    table.hidden = tbody.children.length === 0;
    none.hidden = tbody.children.length > 0;
  }

  async function loadEvents() {
    try {
      const list = await newestEvents(api, SHOW);
      if (destroyed) return;
      add(list, false);
      render();
      evError.hidden = true;
    } catch (e) {
      if (destroyed || e.status === 401) return;
      setText(evError, `Could not load the events: ${e.message}`);
      evError.hidden = false;
    }
  }

  // The stream sends only events that happen while it is open: after a reconnect, fetch
  // what was missed.
  async function catchUp() {
    try {
      const r = await api.get(`/api/events?since=${maxId}&limit=1000`);
      if (!destroyed) add(r.events || [], true);
    } catch {
      /* the next reconnect tries again */
    }
  }

  level.addEventListener('change', render);
  search.addEventListener('input', render);
  const offEvent = live.on('event', (e) => add([e], true));
  let wasLive = live.state === 'live';
  const offConn = live.on('conn', (st) => {
    if (st === 'live' && !wasLive) catchUp();
    wasLive = st === 'live';
  });

  // ---- engine logs ----
  const logModel = h('select', { id: 'log-model', 'aria-label': 'Model' });
  const refreshBtn = h('button', { id: 'log-refresh', class: 'btn btn-sm', type: 'button' }, 'Refresh');
  const follow = h('input', { type: 'checkbox', id: 'log-follow' });
  const logView = h('pre', { id: 'log-view', class: 'log-view', tabindex: 0 });
  const logInfo = h('span', { class: 'muted' });
  let followTimer = null;

  async function loadModels() {
    try {
      const r = await api.get('/api/models');
      if (destroyed) return;
      const ms = r.models || [];
      const keep = logModel.value;
      logModel.replaceChildren(...ms.map((m) => h('option', { value: m.id }, `${m.name} (${m.state})`)));
      // Keep the choice; else the first loaded model, whose log is the interesting one.
      const pick = ms.find((m) => String(m.id) === keep) || ms.find((m) => m.loaded) || ms[0];
      if (pick) logModel.value = String(pick.id);
      if (!ms.length) {
        setText(logView, 'No model is registered.');
        return;
      }
      if (!keep || keep !== logModel.value) loadLog();
    } catch {
      /* shown by the log itself */
    }
  }

  async function loadLog() {
    const id = logModel.value;
    if (!id) return;
    try {
      const r = await api.get(`/api/models/${encodeURIComponent(id)}/logs?lines=200`);
      if (destroyed || logModel.value !== id) return;
      const lines = r.lines || [];
      // Stay at the bottom if the reader was there; leave them be if they scrolled up.
      const atBottom = logView.scrollHeight - logView.scrollTop - logView.clientHeight < 24;
      logView.textContent = lines.length ? lines.join('\n') : '(the engine has written nothing yet, or has never run)';
      if (atBottom || !logView.dataset.loaded) logView.scrollTop = logView.scrollHeight;
      logView.dataset.loaded = '1';
      setText(logInfo, `${lines.length} lines \u00b7 ${f.clock(Date.now())}`);
    } catch (e) {
      if (destroyed || e.status === 401) return;
      logView.textContent = `Could not read the log: ${e.message}`;
    }
  }

  logModel.addEventListener('change', () => {
    delete logView.dataset.loaded;
    loadLog();
  });
  refreshBtn.addEventListener('click', () => busy(refreshBtn, loadLog));
  follow.addEventListener('change', () => {
    clearInterval(followTimer);
    if (follow.checked) followTimer = setInterval(loadLog, 2000);
  });

  root.append(
    card({ title: 'Events', subtitle: 'foliod\u2019s log of what happened, newest first', actions: [level, search] },
      evError, h('div', { class: 'table-wrap table-wrap-tall' }, table, none)),
    card({ title: 'Engine log', subtitle: 'The last 200 lines of an engine\u2019s output',
      actions: [logModel, h('label', { class: 'check' }, follow, ' Follow'), refreshBtn] },
      logView, h('div', { class: 'field-hint' }, logInfo)));

  render();
  loadEvents();
  loadModels();
  return () => {
    destroyed = true;
    offEvent();
    offConn();
    clearInterval(followTimer);
  };
}
