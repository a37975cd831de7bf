// Secrets and credentials: what engines inherit, secrets on the command line, short tokens and
// passwords, online guessing (back-off with Retry-After), a login flood against the audit log,
// sessions ended by --reset-admin-password, and /metrics read by many clients at once.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  STORY, assert, freePort, onCleanup, parseProm, sleep, test,
} from '../api/lib.mjs';
import { FOLIOD, startFoliod, stopFoliod } from '../daemon/lib.mjs';
import {
  ADMIN_TOKEN, addAndLoad, addr, BEARER, clogin, engine, foliod, hreq, PASSWORD, sameOrigin,
} from './lib.mjs';

const HF_SECRET = 'hf_abuse_secret_token_0123456789abcdef';

function tmp() {
  const d = mkdtempSync(path.join(os.tmpdir(), 'folio-abuse-'));
  onCleanup(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

// Runs foliod expecting it to refuse to start: a non-zero exit within 15 s (a foliod that
// starts serving is killed at the timeout, and that is a failure).
async function refusesToStart(args, env = {}) {
  const data = tmp();
  const port = await freePort();
  const r = spawnSync(FOLIOD, ['--host', '127.0.0.1', '--port', String(port), '--data-dir', data, '--config', '/dev/null', ...args], {
    env: { ...process.env, FOLIO_ADMIN_PASSWORD: PASSWORD, FOLIO_API_KEY: '', FOLIO_ADMIN_TOKEN: '', ...env },
    encoding: 'utf8', timeout: 15000,
  });
  const what = `foliod ${args.join(' ')} ${JSON.stringify(env)}`;
  assert.ok(r.signal === null, `${what} started and served (killed by the test's timeout):\n${(r.stderr || '').slice(-1000)}`);
  assert.notEqual(r.status, 0, `${what} exited 0:\n${r.stderr}`);
  assert.ok((r.stderr || '').trim().length > 0, `${what}: no message`);
  return r.stderr;
}

test('abuse: engines inherit no admin password, admin token or HF token', async () => {
  const s = await foliod({ env: { HF_TOKEN: HF_SECRET } });
  await addAndLoad(s, 'stories260K');
  const e = await engine(s, 'stories260K');
  const env = readFileSync(`/proc/${e.pid}/environ`).toString().split('\0').filter(Boolean);
  const names = env.map((x) => x.split('=')[0]);
  for (const n of ['FOLIO_ADMIN_PASSWORD', 'FOLIO_ADMIN_TOKEN', 'HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN']) {
    assert.ok(!names.includes(n), `the engine's environment has ${n}`);
  }
  const all = env.join('\n');
  for (const v of [PASSWORD, ADMIN_TOKEN, HF_SECRET]) assert.ok(!all.includes(v), 'a secret value is in the engine\'s environment');
  // The engine's own argv carries no secret either.
  const argv = readFileSync(`/proc/${e.pid}/cmdline`).toString();
  for (const v of [PASSWORD, ADMIN_TOKEN, HF_SECRET]) assert.ok(!argv.includes(v));
  await stopFoliod(s);
}, { timeout: 60000 });

test('abuse: secrets as flags, short tokens and keys, and short passwords are refused at start', async () => {
  const long = 'k'.repeat(40);
  await refusesToStart(['--api-key', long]);
  await refusesToStart(['--admin-token', long]);
  await refusesToStart(['--api-key', 'x']);
  await refusesToStart([], { FOLIO_ADMIN_TOKEN: 'short-tok1' }); // 10 characters
  await refusesToStart([], { FOLIO_API_KEY: 'short-key1' });
  await refusesToStart([], { FOLIO_ADMIN_TOKEN: 'x'.repeat(31) });
  const dir = tmp();
  writeFileSync(path.join(dir, 'short'), 'short-key1\n', { mode: 0o600 });
  await refusesToStart(['--api-key-file', path.join(dir, 'short')]);
  await refusesToStart(['--admin-token-file', path.join(dir, 'short')]);
  await refusesToStart([], { FOLIO_ADMIN_PASSWORD: 'elevenchars' });
  // From files (a trailing newline is not part of it) and the environment, long ones work.
  const key = `sk-${'a1'.repeat(20)}`;
  const tok = `adm-${'b2'.repeat(20)}`;
  writeFileSync(path.join(dir, 'key'), `${key}\n`, { mode: 0o600 });
  writeFileSync(path.join(dir, 'tok'), `${tok}\n`, { mode: 0o600 });
  const s = await startFoliod({ args: ['--api-key-file', path.join(dir, 'key'), '--admin-token-file', path.join(dir, 'tok')] });
  assert.equal((await hreq(s, 'GET', '/v1/models')).status, 401);
  assert.equal((await hreq(s, 'GET', '/v1/models', { headers: { authorization: `Bearer ${key}` } })).status, 200);
  assert.equal((await hreq(s, 'GET', '/api/status', { headers: { authorization: `Bearer ${tok}` } })).status, 200);
  const cmd = readFileSync(`/proc/${s.proc.pid}/cmdline`).toString();
  assert.ok(!cmd.includes(key) && !cmd.includes(tok));
  await stopFoliod(s);
  // A generated admin password is printed once and kept in DATA/admin-password, 0600.
  const g = await startFoliod({ env: { FOLIO_ADMIN_PASSWORD: '' } });
  const f = path.join(g.data, 'admin-password');
  const st = statSync(f);
  assert.equal(st.mode & 0o777, 0o600, `admin-password mode ${(st.mode & 0o777).toString(8)}`);
  const pw = readFileSync(f, 'utf8').trim();
  assert.ok(pw.length >= 12, `generated password of ${pw.length} characters`);
  await clogin(g, pw);
  await stopFoliod(g);
}, { timeout: 240000 });

const retryAfter = (r) => Number(r.headers['retry-after']);

test('abuse: 20 wrong logins get 429 + Retry-After; the audit log keeps <= 2 aggregated login_failed events', async () => {
  const s = await foliod();
  await addAndLoad(s, 'stories260K', {}, { load: false });
  const wrong = (localAddress) => hreq(s, 'POST', '/api/login', { body: { password: 'wrong password!' }, localAddress });
  const codes = [];
  let last;
  for (let i = 0; i < 20; i++) {
    last = await wrong(addr(1));
    codes.push(last.status);
  }
  // (That exactly the first 5 are checked is asserted at the end, so the rest runs either way.)
  assert.ok(codes.slice(0, 5).every((c) => c === 401), codes.join(','));
  assert.ok(codes.slice(7).every((c) => c === 429), `after 5 failures: ${codes.join(',')}`);
  const ra = retryAfter(last);
  assert.ok(Number.isInteger(ra) && ra >= 1 && ra <= 300, `Retry-After: ${last.headers['retry-after']}`);
  // During the back-off even the right password is not checked; another address is not held up.
  const held = await hreq(s, 'POST', '/api/login', { body: { password: PASSWORD }, localAddress: addr(1) });
  assert.equal(held.status, 429, held.text);
  await clogin(s, PASSWORD, addr(2));
  // A flood from many addresses, concurrently, must not flush the audit log.
  await Promise.all(Array.from({ length: 10 }, (_, k) => (async () => {
    for (let i = 0; i < 8; i++) await wrong(addr(20 + k));
  })()));
  // (Read from an address not in back-off: 127.0.0.1 is, for everything authenticated.)
  const ev = await hreq(s, 'GET', '/api/events?limit=1000', { headers: BEARER, localAddress: addr(10) });
  assert.equal(ev.status, 200, ev.text);
  const failed = ev.json.events.filter((e) => e.kind === 'admin.login_failed');
  assert.ok(failed.length >= 1 && failed.length <= 2, `${failed.length} admin.login_failed events: ${JSON.stringify(failed).slice(0, 1000)}`);
  assert.ok(failed.some((e) => e.message.includes('127.0.0.1')), JSON.stringify(failed));
  assert.ok(ev.json.events.some((e) => e.kind === 'model.added'), 'the login flood pushed older events out');
  // After Retry-After, the right password works and resets the count.
  let ok = null;
  for (let i = 0; i < 4 && !ok; i++) {
    await sleep((Math.min(ra * 2 ** i, 10) + 0.3) * 1000);
    const r = await hreq(s, 'POST', '/api/login', { body: { password: PASSWORD }, localAddress: addr(1) });
    if (r.status === 200) ok = r;
    else assert.equal(r.status, 429, r.text);
  }
  assert.ok(ok, 'the right password never got through after Retry-After');
  assert.equal((await wrong(addr(1))).status, 401, 'a success did not reset the count');
  await stopFoliod(s);
  assert.ok(codes.slice(5).every((c) => c === 429), `the 6th attempt after 5 failures was checked: ${codes.join(',')}`);
}, { timeout: 120000 });

test('abuse: wrong admin tokens and wrong API keys back off (429 + Retry-After) per address', async () => {
  const s = await foliod();
  const k = await hreq(s, 'POST', '/api/keys', { headers: BEARER, body: { name: 'k' } });
  assert.equal(k.status, 201, k.text);
  const key = k.json.key;
  const codes = [];
  let r;
  for (let i = 0; i < 8; i++) {
    r = await hreq(s, 'GET', '/api/status', { headers: { authorization: `Bearer wrong-token-${'x'.repeat(32)}` }, localAddress: addr(6) });
    codes.push(r.status);
  }
  const tokenCodes = codes.join(',');
  assert.ok(codes.slice(0, 5).every((c) => c === 401) && codes.slice(7).every((c) => c === 429), `admin tokens: ${tokenCodes}`);
  assert.ok(retryAfter(r) >= 1, `Retry-After: ${r.headers['retry-after']}`);
  r = await hreq(s, 'GET', '/api/status', { headers: BEARER, localAddress: addr(6) });
  assert.equal(r.status, 429, 'the right token was checked during the back-off');
  assert.equal((await hreq(s, 'GET', '/api/status', { headers: BEARER, localAddress: addr(8) })).status, 200);
  codes.length = 0;
  for (let i = 0; i < 8; i++) {
    r = await hreq(s, 'GET', '/v1/models', { headers: { authorization: `Bearer folio-${'Z'.repeat(40)}` }, localAddress: addr(7) });
    codes.push(r.status);
  }
  const keyCodes = codes.join(',');
  assert.ok(codes.slice(0, 5).every((c) => c === 401) && codes.slice(7).every((c) => c === 429), `API keys: ${keyCodes}`);
  assert.ok(retryAfter(r) >= 1);
  assert.equal((await hreq(s, 'GET', '/v1/models', { headers: { authorization: `Bearer ${key}` }, localAddress: addr(9) })).status, 200);
  await stopFoliod(s);
  // After 5 failures the next attempt is not checked.
  assert.match(tokenCodes, /^(401,){5}429/, `admin tokens: the 6th attempt after 5 failures was checked: ${tokenCodes}`);
  assert.match(keyCodes, /^(401,){5}429/, `API keys: the 6th attempt after 5 failures was checked: ${keyCodes}`);
}, { timeout: 60000 });

test('abuse: foliod --reset-admin-password on a running foliod ends its sessions', async () => {
  const s = await foliod();
  const ck = await clogin(s);
  assert.equal((await hreq(s, 'GET', '/api/status', { headers: { cookie: ck } })).status, 200);
  const r = spawnSync(FOLIOD, ['--data-dir', s.data, '--config', '/dev/null', '--reset-admin-password'], {
    env: { ...process.env, FOLIO_API_KEY: '', FOLIO_ADMIN_TOKEN: '', FOLIO_ADMIN_PASSWORD: 'a brand new password' },
    encoding: 'utf8', timeout: 20000,
  });
  assert.equal(r.status, 0, r.stderr);
  let st = 200;
  for (let i = 0; i < 50 && st === 200; i++) {
    st = (await hreq(s, 'GET', '/api/status', { headers: { cookie: ck } })).status;
    if (st === 200) await sleep(100);
  }
  assert.equal(st, 401, 'the old session still works after --reset-admin-password');
  const p = await hreq(s, 'POST', '/api/keys', { headers: { cookie: ck, origin: sameOrigin(s) }, body: { name: 'x' } });
  assert.equal(p.status, 401);
  assert.equal((await hreq(s, 'POST', '/api/login', { body: { password: PASSWORD }, localAddress: addr(2) })).status, 401);
  await clogin(s, 'a brand new password', addr(3));
  await stopFoliod(s);
}, { timeout: 60000 });

test('abuse: /metrics from 50 concurrent clients, two models loaded and busy, is always well-formed', async () => {
  const s = await foliod();
  await Promise.all([addAndLoad(s, 'stories260K'), addAndLoad(s, 'aidreams260K')]);
  let stop = false;
  const load = Array.from({ length: 4 }, (_, i) => (async () => {
    while (!stop) {
      await hreq(s, 'POST', '/v1/completions', {
        body: { model: i % 2 ? 'aidreams260K' : 'stories260K', prompt: STORY.prompt, max_tokens: 32 },
      }).catch(() => {});
    }
  })());
  let bad = 0;
  const problems = [];
  for (let round = 0; round < 6; round++) {
    const rs = await Promise.all(Array.from({ length: 50 }, (_, i) => hreq(s, 'GET', '/metrics', { localAddress: addr(2 + (i % 8)) })));
    for (const r of rs) {
      try {
        assert.equal(r.status, 200);
        assert.ok(r.text.endsWith('\n'), 'no final newline');
        const samples = parseProm(r.text);
        for (const m of ['stories260K', 'aidreams260K']) {
          assert.ok(samples.some((x) => x.name === 'folio:num_requests_running' && x.labels.model === m), `no ${m} metrics`);
        }
        for (const x of samples.filter((y) => y.name.startsWith('folio:'))) {
          assert.ok(['stories260K', 'aidreams260K'].includes(x.labels.model), `label model=${x.labels.model}`);
        }
        const types = r.text.split('\n').filter((l) => l.startsWith('# TYPE '));
        assert.equal(new Set(types).size, types.length, 'a # TYPE line repeated');
        for (const l of r.text.split('\n').filter((y) => y.startsWith('#'))) assert.match(l, /^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* \S/);
      } catch (e) {
        bad++;
        if (problems.length < 3) problems.push(e.message);
      }
    }
  }
  stop = true;
  await Promise.all(load);
  assert.equal(bad, 0, `${bad} of 300 /metrics answers malformed: ${problems.join(' | ')}`);
  await stopFoliod(s);
}, { timeout: 120000 });
