// #/models: the registry. One row per model with its state, source and location, pull
// progress, and the actions that apply (load, unload, activate as `default`, pull, cancel,
// delete); the activation's progress; and the form to add a model (model-form.js).
//
// Rows are built once and updated in place: the list refreshes on every relevant change
// (live snapshots, new events) and a button rebuilt under the pointer would lose a click.
import { modelPath } from '../lib/api.js';
import { h, setText, show } from '../lib/dom.js';
import * as f from '../lib/format.js';
import { enginesOf } from '../lib/status.js';
import { badge, bar, card, empty, setBadge, setBar, syncRows } from '../lib/ui.js';
import { mountForm } from './model-form.js';

export const title = 'Models';

const ACTIONS = [
  ['load', 'Load'], ['unload', 'Unload'], ['activate', 'Activate'], ['pull', 'Pull'], ['cancel', 'Cancel'], ['delete', 'Delete'],
];
const isHub = (m) => m.source === 'hf' || !!m.repo_id;
const pulling = (d) => !!d && (d.active || d.state === 'downloading' || d.state === 'queued');

/** The pull's progress line: "42% · 120.0 / 285.5 MiB · 12.3 MiB/s · ETA 14 s". */
function progressText(d) {
  const done = d.state === 'done';
  const frac = done ? 1 : Number.isFinite(d.progress) ? d.progress : d.bytes_total ? d.bytes_done / d.bytes_total : 0;
  // Floor, so 100% appears only when the pull has really finished.
  const pctText = `${done ? 100 : Math.min(99, Math.floor(frac * 100))}%`;
  const parts = [pctText];
  if (d.bytes_total > 0) parts.push(done ? `${f.mib(d.bytes_total)} MiB` : `${f.mib(d.bytes_done)} / ${f.mib(d.bytes_total)} MiB`);
  if (pulling(d)) {
    if (d.rate_bytes_per_s > 0) parts.push(`${f.mibRate(d.rate_bytes_per_s)} MiB/s`);
    if (Number.isFinite(d.eta_s)) parts.push(`ETA ${f.duration(d.eta_s)}`);
    if (d.files_total > 0) parts.push(`file ${Math.min(d.files_done + 1, d.files_total)} of ${d.files_total}`);
    if (d.state === 'queued') parts.push('queued');
  } else if (done) parts.push('downloaded');
  else if (d.state === 'failed') parts.push('failed');
  else if (d.state === 'cancelled') parts.push('cancelled');
  return { frac, text: parts.join(' \u00b7 ') };
}

function modelRow(handlers) {
  const name = h('span', { class: 'cell-name' });
  const def = h('span', { class: 'badge badge-accent', hidden: true }, 'default');
  const err = h('div', { class: 'cell-error', hidden: true });
  const stateCell = h('td', { 'data-field': 'state' });
  const stateBadge = badge('');
  stateCell.append(stateBadge);
  const source = h('span', { class: 'chip', 'data-field': 'source' });
  const where = h('div', { class: 'cell-mono' });
  const pBar = bar(0, 'accent');
  const pText = h('span', { class: 'progress-text' });
  const pErr = h('div', { class: 'progress-error', hidden: true });
  const progress = h('div', { class: 'progress', hidden: true, role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100 },
    pBar, pText, pErr);
  const size = h('td', { class: 'num', 'data-field': 'size' });
  const buttons = {};
  for (const [action, label] of ACTIONS)
    buttons[action] = h('button', {
      type: 'button', 'data-action': action, hidden: true,
      class: `btn btn-sm ${action === 'delete' ? 'btn-danger-ghost' : action === 'activate' ? 'btn-accent' : ''}`,
      onClick: () => handlers[action](current),
    }, label);
  let current = null;
  const tr = h('tr', null,
    h('td', { class: 'cell-model' }, h('div', { class: 'cell-model-line' }, name, def), err),
    stateCell,
    h('td', { class: 'cell-where', 'data-field': 'location' }, h('div', { class: 'where-line' }, source, where), progress),
    size,
    h('td', { class: 'cell-actions' }, h('div', { class: 'btn-group' }, ACTIONS.map(([a]) => buttons[a]))));

  return {
    tr,
    update(m, pendingAction) {
      current = m;
      tr.dataset.model = m.name;
      tr.dataset.modelId = m.id;
      setText(name, m.name);
      def.hidden = !m.default;
      setText(err, m.last_error || '');
      err.title = m.last_error || '';
      err.hidden = !m.last_error;
      setBadge(stateBadge, m.state);
      setText(source, isHub(m) ? 'Hub' : 'Local');
      source.className = `chip ${isHub(m) ? 'chip-hub' : ''}`;
      const loc = isHub(m) ? `${m.repo_id}@${m.revision || 'main'}` : m.path;
      setText(where, loc);
      where.title = isHub(m) && m.path ? `${loc}\n${m.path}` : loc;

      const d = m.download;
      show(progress, !!d);
      if (d) {
        const p = progressText(d);
        setBar(pBar, p.frac);
        setText(pText, p.text);
        progress.setAttribute('aria-valuenow', Math.round(p.frac * 100));
        progress.className = `progress progress-${d.state || 'unknown'}`;
        setText(pErr, d.error || '');
        pErr.hidden = !d.error || d.state === 'done';
      }
      setText(size, d && d.bytes_total > 0 ? f.bytes(d.bytes_total) : f.DASH);

      // Which actions apply now.
      const failed = m.state === 'failed';
      const vis = {
        load: !m.loaded || failed,
        unload: m.loaded && !failed,
        activate: !m.default && !(isHub(m) && !m.path), // foliod refuses to activate what is not downloaded
        pull: isHub(m) && !m.path && !pulling(d),
        cancel: isHub(m) && pulling(d),
        delete: true,
      };
      for (const [action] of ACTIONS) {
        const b = buttons[action];
        show(b, vis[action] || pendingAction === action);
        b.disabled = !!pendingAction;
        b.classList.toggle('is-busy', pendingAction === action);
      }
    },
  };
}

/** The activation's progress: new engine ready, `default` moved, old engine drained. */
function switchPanel() {
  const titleEl = h('div', { class: 'switch-title' });
  const steps = ['start', 'move', 'drain'].map((key) => {
    const dot = h('span', { class: 'step-dot' });
    const label = h('span', { class: 'step-label' });
    const detail = h('span', { class: 'step-detail' });
    const li = h('li', { class: 'step', 'data-step': key }, dot, h('div', null, label, detail));
    return { key, li, label, detail };
  });
  const message = h('div', { class: 'switch-message', hidden: true });
  const dismiss = h('button', { class: 'btn btn-sm', type: 'button' }, 'Dismiss');
  const el = h('section', { id: 'switch-progress', class: 'card switch', hidden: true, 'aria-live': 'polite' },
    h('div', { class: 'switch-head' }, titleEl, dismiss), h('ol', { class: 'steps' }, steps.map((x) => x.li)), message);
  let target = null;
  let old = null;
  let phase = 'idle'; // running | done | failed
  let hideTimer = null;
  dismiss.addEventListener('click', () => {
    el.hidden = true;
  });

  const set = (step, state, label, detail = '') => {
    step.li.className = `step step-${state}`;
    setText(step.label, label);
    setText(step.detail, detail);
  };

  function update(st) {
    if (!target || !st) return;
    const engines = enginesOf(st);
    const eNew = engines.find((e) => e.model === target);
    const eOld = old ? engines.find((e) => e.model === old) : null;
    const moved = st.default_model === target;
    const [s1, s2, s3] = steps;
    const ready = moved || (eNew && eNew.state === 'ready');
    set(s1, ready ? 'done' : phase === 'failed' ? 'failed' : 'active', `Start ${target}`,
      eNew ? `engine ${eNew.state}` : ready ? 'engine ready' : 'waiting for the engine');
    set(s2, moved ? 'done' : !ready ? 'pending' : phase === 'failed' ? 'failed' : 'active', `Point default at ${target}`,
      moved ? 'default moved' : st.default_model ? `default is ${st.default_model}` : 'no default yet');
    if (old) {
      const gone = !eOld || eOld.state === 'stopped';
      set(s3, moved && gone ? 'done' : moved ? 'active' : 'pending', `Drain ${old}`,
        eOld ? `engine ${eOld.state}` : moved ? 'stopped' : 'serves until the switch');
      if (phase === 'done' && gone && !hideTimer) hideTimer = setTimeout(() => { el.hidden = true; }, 10000);
    }
    s3.li.hidden = !old;
  }

  return {
    el,
    start(name, oldName, st) {
      target = name;
      old = oldName && oldName !== name ? oldName : null;
      phase = 'running';
      clearTimeout(hideTimer);
      hideTimer = null;
      el.className = 'card switch';
      setText(titleEl, `Switching default to ${name}`);
      message.hidden = true;
      el.hidden = false;
      update(st);
    },
    finish(ok, msg, st) {
      phase = ok ? 'done' : 'failed';
      el.classList.add(ok ? 'switch-ok' : 'switch-failed');
      setText(titleEl, ok ? `default is now ${target}` : `Switch to ${target} failed`);
      setText(message, msg || '');
      message.hidden = !msg;
      update(st);
      if (ok && !old) hideTimer = setTimeout(() => { el.hidden = true; }, 10000);
    },
    update,
  };
}

export function mount(root, ctx) {
  const { api, live, toast, confirm } = ctx;
  let models = [];
  const pending = new Map(); // model id -> action in flight
  const rows = new Map(); // model id -> row
  let destroyed = false;

  const sw = switchPanel();
  const tbody = h('tbody');
  const table = h('table', { id: 'models', class: 'table' },
    h('thead', null, h('tr', null, ['Name', 'State', 'Source', 'Size', ''].map((t, i) =>
      h('th', { class: i === 3 ? 'num' : i === 4 ? 'cell-actions' : '' }, t)))),
    tbody);
  const noModels = empty('No models yet', 'Add one below: a Hub repo id such as Qwen/Qwen2.5-0.5B-Instruct, or a local directory.');
  const loadError = h('div', { class: 'form-error', hidden: true });
  const refreshBtn = h('button', { class: 'btn btn-sm', type: 'button', onClick: () => refresh() }, 'Refresh');
  const count = h('span', { class: 'muted' });
  const form = mountForm(ctx, { existingNames: () => models.map((m) => m.name), onAdded: () => refresh() });

  root.append(
    sw.el,
    card({ title: 'Registered models', subtitle: 'Load a model to start its engine; activate one to make it the "default" model', actions: [count, refreshBtn] },
      loadError, h('div', { class: 'table-wrap' }, table, noModels)),
    card({ title: 'Add a model', subtitle: 'Registers it; loading a Hub model pulls its files first' }, form.el));

  function render() {
    syncRows(tbody, rows, models, (m) => m.id, () => modelRow(handlers), (row, m) => row.update(m, pending.get(m.id)));
    table.hidden = models.length === 0;
    noModels.hidden = models.length > 0;
    setText(count, `${models.length} model${models.length === 1 ? '' : 's'}`);
  }

  // ---- data ----

  let inflight = null;
  let again = false;
  async function refresh() {
    if (inflight) {
      again = true; // one more after this one, so the last change is never missed
      return inflight;
    }
    inflight = (async () => {
      try {
        const r = await api.get('/api/models');
        if (destroyed) return;
        models = r.models || [];
        loadError.hidden = true;
        patchDownloads(live.status);
        render();
      } catch (e) {
        if (destroyed || e.status === 401) return;
        setText(loadError, `Could not list the models: ${e.message}`);
        loadError.hidden = false;
      }
    })();
    await inflight;
    inflight = null;
    if (again && !destroyed) {
      again = false;
      refresh();
    }
  }

  // Snapshots carry each pull's live progress; fold it in between list refreshes, unless
  // the list already holds a newer state of that pull (a snapshot can predate a fetch).
  function patchDownloads(st) {
    for (const d of (st && st.downloads) || []) {
      const m = models.find((x) => x.id === d.model_id);
      if (m && !(m.download && m.download.updated > d.updated)) m.download = { ...(m.download || {}), ...d };
    }
  }

  // A change worth a fresh list: an engine's state, the default, a pull's state.
  let lastSig = '';
  const offStatus = live.on('status', (st) => {
    const sig = JSON.stringify([st.default_model, (st.engines || []).map((e) => [e.model, e.state]),
      (st.downloads || []).map((d) => [d.model_id, d.state, d.active])]);
    patchDownloads(st);
    render();
    sw.update(st);
    if (sig !== lastSig) {
      lastSig = sig;
      refresh();
    }
  });
  const offEvent = live.on('event', () => refresh());

  // ---- actions ----

  async function run(m, action, work, okText, { quiet = false } = {}) {
    pending.set(m.id, action);
    render();
    try {
      await work();
      if (okText) toast(okText, 'ok');
    } catch (e) {
      if (e.status !== 401 && !quiet) toast(`${action} ${m.name}: ${e.message}`, 'error');
    } finally {
      pending.delete(m.id);
      if (!destroyed) await refresh();
    }
  }

  const handlers = {
    load: (m) => run(m, 'load', () => api.post(modelPath(m, 'load')),
      isHub(m) && !m.path ? `Pulling ${m.name}; it loads when the download is done` : `Loading ${m.name}`),
    unload: async (m) => {
      if (m.default && !(await confirm({ title: `Unload ${m.name}?`, ok: 'Unload', danger: true,
        message: `${m.name} is the default model. Unloading it leaves no default: requests for "default" fail until another model is activated.` })))
        return;
      run(m, 'unload', () => api.post(modelPath(m, 'unload')), `Unloading ${m.name}; in-flight requests finish first`);
    },
    activate: async (m) => {
      const old = (live.status && live.status.default_model) || null;
      const ok = await confirm({
        title: `Make ${m.name} the default?`, ok: 'Activate',
        message: [h('p', null, `Folio starts ${m.name}'s engine (if it is not running), waits until it is ready, then points "default" at it.`),
          old && old !== m.name ? h('p', null, `The current default, ${old}, then drains its in-flight requests and stops. No request fails during the switch.`) : null],
      });
      if (!ok) return;
      sw.start(m.name, old, live.status);
      sw.el.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
      let failure = null;
      await run(m, 'activate', async () => {
        try {
          await api.post(modelPath(m, 'activate'));
        } catch (e) {
          failure = e;
          throw e;
        }
      }, '', { quiet: true }); // the switch panel shows the failure
      sw.finish(!failure, failure ? failure.message : '', live.status);
    },
    delete: async (m) => {
      const ok = await confirm({
        title: `Delete ${m.name}?`, ok: 'Delete', danger: true,
        message: [h('p', null, `This removes ${m.name} from the registry${m.loaded ? ' after its engine drains and stops' : ''}.`),
          isHub(m) ? h('p', { class: 'muted' }, 'A pull in progress is cancelled.') : null],
      });
      if (ok) run(m, 'delete', () => api.del(modelPath(m)), `Deleted ${m.name}`);
    },
    pull: (m) => run(m, 'pull', () => api.post(modelPath(m, 'pull')), `Pulling ${m.repo_id}`),
    cancel: (m) => run(m, 'cancel', () => api.del(modelPath(m, 'pull')), `Cancelled the pull of ${m.name}`),
  };

  refresh();
  return () => {
    destroyed = true;
    offStatus();
    offEvent();
    form.destroy();
  };
}
