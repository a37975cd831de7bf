// The API suite's entry point: node main.mjs [--only SUBSTR]... [--skip SUBSTR]...
// Imports every test_*.mjs (each registers its tests), runs them one after another, and
// prints "N passed, M failed" as its last line.
import { readdirSync } from 'node:fs';
import { ENGINE, MODELS, here, runAll } from './lib.mjs';
import { existsSync } from 'node:fs';

const only = [];
const skip = [];
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === '--only') only.push(process.argv[++i]);
  else if (a === '--skip') skip.push(process.argv[++i]);
  else {
    console.error(`usage: node main.mjs [--only SUBSTR]... [--skip SUBSTR]...`);
    process.exit(2);
  }
}
if (!existsSync(ENGINE)) {
  console.error(`api: ${ENGINE} not found (set FOLIO_ENGINE)`);
  console.log('0 passed, 1 failed');
  process.exit(1);
}
if (!existsSync(`${MODELS}/stories260K/config.json`)) {
  console.error(`api: no models at ${MODELS} (set FOLIO_TEST_MODELS)`);
  console.log('0 passed, 1 failed');
  process.exit(1);
}
for (const f of readdirSync(here).filter((n) => /^test_.*\.mjs$/.test(n)).sort()) await import(`./${f}`);
const ok = await runAll({ only, skip });
process.exit(ok ? 0 : 1);
