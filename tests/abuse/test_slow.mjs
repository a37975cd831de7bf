// Slow clients (slowloris: connections that never finish their headers), one address opening
// more connections than its share, and a streaming client that stops reading (its KV blocks
// must come back).
import net from 'node:net';
import { STORY, assert, sleep, startServer, stopServer, test } from '../api/lib.mjs';
import { stopFoliod } from '../daemon/lib.mjs';
import {
  addAndLoad, addr, engine, fmetrics, foliod, hreq, mem, mb, sum, waitEngineIdle,
} from './lib.mjs';

// Opens a raw connection that sends `text` and then nothing; tracks when the server ends it.
function idleConn(port, text, localAddress) {
  return new Promise((resolve) => {
    const c = { sock: null, opened: false, closedAt: null, data: '' };
    const sock = net.connect({ host: '127.0.0.1', port, localAddress });
    c.sock = sock;
    sock.on('connect', () => {
      c.opened = true;
      sock.write(text);
      resolve(c);
    });
    sock.on('data', (d) => { c.data += d.toString(); });
    const gone = () => {
      if (c.closedAt === null) c.closedAt = Date.now();
    };
    sock.on('end', gone);
    sock.on('close', gone);
    sock.on('error', () => {
      gone();
      resolve(c);
    });
  });
}

async function healthTimed(s, localAddress) {
  const t0 = Date.now();
  const r = await hreq(s, 'GET', '/health', { localAddress, timeout: 5000 });
  return { status: r.status, ms: Date.now() - t0 };
}

test('abuse: 600 half-sent requests from one address: /health from another answers within 5 s; the idle ones are closed', async () => {
  const s = await foliod({ args: ['--header-timeout', '2'] });
  const t0 = Date.now();
  const conns = await Promise.all(Array.from({ length: 600 }, () => idleConn(s.port, 'GET /health HT')));
  const opened = Date.now();
  // Meanwhile, another client is served, every time.
  const times = [];
  for (let i = 0; i < 10; i++) {
    const h = await healthTimed(s, addr(2));
    assert.equal(h.status, 200);
    times.push(h.ms);
    await sleep(100);
  }
  console.log(`    600 connections opened in ${opened - t0} ms; /health from ${addr(2)}: ${times.join(', ')} ms`);
  assert.ok(times.every((t) => t < 5000), times.join(','));
  // After the header timeout (2 s), every idle connection has been closed by the server.
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline && conns.some((c) => c.closedAt === null)) await sleep(100);
  const open = conns.filter((c) => c.closedAt === null).length;
  const late = conns.filter((c) => c.closedAt !== null && c.closedAt - opened > 8000).length;
  for (const c of conns) c.sock.destroy();
  assert.equal(open, 0, `${open} of 600 idle connections still open 10 s after the 2 s header timeout`);
  assert.equal(late, 0, `${late} connections closed more than 8 s after they went idle`);
  // And the address itself is served again once its connections are gone.
  assert.equal((await healthTimed(s, addr(1))).status, 200);
  await stopFoliod(s);
}, { timeout: 90000 });

test('abuse: --max-connections-per-client: connections past N from one address are closed at once; others are served', async () => {
  const s = await foliod({ args: ['--max-connections-per-client', '8'] });
  const conns = [];
  for (let i = 0; i < 20; i++) conns.push(await idleConn(s.port, 'GET /health HT', addr(3)));
  await sleep(1000);
  // The default header timeout (20 s) has not run out: only the excess was closed.
  const closed = conns.filter((c) => c.closedAt !== null).length;
  for (const c of conns.filter((x) => x.closedAt !== null)) {
    assert.ok(c.data === '' || /^HTTP\/1\.[01] 429/.test(c.data), `a refused connection got: ${c.data.slice(0, 200)}`);
  }
  assert.ok(closed >= 12 && closed <= 13, `${closed} of 20 connections from one address closed (cap 8)`);
  assert.equal((await healthTimed(s, addr(4))).status, 200);
  for (const c of conns) c.sock.destroy();
  await sleep(300);
  assert.equal((await healthTimed(s, addr(3))).status, 200, 'the address is served once its connections are gone');
  await stopFoliod(s);
  // 0 turns the cap off.
  const t = await foliod({ args: ['--max-connections-per-client', '0'] });
  const many = [];
  for (let i = 0; i < 160; i++) many.push(await idleConn(t.port, 'GET /health HT', addr(3)));
  await sleep(1000);
  assert.equal(many.filter((c) => c.closedAt !== null).length, 0, 'cap 0: a connection was closed');
  for (const c of many) c.sock.destroy();
  await stopFoliod(t);
}, { timeout: 90000 });

test('abuse: folio-engine: --header-timeout closes half-sent requests; /health stays served', async () => {
  const s = await startServer({ args: ['--header-timeout', '2', '--max-connections-per-client', '16'] });
  const conns = [];
  for (let i = 0; i < 40; i++) conns.push(await idleConn(s.port, 'POST /v1/completions HTTP/1.1\r\nHost: x\r\n'));
  await sleep(500);
  assert.ok(conns.filter((c) => c.closedAt !== null).length >= 24, 'the engine kept more than 16 connections from one address');
  const h = await hreq(s, 'GET', '/health', { localAddress: addr(2), timeout: 5000 });
  assert.equal(h.status, 200);
  // Its Host allowlist on loopback too (DNS rebinding against a standalone engine).
  assert.equal((await hreq(s, 'GET', '/v1/models', { localAddress: addr(2), headers: { host: 'evil.example' } })).status, 421);
  assert.equal((await hreq(s, 'GET', '/v1/models', { localAddress: addr(2), headers: { host: `localhost:${s.port}` } })).status, 200);
  const deadline = Date.now() + 8000;
  while (Date.now() < deadline && conns.some((c) => c.closedAt === null)) await sleep(100);
  assert.equal(conns.filter((c) => c.closedAt === null).length, 0, 'idle connections outlived the header timeout');
  for (const c of conns) c.sock.destroy();
  // A body that stalls half-way is cut off the same way.
  const stall = await idleConn(s.port, 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"prompt":', addr(5));
  const t0 = Date.now();
  while (Date.now() - t0 < 8000 && stall.closedAt === null) await sleep(100);
  assert.ok(stall.closedAt !== null, 'a stalled body kept its connection');
  stall.sock.destroy();
  await stopServer(s);
}, { timeout: 60000 });

// A streaming request from a client that never reads: with a 2 s header timeout, foliod gives
// up on the client, the engine sees the relay go and aborts the request, and its blocks return.
test('abuse: a stream whose client stops reading is aborted; the engine frees its KV blocks', async () => {
  const s = await foliod({ args: ['--header-timeout', '2'] });
  await addAndLoad(s, 'stories260K');
  const e = await engine(s, 'stories260K');
  const m0 = (await fmetrics(s)).samples;
  const aborts0 = sum(m0, 'folio:request_success_total', { model: 'stories260K', finished_reason: 'abort' });
  const done0 = sum(m0, 'folio:request_success_total', { model: 'stories260K' });
  // 128 samples x 500 tokens x 20 logprobs each: ~100 MB of SSE, far past the socket buffers,
  // and seconds of generation past the 2 s timeout.
  const body = JSON.stringify({
    model: 'stories260K', prompt: STORY.prompt, max_tokens: 500, ignore_eos: true, n: 128, logprobs: 20,
    temperature: 1, stream: true,
  });
  const sock = net.connect({ host: '127.0.0.1', port: s.port });
  await new Promise((r) => sock.on('connect', r));
  sock.pause();
  let got = 0;
  sock.write(`POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:${s.port}\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  const t0 = Date.now();
  // The request starts running...
  let running = 0;
  while (Date.now() - t0 < 10000) {
    running = sum((await fmetrics(s)).samples, 'folio:num_requests_running', { model: 'stories260K' });
    if (running > 0) break;
    await sleep(20);
  }
  // ...and, the client never reading, ends within a bounded time with its blocks freed.
  const samples = await waitEngineIdle(s, 'stories260K', 60000);
  const took = Date.now() - t0;
  const aborts = sum(samples, 'folio:request_success_total', { model: 'stories260K', finished_reason: 'abort' }) - aborts0;
  const done = sum(samples, 'folio:request_success_total', { model: 'stories260K' }) - done0;
  console.log(`    idle after ${took} ms; requests ended: ${done} (aborted ${aborts}); engine VmRSS ${mb(mem(e.pid).rss)}`);
  // The client's socket still unread: what the server sent ends without the stream's [DONE].
  sock.on('data', (d) => { got += d.length; });
  let tail = '';
  sock.on('data', (d) => { tail = (tail + d.toString('latin1')).slice(-200); });
  sock.resume();
  await new Promise((r) => {
    sock.on('close', r);
    setTimeout(r, 10000);
  });
  sock.destroy();
  assert.ok(!/data: \[DONE\]/.test(tail), 'the stalled stream was completed: nothing gave up on the client');
  assert.ok(aborts >= 1, `the engine finished the stalled request instead of aborting it (ended ${done}, aborted ${aborts}); ` +
    'the response fit in the socket buffers, or nothing gave up on the client');
  assert.ok(!/data: \[DONE\]/.test(tail), 'the stalled stream was completed');
  assert.ok(got > 0, 'nothing was sent at all');
  // The engine serves the next request normally.
  const r = await hreq(s, 'POST', '/v1/completions', { body: { model: 'stories260K', prompt: STORY.prompt, max_tokens: 40, temperature: 0 } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.choices[0].text, STORY.text);
  await stopFoliod(s);
}, { timeout: 120000 });
