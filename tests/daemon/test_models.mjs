import { readFileSync } from 'node:fs';
// Registering, loading and chatting through foliod; routing errors; the default alias.
import {
  assert, MODELS, sleep, STORY, test,
} from '../api/lib.mjs';
import {
  addModel, engineOf, load, login, modelInfo, req, sdk, startFoliod, status, stopFoliod, here,
} from './lib.mjs';
import path from 'node:path';

// Inline template text: a file outside the model directory is refused (it could be read back).
const TEMPLATE = readFileSync(path.join(here, '../api/templates/story.jinja'), 'utf8').trim();

test('foliod: register and load two models, chat with each through :8000 (SDK, streamed and not)', async () => {
  const s = await startFoliod();
  const ck = await login(s);
  await addModel(s, ck, 'stories260K', { chat_template: TEMPLATE });
  await addModel(s, ck, 'aidreams260K', { chat_template: TEMPLATE });
  const dup = await req(s, 'POST', '/api/models', { cookie: ck, body: { name: 'stories260K', path: path.join(MODELS, 'stories260K') } });
  assert.equal(dup.status, 409, dup.text);
  await Promise.all([load(s, ck, 'stories260K'), load(s, ck, 'aidreams260K')]);
  const client = sdk(s);
  const list = await client.models.list();
  assert.deepEqual(list.data.map((m) => m.id).sort(), ['aidreams260K', 'stories260K']);
  // The README's greedy story, through the proxy.
  const c = await client.completions.create({ model: 'stories260K', prompt: STORY.prompt, max_tokens: 40, temperature: 0 });
  assert.equal(c.choices[0].text, STORY.text);
  const a = await client.completions.create({ model: 'aidreams260K', prompt: 'I dreamed', max_tokens: 20, temperature: 0 });
  assert.ok(a.choices[0].text.startsWith(', as I sense the nodes'), a.choices[0].text);
  for (const model of ['stories260K', 'aidreams260K']) {
    const messages = [{ role: 'user', content: 'Once upon a time' }];
    const whole = await client.chat.completions.create({ model, messages, max_tokens: 24, temperature: 0 });
    assert.equal(whole.model, model);
    assert.ok(whole.choices[0].message.content.length > 0);
    let streamed = '';
    let chunks = 0;
    const stream = await client.chat.completions.create({ model, messages, max_tokens: 24, temperature: 0, stream: true });
    for await (const ch of stream) {
      chunks++;
      streamed += ch.choices[0]?.delta?.content || '';
    }
    // The role chunk, then the content: the engine joins the tokens that are ready together,
    // and the last delta carries the finish, so a fast reply may come as two chunks.
    assert.ok(chunks >= 2, `only ${chunks} chunks`);
    assert.equal(streamed, whole.choices[0].message.content);
  }
  // tokenize/detokenize route by model too.
  const t = await req(s, 'POST', '/tokenize', { body: { model: 'stories260K', prompt: STORY.prompt } });
  assert.equal(t.status, 200, t.text);
  assert.deepEqual(t.json.tokens, STORY.promptIds);
  const st = await status(s, ck);
  assert.deepEqual(st.gpus, []);
  assert.equal(st.engines.length, 2);
  for (const e of st.engines) {
    assert.equal(e.state, 'ready');
    assert.ok(e.pid > 0 && e.memory.weights_bytes > 0, JSON.stringify(e));
  }
  await stopFoliod(s);
}, { timeout: 90000 });

test('foliod: errors in the OpenAI shape: unknown model 404, registered but not loaded 503, bad JSON 400', async () => {
  const s = await startFoliod();
  const ck = await login(s);
  await addModel(s, ck, 'stories260K');
  const body = { model: 'nope', prompt: 'x', max_tokens: 1 };
  let r = await req(s, 'POST', '/v1/completions', { body });
  assert.equal(r.status, 404);
  assert.equal(r.json.error.message, 'The model `nope` does not exist.');
  r = await req(s, 'POST', '/v1/completions', { body: { ...body, model: 'stories260K' } });
  assert.equal(r.status, 503);
  assert.match(r.json.error.message, /registered but not loaded/);
  r = await req(s, 'POST', '/v1/chat/completions', { body: '{"model":' });
  assert.equal(r.status, 400);
  assert.ok(r.json.error.message);
  r = await req(s, 'POST', '/v1/completions', { body: { prompt: 'x' } });
  assert.equal(r.status, 404, 'no default yet');
  r = await req(s, 'GET', '/v1/completions');
  assert.equal(r.status, 405);
  r = await req(s, 'GET', '/nothing/here');
  assert.equal(r.status, 404);
  assert.ok(r.json.error);
  const ready = await req(s, 'GET', '/ready');
  assert.equal(ready.status, 503);
  await stopFoliod(s);
});

test('foliod: --model registers, loads and makes it default; the default alias routes', async () => {
  const s = await startFoliod({ args: ['--model', path.join(MODELS, 'stories260K')] });
  const ck = await login(s);
  const m = await (async () => {
    for (let i = 0; i < 600; i++) {
      const x = await modelInfo(s, ck, 'stories260K');
      if (x.state === 'ready') return x;
      await sleep(50);
    }
    throw new Error('not ready');
  })();
  assert.equal(m.default, true);
  const r = await req(s, 'POST', '/v1/completions', { body: { model: 'default', prompt: STORY.prompt, max_tokens: 40, temperature: 0 } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.choices[0].text, STORY.text);
  assert.equal((await req(s, 'GET', '/ready')).status, 200);
  const models = await req(s, 'GET', '/v1/models');
  assert.ok(models.json.data.some((x) => x.id === 'default' && x.parent === 'stories260K'), models.text);
  // /metrics: foliod's counters and the engine's, labelled with its model.
  const met = await req(s, 'GET', '/metrics');
  assert.match(met.text, /^foliod:proxied_requests_total [1-9]/m);
  assert.match(met.text, /^folio:generation_tokens_total\{model="stories260K",model_name="stories260K"\} 40$/m);
  assert.equal((met.text.match(/^# TYPE folio:num_requests_running gauge$/gm) || []).length, 1);
  const e = await engineOf(s, ck, 'stories260K');
  assert.equal(e.state, 'ready');
  await stopFoliod(s);
});

test('foliod: a model\'s kv_cache_dtype is stored in vLLM\'s canonical spelling and reaches its engine', async () => {
  const s = await startFoliod();
  const ck = await login(s);
  const m = await addModel(s, ck, 'stories260K', { kv_cache_dtype: 'bf16' });
  assert.equal(m.kv_cache_dtype, 'bfloat16');
  const a = await addModel(s, ck, 'aidreams260K', { kv_cache_dtype: 'auto' });
  assert.equal(a.kv_cache_dtype, 'auto');
  await load(s, ck, 'stories260K');
  await load(s, ck, 'aidreams260K');
  const e = await engineOf(s, ck, 'stories260K');
  assert.equal(e.kv_cache_dtype, 'bfloat16'); // the engine's /stats: the flag was passed
  assert.equal((await engineOf(s, ck, 'aidreams260K')).kv_cache_dtype, 'float32'); // auto: fp32 weights
  const r = await req(s, 'POST', '/v1/completions', { body: { model: 'stories260K', prompt: STORY.prompt, max_tokens: 20, temperature: 0 } });
  assert.equal(r.status, 200, r.text);
  assert.ok(STORY.text.startsWith(r.json.choices[0].text), r.text); // bf16 K/V keep stories260K's greedy story
  await stopFoliod(s);
});

test('foliod: a model\'s quantization reaches its engine, which says so, and keeps the greedy story in int8', async () => {
  const s = await startFoliod();
  const ck = await login(s);
  const m = await addModel(s, ck, 'stories260K', { quantization: 'int8' });
  assert.equal(m.quantization, 'int8');
  const a = await addModel(s, ck, 'aidreams260K', { quantization: 'none' });
  assert.equal(a.quantization, 'none');
  await load(s, ck, 'stories260K');
  const e = await engineOf(s, ck, 'stories260K'); // the engine's /stats: the flag was passed
  assert.equal(e.weights_dtype, 'int8');
  assert.equal(e.quantization, 'int8');
  const r = await req(s, 'POST', '/v1/completions', { body: { model: 'stories260K', prompt: STORY.prompt, max_tokens: 20, temperature: 0 } });
  assert.equal(r.status, 200, r.text);
  assert.ok(STORY.text.startsWith(r.json.choices[0].text), r.text);
  const bad = await req(s, 'POST', '/api/models', { cookie: ck, body: { name: 'q', path: path.join(MODELS, 'stories260K'), quantization: 'int3' } });
  assert.equal(bad.status, 400, bad.text);
  assert.match(bad.text, /quantization must be none, int8, int4 or fp8/);
  await stopFoliod(s);
});

test('foliod: validation of a new model names the bad field', async () => {
  const s = await startFoliod();
  const ck = await login(s);
  const cases = [
    [{ name: 'x', path: '/nonexistent' }, /config\.json/],
    [{ name: 'bad name!', path: path.join(MODELS, 'stories260K') }, /name must be/],
    [{ name: 'default', path: path.join(MODELS, 'stories260K') }, /name must be/],
    [{ name: 'x', path: path.join(MODELS, 'stories260K'), dtype: 'int3' }, /dtype/],
    [{ name: 'x', path: path.join(MODELS, 'stories260K'), kv_cache_dtype: 'float16' }, /kv_cache_dtype must be auto, bfloat16, float32 or fp8/],
    [{ name: 'x', path: path.join(MODELS, 'stories260K'), gpu_memory_utilization: 1.5 }, /gpu_memory_utilization/],
    [{ name: 'x', path: path.join(MODELS, 'stories260K'), block_size: 12 }, /block_size/],
    [{ name: 'x' }, /path .* or a repo_id/],
    [{ name: 'x', path: 'relative/dir' }, /absolute/],
  ];
  for (const [body, re] of cases) {
    const r = await req(s, 'POST', '/api/models', { cookie: ck, body });
    assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
    assert.match(r.json.error.message, re);
  }
  const list = await req(s, 'GET', '/api/models', { cookie: ck });
  assert.deepEqual(list.json.models, []);
  await stopFoliod(s);
});
