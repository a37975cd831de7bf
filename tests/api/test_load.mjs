// Load and disconnects: 64 concurrent SDK streams and 256 concurrent connections all finish
// correctly and leave the engine idle (no KV block held, nothing running or waiting); clients
// that go away mid-stream, while queued, or while a non-streaming request generates, abort their
// requests, whose blocks come back.
import http from 'node:http';
import {
  assert, client, finishedCounts, get, metric, metrics, post, sleep, STORY, test, waitIdle, withServer, servedName,
  SLOW,
} from './lib.mjs';

// Polls /health while `until` is pending; every answer must come within 1 s.
async function watchHealth(s, until) {
  let worst = 0;
  let n = 0;
  let done = false;
  until.finally(() => { done = true; }).catch(() => {});
  while (!done) {
    const t0 = Date.now();
    const r = await get(s, '/health', { timeout: 5000 });
    assert.equal(r.status, 200);
    worst = Math.max(worst, Date.now() - t0);
    n++;
    await sleep(50);
  }
  assert.ok(worst < 1000 * SLOW, `/health took ${worst} ms under load`);
  return n;
}

test('load: 64 concurrent SDK streams (64 tokens, ignore_eos) all finish well-formed; engine idle afterwards', async () => {
  await withServer({}, async (s) => {
    const sdk = client(s);
    const req = { model: servedName(s), prompt: STORY.prompt, max_tokens: 64, temperature: 0, ignore_eos: true };
    const solo = await sdk.completions.create(req);
    const want = solo.choices[0].text;
    assert.ok(want.startsWith(STORY.text));
    const before = finishedCounts(await metrics(s));
    const one = async () => {
      const stream = await sdk.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
      const chunks = [];
      for await (const c of stream) chunks.push(c);
      const usage = chunks.at(-1);
      assert.deepEqual(usage.choices, []);
      assert.equal(usage.usage.completion_tokens, 64);
      assert.equal(usage.usage.prompt_tokens, 5);
      const content = chunks.slice(0, -1);
      assert.ok(content.length >= 1);
      const fins = content.map((c) => c.choices[0].finish_reason);
      assert.deepEqual(fins.filter(Boolean), ['length'], 'one finish_reason');
      assert.equal(fins.at(-1), 'length', 'on the last content chunk');
      for (const c of chunks) assert.equal(c.id, chunks[0].id);
      return content.map((c) => c.choices[0].text).join('');
    };
    const all = Promise.all(Array.from({ length: 64 }, one));
    const polls = await watchHealth(s, all);
    const texts = await all;
    assert.ok(polls >= 1);
    texts.forEach((t, i) => assert.equal(t, want, `stream ${i}: batched greedy output differs from the solo one`));
    const m = await waitIdle(s);
    assert.equal(metric(m, 'folio:num_requests_running'), 0);
    assert.equal(metric(m, 'folio:num_requests_waiting'), 0);
    assert.equal(metric(m, 'folio:kv_cache_blocks_used'), 0);
    const after = finishedCounts(m);
    assert.equal(after.length - before.length, 64);
    assert.equal(after.abort - before.abort, 0);
  });
}, { timeout: 60000 });

test('load: 256 concurrent connections (non-streaming, 8 tokens) all succeed', async () => {
  await withServer({}, async (s) => {
    const results = await Promise.all(Array.from({ length: 256 }, (_, i) => post(s, '/v1/completions', {
      prompt: i % 2 ? STORY.prompt : STORY.promptIds, max_tokens: 8, ignore_eos: true, temperature: 0,
    }, { timeout: 60000 * SLOW })));
    const bad = results.filter((r) => r.status !== 200);
    assert.equal(bad.length, 0, `${bad.length} failed, e.g. ${bad[0]?.status} ${bad[0]?.text}`);
    for (const r of results) {
      assert.equal(r.json.usage.completion_tokens, 8);
      assert.equal(r.json.choices[0].text, results[0].json.choices[0].text);
    }
    assert.equal(new Set(results.map((r) => r.json.id)).size, 256, 'every response has its own id');
    await waitIdle(s);
  });
}, { timeout: 90000 });

// ---- disconnects ----

// Streams a request over its own socket and destroys the socket after `after` SSE events.
// Resolves { events, completed }.
function streamThenDrop(s, p, body, after) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify({ ...body, stream: true });
    const req = http.request(`${s.url}${p}`, {
      method: 'POST', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) },
    }, (res) => {
      let events = 0;
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        buf += d;
        events = (buf.match(/\n\n/g) || []).length;
        if (events >= after) {
          req.destroy();
          resolve({ events, completed: false, status: res.statusCode });
        }
      });
      res.on('end', () => resolve({ events, completed: true, status: res.statusCode }));
      res.on('error', () => {});
    });
    req.on('error', (e) => (e.code === 'ECONNRESET' ? null : reject(e)));
    const t = setTimeout(() => { req.destroy(); reject(new Error('no events in time')); }, 20000 * SLOW);
    req.on('close', () => clearTimeout(t));
    req.end(data);
  });
}

// A non-streaming request whose socket is destroyed after `ms`, or when `drop` (a promise)
// settles if one is given. Resolves { completed }.
function postThenDrop(s, p, body, ms, drop) {
  return new Promise((resolve) => {
    const data = JSON.stringify(body);
    const req = http.request(`${s.url}${p}`, {
      method: 'POST', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) },
    }, (res) => {
      res.resume();
      res.on('end', () => resolve({ completed: true, status: res.statusCode }));
    });
    req.on('error', () => resolve({ completed: false }));
    const leave = () => { req.destroy(); resolve({ completed: false }); };
    if (drop) drop.then(leave);
    else setTimeout(leave, ms);
    req.end(data);
  });
}

async function countsDelta(s, before, n) {
  const m = await waitIdle(s);
  const after = finishedCounts(m);
  const d = { stop: after.stop - before.stop, length: after.length - before.length, abort: after.abort - before.abort };
  assert.equal(d.stop + d.length + d.abort, n, `every request finished once: ${JSON.stringify(d)}`);
  assert.equal(metric(m, 'folio:kv_cache_blocks_used'), 0);
  return d;
}

test('disconnect: clients that drop mid-stream abort their requests; blocks freed, nothing running', async () => {
  await withServer({}, async (s) => {
    const before = finishedCounts(await metrics(s));
    const N = 8;
    const res = await Promise.all(Array.from({ length: N }, (_, i) => streamThenDrop(s, '/v1/completions', {
      prompt: STORY.prompt, max_tokens: 500, ignore_eos: true, seed: i,
    }, 2)));
    for (const r of res) assert.equal(r.status, 200);
    const d = await countsDelta(s, before, N);
    assert.ok(d.abort >= 1, `request_success_total{finished_reason="abort"} did not go up: ${JSON.stringify(d)}`);
    // The server still serves correctly.
    const ok = await post(s, '/v1/completions', { prompt: STORY.prompt, max_tokens: 40, temperature: 0 });
    assert.equal(ok.json.choices[0].text, STORY.text);
  });
});

test('disconnect: a stream dropped while queued (--max-num-seqs 1) is aborted before it runs', async () => {
  await withServer({ args: ['--max-num-seqs', '1'] }, async (s) => {
    const before = finishedCounts(await metrics(s));
    // Blockers keep the single sequence slot busy for a while.
    const blockers = Array.from({ length: 4 }, () => post(s, '/v1/completions', { prompt: STORY.prompt, max_tokens: 500, ignore_eos: true }));
    await sleep(5);
    // echo sends the prompt as the first event at once, while the request still waits.
    const drops = await Promise.all(Array.from({ length: 6 }, () => streamThenDrop(s, '/v1/completions', {
      prompt: STORY.prompt, max_tokens: 500, ignore_eos: true, echo: true,
    }, 1)));
    for (const r of drops) assert.equal(r.completed, false);
    for (const b of await Promise.all(blockers)) assert.equal(b.json.usage.completion_tokens, 500);
    const d = await countsDelta(s, before, 10);
    assert.equal(d.length, 4, `only the blockers ran to the end: ${JSON.stringify(d)}`);
    assert.equal(d.abort, 6);
  });
});

test('disconnect: non-streaming clients that drop while queued (--max-num-seqs 1) abort their requests', async () => {
  await withServer({ args: ['--max-num-seqs', '1'] }, async (s) => {
    const before = finishedCounts(await metrics(s));
    const N = 8;
    // The clients leave once all eight are in the engine (on a loaded machine a request can
    // take longer than a fixed delay to arrive, and one never submitted is never counted).
    const inEngine = (async () => {
      const deadline = Date.now() + 10000 * SLOW;
      while (Date.now() < deadline) {
        const m = await metrics(s);
        if (metric(m, 'folio:num_requests_running') + metric(m, 'folio:num_requests_waiting') >= N) break;
        await sleep(5);
      }
    })();
    const res = await Promise.all(Array.from({ length: N }, () => postThenDrop(s, '/v1/completions', {
      prompt: STORY.prompt, max_tokens: 500, ignore_eos: true,
    }, 0, inEngine)));
    assert.ok(res.filter((r) => !r.completed).length >= N - 1, 'the clients left before their answers');
    const d = await countsDelta(s, before, N);
    assert.ok(d.abort >= N - 2, `queued requests were not aborted: ${JSON.stringify(d)}`);
    const ok = await post(s, '/v1/completions', { prompt: STORY.prompt, max_tokens: 40, temperature: 0 });
    assert.equal(ok.json.choices[0].text, STORY.text);
  });
});

test('disconnect: a non-streaming request whose client drops while it generates is aborted', async () => {
  await withServer({}, async (s) => {
    // How long one such generation takes alone: the clients must leave well before that.
    const body = { prompt: STORY.prompt, max_tokens: 500, ignore_eos: true };
    const t0 = Date.now();
    await post(s, '/v1/completions', body, { timeout: 60000 * SLOW });
    const aloneMs = Date.now() - t0;
    // The clients leave a quarter of the way into what one generation takes alone (24 of them
    // together take longer still).
    assert.ok(aloneMs >= 20, `one generation took only ${aloneMs} ms: too short to tell`);
    const dropMs = Math.floor(aloneMs / 4);
    const before = finishedCounts(await metrics(s));
    // 24 of them in one batch keep the engine busy; every client leaves after dropMs.
    const N = 24;
    const res = await Promise.all(Array.from({ length: N }, () => postThenDrop(s, '/v1/completions', body, dropMs)));
    assert.ok(res.every((r) => !r.completed), 'the clients left before their answers');
    const d = await countsDelta(s, before, N);
    assert.ok(d.abort >= N / 2, `clients left after ${dropMs} ms of ${aloneMs} ms generations, but only ${d.abort} of ${N} requests were aborted: ${JSON.stringify(d)}`);
  });
}, { timeout: 60000 });
