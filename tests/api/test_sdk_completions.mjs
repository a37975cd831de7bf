// /v1/completions through the official openai SDK (v4): non-streaming and streaming, n and seeds,
// logprobs, stop strings and stop_token_ids, max_tokens, echo, usage and prefix-cache hits, and
// the vLLM extras (ignore_eos, priority) that the SDK passes through.
import {
  assert, assertRecent, client, post, STORY, test, withServer, servedName,
} from './lib.mjs';

const greedy = { temperature: 0, max_tokens: 40 };

function checkBase(r, s, object = 'text_completion') {
  assert.match(r.id, /^cmpl-/);
  assert.equal(r.object, object);
  assertRecent(r.created);
  assert.equal(r.model, servedName(s));
}

test('sdk completions.create: README text, id cmpl-, object text_completion, created, model, usage', async () => {
  await withServer({}, async (s) => {
    const r = await client(s).completions.create({ model: servedName(s), prompt: STORY.prompt, ...greedy });
    checkBase(r, s);
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0].index, 0);
    assert.equal(r.choices[0].text, STORY.text);
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.deepEqual(
      { p: r.usage.prompt_tokens, c: r.usage.completion_tokens, t: r.usage.total_tokens },
      { p: 5, c: 40, t: 45 },
    );
    assert.equal(r.usage.prompt_tokens_details.cached_tokens, 0);
  });
});

test('sdk completions.create stream: deltas concatenate, last chunk has finish_reason, usage chunk, [DONE] consumed', async () => {
  await withServer({}, async (s) => {
    const stream = await client(s).completions.create({
      model: servedName(s), prompt: STORY.prompt, ...greedy, stream: true, stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.ok(chunks.length >= 2);
    const usageChunk = chunks.at(-1);
    assert.deepEqual(usageChunk.choices, []);
    assert.deepEqual(
      [usageChunk.usage.prompt_tokens, usageChunk.usage.completion_tokens, usageChunk.usage.total_tokens], [5, 40, 45],
    );
    const content = chunks.slice(0, -1);
    let text = '';
    content.forEach((c, i) => {
      checkBase(c, s);
      assert.equal(c.id, chunks[0].id);
      assert.equal(c.choices.length, 1);
      text += c.choices[0].text;
      assert.equal(c.choices[0].finish_reason, i === content.length - 1 ? 'length' : null);
      assert.ok(c.usage == null, 'usage only on the final chunk');
    });
    assert.equal(text, STORY.text);
    assert.equal(usageChunk.id, chunks[0].id);
  });
});

test('sdk completions: n=3 gives three choices with distinct indices; same seed same outputs, other seed differs', async () => {
  await withServer({}, async (s) => {
    const sdk = client(s);
    const req = { model: servedName(s), prompt: STORY.prompt, max_tokens: 24, temperature: 1.0, n: 3, ignore_eos: true };
    const a = await sdk.completions.create({ ...req, seed: 42 });
    const b = await sdk.completions.create({ ...req, seed: 42 });
    const c = await sdk.completions.create({ ...req, seed: 4242 });
    for (const r of [a, b, c]) {
      assert.deepEqual(r.choices.map((x) => x.index).sort(), [0, 1, 2]);
      assert.equal(r.usage.completion_tokens, 72);
      assert.equal(r.usage.prompt_tokens, 5);
      for (const ch of r.choices) assert.equal(ch.finish_reason, 'length');
    }
    const texts = (r) => [...r.choices].sort((x, y) => x.index - y.index).map((x) => x.text);
    assert.deepEqual(texts(a), texts(b), 'the same seed gives the same samples');
    assert.notDeepEqual(texts(a), texts(c), 'another seed gives other samples');
    assert.ok(new Set(texts(a)).size > 1, `the n samples of one seeded request are all the same: ${JSON.stringify(texts(a))}`);
  });
});

test('sdk completions: n=2 with two prompts: choices 0..3 (prompt-major), streamed each finishes once', async () => {
  await withServer({}, async (s) => {
    const sdk = client(s);
    const r = await sdk.completions.create({ model: servedName(s), prompt: [STORY.prompt, 'Lily and Ben'], n: 2, ...greedy });
    assert.deepEqual(r.choices.map((x) => x.index), [0, 1, 2, 3]);
    assert.equal(r.choices[0].text, STORY.text);
    assert.equal(r.choices[1].text, STORY.text, 'greedy: both samples of prompt 0 are the README text');
    assert.equal(r.choices[2].text, r.choices[3].text);
    assert.equal(r.usage.completion_tokens, 160);
    const stream = await sdk.completions.create({ model: servedName(s), prompt: STORY.prompt, n: 3, ...greedy, stream: true });
    const texts = ['', '', ''];
    const fin = [0, 0, 0];
    for await (const c of stream) {
      for (const ch of c.choices) {
        texts[ch.index] += ch.text;
        if (ch.finish_reason) fin[ch.index]++;
      }
    }
    assert.deepEqual(texts, [STORY.text, STORY.text, STORY.text]);
    assert.deepEqual(fin, [1, 1, 1]);
  });
});

test('sdk completions logprobs=3: tokens/token_logprobs/top_logprobs/text_offset match completion_tokens', async () => {
  await withServer({}, async (s) => {
    const r = await client(s).completions.create({ model: servedName(s), prompt: STORY.prompt, temperature: 0, max_tokens: 12, logprobs: 3 });
    const lp = r.choices[0].logprobs;
    const n = r.usage.completion_tokens;
    assert.equal(n, 12);
    for (const k of ['tokens', 'token_logprobs', 'top_logprobs', 'text_offset']) assert.equal(lp[k].length, n, k);
    for (let i = 0; i < n; i++) {
      assert.equal(typeof lp.tokens[i], 'string');
      assert.ok(lp.token_logprobs[i] <= 0, `logprob ${lp.token_logprobs[i]} > 0`);
      const top = Object.values(lp.top_logprobs[i]);
      assert.ok(top.length >= 3 && top.length <= 4, `top_logprobs[${i}] has ${top.length} entries`);
      for (const v of top) assert.ok(v <= 0);
      // Greedy: the chosen token is the most likely one.
      assert.ok(Math.abs(Math.max(...top) - lp.token_logprobs[i]) < 1e-5, `greedy token ${i} is not the top one`);
      if (i > 0) assert.ok(lp.text_offset[i] >= lp.text_offset[i - 1]);
    }
    assert.equal(lp.text_offset[0], 0);
    const z = await client(s).completions.create({ model: servedName(s), prompt: STORY.prompt, max_tokens: 5, logprobs: 0 });
    assert.equal(z.choices[0].logprobs.token_logprobs.length, 5);
    for (const v of z.choices[0].logprobs.token_logprobs) assert.ok(v <= 0);
  });
});

test('sdk completions logprobs: tokens concatenate to the text and text_offset points at each token', async () => {
  await withServer({}, async (s) => {
    const r = await client(s).completions.create({ model: servedName(s), prompt: STORY.prompt, temperature: 0, max_tokens: 12, logprobs: 1 });
    const { text } = r.choices[0];
    const lp = r.choices[0].logprobs;
    assert.equal(lp.tokens.join(''), text, `tokens ${JSON.stringify(lp.tokens)} vs text ${JSON.stringify(text)}`);
    for (let i = 0; i < lp.tokens.length; i++) {
      assert.equal(text.slice(lp.text_offset[i], lp.text_offset[i] + lp.tokens[i].length), lp.tokens[i],
        `text_offset[${i}] = ${lp.text_offset[i]} does not point at ${JSON.stringify(lp.tokens[i])}`);
    }
    // The streamed logprobs agree with the non-streamed ones.
    const stream = await client(s).completions.create({ model: servedName(s), prompt: STORY.prompt, temperature: 0, max_tokens: 12, logprobs: 1, stream: true });
    const toks = [];
    const offs = [];
    for await (const c of stream) {
      const l = c.choices[0]?.logprobs;
      if (l) {
        toks.push(...l.tokens);
        offs.push(...l.text_offset);
      }
    }
    assert.deepEqual(toks, lp.tokens);
    assert.deepEqual(offs, lp.text_offset);
  });
});

test('sdk completions: stop strings end the text before the stop (finish_reason stop, stop_reason the string)', async () => {
  await withServer({}, async (s) => {
    const sdk = client(s);
    const base = { model: servedName(s), prompt: STORY.prompt, ...greedy };
    const a = await sdk.completions.create({ ...base, stop: ' girl' });
    assert.equal(a.choices[0].text, ', there was a little');
    assert.equal(a.choices[0].finish_reason, 'stop');
    assert.equal(a.choices[0].stop_reason, ' girl');
    // The first of several to appear wins.
    const b = await sdk.completions.create({ ...base, stop: [' park', 'Lily'] });
    assert.equal(b.choices[0].text, ', there was a little girl named ');
    assert.equal(b.choices[0].stop_reason, 'Lily');
    // A stop string that spans tokens: nothing of it leaks into a stream.
    const stream = await sdk.completions.create({ ...base, stop: ['e gi'], stream: true });
    let text = '';
    let fin = null;
    let reason;
    for await (const c of stream) {
      for (const ch of c.choices) {
        text += ch.text;
        if (ch.finish_reason) [fin, reason] = [ch.finish_reason, ch.stop_reason];
      }
    }
    assert.equal(text, ', there was a littl');
    assert.equal(fin, 'stop');
    assert.equal(reason, 'e gi');
    const inc = await sdk.completions.create({ ...base, stop: ['Lily'], include_stop_str_in_output: true });
    assert.equal(inc.choices[0].text, ', there was a little girl named Lily');
    // A stop string that never appears changes nothing.
    const none = await sdk.completions.create({ ...base, stop: ['zebra'] });
    assert.equal(none.choices[0].text, STORY.text);
    assert.equal(none.choices[0].finish_reason, 'length');
  });
});

test('sdk completions: stop_token_ids stop at the token (finish_reason stop, stop_reason the id)', async () => {
  await withServer({}, async (s) => {
    // Greedy ids: 432 "," 383 "there" 286 "was" 261 "a" 376 "little" ...
    const r = await client(s).completions.create({ model: servedName(s), prompt: STORY.prompt, ...greedy, stop_token_ids: [376] });
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.equal(r.choices[0].stop_reason, 376);
    assert.equal(r.usage.completion_tokens, 5);
    assert.ok(r.choices[0].text.startsWith(', there was a'), r.choices[0].text);
  });
});

// vLLM's V1 detokenizer leaves a stop token's text out (stop_terminated) unless
// include_stop_str_in_output is set; its V0 kept non-special ones.
test('sdk completions: a stop token id leaves its text out, unless include_stop_str_in_output', async () => {
  await withServer({}, async (s) => {
    const r = await client(s).completions.create({ model: servedName(s), prompt: STORY.prompt, ...greedy, stop_token_ids: [376] });
    assert.equal(r.choices[0].text, ', there was a');
    const k = await client(s).completions.create({
      model: servedName(s), prompt: STORY.prompt, ...greedy, stop_token_ids: [376], include_stop_str_in_output: true,
    });
    assert.equal(k.choices[0].text, ', there was a little');
  });
});

test('sdk completions: max_tokens gives finish_reason length and completion_tokens == max_tokens', async () => {
  await withServer({}, async (s) => {
    for (const m of [1, 7, 100]) {
      const r = await client(s).completions.create({ model: servedName(s), prompt: STORY.prompt, max_tokens: m, ignore_eos: true });
      assert.equal(r.choices[0].finish_reason, 'length');
      assert.equal(r.usage.completion_tokens, m);
      assert.equal(r.usage.total_tokens, 5 + m);
    }
    // The OpenAI default for completions is 16.
    const d = await client(s).completions.create({ model: servedName(s), prompt: STORY.prompt, ignore_eos: true });
    assert.equal(d.usage.completion_tokens, 16);
  });
});

test('sdk completions: echo puts the prompt in front of the text (also streamed)', async () => {
  await withServer({}, async (s) => {
    const sdk = client(s);
    const r = await sdk.completions.create({ model: servedName(s), prompt: STORY.prompt, ...greedy, echo: true });
    assert.equal(r.choices[0].text, STORY.prompt + STORY.text);
    assert.equal(r.usage.completion_tokens, 40);
    const stream = await sdk.completions.create({ model: servedName(s), prompt: STORY.prompt, ...greedy, echo: true, stream: true });
    let text = '';
    for await (const c of stream) for (const ch of c.choices) text += ch.text;
    assert.equal(text, STORY.prompt + STORY.text);
    const ids = await sdk.completions.create({ model: servedName(s), prompt: STORY.promptIds, ...greedy, echo: true });
    assert.ok(ids.choices[0].text.endsWith(`${STORY.prompt}${STORY.text}`), ids.choices[0].text);
  });
});

test('sdk completions: usage.prompt_tokens_details.cached_tokens > 0 when a long prompt comes again', async () => {
  await withServer({}, async (s) => {
    const sdk = client(s);
    const prompt = `${STORY.prompt}${STORY.text} ${STORY.text} ${STORY.text} ${STORY.text}`;
    const a = await sdk.completions.create({ model: servedName(s), prompt, max_tokens: 4, temperature: 0 });
    assert.ok(a.usage.prompt_tokens >= 100, `prompt has ${a.usage.prompt_tokens} tokens`);
    assert.equal(a.usage.prompt_tokens_details.cached_tokens, 0);
    const b = await sdk.completions.create({ model: servedName(s), prompt, max_tokens: 4, temperature: 0 });
    const cached = b.usage.prompt_tokens_details.cached_tokens;
    assert.ok(cached > 0, 'the second time the prefix cache serves the prompt');
    assert.ok(cached < b.usage.prompt_tokens, `cached ${cached} of ${b.usage.prompt_tokens}`);
    assert.equal(cached % 16, 0, 'whole blocks');
    assert.ok(cached >= b.usage.prompt_tokens - 16, `only ${cached} of ${b.usage.prompt_tokens} cached`);
    assert.equal(b.choices[0].text, a.choices[0].text, 'a cache hit changes nothing in the output');
    // Streamed usage reports it too.
    const stream = await sdk.completions.create({ model: servedName(s), prompt, max_tokens: 4, stream: true, stream_options: { include_usage: true } });
    let usage;
    for await (const c of stream) if (c.usage) ({ usage } = c);
    assert.equal(usage.prompt_tokens_details.cached_tokens, cached);
  });
});

test('sdk completions: priority is accepted; user is accepted and ignored', async () => {
  await withServer({}, async (s) => {
    const sdk = client(s);
    for (const priority of [0, -10, 10]) {
      const r = await sdk.completions.create({ model: servedName(s), prompt: STORY.prompt, ...greedy, priority });
      assert.equal(r.choices[0].text, STORY.text);
    }
    const u = await sdk.completions.create({ model: servedName(s), prompt: STORY.prompt, ...greedy, user: 'user-1234' });
    assert.equal(u.choices[0].text, STORY.text);
    // Raw: unknown fields are ignored too, as vLLM does.
    const raw = await post(s, '/v1/completions', { prompt: STORY.prompt, ...greedy, user: 'x', some_future_field: 1 });
    assert.equal(raw.status, 200, raw.text);
  });
});
