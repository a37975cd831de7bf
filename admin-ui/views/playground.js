// #/playground: chat with a loaded model through foliod's own /v1 (the same route clients
// use), streaming the reply as it is generated. The console's session cookie goes along
// (same origin); if foliod still asks for an API key, the user can paste one, kept only in
// this page's memory. TTFT is measured from send to the first text, tokens/s as completion
// tokens over the time from send to the last token.
import { ApiError, errorMessage } from '../lib/api.js';
import { fill, h, setText } from '../lib/dom.js';
import * as f from '../lib/format.js';
import { card } from '../lib/ui.js';

export const title = 'Playground';

// The conversation outlives a visit to another view (not a reload).
const session = {
  turns: [], // {role: 'user'|'assistant', content, model, stats, error}
  model: '',
  mode: 'chat',
  system: '',
  temperature: '0.7',
  maxTokens: '256',
  apiKey: '',
};

/**
 * POSTs `body` to `url` with stream: true and calls onText(piece) for each piece of text as
 * it arrives. Resolves with the usage chunk (or null). Throws ApiError for an HTTP error and
 * Error for an error sent inside the stream.
 */
async function streamCompletion(url, body, { signal, apiKey, pick, onText }) {
  const headers = { 'Content-Type': 'application/json', Accept: 'text/event-stream' };
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  let r;
  try {
    r = await fetch(url, { method: 'POST', credentials: 'same-origin', headers, body: JSON.stringify(body), signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'Cannot reach foliod (is it running?)');
  }
  if (!r.ok) {
    const text = await r.text().catch(() => '');
    let data = null;
    try {
      data = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    throw new ApiError(r.status, errorMessage(r.status, text, data), data);
  }
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  let usage = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    // Server-sent events: lines, "data: <json>"; a blank line ends an event.
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
      if (!line.startsWith('data:')) continue;
      const data = line.slice(5).trim();
      if (data === '[DONE]') return usage;
      let chunk;
      try {
        chunk = JSON.parse(data);
      } catch {
        continue;
      }
      if (chunk.error) throw new Error(chunk.error.message || String(chunk.error));
      if (chunk.usage) usage = chunk.usage;
      const piece = pick(chunk);
      if (piece) onText(piece);
    }
  }
  return usage;
}

const pickChat = (c) => c.choices && c.choices[0] && c.choices[0].delta && c.choices[0].delta.content;
const pickText = (c) => c.choices && c.choices[0] && c.choices[0].text;

export function mount(root, ctx) {
  const { api, live } = ctx;
  let destroyed = false;
  let controller = null; // the reply being streamed

  // ---- settings ----
  const model = h('select', { id: 'pg-model', 'aria-label': 'Model' });
  const modelHint = h('div', { class: 'field-hint' });
  const modeChat = h('input', { type: 'radio', name: 'pg-mode', value: 'chat', id: 'pg-mode-chat' });
  const modeText = h('input', { type: 'radio', name: 'pg-mode', value: 'completion', id: 'pg-mode-completion' });
  const system = h('textarea', { id: 'pg-system', rows: 4, placeholder: 'You are a helpful assistant.' });
  const temperature = h('input', { id: 'pg-temperature', type: 'number', min: 0, max: 2, step: 0.1, inputmode: 'decimal' });
  const maxTokens = h('input', { id: 'pg-max-tokens', type: 'number', min: 1, max: 131072, step: 1, inputmode: 'numeric' });
  const apiKey = h('input', { id: 'pg-api-key', type: 'password', placeholder: 'folio-\u2026', autocomplete: 'off' });
  const apiKeyField = h('div', { class: 'field', hidden: !session.apiKey },
    h('label', { class: 'field-label', for: 'pg-api-key' }, 'API key for /v1'), apiKey,
    h('div', { class: 'field-hint' }, 'Kept in this page only. Create one under API keys.'));
  const systemField = h('div', { class: 'field' }, h('label', { class: 'field-label', for: 'pg-system' }, 'System prompt'), system);

  model.value = session.model;
  system.value = session.system;
  temperature.value = session.temperature;
  maxTokens.value = session.maxTokens;
  apiKey.value = session.apiKey;
  (session.mode === 'chat' ? modeChat : modeText).checked = true;

  const settings = card({ title: 'Settings', cls: 'pg-settings' },
    h('div', { class: 'field' }, h('label', { class: 'field-label', for: 'pg-model' }, 'Model'), model, modelHint),
    h('div', { class: 'field' }, h('span', { class: 'field-label' }, 'Mode'),
      h('div', { class: 'segmented', role: 'radiogroup' },
        h('label', null, modeChat, h('span', null, 'Chat')), h('label', null, modeText, h('span', null, 'Completion'))),
      h('div', { class: 'field-hint' }, 'Completion sends the text as a raw prompt (for base models without a chat template).')),
    systemField,
    h('div', { class: 'field-row' },
      h('div', { class: 'field' }, h('label', { class: 'field-label', for: 'pg-temperature' }, 'Temperature'), temperature),
      h('div', { class: 'field' }, h('label', { class: 'field-label', for: 'pg-max-tokens' }, 'Max tokens'), maxTokens)),
    apiKeyField);

  // ---- conversation ----
  const output = h('div', { id: 'pg-output', class: 'pg-output', 'aria-live': 'polite' });
  const input = h('textarea', { id: 'pg-input', rows: 3, placeholder: 'Send a message (Enter to send, Shift+Enter for a new line)' });
  const send = h('button', { id: 'pg-send', class: 'btn btn-primary', type: 'button' }, 'Send');
  const stop = h('button', { id: 'pg-stop', class: 'btn', type: 'button', hidden: true }, 'Stop');
  const clear = h('button', { id: 'pg-clear', class: 'btn btn-ghost', type: 'button' }, 'Clear');
  const stats = h('div', { id: 'pg-stats', class: 'pg-stats' }, 'No reply yet');
  const chat = card({ title: 'Conversation', cls: 'pg-chat', actions: clear },
    output,
    h('div', { class: 'composer' }, input, h('div', { class: 'composer-actions' }, stop, send)),
    stats);
  root.append(h('div', { class: 'playground' }, settings, chat));

  const mode = () => (modeText.checked ? 'completion' : 'chat');
  const statsText = (s) => `TTFT ${f.ms(s.ttftMs)} \u00b7 ${f.num(s.tps, 1)} tok/s \u00b7 ${f.num(s.tokens)} tokens`;

  function messageEl(t) {
    const body = h('div', { class: 'msg-body' }, t.content);
    const meta = h('div', { class: 'msg-meta' });
    const who = t.role === 'user' ? (t.mode === 'completion' ? 'Prompt' : 'You') : t.model || 'Assistant';
    const el = h('div', { class: `msg msg-${t.role}${t.error ? ' msg-error' : ''}` }, h('div', { class: 'msg-role' }, who), body, meta);
    if (t.stats) setText(meta, statsText(t.stats));
    if (t.error) {
      meta.append(h('div', { class: 'msg-error-text' }, t.error));
      if (t.hint) meta.append(h('div', { class: 'msg-hint' }, t.hint));
    }
    return { el, body, meta };
  }

  function renderAll() {
    if (!session.turns.length) {
      output.replaceChildren(h('div', { class: 'pg-empty' },
        h('div', { class: 'empty-title' }, 'Try a model'),
        h('div', { class: 'empty-text' }, 'Pick a loaded model, type a message and press Enter. Replies stream in as they are generated.')));
      return;
    }
    output.replaceChildren(...session.turns.map((t) => messageEl(t).el));
    output.scrollTop = output.scrollHeight;
  }

  function busyUI(on) {
    send.disabled = on;
    send.classList.toggle('is-busy', on);
    stop.hidden = !on;
    clear.disabled = on;
  }

  // ---- models ----
  async function loadModels() {
    try {
      const r = await api.get('/api/models');
      if (destroyed) return;
      const loaded = (r.models || []).filter((m) => m.loaded || m.state === 'ready');
      const want = model.value || session.model;
      const def = loaded.find((m) => m.default);
      model.replaceChildren(...loaded.map((m) => h('option', { value: m.name },
        `${m.name}${m.default ? ' (default)' : ''}${m.state !== 'ready' ? ` \u2014 ${m.state}` : ''}`)));
      const pick = loaded.find((m) => m.name === want) || def || loaded[0];
      if (pick) model.value = pick.name;
      session.model = model.value;
      send.disabled = !loaded.length || !!controller;
      setText(modelHint, loaded.length ? '' : 'No model is loaded: load one on the Models page.');
    } catch {
      /* the next snapshot retries */
    }
  }
  let lastSig = '';
  const offStatus = live.on('status', (st) => {
    const sig = JSON.stringify([st.default_model, (st.engines || []).map((e) => [e.model, e.state])]);
    if (sig !== lastSig) {
      lastSig = sig;
      loadModels();
    }
  });

  // ---- send ----
  async function submit() {
    const text = input.value;
    if (!text.trim() || controller) return;
    if (!model.value) {
      setText(modelHint, 'Pick a model first (load one on the Models page).');
      return;
    }
    const m = mode();
    const temp = Number(temperature.value);
    const maxTok = Number.parseInt(maxTokens.value, 10);
    const body = { model: model.value, stream: true, stream_options: { include_usage: true } };
    if (temperature.value !== '' && Number.isFinite(temp)) body.temperature = temp;
    if (Number.isFinite(maxTok) && maxTok > 0) body.max_tokens = maxTok;
    let url;
    if (m === 'chat') {
      url = '/v1/chat/completions';
      const msgs = [];
      if (system.value.trim()) msgs.push({ role: 'system', content: system.value });
      // Earlier turns that succeeded, then this one.
      for (const t of session.turns) if (!t.error && t.mode === 'chat') msgs.push({ role: t.role, content: t.content });
      msgs.push({ role: 'user', content: text });
      body.messages = msgs;
    } else {
      url = '/v1/completions';
      body.prompt = text;
    }

    const user = { role: 'user', content: text, mode: m };
    const reply = { role: 'assistant', content: '', model: model.value, mode: m };
    if (!session.turns.length) output.replaceChildren();
    session.turns.push(user, reply);
    output.append(messageEl(user).el);
    const view = messageEl(reply);
    view.el.classList.add('is-streaming');
    output.append(view.el);
    output.scrollTop = output.scrollHeight;
    input.value = '';
    controller = new AbortController();
    busyUI(true);

    const t0 = performance.now();
    let tFirst = null;
    let pieces = 0;
    try {
      const usage = await streamCompletion(url, body, {
        signal: controller.signal,
        apiKey: apiKey.value.trim(),
        pick: m === 'chat' ? pickChat : pickText,
        onText: (piece) => {
          if (tFirst === null) tFirst = performance.now();
          pieces++;
          reply.content += piece;
          view.body.textContent = reply.content;
          // Follow the reply unless the reader scrolled up to read.
          if (output.scrollHeight - output.scrollTop - output.clientHeight < 80) output.scrollTop = output.scrollHeight;
        },
      });
      const tEnd = performance.now();
      const tokens = usage && Number.isFinite(usage.completion_tokens) ? usage.completion_tokens : pieces;
      reply.stats = { ttftMs: tFirst === null ? null : tFirst - t0, tps: tokens / Math.max(0.001, (tEnd - t0) / 1000), tokens };
      if (!reply.content) view.body.textContent = '(empty reply)';
      setText(view.meta, statsText(reply.stats));
      setText(stats, `Last reply: ${statsText(reply.stats)}`);
    } catch (e) {
      if (e.name === 'AbortError') {
        reply.stopped = true;
        setText(view.meta, 'Stopped');
        if (!reply.content) reply.error = 'Stopped before any text arrived';
      } else {
        reply.error = e.message;
        if (e instanceof ApiError && e.status === 401) {
          reply.error = 'foliod refused the request (401): API keys exist and it did not accept this session on /v1.';
          reply.hint = 'Paste an API key in Settings (left) and send again.';
          apiKeyField.hidden = false;
        } else if (/chat template/i.test(e.message)) {
          reply.hint = 'This looks like a base model: switch Mode to Completion, or register it with a chat_template.';
        } else if (e instanceof ApiError && e.status === 503) {
          reply.hint = 'The model is not ready: load it on the Models page, or wait until it is.';
        }
        view.el.classList.add('msg-error');
        fill(view.meta, h('div', { class: 'msg-error-text' }, reply.error), reply.hint ? h('div', { class: 'msg-hint' }, reply.hint) : null);
        if (!reply.content) view.body.textContent = '';
        setText(stats, 'Last reply failed');
      }
    } finally {
      view.el.classList.remove('is-streaming');
      controller = null;
      if (!destroyed) {
        busyUI(false);
        input.focus();
      }
    }
  }

  send.addEventListener('click', submit);
  stop.addEventListener('click', () => controller && controller.abort());
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      submit();
    }
  });
  clear.addEventListener('click', () => {
    session.turns = [];
    setText(stats, 'No reply yet');
    renderAll();
    input.focus();
  });
  const syncMode = () => {
    session.mode = mode();
    system.disabled = session.mode !== 'chat';
    systemField.classList.toggle('is-disabled', session.mode !== 'chat');
  };
  modeChat.addEventListener('change', syncMode);
  modeText.addEventListener('change', syncMode);
  model.addEventListener('change', () => { session.model = model.value; });
  system.addEventListener('input', () => { session.system = system.value; });
  temperature.addEventListener('input', () => { session.temperature = temperature.value; });
  maxTokens.addEventListener('input', () => { session.maxTokens = maxTokens.value; });
  apiKey.addEventListener('input', () => { session.apiKey = apiKey.value; });

  syncMode();
  renderAll();
  const last = [...session.turns].reverse().find((t) => t.stats);
  if (last) setText(stats, `Last reply: ${statsText(last.stats)}`);
  loadModels();
  return () => {
    destroyed = true;
    offStatus();
    if (controller) controller.abort();
  };
}
