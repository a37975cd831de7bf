// The console suite's entry point: node main.mjs [--only SUBSTR]... [--skip SUBSTR]... (the node
// tests of admin-ui/lib/chat-stream.js first, then the browser tests)
import { existsSync } from 'node:fs';
import { runAll } from '../api/lib.mjs';
import { FOLIOD } from '../daemon/lib.mjs';
import { CHROMIUM } from './browser.mjs';
import { FIREFOX } from './firefox.mjs';

const only = [];
const skip = [];
for (let i = 2; i < process.argv.length; i++) {
  if (process.argv[i] === '--only') only.push(process.argv[++i]);
  else if (process.argv[i] === '--skip') skip.push(process.argv[++i]);
}
for (const [what, p] of [['foliod', FOLIOD], ['chromium', CHROMIUM], ['firefox', FIREFOX]]) {
  if (!existsSync(p)) {
    console.error(`console: ${what} not found at ${p}`);
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
}
await import('./test_chat_stream.mjs');
await import('./test_console.mjs');
process.exit((await runAll({ only, skip })) ? 0 : 1);
