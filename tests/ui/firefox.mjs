// Firefox through its own remote protocol, Marionette (built into Debian's firefox-esr):
// playwright-core drives only its patched Firefox builds, and there is no geckodriver in
// Debian, so the console's Firefox check speaks the protocol directly. Frames are
// "<length>:<JSON>"; a command is [0, id, name, params], its answer [1, id, error, result].
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { onCleanup, sleep } from '../api/lib.mjs';

export const FIREFOX = process.env.FOLIO_FIREFOX || '/usr/bin/firefox-esr';

export async function launchFirefox() {
  const profile = mkdtempSync(path.join(os.tmpdir(), 'folio-ff-'));
  writeFileSync(path.join(profile, 'user.js'), 'user_pref("marionette.port", 0);\n'); // any free port
  const proc = spawn(FIREFOX, ['--headless', '--marionette', '--no-remote', '--profile', profile],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr.on('data', (d) => { log += d; });
  const exited = new Promise((r) => proc.on('exit', r));
  onCleanup(async () => {
    proc.kill('SIGKILL');
    await exited;
    rmSync(profile, { recursive: true, force: true });
  });
  const portFile = path.join(profile, 'MarionetteActivePort');
  for (let i = 0; i < 300 && !existsSync(portFile); i++) await sleep(100);
  if (!existsSync(portFile)) throw new Error(`firefox did not open Marionette:\n${log.slice(-2000)}`);
  const sock = net.connect(Number(readFileSync(portFile, 'utf8')), '127.0.0.1');
  let buf = '';
  let greeted;
  const greeting = new Promise((r) => { greeted = r; });
  const waiting = new Map();
  sock.on('data', (d) => {
    buf += d.toString();
    for (;;) {
      const colon = buf.indexOf(':');
      const n = colon < 0 ? -1 : Number(buf.slice(0, colon));
      if (n < 0 || buf.length < colon + 1 + n) return;
      const msg = JSON.parse(buf.slice(colon + 1, colon + 1 + n));
      buf = buf.slice(colon + 1 + n);
      if (!Array.isArray(msg)) greeted(msg);
      else waiting.get(msg[1])?.(msg);
    }
  });
  await greeting;
  let id = 0;
  const cmd = (name, params = {}) => new Promise((resolve, reject) => {
    const m = JSON.stringify([0, ++id, name, params]);
    waiting.set(id, (msg) => (msg[2] ? reject(new Error(`${name}: ${msg[2].message}`)) : resolve(msg[3])));
    sock.write(`${Buffer.byteLength(m)}:${m}`);
  });
  onCleanup(() => sock.destroy());
  await cmd('WebDriver:NewSession', { capabilities: {} });
  return {
    cmd,
    goto: (url) => cmd('WebDriver:Navigate', { url }),
    // Runs a function body in the page; `arguments` holds args.
    run: async (script, ...args) => (await cmd('WebDriver:ExecuteScript', { script, args })).value,
    size: (width, height) => cmd('WebDriver:SetWindowRect', { width, height }),
    screenshot: async (file) => {
      const r = await cmd('WebDriver:TakeScreenshot', { full: true, hash: false });
      writeFileSync(file, Buffer.from(r.value, 'base64'));
    },
  };
}

// Polls fn (a page-side function body returning a truthy value) until it holds.
export async function until(ff, script, ms, what) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await ff.run(script).catch((e) => `error: ${e.message}`);
    if (last && !(typeof last === 'string' && last.startsWith('error:'))) return last;
    await sleep(100);
  }
  throw new Error(`firefox: ${what} did not happen (last: ${JSON.stringify(last)})`);
}
