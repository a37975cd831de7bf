// Memory attacks: huge bodies to an unauthenticated endpoint, and small requests that the
// engine used to amplify (every sample of every prompt building its own stop automaton). Peak
// (VmHWM) and current (VmRSS) resident memory are read from /proc before and after.
import { readFileSync } from 'node:fs';
import { STORY, assert, assertError, sleep, startServer, stopServer, test } from '../api/lib.mjs';
import { stopFoliod } from '../daemon/lib.mjs';
import {
  addAndLoad, BEARER, clogin, engine, foliod, hreq, mb, mem, MiB, rawUpload, waitEngineIdle,
} from './lib.mjs';

const loginHead = (port, len, extra = '') => `POST /api/login HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
  `Content-Type: application/json\r\n${extra}${len === null ? 'Transfer-Encoding: chunked\r\n' : `Content-Length: ${len}\r\n`}` +
  'Connection: close\r\n\r\n';

test('abuse: 4 concurrent 15 MiB bodies to POST /api/login: 413 each, foliod\'s peak RSS grows < 64 MB', async () => {
  const s = await foliod();
  const before = mem(s.proc.pid);
  const len = 15 * MiB;
  // Valid JSON that costs the most to parse: 7.8 million array elements.
  const json = { prefix: '{"password":"x","pad":[', fill: '0,', suffix: '0]}' };
  // Content-Length announced: refused before the body is read.
  const rs = await Promise.all(Array.from({ length: 4 }, () => rawUpload(s.port, loginHead(s.port, len), len, json)));
  // Chunked: counted while read, refused once past 4 KiB.
  const cs = await Promise.all(Array.from({ length: 4 }, () => rawUpload(s.port, loginHead(s.port, null), len, { ...json, chunked: true })));
  // Just over the limit, announced.
  const over = await hreq(s, 'POST', '/api/login', { body: JSON.stringify({ password: 'x'.repeat(4200) }) });
  const after = mem(s.proc.pid);
  const grew = after.hwm - before.hwm;
  console.log(`    foliod VmHWM ${mb(before.hwm)} -> ${mb(after.hwm)} (+${mb(grew)}); body bytes sent before the answer: ` +
    `${[...rs, ...cs].map((r) => mb(r.sent)).join(', ')}`);
  for (const r of rs) assert.equal(r.status, 413, `Content-Length 15 MiB: ${r.why} ${r.text.slice(0, 300)}`);
  for (const r of cs) assert.equal(r.status, 413, `chunked 15 MiB: ${r.why} ${r.text.slice(0, 300)}`);
  assert.equal(over.status, 413, over.text);
  assert.ok(grew < 64 * MiB, `foliod's peak RSS grew by ${mb(grew)}`);
  // The server is still fine, and a real login works.
  await clogin(s);
  await stopFoliod(s);
}, { timeout: 120000 });

// Through foliod, with the model's engine limited to 16 sequences.
// assertError, with a short message when the status is wrong (a 200 here is 64 completions).
function refused(r, status, opts) {
  assert.equal(r.status, status, `expected ${status}, got ${r.status}: ${r.text.slice(0, 300)}`);
  return assertError(r, status, opts);
}

const BASE = { model: 'stories260K', max_tokens: 16, temperature: 1 };
const prompts = (k) => Array.from({ length: k }, (_, i) => `${STORY.prompt} ${i}`);
const stops = (k, size) => Array.from({ length: k }, (_, i) => `${String.fromCharCode(65 + (i % 26))}${'z'.repeat(size - 1)}`);

test('abuse: the 1 MB amplifying /v1/completions is refused (400), at-the-limit requests return their memory', async () => {
  const s = await foliod();
  await addAndLoad(s, 'stories260K', { max_num_seqs: 16 });
  const e = await engine(s, 'stories260K');
  const v1 = (body) => hreq(s, 'POST', '/v1/completions', { body, timeout: 120000 });
  // Warm-up: the allocator's arenas and the prefix cache settle.
  for (let i = 0; i < 3; i++) {
    const w = await v1({ ...BASE, prompt: prompts(4), n: 4, stop: stops(16, 1024) });
    assert.equal(w.status, 200, w.text);
  }
  await waitEngineIdle(s, 'stories260K');
  const m0 = mem(e.pid);
  // The attack: 8 prompts x n=8 x 16 stop strings of 64 KB = a 1 MB body.
  const attack = { ...BASE, prompt: prompts(8), n: 8, stop: stops(16, 64 * 1024), max_tokens: 64 };
  const body = JSON.stringify(attack);
  assert.ok(body.length > MiB && body.length < 1.1 * MiB, `${body.length}`);
  const r = await v1(attack);
  const ma = mem(e.pid);
  console.log(`    the 1 MB request: ${r.status}; engine VmHWM ${mb(m0.hwm)} -> ${mb(ma.hwm)}, VmRSS ${mb(m0.rss)} -> ${mb(ma.rss)}`);
  refused(r, 400);
  assert.ok(['stop', 'n'].includes(r.json.error.param), r.text);
  // Each limit alone (defaults 16384 stop bytes, 1024 stop ids; prompts x n <= max_num_seqs).
  refused(await v1({ ...BASE, prompt: 'x', stop: stops(4, 4097) }), 400, { param: 'stop' });
  refused(await v1({ ...BASE, prompt: 'x', stop_token_ids: Array.from({ length: 1025 }, (_, i) => 3 + (i % 500)) }), 400,
    { param: 'stop_token_ids' });
  refused(await v1({ ...BASE, prompt: prompts(4), n: 5 }), 400, { param: 'n' });
  refused(await v1({ ...BASE, prompt: prompts(17) }), 400);
  // At the limits: 4 prompts x n=4 = 16 sequences, 16384 stop bytes, 1024 stop ids: all complete.
  const valid = await v1({ ...BASE, prompt: prompts(4), n: 4, stop: stops(16, 1024), max_tokens: 64 });
  assert.equal(valid.status, 200, valid.text);
  assert.equal(valid.json.choices.length, 16);
  const ids = await v1({ ...BASE, prompt: 'x', stop_token_ids: Array.from({ length: 1024 }, (_, i) => 3 + (i % 500)), max_tokens: 8 });
  assert.equal(ids.status, 200, ids.text);
  await waitEngineIdle(s, 'stories260K');
  const m1 = mem(e.pid);
  console.log(`    engine VmRSS ${mb(m0.rss)} -> ${mb(m1.rss)} after the valid requests (VmHWM ${mb(m0.hwm)} -> ${mb(m1.hwm)})`);
  assert.ok(m1.rss <= m0.rss * 1.2 + 8 * MiB, `engine RSS ${mb(m0.rss)} -> ${mb(m1.rss)} after requests at the limits`);
  // Many oversized attempts in a row: refused, and RSS does not grow.
  for (let i = 0; i < 40; i++) refused(await v1(attack), 400);
  await Promise.all(Array.from({ length: 8 }, () => v1(attack).then((x) => refused(x, 400))));
  await waitEngineIdle(s, 'stories260K');
  const m2 = mem(e.pid);
  console.log(`    engine VmRSS ${mb(m1.rss)} -> ${mb(m2.rss)} after 48 oversized attempts (VmHWM -> ${mb(m2.hwm)})`);
  assert.ok(m2.rss <= m1.rss * 1.2 + 8 * MiB, `engine RSS ${mb(m1.rss)} -> ${mb(m2.rss)} after oversized attempts`);
  assert.ok(m2.hwm - m0.hwm < 128 * MiB, `engine peak RSS grew by ${mb(m2.hwm - m0.hwm)}`);
  // Still serving.
  const after = await v1({ model: 'stories260K', prompt: STORY.prompt, max_tokens: 40, temperature: 0 });
  assert.equal(after.status, 200, after.text);
  assert.equal(after.json.choices[0].text, STORY.text);
  await stopFoliod(s);
}, { timeout: 180000 });

test('abuse: folio-engine\'s own limits (--max-stop-bytes, --max-stop-token-ids, --max-logit-bias, --max-json-values, body size)', async () => {
  const s = await startServer({
    args: ['--max-num-seqs', '8', '--max-stop-bytes', '1000', '--max-stop-token-ids', '100', '--max-logit-bias', '100',
      '--max-json-values', '5000', '--max-request-body', '1'],
  });
  const v1 = (body) => hreq(s, 'POST', '/v1/completions', { body });
  const b = { model: s.modelPath, prompt: 'x', max_tokens: 4, temperature: 0 };
  const ok = async (body) => {
    const r = await v1(body);
    assert.equal(r.status, 200, r.text);
  };
  await ok({ ...b, stop: ['a'.repeat(500), 'b'.repeat(500)] });
  refused(await v1({ ...b, stop: ['a'.repeat(500), 'b'.repeat(501)] }), 400, { param: 'stop' });
  await ok({ ...b, stop_token_ids: Array.from({ length: 100 }, (_, i) => 3 + i) });
  refused(await v1({ ...b, stop_token_ids: Array.from({ length: 101 }, (_, i) => 3 + i) }), 400, { param: 'stop_token_ids' });
  const bias = (k) => Object.fromEntries(Array.from({ length: k }, (_, i) => [String(3 + i), 0.5]));
  await ok({ ...b, logit_bias: bias(100) });
  refused(await v1({ ...b, logit_bias: bias(101) }), 400, { param: 'logit_bias' });
  await ok({ ...b, prompt: prompts(2), n: 4 });
  refused(await v1({ ...b, prompt: prompts(3), n: 3 }), 400, { param: 'n' });
  refused(await v1({ ...b, n: 9 }), 400, { param: 'n' });
  // JSON values: an ignored array of 6000 numbers is past 5000 values.
  const many = await v1({ ...b, user: 'u', extra_values: Array.from({ length: 6000 }, () => 0) });
  assert.equal(many.status, 413, many.text);
  // Over 1 MiB of body: 413, announced or chunked.
  const head = (len) => `POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:${s.port}\r\nContent-Type: application/json\r\n` +
    `${len === null ? 'Transfer-Encoding: chunked' : `Content-Length: ${len}`}\r\nConnection: close\r\n\r\n`;
  assert.equal((await rawUpload(s.port, head(2 * MiB), 2 * MiB)).status, 413);
  assert.equal((await rawUpload(s.port, head(null), 2 * MiB, { chunked: true })).status, 413);
  await ok(b);
  await stopServer(s);
}, { timeout: 60000 });

test('abuse: deeply nested JSON bodies (800 to 20000 levels) get 4xx, and neither foliod nor the engine falls over', async () => {
  const s = await foliod();
  await addAndLoad(s, 'stories260K');
  const e = await engine(s, 'stories260K');
  const deep = (n) => `{"model":"stories260K","prompt":${'['.repeat(n)}${']'.repeat(n)}}`;
  const e1 = e;
  const bad = [];
  // The engine directly too, with its secret (foliod passes it in the environment).
  const secret = readFileSync(`/proc/${e1.pid}/environ`).toString().split('\0').find((x) => x.startsWith('FOLIO_API_KEY='))?.slice(14);
  for (const n of [800, 1000, 20000]) {
    const d = await hreq(s, 'POST', '/v1/completions', { port: e1.port, body: deep(n), headers: secret ? { authorization: `Bearer ${secret}` } : {} })
      .catch((x) => ({ status: x.message, text: '' }));
    if (!(d.status >= 400 && d.status < 500)) bad.push(`engine direct, depth ${n}: ${d.status} ${d.text.slice(0, 120)}`);
  }
  await sleep(200);
  let engineAlive = true;
  try {
    process.kill(e1.pid, 0);
  } catch {
    engineAlive = false;
  }
  if (!engineAlive) bad.push(`the engine (pid ${e1.pid}) died on the direct requests`);
  const cases = [];
  for (const n of [800, 999, 1000, 1001, 20000]) cases.push(['/v1/completions', deep(n)], ['/v1/chat/completions', deep(n)]);
  cases.push(['/api/login', `{"password":${'{"a":'.repeat(600)}1${'}'.repeat(600)}}`],
    ['/v1/completions', `{"model":"stories260K","prompt":"x","stop":${'['.repeat(900)}${']'.repeat(900)}}`],
    ['/v1/completions', `{"model":"stories260K","prompt":"x","logit_bias":${'{"1":'.repeat(900)}1${'}'.repeat(900)}}`],
    ['/api/models', deep(20000)], ['/api/models', deep(900)]);
  for (const [p, body] of cases) {
    const r = await hreq(s, 'POST', p, { body, headers: p === '/api/models' ? BEARER : {} }).catch((x) => ({ status: x.message, text: '' }));
    if (!(r.status >= 400 && r.status < 500)) bad.push(`${p} (${body.length} bytes): ${r.status} ${r.text.slice(0, 120)}`);
    if (process.env.ABUSE_VERBOSE) console.log(`    ${p} (${body.length} bytes): ${r.status} ${r.text.slice(0, 150)}`);
    await sleep(50);
    assert.ok(s.alive, `foliod died (code ${s.code}, signal ${s.signal}) on a nested body to ${p} (${body.length} bytes); ` +
      `before that:\n${bad.join('\n')}\n${s.log.slice(-2000)}`);
  }
  const e2 = await engine(s, 'stories260K');
  assert.deepEqual(bad, [], `nested bodies not refused with a 4xx:\n${bad.join('\n')}`);
  assert.equal(e2.pid, e1.pid, `the engine was restarted (pid ${e1.pid} -> ${e2.pid}, restarts ${e2.restarts}): it crashed`);
  const ok = await hreq(s, 'POST', '/v1/completions', { body: { model: 'stories260K', prompt: STORY.prompt, max_tokens: 40, temperature: 0 } });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.json.choices[0].text, STORY.text);
  await stopFoliod(s);
}, { timeout: 90000 });
