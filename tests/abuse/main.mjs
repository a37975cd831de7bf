// The abuse suite's entry point: node main.mjs [--only SUBSTR]... [--skip SUBSTR]...
// Each test replays one attack of issue 17 against real foliod and folio-engine processes on
// loopback (foliod beside FOLIO_ENGINE); prints "N passed, M failed".
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ENGINE, runAll } from '../api/lib.mjs';
import { FOLIOD } from '../daemon/lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const only = [];
const skip = [];
for (let i = 2; i < process.argv.length; i++) {
  if (process.argv[i] === '--only') only.push(process.argv[++i]);
  else if (process.argv[i] === '--skip') skip.push(process.argv[++i]);
}
for (const bin of [ENGINE, FOLIOD]) {
  if (!existsSync(bin)) {
    console.error(`abuse: ${bin} not found (make builds foliod beside folio-engine)`);
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
}
for (const f of readdirSync(here).filter((n) => /^test_.*\.mjs$/.test(n)).sort()) await import(`./${f}`);
process.exit((await runAll({ only, skip })) ? 0 : 1);
