// The admin event stream, configuration precedence, client disconnects through the proxy,
// and model edits.
import http from 'node:http';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { assert, MODELS, sleep, STORY, test } from '../api/lib.mjs';
import {
  addModel, engineOf, load, login, modelInfo, readEvents, req, startFoliod, stopFoliod, waitState,
} from './lib.mjs';


test('foliod: /api/events streams status snapshots and new events as they happen', async () => {
  const s = await startFoliod();
  const ck = await login(s);
  await addModel(s, ck, 'stories260K');
  const seen = readEvents(`${s.url}/api/events`, ck,
    (evs) => evs.some((e) => e.event === 'event' && e.json.kind === 'engine.ready') &&
      evs.some((e) => e.event === 'status' && e.json.engines.some((x) => x.state === 'ready' && x.kv_usage === 0)));
  await sleep(200);
  assert.equal((await req(s, 'POST', '/api/models/stories260K/load', { cookie: ck })).status, 202);
  const evs = await seen;
  const first = evs.find((e) => e.event === 'status');
  assert.ok(first.json.uptime_s >= 0 && Array.isArray(first.json.gpus));
  // The JSON list of the same log, with since/limit.
  const all = await req(s, 'GET', '/api/events?limit=1000', { cookie: ck });
  const kinds = all.json.events.map((e) => e.kind);
  assert.ok(kinds.includes('model.added') && kinds.includes('model.load') && kinds.includes('engine.ready'), kinds.join());
  const last = all.json.events.at(-1).id;
  const none = await req(s, 'GET', `/api/events?since=${last}`, { cookie: ck });
  assert.deepEqual(none.json.events, []);
  // Without a session the stream is refused like every /api route.
  assert.equal((await req(s, 'GET', '/api/events', { headers: { accept: 'text/event-stream' } })).status, 401);
  // A stream still open does not hold foliod up when it stops.
  const open = http.get(`${s.url}/api/events`, { headers: { cookie: ck, accept: 'text/event-stream' } }, (res) => res.resume());
  open.on('error', () => {});
  await sleep(300);
  const t0 = Date.now();
  await stopFoliod(s);
  assert.ok(Date.now() - t0 < 15000, `foliod took ${Date.now() - t0} ms to stop`);
  open.destroy();
});

test('foliod: configuration precedence: flags, then the config file, then the environment', async () => {
  const s0 = await startFoliod();
  const conf = path.join(s0.data, 'foliod.conf');
  await stopFoliod(s0);
  // Tokens and keys need 32+ characters (a startup error names the setting otherwise).
  const FILE_TOK = 'from-file-0123456789abcdef0123456789';
  const ENV_TOK = 'from-env-0123456789abcdef0123456789';
  const FLAG_TOK = 'from-flag-0123456789abcdef0123456789';
  const FILE_KEY = 'key-from-file-0123456789abcdef0123456789';
  writeFileSync(conf, `# a comment\nadmin-token = ${FILE_TOK}\n\napi_key = ${FILE_KEY}\n`);
  const s = await startFoliod({ data: s0.data, args: ['--config', conf], env: { FOLIO_ADMIN_TOKEN: ENV_TOK } });
  const as = (tok) => req(s, 'GET', '/api/status', { headers: { authorization: `Bearer ${tok}` } });
  assert.equal((await as(FILE_TOK)).status, 200);
  assert.equal((await as(ENV_TOK)).status, 401);
  // The file's api_key guards /v1 (no stored key exists).
  assert.equal((await req(s, 'GET', '/v1/models')).status, 401);
  assert.equal((await req(s, 'GET', '/v1/models', { headers: { authorization: `Bearer ${FILE_KEY}` } })).status, 200);
  await stopFoliod(s);
  // A token file given as a flag (the flag with the secret itself is refused: ps shows it).
  const tokFile = path.join(s0.data, 'admin-token');
  writeFileSync(tokFile, `${FLAG_TOK}\n`);
  const t = await startFoliod({ data: s0.data, args: ['--config', conf, '--admin-token-file', tokFile], env: { FOLIO_ADMIN_TOKEN: ENV_TOK } });
  assert.equal((await req(t, 'GET', '/api/status', { headers: { authorization: `Bearer ${FLAG_TOK}` } })).status, 200);
  assert.equal((await req(t, 'GET', '/api/status', { headers: { authorization: `Bearer ${FILE_TOK}` } })).status, 401);
  await stopFoliod(t);
  // A bad file is refused at start with its line number.
  writeFileSync(conf, 'port = 1\nno equals sign here\n');
  const { spawnSync } = await import('node:child_process');
  const { FOLIOD } = await import('./lib.mjs');
  const r = spawnSync(FOLIOD, ['--config', conf, '--data-dir', s0.data], { encoding: 'utf8', timeout: 10000 });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /foliod\.conf:2: expected key = value/);
});

test('foliod: a client that disconnects aborts its request in the engine', async () => {
  const s = await startFoliod();
  const ck = await login(s);
  await addModel(s, ck, 'stories260K');
  await load(s, ck, 'stories260K');
  const e = await engineOf(s, ck, 'stories260K');
  const engineMetric = async (name) => {
    const r = await fetch(`http://127.0.0.1:${e.port}/metrics`);
    const line = (await r.text()).split('\n').find((l) => l.startsWith(name));
    return Number(line.split(' ').at(-1));
  };
  for (const stream of [false, true]) {
    const ctl = new AbortController();
    const p = fetch(`${s.url}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, signal: ctl.signal,
      // 64 samples of 500 tokens: long enough on any machine to be caught running.
      body: JSON.stringify({ model: 'stories260K', prompt: STORY.prompt, max_tokens: 500, n: 64, ignore_eos: true, stream }),
    }).then((r) => r.text()).catch(() => 'aborted');
    for (let i = 0; i < 200 && (await engineMetric('folio:num_requests_running')) === 0; i++) await sleep(10);
    assert.ok((await engineMetric('folio:num_requests_running')) >= 1, 'the request never ran');
    ctl.abort();
    assert.equal(await p, 'aborted');
    let running = 1;
    for (let i = 0; i < 100 && running; i++) {
      await sleep(20);
      running = await engineMetric('folio:num_requests_running');
    }
    assert.equal(running, 0, `the engine kept generating after the client left (stream: ${stream})`);
  }
  await stopFoliod(s);
});

test('foliod: PATCH edits a model; activating one that cannot start keeps the old default', async () => {
  const s = await startFoliod();
  const ck = await login(s);
  await addModel(s, ck, 'stories260K');
  assert.equal((await req(s, 'POST', '/api/models/stories260K/activate', { cookie: ck })).status, 200);
  const p = await req(s, 'PATCH', '/api/models/stories260K', { cookie: ck, body: { max_model_len: 256 } });
  assert.equal(p.status, 200, p.text);
  assert.equal(p.json.max_model_len, 256);
  assert.equal((await req(s, 'PATCH', '/api/models/stories260K', { cookie: ck, body: { dtype: 'int4' } })).status, 400);
  // A model whose max_model_len exceeds the checkpoint's: the engine refuses to start.
  const bad = await req(s, 'POST', '/api/models', {
    cookie: ck, body: { name: 'too-long', path: path.join(MODELS, 'aidreams260K'), max_model_len: 100000 },
  });
  assert.equal(bad.status, 201, bad.text);
  const act = await req(s, 'POST', '/api/models/too-long/activate', { cookie: ck });
  assert.equal(act.status, 409, act.text);
  assert.match(act.json.error.message, /did not become ready/);
  const def = await modelInfo(s, ck, 'stories260K');
  assert.equal(def.default, true);
  assert.equal(def.state, 'ready');
  const r = await req(s, 'POST', '/v1/completions', { body: { model: 'default', prompt: STORY.prompt, max_tokens: 40, temperature: 0 } });
  assert.equal(r.json.choices[0].text, STORY.text);
  await waitState(s, ck, 'too-long', 'failed', 40000);
  await stopFoliod(s);
}, { timeout: 90000 });
