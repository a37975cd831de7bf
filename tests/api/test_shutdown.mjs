// SIGTERM: the server drains (requests in flight finish, new ones are refused) and exits 0.
import {
  assert, assertError, get, metric, parseProm, post, sleep, startServer, stopServer, STORY, test, SLOW,
} from './lib.mjs';

test('shutdown: SIGTERM lets in-flight requests finish, refuses new ones, exits 0', async () => {
  const s = await startServer({ args: ['--max-num-seqs', '1'] });
  const inflight = Array.from({ length: 4 }, () => post(s, '/v1/completions', {
    prompt: STORY.prompt, max_tokens: 500, ignore_eos: true,
  }, { timeout: 30000 * SLOW }));
  // SIGTERM only once all four are in the engine (on a loaded machine a request can take a
  // while to arrive; one that arrives after SIGTERM is rightly refused).
  const deadline = Date.now() + 10000 * SLOW;
  for (;;) {
    const m = parseProm((await get(s, '/metrics')).text);
    const inEngine = metric(m, 'folio:num_requests_running') + metric(m, 'folio:num_requests_waiting');
    if (inEngine >= 4 || Date.now() > deadline) break;
    await sleep(10);
  }
  const t0 = Date.now();
  s.proc.kill('SIGTERM');
  await sleep(20);
  // A request that arrives while draining: refused with 503, or the socket is already closed.
  try {
    const late = await post(s, '/v1/completions', { prompt: STORY.prompt, max_tokens: 2 }, { timeout: 10000 * SLOW });
    if (s.alive && late.status !== 200) assertError(late, 503);
  } catch (e) {
    assert.ok(/fetch failed|ECONNREFUSED|socket|closed/i.test(`${e.message} ${e.cause?.code}`), String(e));
  }
  for (const r of await Promise.all(inflight)) {
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.usage.completion_tokens, 500);
  }
  await stopServer(s);
  assert.ok(Date.now() - t0 < 15000 * SLOW);
  assert.match(s.log, /draining/);
});
