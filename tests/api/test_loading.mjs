// While the model loads, the server already listens: /health answers 503 {"status":"loading"}
// at once and the API answers 503, however long the load takes. The load is held open for as
// long as the test likes by making config.json a FIFO: the loader blocks opening it until the
// test opens the other end.
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { assert, assertError, get, model, onCleanup, sleep, startServer, test, withTimeout } from './lib.mjs';

function blockedModelDir() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'folio-api-loading-'));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  for (const f of ['generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'])
    symlinkSync(path.join(model('stories260K'), f), path.join(dir, f));
  execFileSync('mkfifo', [path.join(dir, 'config.json')]);
  return dir;
}

async function untilListening(s) {
  for (let i = 0; i < 400; i++) {
    try {
      return await get(s, '/health', { timeout: 1000 });
    } catch {
      await sleep(25);
    }
  }
  throw new Error('the server never listened');
}

test('loading: /health is 503 {"status":"loading"} at once while the model loads; the API is 503', async () => {
  const dir = blockedModelDir();
  const s = await startServer({ model: dir, ready: false });
  const first = await untilListening(s);
  assert.equal(first.status, 503);
  for (let i = 0; i < 5; i++) {
    const t0 = Date.now();
    const h = await get(s, '/health', { timeout: 1000 });
    assert.ok(Date.now() - t0 < 1000, 'a health check must not wait for the load');
    assert.equal(h.status, 503);
    assert.deepEqual(h.json, { status: 'loading' });
    await sleep(50);
  }
  assertError(await get(s, '/v1/models'), 503);
  // Let the loader through: a FIFO is not a regular file, so the load fails, and the server
  // says why and exits 1.
  closeSync(openSync(path.join(dir, 'config.json'), 'w'));
  await withTimeout(s.exited, 20000, 'exit after the failed load');
  assert.equal(s.code, 1);
  assert.match(s.log, /config\.json is not a regular file/);
});

test('loading: SIGTERM while the model loads exits at once', async () => {
  const dir = blockedModelDir();
  const s = await startServer({ model: dir, ready: false });
  assert.equal((await untilListening(s)).status, 503);
  s.proc.kill('SIGTERM');
  await withTimeout(s.exited, 5000, 'exit after SIGTERM while loading');
  assert.equal(s.code, 128 + 15);
  assert.match(s.log, /while loading/);
});
