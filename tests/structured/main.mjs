// The structured-output suite's entry point: node main.mjs [--only SUBSTR]... [--skip SUBSTR]...
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runSuite } from '../api/lib.mjs';

await runSuite(path.dirname(fileURLToPath(import.meta.url)));
