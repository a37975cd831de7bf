// Structured output end to end on real servers: random weights, real tokenizers, real clients.
// A random model writes nonsense, but the grammar holds it to the schema: every output that
// ends with "stop" must parse and validate. The schemas bound every string, array and number,
// so that a sample can always finish within max_tokens.
import {
  assert, assertError, client, metrics, metric, post, postStream, test, withServer,
} from '../api/lib.mjs';
import { checkJsonChoices, structuredModel } from './lib.mjs';

export const PERSON = {
  type: 'object',
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 12 },
    age: { type: 'integer', minimum: 0, maximum: 120 },
    role: { enum: ['admin', 'user', 'guest'] },
    tags: { type: 'array', items: { type: 'string', maxLength: 8 }, maxItems: 3 },
    address: {
      type: 'object',
      properties: { city: { type: 'string', maxLength: 10 }, zip: { type: 'string', pattern: '^[0-9]{5}$' } },
      required: ['city', 'zip'],
      additionalProperties: false,
    },
    active: { type: 'boolean' },
    level: { type: ['integer', 'null'], minimum: 0, maximum: 9 },
    id: { type: 'string', format: 'uuid' },
  },
  required: ['name', 'age', 'role', 'tags', 'address', 'active', 'level', 'id'],
  additionalProperties: false,
};

const MAX = 1500; // tokens: the schema's longest sentence, whitespace runs included, fits
const serve = (name, fn) => withServer({ model: structuredModel(name), args: ['--max-num-seqs', '16'] }, fn);
const chat = (extra) => ({
  messages: [{ role: 'user', content: 'Describe a person as JSON.' }],
  max_tokens: MAX,
  temperature: 1,
  seed: 7,
  ...extra,
});

test('structured: json_schema through the openai SDK, n=4, Qwen3 tokenizer', async () => {
  await serve('qwen3-tok', async (s) => {
    const r = await client(s).chat.completions.create({
      model: s.modelPath,
      ...chat({ n: 4, response_format: { type: 'json_schema', json_schema: { name: 'person', schema: PERSON, strict: true } } }),
    });
    assert.equal(r.choices.length, 4);
    const stopped = checkJsonChoices(r.choices, PERSON);
    assert.ok(stopped >= 3, `only ${stopped} of 4 samples finished: ${r.choices.map((c) => c.finish_reason)}`);
    // Four seeded samples of one request differ (the grammar forks per sample, not shared).
    assert.ok(new Set(r.choices.map((c) => c.message.content)).size > 1);
  });
}, { timeout: 120000 });

test('structured: json_schema streamed, Llama-3 tokenizer; the deltas join into valid JSON', async () => {
  await serve('llama3-tok', async (s) => {
    const stream = await client(s).chat.completions.create({
      model: s.modelPath, stream: true,
      ...chat({ response_format: { type: 'json_schema', json_schema: { name: 'p', schema: PERSON } } }),
    });
    let text = '';
    let finish = null;
    for await (const ch of stream) {
      for (const c of ch.choices) {
        text += c.delta.content || '';
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
    assert.equal(finish, 'stop', `finish ${finish}: ${text.slice(0, 400)}`);
    checkJsonChoices([{ finish_reason: finish, message: { content: text } }], PERSON);
  });
}, { timeout: 120000 });

// Keywords a grammar expresses only through rewrites: `not` (a required pair, an enum), an enum
// filtered by the keywords beside it, and a property dependency. ajv judges the outputs.
export const VEHICLE = {
  type: 'object',
  properties: {
    kind: { allOf: [{ enum: ['car', 'bike', 'boat', 'plane'] }, { not: { enum: ['boat'] } }] },
    color: { enum: ['red', 'green', 'blue'], not: { const: 'red' } },
    wheels: { type: 'integer', minimum: 0, maximum: 8 },
    owner: { type: 'string', maxLength: 8 },
  },
  required: ['kind'],
  not: { required: ['wheels', 'owner'] },
  dependentRequired: { owner: ['color'] },
  additionalProperties: false,
};

test('structured: not, dependentRequired and a filtered enum hold in every sample (ajv)', async () => {
  await serve('llama3-tok', async (s) => {
    const r = await client(s).chat.completions.create({
      model: s.modelPath,
      ...chat({ n: 8, max_tokens: 300, response_format: { type: 'json_schema', json_schema: { name: 'v', schema: VEHICLE } } }),
    });
    const stopped = checkJsonChoices(r.choices, VEHICLE);
    assert.ok(stopped >= 6, `only ${stopped} of 8 samples finished: ${r.choices.map((c) => c.finish_reason)}`);
  });
}, { timeout: 120000 });

test('structured: json_object and guided_json on completions, with logprobs and a stop string', async () => {
  await serve('qwen3-tok', async (s) => {
    const r = await client(s).chat.completions.create({ model: s.modelPath, ...chat({ n: 2, response_format: { type: 'json_object' }, max_tokens: 200 }) });
    for (const c of r.choices) {
      if (c.finish_reason !== 'stop') continue;
      const v = JSON.parse(c.message.content);
      assert.equal(typeof v, 'object');
      assert.ok(v !== null && !Array.isArray(v));
    }
    const schema = { type: 'object', properties: { ok: { type: 'boolean' }, n: { type: 'integer', minimum: 1, maximum: 99 } }, required: ['ok', 'n'], additionalProperties: false };
    const c = await client(s).completions.create({
      model: s.modelPath, prompt: 'JSON:', max_tokens: 300, temperature: 1, seed: 3, n: 3, logprobs: 2,
      guided_json: schema,
    });
    assert.ok(checkJsonChoices(c.choices, schema, (x) => x.text) >= 2);
    for (const ch of c.choices) assert.equal(ch.logprobs.tokens.length, ch.logprobs.top_logprobs.length);
    // A stop string cuts the output: finish "stop" with the text before it.
    const st = await client(s).completions.create({
      model: s.modelPath, prompt: 'JSON:', max_tokens: 300, temperature: 0, guided_json: schema, stop: ['"n"'],
    });
    assert.equal(st.choices[0].finish_reason, 'stop');
    assert.ok(!st.choices[0].text.includes('"n"'));
  });
}, { timeout: 120000 });

test('structured: regex, choice and both grammar syntaxes, in every spelling', async () => {
  await serve('qwen3-tok', async (s) => {
    const c = client(s);
    const base = { model: s.modelPath, prompt: 'Answer:', max_tokens: 64, temperature: 1, seed: 11, n: 3 };
    const cases = [
      [{ structured_outputs: { regex: '[A-Z][a-z]{2,6}-[0-9]{3}' } }, /^[A-Z][a-z]{2,6}-[0-9]{3}$/],
      [{ guided_regex: '(yes|no|maybe)!' }, /^(yes|no|maybe)!$/],
      [{ structured_outputs: { choice: ['red', 'green', 'blue'] } }, /^(red|green|blue)$/],
      [{ guided_choice: ['alpha beta', 'gamma'] }, /^(alpha beta|gamma)$/],
      [{ guided_grammar: 'root ::= num (" + " num){0,3}\nnum ::= [1-9] [0-9]{0,2}\n' }, /^[1-9][0-9]{0,2}( \+ [1-9][0-9]{0,2}){0,3}$/],
      [{ structured_outputs: { grammar: 'start: WORD ("," WORD)~0..2\nWORD: /[a-z]{1,5}/\n' } }, /^[a-z]{1,5}(,[a-z]{1,5}){0,2}$/],
    ];
    for (const [extra, re] of cases) {
      const r = await c.completions.create({ ...base, ...extra });
      let stopped = 0;
      for (const ch of r.choices) {
        if (ch.finish_reason !== 'stop') continue;
        stopped++;
        assert.match(ch.text, re, `${JSON.stringify(extra)} gave ${JSON.stringify(ch.text)}`);
      }
      assert.ok(stopped >= 2, `${JSON.stringify(extra)}: ${stopped} of 3 finished`);
    }
    // Streamed chat, with a choice: the joined deltas are one of the choices.
    const ev = await postStream(s, '/v1/chat/completions', {
      ...chat({ structured_outputs: { choice: ['left', 'right'] } }), model: s.modelPath,
    });
    assert.ok(ev.done);
    const text = ev.events.map((e) => e.choices[0]?.delta?.content || '').join('');
    assert.match(text, /^(left|right)$/);
  });
}, { timeout: 120000 });

test('structured: max_tokens cuts a sample with finish "length"; a finished grammar ends with "stop"', async () => {
  await serve('qwen3-tok', async (s) => {
    const r = await client(s).completions.create({ model: s.modelPath, prompt: 'x', max_tokens: 3, guided_json: PERSON });
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.match(r.choices[0].text, /^\s*(\{|$)/); // a prefix the grammar allows
    // ignore_eos cannot run a complete grammar on: nothing can follow, so it stops.
    const d = await client(s).completions.create({
      model: s.modelPath, prompt: 'x', max_tokens: 50, ignore_eos: true, guided_choice: ['done'],
    });
    assert.equal(d.choices[0].text, 'done');
    assert.equal(d.choices[0].finish_reason, 'stop');
  });
}, { timeout: 60000 });

test('structured: bad specs are 400s that name the field, the feature and where it is', async () => {
  await serve('qwen3-tok', async (s) => {
    const cases = [
      [{ guided_json: { type: 'object', properties: { x: { type: 'string', not: { pattern: '^a' } } } } },
        'guided_json', /'not'.*\/properties\/x/],
      [{ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'strin' } } } }, 'response_format', /strin/],
      [{ structured_outputs: { regex: '(a' } }, 'structured_outputs.regex', /./],
      [{ structured_outputs: { regex: '(?=a)b' } }, 'structured_outputs.regex', /look/i],
      [{ guided_grammar: 'root ::= "a" undefined_rule' }, 'guided_grammar', /undefined_rule/],
      [{ guided_grammar: 'root ::= expr\nexpr ::= expr "+" "1" | "1"' }, 'guided_grammar', /left.recursi/i],
      [{ guided_choice: [] }, 'guided_choice', /non-empty/],
      [{ guided_regex: 'a', guided_choice: ['a'] }, 'guided_choice', /only one/],
      [{ response_format: { type: 'json_object' }, guided_json: {} }, 'guided_json', /only one/],
      [{ response_format: { type: 'xml' } }, 'response_format', /xml/],
      [{ guided_json: { $ref: 'https://example.com/s.json' } }, 'guided_json', /\$ref/],
    ];
    for (const [extra, param, re] of cases) {
      const r = await post(s, '/v1/completions', { model: s.modelPath, prompt: 'x', max_tokens: 4, ...extra });
      assertError(r, 400, { param });
      assert.match(r.json.error.message, re, JSON.stringify(extra));
    }
    // Over --max-grammar-bytes: refused before anything compiles.
    const big = { type: 'string', description: 'x'.repeat(300000) };
    let r = await post(s, '/v1/completions', { model: s.modelPath, prompt: 'x', guided_json: big });
    assertError(r, 400, { param: 'guided_json' });
    assert.match(r.json.error.message, /max-grammar-bytes/);
    // Under the byte limit but too big a grammar (4,000 optional properties, each a branch):
    // refused by a compile limit, on the HTTP thread's small stack, and the server lives.
    const wide = { type: 'object', properties: Object.fromEntries(Array.from({ length: 4000 }, (_, i) => [`p${i}`, { type: 'string' }])) };
    r = await post(s, '/v1/completions', { model: s.modelPath, prompt: 'x', guided_json: wide });
    assertError(r, 400, { param: 'guided_json' });
    assert.match(r.json.error.message, /exceeds|at most|limit/);
    // Deeply nested schemas and grammars, as an attacker would send them.
    let deep = { type: 'string' };
    for (let i = 0; i < 2000; i++) deep = { type: 'array', items: deep };
    r = await post(s, '/v1/completions', { model: s.modelPath, prompt: 'x', guided_json: deep });
    assert.equal(r.status, 400, r.text);
    r = await post(s, '/v1/completions', { model: s.modelPath, prompt: 'x', guided_regex: '('.repeat(5000) + 'a' + ')'.repeat(5000) });
    assert.equal(r.status, 400, r.text);
    r = await post(s, '/v1/completions', { model: s.modelPath, prompt: 'x', guided_grammar: `root ::= ${'('.repeat(5000)}"a"${')'.repeat(5000)}` });
    assert.equal(r.status, 400, r.text);
    r = await post(s, '/v1/completions', { model: s.modelPath, prompt: 'x', guided_regex: 'a{10000}'.repeat(20) });
    assert.equal(r.status, 400, r.text);
    // Every nesting limit at once, just under each: arrays of arrays down to a pattern of
    // nested groups, and grammars of nested groups. Answered (200 or 400), never a crash: the
    // compile runs on a thread with a large stack, not the HTTP thread's.
    let nest = { type: 'string', pattern: `^${'('.repeat(31)}a${')'.repeat(31)}$` };
    for (let i = 0; i < 62; i++) nest = { type: 'array', items: nest };
    for (const extra of [{ guided_json: nest }, { guided_grammar: `root ::= ${'('.repeat(63)}"a"${')'.repeat(63)}` },
      { structured_outputs: { grammar: `start: ${'('.repeat(63)}"a"${')'.repeat(63)}` } }]) {
      r = await post(s, '/v1/completions', { model: s.modelPath, prompt: 'x', max_tokens: 2, ...extra });
      assert.ok(r.status === 200 || r.status === 400, r.text);
    }
    // The server still serves.
    const ok = await post(s, '/v1/completions', { model: s.modelPath, prompt: 'x', max_tokens: 8, guided_choice: ['ok'] });
    assert.equal(ok.status, 200);
    assert.equal(ok.json.choices[0].text, 'ok');
  });
}, { timeout: 60000 });

test('structured: /metrics counts requests by kind, compile and mask times', async () => {
  await serve('qwen3-tok', async (s) => {
    const c = client(s);
    for (let i = 0; i < 2; i++) await c.completions.create({ model: s.modelPath, prompt: 'x', max_tokens: 8, guided_choice: ['a', 'b'] });
    await c.completions.create({ model: s.modelPath, prompt: 'x', max_tokens: 8, guided_regex: '[0-9]{2}' });
    const m = await metrics(s);
    assert.equal(metric(m, 'folio:structured_output_requests_total', { kind: 'choice' }), 2);
    assert.equal(metric(m, 'folio:structured_output_requests_total', { kind: 'regex' }), 1);
    assert.equal(metric(m, 'folio:structured_output_cache_hits_total'), 1);
    assert.equal(metric(m, 'folio:structured_output_compile_seconds_count'), 3);
    assert.ok(metric(m, 'folio:structured_output_mask_seconds_count') >= 3);
  });
}, { timeout: 60000 });
