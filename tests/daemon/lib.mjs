// lib.mjs: foliod on loopback for the daemon suite: start (a fresh data dir, a free port, the
// admin password from the environment), stop (SIGTERM; exit 0), kill -9, log in, the admin
// API, polling for a model's state, and an openai SDK client through foliod. The runner,
// assertions and HTTP helpers come from the API suite (tests/api/lib.mjs).
import { mkdtempSync, rmSync } from 'node:fs';
import nodeHttp from 'node:http';
import os from 'node:os';
import path from 'node:path';
import {
  assert, ENGINE, freePort, http, MODELS, onCleanup, OpenAI, sleep, SLOW, spawnServer, withTimeout,
} from '../api/lib.mjs';

export const FOLIOD = path.join(path.dirname(ENGINE), 'foliod');
export const PASSWORD = 'correct horse battery staple';
export const here = path.dirname(new URL(import.meta.url).pathname);
export const root = path.resolve(here, '../..');

export function dataDir() {
  const d = mkdtempSync(path.join(os.tmpdir(), 'foliod-test-'));
  onCleanup(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

// Starts foliod; resolves once /health answers. opts: data (dir), args, env, port. A port
// taken between freePort() and foliod's bind (other suites run beside this one) is retried.
export async function startFoliod({ data, args = [], env = {}, port } = {}) {
  data = data || dataDir();
  let s;
  for (let attempt = 0; ; attempt++) {
    const p = port || (await freePort());
    const argv = ['--host', '127.0.0.1', '--port', String(p), '--data-dir', data, '--config', '/dev/null', ...args];
    s = spawnServer(FOLIOD, argv, { FOLIO_ADMIN_PASSWORD: PASSWORD, FOLIO_API_KEY: '', ...env });
    Object.assign(s, { port: p, url: `http://127.0.0.1:${p}`, data });
    const deadline = Date.now() + 15000 * SLOW;
    let up = false;
    while (!up) {
      if (!s.alive) break;
      try {
        const r = await fetch(`${s.url}/health`, { signal: AbortSignal.timeout(1000) });
        up = r.status === 200 && /"status":"ok"/.test(await r.text());
      } catch {
        /* not yet */
      }
      if (!up && Date.now() > deadline) throw new Error(`foliod did not answer /health:\n${s.log}`);
      if (!up) await sleep(25);
    }
    if (up) break;
    if (!port && /cannot listen/.test(s.log) && attempt < 3) continue;
    throw new Error(`foliod exited (code ${s.code}) before answering:\n${s.log}`);
  }
  onCleanup(async () => {
    if (s.alive) {
      s.proc.kill('SIGKILL');
      await s.exited;
    }
  });
  return s;
}

// SIGTERM: foliod stops its engines (drain) and exits 0.
export async function stopFoliod(s, ms = 40000 * SLOW) {
  if (s.alive) s.proc.kill('SIGTERM');
  await withTimeout(s.exited, ms, 'foliod exit after SIGTERM');
  assert.equal(s.signal, null, `foliod exited on signal ${s.signal}\n${s.log.slice(-3000)}`);
  assert.equal(s.code, 0, `foliod exit code ${s.code}\n${s.log.slice(-3000)}`);
}

// HTTP to foliod: the API suite's http() with a session cookie. A browser sends Origin with
// the cookie on every state-changing request, and foliod requires it there (CSRF): so do we,
// unless the caller sets its own (origin: null sends none).
export function req(s, method, p, { cookie, headers = {}, timeout = 60000 * SLOW, origin, ...rest } = {}) {
  const h = { ...headers };
  if (cookie) h.cookie = cookie;
  const o = origin === undefined ? (cookie ? s.url : undefined) : origin;
  if (o && !Object.keys(h).some((k) => k.toLowerCase() === 'origin')) h.origin = o;
  return http(s, method, p, { ...rest, timeout, headers: h });
}

// Logs in; returns the session cookie ("folio_session=...").
export async function login(s, password = PASSWORD) {
  const r = await req(s, 'POST', '/api/login', { body: { password } });
  assert.equal(r.status, 200, r.text);
  const sc = r.headers.get('set-cookie');
  assert.ok(sc && /HttpOnly/i.test(sc) && /SameSite=Strict/i.test(sc), `cookie flags: ${sc}`);
  return sc.split(';')[0];
}

export async function addModel(s, cookie, name, extra = {}) {
  const r = await req(s, 'POST', '/api/models', {
    cookie, body: { name, path: path.join(MODELS, name), kv_cache_space: 0.25, ...extra },
  });
  assert.equal(r.status, 201, r.text);
  return r.json;
}

export async function status(s, cookie) {
  const r = await req(s, 'GET', '/api/status', { cookie });
  assert.equal(r.status, 200, r.text);
  return r.json;
}

export async function modelInfo(s, cookie, ref) {
  const r = await req(s, 'GET', `/api/models/${encodeURIComponent(ref)}`, { cookie });
  assert.equal(r.status, 200, r.text);
  return r.json;
}

// Polls until the model's state is `state` (e.g. "ready", "failed"); returns the model.
export async function waitState(s, cookie, ref, state, ms = 30000 * SLOW) {
  const deadline = Date.now() + ms;
  let m;
  while (Date.now() < deadline) {
    m = await modelInfo(s, cookie, ref);
    if (m.state === state) return m;
    await sleep(50);
  }
  throw new Error(`model ${ref} did not reach ${state} in ${ms} ms (last: ${JSON.stringify(m)})`);
}

export async function load(s, cookie, ref) {
  const r = await req(s, 'POST', `/api/models/${encodeURIComponent(ref)}/load`, { cookie });
  assert.equal(r.status, 202, r.text);
  return waitState(s, cookie, ref, 'ready');
}

export function sdk(s, { apiKey = 'none', timeout = 60000 * SLOW } = {}) {
  return new OpenAI({ baseURL: `${s.url}/v1`, apiKey, maxRetries: 0, timeout });
}

export function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function engineOf(s, cookie, name) {
  const st = await status(s, cookie);
  const e = st.engines.find((x) => x.model === name);
  assert.ok(e, `no engine for ${name} in ${JSON.stringify(st.engines)}`);
  return e;
}

// Reads an SSE stream until `until(events)` holds; returns the parsed events.
export function readEvents(url, cookie, until, ms = 20000) {
  return new Promise((resolve, reject) => {
    const events = [];
    const rq = nodeHttp.get(url, { headers: { cookie, accept: 'text/event-stream' } }, (res) => {
      if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`));
      let buf = '';
      res.on('data', (d) => {
        buf += d.toString();
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const ev = { event: 'message', data: '' };
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) ev.event = line.slice(7);
            if (line.startsWith('data: ')) ev.data += line.slice(6);
          }
          ev.json = JSON.parse(ev.data);
          events.push(ev);
          if (until(events)) {
            rq.destroy();
            resolve(events);
          }
        }
      });
    });
    rq.on('error', (e) => { if (!rq.destroyed) reject(e); });
    setTimeout(() => { rq.destroy(); reject(new Error(`SSE: condition not met in ${ms} ms; got ${events.map((e) => e.event).join(',')}`)); }, ms);
  });
}
