// Per-request limits (issue 17): each over-limit body is refused at the HTTP edge, before the
// engine allocates for it, with a 400 (or 413) that names the parameter and the flag; a body
// at each limit still works; and the memory a big request took comes back once it is done.
import { readFileSync } from 'node:fs';
import { assert, assertError, ENGINE, parseSSE, post, SLOW, STORY, template, test, withServer } from './lib.mjs';

const C = '/v1/completions';
const CHAT = '/v1/chat/completions';
const msgs = [{ role: 'user', content: 'Hi' }];

// `count` stop strings of `len` bytes each, unlike one another.
const stops = (count, len) => Array.from({ length: count }, (_, i) => String.fromCharCode(65 + (i % 26)) + 'q'.repeat(len - 1));

test('limits: stop strings add up to at most --max-stop-bytes (16384)', async () => {
  await withServer({}, async (s) => {
    const ok = await post(s, C, { prompt: STORY.prompt, max_tokens: 8, stop: stops(16, 1024) });
    assert.equal(ok.status, 200, ok.text);
    const over = stops(16, 1024);
    over[15] += 'q';
    assertError(await post(s, C, { prompt: STORY.prompt, max_tokens: 8, stop: over }), 400, {
      param: 'stop', message: 'the stop strings add up to 16385 bytes; at most 16384 (--max-stop-bytes)',
    });
    // The request: 8 prompts, n=8, 16 stop strings of 64 KB (1 MB of body).
    const attack = { prompt: Array(8).fill(STORY.prompt), n: 8, max_tokens: 32, stop: stops(16, 65536) };
    assertError(await post(s, C, attack), 400, {
      param: 'stop', message: 'the stop strings add up to 1048576 bytes; at most 16384 (--max-stop-bytes)',
    });
    assertError(await post(s, CHAT, { messages: msgs, stop: 'x'.repeat(16385) }), 400, { param: 'stop' });
  });
  await withServer({ args: ['--max-stop-bytes', '10'] }, async (s) => {
    const ok = await post(s, C, { prompt: STORY.prompt, max_tokens: 8, stop: ['abcde', 'fghij'] });
    assert.equal(ok.status, 200, ok.text);
    assertError(await post(s, C, { prompt: STORY.prompt, max_tokens: 8, stop: 'abcdefghijk' }), 400, {
      param: 'stop', message: 'the stop strings add up to 11 bytes; at most 10 (--max-stop-bytes)',
    });
  });
});

test('limits: stop_token_ids and logit_bias entries (--max-stop-token-ids, --max-logit-bias: 1024)', async () => {
  await withServer({}, async (s) => {
    const ids = (k) => Array.from({ length: k }, (_, i) => 3 + (i % 500));
    const ok = await post(s, C, { prompt: STORY.prompt, max_tokens: 4, stop_token_ids: ids(1024) });
    assert.equal(ok.status, 200, ok.text);
    assertError(await post(s, C, { prompt: STORY.prompt, max_tokens: 4, stop_token_ids: ids(1025) }), 400, {
      param: 'stop_token_ids', message: 'stop_token_ids has 1025 ids; at most 1024 (--max-stop-token-ids)',
    });
    const bias = Object.fromEntries(Array.from({ length: 1025 }, (_, i) => [String(i), 1]));
    assertError(await post(s, C, { prompt: STORY.prompt, max_tokens: 4, logit_bias: bias }), 400, {
      param: 'logit_bias', message: 'logit_bias has 1025 entries; at most 1024 (--max-logit-bias)',
    });
  });
  await withServer({ args: ['--max-stop-token-ids', '2', '--max-logit-bias', '3'] }, async (s) => {
    const ok = await post(s, C, { prompt: STORY.prompt, max_tokens: 4, stop_token_ids: [5, 6], logit_bias: { 5: 1, 6: 2, 7: 3 } });
    assert.equal(ok.status, 200, ok.text);
    assertError(await post(s, CHAT, { messages: msgs, max_tokens: 4, stop_token_ids: [5, 6, 7] }), 400, {
      param: 'stop_token_ids', message: 'stop_token_ids has 3 ids; at most 2 (--max-stop-token-ids)',
    });
    assertError(await post(s, CHAT, { messages: msgs, max_tokens: 4, logit_bias: { 5: 1, 6: 2, 7: 3, 8: 4 } }), 400, {
      param: 'logit_bias', message: 'logit_bias has 4 entries; at most 3 (--max-logit-bias)',
    });
  });
});

test('limits: prompts x n must fit --max-num-seqs', async () => {
  await withServer({ args: ['--max-num-seqs', '8'] }, async (s) => {
    const ok = await post(s, C, { prompt: [STORY.prompt, 'Lily and Ben'], n: 4, max_tokens: 4 });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.choices.length, 8);
    assertError(await post(s, C, { prompt: [STORY.prompt, 'a', 'b'], n: 3, max_tokens: 4 }), 400, {
      param: 'n', message: '3 prompts x n=3 is 9 sequences, but this engine runs at most 8 at once (--max-num-seqs)',
    });
    assertError(await post(s, CHAT, { messages: msgs, n: 9, max_tokens: 4 }), 400, {
      param: 'n', message: '1 prompt x n=9 is 9 sequences, but this engine runs at most 8 at once (--max-num-seqs)',
    });
  });
  // The default engine runs 256: 8 prompts x n=64 is 512.
  await withServer({}, async (s) => {
    assertError(await post(s, C, { prompt: Array(8).fill('x'), n: 64, max_tokens: 1 }), 400, {
      param: 'n', message: '8 prompts x n=64 is 512 sequences, but this engine runs at most 256 at once (--max-num-seqs)',
    });
  });
});

test('limits: JSON values are counted before parsing (--max-json-values: 1000000, else 413)', async () => {
  await withServer({}, async (s) => {
    // A long list of token ids is far under the limit.
    const long = Array.from({ length: 131072 }, (_, i) => 3 + (i % 500));
    const ok = await post(s, '/detokenize', { tokens: long });
    assert.equal(ok.status, 200, ok.text.slice(0, 300));
    // A million and one values (2 MB: under --max-request-body) are refused unparsed.
    const big = `{"prompt":[${'1,'.repeat(1000000)}1]}`;
    assertError(await post(s, C, big), 413, {
      param: null, message: 'the request body holds more than 1000000 JSON values (--max-json-values)',
    });
    assertError(await post(s, '/tokenize', `{"prompt":"x","junk":[${'[],'.repeat(1000000)}0]}`), 413, { param: null });
  });
  await withServer({ args: ['--max-json-values', '40'] }, async (s) => {
    // 40 values: the object, "prompt", its list, 35 ids, "max_tokens" and 1
    const ids = (k) => Array.from({ length: k }, (_, i) => 3 + i);
    const ok = await post(s, C, { prompt: ids(35), max_tokens: 1 });
    assert.equal(ok.status, 200, ok.text);
    assertError(await post(s, C, { prompt: ids(36), max_tokens: 1 }), 413, {
      param: null, message: 'the request body holds more than 40 JSON values (--max-json-values)',
    });
    // Brackets and commas inside strings count nothing.
    const text = await post(s, C, { prompt: '[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41]', max_tokens: 1 });
    assert.equal(text.status, 200, text.text);
  });
});

// The message of a refused request that could return `k` logprob entries.
const lpMessage = (k, { chat = false, prompts = false, limit = 262144 } = {}) =>
  `this request could return ${k} logprob entries (${prompts ? 'prompts x ' : ''}n x max_tokens x (1 + ${chat ? 'top_logprobs' : 'logprobs'}));` +
  ` at most ${limit} (--max-logprob-entries): lower max_tokens, n or ${chat ? 'top_logprobs' : 'logprobs'}, or set stream=true`;

test('limits: a non-streaming answer\'s logprob entries (--max-logprob-entries: 262144)', async () => {
  await withServer({}, async (s) => {
    // 8 x 2000 x 21: refused as it is parsed, before the engine sees it (or its context limit)
    assertError(await post(s, C, { prompt: STORY.prompt, n: 8, max_tokens: 2000, logprobs: 20 }), 400, {
      param: 'logprobs', message: lpMessage(336000),
    });
    assertError(await post(s, CHAT, { messages: msgs, n: 8, max_tokens: 2000, logprobs: true, top_logprobs: 20 }), 400, {
      param: 'logprobs', message: lpMessage(336000, { chat: true }),
    });
  });
  let room = 0; // the chat prompt's room for output: max_model_len minus its tokens
  await withServer({ args: ['--max-logprob-entries', '1000', '--chat-template', template('story.jinja')] }, async (s) => {
    // 2 prompts x n=2 x 50 tokens x (1 + 4) = 1000: at the limit
    const body = { prompt: [STORY.prompt, 'Lily and Ben'], n: 2, max_tokens: 50, logprobs: 4, ignore_eos: true, seed: 1 };
    const ok = await post(s, C, body);
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.choices.length, 4);
    for (const c of ok.json.choices) {
      assert.equal(c.logprobs.tokens.length, 50);
      assert.ok(c.logprobs.top_logprobs.every((t) => Object.keys(t).length >= 4), JSON.stringify(c.logprobs.top_logprobs[0]));
    }
    const over = { ...body, max_tokens: 51 };
    assertError(await post(s, C, over), 400, { param: 'logprobs', message: lpMessage(1020, { prompts: true, limit: 1000 }) });
    // A stream holds one event at a time: the same request streams.
    const st = await post(s, C, { ...over, stream: true });
    assert.equal(st.status, 200, st.text.slice(0, 300));
    const sse = parseSSE(st.text);
    assert.ok(sse.done, st.text.slice(-300));
    assert.equal(sse.events.filter((e) => e.choices?.[0]?.logprobs).reduce((k, e) => k + e.choices[0].logprobs.tokens.length, 0), 4 * 51);
    // Without logprobs nothing is counted.
    const plain = await post(s, C, { ...over, logprobs: undefined });
    assert.equal(plain.status, 200, plain.text);

    // Chat without max_tokens may use the rest of the context: checked once the prompt is built.
    const tk = await post(s, '/tokenize', { messages: msgs });
    assert.equal(tk.status, 200, tk.text);
    room = tk.json.max_model_len - tk.json.count;
    assert.ok(room > 334 && room < 512, `room ${room}`);
    // n=2 x room x (1 + 1) and 1 x room x (1 + 2) are over 1000
    assertError(await post(s, CHAT, { messages: msgs, n: 2, logprobs: true, top_logprobs: 1 }), 400, {
      param: 'logprobs', message: lpMessage(4 * room, { chat: true, limit: 1000 }),
    });
    assertError(await post(s, CHAT, { messages: msgs, logprobs: true, top_logprobs: 2 }), 400, {
      param: 'logprobs', message: lpMessage(3 * room, { chat: true, limit: 1000 }),
    });
  });
  // At the limit: room x (1 + 1), to the end of the context.
  await withServer({ args: ['--max-logprob-entries', String(2 * room), '--chat-template', template('story.jinja')] }, async (s) => {
    const body = { messages: msgs, logprobs: true, top_logprobs: 1, ignore_eos: true };
    const ok = await post(s, CHAT, body);
    assert.equal(ok.status, 200, ok.text.slice(0, 300));
    assert.equal(ok.json.usage.completion_tokens, room);
    assert.equal(ok.json.choices[0].logprobs.content.length, room);
    assertError(await post(s, CHAT, { ...body, top_logprobs: 2 }), 400, {
      param: 'logprobs', message: lpMessage(3 * room, { chat: true, limit: 2 * room }),
    });
    const st = await post(s, CHAT, { ...body, top_logprobs: 2, stream: true });
    assert.equal(st.status, 200, st.text.slice(0, 300));
    assert.ok(parseSSE(st.text).done, st.text.slice(-300));
  });
});

// VmRSS of the server, in MiB.
const rss = (s) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${s.proc.pid}/status`, 'utf8'))[1]) / 1024;

test('limits: memory comes back after a big request', async () => {
  // A sanitizer's allocator keeps freed memory in quarantine and ignores glibc's settings.
  if (/asan|tsan/i.test(ENGINE)) return;
  // The KV cache is allocated at load and its pages come in on first use: a small cache
  // without prefix caching, which a warm-up of the same shape (without logprobs) cycles
  // through, so that the baseline holds its pages. The big request's 645120 logprob entries
  // are past --max-logprob-entries' default.
  await withServer({ args: ['--kv-cache-space', '0.05', '--no-enable-prefix-caching', '--max-logprob-entries', '1000000'] }, async (s) => {
    const shape = { prompt: Array.from({ length: 32 }, (_, i) => `${STORY.prompt} ${i}`), n: 8, max_tokens: 120, ignore_eos: true, seed: 1 };
    for (let i = 0; i < 2; i++) {
      const warm = await post(s, C, shape, { timeout: 120000 * SLOW });
      assert.equal(warm.status, 200, warm.text.slice(0, 300));
    }
    const base = rss(s);
    // 256 choices x 120 tokens with 20 logprobs each: a response of ~15 MB, built as a cJSON
    // tree of millions of small nodes, plus 16 KB of stop strings in every request.
    const big = await post(s, C, { ...shape, logprobs: 20, stop: stops(16, 1024) }, { timeout: 120000 * SLOW });
    assert.equal(big.status, 200, big.text.slice(0, 300));
    assert.ok(big.text.length > 5e6, `response of ${big.text.length} bytes`);
    const after = rss(s);
    // glibc kept it all before (64 -> 151 MiB here); trimmed after the request, 57 -> 58 MiB.
    assert.ok(after < base * 1.2 + 16, `RSS ${after.toFixed(0)} MiB after the request, ${base.toFixed(0)} MiB before`);
  });
}, { timeout: 300000 });
