// MaskBench through the engine's fast path (tests/tools/maskbench.c), with the Llama-3 and the
// Qwen3 vocabularies: coverage, the accuracy on valid and invalid instances, and the mask's
// agreement with the matcher. MASKBENCH=0 skips; MASKBENCH_LIMIT=N takes the first N schemas,
// MASKBENCH_EVERY=K every Kth (make test samples; make test-full takes all).
import { spawn } from 'node:child_process';
import path from 'node:path';
import { assert, test } from '../api/lib.mjs';
import { tokenizerDir } from './lib.mjs';

const BIN = path.join(process.env.FOLIO_BUILD || 'build/release', 'maskbench');
const SCHEMAS = process.env.FOLIO_JSONSCHEMA || path.resolve(process.env.FOLIO_TEST_MODELS || '../shared/models', '../jsonschema');

function run(args) {
  return new Promise((resolve) => {
    const p = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    p.on('exit', (code) => resolve({ code, out }));
  });
}

for (const pkg of ['tokenizer-llama3', 'tokenizer-qwen3']) {
  if (process.env.MASKBENCH === '0') break;
  test(`structured: MaskBench with ${pkg}: valid accepted, invalid refused, mask = matcher`, async () => {
    const args = [tokenizerDir(pkg), SCHEMAS, '--quiet'];
    if (process.env.MASKBENCH_LIMIT) args.push('--limit', process.env.MASKBENCH_LIMIT);
    if (process.env.MASKBENCH_EVERY) args.push('--every', process.env.MASKBENCH_EVERY);
    const { code, out } = await run(args);
    const line = out.split('\n').find((l) => l.startsWith('maskbench: '));
    assert.ok(line, out.slice(-3000));
    const v = Object.fromEntries(line.slice(11).split(' ').map((kv) => kv.split('=')).map(([k, x]) => [k, Number(x)]));
    console.log(out.split('\n').filter((l) => l.startsWith('|') || l.startsWith('MaskBench') || l.startsWith('unsupported')).join('\n'));
    assert.equal(v.disagree, 0, 'the mask and accept_token disagree');
    assert.equal(v.valid_ok, v.valid, 'a valid instance of a supported schema was refused');
    // Floors under what this tree reaches (about 96% supported, 99% of invalid instances refused,
    // measured on both vocabularies), so that a regression fails; the issue aims at 95% supported.
    assert.ok(v.supported >= 0.93 * v.files, `only ${v.supported} of ${v.files} schemas supported`);
    assert.ok(v.invalid_refused >= 0.97 * v.invalid, `only ${v.invalid_refused} of ${v.invalid} invalid instances refused`);
    assert.equal(code, 0);
  }, { timeout: 1800000 }); // all 1,743 schemas (make test-full) beside the long fuzz runs
}
