// Engine supervision: the zero-downtime switch under load, crashes mid-stream, crash loops,
// and a foliod killed with -9 and started again.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { assert, MODELS, sleep, STORY, test, withTimeout } from '../api/lib.mjs';
import {
  addModel, alive, engineOf, load, login, modelInfo, req, sdk, startFoliod, status, stopFoliod, waitState,
} from './lib.mjs';

test('foliod: switching `default` under 16 streams loses no request, and the old engine is gone', async () => {
  const s = await startFoliod();
  const ck = await login(s);
  await addModel(s, ck, 'stories260K');
  await addModel(s, ck, 'aidreams260K');
  const act = await req(s, 'POST', '/api/models/stories260K/activate', { cookie: ck });
  assert.equal(act.status, 200, act.text);
  const oldPid = (await engineOf(s, ck, 'stories260K')).pid;
  const client = sdk(s);
  let stop = false;
  let ok = 0;
  const failures = [];
  const served = new Set();
  const worker = async () => {
    while (!stop) {
      try {
        const stream = await client.completions.create({ model: 'default', prompt: STORY.prompt, max_tokens: 48, stream: true });
        let n = 0;
        for await (const ch of stream) {
          served.add(ch.model);
          n += ch.choices.length ? 1 : 0;
        }
        if (n < 1) throw new Error('empty stream');
        ok++;
      } catch (e) {
        failures.push(e.message);
      }
    }
  };
  const workers = Array.from({ length: 16 }, worker);
  await sleep(1000);
  const sw = await req(s, 'POST', '/api/models/aidreams260K/activate', { cookie: ck });
  assert.equal(sw.status, 200, sw.text);
  await sleep(1500);
  stop = true;
  await Promise.all(workers);
  assert.deepEqual(failures, [], `failed requests during the switch: ${failures.slice(0, 3).join('; ')}`);
  assert.ok(ok > 32, `only ${ok} requests completed`);
  assert.ok(served.has('stories260K') && served.has('aidreams260K'), [...served].join(','));
  // The old engine drains and exits.
  await waitState(s, ck, 'stories260K', 'stopped', 40000);
  assert.ok(!alive(oldPid), `old engine ${oldPid} still running`);
  const st = await status(s, ck);
  assert.equal(st.default_model, 'aidreams260K');
  await stopFoliod(s);
}, { timeout: 120000 });

test('foliod: an engine killed mid-stream gives a clean error, and is back within 10 s', async () => {
  const s = await startFoliod();
  const ck = await login(s);
  await addModel(s, ck, 'stories260K');
  await load(s, ck, 'stories260K');
  const e = await engineOf(s, ck, 'stories260K');
  const client = sdk(s);
  // Streamed: the SDK sees an error event, not a hang.
  const stream = await client.completions.create({ model: 'stories260K', prompt: STORY.prompt, max_tokens: 400, stream: true, ignore_eos: true });
  let got = 0;
  let err = null;
  try {
    for await (const ch of stream) {
      if (++got === 3) process.kill(e.pid, 'SIGKILL');
    }
  } catch (x) {
    err = x;
  }
  assert.ok(err, `the stream ended without an error after ${got} chunks`);
  assert.match(String(err.message || err), /stopped|engine/i);
  // Non-streamed while it is down: a clean 503 or 502, not a hang.
  const r = await req(s, 'POST', '/v1/completions', { body: { model: 'stories260K', prompt: 'x', max_tokens: 2 }, timeout: 5000 });
  assert.ok([502, 503].includes(r.status), `${r.status} ${r.text}`);
  assert.ok(r.json.error.message);
  // Back within 10 s of the kill: a new engine process, ready.
  const t0 = Date.now();
  let e2 = await engineOf(s, ck, 'stories260K');
  while ((e2.pid === e.pid || e2.state !== 'ready') && Date.now() - t0 < 10000) {
    await sleep(50);
    e2 = await engineOf(s, ck, 'stories260K');
  }
  assert.equal(e2.state, 'ready', `not back within 10 s: ${JSON.stringify(e2)}`);
  assert.notEqual(e2.pid, e.pid);
  assert.equal(e2.restarts, 1);
  const m = await waitState(s, ck, 'stories260K', 'ready', 1000);
  const c = await client.completions.create({ model: 'stories260K', prompt: STORY.prompt, max_tokens: 40, temperature: 0 });
  assert.equal(c.choices[0].text, STORY.text);
  const ev = await req(s, 'GET', '/api/events', { cookie: ck });
  assert.ok(ev.json.events.some((x) => x.kind === 'engine.crashed'), ev.text);
  assert.equal(m.state, 'ready');
  await stopFoliod(s);
}, { timeout: 60000 });

test('foliod: a crash loop ends in failed, with the engine\'s last words', async () => {
  const s = await startFoliod();
  const ck = await login(s);
  // A model whose weights are garbage: the engine exits at every load.
  const dir = path.join(s.data, 'broken');
  mkdirSync(dir);
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(path.join(MODELS, 'stories260K', f), path.join(dir, f));
  writeFileSync(path.join(dir, 'model.safetensors'), 'not a safetensors file');
  const r = await req(s, 'POST', '/api/models', { cookie: ck, body: { name: 'broken', path: dir } });
  assert.equal(r.status, 201, r.text);
  assert.equal((await req(s, 'POST', '/api/models/broken/load', { cookie: ck })).status, 202);
  const m = await waitState(s, ck, 'broken', 'failed', 40000);
  assert.match(m.last_error, /5 times in a row/);
  assert.match(m.last_error, /safetensors|header|error/i);
  assert.equal(m.loaded, false);
  const e = await engineOf(s, ck, 'broken');
  assert.equal(e.state, 'failed');
  assert.equal(e.pid, 0);
  const logs = await req(s, 'GET', '/api/models/broken/logs?lines=50', { cookie: ck });
  assert.ok(logs.json.lines.some((l) => /exited with status 1/.test(l)), logs.text);
  await stopFoliod(s);
}, { timeout: 60000 });

test('foliod: kill -9 and restart: registry, keys and loaded models come back; no orphan engine', async () => {
  const s = await startFoliod();
  const ck = await login(s);
  await addModel(s, ck, 'stories260K');
  await addModel(s, ck, 'aidreams260K');
  await load(s, ck, 'stories260K');
  const k = await req(s, 'POST', '/api/keys', { cookie: ck, body: { name: 'survivor' } });
  const oldPid = (await engineOf(s, ck, 'stories260K')).pid;
  s.proc.kill('SIGKILL');
  await s.exited;
  // The engine dies with foliod (PR_SET_PDEATHSIG).
  for (let i = 0; i < 100 && alive(oldPid); i++) await sleep(50);
  assert.ok(!alive(oldPid), `engine ${oldPid} outlived foliod`);
  const t = await startFoliod({ data: s.data });
  const ck2 = await login(t);
  const m = await waitState(t, ck2, 'stories260K', 'ready', 30000);
  assert.equal(m.loaded, true);
  const other = await modelInfo(t, ck2, 'aidreams260K');
  assert.equal(other.state, 'registered');
  const body = { model: 'stories260K', prompt: STORY.prompt, max_tokens: 40, temperature: 0 };
  assert.equal((await req(t, 'POST', '/v1/completions', { body })).status, 401, 'the key still exists');
  const r = await req(t, 'POST', '/v1/completions', { body, headers: { authorization: `Bearer ${k.json.key}` } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.choices[0].text, STORY.text);
  await stopFoliod(t);
  // A graceful stop keeps the model marked loaded for the next start.
  const u = await startFoliod({ data: s.data });
  const ck3 = await login(u);
  await waitState(u, ck3, 'stories260K', 'ready', 30000);
  await stopFoliod(u);
}, { timeout: 90000 });

test('foliod: unload drains and stops the engine; delete removes the model', async () => {
  const s = await startFoliod();
  const ck = await login(s);
  await addModel(s, ck, 'stories260K');
  await load(s, ck, 'stories260K');
  const pid = (await engineOf(s, ck, 'stories260K')).pid;
  assert.equal((await req(s, 'POST', '/api/models/stories260K/unload', { cookie: ck })).status, 202);
  await waitState(s, ck, 'stories260K', 'stopped', 30000);
  assert.ok(!alive(pid));
  const r = await req(s, 'POST', '/v1/completions', { body: { model: 'stories260K', prompt: 'x', max_tokens: 1 } });
  assert.equal(r.status, 503);
  assert.equal((await req(s, 'DELETE', '/api/models/stories260K', { cookie: ck })).status, 200);
  assert.equal((await req(s, 'GET', '/api/models/stories260K', { cookie: ck })).status, 404);
  const r2 = await req(s, 'POST', '/v1/completions', { body: { model: 'stories260K', prompt: 'x', max_tokens: 1 } });
  assert.equal(r2.status, 404);
  await stopFoliod(s);
});

test('foliod: at start, an engine left running by an earlier foliod is killed (no orphan)', async () => {
  const s = await startFoliod();
  const ck = await login(s);
  await addModel(s, ck, 'stories260K');
  await stopFoliod(s);
  // An engine process that outlived its foliod (as if PR_SET_PDEATHSIG had not fired), on record.
  const { spawn, execFileSync } = await import('node:child_process');
  const { ENGINE } = await import('../api/lib.mjs');
  const orphan = spawn(ENGINE, ['--model', path.join(MODELS, 'stories260K'), '--port', '0'], { stdio: 'ignore', detached: true });
  const exited = new Promise((resolve) => orphan.on('exit', resolve));
  await sleep(300);
  assert.ok(alive(orphan.pid));
  execFileSync('/usr/bin/python3', ['-c', `import sqlite3,sys
db = sqlite3.connect(sys.argv[1])
db.execute("INSERT INTO engines(model_id, pid, port, state, started, restarts, log_path) VALUES (1, ?, 1, 'ready', 0, 0, '')", (int(sys.argv[2]),))
db.commit()`, `${s.data}/folio.db`, String(orphan.pid)]);
  const t = await startFoliod({ data: s.data });
  await withTimeout(exited, 5000, 'the orphan engine was not killed');
  assert.ok(!alive(orphan.pid));
  const ck2 = await login(t);
  const ev = await req(t, 'GET', '/api/events?limit=1000', { cookie: ck2 });
  assert.ok(ev.json.events.some((e) => e.kind === 'engine.orphan' && e.message.includes(String(orphan.pid))), ev.text);
  // A recorded pid that is not an engine (this test's own process) is left alone.
  await stopFoliod(t);
  execFileSync('/usr/bin/python3', ['-c', `import sqlite3,sys
db = sqlite3.connect(sys.argv[1])
db.execute("INSERT OR REPLACE INTO engines(model_id, pid, port, state, started, restarts, log_path) VALUES (1, ?, 1, 'ready', 0, 0, '')", (int(sys.argv[2]),))
db.commit()`, `${s.data}/folio.db`, String(process.pid)]);
  const u = await startFoliod({ data: s.data });
  assert.ok(alive(process.pid));
  await stopFoliod(u);
});
