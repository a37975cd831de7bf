// A headless Chromium per test (Debian's, through playwright-core), closed by the runner's
// cleanup; page errors and console errors are collected so a test can assert there were none.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { onCleanup } from '../api/lib.mjs';

export const CHROMIUM = process.env.FOLIO_CHROMIUM || '/usr/bin/chromium';
export const SHOTS = process.env.FOLIO_UI_SHOTS || 'build/ui-screenshots';
mkdirSync(SHOTS, { recursive: true });

export async function openConsole(s, { width = 1366, height = 900 } = {}) {
  // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  onCleanup(() => browser.close());
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  // Chromium logs every non-2xx answer as a console error; those are the API's (a 401 before
  // login, a refused form) and the tests check them where they matter. Anything else counts.
  page.on('console', (m) => {
    if (m.type() === 'error' && !/^Failed to load resource: the server responded with a status of 4\d\d/.test(m.text())) {
      errors.push(`console: ${m.text()}`);
    }
  });
  const outside = [];
  // Nothing may load from outside the appliance.
  page.on('request', (r) => { if (!r.url().startsWith(s.url)) outside.push(r.url()); });
  await page.goto(`${s.url}/admin/`);
  return { browser, context, page, errors, outside };
}

export async function shot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}
