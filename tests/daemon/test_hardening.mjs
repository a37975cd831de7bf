// foliod hardening (issue 17): request size limits, the /v1 model scan, origin checks (CSRF),
// back-off on failed credentials, aggregated failed-login events, session lifetime and
// password resets, secrets (engine environment, flags, files, lengths), the /metrics race,
// model validation (names, paths, chat templates) and foliod's memory after big requests.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import nodeHttp from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { assert, ENGINE, MODELS, onCleanup, sleep, SLOW, STORY, test } from '../api/lib.mjs';
import {
  addModel, dataDir, engineOf, FOLIOD, here, load, login, PASSWORD, req, startFoliod, stopFoliod, waitState,
} from './lib.mjs';

const TOKEN = 'admin-token-0123456789abcdef0123456789';
const KEY = 'api-key-0123456789abcdef0123456789abcdef';
const TEMPLATE_TEXT = readFileSync(path.join(here, '../api/templates/story.jinja'), 'utf8').trim();

function rss(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) * 1024;
}

// Sends `total` bytes of body after `head` on a raw socket and resolves with what came back
// (the status line is enough); the server may answer and close early.
function rawBody(port, head, total, { chunked = false } = {}) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let out = '';
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      sock.destroy();
      resolve(out);
    };
    sock.on('data', (d) => {
      out += d.toString();
      if (/\r\n\r\n/.test(out)) setTimeout(finish, 50);
    });
    sock.on('error', finish);
    sock.on('close', finish);
    sock.on('connect', async () => {
      sock.write(head);
      const piece = Buffer.alloc(1 << 20, 'a');
      for (let sent = 0; sent < total && !done;) {
        const n = Math.min(piece.length, total - sent);
        const ok = chunked ? sock.write(`${n.toString(16)}\r\n`) && sock.write(piece.subarray(0, n)) && sock.write('\r\n')
          : sock.write(piece.subarray(0, n));
        sent += n;
        if (!ok) await new Promise((r) => { sock.once('drain', r); sock.once('close', r); });
      }
      if (chunked && !done) sock.write('0\r\n\r\n');
    });
    setTimeout(finish, 30000);
  });
}

test('hardening: login bodies over 4 KiB get 413 before they are buffered; foliod RSS stays flat', async () => {
  const s = await startFoliod();
  const big = JSON.stringify({ password: 'x'.repeat(5000) });
  let r = await req(s, 'POST', '/api/login', { body: big });
  assert.equal(r.status, 413, r.text);
  assert.match(r.json.error.message, /exceeds 4 KiB/);
  // Chunked (no Content-Length): counted while it is read.
  const chunkedHead = `POST /api/login HTTP/1.1\r\nHost: 127.0.0.1:${s.port}\r\nContent-Type: application/json\r\n`
    + 'Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n';
  const out = await rawBody(s.port, chunkedHead, 64 * 1024, { chunked: true });
  assert.match(out, /^HTTP\/1\.1 413/, out.slice(0, 200));
  // A small one is still read and judged.
  assert.equal((await req(s, 'POST', '/api/login', { body: { password: 'wrong password' } })).status, 401);
  // Four concurrent 15 MiB login bodies, declared and chunked: RSS stays about flat.
  const before = rss(s.proc.pid);
  const len = 15 << 20;
  const declHead = `POST /api/login HTTP/1.1\r\nHost: 127.0.0.1:${s.port}\r\nContent-Type: application/json\r\n`
    + `Content-Length: ${len}\r\nConnection: close\r\n\r\n`;
  const outs = await Promise.all([
    rawBody(s.port, declHead, len), rawBody(s.port, declHead, len),
    rawBody(s.port, chunkedHead, len, { chunked: true }), rawBody(s.port, chunkedHead, len, { chunked: true }),
  ]);
  for (const o of outs) assert.match(o, /^HTTP\/1\.1 413/, o.slice(0, 200));
  const after = rss(s.proc.pid);
  console.log(`    foliod RSS: ${(before / 2 ** 20).toFixed(1)} MiB before, ${(after / 2 ** 20).toFixed(1)} MiB after four 15 MiB login bodies`);
  assert.ok(after - before < 16 * 2 ** 20, `RSS grew from ${before} to ${after}`);
  // Other routes keep the 16 MiB limit.
  const ck = await login(s);
  r = await req(s, 'POST', '/api/models', { cookie: ck, body: JSON.stringify({ name: 'x', pad: 'y'.repeat(64 * 1024) }) });
  assert.equal(r.status, 400, r.text); // read in full, then judged (no path)
  const v1Head = `POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:${s.port}\r\nContent-Type: application/json\r\n`
    + `Content-Length: ${(16 << 20) + 10}\r\nConnection: close\r\n\r\n`;
  const v1 = await rawBody(s.port, v1Head, (16 << 20) + 10);
  assert.match(v1, /^HTTP\/1\.1 413/, v1.slice(0, 200));
  await stopFoliod(s);
}, { timeout: 120000 });

test('hardening: foliod RSS after a burst of big /v1 bodies goes back down', async () => {
  const s = await startFoliod();
  const ck = await login(s);
  await addModel(s, ck, 'stories260K');
  await load(s, ck, 'stories260K');
  const before = rss(s.proc.pid);
  const body = JSON.stringify({ model: 'default-missing', prompt: 'p'.repeat(12 << 20) });
  let peak = before;
  for (let round = 0; round < 3; round++) {
    const rs = await Promise.all(Array.from({ length: 4 }, () => req(s, 'POST', '/v1/completions', { body })));
    for (const r of rs) assert.equal(r.status, 404, r.text);
    peak = Math.max(peak, rss(s.proc.pid));
  }
  await sleep(200);
  const after = rss(s.proc.pid);
  console.log(`    foliod RSS: ${(before / 2 ** 20).toFixed(1)} MiB before, ${(after / 2 ** 20).toFixed(1)} MiB after 12 x 12 MiB /v1 bodies`);
  // A sanitizer's allocator keeps freed memory in quarantine and ignores glibc's settings:
  // there the bodies' answers are checked, not the memory.
  if (!/asan|tsan/i.test(ENGINE)) assert.ok(after - before < 32 * 2 ** 20, `RSS grew from ${before} to ${after}`);
  await stopFoliod(s);
}, { timeout: 120000 });

test('hardening: /v1 finds the top-level "model" by a scan; the alias is rewritten in a copy; bad JSON is 400', async () => {
  const s = await startFoliod();
  const ck = await login(s);
  await addModel(s, ck, 'stories260K');
  await load(s, ck, 'stories260K');
  assert.equal((await req(s, 'POST', '/api/models/stories260K/activate', { cookie: ck })).status, 200);
  const base = { prompt: STORY.prompt, max_tokens: 4, temperature: 0 };
  // The alias (named, absent or null) reaches the engine as the served name.
  for (const body of [{ model: 'default', ...base }, base, { model: null, ...base }, { ...base, model: 'default' }]) {
    const r = await req(s, 'POST', '/v1/completions', { body });
    assert.equal(r.status, 200, `${JSON.stringify(body)}: ${r.text}`);
    assert.equal(r.json.model, 'stories260K');
  }
  // Escapes and nesting: a "model" inside a nested object is not the top-level one.
  let r = await req(s, 'POST', '/v1/completions', {
    body: `{"prompt":"a \\"model\\": \\"x\\" {","max_tokens":2,"model":"stories\\u0032\\u00360K"}`,
  });
  assert.equal(r.status, 200, r.text);
  r = await req(s, 'POST', '/v1/chat/completions', {
    body: { messages: [{ role: 'user', content: 'hi', model: 'nope' }], max_tokens: 2, model: 'default' },
  });
  assert.ok(r.status !== 404, r.text);
  for (const [body, re] of [
    ['[1,2]', /not a JSON object/], ['"x"', /not a JSON object/], ['{"model":"stories260K",}', /not valid JSON/],
    ['{"model":"stories260K"} x', /not valid JSON/], ['{"model":5}', /model must be a string/],
    ['{"model":"stories260K","model":"default"}', /twice/], ['{"a":"\u0001"}', /not valid JSON/],
    [`{"a":${'['.repeat(300)}${']'.repeat(300)}}`, /deeply/],
  ]) {
    r = await req(s, 'POST', '/v1/completions', { body });
    assert.equal(r.status, 400, `${body}: ${r.text}`);
    assert.match(r.json.error.message, re, body);
  }
  await stopFoliod(s);
});

test('hardening: origin checks: the session cookie needs a same-origin Origin to change state; JSON bodies only', async () => {
  const s = await startFoliod({ env: { FOLIO_ADMIN_TOKEN: TOKEN } });
  const ck = await login(s);
  const other = `http://127.0.0.1:${s.port + 1}`;
  const post = (opts) => req(s, 'POST', '/api/keys', { body: { name: 'k' }, ...opts });
  // No Origin (a cross-site form on another port of this host would send the cookie).
  let r = await post({ cookie: ck, origin: null });
  assert.equal(r.status, 403, r.text);
  assert.match(r.json.error.message, /Origin/);
  r = await post({ cookie: ck, origin: other });
  assert.equal(r.status, 403, r.text);
  assert.match(r.json.error.message, /cross-origin/);
  r = await post({ cookie: ck, origin: null, headers: { 'sec-fetch-site': 'same-site' } });
  assert.equal(r.status, 403, r.text);
  assert.equal((await post({ cookie: ck, origin: null, headers: { 'sec-fetch-site': 'same-origin' } })).status, 201);
  assert.equal((await post({ cookie: ck })).status, 201); // Origin = http://127.0.0.1:PORT
  // The scheme is ignored (a TLS proxy in front); host:port must match Host.
  assert.equal((await post({ cookie: ck, origin: `https://127.0.0.1:${s.port}` })).status, 201);
  // A cross-origin Origin is refused on any /api request, login and GETs included.
  r = await req(s, 'POST', '/api/login', { body: { password: PASSWORD }, origin: other });
  assert.equal(r.status, 403, r.text);
  assert.equal(r.headers.get('set-cookie'), null);
  assert.equal((await req(s, 'GET', '/api/status', { cookie: ck, origin: other })).status, 403);
  assert.equal((await req(s, 'GET', '/api/status', { cookie: ck, origin: 'null' })).status, 403);
  assert.equal((await req(s, 'GET', '/api/status', { cookie: ck, origin: null })).status, 200); // GET: no Origin needed
  // Bodies must be JSON (a form or a "simple" fetch cannot send that cross-origin).
  r = await req(s, 'POST', '/api/keys', { cookie: ck, body: '{"name":"t"}', headers: { 'content-type': 'text/plain' } });
  assert.equal(r.status, 415, r.text);
  r = await req(s, 'POST', '/api/login', { body: `{"password":"${PASSWORD}"}`, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  assert.equal(r.status, 415, r.text);
  r = await req(s, 'POST', '/api/keys', { cookie: ck, body: '{"name":"t"}', headers: { 'content-type': 'application/json; charset=utf-8' } });
  assert.equal(r.status, 201, r.text);
  // The admin token needs no Origin: a browser cannot attach it cross-origin without a preflight.
  r = await req(s, 'POST', '/api/keys', { body: { name: 'script' }, headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(r.status, 201, r.text);
  const key = r.json.key;
  // /v1 with only the console's session: a POST needs the same Origin rule.
  const body = { model: 'nope', prompt: 'x', max_tokens: 1 };
  r = await req(s, 'POST', '/v1/completions', { cookie: ck, origin: null, body });
  assert.equal(r.status, 403, r.text);
  r = await req(s, 'POST', '/v1/completions', { cookie: ck, origin: other, body });
  assert.equal(r.status, 403, r.text);
  assert.equal((await req(s, 'POST', '/v1/completions', { cookie: ck, body })).status, 404); // authorized, no such model
  assert.equal((await req(s, 'POST', '/v1/completions', { body, headers: { authorization: `Bearer ${key}` } })).status, 404);
  assert.equal((await req(s, 'GET', '/v1/models', { cookie: ck, origin: null })).status, 200);
  await stopFoliod(s);
});

test('hardening: back-off per address on wrong passwords, admin tokens and API keys: 429 with Retry-After', async () => {
  const s = await startFoliod({ env: { FOLIO_ADMIN_TOKEN: TOKEN, FOLIO_API_KEY: KEY } });
  const wrong = () => req(s, 'POST', '/api/login', { body: { password: 'not the password' } });
  for (let i = 0; i < 5; i++) assert.equal((await wrong()).status, 401, `failure ${i + 1}`);
  // The 5th failure started the wait: 1 s, then 2 s, 4 s ...
  // The refusal is answered at once, with no password hash: a back-off that slept in the HTTP
  // thread would answer only after the wait (1 s or more). No hash makes this a fast path even
  // with the other suites beside it (a hash alone took 1.5 s on a loaded CI machine).
  const t0 = Date.now();
  let r = await wrong();
  const ms = Date.now() - t0;
  assert.equal(r.status, 429, r.text);
  assert.ok(ms < 900, `a refusal holds no HTTP thread asleep (${ms} ms)`);
  assert.ok(Number(r.headers.get('retry-after')) >= 1, r.headers.get('retry-after'));
  // During the wait even the right password is not checked.
  r = await req(s, 'POST', '/api/login', { body: { password: PASSWORD } });
  assert.equal(r.status, 429, r.text);
  await sleep(1100);
  const ck = await login(s); // a success starts the address over
  for (let i = 0; i < 4; i++) assert.equal((await wrong()).status, 401);
  // Admin tokens and API keys count on the same table: this 5th failure starts the wait.
  r = await req(s, 'GET', '/api/status', { headers: { authorization: 'Bearer wrong-token' } });
  assert.equal(r.status, 401, r.text);
  r = await req(s, 'GET', '/api/status', { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(r.status, 429, r.text);
  r = await req(s, 'GET', '/v1/models', { headers: { authorization: `Bearer ${KEY}` } });
  assert.equal(r.status, 429, r.text);
  assert.ok(r.headers.get('retry-after'));
  // The session is not a guessable credential: it keeps working.
  assert.equal((await req(s, 'GET', '/api/status', { cookie: ck })).status, 200);
  await sleep(1100);
  assert.equal((await req(s, 'GET', '/v1/models', { headers: { authorization: `Bearer ${KEY}` } })).status, 200);
  for (let i = 0; i < 5; i++) assert.equal((await req(s, 'GET', '/v1/models', { headers: { authorization: `Bearer ${KEY}x` } })).status, 401);
  assert.equal((await req(s, 'GET', '/v1/models', { headers: { authorization: `Bearer ${KEY}` } })).status, 429);
  await stopFoliod(s);
});

test('hardening: failed logins are one event a minute with addresses and counts; nothing counted is lost', async () => {
  const s = await startFoliod();
  for (let i = 0; i < 4; i++) assert.equal((await req(s, 'POST', '/api/login', { body: { password: `wrong ${i}` } })).status, 401);
  const ck = await login(s); // writes what was pending
  const events = async () => (await req(s, 'GET', '/api/events?limit=1000', { cookie: ck })).json.events
    .filter((e) => e.kind === 'admin.login_failed');
  let ev = await events();
  assert.equal(ev.length, 2, JSON.stringify(ev));
  assert.match(ev[0].message, /^1 failed admin login .*127\.0\.0\.1 \(1\)/);
  assert.match(ev[1].message, /^3 failed admin logins .*127\.0\.0\.1 \(3\)/);
  // Pending failures are written at shutdown.
  assert.equal((await req(s, 'POST', '/api/login', { body: { password: 'wrong again' } })).status, 401);
  await stopFoliod(s);
  const t = await startFoliod({ data: s.data });
  const c2 = await login(t);
  ev = (await req(t, 'GET', '/api/events?limit=1000', { cookie: c2 })).json.events.filter((e) => e.kind === 'admin.login_failed');
  assert.equal(ev.length, 3, JSON.stringify(ev));
  assert.match(ev[2].message, /^1 failed admin login /);
  await stopFoliod(t);
});

test('hardening: --reset-admin-password ends the running foliod\'s sessions and its event streams', async () => {
  const s = await startFoliod();
  const ck = await login(s);
  assert.equal((await req(s, 'GET', '/api/status', { cookie: ck })).status, 200);
  // An SSE stream opened with the session.
  let ended = false;
  const stream = new Promise((resolve) => {
    const rq = nodeHttp.get(`${s.url}/api/events`, { headers: { cookie: ck, accept: 'text/event-stream' } }, (res) => {
      res.on('data', () => {});
      res.on('end', () => { ended = true; resolve(); });
      res.on('error', () => { ended = true; resolve(); });
    });
    rq.on('error', () => { ended = true; resolve(); });
    onCleanup(() => rq.destroy());
  });
  await sleep(300);
  assert.ok(!ended);
  const r = spawnSync(FOLIOD, ['--data-dir', s.data, '--config', '/dev/null', '--reset-admin-password'], {
    env: { ...process.env, FOLIO_API_KEY: '', FOLIO_ADMIN_PASSWORD: 'a brand new password' }, encoding: 'utf8', timeout: 20000,
  });
  assert.equal(r.status, 0, r.stderr);
  const res = await req(s, 'GET', '/api/status', { cookie: ck });
  assert.equal(res.status, 401, res.text);
  await Promise.race([stream, sleep(5000)]);
  assert.ok(ended, 'the event stream outlived its session');
  assert.equal((await req(s, 'POST', '/api/login', { body: { password: PASSWORD } })).status, 401);
  await login(s, 'a brand new password');
  await stopFoliod(s);
});

test('hardening: secrets: engines get an allow-listed environment; secret flags refused; files; minimum lengths', async () => {
  const data = dataDir();
  const keyFile = path.join(data, 'api-key');
  writeFileSync(keyFile, `${KEY}\n`);
  const s = await startFoliod({
    data,
    args: ['--api-key-file', keyFile],
    env: { FOLIO_ADMIN_TOKEN: TOKEN, HF_TOKEN: 'hf_secret_token_value', SOME_OTHER_SECRET: 'nope', OMP_NUM_THREADS: '1', LC_ALL: 'C' },
  });
  const ck = await login(s);
  await addModel(s, ck, 'stories260K');
  await load(s, ck, 'stories260K');
  const e = await engineOf(s, ck, 'stories260K');
  const env = readFileSync(`/proc/${e.pid}/environ`).toString().split('\0').filter(Boolean);
  const names = env.map((x) => x.split('=')[0]);
  for (const bad of ['FOLIO_ADMIN_PASSWORD', 'FOLIO_ADMIN_TOKEN', 'HF_TOKEN', 'SOME_OTHER_SECRET']) assert.ok(!names.includes(bad), `${bad} reached the engine`);
  for (const good of ['PATH', 'OMP_NUM_THREADS', 'LC_ALL', 'FOLIO_API_KEY']) assert.ok(names.includes(good), `${good} missing: ${names}`);
  assert.ok(!env.includes(`FOLIO_API_KEY=${KEY}`), 'foliod\'s key reached the engine');
  // No per-thread malloc cache in engines: it kept their RSS climbing under load.
  assert.ok(env.includes('GLIBC_TUNABLES=glibc.malloc.tcache_count=0'), `GLIBC_TUNABLES: ${names}`);
  // The key from the file guards /v1.
  assert.equal((await req(s, 'GET', '/v1/models', { headers: { authorization: `Bearer ${KEY}` } })).status, 200);
  await stopFoliod(s);
  const run = (args, env = {}) => spawnSync(FOLIOD, ['--data-dir', data, '--config', '/dev/null', '--port', '0', ...args], {
    env: { ...process.env, FOLIO_API_KEY: '', FOLIO_ADMIN_PASSWORD: PASSWORD, ...env }, encoding: 'utf8', timeout: 20000,
  });
  let r = run(['--api-key', KEY]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--api-key is refused.*--api-key-file FILE.*FOLIO_API_KEY/);
  r = run(['--admin-token', TOKEN]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--admin-token is refused.*--admin-token-file FILE.*FOLIO_ADMIN_TOKEN/);
  r = run([], { FOLIO_ADMIN_TOKEN: 'short-token' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /admin token \(FOLIO_ADMIN_TOKEN\) has 11 characters: at least 32/);
  r = run([], { FOLIO_API_KEY: 'short-key' });
  assert.match(r.stderr, /API key \(FOLIO_API_KEY\) has 9 characters: at least 32/);
  r = run(['--reset-admin-password'], { FOLIO_ADMIN_PASSWORD: 'short pw' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /admin password \(FOLIO_ADMIN_PASSWORD\) has 8 characters: at least 12 .*yescrypt/);
  const conf = path.join(data, 'foliod.conf');
  writeFileSync(conf, `hf_token_file = ${path.join(data, 'no-such-file')}\n`);
  r = spawnSync(FOLIOD, ['--data-dir', data, '--config', conf, '--port', '0'], { env: { ...process.env, FOLIO_API_KEY: '' }, encoding: 'utf8', timeout: 20000 });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /hf_token_file in .*foliod\.conf: cannot read .*no-such-file/);
  // A token file named in the config file.
  const tokFile = path.join(data, 'admin-token');
  writeFileSync(tokFile, `${TOKEN}\r\n`);
  writeFileSync(conf, `admin_token_file = ${tokFile}\n`);
  const t = await startFoliod({ data, args: ['--config', conf] });
  assert.equal((await req(t, 'GET', '/api/status', { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200);
  await stopFoliod(t);
}, { timeout: 60000 });

test('hardening: a generated admin password is kept in DATA/admin-password (0600) until one is set', async () => {
  const s = await startFoliod({ env: { FOLIO_ADMIN_PASSWORD: '' } });
  const file = path.join(s.data, 'admin-password');
  assert.ok(s.log.includes(file), s.log);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  const pw = readFileSync(file, 'utf8').trim();
  await login(s, pw);
  await stopFoliod(s);
  const r = spawnSync(FOLIOD, ['--data-dir', s.data, '--config', '/dev/null', '--reset-admin-password'], {
    env: { ...process.env, FOLIO_API_KEY: '', FOLIO_ADMIN_PASSWORD: 'chosen password here' }, encoding: 'utf8', timeout: 20000,
  });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(!existsSync(file), 'the generated password file outlived it');
});

test('hardening: /metrics from many threads at once with two engines: every answer well-formed', async () => {
  const s = await startFoliod();
  const ck = await login(s);
  await addModel(s, ck, 'stories260K');
  await addModel(s, ck, 'aidreams260K');
  await load(s, ck, 'stories260K');
  await load(s, ck, 'aidreams260K');
  const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^{}]*\})? (\S+)( \d+)?$/;
  for (let round = 0; round < 6; round++) {
    const rs = await Promise.all(Array.from({ length: 48 }, () => req(s, 'GET', '/metrics')));
    for (const r of rs) {
      assert.equal(r.status, 200);
      let models = new Set();
      for (const line of r.text.split('\n')) {
        if (!line) continue;
        if (line.startsWith('#')) {
          assert.match(line, /^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* /, line);
          continue;
        }
        const m = sample.exec(line);
        assert.ok(m, `malformed line: ${JSON.stringify(line)}`);
        assert.ok(!Number.isNaN(Number(m[3])) || /^[+-]?Inf$|^NaN$/.test(m[3]), line);
        const model = m[2] && /model="([^"]*)"/.exec(m[2]);
        const mn = m[2] && /model_name="([^"]*)"/.exec(m[2]);
        if (model) models.add(model[1]);
        if (model && mn) assert.equal(mn[1], model[1], line);
      }
      assert.deepEqual([...models].sort(), ['aidreams260K', 'stories260K']);
      models = null;
    }
  }
  await stopFoliod(s);
}, { timeout: 90000 });

test('hardening: model validation: names, path with repo_id, realpath\'d dirs, chat templates inside the model dir', async () => {
  const s = await startFoliod();
  const ck = await login(s);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'folio-model-'));
  onCleanup(() => spawnSync('rm', ['-rf', dir]));
  // A model directory of our own: the real model's files, plus a template and a symlink out.
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) {
    const src = path.join(MODELS, 'stories260K', f);
    if (existsSync(src)) symlinkSync(src, path.join(dir, f));
  }
  writeFileSync(path.join(dir, 'ok.jinja'), TEMPLATE_TEXT);
  mkdirSync(path.join(dir, 'sub'));
  writeFileSync(path.join(dir, 'sub', 'ok2.jinja'), TEMPLATE_TEXT);
  symlinkSync('/etc/passwd', path.join(dir, 'evil.jinja'));
  const cases = [
    [{ name: '--evil', path: dir }, /name must be/],
    [{ name: '-x', path: dir }, /name must be/],
    [{ name: '.hidden', path: dir }, /name must be/],
    [{ name: 'x', path: dir, repo_id: 'org/name' }, /not both/],
    [{ name: 'x', path: path.join(dir, 'ok.jinja') }, /not a directory/],
    [{ name: 'x', path: '/tmp' }, /config\.json/],
    [{ name: 'x', path: dir, chat_template: '/etc/folio/foliod.conf' }, /chat_template/],
    [{ name: 'x', path: dir, chat_template: '/etc/passwd' }, /chat_template/],
    [{ name: 'x', path: dir, chat_template: 'evil.jinja' }, /chat_template/],
    [{ name: 'x', path: dir, chat_template: '../../../../etc/passwd' }, /chat_template/],
    [{ name: 'x', path: dir, chat_template: 'sub' }, /chat_template/],
  ];
  for (const [body, re] of cases) {
    const r = await req(s, 'POST', '/api/models', { cookie: ck, body });
    assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
    assert.match(r.json.error.message, re, JSON.stringify(body));
  }
  // Accepted: a file inside (relative, or absolute inside), and inline text.
  let r = await req(s, 'POST', '/api/models', { cookie: ck, body: { name: 'rel', path: `${dir}/`, chat_template: 'sub/ok2.jinja', kv_cache_space: 0.25 } });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.path, dir, 'the path is stored realpath\'d');
  r = await req(s, 'POST', '/api/models', { cookie: ck, body: { name: 'abs', path: dir, chat_template: path.join(dir, 'ok.jinja'), kv_cache_space: 0.25 } });
  assert.equal(r.status, 201, r.text);
  r = await req(s, 'POST', '/api/models', { cookie: ck, body: { name: 'inline', path: dir, chat_template: TEMPLATE_TEXT, kv_cache_space: 0.25 } });
  assert.equal(r.status, 201, r.text);
  const inlineId = r.json.id;
  // PATCH is validated on the same path.
  r = await req(s, 'PATCH', '/api/models/rel', { cookie: ck, body: { chat_template: '/etc/passwd' } });
  assert.equal(r.status, 400, r.text);
  r = await req(s, 'PATCH', '/api/models/rel', { cookie: ck, body: { name: '--flag' } });
  assert.equal(r.status, 400, r.text);
  // Inline text reaches the engine as a file foliod wrote.
  await load(s, ck, 'inline');
  const e = await engineOf(s, ck, 'inline');
  const argv = readFileSync(`/proc/${e.pid}/cmdline`).toString().split('\0');
  const tf = argv[argv.indexOf('--chat-template') + 1];
  assert.equal(tf, path.join(s.data, 'templates', `${inlineId}.jinja`));
  assert.equal(readFileSync(tf, 'utf8'), TEMPLATE_TEXT);
  const chat = await req(s, 'POST', '/v1/chat/completions', { body: { model: 'inline', messages: [{ role: 'user', content: STORY.prompt }], max_tokens: 2 } });
  assert.equal(chat.status, 200, chat.text);
  // At spawn the file is checked again: swapped for a symlink out, the engine is refused.
  unlinkSync(path.join(dir, 'ok.jinja'));
  symlinkSync('/etc/passwd', path.join(dir, 'ok.jinja'));
  r = await req(s, 'POST', '/api/models/abs/load', { cookie: ck });
  assert.equal(r.status, 202, r.text);
  const m = await waitState(s, ck, 'abs', 'failed');
  assert.match(m.last_error, /refusing to start: chat_template/);
  await stopFoliod(s);
}, { timeout: 90000 });
