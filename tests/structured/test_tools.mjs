// Tool calling end to end: folio-engine serving random-weight models that carry real tokenizers
// and real chat templates (Qwen3's own, which writes hermes <tool_call> JSON; Llama 3.1's, whose
// calls are bare JSON with "parameters"). A random model writes nonsense, but tool_choice
// required and a named function go through the grammar: every call must name a tool and its
// arguments must validate against the tool's parameters schema (ajv). The streamed deltas,
// joined by index, must equal the non-streamed answer of the same seed, and the official openai
// SDK's streaming helper must assemble the same calls.
import path from 'node:path';
import { assert, assertError, client, post, postStream, test, withServer } from '../api/lib.mjs';
import { ajv, structuredModel } from './lib.mjs';

const TEMPLATES = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../chat_template/templates');
const LLAMA31 = path.join(TEMPLATES, 'llama3.1_tools.jinja');
const MISTRAL = path.join(TEMPLATES, 'mistral-v0.3_tools.jinja');

export const TOOLS = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'The weather in a city',
      parameters: {
        type: 'object',
        properties: {
          city: { type: 'string', minLength: 1, maxLength: 10 },
          unit: { enum: ['celsius', 'fahrenheit'] },
          days: { type: 'integer', minimum: 1, maximum: 7 },
        },
        required: ['city', 'unit'],
        additionalProperties: false,
      },
    },
  },
  { type: 'function', function: { name: 'get_time', description: 'The time now', parameters: { type: 'object', properties: {}, additionalProperties: false } } },
];
const validators = Object.fromEntries(TOOLS.map((t) => [t.function.name, ajv().compile(t.function.parameters)]));

// Every call names a tool and its arguments (a JSON string) validate; returns the calls.
export function checkCalls(calls, names = Object.keys(validators)) {
  assert.ok(Array.isArray(calls) && calls.length > 0, `no tool calls: ${JSON.stringify(calls)}`);
  const ids = new Set();
  for (const c of calls) {
    assert.equal(c.type, 'function');
    assert.match(c.id, /^(call_[0-9a-f]{24}|[A-Za-z0-9]{9})$/); // OpenAI's shape, or Mistral's 9 characters
    assert.ok(!ids.has(c.id), 'call ids are unique');
    ids.add(c.id);
    assert.ok(names.includes(c.function.name), `unknown function ${c.function.name}`);
    const args = JSON.parse(c.function.arguments);
    const v = validators[c.function.name];
    assert.ok(v(args), `${c.function.name} arguments do not validate: ${JSON.stringify(v.errors)}\n${c.function.arguments}`);
  }
  return calls;
}

const MESSAGES = [{ role: 'user', content: 'What is the weather in Paris?' }];
const qwen = (fn) => withServer({ model: structuredModel('qwen3-tok'), args: ['--max-num-seqs', '16'] }, fn);
const llama = (fn) => withServer({ model: structuredModel('llama3-tok'), args: ['--max-num-seqs', '16', '--chat-template', LLAMA31] }, fn);
// Mistral v0.3's template on Llama 3's tokenizer: [TOOL_CALLS] is plain text there.
const mistral = (fn) => withServer({ model: structuredModel('llama3-tok'), args: ['--max-num-seqs', '16', '--chat-template', MISTRAL] }, fn);
// Qwen3-Coder's XML calls, on Qwen3's tokenizer with a template of that form.
const coder = (fn) => withServer({ model: structuredModel('qwen3-tok'), args: ['--max-num-seqs', '16', '--chat-template', path.join(path.dirname(new URL(import.meta.url).pathname), 'templates/qwen3_coder.jinja')] }, fn);
// Qwen3's non-thinking mode (the others' templates ignore the switch): a random model that
// opened a <think> block would rarely close it before max_tokens.
const body = (extra) => ({
  messages: MESSAGES, tools: TOOLS, max_tokens: 400, temperature: 1, seed: 11,
  chat_template_kwargs: { enable_thinking: false }, ...extra,
});

// Joins a chat stream's deltas: content, reasoning, and the calls by index (OpenAI's rules).
export function joinStream(events) {
  const out = { content: '', reasoning: '', calls: [], finish: null, usage: null };
  for (const ev of events) {
    if (ev.usage) out.usage = ev.usage;
    for (const c of ev.choices || []) {
      const d = c.delta || {};
      if (d.content) out.content += d.content;
      if (d.reasoning_content) out.reasoning += d.reasoning_content;
      for (const t of d.tool_calls || []) {
        if (!out.calls[t.index]) {
          assert.ok(t.id && t.type === 'function' && t.function?.name, `a call's first delta carries id, type and name: ${JSON.stringify(t)}`);
          out.calls[t.index] = { id: t.id, type: 'function', function: { name: t.function.name, arguments: '' } };
        } else {
          assert.equal(t.id, undefined, 'only the first delta of a call carries its id');
        }
        out.calls[t.index].function.arguments += t.function?.arguments || '';
      }
      if (c.finish_reason) out.finish = c.finish_reason;
    }
  }
  return out;
}

const strip = (calls) => calls.map((c) => ({ name: c.function.name, arguments: c.function.arguments }));

for (const [name, serve] of [['Qwen3 (hermes)', qwen], ['Llama 3.1 (llama3_json)', llama], ['Mistral v0.3 (mistral)', mistral], ['Qwen3-Coder XML (qwen3_coder)', coder]]) {
  test(`tools: tool_choice required, n=4, ${name}: every call validates, finish_reason tool_calls`, async () => {
    await serve(async (s) => {
      // One call each (parallel calls: the streaming test): a random model rarely ends a run of
      // Llama's "; "-separated calls before max_tokens.
      const r = await post(s, '/v1/chat/completions', body({ n: 4, tool_choice: 'required', parallel_tool_calls: false }));
      assert.equal(r.status, 200, JSON.stringify(r.json));
      let stopped = 0;
      for (const c of r.json.choices) {
        if (c.finish_reason === 'length') continue;
        stopped++;
        assert.equal(c.finish_reason, 'tool_calls');
        assert.equal(checkCalls(c.message.tool_calls).length, 1);
        assert.equal(c.message.content, null);
      }
      assert.ok(stopped >= 3, `only ${stopped} of 4 finished: ${r.json.choices.map((c) => c.finish_reason)}`);
    });
  }, { timeout: 180000 });

  test(`tools: a named tool_choice, ${name}: exactly that function, valid arguments`, async () => {
    await serve(async (s) => {
      for (const fn of ['get_weather', 'get_time']) {
        const r = await post(s, '/v1/chat/completions', body({ n: 3, tool_choice: { type: 'function', function: { name: fn } } }));
        assert.equal(r.status, 200, JSON.stringify(r.json));
        for (const c of r.json.choices) {
          if (c.finish_reason === 'length') continue;
          assert.equal(c.finish_reason, 'tool_calls');
          const calls = checkCalls(c.message.tool_calls, [fn]);
          assert.equal(calls.length, 1);
          if (fn === 'get_time') assert.equal(calls[0].function.arguments.replace(/\s/g, ''), '{}', 'no parameters: {}');
        }
      }
    });
  }, { timeout: 180000 });

  test(`tools: streamed deltas joined by index equal the non-streamed answer, ${name}`, async () => {
    await serve(async (s) => {
      for (const seed of [1, 2, 3]) {
        const b = body({ seed, tool_choice: 'required', parallel_tool_calls: true });
        const whole = await post(s, '/v1/chat/completions', b);
        assert.equal(whole.status, 200, JSON.stringify(whole.json));
        const st = await postStream(s, '/v1/chat/completions', { ...b, stream: true });
        const j = joinStream(st.events);
        const c = whole.json.choices[0];
        assert.equal(j.finish, c.finish_reason);
        assert.equal(j.content, c.message.content || '');
        assert.deepEqual(strip(j.calls), strip(c.message.tool_calls || []));
        if (c.finish_reason === 'tool_calls') checkCalls(j.calls);
      }
    });
  }, { timeout: 180000 });
}

test('tools: the openai SDK streaming helper assembles the same calls as the non-streamed answer', async () => {
  await qwen(async (s) => {
    const sdk = client(s, { timeout: 120000 });
    const b = { model: s.modelPath, ...body({ seed: 5, tool_choice: 'required' }) };
    const whole = await sdk.chat.completions.create(b);
    const stream = sdk.beta.chat.completions.stream(b);
    const deltas = [];
    stream.on('tool_calls.function.arguments.delta', (e) => deltas.push(e));
    const final = await stream.finalChatCompletion();
    const a = whole.choices[0].message, f = final.choices[0].message;
    assert.deepEqual(strip(f.tool_calls || []), strip(a.tool_calls || []));
    if (whole.choices[0].finish_reason === 'tool_calls') {
      checkCalls(f.tool_calls);
      assert.ok(deltas.length > 0, 'the SDK saw argument deltas');
    }
  });
}, { timeout: 180000 });

test('tools: tool_choice none makes no calls; auto answers with text or valid calls', async () => {
  await qwen(async (s) => {
    const none = await post(s, '/v1/chat/completions', body({ n: 4, tool_choice: 'none', max_tokens: 40 }));
    assert.equal(none.status, 200, JSON.stringify(none.json));
    for (const c of none.json.choices) {
      assert.deepEqual(c.message.tool_calls, []);
      assert.equal(typeof c.message.content, 'string');
      assert.notEqual(c.finish_reason, 'tool_calls');
    }
    const auto = await post(s, '/v1/chat/completions', body({ n: 4, max_tokens: 40 }));
    assert.equal(auto.status, 200, JSON.stringify(auto.json));
    for (const c of auto.json.choices) {
      // the lazy grammar: free text never spells <tool_call> unless a valid call follows
      assert.ok(!/<tool_call>/.test(c.message.content || '') || c.finish_reason === 'length', c.message.content);
      if (c.message.tool_calls.length) checkCalls(c.message.tool_calls);
    }
  });
}, { timeout: 180000 });

// A conversation an agent sends on its second step: the assistant's calls (content null, as the
// SDKs send it, arguments a JSON string) and the tools' results.
export const HISTORY = [
  { role: 'system', content: 'You call tools.' },
  { role: 'user', content: 'Weather in Paris and the time?' },
  {
    role: 'assistant', content: null, tool_calls: [
      { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris","unit":"celsius"}' } },
      { id: 'call_2', type: 'function', function: { name: 'get_time', arguments: '{}' } },
    ],
  },
  { role: 'tool', tool_call_id: 'call_1', content: '{"temp": 21}' },
  { role: 'tool', tool_call_id: 'call_2', content: '12:00' },
];

// Llama 3.1's template takes one call per message (it raises on more).
const HISTORY1 = [...HISTORY.slice(0, 2), { ...HISTORY[2], tool_calls: HISTORY[2].tool_calls.slice(0, 1) }, HISTORY[3],
  { role: 'assistant', content: null, tool_calls: HISTORY[2].tool_calls.slice(1) }, HISTORY[4]];
// Mistral's template wants 9-character call ids.
const HISTORY9 = JSON.parse(JSON.stringify(HISTORY).replaceAll('call_1', 'aBcDeF123').replaceAll('call_2', 'aBcDeF456'));
for (const [name, serve, history] of [['Qwen3', qwen, HISTORY], ['Llama 3.1', llama, HISTORY1], ['Mistral v0.3', mistral, HISTORY9], ['Qwen3-Coder XML', coder, HISTORY]]) {
  test(`tools: a multi-turn history with calls (content null) and tool results renders and runs, ${name}`, async () => {
    await serve(async (s) => {
      const tok = await post(s, '/tokenize', { messages: history, tools: TOOLS });
      assert.equal(tok.status, 200, JSON.stringify(tok.json));
      const detok = await post(s, '/detokenize', { tokens: tok.json.tokens });
      // the arguments reached the template as objects: no doubly quoted JSON
      assert.ok(/Paris/.test(detok.json.prompt) && !/\\"city\\"/.test(detok.json.prompt), detok.json.prompt);
      assert.ok(/12:00/.test(detok.json.prompt));
      const r = await post(s, '/v1/chat/completions', { messages: history, tools: TOOLS, max_tokens: 20, temperature: 0 });
      assert.equal(r.status, 200, JSON.stringify(r.json));
    });
  }, { timeout: 120000 });
}

test('tools: bad tools and tool_choice get a 400 naming the field', async () => {
  await qwen(async (s) => {
    const cases = [
      [{ tools: [{ type: 'function', function: { description: 'x' } }] }, 'tools[0].function.name'],
      [{ tools: [{ type: 'function', function: { name: 'a b' } }] }, 'tools[0].function.name'],
      [{ tools: [TOOLS[0], { type: 'function', function: { name: 'f', parameters: { type: 'string' } } }] }, 'tools[1].function.parameters'],
      [{ tools: [{ type: 'function', function: { name: 'f', parameters: [1] } }] }, 'tools[0].function.parameters'],
      [{ tools: [{ type: 'retrieval' }] }, 'tools[0]'],
      [{ tools: TOOLS, tool_choice: { type: 'function', function: { name: 'nope' } } }, 'tool_choice'],
      [{ tools: TOOLS, tool_choice: 'always' }, 'tool_choice'],
      [{ tool_choice: 'required' }, 'tool_choice'],
      [{ tools: [TOOLS[0], TOOLS[0]] }, 'tools[1].function.name'],
      [{ tools: TOOLS, parallel_tool_calls: 'yes' }, 'parallel_tool_calls'],
      [{ tools: Array.from({ length: 300 }, (_, i) => ({ type: 'function', function: { name: `f${i}` } })) }, 'tools'],
    ];
    for (const [extra, param] of cases) {
      const r = await post(s, '/v1/chat/completions', { messages: MESSAGES, max_tokens: 4, ...extra });
      assertError(r, 400, { param });
    }
    // a malformed history: a call without a function name
    const bad = [{ role: 'user', content: 'hi' }, { role: 'assistant', content: null, tool_calls: [{ id: 'x', type: 'function', function: {} }] }];
    assertError(await post(s, '/v1/chat/completions', { messages: bad, max_tokens: 4 }), 400, { param: 'messages' });
  });
}, { timeout: 60000 });

// ---- reasoning ----
// Qwen3's model with --reasoning-parser deepseek_r1: the output opens inside the reasoning block.
// A random model would think forever, so a logit bias on "</think>" (one token in Qwen3's
// vocabulary) ends it after a few tokens on some seeds; the grammars of response_format and of
// tool_choice apply only after it.
const THINK_END = 151668;
const reasoner = (fn) => withServer({ model: structuredModel('qwen3-tok'), args: ['--max-num-seqs', '16', '--reasoning-parser', 'deepseek_r1'] }, fn);
const SMALL = { type: 'object', properties: { n: { type: 'integer', minimum: 0, maximum: 9 } }, required: ['n'], additionalProperties: false };

test('reasoning: deepseek_r1 splits reasoning_content from content; response_format applies after </think>; streamed the same', async () => {
  await reasoner(async (s) => {
    const v = ajv().compile(SMALL);
    let both = 0;
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const b = {
        messages: MESSAGES, max_tokens: 160, seed, logit_bias: { [THINK_END]: 25 },
        response_format: { type: 'json_schema', json_schema: { name: 'n', schema: SMALL } },
      };
      const r = await post(s, '/v1/chat/completions', b);
      assert.equal(r.status, 200, r.text);
      const c = r.json.choices[0], u = r.json.usage;
      const reasoning = c.message.reasoning_content || '';
      assert.ok(!reasoning.includes('</think>'));
      assert.ok(u.completion_tokens_details.reasoning_tokens <= u.completion_tokens);
      if (c.finish_reason === 'stop') {
        assert.ok(v(JSON.parse(c.message.content)), c.message.content);
        assert.ok(u.completion_tokens_details.reasoning_tokens < u.completion_tokens);
        if (reasoning.length > 0) both++;
        assert.equal(c.message.reasoning, c.message.reasoning_content);
      } else {
        assert.equal(c.message.content, '', 'still thinking at max_tokens: no content');
        assert.equal(u.completion_tokens_details.reasoning_tokens, u.completion_tokens);
      }
      const st = joinStream((await postStream(s, '/v1/chat/completions', b)).events);
      assert.equal(st.reasoning, reasoning);
      assert.equal(st.content, c.message.content);
      assert.equal(st.finish, c.finish_reason);
    }
    assert.ok(both >= 1, 'some seed both thinks and answers');
  });
}, { timeout: 180000 });

test('reasoning: tool_choice required after a reasoning block: the calls validate, the reasoning stays out of them', async () => {
  await reasoner(async (s) => {
    let called = 0;
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const r = await post(s, '/v1/chat/completions', body({ seed, tool_choice: 'required', parallel_tool_calls: false, logit_bias: { [THINK_END]: 25 }, chat_template_kwargs: {} }));
      assert.equal(r.status, 200, r.text);
      const c = r.json.choices[0];
      if (c.finish_reason !== 'tool_calls') continue;
      called++;
      checkCalls(c.message.tool_calls);
      assert.ok(!(c.message.reasoning_content || '').includes('<tool_call>'));
    }
    assert.ok(called >= 1, 'some seed ends its reasoning and calls');
  });
}, { timeout: 180000 });

test("reasoning: Qwen3's own parser (from its template): no <think> at the start, no reasoning; enable_thinking false renders the closed block", async () => {
  await qwen(async (s) => {
    const r = await post(s, '/v1/chat/completions', { messages: MESSAGES, max_tokens: 8, seed: 1, chat_template_kwargs: { enable_thinking: false } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.choices[0].message.reasoning_content, null);
    assert.equal(r.json.usage.completion_tokens_details.reasoning_tokens, 0);
    const tok = await post(s, '/tokenize', { messages: MESSAGES, chat_template_kwargs: { enable_thinking: false } });
    const text = (await post(s, '/detokenize', { tokens: tok.json.tokens })).json.prompt;
    assert.ok(text.endsWith('<think>\n\n</think>\n\n'), JSON.stringify(text.slice(-40)));
  });
}, { timeout: 60000 });
