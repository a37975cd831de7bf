// The daemon suite's entry point: node main.mjs [--only SUBSTR]... [--skip SUBSTR]...
// foliod (beside FOLIO_ENGINE) with real engines on loopback; prints "N passed, M failed".
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runAll } from '../api/lib.mjs';
import { FOLIOD } from './lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const only = [];
const skip = [];
for (let i = 2; i < process.argv.length; i++) {
  if (process.argv[i] === '--only') only.push(process.argv[++i]);
  else if (process.argv[i] === '--skip') skip.push(process.argv[++i]);
}
if (!existsSync(FOLIOD)) {
  console.error(`daemon: ${FOLIOD} not found (make builds it beside folio-engine)`);
  console.log('0 passed, 1 failed');
  process.exit(1);
}
for (const f of readdirSync(here).filter((n) => /^test_.*\.mjs$/.test(n)).sort()) await import(`./${f}`);
process.exit((await runAll({ only, skip })) ? 0 : 1);
