// soak.mjs: a bounded soak of one foliod serving stories260K and aidreams260K, with the Hub
// look-alike (tests/daemon/hub_server.mjs) for pulls. For SOAK_SECONDS (default 600), 64
// clients, their source addresses spread over 127.0.0.2-127.0.0.9, stream, abort mid-stream,
// read slowly, send malformed and oversized bodies, read /metrics, and switch `default`
// (POST /api/models/{id}/activate). Faults are injected on a schedule: kill -9 of an engine
// (foliod restarts it), one kill -9 of foliod itself (restarted on the same data dir and port),
// and one pull into a models dir on a small tmpfs that fills up (skipped, with a note, where
// mount is not allowed). Then the checks: no hung request, no reset outside an injected kill,
// every request completed or got a clean HTTP error / SSE error event, no KV block leaked,
// RSS flat after warm-up, no crash that was not injected, SQLite integrity, no orphan engine.
//   FOLIO_ENGINE=build/release/folio-engine SOAK_SECONDS=120 node tests/abuse/soak.mjs
// Prints a table, then one line per check and "N passed, N failed"; exits 1 on a failed check.
import { execFileSync, spawn } from 'node:child_process';
import {
  existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync,
} from 'node:fs';
import nodeHttp from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ENGINE, MODELS, freePort, parseProm, sleep } from '../api/lib.mjs';
import { FOLIOD } from '../daemon/lib.mjs';
import { startHub } from '../daemon/hub_server.mjs';
import {
  ADMIN_TOKEN, BEARER, MiB, PASSWORD, addr, hreq, mb, rawUpload,
} from './lib.mjs';

const D = Number(process.env.SOAK_SECONDS || 600);
const CLIENTS = Number(process.env.SOAK_CLIENTS || 64);
const REQ_TIMEOUT = Number(process.env.SOAK_REQUEST_TIMEOUT || 120) * 1000;
const T0 = Date.now();
const at = (f) => T0 + f * D * 1000;
const now = () => Date.now();
const secs = (t) => ((t - T0) / 1000).toFixed(1);
const log = (m) => console.log(`[${secs(now()).padStart(6)} s] ${m}`);
const MODELS2 = ['stories260K', 'aidreams260K'];
const INLINE = "{% for m in messages %}{{ m['content'] }}{% endfor %}";
const PROMPTS = ['Once upon a time', 'The little dog', 'I dreamed', 'One day, a girl named Lily', 'Tom and Sam'];
const pick = (a) => a[Math.floor(Math.random() * a.length)];
const rint = (lo, hi) => lo + Math.floor(Math.random() * (hi - lo + 1));

// ---- state ----
const st = {
  requests: 0, completed: 0, clean: 0, aborted: 0, lost: 0, lostCrash: 0, bad: 0, timeouts: 0,
  codes: {}, failures: [], failKinds: {},
  faults: { engine_kill: 0, foliod_kill: 0, disk_full: 0, switch: 0 },
  crashEvents: 0, orphanEvents: 0, unexpectedFoliodExits: 0,
};
const downWindows = []; // [start, end] ms: foliod killed and not yet serving again
const crashWindows = []; // the same after a crash that was not injected (foliod restarted)
let restarting = null; // the restart after such a crash, while it runs
const notes = [];
const checks = [];
const check = (name, ok, detail = '') => checks.push({ name, ok: !!ok, detail });

function fail(kind, msg) {
  st.failKinds[kind] = (st.failKinds[kind] || 0) + 1;
  if (st.failures.length < 30) st.failures.push(`${kind}: ${msg}`);
}
// A request whose life touched [a - 1 s, b + 1 s] (the client may see the reset before the
// exit is reported, and the first refused connect after the restart is announced).
const overlaps = (ws, t0, t1) => ws.some(([a, b]) => t0 <= (b ?? Infinity) + 1000 && t1 >= a - 1000);
// Connection errors are judged at the end, once every kill and crash has its window.
const deferred = [];
const overlapsDown = (t0, t1) => overlaps(downWindows, t0, t1);

// ---- foliod ----
const data = mkdtempSync(path.join(os.tmpdir(), 'folio-soak-'));
const modelsDir = path.join(data, 'models');
mkdirSync(modelsDir);
let port;
let fd = null; // { proc, pid, log, exited, expectedExit }

function spawnFoliod(env) {
  const proc = spawn(FOLIOD, ['--host', '127.0.0.1', '--port', String(port), '--data-dir', data, '--config', '/dev/null', '--threads', '128'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FOLIO_ADMIN_PASSWORD: PASSWORD, FOLIO_ADMIN_TOKEN: ADMIN_TOKEN, FOLIO_API_KEY: '', ...env },
  });
  const f = { proc, pid: proc.pid, log: '', expectedExit: false, started: now() };
  const onData = (d) => {
    f.log = (f.log + d.toString()).slice(-20000);
  };
  proc.stdout.on('data', onData);
  proc.stderr.on('data', onData);
  f.exited = new Promise((resolve) => proc.on('exit', (code, signal) => {
    f.code = code;
    f.signal = signal;
    if (!f.expectedExit) {
      st.unexpectedFoliodExits++;
      log(`foliod ${f.pid} exited unexpectedly (code ${code}, signal ${signal}):\n${f.log.slice(-2000)}`);
      // Restarted, as systemd would, so that the rest of the run still says something.
      if (!stop) {
        const w = [now(), null];
        crashWindows.push(w);
        restarting = (async () => {
          await sleep(500);
          await startFoliod(hubEnv);
          w[1] = now();
          log(`foliod restarted after the crash (pid ${fd.pid})`);
        })().catch((e) => log(`foliod restart failed: ${e.message}`)).finally(() => { restarting = null; });
      }
    }
    resolve();
  }));
  return f;
}

const S = { get port() { return port; } };
const api = (method, p, body, extra = {}) => hreq(S, method, p, { headers: BEARER, body, timeout: 60000, ...extra });

async function waitHealth(ms = 30000) {
  const deadline = now() + ms;
  while (now() < deadline) {
    try {
      const r = await hreq(S, 'GET', '/health', { timeout: 1000 });
      if (r.status === 200) return true;
    } catch { /* not yet */ }
    await sleep(50);
  }
  return false;
}

async function startFoliod(env) {
  for (let i = 0; i < 20; i++) {
    fd = spawnFoliod(env);
    if (await waitHealth(15000)) return;
    fd.expectedExit = true;
    fd.proc.kill('SIGKILL');
    await fd.exited;
    if (!/cannot listen|address already in use/i.test(fd.log)) throw new Error(`foliod did not start:\n${fd.log}`);
    await sleep(500);
  }
  throw new Error('foliod could not listen again');
}

async function modelState(name) {
  const r = await api('GET', `/api/models/${name}`);
  return r.status === 200 ? r.json : null;
}
async function waitModel(name, states, ms = 60000) {
  const deadline = now() + ms;
  let m;
  while (now() < deadline) {
    m = await modelState(name).catch(() => null);
    if (m && states.includes(m.state)) return m;
    await sleep(100);
  }
  return m;
}
async function status() {
  const r = await api('GET', '/api/status');
  if (r.status !== 200) throw new Error(`/api/status ${r.status}`);
  return r.json;
}

// ---- processes: RSS samples and the engines we have seen ----
const samples = new Map(); // pid -> { role, first, points: [[t, rss]] }
const engineSeen = new Set();
function procInfo(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const ppid = Number(/^PPid:\s+(\d+)/m.exec(s)[1]);
    const rss = Number((/^VmRSS:\s+(\d+)/m.exec(s) || [0, 0])[1]) * 1024;
    return { ppid, rss };
  } catch {
    return null;
  }
}
function children(ppid) {
  const out = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const i = procInfo(Number(e));
    if (i && i.ppid === ppid) out.push(Number(e));
  }
  return out;
}
function cmdline(pid) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return null;
  }
}
function sampleOnce() {
  if (!fd || fd.code !== undefined) return;
  const t = now();
  const add = (pid, role) => {
    const i = procInfo(pid);
    if (!i) return;
    if (!samples.has(pid)) samples.set(pid, { role, first: t, points: [] });
    samples.get(pid).points.push([t, i.rss]);
  };
  add(fd.pid, 'foliod');
  for (const c of children(fd.pid)) {
    const cl = cmdline(c);
    if (!cl || !cl[0].endsWith('folio-engine')) continue;
    engineSeen.add(c);
    const mi = cl.indexOf('--model');
    add(c, `engine ${mi >= 0 ? path.basename(cl[mi + 1]) : '?'}`);
  }
}
const alive = (pid) => {
  const cl = cmdline(pid);
  return !!cl && cl[0].endsWith('folio-engine') && procInfo(pid) !== null && !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
};

// The part of each engine's KV pool ever written (foliod's /api/status, from the engine's
// /stats): the CPU pool is one lazily committed allocation, so its pages become resident as
// the prefix cache first reaches them. That growth is bounded by the pool and is not a leak.
const kvTouched = new Map(); // pid -> [[t, bytes]]
async function pollKv() {
  const r = await api('GET', '/api/status').catch(() => null);
  if (!r || r.status !== 200) return;
  const t = now();
  for (const e of r.json.engines || []) {
    if (!e.pid || typeof e.kv_touched_bytes !== 'number') continue;
    if (!kvTouched.has(e.pid)) kvTouched.set(e.pid, []);
    kvTouched.get(e.pid).push([t, e.kv_touched_bytes]);
  }
}
// Touched KV bytes of pid at time t (the last poll at or before it; 0 before the first).
function kvAt(pid, t) {
  let v = 0;
  for (const [pt, b] of kvTouched.get(pid) || []) if (pt <= t) v = b;
  return v;
}

// Events: engine crashes and orphans, polled incrementally.
const eventIds = new Set();
async function pollEvents() {
  const r = await api('GET', '/api/events?limit=1000').catch(() => null);
  if (!r || r.status !== 200) return;
  for (const e of r.json.events) {
    const id = e.id ?? `${e.ts ?? e.time}|${e.kind}|${e.message}`;
    if (eventIds.has(id)) continue;
    eventIds.add(id);
    if (e.kind === 'engine.crashed') st.crashEvents++;
    if (e.kind === 'engine.orphan') st.orphanEvents++;
  }
}

// ---- one request ----
// opts: method, path, headers, body, la (local address), stream, abortAfter (chunks), slow.
const inflight = new Map(); // id -> { what, since }: requests not finished
let nextId = 0;
function request({ method = 'POST', p, headers = {}, body, la, stream = false, abortAfter = 0, slow = false }) {
  const id = nextId++;
  inflight.set(id, { what: `${method} ${p}${stream ? ' (stream)' : ''}${slow ? ' (slow reader)' : ''}`, since: now() });
  return new Promise((resolve) => {
    const out = { status: null, text: '', events: 0, done: false, errorEvent: null, err: null, timedOut: false, clientAborted: false };
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      inflight.delete(id);
      resolve(out);
    };
    const h = { ...headers };
    let data;
    if (body !== undefined) {
      data = typeof body === 'string' ? body : JSON.stringify(body);
      h['content-type'] ??= 'application/json';
      h['content-length'] = Buffer.byteLength(data);
    }
    const rq = nodeHttp.request({ host: '127.0.0.1', port, method, path: p, headers: h, agent: false, localAddress: la }, (res) => {
      out.status = res.statusCode;
      let buf = '';
      res.on('data', (d) => {
        const s = d.toString();
        if (!stream || res.statusCode !== 200) {
          out.text += s;
          return;
        }
        buf += s;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const dl = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
          if (!dl) continue;
          if (dl === '[DONE]') {
            out.done = true;
            continue;
          }
          out.events++;
          try {
            const j = JSON.parse(dl);
            if (j.error) out.errorEvent = j.error;
          } catch {
            out.err = new Error(`a malformed SSE event: ${dl.slice(0, 200)}`);
          }
        }
        if (abortAfter && out.events >= abortAfter && !out.done) {
          out.clientAborted = true;
          rq.destroy();
          finish();
          return;
        }
        if (slow) {
          res.pause();
          setTimeout(() => res.resume(), rint(50, 250));
        }
      });
      res.on('end', finish);
      res.on('error', (e) => {
        if (!out.clientAborted) out.err = e;
        finish();
      });
      res.on('aborted', () => {
        if (!out.clientAborted) out.err = out.err || new Error('response aborted');
      });
    });
    const timer = setTimeout(() => {
      out.timedOut = true;
      rq.destroy();
      finish();
    }, REQ_TIMEOUT);
    rq.on('error', (e) => {
      if (!out.clientAborted) out.err = e;
      finish();
    });
    if (data !== undefined) rq.write(data);
    rq.end();
  });
}

// Classifies one finished request. badInput: it must be refused with a 4xx.
function tally(kind, r, t0, t1, { badInput = false, okStatuses = [] } = {}) {
  st.requests++;
  if (r.status) st.codes[r.status] = (st.codes[r.status] || 0) + 1;
  if (r.timedOut) {
    st.timeouts++;
    return fail('hang', `${kind}: no end in ${REQ_TIMEOUT / 1000} s (status ${r.status})`);
  }
  if (r.clientAborted) return void st.aborted++;
  if (r.err && !(r.status === 200 && r.done)) {
    return void deferred.push(() => {
      if (overlapsDown(t0, t1)) return void st.lost++;
      if (overlaps(crashWindows, t0, t1)) return void st.lostCrash++;
      fail('reset', `${kind}: ${r.err.code || ''} ${r.err.message} (status ${r.status}, ${r.events} events)`);
    });
  }
  if (r.status >= 400) {
    let j;
    try {
      j = JSON.parse(r.text);
    } catch { /* below */ }
    if (!j?.error?.message) return fail('unclean error', `${kind}: ${r.status} without a JSON error: ${r.text.slice(0, 200)}`);
    if (badInput && r.status >= 500 && ![502, 503].includes(r.status)) return fail('bad input', `${kind}: ${r.status} ${r.text.slice(0, 200)}`);
    if (r.status >= 500 && ![502, 503, 504].includes(r.status)) fail('server error', `${kind}: ${r.status} ${r.text.slice(0, 200)}`);
    return void st.clean++;
  }
  if (badInput && !okStatuses.includes(r.status)) return fail('bad input', `${kind}: accepted with ${r.status}: ${r.text.slice(0, 200)}`);
  if (r.status !== 200) return fail('status', `${kind}: ${r.status}`);
  if (r.errorEvent) return void st.clean++;
  if (kind === 'complete') {
    let j;
    try {
      j = JSON.parse(r.text);
    } catch { /* below */ }
    if (!Array.isArray(j?.choices) || !j.choices.length) {
      if (overlapsDown(t0, t1)) return void st.lost++;
      return fail('unclean error', `${kind}: a 200 without choices: ${r.text.slice(0, 200)}`);
    }
  }
  if (r.stream) {
    if (r.done) return void st.completed++;
    return void deferred.push(() => {
      if (overlapsDown(t0, t1)) return void st.lost++;
      if (overlaps(crashWindows, t0, t1)) return void st.lostCrash++;
      fail('truncated', `${kind}: a stream ended after ${r.events} events without [DONE] or an error event`);
    });
  }
  st.completed++;
}

// ---- what clients do ----
let stop = false;
let loadEnds = Infinity;
let lastSwitch = 0;
const switchEvery = Math.max(5, D / 40) * 1000;
const switchUntil = at(0.4);
const model = () => pick(['default', 'default', 'stories260K', 'aidreams260K']);

const badBodies = [
  () => '{"model":',
  () => '[]',
  () => ({ model: 'default', prompt: 42 }),
  () => ({ model: 'default', prompt: 'x', max_tokens: -1 }),
  () => ({ model: 'default', prompt: 'x', n: 100000 }),
  () => ({ model: 'default', prompt: 'x', temperature: 'hot' }),
  () => ({ model: 'default', prompt: 'x', logprobs: 1000 }),
  () => ({ model: 'default', prompt: 'x', stop_token_ids: Array.from({ length: 2000 }, (_, i) => i % 500) }),
  () => ({ model: 'default', prompt: 'x', stop: Array.from({ length: 8 }, () => 'q'.repeat(4096)) }),
  () => ({ model: 'default', prompt: Array.from({ length: 8 }, () => 'x'), n: 8, stop: Array.from({ length: 16 }, () => 's'.repeat(65536)) }),
  () => ({ model: 'default', messages: 'not a list' }),
  () => `{"model":"default","prompt":${'['.repeat(20000)}${']'.repeat(20000)}}`,
  () => `{"model":"default","prompt":${'['.repeat(800)}${']'.repeat(800)}}`,
  () => ({ model: 'no-such-model', prompt: 'x' }),
];

// rawUpload, tracked among the requests in flight.
async function raw(what, ...args) {
  const id = nextId++;
  inflight.set(id, { what, since: now() });
  try {
    return await rawUpload(...args);
  } finally {
    inflight.delete(id);
  }
}

async function badInput(la) {
  const t0 = now();
  const k = Math.random();
  if (k < 0.04) {
    // 17 MiB announced: 413 before the body is read.
    const head = `POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${17 * MiB}\r\nConnection: close\r\n\r\n`;
    const r = await raw('17 MiB body', port, head, 17 * MiB, { localAddress: la, timeout: REQ_TIMEOUT });
    st.bad++;
    rawTally('17 MiB body', r, t0, [413]);
    return;
  }
  if (k < 0.08) {
    const head = `POST /api/login HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${MiB}\r\nConnection: close\r\n\r\n`;
    const r = await raw('1 MiB login body', port, head, MiB, { prefix: '{"password":"x","p":[', fill: '0,', suffix: '0]}', localAddress: la, timeout: REQ_TIMEOUT });
    st.bad++;
    rawTally('1 MiB login body', r, t0, [413]);
    return;
  }
  if (k < 0.14) {
    const garbage = pick(['GARBAGE\r\n\r\n', `GET / HTTP/1.1\r\nHost: x\r\n${'X-A: b\r\n'.repeat(2000)}\r\n`,
      'POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n',
      `GET /${'a'.repeat(70000)} HTTP/1.1\r\nHost: x\r\n\r\n`]);
    const r = await raw('garbage request', port, garbage, 0, { localAddress: la, timeout: REQ_TIMEOUT });
    st.bad++;
    rawTally('garbage request', r, t0, [400, 404, 405, 411, 413, 414, 421, 431], true);
    return;
  }
  const body = pick(badBodies)();
  const chat = typeof body === 'object' && body.messages;
  const r = await request({ p: chat ? '/v1/chat/completions' : '/v1/completions', body, la });
  st.bad++;
  tally('bad body', r, t0, now(), { badInput: true });
}

// A raw exchange: a 4xx status line (one of `ok`), or, where allowed, a close without one.
function rawTally(kind, r, t0, ok, closeOk = false) {
  st.requests++;
  if (r.status) st.codes[r.status] = (st.codes[r.status] || 0) + 1;
  if (r.why === 'timeout') {
    st.timeouts++;
    return fail('hang', `${kind}: no answer`);
  }
  if (r.status && ok.includes(r.status)) return void st.clean++;
  if (r.status === 503 || r.status === 502) return void st.clean++;
  if (!r.status && closeOk) return void st.clean++;
  const t1 = now();
  deferred.push(() => {
    if (!r.status && overlapsDown(t0, t1)) return void st.lost++;
    if (!r.status && overlaps(crashWindows, t0, t1)) return void st.lostCrash++;
    fail('bad input', `${kind}: ${r.status ?? r.why} ${r.text.slice(0, 120)}`);
  });
}

async function generate(la, mode) {
  const t0 = now();
  const chat = mode !== 'complete' && Math.random() < 0.3;
  const body = chat
    ? { model: model(), messages: [{ role: 'user', content: pick(PROMPTS) }], max_tokens: rint(8, 96) }
    : { model: model(), prompt: pick(PROMPTS), max_tokens: rint(8, 128) };
  if (Math.random() < 0.3) body.ignore_eos = true;
  if (Math.random() < 0.2) body.logprobs = chat ? true : 5;
  if (chat && body.logprobs) body.top_logprobs = 5;
  if (Math.random() < 0.15) body.n = rint(2, 4);
  const stream = mode !== 'complete';
  if (stream) body.stream = true;
  const r = await request({
    p: chat ? '/v1/chat/completions' : '/v1/completions', body, la, stream,
    abortAfter: mode === 'abort' ? rint(1, 6) : 0, slow: mode === 'slow',
  });
  r.stream = stream;
  tally(mode, r, t0, now());
}

async function reads(la) {
  const t0 = now();
  const p = pick(['/metrics', '/metrics', '/v1/models', '/health', '/ready']);
  const r = await request({ method: 'GET', p, la });
  if (p === '/metrics' && r.status === 200) {
    try {
      parseProm(r.text);
    } catch (e) {
      st.requests++;
      return fail('metrics', e.message.slice(0, 200));
    }
  }
  if (p === '/ready' && r.status === 503) r.status = 200; // not ready is an answer
  tally(`GET ${p}`, r, t0, now());
}

async function switchDefault(la) {
  lastSwitch = now();
  const t0 = now();
  const st0 = await status().catch(() => null);
  const cur = st0?.default_model;
  const next = cur === 'stories260K' ? 'aidreams260K' : 'stories260K';
  const r = await request({ p: `/api/models/${next}/activate`, headers: BEARER, la, body: {} });
  st.faults.switch++;
  tally('activate', r, t0, now());
  // The admin brings the other model back (activate unloads the old default).
  if (r.status === 200 && cur && cur !== next) {
    const l = await request({ p: `/api/models/${cur}/load`, headers: BEARER, la, body: {} });
    if (l.status === 202) l.status = 200;
    tally('load', l, t0, now());
  }
}

async function worker(i) {
  const la = addr(2 + (i % 8));
  while (!stop) {
    // While foliod is down (killed, or restarting after a crash), do not spin.
    if (restarting || overlapsDown(now(), now())) {
      await sleep(100);
      continue;
    }
    const x = Math.random() * 100;
    if (now() < switchUntil && now() - lastSwitch > switchEvery && x < 2) await switchDefault(la);
    else if (x < 35) await generate(la, 'stream');
    else if (x < 50) await generate(la, 'complete');
    else if (x < 60) await generate(la, 'abort');
    else if (x < 67) await generate(la, 'slow');
    else if (x < 85) await badInput(la);
    else await reads(la);
  }
}

// ---- faults ----
async function killEngine(name) {
  const s = await status().catch(() => null);
  const e = pick((s?.engines || []).filter((x) => (name ? x.model === name : true) && x.state === 'ready' && x.pid > 0) || []);
  if (!e) return log('engine kill: no ready engine');
  try {
    process.kill(e.pid, 'SIGKILL');
  } catch {
    return;
  }
  st.faults.engine_kill++;
  log(`fault: kill -9 engine ${e.model} (pid ${e.pid})`);
  // foliod restarts it (unless it was being switched away).
  const deadline = now() + 20000;
  let back = false;
  while (now() < deadline && !back) {
    await sleep(200);
    const s2 = await status().catch(() => null);
    const e2 = s2?.engines.find((x) => x.model === e.model);
    back = !e2 || (e2.pid !== e.pid && e2.state === 'ready') || e2.state === 'stopped';
  }
  if (!back) fail('restart', `engine ${e.model} not back 20 s after kill -9`);
}

async function killFoliod() {
  if (restarting) await restarting;
  const old = fd;
  const kids = children(old.pid).filter((c) => (cmdline(c) || [''])[0].endsWith('folio-engine'));
  const w = [now(), null];
  downWindows.push(w);
  old.expectedExit = true;
  old.proc.kill('SIGKILL');
  st.faults.foliod_kill++;
  log(`fault: kill -9 foliod (pid ${old.pid}); its engines: ${kids.join(', ')}`);
  await old.exited;
  await sleep(5000);
  const left = kids.filter(alive);
  if (left.length) fail('orphan', `engines ${left.join(', ')} outlived foliod's kill -9 by 5 s`);
  st.orphansAfterKill = left.length;
  await startFoliod(hubEnv);
  w[1] = now();
  log(`foliod restarted (pid ${fd.pid}) in ${((w[1] - w[0]) / 1000).toFixed(1)} s`);
  const ms = await Promise.all(MODELS2.map((n) => waitModel(n, ['ready'], 60000)));
  const loaded = ms.filter((m) => m?.state === 'ready').length;
  st.modelsBack = loaded;
  log(`after the restart: ${loaded} model(s) ready`);
}

let mounted = false;
async function diskFullPull() {
  if (!mounted) {
    // No small disk here: a plain pull, so the Hub path still runs.
    const r = await api('POST', '/api/models/pulled/pull', {});
    const m = await waitPull('pulled', ['done', 'failed'], 60000);
    st.pull = { kind: 'plain', ok: r.status === 202 && m?.state === 'done', detail: `${r.status} ${m?.state} ${m?.error || ''}` };
    return;
  }
  hub.setFault({ repo: 'folio-test/aidreams260K', file: 'model.safetensors', kind: 'slow', bytesPerSec: 200000, times: Infinity });
  const r = await api('POST', '/api/models/pulled/pull', {});
  st.faults.disk_full++;
  log(`fault: a pull into a 2200 KiB tmpfs that fills up (${r.status})`);
  await waitPull('pulled', ['downloading', 'failed'], 30000, (d) => d.state === 'failed' ||
    (d.files || []).some((f) => f.name === 'model.safetensors' && f.done > 0));
  try {
    writeFileSync(path.join(modelsDir, 'filler'), Buffer.alloc(1900 * 1024));
  } catch { /* ENOSPC for the filler too: full either way */ }
  const d = await waitPull('pulled', ['failed', 'done'], 60000);
  hub.clearFaults();
  try {
    unlinkSync(path.join(modelsDir, 'filler'));
  } catch { /* gone */ }
  const partial = existsSync(path.join(modelsDir, 'folio-test', 'aidreams260K'))
    ? readdirSync(path.join(modelsDir, 'folio-test', 'aidreams260K'), { recursive: true }).filter((f) => /\.part$|\.incomplete/.test(f)) : [];
  st.pull = {
    kind: 'disk full',
    ok: d?.state === 'failed' && /No space left|not enough disk/i.test(d?.error || '') && partial.length === 0,
    detail: `${d?.state}: ${d?.error || ''}${partial.length ? `; left behind: ${partial.join(', ')}` : ''}`,
  };
  log(`the pull ended: ${st.pull.detail}`);
}
async function waitPull(name, states, ms, pred = () => true) {
  const deadline = now() + ms;
  let d;
  while (now() < deadline) {
    const r = await api('GET', `/api/models/${name}/pull`).catch(() => null);
    d = r?.status === 200 ? r.json : d;
    if (d && states.includes(d.state) && pred(d)) return d;
    await sleep(100);
  }
  return d;
}

// ---- main ----
let hub;
let hubEnv;
async function main() {
  hub = await startHub({ repos: { 'folio-test/aidreams260K': path.join(MODELS, 'aidreams260K') } });
  hubEnv = { HF_ENDPOINT: hub.url, HF_TOKEN: '' };
  if (process.getuid?.() === 0) {
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2200k', 'tmpfs', modelsDir], { stdio: 'pipe' });
      mounted = true;
    } catch (e) {
      notes.push(`no tmpfs mount here (${String(e.stderr || e.message).trim().split('\n')[0]}): the disk-full pull is skipped; a plain pull runs instead`);
    }
  } else {
    notes.push('not root: no tmpfs mount, so the disk-full pull is skipped; a plain pull runs instead');
  }
  port = await freePort();
  await startFoliod(hubEnv);
  log(`foliod ${fd.pid} on :${port}, data ${data}${mounted ? ' (models dir on a 2200 KiB tmpfs)' : ''}; ${CLIENTS} clients for ${D} s`);
  // Each model from a directory of links to the shared files, with a chat template inside it.
  for (const n of MODELS2) {
    const dir = path.join(data, 'local', n);
    mkdirSync(dir, { recursive: true });
    for (const f of readdirSync(path.join(MODELS, n))) symlinkSync(path.join(MODELS, n, f), path.join(dir, f));
    writeFileSync(path.join(dir, 'chat.jinja'), INLINE);
    const r = await api('POST', '/api/models', { name: n, path: dir, kv_cache_space: 0.01, chat_template: path.join(dir, 'chat.jinja') });
    if (r.status !== 201) throw new Error(`register ${n}: ${r.status} ${r.text}`);
  }
  const hr = await api('POST', '/api/models', { name: 'pulled', repo_id: 'folio-test/aidreams260K', kv_cache_space: 0.03 });
  if (hr.status !== 201) throw new Error(`register pulled: ${hr.status} ${hr.text}`);
  for (const n of MODELS2) await api('POST', `/api/models/${n}/load`, {});
  for (const n of MODELS2) {
    const m = await waitModel(n, ['ready'], 60000);
    if (m?.state !== 'ready') throw new Error(`${n} did not load: ${JSON.stringify(m)}`);
  }
  const a = await api('POST', '/api/models/stories260K/activate', {});
  if (a.status !== 200) throw new Error(`activate: ${a.status} ${a.text}`);

  const sampler = setInterval(sampleOnce, 2000);
  const evPoller = setInterval(() => { pollEvents().catch(() => {}); }, 3000);
  const kvPoller = setInterval(() => { pollKv().catch(() => {}); }, 2000);
  sampleOnce();
  const workers = Array.from({ length: CLIENTS }, (_, i) => worker(i));

  // The fault schedule (fractions of SOAK_SECONDS): foliod -9 early, so that its RSS baseline
  // at 25% is after its restart; engine kills and `default` switches stop at 40%, so the
  // engines then running have a baseline after their warm-up (every one of the engine's
  // handler threads touching its stack and heap) and a third of the run to stay flat.
  const schedule = [[0.1, () => killFoliod()], [0.2, () => killEngine('stories260K')], [0.3, () => diskFullPull()],
    [0.35, () => killEngine('aidreams260K')], [0.4, () => killEngine(null)]];
  for (let t = 0.25; t < 0.4; t += 60 / D) schedule.push([t, () => killEngine(null)]);
  schedule.sort((x, y) => x[0] - y[0]);
  for (const [f, fn] of schedule) {
    while (now() < at(f)) await sleep(100);
    try {
      await fn();
    } catch (e) {
      fail('fault', `${e.message}`);
    }
  }
  while (now() < at(1)) await sleep(200);
  await pollKv();
  sampleOnce();
  stop = true;
  loadEnds = now();
  log('load stops; waiting for the clients');
  await Promise.race([Promise.all(workers), sleep(REQ_TIMEOUT + 10000)]);
  for (const f of deferred) f();
  // Anything still out now outlived its own timeout: a hang (of the client's timer, or the server's).
  for (const x of inflight.values()) {
    st.timeouts++;
    fail('hang', `${x.what}: still open ${((now() - x.since) / 1000).toFixed(0)} s after it started`);
  }
  if (inflight.size) log(`${inflight.size} request(s) still open after the load stopped`);
  clearInterval(sampler);
  clearInterval(evPoller);
  clearInterval(kvPoller);
  await pollEvents();

  // Leaks: every engine idle, its KV blocks back.
  log('checking that the engines are idle');
  const leaks = [];
  const s = await status().catch(() => null);
  for (const e of (s?.engines || []).filter((x) => x.state === 'ready')) {
    const deadline = now() + 30000;
    let last = '';
    let idle = false;
    while (now() < deadline && !idle) {
      const r = await hreq(S, 'GET', '/metrics', { timeout: 10000 }).catch(() => null);
      if (r?.status === 200) {
        const sm = parseProm(r.text).filter((x) => x.labels.model === e.model);
        const v = (n) => sm.filter((x) => x.name === n).reduce((acc, x) => acc + x.value, 0);
        last = `running ${v('folio:num_requests_running')}, waiting ${v('folio:num_requests_waiting')}, ` +
          `kv_cache_usage_perc ${v('folio:kv_cache_usage_perc')}, kv_cache_blocks_used ${v('folio:kv_cache_blocks_used')}`;
        idle = sm.length > 0 && v('folio:num_requests_running') === 0 && v('folio:num_requests_waiting') === 0 &&
          v('folio:kv_cache_usage_perc') === 0;
      }
      if (!idle) await sleep(250);
    }
    if (!idle) leaks.push(`${e.model}: ${last}`);
  }
  st.leaks = leaks;

  // RSS: per process alive at the end, its first sample after warm-up (at 25% of the run, or
  // 25% of it (at least 30 s) after the process started, whichever is later) against its last
  // under load.
  const warm = Math.max(30, 0.25 * D) * 1000;
  const rssRows = [];
  for (const [pid, x] of samples) {
    const lastPt = x.points[x.points.length - 1];
    if (!lastPt || lastPt[0] < loadEnds - 5000) continue; // gone before the end
    const from = Math.max(at(0.25), x.first + warm);
    const base = x.points.find((pt) => pt[0] >= from);
    if (!base || lastPt[0] - base[0] < 0.2 * D * 1000) {
      rssRows.push({ pid, role: x.role, start: base?.[1], end: lastPt[1], checked: false });
      continue;
    }
    const series = x.points.filter((pt, i) => i % 5 === 0 || i === x.points.length - 1)
      .map((pt) => `${secs(pt[0])}s:${(pt[1] / MiB).toFixed(1)}`).join(' ');
    // An engine may grow by the KV pages first written in between, and by nothing else.
    const kvGrowth = Math.max(0, kvAt(pid, lastPt[0]) - kvAt(pid, base[0]));
    rssRows.push({ pid, role: x.role, start: base[1], end: lastPt[1], kv: kvGrowth, checked: true,
      ok: lastPt[1] <= base[1] * 1.1 + 2 * MiB + kvGrowth, series });
  }
  st.rss = rssRows;

  // Stop: SIGTERM, exit 0, no engine left.
  const ourEngines = [...engineSeen];
  log('stopping foliod (SIGTERM)');
  fd.expectedExit = true;
  fd.proc.kill('SIGTERM');
  const exited = await Promise.race([fd.exited.then(() => true), sleep(60000).then(() => false)]);
  if (!exited) {
    fd.proc.kill('SIGKILL');
    await fd.exited;
  }
  st.foliodExit = exited ? `code ${fd.code}, signal ${fd.signal}` : 'did not exit in 60 s';
  log(`foliod: ${st.foliodExit}`);
  await sleep(1000);
  const orphans = ourEngines.filter(alive);
  // And no folio-engine of ours re-parented to init.
  const initKids = children(1).filter((c) => {
    const cl = cmdline(c);
    return cl && cl[0] === ENGINE && cl.some((a) => a.startsWith(MODELS));
  }).filter((c) => ourEngines.includes(c));
  st.orphans = [...new Set([...orphans, ...initKids])];
  for (const pid of st.orphans) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch { /* gone */ }
  }

  // SQLite integrity.
  let integrity;
  try {
    integrity = execFileSync('sqlite3', [path.join(data, 'folio.db'), 'PRAGMA integrity_check;'], { encoding: 'utf8' }).trim();
  } catch {
    try {
      integrity = execFileSync('python3', ['-c', 'import sqlite3,sys;print(sqlite3.connect(sys.argv[1]).execute("PRAGMA integrity_check").fetchone()[0])',
        path.join(data, 'folio.db')], { encoding: 'utf8' }).trim();
    } catch (e) {
      integrity = `could not run: ${e.message}`;
    }
  }
  st.integrity = integrity;
  await hub.close();
  if (mounted) {
    try {
      execFileSync('umount', [modelsDir]);
    } catch (e) {
      notes.push(`umount ${modelsDir}: ${e.message}`);
    }
  }
  rmSync(data, { recursive: true, force: true });
}

function report() {
  const faults = st.faults.engine_kill + st.faults.foliod_kill + st.faults.disk_full;
  const notInjected = Math.max(0, st.crashEvents - st.faults.engine_kill) + st.unexpectedFoliodExits;
  const rows = [
    ['duration', `${D} s, ${CLIENTS} clients over ${addr(2)}-${addr(9)}`],
    ['requests', st.requests],
    ['completed', st.completed],
    ['clean errors (HTTP error / SSE error event)', st.clean],
    ['aborted by the client (on purpose)', st.aborted],
    ['lost to the injected foliod kill (reset, refused)', st.lost],
    ['lost to a foliod crash that was not injected', st.lostCrash],
    ['bad inputs tried', st.bad],
    ['faults injected', `${faults} (engine kill -9: ${st.faults.engine_kill}, foliod kill -9: ${st.faults.foliod_kill}, ` +
      `disk full: ${st.faults.disk_full}); default switches: ${st.faults.switch}`],
    ['engine crashes recorded (engine.crashed)', st.crashEvents],
    ['crashes not injected', notInjected],
    ['hung requests', st.timeouts],
    ['failed requests', Object.values(st.failKinds).reduce((a, b) => a + b, 0)],
    ['leaks (engines not idle after the load)', (st.leaks || []).length],
    ['orphaned engines', (st.orphans || []).length + (st.orphansAfterKill || 0) + st.orphanEvents],
    ['SQLite integrity_check', st.integrity],
    ['status codes', Object.entries(st.codes).map(([k, v]) => `${k}:${v}`).join(' ')],
  ];
  console.log('\nsoak summary');
  const w = Math.max(...rows.map((r) => r[0].length));
  for (const [k, v] of rows) console.log(`  ${k.padEnd(w)}  ${v}`);
  console.log('  RSS (after warm-up -> end of load)');
  for (const r of st.rss || []) {
    console.log(`    ${`${r.role} (pid ${r.pid})`.padEnd(30)} ${r.start ? mb(r.start) : 'n/a'} -> ${mb(r.end)}` +
      `${r.kv ? ` (KV pages first written meanwhile: ${mb(r.kv)})` : ''}` +
      `${r.checked ? (r.ok ? '' : '  GREW') : '  (started late: not checked)'}`);
    if (r.series && (process.env.SOAK_VERBOSE || !r.ok)) console.log(`      MiB over time: ${r.series}`);
  }
  for (const n of notes) console.log(`  note: ${n}`);
  if (st.failures.length) console.log(`  failures (first ${st.failures.length}):\n${st.failures.map((f) => `    ${f}`).join('\n')}`);
  if ((st.leaks || []).length) console.log(`  leaks:\n${st.leaks.map((f) => `    ${f}`).join('\n')}`);

  const k = st.failKinds;
  check('no request hung past its timeout', st.timeouts === 0, `${st.timeouts} hung`);
  check('no connection reset or cut stream outside an injected kill', !k.reset && !k.truncated, `${(k.reset || 0) + (k.truncated || 0)}`);
  check('every request completed or got a clean HTTP error / SSE error event',
    !k['unclean error'] && !k.status && !k.metrics && !k['server error'], JSON.stringify(k));
  check('bad inputs refused with a clean 4xx', !k['bad input'], `${k['bad input'] || 0} not`);
  check('no crash that was not injected', notInjected === 0, `${notInjected}`);
  check('engines and foliod came back after kill -9', !k.restart && !k.fault && st.modelsBack === MODELS2.length,
    `models ready after the foliod restart: ${st.modelsBack}; ${k.restart || 0} engine(s) not back`);
  check(`the pull (${st.pull?.kind || 'not run'}) ended cleanly`, st.pull?.ok, st.pull?.detail || 'not run');
  check('no KV block leaked', (st.leaks || []).length === 0, (st.leaks || []).join('; '));
  const checkedRss = (st.rss || []).filter((r) => r.checked);
  if (D >= 120) {
    check('foliod RSS flat after warm-up (within 10% + 2 MiB)', checkedRss.some((r) => r.role === 'foliod') &&
      checkedRss.filter((r) => r.role === 'foliod').every((r) => r.ok), 'foliod');
    // Engines run without a per-thread malloc cache (foliod sets GLIBC_TUNABLES): with it,
    // each connection thread kept freed chunks as it took its turn, and RSS climbed for
    // thousands of requests.
    check('engine RSS flat after warm-up (within 10% + 2 MiB, plus KV pages first written)', checkedRss.some((r) => r.role.startsWith('engine')) &&
      checkedRss.filter((r) => r.role.startsWith('engine')).every((r) => r.ok), 'engines');
  } else {
    console.log('  note: SOAK_SECONDS < 120 leaves no window after warm-up: RSS is shown, not checked');
  }
  check('foliod exits 0 on SIGTERM', st.foliodExit === 'code 0, signal null', st.foliodExit);
  check('no orphaned folio-engine', (st.orphans || []).length === 0 && !st.orphansAfterKill && st.orphanEvents === 0,
    `after stop: ${(st.orphans || []).join(',')}; after kill -9: ${st.orphansAfterKill || 0}; engine.orphan events: ${st.orphanEvents}`);
  check('PRAGMA integrity_check = ok', st.integrity === 'ok', st.integrity);
  check('the load made progress', st.completed >= Math.min(100, D), `${st.completed} completed`);
  console.log('');
  let pass = 0;
  for (const c of checks) {
    console.log(`${c.ok ? 'ok' : 'FAIL'} soak: ${c.name}${c.ok ? '' : ` (${c.detail})`}`);
    if (c.ok) pass++;
  }
  console.log(`${pass} passed, ${checks.length - pass} failed`);
  return pass === checks.length;
}

const cleanup = () => {
  try {
    if (fd && fd.code === undefined) fd.proc.kill('SIGKILL');
  } catch { /* gone */ }
  if (mounted) {
    try {
      execFileSync('umount', ['-l', modelsDir]);
    } catch { /* not mounted */ }
  }
};
process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});
try {
  await main();
} catch (e) {
  console.log(`soak: ${e.stack || e}`);
  if (fd) console.log(`foliod log (tail):\n${fd.log.slice(-3000)}`);
  cleanup();
  console.log('0 passed, 1 failed');
  process.exit(1);
}
process.exit(report() ? 0 : 1);
