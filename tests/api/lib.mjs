// lib.mjs: the suite's tiny runner and its helpers: spawning folio-engine on a free loopback
// port, raw HTTP (fetch) with timeouts, SSE parsing, the error-shape check, Prometheus parsing,
// and an openai SDK client bound to a server. Every test starts and stops its own servers; a
// server still running when its test ends is killed, and the test fails.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';

export { assert };
export const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const resolveRoot = (p) => (path.isAbsolute(p) ? p : path.resolve(root, p));
export const ENGINE = resolveRoot(process.env.FOLIO_ENGINE || 'build/release/folio-engine');
export const MODELS = resolveRoot(process.env.FOLIO_TEST_MODELS || '../shared/models');
export const model = (name) => path.join(MODELS, name);
export const template = (name) => path.join(here, 'templates', name);
// Slower builds (ASan) get more time for everything.
export const SLOW = Number(process.env.FOLIO_API_SLOW || (/asan/i.test(ENGINE) ? 3 : 1));

// Known-good stories260K greedy output (shared/models/README.md).
export const STORY = {
  prompt: 'Once upon a time',
  promptIds: [1, 403, 407, 261, 378],
  ids: [432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411,
    322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352, 266, 268, 388, 426],
  text: ', there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball.',
};

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- the runner ----

const tests = [];
let current = null;

export function test(name, fn, { timeout = 30000 } = {}) {
  tests.push({ name, fn, timeout: timeout * SLOW });
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
export { withTimeout };

// FOLIO_TEST_SHARD=I/N (tests/run_all.sh): of the tests --only and --skip leave, run every
// Nth from the Ith (0-based), so that N processes run a suite side by side.
function shardOf() {
  const m = /^(\d+)\/(\d+)$/.exec(process.env.FOLIO_TEST_SHARD || '0/1');
  if (!m || Number(m[1]) >= Number(m[2])) throw new Error(`FOLIO_TEST_SHARD=${process.env.FOLIO_TEST_SHARD}: want I/N, I < N`);
  return { index: Number(m[1]), count: Number(m[2]) };
}

export async function runAll({ only = [], skip = [] } = {}) {
  let pass = 0;
  let fail = 0;
  const failed = [];
  const t0 = Date.now();
  const shard = shardOf();
  const selected = tests.filter((t) => (!only.length || only.some((o) => t.name.includes(o)))
    && !skip.some((o) => t.name.includes(o)));
  // A test's servers drain (CivetWeb takes ~2 s to stop) while the next test runs: its
  // result is printed, in order, once their exits have been checked.
  let chain = Promise.resolve();
  for (const [i, t] of selected.entries()) {
    if (i % shard.count !== shard.index) continue;
    const ctx = { servers: [], cleanups: [], tails: [] };
    current = ctx;
    const start = Date.now();
    let err = null;
    try {
      await withTimeout(Promise.resolve().then(() => t.fn()), t.timeout, 'test');
    } catch (e) {
      err = e;
    }
    for (const c of ctx.cleanups.reverse()) {
      try {
        await withTimeout(Promise.resolve().then(c), 5000, 'cleanup');
      } catch {
        /* best effort */
      }
    }
    const ms = Date.now() - start;
    current = null;
    const finalize = (async () => {
      for (const r of await Promise.allSettled(ctx.tails)) {
        if (r.status === 'rejected' && !err) err = r.reason;
      }
      for (const s of ctx.servers) {
        if (s.alive) {
          s.proc.kill('SIGKILL');
          await withTimeout(s.exited, 5000, 'kill').catch(() => {});
          if (!err) err = new Error(`the test left its server :${s.port} running`);
        }
      }
    })();
    chain = chain.then(async () => {
      await finalize;
      if (err) {
        fail++;
        failed.push(t.name);
        console.log(`FAIL ${t.name} (${ms} ms)`);
        console.log(indent(err.stack || String(err)));
        for (const s of ctx.servers) {
          if (s.log.trim()) console.log(indent(`server :${s.port} log (tail):\n${s.log.slice(-3000)}`));
        }
      } else {
        pass++;
        console.log(`ok ${t.name} (${ms} ms)`);
      }
    });
    // Keep at most a few servers draining at once.
    if (ctx.tails.length) await Promise.race([finalize, sleep(300)]);
  }
  await chain;
  if (failed.length) console.log(`failed: ${failed.join('; ')}`);
  console.log(`api suite took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  console.log(`${pass} passed, ${fail} failed`);
  return fail === 0;
}

// A suite's entry point: node main.mjs [--only SUBSTR]... [--skip SUBSTR]... imports every
// test_*.mjs in dir, runs them and exits 0 when all passed.
export async function runSuite(dir) {
  const only = [];
  const skip = [];
  for (let i = 2; i < process.argv.length; i++) {
    const a = process.argv[i];
    if (a === '--only') only.push(process.argv[++i]);
    else if (a === '--skip') skip.push(process.argv[++i]);
    else {
      console.error('usage: node main.mjs [--only SUBSTR]... [--skip SUBSTR]...');
      process.exit(2);
    }
  }
  const { readdirSync } = await import('node:fs');
  for (const f of readdirSync(dir).filter((n) => /^test_.*\.mjs$/.test(n)).sort()) await import(path.join(dir, f));
  process.exit((await runAll({ only, skip })) ? 0 : 1);
}

const indent = (s) => s.split('\n').map((l) => `    ${l}`).join('\n');

// Runs fn when the current test ends, pass or fail.
export function onCleanup(fn) {
  current.cleanups.push(fn);
}

export { OpenAI };

// ---- servers ----

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// Spawns a server process registered with the current test (its log is printed on failure,
// and it must have exited when the test ends): { proc, log, alive, code, signal, exited, argv }.
export function spawnServer(bin, argv, env = {}) {
  const proc = spawn(bin, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const s = { proc, log: '', alive: true, code: null, signal: null, argv };
  s.exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      s.alive = false;
      s.code = code;
      s.signal = signal;
      resolve();
    });
    proc.on('error', (e) => {
      s.log += `spawn error: ${e.message}\n`;
      s.alive = false;
      resolve();
    });
  });
  const onData = (d) => {
    s.log += d.toString();
    if (s.log.length > 200000) s.log = s.log.slice(-100000);
  };
  proc.stdout.on('data', onData);
  proc.stderr.on('data', onData);
  current.servers.push(s);
  return s;
}

// Starts folio-engine; resolves once /health answers 200 (or at once with ready: false).
// opts: model (dir name under MODELS, or a path), args (extra flags), ready, env.
export async function startServer({ model: m = 'stories260K', args = [], ready = true, env = {} } = {}) {
  const modelPath = m.includes('/') ? m : model(m);
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const argv = ['--model', modelPath, '--host', '127.0.0.1', '--port', String(port), '--drain-timeout', '10',
      '--kv-cache-space', '0.25', ...args];
    const s = spawnServer(ENGINE, argv, env);
    Object.assign(s, { port, url: `http://127.0.0.1:${port}`, modelPath });
    s.stop = () => stopServer(s);
    if (!ready) return s;
    try {
      await waitReady(s);
      return s;
    } catch (e) {
      if (!s.alive && /cannot listen|address already in use/i.test(s.log) && attempt < 3) continue;
      throw e;
    }
  }
}

export async function waitReady(s, ms = 30000 * SLOW) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!s.alive) throw new Error(`folio-engine exited (code ${s.code}, signal ${s.signal}) before it was ready:\n${s.log}`);
    try {
      const r = await fetch(`${s.url}/health`, { signal: AbortSignal.timeout(2000) });
      await r.text();
      if (r.status === 200) return;
    } catch {
      /* not listening yet */
    }
    await sleep(25);
  }
  throw new Error(`folio-engine did not become ready in ${ms} ms:\n${s.log}`);
}

// SIGTERM; the server must drain and exit 0.
export async function stopServer(s, ms = 20000 * SLOW) {
  if (s.alive) s.proc.kill('SIGTERM');
  await withTimeout(s.exited, ms, `server :${s.port} exit after SIGTERM`);
  assert.equal(s.signal, null, `server exited on signal ${s.signal}\n${s.log.slice(-3000)}`);
  assert.equal(s.code, 0, `server exit code ${s.code} after SIGTERM\n${s.log.slice(-3000)}`);
}

// Starts a server, runs fn(s), then stops it: SIGTERM, and the exit code must be 0. The exit is
// checked while the next test runs (see runAll); the test fails if it is not 0.
export async function withServer(opts, fn) {
  const s = await startServer(opts);
  const ctx = current;
  try {
    await fn(s);
  } finally {
    ctx.tails.push(stopServer(s));
  }
}

// ---- HTTP ----

export async function http(s, method, p, { body, headers = {}, timeout = 30000 * SLOW, signal } = {}) {
  // Redirects come back as they are (foliod's /admin answers one).
  const init = { method, headers: { ...headers }, signal: signal || AbortSignal.timeout(timeout), redirect: 'manual' };
  if (body !== undefined) {
    init.body = typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
    if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) init.headers['content-type'] = 'application/json';
  }
  const res = await fetch(`${s.url}${p}`, init);
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}
export const get = (s, p, opts) => http(s, 'GET', p, opts);
export const post = (s, p, body, opts) => http(s, 'POST', p, { ...opts, body });

// Parses an SSE body: { events: [parsed JSON], done: saw [DONE], afterDone: events after it }.
export function parseSSE(text) {
  const out = { events: [], done: false, afterDone: 0, raw: text };
  for (const block of text.split(/\r?\n\r?\n/)) {
    if (!block.trim()) continue;
    const data = block
      .split(/\r?\n/)
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(5).replace(/^ /, ''))
      .join('\n');
    assert.ok(data.length > 0, `SSE event without data: ${JSON.stringify(block)}`);
    if (out.done) out.afterDone++;
    if (data === '[DONE]') {
      out.done = true;
      continue;
    }
    out.events.push(JSON.parse(data));
  }
  return out;
}

export async function postStream(s, p, body, opts = {}) {
  const r = await post(s, p, { ...body, stream: true }, opts);
  assert.equal(r.status, 200, `stream status ${r.status}: ${r.text}`);
  assert.match(r.headers.get('content-type') || '', /^text\/event-stream/);
  return parseSSE(r.text);
}

// {"error":{"message","type","param","code"}} with this status.
export function assertError(r, status, { param, message } = {}) {
  assert.equal(r.status, status, `expected ${status}, got ${r.status}: ${r.text}`);
  assert.match(r.headers.get('content-type') || '', /application\/json/);
  assert.ok(r.json && typeof r.json === 'object', `error body is not JSON: ${r.text}`);
  assert.deepEqual(Object.keys(r.json), ['error'], `error body: ${r.text}`);
  const e = r.json.error;
  assert.deepEqual(Object.keys(e).sort(), ['code', 'message', 'param', 'type'], `error object: ${r.text}`);
  assert.equal(typeof e.message, 'string');
  assert.ok(e.message.length > 0);
  assert.equal(typeof e.type, 'string');
  assert.ok(e.param === null || typeof e.param === 'string', `param: ${JSON.stringify(e.param)}`);
  assert.equal(e.code, status, `code: ${JSON.stringify(e.code)}`);
  if (param !== undefined) assert.equal(e.param, param, `param of ${r.text}`);
  if (message instanceof RegExp) assert.match(e.message, message);
  else if (message !== undefined) assert.equal(e.message, message);
  return e;
}

// ---- metrics ----

// Prometheus text -> [{name, labels, value}]; every sample line must parse.
export function parseProm(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( \d+)?$/.exec(line);
    assert.ok(m, `not a Prometheus sample line: ${JSON.stringify(line)}`);
    const labels = {};
    if (m[3]) {
      for (const lm of m[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[lm[1]] = lm[2];
    }
    const v = m[4] === '+Inf' ? Infinity : m[4] === '-Inf' ? -Infinity : Number(m[4]);
    assert.ok(!Number.isNaN(v) || m[4] === 'NaN', `bad value in ${line}`);
    samples.push({ name: m[1], labels, value: v });
  }
  return samples;
}

// The sum of the samples named `name` whose labels include `labels`.
export function metric(samples, name, labels = {}) {
  const hits = samples.filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  assert.ok(hits.length > 0, `metric ${name}${JSON.stringify(labels)} is missing`);
  return hits.reduce((a, x) => a + x.value, 0);
}

export async function metrics(s) {
  const r = await get(s, '/metrics');
  assert.equal(r.status, 200);
  return parseProm(r.text);
}

// Polls /metrics until the engine is idle: nothing running or waiting, no KV block held by a
// sequence (the prefix cache may keep blocks). Returns the last samples.
export async function waitIdle(s, ms = 5000 * SLOW) {
  const deadline = Date.now() + ms;
  let m;
  for (;;) {
    m = await metrics(s);
    const running = metric(m, 'folio:num_requests_running');
    const waiting = metric(m, 'folio:num_requests_waiting');
    const used = metric(m, 'folio:kv_cache_blocks_used');
    if (running === 0 && waiting === 0 && used === 0) return m;
    if (Date.now() > deadline) {
      assert.fail(`engine not idle after ${ms} ms: running ${running}, waiting ${waiting}, kv_cache_blocks_used ${used}`);
    }
    await sleep(50);
  }
}

export function finishedCounts(m) {
  const r = {};
  for (const reason of ['stop', 'length', 'abort']) {
    r[reason] = metric(m, 'folio:request_success_total', { finished_reason: reason });
  }
  return r;
}

// ---- the openai SDK ----

export function client(s, { apiKey = 'unused', timeout = 30000 * SLOW } = {}) {
  return new OpenAI({ baseURL: `${s.url}/v1`, apiKey, maxRetries: 0, timeout });
}

// The served name of a default server: the --model argument.
export const servedName = (s) => s.modelPath;

// Expects fn() to throw an openai APIError of this class and status; returns it.
export async function expectSdkError(fn, cls, status) {
  let err = null;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err, `expected ${cls.name}, but the call succeeded`);
  assert.ok(err instanceof cls, `expected ${cls.name}, got ${err.constructor.name}: ${err.message}`);
  assert.equal(err.status, status);
  return err;
}

export const nowSec = () => Math.floor(Date.now() / 1000);
export function assertRecent(created) {
  assert.equal(typeof created, 'number');
  assert.ok(Number.isInteger(created), `created ${created} is not an integer`);
  assert.ok(Math.abs(nowSec() - created) < 120, `created ${created} is not near now (${nowSec()})`);
}
