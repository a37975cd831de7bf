// Every error path, over raw HTTP (the body must be {"error":{"message","type","param","code"}})
// and through the openai SDK (the error class and status): malformed bodies, wrong types, values
// out of range, context overflow with vLLM's wording, unknown models, wrong methods, bodies over
// --max-request-body, API keys, a model without a chat template, and --max-waiting.
import {
  APIError, AuthenticationError, BadRequestError, InternalServerError, NotFoundError, RateLimitError,
} from 'openai';
import {
  assert, assertError, client, expectSdkError, get, http, metric, post, STORY, startServer, template, test, waitIdle,
  withServer, withTimeout, servedName, SLOW,
} from './lib.mjs';

const C = '/v1/completions';
const CHAT = '/v1/chat/completions';
const msgs = [{ role: 'user', content: 'Hi' }];

test('errors: malformed JSON is a 400 on every POST endpoint', async () => {
  await withServer({}, async (s) => {
    for (const p of [C, CHAT, '/tokenize', '/detokenize']) {
      for (const body of ['{"prompt": "x",', 'not json', '', '{"prompt": "x" "max_tokens": 1}', "{'prompt': 'x'}"]) {
        assertError(await post(s, p, body), 400, { param: null });
      }
      assertError(await post(s, p, '[1, 2]'), 400);
      assertError(await post(s, p, '"a string"'), 400);
    }
  });
});

// [name, path, body, param]: a value of the wrong type.
const wrongTypes = [
  ['max_tokens "abc"', C, { prompt: 'x', max_tokens: 'abc' }, 'max_tokens'],
  ['temperature "hot"', C, { prompt: 'x', temperature: 'hot' }, 'temperature'],
  ['messages not a list', CHAT, { messages: 'hello' }, 'messages'],
  ['messages missing', CHAT, {}, 'messages'],
  ['a message without a role', CHAT, { messages: [{ content: 'x' }] }, 'messages'],
  ['prompt a number', C, { prompt: 5 }, 'prompt'],
  ['prompt missing', C, { max_tokens: 3 }, 'prompt'],
  ['prompt an empty list', C, { prompt: [] }, 'prompt'],
  ['n 1.5', C, { prompt: 'x', n: 1.5 }, 'n'],
  ['stream "yes"', C, { prompt: 'x', stream: 'yes' }, 'stream'],
  ['stop a number', C, { prompt: 'x', stop: 5 }, 'stop'],
  ['stop_token_ids not ids', C, { prompt: 'x', stop_token_ids: ['a'] }, 'stop_token_ids'],
  ['logit_bias a list', C, { prompt: 'x', logit_bias: [1] }, 'logit_bias'],
  ['model a number', C, { prompt: 'x', model: 3 }, 'model'],
  ['stream_options without stream', C, { prompt: 'x', stream_options: { include_usage: true } }, 'stream_options'],
  ['top_logprobs without logprobs', CHAT, { messages: msgs, top_logprobs: 2 }, 'top_logprobs'],
];
for (const [name, p, body, param] of wrongTypes) {
  test(`errors: wrong type or shape: ${name} -> 400 (param ${param})`, async () => {
    await withServer({}, async (s) => {
      assertError(await post(s, p, body), 400, { param });
    });
  });
}

// [name, path, body, field]: out of range. The param names the field where the server knows it.
const outOfRange = [
  ['temperature -1', C, { prompt: 'x', temperature: -1 }, 'temperature'],
  ['top_p 1.5', C, { prompt: 'x', top_p: 1.5 }, 'top_p'],
  ['top_p 0', C, { prompt: 'x', top_p: 0 }, 'top_p'],
  ['n 0', C, { prompt: 'x', n: 0 }, 'n'],
  ['logprobs 50', C, { prompt: 'x', logprobs: 50 }, 'logprobs'],
  ['top_logprobs 30', CHAT, { messages: msgs, logprobs: true, top_logprobs: 30 }, 'top_logprobs'],
  ['presence_penalty 5', C, { prompt: 'x', presence_penalty: 5 }, 'presence_penalty'],
  ['frequency_penalty -3', C, { prompt: 'x', frequency_penalty: -3 }, 'frequency_penalty'],
  ['top_k -2', C, { prompt: 'x', top_k: -2 }, 'top_k'],
  ['max_tokens 0', C, { prompt: 'x', max_tokens: 0 }, 'max_tokens'],
  ['max_tokens -5', C, { prompt: 'x', max_tokens: -5 }, 'max_tokens'],
  ['min_p 2', C, { prompt: 'x', min_p: 2 }, 'min_p'],
  ['repetition_penalty 0', C, { prompt: 'x', repetition_penalty: 0 }, 'repetition_penalty'],
  ['logit_bias 500', C, { prompt: 'x', logit_bias: { 5: 500 } }, 'logit_bias'],
  ['prompt token id outside the vocabulary', C, { prompt: [1, 403, 99999] }, 'prompt'],
];
for (const [name, p, body, field] of outOfRange) {
  test(`errors: out of range: ${name} -> 400 naming ${field}`, async () => {
    await withServer({}, async (s) => {
      const e = assertError(await post(s, p, body), 400);
      if (e.param !== null) assert.equal(e.param, field);
      else if (field !== 'prompt') assert.match(e.message, new RegExp(field), `the message names ${field}`);
      // Streaming requests fail the same way, before any event.
      const st = await post(s, p, { ...body, stream: true });
      assertError(st, 400);
    });
  });
}

test('errors: SDK raises BadRequestError (status 400, param) for bad parameters, also for streams', async () => {
  await withServer({}, async (s) => {
    const sdk = client(s);
    let e = await expectSdkError(() => sdk.completions.create({ model: servedName(s), prompt: 'x', max_tokens: 'abc' }), BadRequestError, 400);
    assert.equal(e.param, 'max_tokens');
    assert.equal(e.type, 'BadRequestError');
    e = await expectSdkError(() => sdk.completions.create({ model: servedName(s), prompt: 'x', n: 0 }), BadRequestError, 400);
    assert.equal(e.param, 'n');
    await expectSdkError(() => sdk.completions.create({ model: servedName(s), prompt: 'x', temperature: -1, stream: true }), BadRequestError, 400);
    e = await expectSdkError(() => sdk.chat.completions.create({ model: servedName(s), messages: 'nope' }), BadRequestError, 400);
    assert.equal(e.param, 'messages');
    await expectSdkError(() => sdk.chat.completions.create({ model: servedName(s), messages: msgs, top_logprobs: 30, logprobs: true }), BadRequestError, 400);
  });
});

test('errors: trailing garbage after the JSON object is malformed JSON -> 400', async () => {
  await withServer({}, async (s) => {
    for (const p of [C, '/tokenize']) {
      for (const body of ['{"prompt": "Once", "max_tokens": 2}}', '{"prompt": "Once", "max_tokens": 2} trailing', '{"prompt": "Once"}{"prompt": "x"}']) {
        assertError(await post(s, p, body), 400, { param: null });
      }
    }
  });
});

test('errors: unsupported features are 400s that say so (best_of, suffix, response_format xml, echo+logprobs)', async () => {
  await withServer({}, async (s) => {
    assertError(await post(s, C, { prompt: 'x', best_of: 3 }), 400, { param: 'best_of' });
    assertError(await post(s, C, { prompt: 'x', suffix: 'y' }), 400, { param: 'suffix' });
    assertError(await post(s, CHAT, { messages: msgs, response_format: { type: 'xml' } }), 400, { param: 'response_format' });
    assertError(await post(s, CHAT, { messages: msgs, tool_choice: 'required' }), 400, { param: 'tool_choice' });
    assertError(await post(s, C, { prompt: 'x', echo: true, logprobs: 1 }), 400);
  });
});

test('errors: prompt + max_tokens over max_model_len -> 400 with vLLM wording and the right numbers', async () => {
  await withServer({}, async (s) => {
    const e = assertError(await post(s, C, { prompt: STORY.prompt, max_tokens: 600 }), 400);
    assert.ok(e.message.startsWith("This model's maximum context length is 512 tokens. However, you requested 600 output tokens "
      + 'and your prompt contains 5 input tokens, for a total of 605 tokens.'), e.message);
    // One over the limit.
    const one = assertError(await post(s, C, { prompt: STORY.promptIds, max_tokens: 508 }), 400);
    assert.match(one.message, /maximum context length is 512 tokens.*508 output tokens.*5 input tokens.*total of 513 tokens/);
    // A prompt that alone fills the context.
    const ids = [1, ...Array(599).fill(403)];
    const long = assertError(await post(s, C, { prompt: ids, max_tokens: 1 }), 400);
    assert.match(long.message, /^This model's maximum context length is 512 tokens\. However, .*\b600\b/);
    // The SDK sees a BadRequestError.
    const se = await expectSdkError(() => client(s).completions.create({ model: servedName(s), prompt: STORY.prompt, max_tokens: 600 }), BadRequestError, 400);
    assert.match(se.message, /maximum context length is 512 tokens/);
    // Exactly at the limit is fine.
    const ok = await post(s, C, { prompt: STORY.promptIds, max_tokens: 507, ignore_eos: true });
    assert.equal(ok.status, 200, ok.text);
  });
});

test('errors: chat prompt + max_tokens over max_model_len -> 400 with vLLM wording', async () => {
  await withServer({ args: ['--chat-template', template('story.jinja')] }, async (s) => {
    const e = assertError(await post(s, CHAT, { messages: [{ role: 'user', content: STORY.prompt }], max_tokens: 510 }), 400);
    assert.ok(e.message.startsWith("This model's maximum context length is 512 tokens. However, you requested 510 output tokens "
      + 'and your prompt contains 5 input tokens, for a total of 515 tokens.'), e.message);
  });
});

test('errors: unknown model -> 404 "The model `x` does not exist." (raw and SDK NotFoundError)', async () => {
  await withServer({}, async (s) => {
    for (const [p, body] of [[C, { prompt: 'x' }], [CHAT, { messages: msgs }], ['/tokenize', { prompt: 'x' }], ['/detokenize', { tokens: [1] }]]) {
      assertError(await post(s, p, { ...body, model: 'x' }), 404, { message: 'The model `x` does not exist.' });
    }
    const sdk = client(s);
    const e = await expectSdkError(() => sdk.completions.create({ model: 'gpt-4', prompt: 'x' }), NotFoundError, 404);
    assert.match(e.message, /The model `gpt-4` does not exist\./);
    await expectSdkError(() => sdk.chat.completions.create({ model: 'gpt-4', messages: msgs }), NotFoundError, 404);
    await expectSdkError(() => sdk.completions.create({ model: 'gpt-4', prompt: 'x', stream: true }), NotFoundError, 404);
  });
});

test('errors: wrong method -> 405 (raw with Allow; SDK APIError status 405)', async () => {
  await withServer({}, async (s) => {
    const r = await get(s, C);
    assertError(r, 405);
    assert.equal(r.headers.get('allow'), 'POST');
    const put = await http(s, 'PUT', CHAT, { body: { messages: msgs } });
    assertError(put, 405);
    const e = await expectSdkError(() => client(s).get('/completions'), APIError, 405);
    assert.equal(e.status, 405);
  });
});

test('errors: a body over --max-request-body -> 413 (content-length and chunked), under it is read', async () => {
  await withServer({ args: ['--max-request-body', '1'] }, async (s) => {
    const big = JSON.stringify({ prompt: 'a '.repeat(600 * 1024), max_tokens: 1 });
    assert.ok(big.length > 1024 * 1024);
    assertError(await post(s, C, big), 413);
    // Chunked: no Content-Length to refuse up front.
    const enc = new TextEncoder().encode(big);
    const stream = new ReadableStream({
      start(ctl) {
        for (let i = 0; i < enc.length; i += 65536) ctl.enqueue(enc.subarray(i, i + 65536));
        ctl.close();
      },
    });
    const res = await fetch(`${s.url}${C}`, {
      method: 'POST', body: stream, duplex: 'half', headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(20000 * SLOW),
    });
    const text = await res.text();
    assertError({ status: res.status, headers: res.headers, text, json: JSON.parse(text) }, 413);
    // The SDK sees an APIError with status 413.
    await expectSdkError(() => client(s).completions.create({ model: servedName(s), prompt: 'a '.repeat(600 * 1024), max_tokens: 1 }), APIError, 413);
    // Just under the limit: read and answered (the prompt is then too long for the model: 400).
    const under = JSON.stringify({ prompt: 'a '.repeat(500 * 1024), max_tokens: 1 });
    const u = await post(s, C, under);
    assert.notEqual(u.status, 413);
    // And the server still serves.
    const ok = await post(s, C, { prompt: STORY.prompt, max_tokens: 40, temperature: 0 });
    assert.equal(ok.json.choices[0].text, STORY.text);
  });
});

test('errors: --api-key: 401 without or with a wrong key; /health, /version, /metrics stay open; the key works', async () => {
  await withServer({ args: ['--api-key', 'sekret-key'] }, async (s) => {
    for (const [m, p, body] of [['POST', C, { prompt: 'x' }], ['POST', CHAT, { messages: msgs }], ['GET', '/v1/models', undefined],
      ['GET', '/v1/models/x', undefined], ['POST', '/tokenize', { prompt: 'x' }], ['POST', '/detokenize', { tokens: [1] }], ['GET', '/stats', undefined]]) {
      assertError(await http(s, m, p, { body }), 401);
      for (const auth of ['Bearer wrong', 'Bearer sekret-ke', 'Bearer sekret-keyy', 'sekret-key', 'Basic sekret-key', 'Bearer ']) {
        assertError(await http(s, m, p, { body, headers: { authorization: auth } }), 401);
      }
    }
    for (const p of ['/health', '/version', '/metrics']) {
      const r = await get(s, p);
      assert.equal(r.status, 200, `${p} is open`);
    }
    const good = { authorization: 'Bearer sekret-key' };
    const r = await post(s, C, { prompt: STORY.prompt, max_tokens: 40, temperature: 0 }, { headers: good });
    assert.equal(r.status, 200);
    assert.equal(r.json.choices[0].text, STORY.text);
    assert.equal((await get(s, '/v1/models', { headers: good })).status, 200);
    // The SDK: AuthenticationError with a wrong key, success with the right one.
    const e = await expectSdkError(() => client(s, { apiKey: 'wrong' }).completions.create({ model: servedName(s), prompt: 'x' }), AuthenticationError, 401);
    assert.equal(e.status, 401);
    await expectSdkError(() => client(s, { apiKey: 'wrong' }).models.list(), AuthenticationError, 401);
    const ok = await client(s, { apiKey: 'sekret-key' }).completions.create({ model: servedName(s), prompt: STORY.prompt, max_tokens: 40, temperature: 0 });
    assert.equal(ok.choices[0].text, STORY.text);
  });
});

test('errors: a model without a chat template: chat -> 400 that says to pass --chat-template', async () => {
  await withServer({}, async (s) => {
    const e = assertError(await post(s, CHAT, { messages: msgs }), 400);
    assert.match(e.message, /--chat-template/);
    assertError(await post(s, CHAT, { messages: msgs, stream: true }), 400);
    assertError(await post(s, '/tokenize', { messages: msgs }), 400);
    const se = await expectSdkError(() => client(s).chat.completions.create({ model: servedName(s), messages: msgs }), BadRequestError, 400);
    assert.match(se.message, /--chat-template/);
    // Completions still work.
    const c = await post(s, C, { prompt: STORY.prompt, max_tokens: 40, temperature: 0 });
    assert.equal(c.json.choices[0].text, STORY.text);
  });
});

test('errors: a --chat-template that does not parse stops the server with a message', async () => {
  const s = await startServer({ args: ['--chat-template', '{% for m in messages %}{{ m.content }'], ready: false });
  await withTimeout(s.exited, 15000 * SLOW, 'the server exits');
  assert.notEqual(s.code, 0);
  assert.match(s.log, /chat template/i);
});

test('errors: --max-waiting 1 --max-num-seqs 1: excess requests get 503/429 at once, none hang, the server recovers', async () => {
  await withServer({ args: ['--max-waiting', '1', '--max-num-seqs', '1'] }, async (s) => {
    const N = 24;
    const t0 = Date.now();
    const results = await Promise.all(Array.from({ length: N }, (_, i) => post(s, C, {
      prompt: STORY.prompt, max_tokens: 400, ignore_eos: true, seed: i,
    }, { timeout: 60000 * SLOW })));
    const ok = results.filter((r) => r.status === 200);
    const busy = results.filter((r) => r.status === 503 || r.status === 429);
    assert.equal(ok.length + busy.length, N, `statuses: ${results.map((r) => r.status).join(',')}`);
    assert.ok(busy.length > 0, 'some requests are refused');
    assert.ok(ok.length >= 2, 'the running and the waiting one are served');
    for (const r of ok) assert.equal(r.json.usage.completion_tokens, 400);
    for (const r of busy) {
      assertError(r, r.status);
      assert.ok(r.headers.get('retry-after'), 'Retry-After tells clients when to come back');
    }
    assert.ok(Date.now() - t0 < 30000 * SLOW);
    await waitIdle(s);
    // The SDK maps the refusal to its class for the status.
    const sdk = client(s);
    const burst = await Promise.allSettled(Array.from({ length: 8 }, () => sdk.completions.create({
      model: servedName(s), prompt: STORY.prompt, max_tokens: 300, ignore_eos: true,
    })));
    const refused = burst.filter((b) => b.status === 'rejected').map((b) => b.reason);
    for (const e of refused) {
      assert.ok(e instanceof InternalServerError || e instanceof RateLimitError, `${e.constructor.name}: ${e.message}`);
      assert.ok(e.status === 503 || e.status === 429);
    }
    await waitIdle(s);
    const after = await post(s, C, { prompt: STORY.prompt, max_tokens: 40, temperature: 0 });
    assert.equal(after.json.choices[0].text, STORY.text);
    const m = await waitIdle(s);
    assert.equal(metric(m, 'folio:num_requests_waiting'), 0);
  });
});
