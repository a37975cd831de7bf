// #/keys: API keys for /v1 (once one exists, /v1 needs `Authorization: Bearer KEY`), and the
// Hugging Face token foliod uses for pulls. A new key's plaintext is in the POST answer
// only: it is shown once, with a Copy button, and never stored by the console.
import { h, setText } from '../lib/dom.js';
import * as f from '../lib/format.js';
import { busy, card, empty } from '../lib/ui.js';

export const title = 'API keys';

/** Copies text; without the async clipboard (plain http on a LAN address is not a secure
 * context) it selects the text and falls back to execCommand, leaving it selected. */
async function copyText(text, el) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    /* fall through */
  }
  const range = document.createRange();
  range.selectNodeContents(el);
  const sel = window.getSelection();
  sel.removeAllRanges();
  sel.addRange(range);
  try {
    return document.execCommand('copy');
  } catch {
    return false;
  }
}

export function mount(root, ctx) {
  const { api, toast, confirm } = ctx;
  let destroyed = false;

  // ---- create ----
  const nameInput = h('input', { id: 'key-name', type: 'text', placeholder: 'e.g. ci-pipeline, alice-laptop', maxlength: 127, autocomplete: 'off' });
  const createBtn = h('button', { id: 'key-create', class: 'btn btn-primary', type: 'submit' }, 'Create key');
  const createError = h('div', { class: 'form-error', role: 'alert', hidden: true });
  const secretBox = h('div', { class: 'secret', hidden: true });
  const createForm = h('form', { class: 'inline-form', novalidate: true },
    h('div', { class: 'field grow' }, h('label', { class: 'field-label', for: 'key-name' }, 'Name'), nameInput),
    createBtn);

  function showSecret(k) {
    const code = h('code', { id: 'key-secret', class: 'secret-value' }, k.key);
    const copy = h('button', { id: 'key-copy', class: 'btn btn-sm', type: 'button' }, 'Copy');
    const done = h('button', { class: 'btn btn-sm btn-ghost', type: 'button' }, 'Done');
    copy.addEventListener('click', async () => {
      const ok = await copyText(k.key, code);
      setText(copy, ok ? 'Copied' : 'Selected: press Ctrl+C');
      setTimeout(() => setText(copy, 'Copy'), 2500);
    });
    done.addEventListener('click', () => {
      secretBox.hidden = true;
      secretBox.replaceChildren(); // the plaintext leaves the page
    });
    secretBox.replaceChildren(
      h('div', { class: 'secret-head' }, h('strong', null, `Key "${k.name || k.prefix}" created`)),
      h('div', { class: 'secret-row' }, code, copy, done),
      h('p', { class: 'secret-warn' }, 'Copy it now: it will not be shown again. foliod keeps only its SHA-256.'),
      h('p', { class: 'muted' }, 'Use it as: Authorization: Bearer <key>'));
    secretBox.hidden = false;
  }

  createForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    createError.hidden = true;
    const name = nameInput.value.trim();
    if (!name) {
      setText(createError, 'Give the key a name, so you know later who uses it.');
      createError.hidden = false;
      nameInput.focus();
      return;
    }
    await busy(createBtn, async () => {
      try {
        const k = await api.post('/api/keys', { name });
        nameInput.value = '';
        showSecret(k);
        await load();
      } catch (e) {
        if (e.status === 401) return;
        setText(createError, e.message);
        createError.hidden = false;
      }
    });
  });

  // ---- list ----
  const tbody = h('tbody');
  const table = h('table', { id: 'keys', class: 'table' },
    h('thead', null, h('tr', null, h('th', null, 'Name'), h('th', null, 'Prefix'), h('th', null, 'Created'),
      h('th', null, 'Last used'), h('th', { class: 'cell-actions' }))),
    tbody);
  const none = empty('No API keys', 'Without a key, /v1 is open to anyone who can reach this port. Create one to require it.');
  const listError = h('div', { class: 'form-error', hidden: true });
  const authNote = h('span', { class: 'muted' });

  function row(k) {
    const revoke = h('button', { class: 'btn btn-sm btn-danger-ghost', type: 'button', 'data-action': 'revoke' }, 'Revoke');
    revoke.addEventListener('click', async () => {
      const ok = await confirm({ title: `Revoke ${k.name || k.prefix}?`, ok: 'Revoke', danger: true,
        message: `Clients using ${k.prefix}\u2026 get 401 from now on. This cannot be undone.` });
      if (!ok) return;
      await busy(revoke, async () => {
        try {
          await api.del(`/api/keys/${encodeURIComponent(k.id)}`);
          toast(`Revoked ${k.name || k.prefix}`, 'ok');
          await load();
        } catch (e) {
          if (e.status !== 401) toast(`Revoke failed: ${e.message}`, 'error');
        }
      });
    });
    return h('tr', { 'data-key-id': k.id },
      h('td', null, h('span', { class: 'cell-name' }, k.name || '(unnamed)')),
      h('td', null, h('code', { class: 'cell-mono' }, `${k.prefix}\u2026`)),
      h('td', { title: f.dateTime(k.created) }, f.ago(k.created)),
      h('td', { title: k.last_used ? f.dateTime(k.last_used) : '' }, k.last_used ? f.ago(k.last_used) : 'never'),
      h('td', { class: 'cell-actions' }, revoke));
  }

  async function load() {
    try {
      const r = await api.get('/api/keys');
      if (destroyed) return;
      const keys = r.keys || [];
      tbody.replaceChildren(...keys.map(row));
      table.hidden = keys.length === 0;
      none.hidden = keys.length > 0;
      listError.hidden = true;
      setText(authNote, keys.length ? '/v1 requires a key' : '/v1 is open (no key)');
    } catch (e) {
      if (destroyed || e.status === 401) return;
      setText(listError, `Could not list the keys: ${e.message}`);
      listError.hidden = false;
    }
  }

  // ---- Hub token ----
  const tokenState = h('span', { class: 'muted' });
  const tokenInput = h('input', { id: 'hf-token', type: 'password', placeholder: 'hf_\u2026', autocomplete: 'off' });
  const tokenSave = h('button', { class: 'btn', type: 'submit' }, 'Save token');
  const tokenClear = h('button', { class: 'btn btn-danger-ghost', type: 'button', hidden: true }, 'Remove');
  const tokenForm = h('form', { class: 'inline-form', novalidate: true },
    h('div', { class: 'field grow' }, h('label', { class: 'field-label', for: 'hf-token' }, 'Hugging Face token'), tokenInput),
    tokenSave, tokenClear);

  function showSettings(s) {
    const where = { environment: 'set in the environment (HF_TOKEN); it takes precedence', settings: 'set here', none: 'not set' };
    setText(tokenState, `Token: ${where[s.hf_token_source] || (s.hf_token_set ? 'set' : 'not set')} \u00b7 endpoint ${s.hf_endpoint || ''}`);
    tokenClear.hidden = s.hf_token_source !== 'settings';
  }
  async function putToken(value, button, okText) {
    await busy(button, async () => {
      try {
        showSettings(await api.put('/api/settings', { hf_token: value }));
        tokenInput.value = '';
        toast(okText, 'ok');
      } catch (e) {
        if (e.status !== 401) toast(`Hub token: ${e.message}`, 'error');
      }
    });
  }
  tokenForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (tokenInput.value.trim()) putToken(tokenInput.value.trim(), tokenSave, 'Hub token saved');
  });
  tokenClear.addEventListener('click', () => putToken('', tokenClear, 'Hub token removed'));

  root.append(
    card({ title: 'Create an API key', subtitle: 'Clients send it as Authorization: Bearer KEY on /v1' }, createForm, createError, secretBox),
    card({ title: 'Keys', actions: authNote }, listError, h('div', { class: 'table-wrap' }, table, none)),
    card({ title: 'Hugging Face Hub', subtitle: 'For gated or private repos. Write-only: foliod never shows it back.' },
      tokenForm, h('div', { class: 'field-hint' }, tokenState)));

  load();
  api.get('/api/settings').then((s) => !destroyed && showSettings(s)).catch(() => {});
  return () => {
    destroyed = true;
  };
}
