// POST /v1/responses on folio-engine: input strings and items, instructions, function tools,
// tool_choice, text.format json_schema, max_output_tokens; the response object's output items and
// the streamed response.* events, through raw HTTP and the official openai SDK (v4's
// client.responses). foliod's store (previous_response_id) is tested in tests/daemon.
import { assert, assertError, client, post, test, withServer } from '../api/lib.mjs';
import { ajv, structuredModel } from './lib.mjs';
import { checkCalls, TOOLS } from './test_tools.mjs';

const FLAT = TOOLS.map((t) => ({ type: 'function', ...t.function }));
const qwen = (fn) => withServer({ model: structuredModel('qwen3-tok'), args: ['--max-num-seqs', '16'] }, fn);

// The events of a Responses stream: [{event, data}]; each data's type equals its event name.
function parseEvents(text) {
  const out = [];
  for (const block of text.split(/\n\n/)) {
    if (!block.trim()) continue;
    const ev = block.split('\n').find((l) => l.startsWith('event: '))?.slice(7);
    const data = JSON.parse(block.split('\n').find((l) => l.startsWith('data: ')).slice(6));
    assert.equal(data.type, ev, `event ${ev} carries type ${data.type}`);
    out.push(data);
  }
  return out;
}

const asCalls = (output) => output.filter((i) => i.type === 'function_call')
  .map((i) => ({ id: i.call_id, type: 'function', function: { name: i.name, arguments: i.arguments } }));

test('responses: a string input answers with a message item, usage and the echoed fields', async () => {
  await qwen(async (s) => {
    const r = await post(s, '/v1/responses', { input: 'Hello', instructions: 'Be brief.', max_output_tokens: 8, temperature: 0, metadata: { k: 'v' } });
    assert.equal(r.status, 200, r.text);
    const j = r.json;
    assert.match(j.id, /^resp_[0-9a-f]{24}$/);
    assert.equal(j.object, 'response');
    assert.ok(['completed', 'incomplete'].includes(j.status));
    assert.equal(j.instructions, 'Be brief.');
    assert.deepEqual(j.metadata, { k: 'v' });
    assert.equal(j.store, false, 'folio-engine alone stores nothing');
    assert.equal(j.output.length, 1);
    assert.equal(j.output[0].type, 'message');
    assert.equal(j.output[0].content[0].type, 'output_text');
    assert.equal(j.usage.total_tokens, j.usage.input_tokens + j.usage.output_tokens);
    if (j.status === 'incomplete') assert.deepEqual(j.incomplete_details, { reason: 'max_output_tokens' });
    // the instructions and input became the chat prompt
    const chat = await post(s, '/tokenize', { messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello' }] });
    assert.equal(j.usage.input_tokens, chat.json.count);
  });
}, { timeout: 60000 });

test('responses: function tools with tool_choice required give function_call items whose arguments validate', async () => {
  await qwen(async (s) => {
    for (const seed of [1, 2]) {
      const r = await post(s, '/v1/responses', { input: 'Weather in Paris?', tools: FLAT, tool_choice: 'required', max_output_tokens: 400, seed, reasoning: { effort: 'minimal' } });
      assert.equal(r.status, 200, r.text);
      if (r.json.status !== 'completed') continue;
      const calls = r.json.output.filter((i) => i.type === 'function_call');
      for (const c of calls) {
        assert.match(c.id, /^fc_/);
        assert.match(c.call_id, /^call_/);
        assert.equal(c.status, 'completed');
      }
      checkCalls(asCalls(r.json.output));
    }
    // a named function, in the Responses API's flat form
    const r = await post(s, '/v1/responses', { input: 'Time?', tools: FLAT, tool_choice: { type: 'function', name: 'get_time' }, max_output_tokens: 200, reasoning: { effort: 'minimal' } });
    assert.equal(r.status, 200, r.text);
    if (r.json.status === 'completed') assert.deepEqual(asCalls(r.json.output).map((c) => c.function.name), ['get_time']);
  });
}, { timeout: 120000 });

test('responses: the event stream opens, streams and completes items, and its final response equals the joined deltas', async () => {
  await qwen(async (s) => {
    const r = await post(s, '/v1/responses', { input: 'Weather?', tools: FLAT, tool_choice: 'required', max_output_tokens: 400, seed: 3, stream: true, reasoning: { effort: 'minimal' } });
    assert.equal(r.status, 200, r.text);
    const evs = parseEvents(r.text);
    assert.equal(evs[0].type, 'response.created');
    assert.equal(evs[1].type, 'response.in_progress');
    const last = evs[evs.length - 1];
    assert.ok(['response.completed', 'response.incomplete'].includes(last.type), last.type);
    evs.forEach((e, i) => assert.equal(e.sequence_number, i));
    // every item added is done, in order; deltas join to the final arguments
    const args = {};
    const added = [], done = [];
    for (const e of evs) {
      if (e.type === 'response.output_item.added') added.push(e.item.id);
      if (e.type === 'response.output_item.done') done.push(e.item.id);
      if (e.type === 'response.function_call_arguments.delta') args[e.item_id] = (args[e.item_id] || '') + e.delta;
      if (e.type === 'response.function_call_arguments.done') assert.equal(e.arguments, args[e.item_id] || '');
    }
    assert.deepEqual(added, done);
    const final = last.response;
    assert.deepEqual(final.output.map((i) => i.id), added);
    for (const i of final.output) if (i.type === 'function_call') assert.equal(i.arguments, args[i.id] || '');
    if (last.type === 'response.completed') checkCalls(asCalls(final.output));
  });
}, { timeout: 120000 });

test('responses: text.format json_schema gives output_text that validates', async () => {
  await qwen(async (s) => {
    const schema = { type: 'object', properties: { n: { type: 'integer', minimum: 0, maximum: 9 }, ok: { type: 'boolean' } }, required: ['n', 'ok'], additionalProperties: false };
    const r = await post(s, '/v1/responses', { input: 'JSON please', text: { format: { type: 'json_schema', name: 'x', schema, strict: true } }, max_output_tokens: 200, seed: 4, reasoning: { effort: 'minimal' } });
    assert.equal(r.status, 200, r.text);
    if (r.json.status === 'completed') {
      const v = ajv().compile(schema);
      const text = r.json.output.find((i) => i.type === 'message').content[0].text;
      assert.ok(v(JSON.parse(text)), text);
    }
  });
}, { timeout: 60000 });

test('responses: the openai SDK responses.create, streamed and not, with a function tool and a second turn sent as items', async () => {
  await qwen(async (s) => {
    const sdk = client(s, { timeout: 120000 });
    const first = await sdk.responses.create({ model: s.modelPath, input: 'Weather in Paris?', tools: FLAT, tool_choice: 'required', parallel_tool_calls: false, max_output_tokens: 600, seed: 2, reasoning: { effort: 'minimal' } });
    assert.equal(first.object, 'response');
    const call = first.output.find((i) => i.type === 'function_call');
    if (first.status === 'completed') assert.ok(call, JSON.stringify(first.output));
    // the second turn: the call and its output as items (what previous_response_id expands to)
    const input = [{ role: 'user', content: 'Weather in Paris?' }];
    if (call) input.push(call, { type: 'function_call_output', call_id: call.call_id, output: '{"temp": 21}' });
    const stream = await sdk.responses.create({ model: s.modelPath, input, tools: FLAT, max_output_tokens: 16, seed: 2, stream: true });
    const types = [];
    let final = null, text = '';
    for await (const ev of stream) {
      types.push(ev.type);
      if (ev.type === 'response.output_text.delta') text += ev.delta;
      if (ev.type === 'response.completed' || ev.type === 'response.incomplete') final = ev.response;
    }
    assert.equal(types[0], 'response.created');
    assert.ok(final, types.join(','));
    const msg = final.output.find((i) => i.type === 'message');
    if (msg) assert.equal(msg.content[0].text, text);
    if (call) assert.ok(final.usage.input_tokens > first.usage.input_tokens, 'the second turn carries the first');
  });
}, { timeout: 180000 });

test('responses: bad input gets a 400 naming the field; previous_response_id is refused by the stateless engine', async () => {
  await qwen(async (s) => {
    const cases = [
      [{ input: 'x', previous_response_id: 'resp_1' }, 'previous_response_id', /stateless/],
      [{}, 'input'],
      [{ input: 5 }, 'input'],
      [{ input: [{ type: 'web_search_call' }] }, 'input'],
      [{ input: 'x', tools: [{ type: 'function' }] }, 'tools[0].name'],
      [{ input: 'x', tools: [{ type: 'web_search' }] }, 'tools[0]'],
      [{ input: 'x', tools: [{ type: 'function', name: 'f', parameters: { type: 'array' } }] }, 'tools[0].parameters'],
      [{ input: 'x', tools: FLAT, tool_choice: { type: 'function', name: 'nope' } }, 'tool_choice'],
      [{ input: 'x', max_output_tokens: 0 }, 'max_output_tokens'],
      [{ input: 'x', store: 'yes' }, 'store'],
    ];
    for (const [b, param, message] of cases) assertError(await post(s, '/v1/responses', b), 400, { param, message });
    const g = await fetch(`${s.url}/v1/responses/resp_1`);
    assert.equal(g.status, 404);
  });
}, { timeout: 60000 });

test('responses: a reasoning model answers with a reasoning item (its text), then the message; streamed the same', async () => {
  // deepseek_r1 starts inside the block; a bias on "</think>" ends it after a few tokens on some seeds
  await withServer({ model: structuredModel('qwen3-tok'), args: ['--reasoning-parser', 'deepseek_r1'] }, async (s) => {
    let seen = 0;
    for (const seed of [1, 2, 3, 4]) {
      const b = { input: 'Think, then answer.', max_output_tokens: 60, seed, logit_bias: { 151668: 25 } };
      const r = await post(s, '/v1/responses', b);
      assert.equal(r.status, 200, r.text);
      const items = r.json.output;
      const rs = items.find((i) => i.type === 'reasoning');
      if (!rs) continue;
      seen++;
      assert.equal(items[0].type, 'reasoning', 'the reasoning comes first');
      assert.match(rs.id, /^rs_/);
      assert.equal(rs.content[0].type, 'reasoning_text');
      assert.ok(!rs.content[0].text.includes('</think>'));
      assert.ok(r.json.usage.output_tokens_details.reasoning_tokens > 0);
      const st = await post(s, '/v1/responses', { ...b, stream: true });
      const evs = parseEvents(st.text);
      const deltas = evs.filter((e) => e.type === 'response.reasoning_text.delta').map((e) => e.delta).join('');
      assert.equal(deltas, rs.content[0].text);
      const final = evs[evs.length - 1].response;
      assert.equal(final.output.find((i) => i.type === 'reasoning').content[0].text, rs.content[0].text);
    }
    assert.ok(seen >= 1, 'some seed reasons');
  });
}, { timeout: 120000 });
