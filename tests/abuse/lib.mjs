// lib.mjs: helpers for the abuse suite (and the soak): raw HTTP through node:http with any
// Host/Origin and a chosen source address, raw TCP, peak and current RSS from /proc, the
// Prometheus text of foliod's /metrics, and foliod started with an admin token. The runner
// and the server helpers come from the API and daemon suites (tests/api/lib.mjs,
// tests/daemon/lib.mjs).
import { readFileSync } from 'node:fs';
import nodeHttp from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { assert, MODELS, parseProm, sleep, SLOW } from '../api/lib.mjs';
import { startFoliod, PASSWORD } from '../daemon/lib.mjs';

export { PASSWORD };
// Long enough for the ≥ 32-character rule on configured tokens and keys.
export const ADMIN_TOKEN = 'abuse-admin-token-0123456789abcdef-0123456789';
export const BEARER = { authorization: `Bearer ${ADMIN_TOKEN}` };
export const MiB = 1 << 20;

// /proc/PID/status: { hwm, rss } in bytes (VmHWM: the peak resident set; VmRSS: now).
export function mem(pid) {
  const st = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => {
    const m = new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(st);
    assert.ok(m, `no ${k} in /proc/${pid}/status`);
    return Number(m[1]) * 1024;
  };
  return { hwm: kb('VmHWM'), rss: kb('VmRSS') };
}
export const mb = (b) => `${(b / MiB).toFixed(1)} MiB`;

// One HTTP request on its own connection (no keep-alive pool), with any headers (Host and
// Origin included) and an optional local address. Resolves { status, headers, text, json };
// rejects on a socket error or after `timeout` ms.
export function hreq(s, method, p, { headers = {}, body, localAddress, timeout = 30000 * SLOW, port } = {}) {
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    let data;
    if (body !== undefined) {
      data = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
      if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['content-type'] = 'application/json';
      h['content-length'] = Buffer.byteLength(data);
    }
    const rq = nodeHttp.request({
      host: '127.0.0.1', port: port || s.port, method, path: p, headers: h, agent: false, localAddress,
      setHost: !Object.keys(h).some((k) => k.toLowerCase() === 'host'),
    }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => {
        clearTimeout(timer);
        const text = Buffer.concat(chunks).toString();
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        // headers.get(name) as well, like fetch's (assertError uses it).
        const headers = { ...res.headers };
        Object.defineProperty(headers, 'get', { value: (n) => res.headers[n.toLowerCase()] ?? null });
        resolve({ status: res.statusCode, headers, text, json });
      });
      res.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    const timer = setTimeout(() => {
      rq.destroy();
      reject(new Error(`${method} ${p}: no answer in ${timeout} ms`));
    }, timeout);
    rq.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    if (data !== undefined) rq.write(data);
    rq.end();
  });
}

// The Origin a browser on foliod's own page sends.
export const sameOrigin = (s) => `http://127.0.0.1:${s.port}`;

// A request with the console's session cookie, sent as the console in a browser sends it
// (its own Origin; JSON bodies).
export function creq(s, cookie, method, p, body, extra = {}) {
  return hreq(s, method, p, { body, headers: { cookie, origin: sameOrigin(s), ...extra } });
}

export async function clogin(s, password = PASSWORD, localAddress) {
  const r = await hreq(s, 'POST', '/api/login', { body: { password }, headers: { origin: sameOrigin(s) }, localAddress });
  assert.equal(r.status, 200, `login: ${r.status} ${r.text}`);
  const sc = [].concat(r.headers['set-cookie'] || [])[0];
  assert.ok(sc, 'no Set-Cookie');
  return sc.split(';')[0];
}

// Sends `head` then a body of `bodyLen` bytes: `prefix`, then `fill` repeated (64 KiB writes
// that wait for drain), then `suffix`, over a raw socket (chunked when asked), and stops
// writing as soon as any response byte arrives (a server that answers early and closes then
// need not reset the connection). Resolves { status, text, sent, why }.
export function rawUpload(port, head, bodyLen, {
  fill = 'a', prefix = '', suffix = '', chunked = false, localAddress, timeout = 60000 * SLOW,
} = {}) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port, localAddress });
    let out = '';
    let sent = 0;
    let answered = false;
    let finished = false;
    const finish = (why) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      sock.destroy();
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(out);
      resolve({ status: m ? Number(m[1]) : null, text: out, sent, why });
    };
    const timer = setTimeout(() => finish('timeout'), timeout);
    const piece = Buffer.alloc(64 * 1024, fill);
    const pre = Buffer.from(prefix);
    const suf = Buffer.from(suffix);
    const pump = () => {
      while (!answered && sent < bodyLen) {
        let buf;
        if (sent === 0 && pre.length) buf = pre;
        else if (bodyLen - sent <= suf.length) buf = suf.subarray(suf.length - (bodyLen - sent));
        else buf = piece.subarray(0, Math.min(piece.length, bodyLen - sent - suf.length));
        const n = buf.length;
        if (chunked) buf = Buffer.concat([Buffer.from(`${n.toString(16)}\r\n`), buf, Buffer.from('\r\n')]);
        sent += n;
        if (!sock.write(buf)) return sock.once('drain', pump);
      }
      if (!answered && chunked && sent >= bodyLen) sock.write('0\r\n\r\n');
    };
    sock.on('connect', () => {
      sock.write(head);
      pump();
    });
    sock.on('data', (d) => {
      answered = true;
      out += d.toString('latin1');
      // The whole response is in once its headers and Content-Length bytes are.
      const i = out.indexOf('\r\n\r\n');
      const cl = /\r\ncontent-length:\s*(\d+)/i.exec(out);
      if (i >= 0 && cl && out.length >= i + 4 + Number(cl[1])) finish('answered');
    });
    sock.on('end', () => finish('end'));
    sock.on('close', () => finish('close'));
    sock.on('error', () => finish('error'));
  });
}

// The registered model dir for a shared test model.
export const modelPath = (name) => path.join(MODELS, name);

// foliod with the admin token configured (bearer requests need no Origin).
export function foliod(opts = {}) {
  return startFoliod({ ...opts, env: { FOLIO_ADMIN_TOKEN: ADMIN_TOKEN, ...(opts.env || {}) } });
}

// Registers (and loads, unless load: false) a shared model through the admin token.
export async function addAndLoad(s, name, extra = {}, { load = true } = {}) {
  const r = await hreq(s, 'POST', '/api/models', {
    headers: BEARER, body: { name, path: modelPath(name), kv_cache_space: 0.25, ...extra },
  });
  assert.equal(r.status, 201, `register ${name}: ${r.status} ${r.text}`);
  if (!load) return r.json;
  const l = await hreq(s, 'POST', `/api/models/${encodeURIComponent(name)}/load`, { headers: BEARER });
  assert.equal(l.status, 202, `load ${name}: ${l.status} ${l.text}`);
  return waitModel(s, name, 'ready');
}

export async function waitModel(s, name, state, ms = 30000 * SLOW) {
  const deadline = Date.now() + ms;
  let m;
  while (Date.now() < deadline) {
    const r = await hreq(s, 'GET', `/api/models/${encodeURIComponent(name)}`, { headers: BEARER });
    m = r.json;
    if (r.status === 200 && m.state === state) return m;
    await sleep(50);
  }
  throw new Error(`model ${name} did not reach ${state} in ${ms} ms (last: ${JSON.stringify(m)})`);
}

export async function engines(s) {
  const r = await hreq(s, 'GET', '/api/status', { headers: BEARER });
  assert.equal(r.status, 200, r.text);
  return r.json.engines;
}
export async function engine(s, name) {
  const e = (await engines(s)).find((x) => x.model === name);
  assert.ok(e, `no engine for ${name}`);
  return e;
}

// foliod's /metrics (foliod's own and every engine's, labelled by model), parsed.
export async function fmetrics(s, opts = {}) {
  const r = await hreq(s, 'GET', '/metrics', opts);
  assert.equal(r.status, 200, r.text);
  return { samples: parseProm(r.text), text: r.text };
}
export const sum = (samples, name, labels = {}) => samples
  .filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v))
  .reduce((a, x) => a + x.value, 0);
export const has = (samples, name, labels = {}) => samples
  .some((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));

// Polls foliod's /metrics until `model`'s engine runs and waits for nothing and holds no KV
// block for a sequence; returns the samples. Fails after ms.
export async function waitEngineIdle(s, model, ms = 20000 * SLOW) {
  const deadline = Date.now() + ms;
  let last = '';
  for (;;) {
    const { samples } = await fmetrics(s);
    const l = { model };
    if (has(samples, 'folio:num_requests_running', l)) {
      const running = sum(samples, 'folio:num_requests_running', l);
      const waiting = sum(samples, 'folio:num_requests_waiting', l);
      const used = sum(samples, 'folio:kv_cache_blocks_used', l);
      const usage = sum(samples, 'folio:kv_cache_usage_perc', l);
      last = `running ${running}, waiting ${waiting}, kv_cache_blocks_used ${used}, kv_cache_usage_perc ${usage}`;
      if (running === 0 && waiting === 0 && used === 0 && usage === 0) return samples;
    } else {
      last = `no metrics for ${model}`;
    }
    if (Date.now() > deadline) assert.fail(`engine of ${model} not idle after ${ms} ms: ${last}`);
    await sleep(100);
  }
}

// Loopback addresses beyond 127.0.0.1 (Linux routes all of 127/8 to lo).
export const addr = (i) => `127.0.0.${i}`;
