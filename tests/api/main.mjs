// The API suite's entry point: node main.mjs [--only SUBSTR]... [--skip SUBSTR]...
// Imports every test_*.mjs (each registers its tests), runs them one after another, and
// prints "N passed, M failed" as its last line.
import { existsSync } from 'node:fs';
import { ENGINE, MODELS, here, runSuite } from './lib.mjs';

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
await runSuite(here);
