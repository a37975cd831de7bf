// Pulling models from a Hugging Face Hub look-alike (hub_server.mjs) on loopback: a full pull
// that serves, cut and resumed transfers (also across a foliod restart), bad bytes, gated and
// missing repos, 5xx, a disk too small, cancel, `foliod --model org/name`, and the token kept
// out of logs, API answers and the CDN.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import crypto from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { assert, MODELS, sleep, SLOW, STORY, test } from '../api/lib.mjs';
import { startHub } from './hub_server.mjs';
import {
  dataDir, here, login, modelInfo, readEvents, req, sdk, startFoliod, status, stopFoliod, waitState,
} from './lib.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

// Inline template text: a file outside the model directory is refused (it could be read back).
const TEMPLATE = readFileSync(path.join(here, '../api/templates/story.jinja'), 'utf8').trim();
const TOKEN = 'hf_folio_test_token';
const REPOS = {
  'folio-test/stories260K': path.join(MODELS, 'stories260K'),
  'folio-test/aidreams260K': path.join(MODELS, 'aidreams260K'),
};
const WANTED = ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'];

async function hubAndFoliod({ gated = [], env = {}, data, args } = {}) {
  const hub = await startHub({ repos: REPOS, token: TOKEN, gated });
  const s = await startFoliod({ data, args, env: { HF_ENDPOINT: hub.url, HF_TOKEN: '', ...env } });
  const ck = await login(s);
  return { hub, s, ck };
}

async function addHub(s, ck, name, repo, extra = {}) {
  const r = await req(s, 'POST', '/api/models', {
    cookie: ck, body: { name, repo_id: repo, kv_cache_space: 0.25, chat_template: TEMPLATE, ...extra },
  });
  assert.equal(r.status, 201, r.text);
  return r.json;
}

async function pull(s, ck, name, method = 'POST') {
  return req(s, method, `/api/models/${encodeURIComponent(name)}/pull`, { cookie: ck });
}

// Polls the model's download until its state is one of `states`; returns it.
async function waitPull(s, ck, name, states, ms = 30000 * SLOW, pred = () => true) {
  const deadline = Date.now() + ms;
  let d;
  while (Date.now() < deadline) {
    const r = await pull(s, ck, name, 'GET');
    d = r.status === 200 ? r.json : null;
    if (d && states.includes(d.state) && pred(d)) return d;
    await sleep(50);
  }
  throw new Error(`pull of ${name} did not reach ${states} in ${ms} ms (last: ${JSON.stringify(d)})`);
}

const sha256 = (file) => crypto.createHash('sha256').update(readFileSync(file)).digest('hex');
const snapshot = (data, repo, sha) => path.join(data, 'models', repo, sha);

// Everything under dir, as relative paths.
function tree(dir) {
  if (!existsSync(dir)) return [];
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...tree(p).map((x) => path.join(e.name, x)), `${e.name}/`);
    else out.push(e.name);
  }
  return out.sort();
}

async function events(s, ck) {
  const r = await req(s, 'GET', '/api/events?limit=500', { cookie: ck });
  assert.equal(r.status, 200, r.text);
  return r.json.events;
}

test('hub: a model pulled by repo id (verified, only what serving needs, LFS from the CDN) loads and answers', async () => {
  const { hub, s, ck } = await hubAndFoliod();
  await addHub(s, ck, 'hubstories', 'folio-test/stories260K');
  await addHub(s, ck, 'hubdreams', 'folio-test/aidreams260K', { revision: 'v1.0' });
  // Loading a model that is not here yet pulls it first, then loads it.
  const lr = await req(s, 'POST', '/api/models/hubstories/load', { cookie: ck });
  assert.equal(lr.status, 202, lr.text);
  const pr = await pull(s, ck, 'hubdreams');
  assert.equal(pr.status, 202, pr.text);
  const m = await waitState(s, ck, 'hubstories', 'ready');
  const sha = hub.sha('folio-test/stories260K');
  assert.equal(m.path, snapshot(s.data, 'folio-test/stories260K', sha));
  assert.deepEqual(tree(m.path), WANTED);
  for (const f of WANTED) assert.equal(sha256(path.join(m.path, f)), hub.fileSha256('folio-test/stories260K', f), f);
  assert.deepEqual(tree(path.join(s.data, 'models', 'folio-test/stories260K')), [`${sha}/`, ...WANTED.map((f) => `${sha}/${f}`)].sort());
  const d = m.download;
  assert.equal(d.state, 'done');
  assert.equal(d.sha, sha);
  assert.equal(d.bytes_done, d.bytes_total);
  assert.equal(d.files_total, WANTED.length);
  assert.deepEqual(d.files.map((f) => f.name).sort(), WANTED);
  assert.ok(d.files.every((f) => f.done === f.size), JSON.stringify(d.files));
  // It serves: the README story through the proxy, and chat.
  const client = sdk(s);
  const c = await client.completions.create({ model: 'hubstories', prompt: STORY.prompt, max_tokens: 40, temperature: 0 });
  assert.equal(c.choices[0].text, STORY.text);
  const chat = await client.chat.completions.create({
    model: 'hubstories', messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 16, temperature: 0,
  });
  assert.ok(chat.choices[0].message.content.length > 0);
  // The other pull (a tag) ran beside it and is done, not loaded.
  const dreams = (await waitPull(s, ck, 'hubdreams', ['done']));
  assert.equal(dreams.sha, hub.sha('folio-test/aidreams260K'));
  assert.equal((await modelInfo(s, ck, 'hubdreams')).state, 'registered');
  // What the Hub saw: the revision API, resolve for each wanted file, the LFS file from the CDN
  // after a 302, and nothing of the files serving does not need.
  const paths = hub.log.map((r) => `${r.server} ${r.method} ${r.path} ${r.status}`);
  assert.ok(paths.includes(`hub GET /api/models/folio-test/stories260K/revision/main?blobs=true 200`), paths.join('\n'));
  assert.ok(paths.includes(`hub GET /folio-test/stories260K/resolve/${sha}/model.safetensors 302`), paths.join('\n'));
  assert.ok(hub.log.some((r) => r.server === 'cdn' && r.status === 200), paths.join('\n'));
  assert.ok(!hub.log.some((r) => /README|\.bin|\.gguf|onnx/.test(r.path)), paths.join('\n'));
  const st = await status(s, ck);
  assert.deepEqual(st.downloads.map((x) => [x.model, x.state]).sort(), [['hubdreams', 'done'], ['hubstories', 'done']]);
  assert.ok((await events(s, ck)).some((e) => e.kind === 'model.pulled' && /skipped/.test(e.message)));
  await stopFoliod(s);
  await hub.close();
}, { timeout: 90000 });

test('hub: a transfer cut mid-file resumes with a Range request and ends verified', async () => {
  const { hub, s, ck } = await hubAndFoliod();
  const repo = 'folio-test/stories260K';
  hub.setFault({ repo, file: 'model.safetensors', kind: 'cut', at: 400000 });
  hub.setFault({ repo, file: 'tokenizer.json', kind: 'cut', at: 5000 });
  await addHub(s, ck, 'cut', repo);
  assert.equal((await pull(s, ck, 'cut')).status, 202);
  const d = await waitPull(s, ck, 'cut', ['done', 'failed']);
  assert.equal(d.state, 'done', d.error);
  const m = await modelInfo(s, ck, 'cut');
  for (const f of WANTED) assert.equal(sha256(path.join(m.path, f)), hub.fileSha256(repo, f), f);
  const ranges = hub.log.filter((r) => r.range).map((r) => `${r.server} ${r.range} ${r.status}`);
  assert.ok(ranges.includes('cdn bytes=400000- 206'), ranges.join('\n'));
  assert.ok(ranges.includes('hub bytes=5000- 206'), ranges.join('\n'));
  assert.ok((await events(s, ck)).some((e) => e.kind === 'model.pull_retry' && /retrying/.test(e.message)));
  await stopFoliod(s);
  await hub.close();
}, { timeout: 60000 });

test('hub: foliod restarted mid-pull resumes the .part where it stopped', async () => {
  const data = dataDir();
  const repo = 'folio-test/stories260K';
  let { hub, s, ck } = await hubAndFoliod({ data });
  hub.setFault({ repo, file: 'model.safetensors', kind: 'slow', bytesPerSec: 150000, times: Infinity });
  await addHub(s, ck, 'restart', repo);
  assert.equal((await req(s, 'POST', '/api/models/restart/load', { cookie: ck })).status, 202);
  await waitPull(s, ck, 'restart', ['downloading'], 20000 * SLOW,
    (d) => (d.files || []).some((f) => f.name === 'model.safetensors' && f.done > 200000));
  await stopFoliod(s);
  const sha = hub.sha(repo);
  const part = path.join(s.data, 'models', repo, '.incomplete', sha, 'model.safetensors.part');
  const have = statSync(part).size;
  assert.ok(have > 200000 && have < 1044984, `part holds ${have} bytes`);
  hub.clearFaults();
  const before = hub.log.length;
  s = await startFoliod({ data, env: { HF_ENDPOINT: hub.url, HF_TOKEN: '' } });
  ck = await login(s);
  const m = await waitState(s, ck, 'restart', 'ready'); // load_after survived the restart too
  assert.equal(sha256(path.join(m.path, 'model.safetensors')), hub.fileSha256(repo, 'model.safetensors'));
  const resumed = hub.log.slice(before).filter((r) => r.server === 'cdn' && r.range);
  assert.ok(resumed.some((r) => r.range === `bytes=${have}-` && r.status === 206),
    JSON.stringify(hub.log.slice(before)));
  assert.ok(!existsSync(path.join(s.data, 'models', repo, '.incomplete')));
  await stopFoliod(s);
  await hub.close();
}, { timeout: 90000 });

test('hub: wrong bytes are caught by the checksum, discarded and fetched again; never renamed into place', async () => {
  const { hub, s, ck } = await hubAndFoliod();
  const repo = 'folio-test/stories260K';
  hub.setFault({ repo, file: 'model.safetensors', kind: 'corrupt', at: 123456 });
  await addHub(s, ck, 'once', repo);
  await pull(s, ck, 'once');
  const d = await waitPull(s, ck, 'once', ['done', 'failed']);
  assert.equal(d.state, 'done', d.error);
  const m = await modelInfo(s, ck, 'once');
  assert.equal(sha256(path.join(m.path, 'model.safetensors')), hub.fileSha256(repo, 'model.safetensors'));
  assert.ok((await events(s, ck)).some((e) => /checksum mismatch for model.safetensors: file discarded/.test(e.message)));
  // Always wrong: the pull fails with that message and nothing lands in place.
  hub.setFault({ repo: 'folio-test/aidreams260K', file: 'model.safetensors', kind: 'corrupt', at: 10, times: Infinity });
  await addHub(s, ck, 'always', 'folio-test/aidreams260K');
  await pull(s, ck, 'always');
  const f = await waitPull(s, ck, 'always', ['done', 'failed'], 60000 * SLOW);
  assert.equal(f.state, 'failed');
  assert.match(f.error, /checksum mismatch for model.safetensors: file discarded/);
  const sha = hub.sha('folio-test/aidreams260K');
  assert.ok(!existsSync(snapshot(s.data, 'folio-test/aidreams260K', sha)));
  const staged = tree(path.join(s.data, 'models', 'folio-test/aidreams260K', '.incomplete', sha));
  assert.ok(!staged.includes('model.safetensors'), staged.join(' '));
  assert.equal((await modelInfo(s, ck, 'always')).path, '');
  await stopFoliod(s);
  await hub.close();
}, { timeout: 90000 });

test('hub: gated and missing repos, 5xx then success; the token reaches the Hub only, never a log or an answer', async () => {
  const repo = 'folio-test/stories260K';
  const { hub, s, ck } = await hubAndFoliod({ gated: [repo] });
  await addHub(s, ck, 'gated', repo);
  await pull(s, ck, 'gated');
  const g = await waitPull(s, ck, 'gated', ['failed', 'done']);
  assert.equal(g.state, 'failed');
  assert.match(g.error, /repo folio-test\/stories260K is gated: accept its license on the Hub and set HF_TOKEN/);
  assert.match((await modelInfo(s, ck, 'gated')).last_error, /is gated/);
  await addHub(s, ck, 'missing', 'folio-test/nope');
  await pull(s, ck, 'missing');
  const miss = await waitPull(s, ck, 'missing', ['failed', 'done']);
  assert.match(miss.error, /repo folio-test\/nope not found/);
  // The token from the console, then two 500s on the way: the pull gets through.
  const set = await req(s, 'PUT', '/api/settings', { cookie: ck, body: { hf_token: TOKEN } });
  assert.equal(set.status, 200, set.text);
  assert.deepEqual([set.json.hf_token_set, set.json.hf_token_source], [true, 'settings']);
  hub.setFault({ repo, file: 'config.json', kind: 'status', code: 500, times: 2 });
  hub.setFault({ repo, kind: 'api_status', code: 503, times: 1 });
  await pull(s, ck, 'gated');
  const ok = await waitPull(s, ck, 'gated', ['done', 'failed'], 60000 * SLOW);
  assert.equal(ok.state, 'done', ok.error);
  assert.equal(hub.log.filter((r) => r.status === 500).length, 2);
  const auths = hub.log.filter((r) => r.authorization);
  assert.ok(auths.length > 0 && auths.every((r) => r.server === 'hub' && r.authorization === `Bearer ${TOKEN}`),
    JSON.stringify(auths));
  assert.ok(hub.log.some((r) => r.server === 'cdn') && hub.log.filter((r) => r.server === 'cdn').every((r) => !r.authorization));
  // Nowhere in foliod's own output, its engine logs, or what the API answers.
  await req(s, 'POST', '/api/models/gated/load', { cookie: ck });
  await waitState(s, ck, 'gated', 'ready');
  const answers = [await req(s, 'GET', '/api/status', { cookie: ck }), await req(s, 'GET', '/api/models', { cookie: ck }),
    await req(s, 'GET', '/api/events?limit=1000', { cookie: ck }), await req(s, 'GET', '/api/settings', { cookie: ck }),
    await req(s, 'GET', '/api/models/gated/logs?lines=1000', { cookie: ck }), await req(s, 'GET', '/metrics')];
  for (const a of answers) assert.ok(!a.text.includes(TOKEN), a.text.slice(0, 300));
  await stopFoliod(s);
  assert.ok(!s.log.includes(TOKEN), 'the token is in foliod\'s output');
  for (const f of readdirSync(path.join(s.data, 'logs'))) {
    assert.ok(!readFileSync(path.join(s.data, 'logs', f), 'utf8').includes(TOKEN), f);
  }
  await hub.close();
}, { timeout: 90000 });

test('hub: a disk too small fails before the pull, and a disk that fills up fails cleanly', async () => {
  const { hub, s, ck } = await hubAndFoliod();
  const repo = 'folio-test/stories260K';
  hub.claimSize(repo, 'model.safetensors', 10 * 2 ** 40); // 10 TiB
  await addHub(s, ck, 'huge', repo);
  await pull(s, ck, 'huge');
  const d = await waitPull(s, ck, 'huge', ['failed', 'done']);
  assert.match(d.error, /^not enough disk: need 10240\.0 GiB, [0-9.]+ GiB free/);
  assert.deepEqual(tree(path.join(s.data, 'models', repo)), []);
  await stopFoliod(s);
  // A real full disk, where the machine lets us mount a small tmpfs (root in CI): the pull
  // starts, a filler takes the space, the write fails, and the partial files go.
  const data = dataDir();
  const models = path.join(data, 'models');
  mkdirSync(models);
  let mounted = false;
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2200k', 'tmpfs', models], { stdio: 'pipe' });
    mounted = true;
  } catch {
    console.log('    (no tmpfs mount here: the full-disk half is skipped; the size check above ran)');
  }
  if (mounted) {
    try {
      hub.clearFaults();
      hub.claimSize(repo, 'model.safetensors', 1044984);
      hub.setFault({ repo: 'folio-test/aidreams260K', file: 'model.safetensors', kind: 'slow', bytesPerSec: 200000, times: Infinity });
      const t = await startFoliod({ data, env: { HF_ENDPOINT: hub.url, HF_TOKEN: '' } });
      const tck = await login(t);
      await addHub(t, tck, 'full', 'folio-test/aidreams260K');
      await pull(t, tck, 'full');
      await waitPull(t, tck, 'full', ['downloading'], 20000 * SLOW,
        (x) => (x.files || []).some((f) => f.name === 'model.safetensors' && f.done > 0));
      try {
        writeFileSync(path.join(models, 'filler'), Buffer.alloc(1900 * 1024));
      } catch {
        /* ENOSPC for the filler too: the disk is full either way */
      }
      const f = await waitPull(t, tck, 'full', ['failed', 'done'], 30000 * SLOW);
      assert.equal(f.state, 'failed');
      assert.match(f.error, /No space left on device/);
      assert.deepEqual(tree(models).filter((x) => x !== 'filler'), ['folio-test/', 'folio-test/aidreams260K/']);
      await stopFoliod(t);
    } finally {
      execFileSync('umount', [models]);
    }
  }
  await hub.close();
}, { timeout: 90000 });

test('hub: a cancelled pull stops and leaves no files behind', async () => {
  const { hub, s, ck } = await hubAndFoliod();
  const repo = 'folio-test/stories260K';
  hub.setFault({ repo, file: 'model.safetensors', kind: 'slow', bytesPerSec: 100000, times: Infinity });
  await addHub(s, ck, 'cancel', repo);
  await pull(s, ck, 'cancel');
  await waitPull(s, ck, 'cancel', ['downloading'], 20000 * SLOW,
    (d) => (d.files || []).some((f) => f.name === 'model.safetensors' && f.done > 0));
  assert.ok(tree(path.join(s.data, 'models', repo)).some((f) => f.endsWith('.part')));
  // The console's event stream carries the progress, with a rate and an ETA.
  const evs = await readEvents(`${s.url}/api/events`, ck, (es) => es.some((e) => e.event === 'status' &&
    (e.json.downloads || []).some((x) => x.model === 'cancel' && x.state === 'downloading' && x.bytes_done > 0 &&
      x.rate_bytes_per_s > 0 && x.eta_s > 0)));
  const live = evs.filter((e) => e.event === 'status').pop().json.downloads.find((x) => x.model === 'cancel');
  assert.ok(live.bytes_total > 1000000 && live.files.length === WANTED.length, JSON.stringify(live));
  const c = await pull(s, ck, 'cancel', 'DELETE');
  assert.equal(c.status, 200, c.text);
  assert.equal(c.json.state, 'cancelled');
  assert.deepEqual(tree(path.join(s.data, 'models', repo)), []);
  assert.equal((await pull(s, ck, 'cancel', 'DELETE')).status, 404);
  assert.equal((await modelInfo(s, ck, 'cancel')).path, '');
  await stopFoliod(s);
  await hub.close();
}, { timeout: 60000 });

test('hub: `foliod --model org/name` pulls with a progress bar, then serves it as default', async () => {
  const hub = await startHub({ repos: REPOS, token: TOKEN });
  hub.setFault({ repo: 'folio-test/stories260K', file: 'model.safetensors', kind: 'slow', bytesPerSec: 400000, times: Infinity });
  const s = await startFoliod({ args: ['--model', 'folio-test/stories260K'], env: { HF_ENDPOINT: hub.url, HF_TOKEN: '' } });
  const ck = await login(s);
  await waitState(s, ck, 'folio-test/stories260K', 'ready', 60000 * SLOW);
  const c = await sdk(s).completions.create({ model: 'default', prompt: STORY.prompt, max_tokens: 40, temperature: 0 });
  assert.equal(c.choices[0].text, STORY.text);
  // The bar's last line comes within its half-second redraw.
  for (let i = 0; i < 100 && !/100\.0% .*: done/.test(s.log); i++) await sleep(50);
  assert.match(s.log, /pulling folio-test\/stories260K \[[#.]{30}\] +[0-9.]+% .* MiB\/s/);
  assert.match(s.log, /pulling folio-test\/stories260K \[#{30}\] 100\.0% .*: done/);
  await stopFoliod(s);
  await hub.close();
}, { timeout: 90000 });

test('hub: the fit estimate for a local dir and a Hub repo; the console session stands for a key on /v1', async () => {
  const { hub, s, ck } = await hubAndFoliod();
  const est = (body) => req(s, 'POST', '/api/models/estimate', { cookie: ck, body });
  const local = await est({ path: path.join(MODELS, 'stories260K'), max_model_len: 512 });
  assert.equal(local.status, 200, local.text);
  assert.equal(local.json.device, 'cpu');
  assert.equal(local.json.weights_bytes, statSync(path.join(MODELS, 'stories260K', 'model.safetensors')).size);
  assert.ok(local.json.kv_bytes_per_token > 0 && local.json.fits === true && local.json.max_model_len_fits === 512,
    local.text);
  // Parameters as the model card counts them (stories260K: "260K"), all active in a dense model.
  assert.equal(local.json.architecture, 'LlamaForCausalLM');
  assert.equal(local.json.params_total, 260032);
  assert.equal(local.json.params_active, 260032);
  assert.match(local.json.note, /^260K parameters; /);
  // The KV cache's dtype: auto is fp32 for these fp32 weights; bf16 halves a token's bytes, fp8
  // quarters them (vLLM's spellings accepted).
  assert.equal(local.json.kv_cache_dtype, 'float32');
  for (const [kv, name, div] of [['bf16', 'bfloat16', 2], ['fp8', 'float8_e4m3', 4]]) {
    const x = await est({ path: path.join(MODELS, 'stories260K'), max_model_len: 512, kv_cache_dtype: kv });
    assert.equal(x.status, 200, x.text);
    assert.equal(x.json.kv_cache_dtype, name);
    assert.equal(x.json.kv_bytes_per_token * div, local.json.kv_bytes_per_token);
    assert.match(x.json.note, new RegExp(`${name} KV for 512 tokens`));
  }
  // --quantization at load: the matrices' resident bytes shrink (int8 ~ 8.5 bits, int4 ~ 4.5 bits
  // a weight; the fp32 embedding table stays), and the estimate says so.
  const q8 = await est({ path: path.join(MODELS, 'stories260K'), max_model_len: 512, quantization: 'int8' });
  const q4 = await est({ path: path.join(MODELS, 'stories260K'), max_model_len: 512, quantization: 'int4' });
  assert.equal(q8.status, 200, q8.text);
  assert.ok(q4.json.weights_bytes < q8.json.weights_bytes && q8.json.weights_bytes < 0.6 * local.json.weights_bytes,
    `${q4.text} ${q8.text} ${local.text}`);
  // A MoE: total and active differ, by the experts a token does not use.
  const moeDir = mkdtempSync(path.join(os.tmpdir(), 'folio-moe-'));
  execFileSync('/usr/bin/python3', [path.join(ROOT, 'tests/fixtures/gen_checkpoint.py'), '--out', moeDir,
    '--preset', 'qwen3-moe', '--dtype', 'BF16']);
  const moe = await est({ path: moeDir, max_model_len: 128 });
  rmSync(moeDir, { recursive: true, force: true });
  assert.equal(moe.status, 200, moe.text);
  assert.equal(moe.json.architecture, 'Qwen3MoeForCausalLM');
  assert.ok(moe.json.params_active < moe.json.params_total, moe.text);
  assert.match(moe.json.note, /K parameters, \d+K active per token; /);
  // Gemma 3: the sliding layers keep one window of K/V per sequence, so only the full layers'
  // cost grows with the length.
  const gDir = mkdtempSync(path.join(os.tmpdir(), 'folio-gemma3-'));
  execFileSync('/usr/bin/python3', [path.join(ROOT, 'tests/fixtures/gen_checkpoint.py'), '--out', gDir,
    '--preset', 'gemma3', '--dtype', 'BF16']);
  const gc = JSON.parse(readFileSync(path.join(gDir, 'config.json'), 'utf8'));
  const g = await est({ path: gDir, max_model_len: 256, block_size: 16 });
  rmSync(gDir, { recursive: true, force: true });
  assert.equal(g.status, 200, g.text);
  const full = gc.layer_types.filter((t) => t === 'full_attention').length;
  const perLayer = 2 * gc.num_key_value_heads * gc.head_dim * 2; // K and V, one token, bf16 (auto for BF16 weights)
  assert.equal(g.json.kv_cache_dtype, 'bfloat16');
  assert.ok(full > 0 && full < gc.num_hidden_layers, g.text);
  assert.equal(g.json.kv_bytes_per_token, full * perLayer);
  // The window (8) rounded up to blocks of 16, plus the block being filled and one more.
  assert.equal(g.json.kv_window_bytes, 3 * 16 * (gc.num_hidden_layers - full) * perLayer);
  assert.equal(g.json.kv_bytes_needed, 256 * full * perLayer + g.json.kv_window_bytes);
  // A KV space too small for the length asked: does not fit, and says what would.
  const tight = await est({ path: path.join(MODELS, 'stories260K'), max_model_len: 512, kv_cache_space: 0.0001 });
  assert.equal(tight.json.fits, false, tight.text);
  assert.ok(tight.json.max_model_len_fits < 512 && tight.json.max_model_len_fits >= 0, tight.text);
  // From the Hub: config.json fetched, the weights from the listing, in the checkpoint's dtype.
  const remote = await est({ repo_id: 'folio-test/aidreams260K', max_model_len: 256 });
  assert.equal(remote.status, 200, remote.text);
  assert.equal(remote.json.weights_bytes, hub.fileSize('folio-test/aidreams260K', 'model.safetensors'));
  assert.equal((await est({ repo_id: 'folio-test/nope' })).status, 404);
  assert.equal((await est({ repo_id: 'not a repo' })).status, 400);
  assert.equal((await req(s, 'POST', '/api/models/estimate', { body: { path: '/x' } })).status, 401);
  // Once a key exists /v1 needs one, except with a console session (the playground).
  const k = await req(s, 'POST', '/api/keys', { cookie: ck, body: { name: 'k' } });
  assert.equal(k.status, 201, k.text);
  await req(s, 'POST', '/api/models', { cookie: ck, body: { name: 'st', path: path.join(MODELS, 'stories260K'), kv_cache_space: 0.25 } });
  await req(s, 'POST', '/api/models/st/load', { cookie: ck });
  await waitState(s, ck, 'st', 'ready');
  const body = { model: 'st', prompt: STORY.prompt, max_tokens: 5, temperature: 0 };
  assert.equal((await req(s, 'POST', '/v1/completions', { body })).status, 401);
  assert.equal((await req(s, 'POST', '/v1/completions', { cookie: ck, body })).status, 200);
  assert.equal((await req(s, 'POST', '/v1/completions', { cookie: 'folio_session=0123456789abcdef', body })).status, 401);
  await stopFoliod(s);
  await hub.close();
}, { timeout: 60000 });
