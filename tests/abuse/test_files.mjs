// Reading files through the model registry: chat_template given as a path outside the model
// directory (the template's text would be rendered into prompts, or its error messages would
// quote it), symlinks out of the model directory, and names that look like flags.
import {
  copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { assert, onCleanup, test } from '../api/lib.mjs';
import { stopFoliod, here as daemonHere } from '../daemon/lib.mjs';
import { startHub } from '../daemon/hub_server.mjs';
import {
  BEARER, foliod, hreq, modelPath, waitModel,
} from './lib.mjs';

const STORY_TEMPLATE = path.join(daemonHere, '../api/templates/story.jinja');
const INLINE = "{% for m in messages %}{{ m['content'] }}{% endfor %}";

function tmp() {
  const d = mkdtempSync(path.join(os.tmpdir(), 'folio-abuse-'));
  onCleanup(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

// A model directory of symlinks to stories260K's files, plus the given extra files.
function modelCopy(root, name) {
  const dir = path.join(root, name);
  mkdirSync(dir);
  for (const f of readdirSync(modelPath('stories260K'))) symlinkSync(path.join(modelPath('stories260K'), f), path.join(dir, f));
  return dir;
}

const register = (s, body) => hreq(s, 'POST', '/api/models', { headers: BEARER, body: { kv_cache_space: 0.25, ...body } });

test('abuse: chat_template paths outside the model directory are refused (400); inside, and inline text, work', async () => {
  const s = await foliod();
  const root = tmp();
  const dir = modelCopy(root, 'm');
  copyFileSync(STORY_TEMPLATE, path.join(dir, 'chat.jinja'));
  mkdirSync(path.join(dir, 'templates'));
  copyFileSync(STORY_TEMPLATE, path.join(dir, 'templates', 'chat.jinja'));
  writeFileSync(path.join(root, 'outside.jinja'), INLINE);
  symlinkSync('/etc/passwd', path.join(dir, 'passwd.jinja'));
  symlinkSync(path.join(root, 'outside.jinja'), path.join(dir, 'link-out.jinja'));
  symlinkSync(root, path.join(dir, 'up'));
  const bad = [
    ['/etc/passwd', modelPath('stories260K')],
    ['/etc/shadow', modelPath('stories260K')],
    [STORY_TEMPLATE, modelPath('stories260K')],
    [path.join(root, 'outside.jinja'), dir],
    [path.join(dir, '..', 'outside.jinja'), dir],
    [path.join(dir, 'passwd.jinja'), dir],
    [path.join(dir, 'link-out.jinja'), dir],
    [path.join(dir, 'up', 'outside.jinja'), dir],
    ['/proc/self/environ', dir],
  ];
  let i = 0;
  for (const [tpl, p] of bad) {
    const r = await register(s, { name: `bad${i++}`, path: p, chat_template: tpl });
    assert.equal(r.status, 400, `chat_template ${tpl} with model ${p}: ${r.status} ${r.text}`);
    assert.match(r.json.error.message, /chat_template/, r.text);
    assert.ok(!/root:|daemon:/.test(r.text), `the answer quotes the file: ${r.text}`);
  }
  // Nothing was registered; an update cannot sneak it in either.
  let list = await hreq(s, 'GET', '/api/models', { headers: BEARER });
  assert.deepEqual(list.json.models, []);
  let r = await register(s, { name: 'inside', path: dir, chat_template: path.join(dir, 'chat.jinja') });
  assert.equal(r.status, 201, r.text);
  for (const tpl of ['/etc/passwd', path.join(dir, 'passwd.jinja')]) {
    const u = await hreq(s, 'PATCH', '/api/models/inside', { headers: BEARER, body: { chat_template: tpl } });
    assert.ok([400, 405].includes(u.status), `PATCH chat_template ${tpl}: ${u.status} ${u.text}`);
  }
  r = await register(s, { name: 'nested', path: dir, chat_template: path.join(dir, 'templates', 'chat.jinja') });
  assert.equal(r.status, 201, r.text);
  r = await register(s, { name: 'inline', path: modelPath('stories260K'), chat_template: INLINE });
  assert.equal(r.status, 201, r.text);
  // The accepted ones load and chat.
  for (const name of ['inside', 'inline']) {
    assert.equal((await hreq(s, 'POST', `/api/models/${name}/load`, { headers: BEARER })).status, 202);
    await waitModel(s, name, 'ready');
    const c = await hreq(s, 'POST', '/v1/chat/completions', {
      body: { model: name, messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 8, temperature: 0 },
    });
    assert.equal(c.status, 200, `${name}: ${c.text}`);
    assert.ok(c.json.choices[0].message.content.length > 0);
  }
  list = await hreq(s, 'GET', '/api/models', { headers: BEARER });
  assert.deepEqual(list.json.models.map((m) => m.name).sort(), ['inline', 'inside', 'nested']);
  await stopFoliod(s);
}, { timeout: 90000 });

test('abuse: a Hub model\'s chat_template outside its snapshot is refused at registration or at load', async () => {
  const hub = await startHub({ repos: { 'folio-test/stories260K': modelPath('stories260K') } });
  onCleanup(() => hub.close());
  const s = await foliod({ env: { HF_ENDPOINT: hub.url, HF_TOKEN: '' } });
  const r = await register(s, { name: 'hubpasswd', repo_id: 'folio-test/stories260K', chat_template: '/etc/passwd' });
  if (r.status !== 400) {
    assert.equal(r.status, 201, r.text);
    assert.equal((await hreq(s, 'POST', '/api/models/hubpasswd/load', { headers: BEARER })).status, 202);
    const m = await waitModel(s, 'hubpasswd', 'failed', 60000);
    assert.match(m.last_error || '', /chat_template/, JSON.stringify(m));
    assert.ok(!/root:/.test(JSON.stringify(m)), 'the error quotes /etc/passwd');
  }
  await stopFoliod(s);
}, { timeout: 90000 });

test('abuse: model names that look like flags, and path with repo_id, are refused (400)', async () => {
  const s = await foliod();
  for (const name of ['--evil', '-x', '--model=/etc', '.hidden', '_x', ' x']) {
    const r = await register(s, { name, path: modelPath('stories260K') });
    assert.equal(r.status, 400, `name ${JSON.stringify(name)}: ${r.status} ${r.text}`);
  }
  const r = await register(s, { name: 'both', path: modelPath('stories260K'), repo_id: 'folio-test/stories260K' });
  assert.equal(r.status, 400, `path with repo_id: ${r.text}`);
  assert.match(r.json.error.message, /path|repo_id/);
  for (const name of ['a', '9lives', 'Qwen3-0.6B', 'stories260K']) {
    const ok = await register(s, { name, path: modelPath('stories260K') });
    assert.equal(ok.status, 201, `name ${name}: ${ok.text}`);
  }
  await stopFoliod(s);
}, { timeout: 60000 });
