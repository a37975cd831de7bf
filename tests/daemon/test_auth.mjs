// Sessions on /api/, API keys on /v1/, engine secrets, and the static files' traversal guard.
import net from 'node:net';
import { assert, STORY, test } from '../api/lib.mjs';
import {
  addModel, engineOf, FOLIOD, load, login, req, startFoliod, stopFoliod, PASSWORD,
} from './lib.mjs';

// A raw request, so that ".." reaches the server as sent (fetch would normalize it).
function raw(port, text) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.end(text));
    let out = '';
    sock.on('data', (d) => { out += d.toString(); });
    sock.on('end', () => resolve(out));
    sock.on('error', reject);
  });
}

test('foliod auth: /api needs a session; a wrong password fails; logout ends it', async () => {
  const s = await startFoliod();
  for (const p of ['/api/status', '/api/models', '/api/keys', '/api/events']) {
    const r = await req(s, 'GET', p);
    assert.equal(r.status, 401, p);
    assert.equal(r.json.error.type, 'AuthenticationError');
  }
  const bad = await req(s, 'POST', '/api/login', { body: { password: 'wrong' } });
  assert.equal(bad.status, 401);
  assert.equal(bad.headers.get('set-cookie'), null);
  assert.equal((await req(s, 'POST', '/api/login', { body: { password: '' } })).status, 401);
  assert.equal((await req(s, 'POST', '/api/models', { cookie: 'folio_session=00ff', body: {} })).status, 401);
  const ck = await login(s);
  assert.equal((await req(s, 'GET', '/api/status', { cookie: ck })).status, 200);
  assert.equal((await req(s, 'POST', '/api/logout', { cookie: ck })).status, 200);
  assert.equal((await req(s, 'GET', '/api/status', { cookie: ck })).status, 401);
  // The admin token works instead of a session when configured.
  await stopFoliod(s);
  const tok = 'tok-0123456789abcdef0123456789abcdef';
  const t = await startFoliod({ env: { FOLIO_ADMIN_TOKEN: tok } });
  assert.equal((await req(t, 'GET', '/api/status', { headers: { authorization: `Bearer ${tok}` } })).status, 200);
  assert.equal((await req(t, 'GET', '/api/status', { headers: { authorization: `Bearer ${tok.slice(0, -1)}0` } })).status, 401);
  await stopFoliod(t);
});

test('foliod auth: API keys on /v1 (created once, hashed, revoked), and engine ports need their secret', async () => {
  const s = await startFoliod();
  const ck = await login(s);
  await addModel(s, ck, 'stories260K');
  await load(s, ck, 'stories260K');
  const body = { model: 'stories260K', prompt: STORY.prompt, max_tokens: 4, temperature: 0 };
  assert.equal((await req(s, 'POST', '/v1/completions', { body })).status, 200, 'no key exists yet: open');
  const k = await req(s, 'POST', '/api/keys', { cookie: ck, body: { name: 'ci' } });
  assert.equal(k.status, 201, k.text);
  assert.match(k.json.key, /^folio-[0-9A-Za-z]{40}$/);
  const key = k.json.key;
  // The plaintext is never shown again, and the database holds only a hash.
  const list = await req(s, 'GET', '/api/keys', { cookie: ck });
  assert.equal(list.json.keys.length, 1);
  assert.ok(!list.text.includes(key));
  assert.equal(list.json.keys[0].last_used, null);
  const { readFileSync } = await import('node:fs');
  assert.ok(!readFileSync(`${s.data}/folio.db`).includes(Buffer.from(key)), 'plaintext key in the database');
  let r = await req(s, 'POST', '/v1/completions', { body });
  assert.equal(r.status, 401);
  assert.equal(r.json.error.type, 'AuthenticationError');
  r = await req(s, 'POST', '/v1/completions', { body, headers: { authorization: `Bearer ${key.slice(0, -1)}${key.endsWith('x') ? 'y' : 'x'}` } });
  assert.equal(r.status, 401);
  r = await req(s, 'GET', '/v1/models', { headers: { authorization: 'Bearer ' } });
  assert.equal(r.status, 401);
  r = await req(s, 'POST', '/v1/completions', { body, headers: { authorization: `Bearer ${key}` } });
  assert.equal(r.status, 200, r.text);
  const used = await req(s, 'GET', '/api/keys', { cookie: ck });
  assert.ok(used.json.keys[0].last_used > 0);
  // The engine itself, on loopback, refuses a request without its secret.
  const e = await engineOf(s, ck, 'stories260K');
  const direct = await fetch(`http://127.0.0.1:${e.port}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  assert.equal(direct.status, 401);
  const wrong = await fetch(`http://127.0.0.1:${e.port}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify(body),
  });
  assert.equal(wrong.status, 401, 'a user key is not the engine secret');
  // Revoked: refused at once.
  assert.equal((await req(s, 'DELETE', `/api/keys/${k.json.id}`, { cookie: ck })).status, 200);
  r = await req(s, 'POST', '/v1/completions', { body, headers: { authorization: `Bearer ${key}` } });
  assert.equal(r.status, 200, 'no key left: open again');
  const k2 = await req(s, 'POST', '/api/keys', { cookie: ck, body: { name: 'second' } });
  r = await req(s, 'POST', '/v1/completions', { body, headers: { authorization: `Bearer ${key}` } });
  assert.equal(r.status, 401, 'the revoked key stays refused');
  r = await req(s, 'POST', '/v1/completions', { body, headers: { authorization: `Bearer ${k2.json.key}` } });
  assert.equal(r.status, 200);
  // The engine secret appears in no log and no API response.
  const st = await req(s, 'GET', '/api/status', { cookie: ck });
  const { execFileSync } = await import('node:child_process');
  const env = readFileSync(`/proc/${e.pid}/environ`).toString().split('\0').find((x) => x.startsWith('FOLIO_API_KEY='));
  const secret = env.split('=')[1];
  assert.equal(secret.length, 64);
  assert.ok(!st.text.includes(secret) && !s.log.includes(secret));
  assert.ok(!execFileSync('ps', ['-o', 'args=', '-p', String(e.pid)]).toString().includes(secret), 'secret on the command line');
  await stopFoliod(s);
});

test('foliod: /admin/ static files: index, caching headers, traversal blocked', async () => {
  const s = await startFoliod();
  const r = await req(s, 'GET', '/admin/');
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /text\/html/);
  assert.equal(r.headers.get('cache-control'), 'no-cache');
  assert.ok(r.headers.get('etag'));
  const again = await req(s, 'GET', '/admin/', { headers: { 'if-none-match': r.headers.get('etag') } });
  assert.equal(again.status, 304);
  assert.equal((await req(s, 'GET', '/admin')).status, 301);
  for (const p of ['/admin/../daemon/main.c', '/admin/%2e%2e/daemon/main.c', '/admin/..%2fdb/schema.sql',
    '/admin/../../../../etc/passwd', '/admin/./../Makefile', '/admin/nope.js']) {
    const out = await raw(s.port, `GET ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    assert.match(out, /^HTTP\/1\.1 (404|400)/, `${p}: ${out.slice(0, 200)}`);
    assert.ok(!out.includes('#include') && !out.includes('root:'), `${p} leaked a file`);
  }
  await stopFoliod(s);
});

test('foliod: the admin password from FOLIO_ADMIN_PASSWORD, or generated and printed once', async () => {
  const s = await startFoliod({ env: { FOLIO_ADMIN_PASSWORD: '' } });
  const m = /the admin password is (\S+)/.exec(s.log);
  assert.ok(m, s.log);
  const r = await req(s, 'POST', '/api/login', { body: { password: m[1] } });
  assert.equal(r.status, 200);
  assert.equal((await req(s, 'POST', '/api/login', { body: { password: PASSWORD } })).status, 401);
  await stopFoliod(s);
  // A restart keeps the stored password and prints nothing.
  const t = await startFoliod({ data: s.data, env: { FOLIO_ADMIN_PASSWORD: '' } });
  assert.ok(!/admin password/.test(t.log));
  assert.equal((await req(t, 'POST', '/api/login', { body: { password: m[1] } })).status, 200);
  await stopFoliod(t);
});

test('foliod --reset-admin-password: a forgotten password is replaced; the registry stays', async () => {
  const { spawnSync } = await import('node:child_process');
  const s = await startFoliod();
  const cookie = await login(s);
  const key = await req(s, 'POST', '/api/keys', { cookie, body: { name: 'kept' } });
  assert.equal(key.status, 201, key.text);
  await stopFoliod(s);
  const reset = (env) => spawnSync(FOLIOD, ['--data-dir', s.data, '--config', '/dev/null', '--reset-admin-password'], {
    env: { ...process.env, FOLIO_API_KEY: '', ...env }, encoding: 'utf8', timeout: 20000,
  });
  // To a chosen password, then to a random one printed once.
  let r = reset({ FOLIO_ADMIN_PASSWORD: 'new pass 1 (long enough)' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /admin password is reset to FOLIO_ADMIN_PASSWORD/);
  assert.ok(!r.stderr.includes('new pass 1 (long enough)'), 'a chosen password is not echoed');
  let t = await startFoliod({ data: s.data, env: { FOLIO_ADMIN_PASSWORD: '' } });
  assert.equal((await req(t, 'POST', '/api/login', { body: { password: PASSWORD } })).status, 401);
  assert.equal((await req(t, 'POST', '/api/login', { body: { password: 'new pass 1 (long enough)' } })).status, 200);
  await stopFoliod(t);
  r = reset({ FOLIO_ADMIN_PASSWORD: '' });
  const m = /the admin password is (\S+) /.exec(r.stderr);
  assert.ok(r.status === 0 && m, r.stderr);
  t = await startFoliod({ data: s.data, env: { FOLIO_ADMIN_PASSWORD: '' } });
  assert.equal((await req(t, 'POST', '/api/login', { body: { password: 'new pass 1 (long enough)' } })).status, 401);
  const c2 = await login(t, m[1]);
  const keys = await req(t, 'GET', '/api/keys', { cookie: c2 });
  assert.ok(keys.json.keys.some((k) => k.name === 'kept'), keys.text);
  await stopFoliod(t);
  // --version needs no data dir.
  const v = spawnSync(FOLIOD, ['--version'], { encoding: 'utf8' });
  assert.match(v.stdout, /^foliod \d+\.\d+\.\d+/);
});
