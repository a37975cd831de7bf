// The admin console in Chromium against a real foliod with real engines on the shared models:
// login, the live dashboard under load (and "no GPU" here), pulling a model from the Hub
// look-alike and activating it, the playground's streamed chat, API keys used from outside,
// escaping of what the server sends, reconnecting after a foliod restart; a screenshot of
// each page.
import { execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { assert, MODELS, sleep, SLOW, STORY, test } from '../api/lib.mjs';
import { startHub } from '../daemon/hub_server.mjs';
import {
  addModel, dataDir, here, load, login, PASSWORD, req, sdk, startFoliod, stopFoliod,
} from '../daemon/lib.mjs';
import { openConsole, shot, SHOTS } from './browser.mjs';
import { launchFirefox, until } from './firefox.mjs';

// Inline template text: a file outside the model directory is refused (it could be read back).
const TEMPLATE = readFileSync(path.join(here, '../api/templates/story.jinja'), 'utf8').trim();
const T = 15000 * SLOW; // a UI wait

async function signIn(page, password = PASSWORD) {
  await page.fill('#password', password);
  await page.click('#login-form button[type=submit], #login-form input[type=submit]');
}

// foliod with stories260K and aidreams260K loaded, stories260K the default.
async function twoModels(extraEnv = {}) {
  const s = await startFoliod({ env: extraEnv });
  const ck = await login(s);
  await addModel(s, ck, 'stories260K', { chat_template: TEMPLATE });
  await addModel(s, ck, 'aidreams260K', { chat_template: TEMPLATE });
  await Promise.all([load(s, ck, 'stories260K'), load(s, ck, 'aidreams260K')]);
  const a = await req(s, 'POST', '/api/models/stories260K/activate', { cookie: ck });
  assert.equal(a.status, 200, a.text);
  return { s, ck };
}

test('console: login fails with a wrong password, succeeds with the right one; logout', async () => {
  const s = await startFoliod();
  const { page, errors, outside } = await openConsole(s);
  await shot(page, 'login');
  await signIn(page, 'not the password');
  await page.locator('#login-error').filter({ hasText: /./ }).waitFor({ timeout: T });
  assert.equal(await page.locator('#logout').isVisible(), false);
  await signIn(page);
  await page.locator('#logout').waitFor({ timeout: T });
  await page.locator('#conn-status', { hasText: 'Live' }).waitFor({ timeout: T });
  await page.click('#logout');
  await page.locator('#login-form').waitFor({ timeout: T });
  assert.equal((await req(s, 'GET', '/api/status')).status, 401);
  assert.deepEqual(errors.filter((e) => !/401/.test(e)), []);
  assert.deepEqual(outside, []);
  await stopFoliod(s);
}, { timeout: 60000 });

test('console: the dashboard shows both engines live, moving under load, and says there is no GPU', async () => {
  const { s } = await twoModels();
  const { page, errors, outside } = await openConsole(s);
  await signIn(page);
  for (const m of ['stories260K', 'aidreams260K']) {
    await page.locator(`#engines [data-engine="${m}"] [data-field="state"]`, { hasText: 'ready' }).waitFor({ timeout: T });
  }
  await page.locator('#gpus', { hasText: 'No GPU' }).waitFor({ timeout: T });
  await page.locator('#default-model', { hasText: 'stories260K' }).waitFor({ timeout: T });
  // A load generator: rounds of concurrent requests until the dashboard's running figure
  // rises above 0 (its snapshots come every second or so); then it must fall back to 0.
  const client = sdk(s);
  let stop = false;
  const gen = (async () => {
    while (!stop) {
      await Promise.all(Array.from({ length: 32 }, () => client.completions.create({
        model: 'stories260K', prompt: STORY.prompt, max_tokens: 400, temperature: 1, ignore_eos: true,
      }).catch(() => null)));
    }
  })();
  const running = page.locator('#engines [data-engine="stories260K"] [data-field="running"]');
  let peak = 0;
  for (let i = 0; i < 400 && peak === 0; i++) {
    peak = Math.max(peak, Number((await running.textContent()).trim()) || 0);
    await sleep(50);
  }
  stop = true;
  await gen;
  assert.ok(peak > 0, 'the running figure never moved under load');
  const kv = await page.locator('#engines [data-engine="stories260K"] [data-field="kv"]').textContent();
  assert.match(kv, /%/);
  await page.locator('#engines [data-engine="stories260K"] [data-field="running"]', { hasText: /^\s*0\s*$/ })
    .waitFor({ timeout: T });
  for (const id of ['#chart-tps', '#chart-queue', '#chart-ttft']) assert.ok(await page.locator(id).count(), id);
  await shot(page, 'dashboard');
  await page.setViewportSize({ width: 768, height: 1024 });
  await shot(page, 'dashboard-tablet');
  assert.deepEqual(errors, []);
  assert.deepEqual(outside, []);
  await stopFoliod(s);
}, { timeout: 120000 });

test('console: add a model from the Hub, watch the pull reach 100%, load it, activate it: `default` moves', async () => {
  const hub = await startHub({ repos: { 'folio-test/aidreams260K': path.join(MODELS, 'aidreams260K') } });
  hub.setFault({ repo: 'folio-test/aidreams260K', file: 'model.safetensors', kind: 'slow', bytesPerSec: 300000, times: Infinity });
  const { s, ck } = await twoModels({ HF_ENDPOINT: hub.url, HF_TOKEN: '' });
  const { page, errors } = await openConsole(s);
  await signIn(page);
  await page.click('a[data-nav="models"]');
  const form = page.locator('form#add-model');
  await form.locator('[name=name]').fill('dreams-hub');
  await form.locator('[name=repo_id]').fill('not a repo id');
  await form.locator('.field-error').filter({ hasText: /./ }).first().waitFor({ timeout: T });
  await form.locator('[name=repo_id]').fill('folio-test/aidreams260K');
  await form.locator('[name=kv_cache_space]').fill('0.25');
  await form.locator('[name=chat_template]').fill(TEMPLATE);
  await page.locator('#fit-estimate', { hasText: /fits|KV/i }).waitFor({ timeout: T });
  await page.click('#add-submit');
  const row = page.locator('#models [data-model="dreams-hub"]');
  await row.waitFor({ timeout: T });
  await row.locator('[data-action="pull"]').click();
  await row.locator('.progress', { hasText: /\b([1-9]\d?)%/ }).waitFor({ timeout: T }); // moving
  await shot(page, 'models-pulling');
  await row.locator('.progress', { hasText: '100%' }).waitFor({ timeout: 30000 * SLOW });
  await row.locator('[data-action="load"]').click();
  await row.locator('[data-field="state"]', { hasText: 'ready' }).waitFor({ timeout: 30000 * SLOW });
  await row.locator('[data-action="activate"]').click();
  await page.locator('dialog#confirm[open]').waitFor({ timeout: T });
  await page.click('#confirm-ok');
  for (let i = 0; i < 300; i++) {
    const st = await req(s, 'GET', '/api/status', { cookie: ck });
    if (st.json.default_model === 'dreams-hub') break;
    await sleep(50);
  }
  await page.click('a[data-nav="dashboard"]');
  await page.locator('#default-model', { hasText: 'dreams-hub' }).waitFor({ timeout: T });
  const c = await sdk(s).completions.create({ model: 'default', prompt: 'I dreamed', max_tokens: 8, temperature: 0 });
  assert.ok(c.choices[0].text.startsWith(', as I sense'), c.choices[0].text);
  await page.click('a[data-nav="models"]');
  await shot(page, 'models');
  assert.deepEqual(errors, []);
  await stopFoliod(s);
  await hub.close();
}, { timeout: 120000 });

test('console: the playground streams a chat reply and shows TTFT and tokens/s', async () => {
  const { s } = await twoModels();
  const { page, errors } = await openConsole(s);
  await signIn(page);
  await page.click('a[data-nav="playground"]');
  await page.locator('select#pg-model option[value="stories260K"]').waitFor({ state: 'attached', timeout: T });
  await page.selectOption('select#pg-model', 'stories260K');
  await page.fill('textarea#pg-system', 'You tell short stories.');
  await page.fill('input#pg-temperature', '0');
  await page.fill('input#pg-max-tokens', '60');
  await page.fill('textarea#pg-input', 'Once upon a time');
  // stories260K answers 60 tokens in milliseconds, too fast to watch the text grow, so the
  // stream itself is checked: the page asked for one and read it as server-sent events.
  const streamed = page.waitForResponse((r) => r.url().endsWith('/v1/chat/completions'));
  await page.click('#pg-send');
  const resp = await streamed;
  assert.match(resp.headers()['content-type'], /text\/event-stream/);
  const sse = await resp.text();
  assert.ok((sse.match(/^data: \{/gm) || []).length >= 3 && /data: \[DONE\]/.test(sse), sse.slice(0, 300));
  await page.locator('#pg-stats', { hasText: /tok\/s/i }).waitFor({ timeout: T });
  const last = page.locator('#pg-output .msg-assistant').last();
  const text = (await last.textContent()).trim();
  assert.ok(text.length > 20, `reply: ${text}`);
  assert.match(await page.locator('#pg-stats').textContent(), /TTFT.*ms[\s\S]*tok\/s/i);
  await shot(page, 'playground');
  assert.deepEqual(errors, []);
  await stopFoliod(s);
}, { timeout: 90000 });

// foliod with stories260K alone, loaded (the playground's tool tests need one model).
async function oneModel() {
  const s = await startFoliod();
  const ck = await login(s);
  await addModel(s, ck, 'stories260K', { chat_template: TEMPLATE });
  await load(s, ck, 'stories260K');
  return { s, ck };
}

async function openPlayground(s) {
  const opened = await openConsole(s);
  const { page } = opened;
  await signIn(page);
  await page.click('a[data-nav="playground"]');
  await page.locator('select#pg-model option[value="stories260K"]').waitFor({ state: 'attached', timeout: T });
  await page.selectOption('select#pg-model', 'stories260K');
  return opened;
}

// One short function (stories260K's context is 512 tokens); without additionalProperties: false
// stories260K goes on writing made-up properties until max_tokens.
const WEATHER_TOOL = [{
  type: 'function',
  function: {
    name: 'get_weather', description: 'Weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 8 } }, required: ['city'], additionalProperties: false },
  },
}];
test('console: the playground sends tools with a named tool_choice, shows the call, and sends the tool result back', async () => {
  const { s } = await oneModel();
  const { page, errors, outside } = await openPlayground(s);
  const sent = []; // the chat requests as the page sent them
  page.on('request', (r) => { if (r.url().endsWith('/v1/chat/completions')) sent.push(r.postDataJSON()); });
  await page.fill('input#pg-temperature', '0');
  // A call's JSON may have one space (or a line break and indent) between tokens: stories260K
  // writes the named call in ~100 tokens.
  await page.fill('input#pg-max-tokens', '160');
  // Tools that are not a list of function tools: an inline error, and nothing is sent.
  await page.fill('textarea#pg-tools', JSON.stringify(WEATHER_TOOL[0]));
  await page.fill('textarea#pg-input', 'What is the weather in Paris?');
  await page.click('#pg-send');
  await page.locator('#pg-tools-error', { hasText: /JSON list/ }).waitFor({ timeout: T });
  assert.equal(await page.locator('textarea#pg-tools').getAttribute('aria-invalid'), 'true');
  assert.equal(await page.inputValue('textarea#pg-input'), 'What is the weather in Paris?');
  assert.equal(sent.length, 0);
  // The tool choice lists the functions as the JSON changes.
  await page.fill('textarea#pg-tools', JSON.stringify(WEATHER_TOOL, null, 2));
  await page.locator('#pg-tools-error').filter({ hasText: /^$/ }).waitFor({ state: 'attached', timeout: T });
  await page.selectOption('select#pg-tool-choice', { label: 'get_weather' });
  await page.click('#pg-send');

  // The call: its own block, the name, arguments that parse (shown pretty-printed).
  const call = page.locator('#pg-output .msg-assistant .tool-call').first();
  await call.locator('[data-field="name"]', { hasText: 'get_weather' }).waitFor({ timeout: T });
  await page.locator('#pg-send-results').waitFor({ timeout: T }); // the reply has ended
  assert.equal(await page.locator('#pg-output .msg-assistant .tool-call').count(), 1);
  const argsEl = call.locator('[data-field="arguments"]');
  assert.equal(await argsEl.getAttribute('data-parsed'), 'true');
  const argsText = await argsEl.textContent();
  const args = JSON.parse(argsText);
  assert.equal(typeof args.city, 'string', argsText);
  const callId = await call.getAttribute('data-call-id');
  assert.match(callId, /^call_/);
  assert.match(await page.locator('#pg-stats').textContent(), /TTFT.*ms[\s\S]*tok\/s/i);
  assert.equal(sent.length, 1);
  assert.deepEqual(sent[0].tools, WEATHER_TOOL);
  assert.deepEqual(sent[0].tool_choice, { type: 'function', function: { name: 'get_weather' } });
  await shot(page, 'playground-tool-call');
  await page.emulateMedia({ colorScheme: 'dark' });
  await shot(page, 'playground-tool-call-dark');
  await page.emulateMedia({ colorScheme: 'light' });

  // The result goes back: the assistant's call (content null, its id), then the tool message.
  await page.selectOption('select#pg-tool-choice', 'auto');
  await page.click('#pg-send-results');
  await page.locator('#pg-tool-results-error', { hasText: /result/ }).waitFor({ timeout: T }); // empty: refused
  assert.equal(sent.length, 1);
  const result = '{"temperature": 21, "sky": "sunny"}';
  await page.fill('#pg-tool-result-0', result);
  await page.click('#pg-send-results');
  await page.locator('#pg-output .msg-tool', { hasText: 'sunny' }).waitFor({ timeout: T });
  const replies = page.locator('#pg-output .msg-assistant');
  await replies.nth(1).locator('.msg-meta', { hasText: /tok\/s/ }).waitFor({ timeout: T });
  assert.equal(sent.length, 2);
  const msgs = sent[1].messages;
  const [callMsg] = msgs.filter((m) => m.role === 'assistant');
  assert.deepEqual(callMsg, {
    role: 'assistant', content: null,
    tool_calls: [{ id: callId, type: 'function', function: { name: 'get_weather', arguments: callMsg.tool_calls[0].function.arguments } }],
  });
  assert.deepEqual(JSON.parse(callMsg.tool_calls[0].function.arguments), args);
  assert.deepEqual(msgs[msgs.length - 1], { role: 'tool', tool_call_id: callId, content: result });
  assert.deepEqual(msgs.map((m) => m.role), ['user', 'assistant', 'tool']);
  assert.equal(sent[1].tool_choice, 'auto');
  // A reply arrived: text, or another call.
  const second = replies.nth(1);
  assert.ok(((await second.locator('.msg-body').textContent()).trim().length > 0) ||
    (await second.locator('.tool-call').count()) > 0, 'the second reply is empty');
  assert.equal(await page.locator('#pg-output .msg-error').count(), 0);
  await shot(page, 'playground-tool-result');
  assert.deepEqual(errors, []);
  assert.deepEqual(outside, []);
  await stopFoliod(s);
}, { timeout: 90000 });

// A synthetic stream in folio-engine's shape (no test model writes reasoning): the "Thinking"
// block, two parallel calls whose deltas interleave, their two result fields; completion mode
// hides the tool settings.
test('console: the playground shows reasoning in a Thinking block and parallel calls (a synthetic stream)', async () => {
  const { s } = await oneModel();
  const { page, errors } = await openPlayground(s);
  const ev = (delta, finish = null) => `data: ${JSON.stringify({
    id: 'chatcmpl-x', object: 'chat.completion.chunk', created: 1, model: 'stories260K',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  })}\n\n`;
  const sse = [
    ev({ role: 'assistant', content: '' }),
    ev({ reasoning_content: 'Two cities, ', reasoning: 'Two cities, ' }),
    ev({ reasoning_content: 'so two calls.', reasoning: 'so two calls.' }),
    ev({ tool_calls: [{ index: 0, id: 'call_aaa', type: 'function', function: { name: 'get_weather', arguments: '{"ci' } }] }),
    ev({ tool_calls: [{ index: 1, id: 'call_bbb', type: 'function', function: { name: 'get_weather', arguments: '{"city"' } }] }),
    ev({ tool_calls: [{ index: 0, function: { arguments: 'ty": "Paris"}' } }, { index: 1, function: { arguments: ': "Oslo"}' } }] }, 'tool_calls'),
    `data: ${JSON.stringify({ id: 'chatcmpl-x', object: 'chat.completion.chunk', choices: [],
      usage: { prompt_tokens: 10, completion_tokens: 30, total_tokens: 40, completion_tokens_details: { reasoning_tokens: 9 } } })}\n\n`,
    'data: [DONE]\n\n',
  ].join('');
  const sent = [];
  await page.route('**/v1/chat/completions', (route) => {
    sent.push(route.request().postDataJSON());
    return route.fulfill({ status: 200, contentType: 'text/event-stream', body: sse });
  });
  await page.fill('textarea#pg-tools', JSON.stringify(WEATHER_TOOL));
  await page.selectOption('select#pg-tool-choice', 'required');
  await page.fill('textarea#pg-input', 'Weather in Paris and Oslo?');
  await page.click('#pg-send');
  await page.locator('#pg-send-results', { hasText: 'Send results' }).waitFor({ timeout: T });
  assert.equal(sent[0].tool_choice, 'required');
  const reply = page.locator('#pg-output .msg-assistant').last();
  const thinking = reply.locator('details.msg-thinking');
  assert.equal(await thinking.locator('summary').textContent(), 'Thought for 9 tokens');
  assert.equal(await thinking.getAttribute('open'), null); // collapsed once the reply is done
  await thinking.locator('summary').click();
  assert.equal(await thinking.locator('.msg-thinking-body').textContent(), 'Two cities, so two calls.');
  assert.equal((await reply.locator('.msg-body').textContent()).trim(), ''); // the answer is apart
  const calls = reply.locator('.tool-call');
  assert.equal(await calls.count(), 2);
  assert.deepEqual(JSON.parse(await calls.nth(0).locator('[data-field="arguments"]').textContent()), { city: 'Paris' });
  assert.deepEqual(JSON.parse(await calls.nth(1).locator('[data-field="arguments"]').textContent()), { city: 'Oslo' });
  assert.equal(await calls.nth(1).getAttribute('data-call-id'), 'call_bbb');
  assert.equal(await page.locator('.tool-result-input').count(), 2);
  assert.equal(await page.locator('label[for="pg-tool-result-1"]').count(), 1);
  await shot(page, 'playground-thinking');
  await page.emulateMedia({ colorScheme: 'dark' });
  await shot(page, 'playground-thinking-dark');
  await page.emulateMedia({ colorScheme: 'light' });
  await page.fill('#pg-tool-result-0', '21 C');
  await page.fill('#pg-tool-result-1', '4 C');
  await page.click('#pg-send-results');
  await page.locator('#pg-output .msg-tool').nth(1).waitFor({ timeout: T });
  await page.locator('#pg-output .msg-assistant').nth(1).locator('.tool-call').nth(1).waitFor({ timeout: T });
  assert.deepEqual(sent[1].messages.slice(1), [
    { role: 'assistant', content: null, tool_calls: [
      { id: 'call_aaa', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } },
      { id: 'call_bbb', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Oslo"}' } }] },
    { role: 'tool', tool_call_id: 'call_aaa', content: '21 C' },
    { role: 'tool', tool_call_id: 'call_bbb', content: '4 C' },
  ]);
  // Completion mode (the real engine): no tools fields, the text streams as before.
  await page.check('#pg-mode-completion', { force: true });
  assert.equal(await page.locator('textarea#pg-tools').isVisible(), false);
  assert.equal(await page.locator('select#pg-tool-choice').isVisible(), false);
  await page.fill('input#pg-max-tokens', '20');
  await page.fill('textarea#pg-input', 'Once upon a time');
  await page.click('#pg-send');
  const text = page.locator('#pg-output .msg-assistant').nth(2);
  await text.locator('.msg-meta', { hasText: /tok\/s/ }).waitFor({ timeout: T });
  assert.ok((await text.locator('.msg-body').textContent()).trim().length > 5);
  assert.equal(sent.length, 2);
  await page.check('#pg-mode-chat', { force: true });
  assert.equal(await page.locator('textarea#pg-tools').isVisible(), true);
  assert.deepEqual(errors, []);
  await stopFoliod(s);
}, { timeout: 90000 });

test('console: a key created in the console works from outside, then its revoke gives 401', async () => {
  const { s, ck } = await twoModels();
  // Another key stays, so that /v1 keeps asking for one once ours is revoked.
  assert.equal((await req(s, 'POST', '/api/keys', { cookie: ck, body: { name: 'keeper' } })).status, 201);
  const { page, errors } = await openConsole(s);
  await signIn(page);
  await page.click('a[data-nav="keys"]');
  await page.fill('input#key-name', 'ci key');
  await page.click('#key-create');
  const secret = (await page.locator('#key-secret').textContent({ timeout: T })).trim() ||
    await page.locator('#key-secret').inputValue();
  assert.match(secret, /^\S{20,}$/);
  await shot(page, 'keys');
  // From outside: the curl binary.
  const curl = (key) => execFileSync('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Content-Type: application/json',
    ...(key ? ['-H', `Authorization: Bearer ${key}`] : []), '-d', '{"model":"default","prompt":"Once","max_tokens":3}',
    `${s.url}/v1/completions`]).toString();
  assert.equal(curl(secret), '200');
  assert.equal(curl('sk-wrong'), '401');
  assert.equal((await req(s, 'POST', '/v1/completions', { body: { model: 'default', prompt: 'x', max_tokens: 1 } })).status, 401);
  const mine = page.locator('[data-key-id]', { hasText: 'ci key' });
  await mine.locator('[data-action="revoke"]').click();
  await page.locator('dialog#confirm[open]').waitFor({ timeout: T });
  await page.click('#confirm-ok');
  for (let i = 0; i < 200 && await mine.count(); i++) await sleep(50);
  assert.equal(await mine.count(), 0);
  assert.equal(await page.locator('[data-key-id]', { hasText: 'keeper' }).count(), 1);
  assert.equal(curl(secret), '401');
  assert.deepEqual(errors, []);
  await stopFoliod(s);
}, { timeout: 90000 });

test('console: what the server sends is shown as text (an <img onerror> in a path, a name, a log); events and logs', async () => {
  const { s, ck } = await twoModels();
  // A real model directory whose path carries markup.
  const evil = path.join(os.tmpdir(), `folio-ui-<img src=x onerror="window.__xss=1">-${process.pid}`);
  mkdirSync(evil, { recursive: true });
  for (const f of ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) {
    try { symlinkSync(path.join(MODELS, 'stories260K', f), path.join(evil, f)); } catch { /* there */ }
  }
  const r = await req(s, 'POST', '/api/models', { cookie: ck, body: { name: 'evil-path', path: evil } });
  assert.equal(r.status, 201, r.text);
  // Model names cannot hold markup (the registry refuses them); key names can.
  const k = await req(s, 'POST', '/api/keys', { cookie: ck, body: { name: '<img src=x onerror="window.__xss=3">' } });
  assert.equal(k.status, 201, k.text);
  const { page, errors } = await openConsole(s);
  await signIn(page);
  await page.click('a[data-nav="models"]');
  await page.locator('#models [data-model="evil-path"]', { hasText: '<img src=x onerror=' }).waitFor({ timeout: T });
  // A name with markup is refused by the server; the refusal shows as text too.
  const form = page.locator('form#add-model');
  await form.locator('[name=name]').fill('<img src=x onerror="window.__xss=2">');
  await form.locator('[name=path]').fill(path.join(MODELS, 'stories260K'));
  await page.click('#add-submit');
  await sleep(500);
  await page.click('a[data-nav="keys"]');
  await page.locator('[data-key-id]', { hasText: '<img src=x onerror="window.__xss=3">' }).waitFor({ timeout: T });
  await page.click('a[data-nav="events"]');
  await page.locator('#events', { hasText: '<img src=x onerror=' }).waitFor({ timeout: T });
  const opt = await page.locator('select#log-model option', { hasText: 'stories260K' }).first().getAttribute('value');
  await page.selectOption('select#log-model', opt);
  await page.locator('pre#log-view', { hasText: /\S/ }).waitFor({ timeout: T });
  await shot(page, 'events');
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.equal(await page.locator('img[src="x"]').count(), 0);
  assert.deepEqual(errors, []);
  await stopFoliod(s);
}, { timeout: 90000 });

test('console: when foliod restarts, the page says it is reconnecting and comes back live by itself', async () => {
  const data = dataDir();
  let s = await startFoliod({ data });
  const { page } = await openConsole(s);
  await signIn(page);
  await page.locator('#conn-status', { hasText: 'Live' }).waitFor({ timeout: T });
  const port = s.port;
  s.proc.kill('SIGKILL');
  await s.exited;
  await page.locator('#conn-status', { hasText: /Reconnecting/i }).waitFor({ timeout: T });
  await shot(page, 'reconnecting');
  s = await startFoliod({ data, port });
  // Sessions live in memory, so the restarted foliod asks for the password again (or the
  // page is live again, when it kept a session).
  await page.locator('#conn-status:has-text("Live"), #login-form').first().waitFor({ timeout: 30000 * SLOW });
  if (await page.locator('#login-form').isVisible()) {
    await signIn(page);
    await page.locator('#conn-status', { hasText: 'Live' }).waitFor({ timeout: T });
  }
  await stopFoliod(s);
}, { timeout: 90000 });

test('console: the same pages work in Firefox (Debian firefox-esr), at laptop and tablet widths', async () => {
  const { s } = await twoModels();
  const ff = await launchFirefox();
  await ff.size(1366, 900);
  // Errors thrown by the page are kept where the test can read them.
  await ff.goto(`${s.url}/admin/`);
  await until(ff, 'return document.querySelector("#login-form") !== null', T, 'the login form');
  await ff.run(`window.__errors = []; window.addEventListener('error', (e) => window.__errors.push(String(e.message)));
    const pw = document.querySelector('#password'); pw.value = arguments[0];
    pw.dispatchEvent(new Event('input', { bubbles: true }));
    document.querySelector('#login-form').requestSubmit();`, PASSWORD);
  await until(ff, 'return /Live/.test(document.querySelector("#conn-status")?.textContent || "")', T, 'Live');
  await until(ff, `return document.querySelectorAll('#engines [data-engine]').length === 2 &&
    /No GPU/.test(document.querySelector('#gpus').textContent)`, T, 'the dashboard');
  await ff.screenshot(path.join(SHOTS, 'firefox-dashboard.png'));
  const pages = { models: '#models [data-model="aidreams260K"]', playground: 'select#pg-model', keys: 'input#key-name',
    events: '#events' };
  for (const [nav, hook] of Object.entries(pages)) {
    await ff.run(`document.querySelector('a[data-nav="${nav}"]').click()`);
    await until(ff, `return document.querySelector(${JSON.stringify(hook)}) !== null`, T, `the ${nav} page`);
  }
  await ff.size(768, 1024);
  await ff.run(`document.querySelector('a[data-nav="models"]').click()`);
  await until(ff, 'return document.querySelector("form#add-model") !== null', T, 'the models page at 768 px');
  await ff.screenshot(path.join(SHOTS, 'firefox-models-tablet.png'));
  assert.deepEqual(await ff.run('return window.__errors'), []);
  await stopFoliod(s);
}, { timeout: 90000 });
