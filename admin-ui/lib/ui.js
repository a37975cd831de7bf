// Shared pieces of the console's look: state badges, progress bars, cards, toasts and the
// confirmation dialog (<dialog id="confirm"> in index.html).
import { $, fill, h } from './dom.js';

// Which colour a state or level gets. Anything unknown is neutral grey.
const TONES = {
  ready: 'green', done: 'green', live: 'green', info: 'blue',
  loading: 'blue', starting: 'blue', queued: 'blue', downloading: 'blue', backoff: 'amber',
  draining: 'amber', warn: 'amber', warning: 'amber',
  failed: 'red', error: 'red', fatal: 'red',
  stopped: 'grey', registered: 'grey', cancelled: 'grey', debug: 'grey',
};
const PULSING = new Set(['loading', 'starting', 'queued', 'downloading', 'backoff', 'draining']);

export const toneOf = (state) => TONES[String(state || '').toLowerCase()] || 'grey';

/** A coloured pill with the state's own word in it (the tests read that text). */
export function badge(state, attrs = {}) {
  const el = h('span', attrs);
  setBadge(el, state);
  return el;
}

/** Updates a badge in place (same element, so live updates do not flicker). */
export function setBadge(el, state) {
  const text = String(state || 'unknown');
  const cls = `badge badge-${toneOf(text)}${PULSING.has(text) ? ' badge-pulse' : ''}`;
  if (el.className !== cls) el.className = cls;
  if (el.textContent !== text) el.textContent = text;
}

/** A horizontal bar for a fraction in [0, 1]. */
export function bar(fraction, tone = '') {
  const fillEl = h('span', { class: 'bar-fill' });
  const el = h('span', { class: `bar ${tone ? `bar-${tone}` : ''}` }, fillEl);
  setBar(el, fraction);
  return el;
}

export function setBar(el, fraction) {
  const f = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
  const w = `${(f * 100).toFixed(1)}%`;
  const fillEl = el.firstChild;
  if (fillEl.style.width !== w) fillEl.style.width = w;
}

/** A card: a header with a title (and optional actions on the right) over a body. */
// Keeps tbody's rows in items' order, one per key: rows (a Map key -> {tr, update}) are made
// by make() when new, updated in place with update(row, item), and dropped when gone.
export function syncRows(tbody, rows, items, key, make, update) {
  const seen = new Set();
  items.forEach((item, i) => {
    const k = key(item);
    seen.add(k);
    let row = rows.get(k);
    if (!row) rows.set(k, (row = make()));
    update(row, item);
    if (tbody.children[i] !== row.tr) tbody.insertBefore(row.tr, tbody.children[i] || null);
  });
  for (const [k, row] of rows) {
    if (!seen.has(k)) {
      row.tr.remove();
      rows.delete(k);
    }
  }
}

export function card({ title, subtitle, actions, id, cls = '' }, ...body) {
  return h('section', { class: `card ${cls}`, id },
    title || actions ? h('header', { class: 'card-head' },
      h('div', { class: 'card-titles' }, title ? h('h2', { class: 'card-title' }, title) : null,
        subtitle ? h('p', { class: 'card-subtitle' }, subtitle) : null),
      actions ? h('div', { class: 'card-actions' }, actions) : null) : null,
    h('div', { class: 'card-body' }, body));
}

/** A quiet centred message for an empty table or list. */
export function empty(title, text) {
  return h('div', { class: 'empty' }, h('div', { class: 'empty-title' }, title), text ? h('div', { class: 'empty-text' }, text) : null);
}

/** Sets a button busy (disabled, with a spinner) while `work` runs; returns its result. */
export async function busy(button, work) {
  button.disabled = true;
  button.classList.add('is-busy');
  try {
    return await work();
  } finally {
    button.classList.remove('is-busy');
    button.disabled = false;
  }
}

/** A toast at the bottom right: kind is 'ok', 'error' or 'info'. */
export function toast(message, kind = 'info', ms = kind === 'error' ? 7000 : 3500) {
  const box = $('#toasts');
  if (!box) return;
  const close = h('button', { class: 'toast-close', type: 'button', 'aria-label': 'Dismiss' }, '\u00d7');
  const el = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    h('span', { class: 'toast-text' }, message), close);
  const remove = () => el.remove();
  close.addEventListener('click', remove);
  box.appendChild(el);
  setTimeout(remove, ms);
}

let pendingConfirm = null;

/**
 * Asks in the modal <dialog id="confirm">; resolves true for OK, false for Cancel or Escape.
 * `message` may be a string or nodes (built with h, so server text stays text).
 */
export function confirm({ title, message, ok = 'OK', danger = false }) {
  const dlg = $('#confirm');
  if (pendingConfirm) pendingConfirm(false, true); // a second question replaces the first
  $('#confirm-title', dlg).textContent = title;
  const body = $('#confirm-message', dlg);
  if (typeof message === 'string') body.textContent = message;
  else fill(body, message); // nodes built with h(); nulls are skipped
  const okBtn = $('#confirm-ok', dlg);
  okBtn.textContent = ok;
  okBtn.className = `btn ${danger ? 'btn-danger' : 'btn-primary'}`;
  dlg.returnValue = '';
  return new Promise((resolve) => {
    const done = (v, keepOpen = false) => {
      dlg.removeEventListener('close', onClose);
      if (pendingConfirm === done) pendingConfirm = null;
      if (!keepOpen && dlg.open) dlg.close();
      resolve(v);
    };
    const onClose = () => done(dlg.returnValue === 'ok');
    pendingConfirm = done;
    dlg.addEventListener('close', onClose);
    if (!dlg.open) dlg.showModal();
    okBtn.focus();
  });
}
