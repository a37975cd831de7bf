// The newer model families through the whole stack: foliod registers random-weight checkpoints
// in each family's real Hub format (tests/fixtures), spawns their engines, and the openai SDK
// gets, through foliod's proxy, the text `folio-engine generate` gives for the same prompt.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { assert, ENGINE, test } from '../api/lib.mjs';
import { login, req, root, sdk, startFoliod, stopFoliod, waitState } from './lib.mjs';

const FAMILIES = ['qwen3', 'qwen3-moe', 'mixtral', 'gemma2', 'gemma3-mm', 'phi3-longrope'];

test('families: foliod serves Qwen3, Qwen3-MoE, Mixtral, Gemma 2, Gemma 3 (multimodal layout) and Phi-3 checkpoints', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'folio-families-'));
  const s = await startFoliod();
  try {
    const ck = await login(s);
    for (const f of FAMILIES) {
      const d = path.join(dir, f);
      execFileSync('/usr/bin/python3', [path.join(root, 'tests/fixtures/gen_checkpoint.py'), '--out', d, '--preset', f,
        '--dtype', 'BF16', '--seed', '3']);
      const r = await req(s, 'POST', '/api/models', { cookie: ck, body: { name: f, path: d, max_model_len: 128 } });
      assert.equal(r.status, 201, `${f}: ${r.text}`);
    }
    const client = sdk(s);
    for (const f of FAMILIES) {
      const load = await req(s, 'POST', `/api/models/${f}/load`, { cookie: ck });
      assert.equal(load.status, 202, `${f}: ${load.text}`);
      await waitState(s, ck, f, 'ready');
      const prompt = 'The quick brown fox jumps over the lazy dog';
      const want = execFileSync(ENGINE, ['generate', '--model', path.join(dir, f), '--prompt', prompt, '--max-tokens', '12',
        '--temperature', '0', '--ignore-eos'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      const c = await client.completions.create({ model: f, prompt, max_tokens: 12, temperature: 0, ignore_eos: true });
      assert.equal(c.usage.completion_tokens, 12, f);
      assert.equal(c.choices[0].text, want.replace(/\n$/, ''), f);
      // Only one engine at a time on this small machine.
      assert.equal((await req(s, 'POST', `/api/models/${f}/unload`, { cookie: ck })).status, 202, f);
      await waitState(s, ck, f, 'stopped');
    }
  } finally {
    await stopFoliod(s);
    rmSync(dir, { recursive: true, force: true });
  }
}, { timeout: 180000 });
