// Real output over raw HTTP: stories260K's known-good greedy continuation (shared/models/README.md)
// through /v1/completions, streamed and not, with the prompt as text, ids, a list of texts and a
// list of id lists; and the limits of a generation (max_model_len, EOS, ignore_eos, min_tokens).
import {
  assert, assertError, assertRecent, post, postStream, STORY, test, withServer, servedName,
} from './lib.mjs';

const greedy = { max_tokens: 40, temperature: 0 };

function checkCompletion(j, s) {
  assert.match(j.id, /^cmpl-[A-Za-z0-9]+$/);
  assert.equal(j.object, 'text_completion');
  assertRecent(j.created);
  assert.equal(j.model, servedName(s));
}

test('completions: greedy "Once upon a time" (max_tokens 40) is the README text; /tokenize gives its ids', async () => {
  await withServer({}, async (s) => {
    const t = await post(s, '/tokenize', { prompt: STORY.prompt });
    assert.deepEqual(t.json.tokens, STORY.promptIds);
    const r = await post(s, '/v1/completions', { prompt: STORY.prompt, ...greedy });
    assert.equal(r.status, 200, r.text);
    checkCompletion(r.json, s);
    assert.equal(r.json.choices.length, 1);
    const c = r.json.choices[0];
    assert.equal(c.index, 0);
    assert.equal(c.text, STORY.text);
    assert.equal(c.finish_reason, 'length');
    assert.equal(c.logprobs, null);
    assert.equal(r.json.usage.prompt_tokens, 5);
    assert.equal(r.json.usage.completion_tokens, 40);
    assert.equal(r.json.usage.total_tokens, 45);
  });
});

test('completions: streamed greedy continuation concatenates to the README text; well-formed SSE', async () => {
  await withServer({}, async (s) => {
    const sse = await postStream(s, '/v1/completions', { prompt: STORY.prompt, ...greedy });
    assert.ok(sse.done, 'the stream ends with data: [DONE]');
    assert.equal(sse.afterDone, 0, 'nothing after [DONE]');
    assert.ok(sse.events.length >= 1);
    const id = sse.events[0].id;
    let text = '';
    sse.events.forEach((e, i) => {
      checkCompletion(e, s);
      assert.equal(e.id, id, 'one id for the whole stream');
      assert.equal(e.choices.length, 1);
      assert.equal(e.choices[0].index, 0);
      text += e.choices[0].text;
      const last = i === sse.events.length - 1;
      assert.equal(e.choices[0].finish_reason, last ? 'length' : null, `finish_reason of event ${i}`);
      assert.ok(!('usage' in e) || e.usage === null, 'no usage without include_usage');
    });
    assert.equal(text, STORY.text);
  });
});

test('completions: prompt as token ids gives the same continuation', async () => {
  await withServer({}, async (s) => {
    const r = await post(s, '/v1/completions', { prompt: STORY.promptIds, ...greedy });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.choices[0].text, STORY.text);
    assert.equal(r.json.usage.prompt_tokens, 5);
  });
});

test('completions: a list of prompts gives choices indexed 0.. in prompt order', async () => {
  await withServer({}, async (s) => {
    const r = await post(s, '/v1/completions', { prompt: [STORY.prompt, 'Lily and Ben', STORY.prompt], ...greedy });
    assert.equal(r.status, 200, r.text);
    const ch = r.json.choices;
    assert.deepEqual(ch.map((c) => c.index), [0, 1, 2]);
    assert.equal(ch[0].text, STORY.text);
    assert.equal(ch[2].text, STORY.text);
    assert.notEqual(ch[1].text, STORY.text);
    // The middle one is that prompt's own greedy continuation.
    const one = await post(s, '/v1/completions', { prompt: 'Lily and Ben', ...greedy });
    assert.equal(ch[1].text, one.json.choices[0].text);
    assert.equal(r.json.usage.completion_tokens, 120);
    assert.equal(r.json.usage.prompt_tokens, 5 + one.json.usage.prompt_tokens + 5);
  });
});

test('completions: a list of id lists gives one choice per list; streamed too', async () => {
  await withServer({}, async (s) => {
    const r = await post(s, '/v1/completions', { prompt: [STORY.promptIds, [1, 403]], ...greedy });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.choices.map((c) => c.index), [0, 1]);
    assert.equal(r.json.choices[0].text, STORY.text);
    const sse = await postStream(s, '/v1/completions', { prompt: [STORY.promptIds, STORY.promptIds], ...greedy });
    const texts = ['', ''];
    const finishes = [0, 0];
    for (const e of sse.events) {
      for (const c of e.choices) {
        texts[c.index] += c.text;
        if (c.finish_reason) finishes[c.index]++;
      }
    }
    assert.deepEqual(texts, [STORY.text, STORY.text]);
    assert.deepEqual(finishes, [1, 1], 'each choice finishes once');
    assert.ok(sse.done);
  });
});

test('completions: aidreams260K greedy "I dreamed" starts with its README text', async () => {
  await withServer({ model: 'aidreams260K' }, async (s) => {
    const want = ', as I sense the nodes, a gentle hum of probability. Contrast emerge, a flower, as';
    const r = await post(s, '/v1/completions', { prompt: 'I dreamed', max_tokens: 40, temperature: 0 });
    assert.equal(r.status, 200, r.text);
    assert.ok(r.json.choices[0].text.startsWith(want), JSON.stringify(r.json.choices[0].text));
  });
});

test('completions: without ignore_eos greedy stops at EOS (finish_reason stop, stop_reason null)', async () => {
  await withServer({}, async (s) => {
    const r = await post(s, '/v1/completions', { prompt: STORY.prompt, max_tokens: 500, temperature: 0 });
    const c = r.json.choices[0];
    assert.equal(c.finish_reason, 'stop');
    assert.equal(c.stop_reason, null);
    assert.ok(r.json.usage.completion_tokens < 500);
    assert.ok(c.text.startsWith(STORY.text));
  });
});

test('completions: ignore_eos runs to max_tokens; max_tokens reaching max_model_len exactly is allowed', async () => {
  await withServer({}, async (s) => {
    const r = await post(s, '/v1/completions', { prompt: STORY.prompt, max_tokens: 507, temperature: 0, ignore_eos: true });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.choices[0].finish_reason, 'length');
    assert.equal(r.json.usage.completion_tokens, 507);
    assert.equal(r.json.usage.total_tokens, 512);
  });
});

test('completions: min_tokens holds EOS back (completion_tokens >= min_tokens)', async () => {
  await withServer({}, async (s) => {
    const base = await post(s, '/v1/completions', { prompt: STORY.prompt, max_tokens: 500, temperature: 0 });
    const k = base.json.usage.completion_tokens;
    assert.equal(base.json.choices[0].finish_reason, 'stop');
    const r = await post(s, '/v1/completions', {
      prompt: STORY.prompt, max_tokens: k + 40, min_tokens: k + 20, temperature: 0,
    });
    assert.equal(r.status, 200, r.text);
    assert.ok(r.json.usage.completion_tokens >= k + 20, `${r.json.usage.completion_tokens} < ${k + 20}`);
    assertError(await post(s, '/v1/completions', { prompt: 'x', max_tokens: 5, min_tokens: 6 }), 400, { param: 'min_tokens' });
  });
});
