// #/playground: chat with a loaded model through foliod's own /v1 (the same route clients
// use), streaming the reply as it is generated. The console's session cookie goes along
// (same origin); if foliod still asks for an API key, the user can paste one, kept only in
// this page's memory. TTFT is measured from send to the first output (text, reasoning or a
// tool call), tokens/s as completion tokens over the time from send to the last token.
// Chat mode also takes function tools (OpenAI's shape) and a tool_choice: the reply's
// reasoning shows in a collapsible "Thinking" block, each tool call as its own block, and the
// user answers the calls with tool results that go back in the next request.
import { ApiError, errorMessage } from '../lib/api.js';
import {
  applyChunk, callsOf, formatArguments, historyMessages, newReply, parseTools, reasoningTokens, toolChoice,
} from '../lib/chat-stream.js';
import { fill, h, setText } from '../lib/dom.js';
import * as f from '../lib/format.js';
import { card } from '../lib/ui.js';

export const title = 'Playground';

// The conversation outlives a visit to another view (not a reload).
const session = {
  // {role: 'user'|'assistant'|'tool', content, mode, model, stats, error, stopped; an
  // assistant's reasoning, tool_calls (OpenAI's shape), finish, reasoningTokens; a tool
  // result's tool_call_id and name}
  turns: [],
  model: '',
  mode: 'chat',
  system: '',
  temperature: '0.7',
  maxTokens: '256',
  tools: '', // the Tools setting's text (a JSON list of function tools, or empty)
  toolChoice: 'auto', // auto | none | required | fn:NAME
  apiKey: '',
};

const TOOLS_PLACEHOLDER = '[{"type": "function", "function": {\n  "name": "get_weather",\n  "parameters": {"type": "object",\n    "properties": {"city": {"type": "string"}}}}}]';

/**
 * POSTs `body` to `url` with stream: true and calls onChunk(chunk) for each parsed chunk as it
 * arrives. Throws ApiError for an HTTP error and Error for an error sent inside the stream.
 */
async function streamCompletion(url, body, { signal, apiKey, onChunk }) {
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
      if (data === '[DONE]') return;
      let chunk;
      try {
        chunk = JSON.parse(data);
      } catch {
        continue;
      }
      if (chunk.error) throw new Error(chunk.error.message || String(chunk.error));
      onChunk(chunk);
    }
  }
}

export function mount(root, ctx) {
  const { api, live } = ctx;
  let destroyed = false;
  let controller = null; // the reply being streamed
  let resultsForm = null; // the tool results form under the last reply, when it called tools

  // ---- settings ----
  const model = h('select', { id: 'pg-model', 'aria-label': 'Model' });
  const modelHint = h('div', { class: 'field-hint' });
  const modeChat = h('input', { type: 'radio', name: 'pg-mode', value: 'chat', id: 'pg-mode-chat' });
  const modeText = h('input', { type: 'radio', name: 'pg-mode', value: 'completion', id: 'pg-mode-completion' });
  const system = h('textarea', { id: 'pg-system', rows: 4, placeholder: 'You are a helpful assistant.' });
  const temperature = h('input', { id: 'pg-temperature', type: 'number', min: 0, max: 2, step: 0.1, inputmode: 'decimal' });
  const maxTokens = h('input', { id: 'pg-max-tokens', type: 'number', min: 1, max: 131072, step: 1, inputmode: 'numeric' });
  const tools = h('textarea', { id: 'pg-tools', class: 'code-input', rows: 5, spellcheck: 'false', autocomplete: 'off',
    placeholder: TOOLS_PLACEHOLDER, 'aria-describedby': 'pg-tools-hint pg-tools-error' });
  const toolsError = h('div', { id: 'pg-tools-error', class: 'field-error', role: 'alert' });
  const toolChoiceSel = h('select', { id: 'pg-tool-choice', 'aria-describedby': 'pg-tool-choice-hint' });
  const apiKey = h('input', { id: 'pg-api-key', type: 'password', placeholder: 'folio-\u2026', autocomplete: 'off' });
  const apiKeyField = h('div', { class: 'field', hidden: !session.apiKey },
    h('label', { class: 'field-label', for: 'pg-api-key' }, 'API key for /v1'), apiKey,
    h('div', { class: 'field-hint' }, 'Kept in this page only. Create one under API keys.'));
  const systemField = h('div', { class: 'field' }, h('label', { class: 'field-label', for: 'pg-system' }, 'System prompt'), system);
  // Chat only: completion mode hides them.
  const toolsFields = h('div', { class: 'pg-tools' },
    h('div', { class: 'field' }, h('label', { class: 'field-label', for: 'pg-tools' }, 'Tools'), tools,
      h('div', { class: 'field-hint', id: 'pg-tools-hint' }, 'A JSON list of OpenAI function tools; empty for none.'), toolsError),
    h('div', { class: 'field' }, h('label', { class: 'field-label', for: 'pg-tool-choice' }, 'Tool choice'), toolChoiceSel,
      h('div', { class: 'field-hint', id: 'pg-tool-choice-hint' }, 'auto: the model decides; required: at least one call; a name: that function.')));

  model.value = session.model;
  system.value = session.system;
  temperature.value = session.temperature;
  maxTokens.value = session.maxTokens;
  tools.value = session.tools;
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
    toolsFields,
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

  // ---- tools setting ----
  // The tool choice lists one entry per function of the last Tools text that parsed; the
  // user's pick is kept (session.toolChoice) while an edit removes and brings back its name.
  function fillToolChoice(names) {
    const fns = names.map((n) => h('option', { value: `fn:${n}` }, n));
    toolChoiceSel.replaceChildren(
      h('option', { value: 'auto' }, 'auto'), h('option', { value: 'none' }, 'none'), h('option', { value: 'required' }, 'required'),
      fns.length ? h('optgroup', { label: 'Function' }, fns) : null);
    toolChoiceSel.value = session.toolChoice === 'auto' || session.toolChoice === 'none' || session.toolChoice === 'required' ||
      names.some((n) => `fn:${n}` === session.toolChoice) ? session.toolChoice : 'auto';
    toolChoiceSel.disabled = !names.length;
  }
  function showToolsError(msg) {
    setText(toolsError, msg || '');
    tools.classList.toggle('is-invalid', !!msg);
    if (msg) tools.setAttribute('aria-invalid', 'true');
    else tools.removeAttribute('aria-invalid');
  }
  function syncTools() {
    const r = parseTools(tools.value);
    if (!r.error) fillToolChoice(r.names);
    // The error shows on send; once shown, it follows the text (and goes when it parses).
    if (!r.error || toolsError.textContent) showToolsError(r.error);
    return r;
  }
  /** The tools for a chat request, or null (with the error shown) when the text is wrong. */
  function checkTools() {
    const r = syncTools();
    if (r.error) {
      showToolsError(r.error);
      tools.focus();
      return null;
    }
    return r;
  }

  // ---- messages ----
  function callBlock(call) {
    const name = h('code', { class: 'tool-call-name', 'data-field': 'name' });
    const args = h('pre', { class: 'tool-call-args', 'data-field': 'arguments' });
    const el = h('div', { class: 'tool-call', role: 'group' },
      h('div', { class: 'tool-call-head' }, h('span', { class: 'tool-call-label' }, 'Tool call'), name), args);
    const c = { el, name, args };
    updateCall(c, call);
    return c;
  }
  function updateCall(c, call) {
    const fnName = call.function.name || '\u2026';
    setText(c.name, fnName);
    c.el.setAttribute('aria-label', `Tool call: ${fnName}`);
    if (call.id) c.el.dataset.callId = call.id;
    const a = formatArguments(call.function.arguments);
    setText(c.args, a.text);
    c.args.dataset.parsed = String(a.parsed);
  }

  function thinkingSummary(t, streaming) {
    if (streaming) return 'Thinking\u2026';
    return Number.isFinite(t.reasoningTokens) ? `Thought for ${f.num(t.reasoningTokens)} tokens` : 'Thinking';
  }

  function messageEl(t) {
    const body = h('div', { class: 'msg-body' }, t.content);
    const meta = h('div', { class: 'msg-meta' });
    let who;
    if (t.role === 'user') who = t.mode === 'completion' ? 'Prompt' : 'You';
    else if (t.role === 'tool') who = `Tool result \u00b7 ${t.name || t.tool_call_id}`;
    else who = t.model || 'Assistant';
    const summary = h('summary', null, thinkingSummary(t, false));
    const thinkingBody = h('div', { class: 'msg-thinking-body' }, t.reasoning || '');
    const thinking = h('details', { class: 'msg-thinking', hidden: !t.reasoning }, summary, thinkingBody);
    const calls = h('div', { class: 'msg-calls' });
    const callEls = [];
    (t.tool_calls || []).forEach((c, i) => {
      callEls[i] = callBlock(c);
      calls.append(callEls[i].el);
    });
    const note = h('div', { class: 'msg-note' });
    const el = h('div', { class: ['msg', `msg-${t.role}`, t.error && 'msg-error', t.tool_calls && t.tool_calls.length && 'has-calls'] },
      h('div', { class: 'msg-role' }, who), t.role === 'assistant' ? thinking : null, body, calls, note, meta);
    if (t.stats) setText(meta, statsText(t.stats));
    if (t.error) {
      meta.append(h('div', { class: 'msg-error-text' }, t.error));
      if (t.hint) meta.append(h('div', { class: 'msg-hint' }, t.hint));
    }
    const v = { el, body, meta, thinking, summary, thinkingBody, calls, callEls, note };
    noteFor(v, t);
    return v;
  }

  function noteFor(v, t) {
    setText(v.note, t.finish === 'length' && t.tool_calls && t.tool_calls.length
      ? 'Cut short by Max tokens: the last call\u2019s arguments may be incomplete.' : '');
  }

  // The reply's calls, answered: one result field a call, one button for them all.
  function addResultsForm(v, t) {
    const calls = t.tool_calls;
    const err = h('div', { id: 'pg-tool-results-error', class: 'field-error', role: 'alert' });
    const inputs = calls.map((c, i) => h('textarea', {
      id: `pg-tool-result-${i}`, class: 'tool-result-input code-input', rows: 2, spellcheck: 'false',
      'data-call-id': c.id, placeholder: 'What the function returned (text or JSON)', 'aria-describedby': 'pg-tool-results-error',
    }));
    const button = h('button', { id: 'pg-send-results', class: 'btn btn-primary btn-sm', type: 'submit' },
      calls.length > 1 ? 'Send results' : 'Send result');
    const form = h('form', { class: 'tool-results', 'aria-label': 'Tool results' },
      calls.map((c, i) => h('div', { class: 'field' },
        h('label', { class: 'field-label', for: inputs[i].id }, 'Tool result for ', h('code', null, c.function.name || '?'),
          c.id ? h('span', { class: 'tool-result-id' }, ` (${c.id})`) : null),
        inputs[i])),
      err,
      h('div', { class: 'tool-results-actions' }, button));
    for (const i of inputs) i.addEventListener('input', () => i.removeAttribute('aria-invalid'));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      sendResults(t, inputs, err);
    });
    v.el.append(form);
    resultsForm = form;
  }
  // A reply whose calls await results (when it is the last turn).
  const awaitsResults = (t) => t.role === 'assistant' && !t.error && !t.stopped && t.mode === 'chat' &&
    !!t.tool_calls && t.tool_calls.length > 0;

  function renderAll() {
    resultsForm = null;
    if (!session.turns.length) {
      output.replaceChildren(h('div', { class: 'pg-empty' },
        h('div', { class: 'empty-title' }, 'Try a model'),
        h('div', { class: 'empty-text' }, 'Pick a loaded model, type a message and press Enter. Replies stream in as they are generated.')));
      return;
    }
    output.replaceChildren(...session.turns.map((t, i, all) => {
      const v = messageEl(t);
      if (i === all.length - 1 && awaitsResults(t)) addResultsForm(v, t);
      return v.el;
    }));
    output.scrollTop = output.scrollHeight;
  }

  function busyUI(on) {
    send.disabled = on;
    send.classList.toggle('is-busy', on);
    stop.hidden = !on;
    clear.disabled = on;
    const b = resultsForm && resultsForm.querySelector('#pg-send-results');
    if (b) b.disabled = on;
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
    const toolSpec = m === 'chat' ? checkTools() : null;
    if (m === 'chat' && !toolSpec) return;
    input.value = '';
    await run(m, [{ role: 'user', content: text, mode: m }], toolSpec);
  }

  async function sendResults(t, inputs, err) {
    if (controller) return;
    const empty = inputs.find((i) => !i.value.trim());
    if (empty) {
      setText(err, inputs.length > 1 ? 'Enter a result for each call.' : 'Enter the tool\u2019s result.');
      empty.setAttribute('aria-invalid', 'true');
      empty.focus();
      return;
    }
    if (!model.value) {
      setText(modelHint, 'Pick a model first (load one on the Models page).');
      return;
    }
    const toolSpec = checkTools();
    if (!toolSpec) return;
    await run('chat', t.tool_calls.map((c, i) => ({
      role: 'tool', tool_call_id: c.id, name: c.function.name, content: inputs[i].value, mode: 'chat',
    })), toolSpec);
  }

  /** Appends `turns` (a user message, or tool results) and streams the reply to them. */
  async function run(m, turns, toolSpec) {
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
      // Earlier turns that succeeded, then these.
      msgs.push(...historyMessages(session.turns), ...historyMessages(turns));
      body.messages = msgs;
      if (toolSpec && toolSpec.tools.length) {
        body.tools = toolSpec.tools;
        body.tool_choice = toolChoice(toolChoiceSel.value);
      }
    } else {
      url = '/v1/completions';
      body.prompt = turns[0].content;
    }

    const reply = { role: 'assistant', content: '', model: model.value, mode: m };
    if (!session.turns.length) output.replaceChildren();
    if (resultsForm) resultsForm.remove();
    resultsForm = null;
    session.turns.push(...turns, reply);
    for (const t of turns) output.append(messageEl(t).el);
    const view = messageEl(reply);
    view.el.classList.add('is-streaming');
    view.thinking.open = true;
    setText(view.summary, thinkingSummary(reply, true));
    output.append(view.el);
    output.scrollTop = output.scrollHeight;
    controller = new AbortController();
    busyUI(true);

    const acc = newReply();
    const t0 = performance.now();
    let tFirst = null;
    let pieces = 0;
    try {
      await streamCompletion(url, body, {
        signal: controller.signal,
        apiKey: apiKey.value.trim(),
        onChunk: (chunk) => {
          const ch = applyChunk(acc, chunk);
          if (!ch.content && !ch.reasoning && !ch.calls.length) return;
          if (tFirst === null) tFirst = performance.now();
          pieces++;
          if (ch.reasoning) {
            reply.reasoning = acc.reasoning;
            view.thinking.hidden = false;
            view.thinkingBody.textContent = acc.reasoning;
          }
          if (ch.content) {
            reply.content = acc.content;
            view.body.textContent = acc.content;
          }
          for (const i of ch.calls) {
            const call = acc.toolCalls[i];
            if (view.callEls[i]) {
              updateCall(view.callEls[i], call);
            } else {
              view.callEls[i] = callBlock(call);
              view.calls.replaceChildren(...view.callEls.filter(Boolean).map((c) => c.el));
            }
          }
          if (ch.calls.length) {
            reply.tool_calls = callsOf(acc);
            view.el.classList.add('has-calls');
          }
          // The cursor follows the reasoning until the answer (text or a call) starts.
          view.el.classList.toggle('is-thinking', !!acc.reasoning && !acc.content && !callsOf(acc).length);
          // Follow the reply unless the reader scrolled up to read.
          if (output.scrollHeight - output.scrollTop - output.clientHeight < 80) output.scrollTop = output.scrollHeight;
        },
      });
      const tEnd = performance.now();
      const usage = acc.usage;
      const tokens = usage && Number.isFinite(usage.completion_tokens) ? usage.completion_tokens : pieces;
      reply.stats = { ttftMs: tFirst === null ? null : tFirst - t0, tps: tokens / Math.max(0.001, (tEnd - t0) / 1000), tokens };
      reply.finish = acc.finishReason;
      reply.reasoningTokens = reasoningTokens(usage);
      if (!reply.content && !callsOf(acc).length) view.body.textContent = '(empty reply)';
      setText(view.meta, statsText(reply.stats));
      setText(stats, `Last reply: ${statsText(reply.stats)}`);
      noteFor(view, reply);
    } catch (e) {
      if (e.name === 'AbortError') {
        reply.stopped = true;
        setText(view.meta, 'Stopped');
        if (!reply.content && !callsOf(acc).length) reply.error = 'Stopped before any text arrived';
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
      view.el.classList.remove('is-streaming', 'is-thinking');
      setText(view.summary, thinkingSummary(reply, false));
      view.thinking.open = false;
      controller = null;
      if (!destroyed) {
        const last = session.turns[session.turns.length - 1];
        if (last === reply && awaitsResults(reply)) addResultsForm(view, reply);
        busyUI(false);
        if (resultsForm) resultsForm.querySelector('textarea').focus();
        else input.focus();
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
    toolsFields.hidden = session.mode !== 'chat';
  };
  modeChat.addEventListener('change', syncMode);
  modeText.addEventListener('change', syncMode);
  model.addEventListener('change', () => { session.model = model.value; });
  system.addEventListener('input', () => { session.system = system.value; });
  temperature.addEventListener('input', () => { session.temperature = temperature.value; });
  maxTokens.addEventListener('input', () => { session.maxTokens = maxTokens.value; });
  tools.addEventListener('input', () => {
    session.tools = tools.value;
    syncTools();
  });
  toolChoiceSel.addEventListener('change', () => { session.toolChoice = toolChoiceSel.value; });
  apiKey.addEventListener('input', () => { session.apiKey = apiKey.value; });

  syncMode();
  syncTools();
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
