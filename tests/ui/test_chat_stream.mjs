// The playground's stream joining and tool settings (admin-ui/lib/chat-stream.js), in node: the
// same functions the view folds each chunk with, fed synthetic chunks shaped like folio-engine's
// (content, reasoning_content with its `reasoning` copy, tool_calls by index, usage with
// reasoning_tokens), since no test model writes reasoning.
import { assert, test } from '../api/lib.mjs';
import {
  applyChunk, callsOf, formatArguments, historyMessages, newReply, parseTools, reasoningTokens, toolChoice,
} from '../../admin-ui/lib/chat-stream.js';

const chunk = (delta, finish = null) => ({
  id: 'chatcmpl-1', object: 'chat.completion.chunk', choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
});
const feed = (chunks) => {
  const r = newReply();
  const changes = chunks.map((c) => applyChunk(r, c));
  return { r, changes };
};

test('chat-stream: content and reasoning join separately; `reasoning` (a copy) is not counted twice; usage', async () => {
  const { r, changes } = feed([
    chunk({ role: 'assistant', content: '' }),
    chunk({ reasoning_content: 'The user asks', reasoning: 'The user asks' }),
    chunk({ reasoning_content: ' about Paris.', reasoning: ' about Paris.' }),
    chunk({ reasoning: ' (only the copy)' }), // a server that sends only `reasoning`
    chunk({ content: 'It is ' }),
    chunk({ content: 'sunny.' }, 'stop'),
    { id: 'chatcmpl-1', choices: [], usage: { prompt_tokens: 9, completion_tokens: 12, completion_tokens_details: { reasoning_tokens: 7 } } },
  ]);
  assert.equal(r.reasoning, 'The user asks about Paris. (only the copy)');
  assert.equal(r.content, 'It is sunny.');
  assert.equal(r.finishReason, 'stop');
  assert.deepEqual(callsOf(r), []);
  assert.equal(reasoningTokens(r.usage), 7);
  assert.equal(reasoningTokens({ completion_tokens: 3 }), null);
  // What changed, chunk by chunk (the view redraws only that).
  assert.deepEqual(changes.map((c) => [c.content, c.reasoning, c.calls.length, c.finish, c.usage]), [
    [false, false, 0, false, false],
    [false, true, 0, false, false],
    [false, true, 0, false, false],
    [false, true, 0, false, false],
    [true, false, 0, false, false],
    [true, false, 0, true, false],
    [false, false, 0, false, true],
  ]);
});

test('chat-stream: two parallel tool calls whose argument deltas interleave join by index; finish_reason tool_calls', async () => {
  const { r, changes } = feed([
    chunk({ role: 'assistant', content: '' }),
    chunk({ reasoning_content: 'Two cities.' }),
    chunk({ tool_calls: [{ index: 0, id: 'call_aaa', type: 'function', function: { name: 'get_weather', arguments: '' } }] }),
    chunk({ tool_calls: [{ index: 0, function: { arguments: '{"ci' } }] }),
    chunk({ tool_calls: [{ index: 1, id: 'call_bbb', type: 'function', function: { name: 'get_weather', arguments: '{"city"' } }] }),
    chunk({ tool_calls: [{ index: 0, function: { arguments: 'ty": "Par' } }, { index: 1, function: { arguments: ': "Oslo"' } }] }),
    chunk({ tool_calls: [{ index: 1, function: { arguments: '}' } }] }),
    chunk({ tool_calls: [{ index: 0, function: { arguments: 'is"}' } }] }, 'tool_calls'),
  ]);
  assert.equal(r.content, '');
  assert.equal(r.reasoning, 'Two cities.');
  assert.equal(r.finishReason, 'tool_calls');
  assert.deepEqual(callsOf(r), [
    { id: 'call_aaa', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } },
    { id: 'call_bbb', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Oslo"}' } },
  ]);
  assert.deepEqual(changes.map((c) => c.calls), [[], [], [0], [0], [1], [0, 1], [1], [0]]);
  // Raw text while the arguments stream, pretty JSON once they parse.
  assert.deepEqual(formatArguments('{"city": "Par'), { text: '{"city": "Par', parsed: false });
  assert.deepEqual(formatArguments(' {"city" :\n"Paris"} '), { text: '{\n  "city": "Paris"\n}', parsed: true });
  assert.deepEqual(formatArguments(''), { text: '', parsed: false });
  // The next request's history: the assistant's calls (content null, no reasoning), the results.
  const turns = [
    { role: 'user', content: 'Weather in Paris and Oslo?', mode: 'chat' },
    { role: 'assistant', content: r.content, reasoning: r.reasoning, tool_calls: callsOf(r), mode: 'chat', model: 'm' },
    { role: 'tool', tool_call_id: 'call_aaa', name: 'get_weather', content: '21 C', mode: 'chat' },
    { role: 'tool', tool_call_id: 'call_bbb', name: 'get_weather', content: '4 C', mode: 'chat' },
  ];
  assert.deepEqual(historyMessages(turns), [
    { role: 'user', content: 'Weather in Paris and Oslo?' },
    { role: 'assistant', content: null, tool_calls: callsOf(r) },
    { role: 'tool', tool_call_id: 'call_aaa', content: '21 C' },
    { role: 'tool', tool_call_id: 'call_bbb', content: '4 C' },
  ]);
});

test('chat-stream: completion chunks (text), a usage-only chunk, and chunks with nothing in them', async () => {
  const { r } = feed([
    { object: 'text_completion', choices: [{ index: 0, text: 'Once', finish_reason: null }] },
    { object: 'text_completion', choices: [{ index: 0, text: ' upon', finish_reason: 'length' }] },
    { choices: [], usage: { completion_tokens: 2 } },
    null,
    { choices: [{ index: 1, delta: { content: 'another choice' } }] },
  ]);
  assert.equal(r.content, 'Once upon');
  assert.equal(r.finishReason, 'length');
  assert.equal(r.usage.completion_tokens, 2);
});

test('chat-stream: the Tools setting: empty is none; a list of function tools; clear errors otherwise; tool_choice', async () => {
  const weather = { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } };
  assert.deepEqual(parseTools(''), { tools: [], names: [] });
  assert.deepEqual(parseTools('  \n'), { tools: [], names: [] });
  assert.deepEqual(parseTools(JSON.stringify([weather, { type: 'function', function: { name: 'get_time' } }])).names, ['get_weather', 'get_time']);
  assert.deepEqual(parseTools('[]'), { tools: [], names: [] });
  for (const [text, want] of [
    ['[{"type": "function"', /not valid JSON/],
    [JSON.stringify(weather), /must be a JSON list/],
    ['[1]', /Tool 1 is not an object/],
    [JSON.stringify([{ type: 'code', function: { name: 'x' } }]), /"type" must be "function"/],
    [JSON.stringify([{ type: 'function' }]), /"function" must be an object/],
    [JSON.stringify([weather, { type: 'function', function: { name: '' } }]), /Tool 2: "function.name" must be a non-empty string/],
    [JSON.stringify([{ type: 'function', function: { name: 'f', parameters: [] } }]), /parameters" must be a JSON Schema object/],
    [JSON.stringify([weather, weather]), /used twice/],
  ]) {
    const r = parseTools(text);
    assert.ok(r.error, text);
    assert.match(r.error, want);
  }
  assert.equal(toolChoice('auto'), 'auto');
  assert.equal(toolChoice('none'), 'none');
  assert.equal(toolChoice('required'), 'required');
  assert.deepEqual(toolChoice('fn:get_weather'), { type: 'function', function: { name: 'get_weather' } });
  // Failed replies and completion-mode turns stay out of the history; plain replies keep their text.
  assert.deepEqual(historyMessages([
    { role: 'user', content: 'a', mode: 'chat' }, { role: 'assistant', content: 'b', reasoning: 'r', mode: 'chat' },
    { role: 'user', content: 'c', mode: 'chat' }, { role: 'assistant', content: '', error: 'HTTP 500', mode: 'chat' },
    { role: 'user', content: 'p', mode: 'completion' }, { role: 'assistant', content: 'q', mode: 'completion' },
  ]), [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }, { role: 'user', content: 'c' }]);
});
