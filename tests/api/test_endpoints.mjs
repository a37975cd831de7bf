// Every non-generating endpoint, over raw HTTP (fetch) and curl: /health, /version,
// /v1/models[/id], /tokenize, /detokenize, /metrics, /stats, and unknown paths.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import {
  assert, assertError, client, expectSdkError, get, metric, metrics, parseProm, post, sleep, startServer,
  stopServer, STORY, test, waitIdle, withServer, servedName, assertRecent, SLOW,
} from './lib.mjs';
import { NotFoundError } from 'openai';

const exec = promisify(execFile);
async function curl(args) {
  const { stdout } = await exec('curl', ['-sS', '--max-time', String(10 * SLOW), '-w', '\n%{http_code}', ...args]);
  const i = stdout.lastIndexOf('\n');
  return { body: stdout.slice(0, i), status: Number(stdout.slice(i + 1)) };
}

test('health: polled from spawn, answers within 1 s, 503 {"status":"loading"} then 200 {"status":"ok"}', async () => {
  const s = await startServer({ ready: false });
  const seen = [];
  const deadline = Date.now() + 30000 * SLOW;
  for (;;) {
    assert.ok(Date.now() < deadline, `never became healthy: ${JSON.stringify(seen)}\n${s.log}`);
    assert.ok(s.alive, `server exited: ${s.log}`);
    const t0 = Date.now();
    let r;
    try {
      r = await fetch(`${s.url}/health`, { signal: AbortSignal.timeout(2000) });
    } catch (e) {
      if (e.cause && e.cause.code === 'ECONNREFUSED') {
        await sleep(5);
        continue;
      }
      throw e;
    }
    const body = await r.json();
    const ms = Date.now() - t0;
    assert.ok(ms < 1000 * SLOW, `/health took ${ms} ms`);
    seen.push(r.status);
    if (r.status === 503) {
      assert.deepEqual(body, { status: 'loading' });
      assert.equal(r.headers.get('retry-after'), '1');
      // Endpoints that need the model say so instead of hanging.
      const m = await get(s, '/v1/models');
      if (m.status !== 200) assertError(m, 503, { message: /loading/ });
      await sleep(2);
      continue;
    }
    assert.equal(r.status, 200, `health status ${r.status}`);
    assert.deepEqual(body, { status: 'ok' });
    break;
  }
  // Once ready it stays ready, and answers fast.
  for (let i = 0; i < 20; i++) {
    const t0 = Date.now();
    const r = await get(s, '/health');
    assert.equal(r.status, 200);
    assert.ok(Date.now() - t0 < 1000 * SLOW);
  }
  assert.match(s.log, /folio-engine: ready: /);
  await stopServer(s);
});

test('health/version via curl: 200 JSON; /version has a version string', async () => {
  await withServer({}, async (s) => {
    const h = await curl([`${s.url}/health`]);
    assert.equal(h.status, 200);
    assert.deepEqual(JSON.parse(h.body), { status: 'ok' });
    const v = await curl(['-i', `${s.url}/version`]);
    assert.equal(v.status, 200);
    assert.match(v.body, /content-type: application\/json/i);
    const body = JSON.parse(v.body.slice(v.body.indexOf('\r\n\r\n') + 4));
    assert.equal(typeof body.version, 'string');
    assert.match(body.version, /^\d+\.\d+/);
  });
});

test('models: default id is the --model argument; object, created, owned_by, max_model_len', async () => {
  await withServer({}, async (s) => {
    const r = await get(s, '/v1/models');
    assert.equal(r.status, 200);
    assert.equal(r.json.object, 'list');
    assert.equal(r.json.data.length, 1);
    const m = r.json.data[0];
    assert.equal(m.id, servedName(s));
    assert.equal(m.object, 'model');
    assertRecent(m.created);
    assert.equal(typeof m.owned_by, 'string');
    assert.ok(m.owned_by.length > 0);
    assert.equal(m.max_model_len, 512);
    // The SDK's models.list agrees.
    const page = await client(s).models.list();
    assert.deepEqual(page.data.map((x) => x.id), [servedName(s)]);
  });
});

test('models: --served-model-name NAME... lists each name; completions answer with the first', async () => {
  await withServer({ args: ['--served-model-name', 'stories', 'org/stories-alias'] }, async (s) => {
    const r = await get(s, '/v1/models');
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.data.map((x) => x.id), ['stories', 'org/stories-alias']);
    for (const m of r.json.data) assert.equal(m.max_model_len, 512);
    const c = await post(s, '/v1/completions', { model: 'org/stories-alias', prompt: 'Once', max_tokens: 2 });
    assert.equal(c.status, 200, c.text);
    assert.equal(c.json.model, 'stories');
    const d = await post(s, '/v1/completions', { model: servedName(s), prompt: 'Once', max_tokens: 2 });
    assertError(d, 404, { message: `The model \`${servedName(s)}\` does not exist.` });
  });
});

test('models: GET /v1/models/{id} (also ids with a slash, and via the SDK); 404 for an unknown id', async () => {
  await withServer({ args: ['--served-model-name', 'stories', 'org/stories-alias'] }, async (s) => {
    for (const id of ['stories', 'org/stories-alias']) {
      const r = await get(s, `/v1/models/${id}`);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.id, id);
      assert.equal(r.json.object, 'model');
      assert.equal(r.json.max_model_len, 512);
      assertRecent(r.json.created);
    }
    const sdk = client(s);
    const m = await sdk.models.retrieve('stories');
    assert.equal(m.id, 'stories');
    const nf = await get(s, '/v1/models/nope');
    assertError(nf, 404, { message: 'The model `nope` does not exist.' });
    await expectSdkError(() => sdk.models.retrieve('nope'), NotFoundError, 404);
  });
});

test('models: GET /v1/models/{id} finds the default id (an absolute --model path)', async () => {
  await withServer({}, async (s) => {
    // The SDK's models.retrieve(id) requests /v1/models/${id}: for a path id, a double slash.
    const r = await get(s, `/v1/models/${servedName(s)}`);
    assert.equal(r.status, 200, `GET /v1/models/${servedName(s)} -> ${r.status} ${r.text}`);
    assert.equal(r.json.id, servedName(s));
  });
});

test('tokenize: prompt form: tokens, count, max_model_len, add_special_tokens, return_token_strs', async () => {
  await withServer({}, async (s) => {
    const r = await post(s, '/tokenize', { prompt: STORY.prompt });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.tokens, STORY.promptIds);
    assert.equal(r.json.count, STORY.promptIds.length);
    assert.equal(r.json.max_model_len, 512);
    assert.ok(r.json.token_strs == null, 'token_strs only when asked');
    const n = await post(s, '/tokenize', { prompt: STORY.prompt, add_special_tokens: false });
    assert.deepEqual(n.json.tokens, STORY.promptIds.slice(1));
    assert.equal(n.json.count, 4);
    const t = await post(s, '/tokenize', { prompt: STORY.prompt, return_token_strs: true });
    assert.deepEqual(t.json.tokens, STORY.promptIds);
    assert.deepEqual(t.json.token_strs, ['<s>', '▁Once', '▁upon', '▁a', '▁time']);
    const m = await post(s, '/tokenize', { model: servedName(s), prompt: '' });
    assert.equal(m.status, 200);
    assert.deepEqual(m.json.tokens, [1]);
    assertError(await post(s, '/tokenize', { model: 'nope', prompt: 'x' }), 404);
    assertError(await post(s, '/tokenize', {}), 400);
    assertError(await post(s, '/tokenize', { prompt: 5 }), 400, { param: 'prompt' });
  });
});

test('detokenize: ids to text; the README ids give the README text; bad ids 400', async () => {
  await withServer({}, async (s) => {
    const r = await post(s, '/detokenize', { tokens: STORY.ids });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.prompt, STORY.text);
    const p = await post(s, '/detokenize', { tokens: STORY.promptIds.slice(1) });
    assert.equal(p.json.prompt, STORY.prompt);
    const e = await post(s, '/detokenize', { tokens: [] });
    assert.equal(e.status, 200);
    assert.equal(e.json.prompt, '');
    assertError(await post(s, '/detokenize', { tokens: [1, 99999] }), 400, { param: 'tokens' });
    assertError(await post(s, '/detokenize', { tokens: [-1] }), 400, { param: 'tokens' });
    assertError(await post(s, '/detokenize', { tokens: 'abc' }), 400, { param: 'tokens' });
  });
});

const METRIC_NAMES = [
  'folio:num_requests_running', 'folio:num_requests_waiting', 'folio:kv_cache_usage_perc',
  'folio:kv_cache_blocks_used', 'folio:kv_cache_blocks_cached', 'folio:prefix_cache_queries_total',
  'folio:prefix_cache_hits_total', 'folio:num_preemptions_total', 'folio:prompt_tokens_total',
  'folio:generation_tokens_total', 'folio:request_success_total',
];
const HISTOGRAMS = ['folio:time_to_first_token_seconds', 'folio:inter_token_latency_seconds',
  'folio:e2e_request_latency_seconds'];

test('metrics: Prometheus text with vLLM names under folio:, counters move with a request', async () => {
  await withServer({}, async (s) => {
    const r = await get(s, '/metrics');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/plain/);
    const before = parseProm(r.text);
    for (const n of METRIC_NAMES) metric(before, n);
    for (const reason of ['stop', 'length', 'abort']) {
      metric(before, 'folio:request_success_total', { finished_reason: reason });
    }
    // Each sample has a # TYPE line for its family.
    const types = new Map([...r.text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]));
    assert.equal(types.get('folio:num_requests_running'), 'gauge');
    for (const h of HISTOGRAMS) {
      assert.equal(types.get(h), 'histogram', `# TYPE of ${h}`);
      const buckets = before.filter((x) => x.name === `${h}_bucket`);
      assert.ok(buckets.length > 1);
      assert.ok(buckets.some((b) => b.labels.le === '+Inf'));
      metric(before, `${h}_sum`);
      metric(before, `${h}_count`);
    }
    assert.equal(metric(before, 'folio:num_requests_running'), 0);
    assert.equal(metric(before, 'folio:kv_cache_blocks_used'), 0);

    const c = await post(s, '/v1/completions', { prompt: STORY.prompt, max_tokens: 40, temperature: 0 });
    assert.equal(c.status, 200);
    const after = await waitIdle(s);
    const d = (n, l) => metric(after, n, l) - metric(before, n, l);
    assert.equal(d('folio:generation_tokens_total'), 40);
    assert.equal(d('folio:prompt_tokens_total'), 5);
    assert.equal(d('folio:request_success_total', { finished_reason: 'length' }), 1);
    assert.equal(d('folio:time_to_first_token_seconds_count'), 1);
    assert.equal(d('folio:e2e_request_latency_seconds_count'), 1);
    assert.equal(d('folio:inter_token_latency_seconds_count'), 39);
    assert.ok(d('folio:prefix_cache_queries_total') >= 5);
    for (const h of HISTOGRAMS) {
      const inf = metric(after, `${h}_bucket`, { le: '+Inf' });
      assert.equal(inf, metric(after, `${h}_count`), `${h}: +Inf bucket == count`);
      // Cumulative buckets never decrease.
      const b = after.filter((x) => x.name === `${h}_bucket`).map((x) => x.value);
      for (let i = 1; i < b.length; i++) assert.ok(b[i] >= b[i - 1], `${h} buckets not cumulative`);
    }
    assert.equal(metric(after, 'folio:num_requests_running'), 0);
    const u = metric(after, 'folio:kv_cache_usage_perc');
    assert.ok(u >= 0 && u <= 1);
  });
});

test('stats: the KV cache dtype, and twice the blocks in bfloat16 for the same --kv-cache-space', async () => {
  const blocks = {};
  for (const kv of ['float32', 'bfloat16']) {
    await withServer({ args: ['--kv-cache-dtype', kv, '--kv-cache-space', '0.001', '--max-model-len', '128'] }, async (s) => {
      const j = (await get(s, '/stats')).json;
      assert.equal(j.kv_cache.dtype, kv);
      assert.equal(j.memory.kv_cache_bytes, j.kv_cache.blocks * (kv === 'bfloat16' ? 10240 : 20480));
      blocks[kv] = j.kv_cache.blocks;
    });
  }
  assert.equal(blocks.float32, 52); // 0.001 GiB / 20 KiB
  assert.equal(blocks.bfloat16, 2 * blocks.float32);
});

test('stats: JSON with requests and kv_cache counts that add up', async () => {
  await withServer({}, async (s) => {
    await post(s, '/v1/completions', { prompt: STORY.prompt, max_tokens: 5 });
    // The engine publishes its counts after the step that finished the request.
    await waitIdle(s);
    const r = await get(s, '/stats');
    assert.equal(r.status, 200);
    const j = r.json;
    assert.equal(j.requests.running, 0);
    assert.equal(j.requests.waiting, 0);
    for (const k of ['used', 'cached', 'free', 'blocks']) assert.equal(typeof j.kv_cache[k], 'number', k);
    assert.equal(j.kv_cache.used, 0);
    assert.equal(j.kv_cache.used + j.kv_cache.cached + j.kv_cache.free, j.kv_cache.blocks);
    assert.ok(j.kv_cache.blocks > 0);
    assert.equal(j.max_model_len, 512);
    assert.equal(j.model, servedName(s));
    // Memory, for the console's bar: stories260K's fp32 weights (5 layers of q/k/v/o and MLP,
    // the tied embedding, the norms) and a pool of 20 KiB blocks (2 x 5 layers x 4 KV heads
    // x 8 dims x 16 tokens x 4 bytes).
    const H = 64, I = 172, L = 5, qd = 64, kvd = 32, V = 512;
    const weights = 4 * (L * (2 * H * qd + 2 * H * kvd + 3 * H * I) + V * H) + 4 * (H + L * 2 * H);
    assert.equal(j.device, 'cpu');
    // Parameters as model cards count them: stories260K's 260,032, all active (no experts).
    assert.deepEqual(j.parameters, { architecture: 'LlamaForCausalLM', total: weights / 4, active: weights / 4,
      experts: 0, experts_per_token: 0 });
    assert.equal(j.memory.weights_bytes, weights);
    assert.equal(j.memory.kv_cache_bytes, j.kv_cache.blocks * 20480);
    assert.equal(j.kv_cache.dtype, 'float32'); // --kv-cache-dtype auto: the weights' fp32
    // Activation scratch for 2048-token batches: at least x, xn and delta (3 x 2048 x 64 fp32).
    assert.ok(j.memory.activation_bytes >= 3 * 2048 * 64 * 4, `activation_bytes ${j.memory.activation_bytes}`);
    assert.equal(j.memory.device_total_bytes, undefined); // no GPU figures on the CPU
    assert.ok(j.steps.total >= 5 && j.steps.device_argmax === 0, JSON.stringify(j.steps));
    const m = await metrics(s);
    assert.equal(metric(m, 'folio:memory_weights_bytes'), weights);
    assert.equal(metric(m, 'folio:memory_activation_bytes'), j.memory.activation_bytes);
  });
});

test('routing: unknown path 404 with the error shape; wrong method 405 with Allow', async () => {
  await withServer({}, async (s) => {
    assertError(await get(s, '/v1/nothing'), 404);
    assertError(await get(s, '/'), 404);
    const g = await get(s, '/v1/completions');
    assertError(g, 405);
    assert.equal(g.headers.get('allow'), 'POST');
    assertError(await get(s, '/v1/chat/completions'), 405);
    assertError(await post(s, '/v1/models', {}), 405);
    assertError(await post(s, '/health', {}), 405);
    const c = await curl(['-X', 'DELETE', `${s.url}/tokenize`]);
    assert.equal(c.status, 405);
    assert.ok(JSON.parse(c.body).error);
  });
});
