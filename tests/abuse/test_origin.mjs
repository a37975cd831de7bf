// Browser-borne attacks: a page on another origin posting with the console's cookie (CSRF,
// incl. the "simple request" text/plain form that needs no CORS preflight), and DNS rebinding
// (a name the attacker controls resolving to 127.0.0.1: the Host header is not ours).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  STORY, assert, freePort, onCleanup, sleep, spawnServer, test,
} from '../api/lib.mjs';
import { FOLIOD, stopFoliod } from '../daemon/lib.mjs';
import {
  addAndLoad, addr, BEARER, clogin, foliod, hreq, modelPath, PASSWORD, sameOrigin,
} from './lib.mjs';

const models = async (s) => {
  const r = await hreq(s, 'GET', '/api/models', { headers: BEARER });
  assert.equal(r.status, 200, r.text);
  return r.json.models.map((m) => m.name);
};

test('abuse: cross-origin cookie POSTs are refused (403/415), nothing registered; same-origin and bearer work', async () => {
  const s = await foliod();
  const ck = await clogin(s);
  const other = `http://127.0.0.1:${await freePort()}`;
  const reg = (name) => JSON.stringify({ name, path: modelPath('stories260K'), kv_cache_space: 0.25 });
  // The form a cross-site page can send without a preflight: text/plain, with its own Origin.
  let r = await hreq(s, 'POST', '/api/models', { body: reg('evil1'), headers: { cookie: ck, origin: other, 'content-type': 'text/plain' } });
  assert.ok([403, 415].includes(r.status), `text/plain cross-origin: ${r.status} ${r.text}`);
  r = await hreq(s, 'POST', '/api/models', { body: reg('evil2'), headers: { cookie: ck, origin: other } });
  assert.equal(r.status, 403, `JSON cross-origin: ${r.text}`);
  r = await hreq(s, 'POST', '/api/models', { body: reg('evil3'), headers: { cookie: ck, origin: 'null' } });
  assert.equal(r.status, 403, `Origin: null: ${r.text}`);
  r = await hreq(s, 'POST', '/api/models', { body: reg('evil4'), headers: { cookie: ck, origin: other, 'sec-fetch-site': 'cross-site' } });
  assert.equal(r.status, 403, r.text);
  // No Origin and no Sec-Fetch-Site: not provably same-origin.
  r = await hreq(s, 'POST', '/api/models', { body: reg('evil5'), headers: { cookie: ck } });
  assert.equal(r.status, 403, `cookie without Origin: ${r.text}`);
  // Same port, other host; same host, other port.
  r = await hreq(s, 'POST', '/api/models', { body: reg('evil6'), headers: { cookie: ck, origin: `http://localhost.evil.example:${s.port}` } });
  assert.equal(r.status, 403, r.text);
  // Right Origin, wrong Content-Type: 415.
  r = await hreq(s, 'POST', '/api/models', { body: reg('evil7'), headers: { cookie: ck, origin: sameOrigin(s), 'content-type': 'text/plain' } });
  assert.equal(r.status, 415, r.text);
  r = await hreq(s, 'POST', '/api/models', { body: reg('evil8'), headers: { cookie: ck, origin: sameOrigin(s), 'content-type': 'application/x-www-form-urlencoded' } });
  assert.equal(r.status, 415, r.text);
  // Other state-changing methods and a cross-origin read.
  r = await hreq(s, 'POST', '/api/keys', { body: { name: 'stolen' }, headers: { cookie: ck, origin: other } });
  assert.equal(r.status, 403, r.text);
  r = await hreq(s, 'POST', '/api/logout', { headers: { cookie: ck, origin: other } });
  assert.equal(r.status, 403, r.text);
  r = await hreq(s, 'GET', '/api/status', { headers: { cookie: ck, origin: other } });
  assert.equal(r.status, 403, `cross-origin GET: ${r.text}`);
  r = await hreq(s, 'GET', '/api/keys', { headers: { cookie: ck, origin: other } });
  assert.equal(r.status, 403, r.text);
  assert.deepEqual(await models(s), [], 'a refused request registered a model');
  // The console itself: its own Origin, or Sec-Fetch-Site: same-origin.
  r = await hreq(s, 'POST', '/api/models', { body: reg('good1'), headers: { cookie: ck, origin: sameOrigin(s) } });
  assert.equal(r.status, 201, r.text);
  r = await hreq(s, 'POST', '/api/models', { body: reg('good2'), headers: { cookie: ck, origin: `http://localhost:${s.port}`, host: `localhost:${s.port}` } });
  assert.equal(r.status, 201, `Origin matching a localhost Host: ${r.text}`);
  r = await hreq(s, 'POST', '/api/models', { body: reg('good3'), headers: { cookie: ck, 'sec-fetch-site': 'same-origin' } });
  assert.equal(r.status, 201, `Sec-Fetch-Site: same-origin: ${r.text}`);
  r = await hreq(s, 'GET', '/api/status', { headers: { cookie: ck } });
  assert.equal(r.status, 200, `a GET without Origin: ${r.text}`);
  // The admin token needs no Origin (a script, not a browser); its bodies are JSON too.
  r = await hreq(s, 'POST', '/api/models', { body: reg('good4'), headers: BEARER });
  assert.equal(r.status, 201, r.text);
  r = await hreq(s, 'POST', '/api/models', { body: reg('bad9'), headers: { ...BEARER, 'content-type': 'text/plain' } });
  assert.equal(r.status, 415, r.text);
  assert.deepEqual((await models(s)).sort(), ['good1', 'good2', 'good3', 'good4']);
  r = await hreq(s, 'DELETE', '/api/models/good4', { headers: { cookie: ck, origin: other } });
  assert.equal(r.status, 403, r.text);
  r = await hreq(s, 'DELETE', '/api/models/good4', { headers: { cookie: ck, origin: sameOrigin(s) } });
  assert.equal(r.status, 200, r.text);
  await stopFoliod(s);
}, { timeout: 60000 });

test('abuse: a /v1 POST authorized only by the console cookie follows the Origin rule', async () => {
  const s = await foliod();
  await addAndLoad(s, 'stories260K');
  // With an API key in the registry, /v1 needs a key or the console's session.
  const k = await hreq(s, 'POST', '/api/keys', { headers: BEARER, body: { name: 'k' } });
  assert.equal(k.status, 201, k.text);
  const ck = await clogin(s);
  const other = `http://127.0.0.1:${await freePort()}`;
  const body = { model: 'stories260K', prompt: STORY.prompt, max_tokens: 40, temperature: 0 };
  let r = await hreq(s, 'POST', '/v1/completions', { body, headers: { cookie: ck, origin: other } });
  assert.equal(r.status, 403, `cookie, cross-origin: ${r.text}`);
  r = await hreq(s, 'POST', '/v1/completions', { body: JSON.stringify(body), headers: { cookie: ck, origin: other, 'content-type': 'text/plain' } });
  assert.ok([403, 415].includes(r.status), `cookie, cross-origin, text/plain: ${r.status} ${r.text}`);
  r = await hreq(s, 'POST', '/v1/completions', { body, headers: { cookie: ck } });
  assert.equal(r.status, 403, `cookie, no Origin: ${r.text}`);
  r = await hreq(s, 'POST', '/v1/completions', { body, headers: { cookie: ck, origin: sameOrigin(s) } });
  assert.equal(r.status, 200, `cookie, same origin: ${r.text}`);
  assert.equal(r.json.choices[0].text, STORY.text);
  // An API key needs no Origin (an SDK is not a browser).
  r = await hreq(s, 'POST', '/v1/completions', { body, headers: { authorization: `Bearer ${k.json.key}` } });
  assert.equal(r.status, 200, r.text);
  r = await hreq(s, 'POST', '/v1/completions', { body });
  assert.equal(r.status, 401, r.text);
  await stopFoliod(s);
}, { timeout: 60000 });

test('abuse: DNS rebinding: a Host that is not ours gets 421; localhost, 127.0.0.1, [::1] and --server-name pass', async () => {
  const s = await foliod();
  const host = (h, p = '/v1/models', extra = {}) => hreq(s, 'GET', p, { headers: { host: h, ...extra } });
  for (const h of ['evil.example', `evil.example:${s.port}`, 'localhost.evil.example', '127.0.0.1.nip.io', `folio.lan:${s.port}`]) {
    const r = await host(h);
    assert.equal(r.status, 421, `Host: ${h}: ${r.status} ${r.text}`);
    const a = await host(h, '/api/status', BEARER);
    assert.equal(a.status, 421, `Host: ${h} on /api/status: ${a.status} ${a.text}`);
    const l = await hreq(s, 'POST', '/api/login', { headers: { host: h }, body: { password: 'x' } });
    assert.equal(l.status, 421, `Host: ${h} on /api/login: ${l.status}`);
  }
  for (const h of [`localhost:${s.port}`, 'localhost', `127.0.0.1:${s.port}`, '127.0.0.1', `[::1]:${s.port}`, '[::1]']) {
    const r = await host(h);
    assert.equal(r.status, 200, `Host: ${h}: ${r.status} ${r.text}`);
  }
  await stopFoliod(s);
  const t = await foliod({ args: ['--server-name', 'folio.lan'] });
  for (const h of ['folio.lan', `folio.lan:${t.port}`, 'FOLIO.LAN:8000', `localhost:${t.port}`]) {
    const r = await hreq(t, 'GET', '/v1/models', { headers: { host: h } });
    assert.equal(r.status, 200, `--server-name, Host: ${h}: ${r.status} ${r.text}`);
  }
  for (const h of ['evil.example', 'folio.lan.evil.example', 'xfolio.lan', 'gpu1.internal']) {
    const r = await hreq(t, 'GET', '/v1/models', { headers: { host: h } });
    assert.equal(r.status, 421, `--server-name, Host: ${h}: ${r.status} ${r.text}`);
  }
  await stopFoliod(t);
  // Several names: comma-separated (foliod --help), as a flag or a conf key.
  const u = await foliod({ args: ['--server-name', 'folio.lan,gpu1.internal'] });
  for (const [h, want] of [['folio.lan', 200], ['gpu1.internal:8000', 200], ['evil.example', 421]]) {
    const r = await hreq(u, 'GET', '/v1/models', { headers: { host: h } });
    assert.equal(r.status, want, `--server-name folio.lan,gpu1.internal, Host: ${h}: ${r.status} ${r.text}`);
  }
  await stopFoliod(u);
}, { timeout: 60000 });

// The same settings as conf keys (`--config FILE`, flag names with `_`).
test('abuse: server_name, max_connections_per_client and header_timeout work from the config file', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'folio-abuse-conf-'));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const conf = path.join(dir, 'foliod.conf');
  writeFileSync(conf, '# abuse suite\nserver_name = folio.lan\nmax_connections_per_client = 4\nheader_timeout = 2\n');
  const port = await freePort();
  const s = spawnServer(FOLIOD, ['--host', '127.0.0.1', '--port', String(port), '--data-dir', path.join(dir, 'data'), '--config', conf],
    { FOLIO_ADMIN_PASSWORD: PASSWORD, FOLIO_API_KEY: '', FOLIO_ADMIN_TOKEN: '' });
  Object.assign(s, { port, url: `http://127.0.0.1:${port}` });
  onCleanup(async () => {
    if (s.alive) {
      s.proc.kill('SIGKILL');
      await s.exited;
    }
  });
  const deadline = Date.now() + 15000;
  for (;;) {
    assert.ok(s.alive, `foliod exited:\n${s.log}`);
    const r = await hreq(s, 'GET', '/health', { timeout: 1000 }).catch(() => null);
    if (r?.status === 200) break;
    assert.ok(Date.now() < deadline, `foliod did not answer:\n${s.log}`);
    await sleep(50);
  }
  assert.equal((await hreq(s, 'GET', '/v1/models', { headers: { host: 'folio.lan' } })).status, 200);
  assert.equal((await hreq(s, 'GET', '/v1/models', { headers: { host: 'evil.example' } })).status, 421);
  // 10 idle connections from one address: 6 closed at once, the 4 others after ~2 s.
  const socks = [];
  for (let i = 0; i < 10; i++) {
    const c = { closedAt: null };
    c.sock = net.connect({ host: '127.0.0.1', port, localAddress: addr(3) });
    await new Promise((r) => c.sock.on('connect', r));
    c.sock.write('GET /health HT');
    c.sock.on('data', () => {});
    c.sock.on('close', () => { c.closedAt = Date.now(); });
    c.sock.on('error', () => {});
    socks.push(c);
  }
  const t0 = Date.now();
  await sleep(800);
  const early = socks.filter((c) => c.closedAt !== null).length;
  while (Date.now() - t0 < 8000 && socks.some((c) => c.closedAt === null)) await sleep(100);
  const open = socks.filter((c) => c.closedAt === null).length;
  for (const c of socks) c.sock.destroy();
  assert.ok(early >= 6 && early <= 7, `max_connections_per_client = 4: ${early} of 10 closed at once`);
  assert.equal(open, 0, `header_timeout = 2: ${open} idle connections still open after 8 s`);
  await stopFoliod(s);
}, { timeout: 60000 });
