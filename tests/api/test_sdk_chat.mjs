// /v1/chat/completions through the official openai SDK (v4), on stories260K with a chat template
// given by --chat-template (the model has none): the response and chunk shapes, streams,
// n and seeds, logprobs, stops, max_completion_tokens, usage, and what /tokenize renders for
// messages (add_generation_prompt, continue_final_message, chat_template_kwargs).
import {
  assert, assertError, assertRecent, client, post, STORY, template, test, withServer, servedName,
} from './lib.mjs';

const chatServer = (name = 'chatml.jinja', args = []) => ({ args: ['--chat-template', template(name), ...args] });
// story.jinja renders "<s>" + the contents, so one user message STORY.prompt is the README prompt.
const story = chatServer('story.jinja');
const storyMsgs = [{ role: 'user', content: STORY.prompt }];

function checkBase(r, s, object) {
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.object, object);
  assertRecent(r.created);
  assert.equal(r.model, servedName(s));
}

async function tokenizeMessages(s, body) {
  const r = await post(s, '/tokenize', body);
  assert.equal(r.status, 200, r.text);
  return r.json;
}
async function detok(s, tokens) {
  const r = await post(s, '/detokenize', { tokens });
  assert.equal(r.status, 200, r.text);
  return r.json.prompt;
}

test('sdk chat.completions.create: id chatcmpl-, object chat.completion, assistant message, usage; greedy matches completions', async () => {
  await withServer(story, async (s) => {
    const t = await tokenizeMessages(s, { messages: storyMsgs });
    assert.deepEqual(t.tokens, STORY.promptIds, 'story.jinja renders the README prompt');
    const r = await client(s).chat.completions.create({ model: servedName(s), messages: storyMsgs, temperature: 0, max_tokens: 40 });
    checkBase(r, s, 'chat.completion');
    assert.equal(r.choices.length, 1);
    const c = r.choices[0];
    assert.equal(c.index, 0);
    assert.equal(c.message.role, 'assistant');
    assert.equal(c.message.content, STORY.text);
    assert.equal(c.finish_reason, 'length');
    assert.equal(r.usage.prompt_tokens, 5);
    assert.equal(r.usage.completion_tokens, 40);
    assert.equal(r.usage.total_tokens, 45);
  });
});

test('sdk chat stream: role first, content deltas, finish_reason on the last content chunk, usage chunk, [DONE]', async () => {
  await withServer(story, async (s) => {
    const stream = await client(s).chat.completions.create({
      model: servedName(s), messages: storyMsgs, temperature: 0, max_tokens: 40, stream: true, stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.ok(chunks.length >= 3);
    for (const c of chunks) {
      checkBase(c, s, 'chat.completion.chunk');
      assert.equal(c.id, chunks[0].id);
    }
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    for (const c of chunks.slice(1)) {
      for (const ch of c.choices) assert.ok(!ch.delta.role, 'only the first chunk carries the role');
    }
    const usage = chunks.at(-1);
    assert.deepEqual(usage.choices, []);
    assert.deepEqual([usage.usage.prompt_tokens, usage.usage.completion_tokens, usage.usage.total_tokens], [5, 40, 45]);
    const content = chunks.slice(0, -1);
    content.forEach((c, i) => {
      assert.equal(c.choices.length, 1);
      assert.equal(c.choices[0].finish_reason, i === content.length - 1 ? 'length' : null, `finish_reason of chunk ${i}`);
      assert.ok(c.usage == null);
    });
    assert.equal(content.map((c) => c.choices[0].delta.content ?? '').join(''), STORY.text);
  });
});

test('sdk chat stream without stream_options: no usage chunk, raw SSE ends with data: [DONE]', async () => {
  await withServer(story, async (s) => {
    const r = await post(s, '/v1/chat/completions', { messages: storyMsgs, temperature: 0, max_tokens: 10, stream: true });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/event-stream/);
    assert.ok(r.text.trimEnd().endsWith('data: [DONE]'), r.text.slice(-200));
    const events = r.text.split('\n\n').filter((x) => x.trim() && !x.includes('[DONE]')).map((x) => JSON.parse(x.slice(6)));
    for (const e of events) {
      assert.ok(e.choices.length === 1, 'every chunk has its choice');
      assert.ok(e.usage == null);
    }
    assert.equal(events.at(-1).choices[0].finish_reason, 'length');
  });
});

test('sdk chat: n=2 with a seed: two choices, reproducible, another seed differs; streamed n=2 each gets role and finish', async () => {
  await withServer(story, async (s) => {
    const sdk = client(s);
    const req = { model: servedName(s), messages: storyMsgs, max_tokens: 24, temperature: 1, n: 2, ignore_eos: true };
    const a = await sdk.chat.completions.create({ ...req, seed: 7 });
    const b = await sdk.chat.completions.create({ ...req, seed: 7 });
    const c = await sdk.chat.completions.create({ ...req, seed: 8 });
    const texts = (r) => [...r.choices].sort((x, y) => x.index - y.index).map((x) => x.message.content);
    assert.deepEqual(a.choices.map((x) => x.index).sort(), [0, 1]);
    assert.deepEqual(texts(a), texts(b));
    assert.notDeepEqual(texts(a), texts(c));
    assert.equal(a.usage.completion_tokens, 48);
    const stream = await sdk.chat.completions.create({ ...req, seed: 7, stream: true });
    const roles = [0, 0];
    const fins = [0, 0];
    const got = ['', ''];
    for await (const ch of stream) {
      for (const x of ch.choices) {
        if (x.delta.role) roles[x.index]++;
        if (x.delta.content) got[x.index] += x.delta.content;
        if (x.finish_reason) fins[x.index]++;
      }
    }
    assert.deepEqual(roles, [1, 1]);
    assert.deepEqual(fins, [1, 1]);
    assert.deepEqual(got, texts(a), 'streamed seeded samples equal the non-streamed ones');
  });
});

test('sdk chat logprobs=true top_logprobs=2: content entries with token, logprob, bytes, top_logprobs', async () => {
  await withServer(story, async (s) => {
    const r = await client(s).chat.completions.create({
      model: servedName(s), messages: storyMsgs, temperature: 0, max_tokens: 10, logprobs: true, top_logprobs: 2,
    });
    const content = r.choices[0].logprobs.content;
    assert.equal(content.length, r.usage.completion_tokens);
    for (const e of content) {
      assert.equal(typeof e.token, 'string');
      assert.ok(e.logprob <= 0);
      assert.deepEqual(e.bytes, [...Buffer.from(e.token, 'utf8')]);
      assert.equal(e.top_logprobs.length, 2);
      for (const t of e.top_logprobs) {
        assert.equal(typeof t.token, 'string');
        assert.ok(t.logprob <= 0);
        assert.deepEqual(t.bytes, [...Buffer.from(t.token, 'utf8')]);
      }
      assert.ok(e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob, 'top_logprobs sorted');
      assert.ok(Math.abs(e.top_logprobs[0].logprob - e.logprob) < 1e-5, 'greedy picks the top token');
    }
    const none = await client(s).chat.completions.create({ model: servedName(s), messages: storyMsgs, max_tokens: 3 });
    assert.equal(none.choices[0].logprobs, null);
    const zero = await client(s).chat.completions.create({ model: servedName(s), messages: storyMsgs, max_tokens: 3, logprobs: true });
    assert.equal(zero.choices[0].logprobs.content.length, 3);
    for (const e of zero.choices[0].logprobs.content) assert.deepEqual(e.top_logprobs, []);
    // Streamed: each chunk's entries add up to completion_tokens.
    const stream = await client(s).chat.completions.create({
      model: servedName(s), messages: storyMsgs, temperature: 0, max_tokens: 10, logprobs: true, top_logprobs: 2, stream: true,
    });
    let n = 0;
    for await (const c of stream) for (const ch of c.choices) n += ch.logprobs?.content?.length ?? 0;
    assert.equal(n, 10);
  });
});

test('sdk chat logprobs: the tokens concatenate to the message content', async () => {
  await withServer(story, async (s) => {
    const r = await client(s).chat.completions.create({
      model: servedName(s), messages: storyMsgs, temperature: 0, max_tokens: 10, logprobs: true,
    });
    const toks = r.choices[0].logprobs.content.map((e) => e.token);
    assert.equal(toks.join(''), r.choices[0].message.content, JSON.stringify(toks));
  });
});

test('sdk chat: stop strings and stop_token_ids (finish_reason stop, stop_reason)', async () => {
  await withServer(story, async (s) => {
    const sdk = client(s);
    const base = { model: servedName(s), messages: storyMsgs, temperature: 0, max_tokens: 40 };
    const a = await sdk.chat.completions.create({ ...base, stop: [' girl'] });
    assert.equal(a.choices[0].message.content, ', there was a little');
    assert.equal(a.choices[0].finish_reason, 'stop');
    assert.equal(a.choices[0].stop_reason, ' girl');
    const stream = await sdk.chat.completions.create({ ...base, stop: 'e gi', stream: true });
    let text = '';
    let fin;
    for await (const c of stream) {
      for (const ch of c.choices) {
        text += ch.delta.content ?? '';
        if (ch.finish_reason) fin = ch.finish_reason;
      }
    }
    assert.equal(text, ', there was a littl');
    assert.equal(fin, 'stop');
    const t = await sdk.chat.completions.create({ ...base, stop_token_ids: [376] });
    assert.equal(t.choices[0].finish_reason, 'stop');
    assert.equal(t.choices[0].stop_reason, 376);
    assert.equal(t.usage.completion_tokens, 5);
  });
});

test('sdk chat: max_completion_tokens and max_tokens cap the output (finish_reason length)', async () => {
  await withServer(story, async (s) => {
    const sdk = client(s);
    const a = await sdk.chat.completions.create({ model: servedName(s), messages: storyMsgs, max_completion_tokens: 6, ignore_eos: true });
    assert.equal(a.usage.completion_tokens, 6);
    assert.equal(a.choices[0].finish_reason, 'length');
    const b = await sdk.chat.completions.create({ model: servedName(s), messages: storyMsgs, max_tokens: 9, ignore_eos: true });
    assert.equal(b.usage.completion_tokens, 9);
    // max_completion_tokens wins over the deprecated max_tokens.
    const c = await sdk.chat.completions.create({ model: servedName(s), messages: storyMsgs, max_tokens: 9, max_completion_tokens: 4, ignore_eos: true });
    assert.equal(c.usage.completion_tokens, 4);
  });
});

test('sdk chat: with no max_tokens a generation stops at max_model_len with finish_reason length', async () => {
  await withServer(story, async (s) => {
    const r = await client(s).chat.completions.create({ model: servedName(s), messages: storyMsgs, ignore_eos: true });
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(r.usage.total_tokens, 512);
    assert.equal(r.usage.completion_tokens, 507);
  });
});

test('sdk chat: ignore_eos and min_tokens', async () => {
  await withServer(story, async (s) => {
    const sdk = client(s);
    const free = await sdk.chat.completions.create({ model: servedName(s), messages: storyMsgs, temperature: 0 });
    assert.equal(free.choices[0].finish_reason, 'stop', 'greedy ends at EOS');
    const k = free.usage.completion_tokens;
    assert.ok(k < 507);
    const r = await sdk.chat.completions.create({ model: servedName(s), messages: storyMsgs, temperature: 0, min_tokens: k + 10, max_tokens: k + 30 });
    assert.ok(r.usage.completion_tokens >= k + 10);
    const ig = await sdk.chat.completions.create({ model: servedName(s), messages: storyMsgs, temperature: 0, ignore_eos: true, max_tokens: k + 30 });
    assert.equal(ig.usage.completion_tokens, k + 30);
    assert.equal(ig.choices[0].finish_reason, 'length');
  });
});

test('sdk chat: usage.prompt_tokens equals /tokenize of the messages; cached_tokens > 0 on a repeated long conversation', async () => {
  await withServer(chatServer('chatml.jinja'), async (s) => {
    const messages = [
      { role: 'system', content: `You tell stories. ${STORY.text} ${STORY.text} ${STORY.text}` },
      { role: 'user', content: 'Tell me about Lily.' },
    ];
    const t = await tokenizeMessages(s, { messages });
    assert.ok(t.count >= 100);
    const sdk = client(s);
    const a = await sdk.chat.completions.create({ model: servedName(s), messages, max_tokens: 5 });
    assert.equal(a.usage.prompt_tokens, t.count);
    assert.equal(a.usage.prompt_tokens_details.cached_tokens, 0);
    const b = await sdk.chat.completions.create({ model: servedName(s), messages, max_tokens: 5 });
    const cached = b.usage.prompt_tokens_details.cached_tokens;
    assert.ok(cached > 0 && cached < t.count && cached % 16 === 0, `cached_tokens ${cached} of ${t.count}`);
  });
});

test('sdk chat: priority accepted, user accepted and ignored, content parts joined', async () => {
  await withServer(story, async (s) => {
    const sdk = client(s);
    const base = { model: servedName(s), messages: storyMsgs, temperature: 0, max_tokens: 40 };
    assert.equal((await sdk.chat.completions.create({ ...base, priority: 3 })).choices[0].message.content, STORY.text);
    assert.equal((await sdk.chat.completions.create({ ...base, user: 'u-1' })).choices[0].message.content, STORY.text);
    const parts = await sdk.chat.completions.create({ ...base, messages: [{ role: 'user', content: [{ type: 'text', text: STORY.prompt }] }] });
    assert.equal(parts.choices[0].message.content, STORY.text);
  });
});

test('tokenize messages: add_generation_prompt adds the assistant header; false leaves it out', async () => {
  await withServer(chatServer('chatml.jinja'), async (s) => {
    const messages = [{ role: 'user', content: 'Hi there' }];
    const on = await tokenizeMessages(s, { messages });
    const off = await tokenizeMessages(s, { messages, add_generation_prompt: false });
    assert.equal(await detok(s, on.tokens), '<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n');
    assert.equal(await detok(s, off.tokens), '<|im_start|>user\nHi there<|im_end|>\n');
    assert.ok(on.count > off.count);
    assert.deepEqual(on.tokens.slice(0, off.count - 1), off.tokens.slice(0, off.count - 1));
    assert.equal(on.max_model_len, 512);
    const strs = await tokenizeMessages(s, { messages, return_token_strs: true });
    assert.equal(strs.token_strs.length, strs.count);
    // The chat request's prompt is what /tokenize renders.
    const c = await client(s).chat.completions.create({ model: servedName(s), messages, max_tokens: 1 });
    assert.equal(c.usage.prompt_tokens, on.count);
  });
});

test('tokenize messages: continue_final_message leaves the last (assistant) message open', async () => {
  await withServer(chatServer('chatml.jinja'), async (s) => {
    const messages = [{ role: 'user', content: 'Tell a story' }, { role: 'assistant', content: 'Once upon' }];
    const cont = await tokenizeMessages(s, { messages, add_generation_prompt: false, continue_final_message: true });
    assert.equal(await detok(s, cont.tokens), '<|im_start|>user\nTell a story<|im_end|>\n<|im_start|>assistant\nOnce upon');
    const closed = await tokenizeMessages(s, { messages, add_generation_prompt: false });
    assert.ok((await detok(s, closed.tokens)).endsWith('Once upon<|im_end|>\n'));
    assertError(await post(s, '/tokenize', { messages, add_generation_prompt: true, continue_final_message: true }), 400,
      { param: 'continue_final_message' });
    // Chat completions continue the message the same way.
    const c = await client(s).chat.completions.create({
      model: servedName(s), messages, add_generation_prompt: false, continue_final_message: true, max_tokens: 2,
    });
    assert.equal(c.usage.prompt_tokens, cont.count);
  });
});

test('tokenize/chat: chat_template_kwargs reach the template', async () => {
  await withServer(chatServer('kwargs.jinja'), async (s) => {
    const messages = [{ role: 'user', content: 'hello' }];
    const plain = await tokenizeMessages(s, { messages });
    assert.equal(await detok(s, plain.tokens), 'user: hello\nassistant:');
    const kw = await tokenizeMessages(s, { messages, chat_template_kwargs: { greeting: 'Howdy' } });
    assert.equal(await detok(s, kw.tokens), '[Howdy]user: hello\nassistant:');
    const c = await client(s).chat.completions.create({
      model: servedName(s), messages, max_tokens: 1, chat_template_kwargs: { greeting: 'Howdy' },
    });
    assert.equal(c.usage.prompt_tokens, kw.count);
  });
});

test('tokenize messages: a Llama-2 template with {{ bos_token }} gives one BOS, no second one', async () => {
  await withServer(chatServer('llama2.jinja'), async (s) => {
    const messages = [{ role: 'system', content: 'Be kind.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }, { role: 'user', content: 'Story?' }];
    const t = await tokenizeMessages(s, { messages });
    assert.equal(t.tokens[0], 1);
    assert.notEqual(t.tokens[1], 1, 'chat does not add a second BOS');
    // (Whether a space follows a special token is the tokenizer's business: tests/tokenizer.)
    const text = await detok(s, t.tokens);
    assert.ok(text.startsWith('<s>'), text);
    assert.equal(text.split('<s>').length, 2, `one BOS: ${text}`);
    assert.ok(text.includes('Be kind.\n<</SYS>>\n\n[INST] Hi [/INST] Hello </s>'), text);
    assert.ok(text.endsWith('[INST] Story? [/INST]'), text);
    const c = await client(s).chat.completions.create({ model: servedName(s), messages, max_tokens: 3 });
    assert.equal(c.usage.prompt_tokens, t.count);
  });
});
