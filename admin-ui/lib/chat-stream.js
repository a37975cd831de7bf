// The playground's chat logic that needs no DOM (tests/ui/test_chat_stream.mjs runs it in
// node): joining a streamed reply's chunks (content, reasoning, tool calls by index, the finish
// reason, usage), the "Tools" setting's validation, tool_choice, and the history sent back.

/** An empty reply for applyChunk to fill. */
export function newReply() {
  return { content: '', reasoning: '', toolCalls: [], finishReason: null, usage: null };
}

/**
 * Folds one parsed stream chunk (chat.completion.chunk or text_completion) into `reply`, the
 * first choice only. Returns what changed: {content, reasoning, calls: [indices], finish, usage}
 * (each false / empty when untouched), so a view redraws only those parts.
 *
 * OpenAI's rules: delta.content and delta.reasoning_content (or delta.reasoning, which folio
 * sends as a copy: taken only without reasoning_content) are appended; delta.tool_calls[k]
 * carries `index`, its first delta `id`, `type` and `function.name`, every delta a piece of
 * `function.arguments`, joined by index (parallel calls may interleave).
 */
export function applyChunk(reply, chunk) {
  const changed = { content: false, reasoning: false, calls: [], finish: false, usage: false };
  if (!chunk || typeof chunk !== 'object') return changed;
  if (chunk.usage) {
    reply.usage = chunk.usage;
    changed.usage = true;
  }
  const choice = Array.isArray(chunk.choices) ? chunk.choices.find((c) => !c.index) || null : null;
  if (!choice) return changed;
  const d = choice.delta || {};
  const text = typeof d.content === 'string' ? d.content : typeof choice.text === 'string' ? choice.text : '';
  if (text) {
    reply.content += text;
    changed.content = true;
  }
  const think = typeof d.reasoning_content === 'string' ? d.reasoning_content : typeof d.reasoning === 'string' ? d.reasoning : '';
  if (think) {
    reply.reasoning += think;
    changed.reasoning = true;
  }
  for (const t of Array.isArray(d.tool_calls) ? d.tool_calls : []) {
    const i = Number.isInteger(t.index) ? t.index : reply.toolCalls.length;
    let call = reply.toolCalls[i];
    if (!call) {
      call = { id: '', type: 'function', function: { name: '', arguments: '' } };
      reply.toolCalls[i] = call;
    }
    if (t.id) call.id = t.id;
    if (t.type) call.type = t.type;
    const fn = t.function || {};
    if (fn.name && !call.function.name) call.function.name = fn.name; // the first delta names it
    if (typeof fn.arguments === 'string') call.function.arguments += fn.arguments;
    if (!changed.calls.includes(i)) changed.calls.push(i);
  }
  if (choice.finish_reason) {
    reply.finishReason = choice.finish_reason;
    changed.finish = true;
  }
  return changed;
}

/** The calls of a reply without holes (a stream that skipped an index). */
export const callsOf = (reply) => (reply.toolCalls || []).filter(Boolean);

/** The reasoning tokens a usage reports, or null. */
export function reasoningTokens(usage) {
  const n = usage && usage.completion_tokens_details && usage.completion_tokens_details.reasoning_tokens;
  return Number.isFinite(n) ? n : null;
}

/**
 * A tool call's arguments for display: pretty-printed JSON once they parse, else the text as
 * it is (still streaming, or not JSON). {text, parsed}
 */
export function formatArguments(args) {
  const raw = typeof args === 'string' ? args : '';
  if (raw.trim()) {
    try {
      return { text: JSON.stringify(JSON.parse(raw), null, 2), parsed: true };
    } catch {
      /* not (yet) JSON */
    }
  }
  return { text: raw, parsed: false };
}

/**
 * The "Tools" setting: empty (or only whitespace) is no tools; otherwise a JSON list of
 * {type: "function", function: {name, description?, parameters?}}. Returns {tools, names} or
 * {error} with a message that says what is wrong and where.
 */
export function parseTools(text) {
  if (!text || !text.trim()) return { tools: [], names: [] };
  let v;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return { error: `Tools is not valid JSON: ${e.message}` };
  }
  if (!Array.isArray(v)) return { error: 'Tools must be a JSON list: [{"type": "function", "function": {"name": ...}}, ...]' };
  const names = [];
  for (const [i, t] of v.entries()) {
    const where = `Tool ${i + 1}`;
    if (!t || typeof t !== 'object' || Array.isArray(t)) return { error: `${where} is not an object.` };
    if (t.type !== 'function') return { error: `${where}: "type" must be "function".` };
    const fn = t.function;
    if (!fn || typeof fn !== 'object' || Array.isArray(fn)) return { error: `${where}: "function" must be an object with a "name".` };
    if (typeof fn.name !== 'string' || !fn.name.trim()) return { error: `${where}: "function.name" must be a non-empty string.` };
    if (fn.parameters !== undefined && (!fn.parameters || typeof fn.parameters !== 'object' || Array.isArray(fn.parameters))) {
      return { error: `${where} (${fn.name}): "function.parameters" must be a JSON Schema object.` };
    }
    if (names.includes(fn.name)) return { error: `${where}: the name "${fn.name}" is used twice.` };
    names.push(fn.name);
  }
  return { tools: v, names };
}

/** The tool choice select's value ("auto", "none", "required" or "fn:NAME") as tool_choice. */
export function toolChoice(value) {
  if (typeof value === 'string' && value.startsWith('fn:')) return { type: 'function', function: { name: value.slice(3) } };
  return value === 'none' || value === 'required' ? value : 'auto';
}

/**
 * The messages for the next chat request from the kept turns: user text, the assistant's
 * answers (content null when it only called tools; its tool_calls with their ids; never its
 * reasoning), tool results. Failed replies and completion-mode turns are left out.
 */
export function historyMessages(turns) {
  const msgs = [];
  for (const t of turns) {
    if (t.error || t.mode !== 'chat') continue;
    if (t.role === 'tool') {
      msgs.push({ role: 'tool', tool_call_id: t.tool_call_id, content: t.content });
    } else if (t.role === 'assistant' && t.tool_calls && t.tool_calls.length) {
      msgs.push({
        role: 'assistant',
        content: t.content ? t.content : null,
        tool_calls: t.tool_calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.function.name, arguments: c.function.arguments } })),
      });
    } else {
      msgs.push({ role: t.role, content: t.content });
    }
  }
  return msgs;
}
