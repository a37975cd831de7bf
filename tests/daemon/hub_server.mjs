// hub_server.mjs: a Hugging Face Hub look-alike on loopback for the daemon suite's downloader
// tests (foliod fetches through libcurl with HF_ENDPOINT pointed here). It reproduces the Hub
// behaviours the downloader relies on: GET /api/models/{repo}/revision/{rev} (siblings with
// sizes, git blob ids and LFS sha256s), /{repo}/resolve/{rev}/{path} with X-Repo-Commit and
// ETag, a 302 to a second origin (the "CDN") for LFS files, as the real Hub does, Range/206/
// 416, gated repos (401 GatedRepo without the bearer token, a CDN that needs no token) and
// the X-Error-Code 404s. Faults (cut connections, slow or corrupt bodies, 5xx, hangs) and
// advertised sizes can be set per file, and every request is logged for the tests to check.
import crypto from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';

const LFS_EXT = /\.(safetensors|bin|gguf|onnx|pt)$/;
const LFS_MIN = 1 << 20;
// Files every repo also has; a downloader must skip them.
const SYNTHETIC = [['README.md', 2 << 10], ['pytorch_model.bin', 300 << 10], ['model.gguf', 200 << 10],
  ['onnx/model.onnx', 100 << 10]];
const BODY_FAULTS = ['cut', 'slow', 'corrupt', 'hang'];
const SHA40 = /^[0-9a-f]{40}$/;

const hash = (algo, ...parts) => {
  const h = crypto.createHash(algo);
  for (const p of parts) h.update(p);
  return h.digest('hex');
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Deterministic pseudo-random bytes: sha256 in counter mode, so the same across runs.
function synth(seed, size) {
  const out = Buffer.alloc(size);
  for (let off = 0, i = 0; off < size; off += 32, i++) {
    crypto.createHash('sha256').update(`${seed}\0${i}`).digest().copy(out, off);
  }
  return out;
}

function makeFile(name, bytes) {
  const size = bytes.length;
  return {
    name, bytes, size, claimed: null,
    sha256: hash('sha256', bytes),
    // Real git hashes the LFS pointer file for LFS entries; hashing the content is enough here.
    blobId: hash('sha1', `blob ${size}\0`, bytes),
    lfs: LFS_EXT.test(name) || size > LFS_MIN,
  };
}
const advertised = (f) => f.claimed ?? f.size;
const pointerSize = (f) =>
  Buffer.byteLength(`version https://git-lfs.github.com/spec/v1\noid sha256:${f.sha256}\nsize ${advertised(f)}\n`);

// Range: bytes=N-, bytes=N-M or bytes=-K (one range; anything else is ignored, as servers
// do). Returns null (the whole file), [start, end] or 'bad' (416).
function parseRange(h, size) {
  const m = /^bytes=(\d*)-(\d*)$/.exec((h || '').trim());
  if (!m || (m[1] === '' && m[2] === '')) return null;
  if (m[1] === '') {
    const k = Number(m[2]);
    return k === 0 || size === 0 ? 'bad' : [Math.max(0, size - k), size - 1];
  }
  const start = Number(m[1]);
  if (m[2] !== '' && Number(m[2]) < start) return null;
  if (start >= size) return 'bad';
  return [start, m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)];
}

export async function startHub({ repos = {}, token = 'hf_folio_test_token', gated = [] } = {}) {
  const repoMap = new Map();
  const gatedSet = new Set(gated);
  const faults = [];
  const log = [];
  const hub = { log };

  function addRepo(id, dir) {
    const files = new Map();
    for (const e of readdirSync(dir).sort()) {
      const p = path.join(dir, e);
      if (statSync(p).isFile()) files.set(e, makeFile(e, readFileSync(p)));
    }
    for (const [name, size] of SYNTHETIC) {
      if (!files.has(name)) files.set(name, makeFile(name, synth(`${id}/${name}`, size)));
    }
    const sorted = [...files.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const sha = hash('sha1', id, ...sorted.map((f) => `\0${f.name}\0${f.sha256}`));
    repoMap.set(id, { id, files: sorted, byName: files, sha, oid: hash('sha1', `_id ${id}`).slice(0, 24) });
  }
  for (const [id, dir] of Object.entries(repos)) addRepo(id, dir);

  const repoOf = (id) => {
    const r = repoMap.get(id);
    if (!r) throw new Error(`hub: unknown repo ${id}`);
    return r;
  };
  const fileOf = (id, name) => {
    const f = repoOf(id).byName.get(name);
    if (!f) throw new Error(`hub: unknown file ${id}/${name}`);
    return f;
  };

  // The first live fault for this repo/file whose kind is one of `kinds`; uses up one of its times.
  function takeFault(repo, file, kinds) {
    const f = faults.find((x) => x.times > 0 && kinds.includes(x.kind) && (!x.repo || x.repo === repo) &&
      (!x.file || x.file === file));
    if (f) f.times--;
    return f || null;
  }

  // Log records are appended on arrival; the status is filled in when the response starts.
  const start = (res, code, headers) => {
    res.rec.status = code;
    res.writeHead(code, headers);
  };
  function json(res, code, body, headers = {}) {
    const text = JSON.stringify(body);
    start(res, code, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text),
      ...headers });
    res.end(text);
  }
  const error = (res, code, xcode, message) => json(res, code, { error: message },
    { 'X-Error-Code': xcode, 'X-Error-Message': message });
  const authorized = (req, id) => !gatedSet.has(id) || req.headers.authorization === `Bearer ${token}`;
  const gatedError = (res, id) => error(res, 401, 'GatedRepo', `Access to model ${id} is restricted. You must ` +
    'have access to it and be authenticated to access it. Please log in.');
  const revOk = (r, rev) => rev === 'main' || rev === 'v1.0' || (SHA40.test(rev) && rev === r.sha);

  // Sends the file's bytes (or the requested range) with a body fault, if any. HEAD without
  // a Range advertises the claimed size; a GET's Content-Length is always the real one.
  async function sendBytes(req, res, f, headers, fault) {
    const size = f.size;
    const range = parseRange(req.headers.range, size);
    if (range === 'bad') {
      start(res, 416, { ...headers, 'Content-Range': `bytes */${size}`, 'Content-Length': 0 });
      return res.end();
    }
    const [from, to] = range || [0, size - 1];
    if (range) headers['Content-Range'] = `bytes ${from}-${to}/${size}`;
    const head = req.method === 'HEAD';
    headers['Content-Length'] = head && !range ? advertised(f) : to - from + 1;
    start(res, range ? 206 : 200, headers);
    if (head) return res.end();
    let body = f.bytes.subarray(from, to + 1);
    switch (fault?.kind) {
      case 'corrupt':
        if (fault.at >= from && fault.at <= to) {
          body = Buffer.from(body);
          body[fault.at - from] ^= 0xff;
        }
        return res.end(body);
      case 'cut': {
        // Full Content-Length promised, part of it sent, then the connection is dropped.
        const n = Math.max(0, Math.min(body.length, fault.at - from));
        return res.write(body.subarray(0, n), () => res.socket?.destroy());
      }
      case 'hang':
        return res.flushHeaders();
      case 'slow': {
        const rate = fault.bytesPerSec;
        const chunk = Math.max(1, Math.round(rate / 20));
        const t0 = Date.now();
        let gone = false;
        res.on('close', () => { gone = true; });
        for (let off = 0; off < body.length && !gone; off += chunk) {
          const wait = t0 + (off / rate) * 1000 - Date.now();
          if (wait > 0) await sleep(wait);
          if (gone) return;
          if (!res.write(body.subarray(off, off + chunk))) {
            // Whichever comes first; the other listener goes, so they never pile up.
            await new Promise((r) => {
              const done = () => {
                res.off('drain', done);
                res.off('close', done);
                r();
              };
              res.once('drain', done);
              res.once('close', done);
            });
          }
        }
        return gone || res.end();
      }
      default:
        return res.end(body);
    }
  }

  async function onHub(req, res, segs) {
    // /api/models/{org}/{name}[/revision/{rev}]
    const api = segs[0] === 'api' && segs[1] === 'models';
    if (api && (segs.length === 4 || (segs.length === 6 && segs[4] === 'revision'))) {
      const id = `${segs[2]}/${segs[3]}`;
      const r = repoMap.get(id);
      if (!r) return error(res, 404, 'RepoNotFound', `Repository Not Found for url: ${hub.url}${req.url}.`);
      const fault = takeFault(id, null, ['api_status']);
      if (fault) return json(res, fault.code ?? 503, { error: `injected fault ${fault.code ?? 503}` });
      if (!authorized(req, id)) return gatedError(res, id);
      const rev = segs[5] ?? 'main';
      if (!revOk(r, rev)) return error(res, 404, 'RevisionNotFound', `Invalid rev id: ${rev}`);
      return json(res, 200, {
        _id: r.oid, id, modelId: id, sha: r.sha, private: false, gated: gatedSet.has(id) ? 'auto' : false,
        lastModified: '2026-01-01T00:00:00.000Z', tags: [], library_name: 'transformers',
        siblings: r.files.map((f) => ({
          rfilename: f.name, blobId: f.blobId, size: advertised(f),
          ...(f.lfs ? { lfs: { sha256: f.sha256, size: advertised(f), pointerSize: pointerSize(f) } } : {}),
        })),
      });
    }
    // /{org}/{name}/resolve/{rev}/{path...}
    if (segs.length >= 5 && segs[2] === 'resolve') {
      const id = `${segs[0]}/${segs[1]}`;
      const name = segs.slice(4).join('/');
      const r = repoMap.get(id);
      if (!r) return error(res, 404, 'RepoNotFound', `Repository Not Found for url: ${hub.url}${req.url}.`);
      const fault = takeFault(id, name, ['status']);
      if (fault) return json(res, fault.code ?? 500, { error: `injected fault ${fault.code ?? 500}` });
      if (!authorized(req, id)) return gatedError(res, id);
      if (!revOk(r, segs[3])) return error(res, 404, 'RevisionNotFound', `Invalid rev id: ${segs[3]}`);
      const f = r.byName.get(name);
      if (!f) return error(res, 404, 'EntryNotFound', `${name} does not exist on "${segs[3]}"`);
      const headers = { 'X-Repo-Commit': r.sha, 'Accept-Ranges': 'bytes' };
      if (f.lfs) {
        start(res, 302, {
          ...headers, Location: `${hub.cdnUrl}/repos/${id}/blobs/${f.sha256}`, 'X-Linked-Etag': `"${f.sha256}"`,
          'X-Linked-Size': advertised(f), ETag: `"${f.sha256}"`, 'Content-Length': 0,
        });
        return res.end();
      }
      const bodyFault = req.method === 'GET' ? takeFault(id, name, BODY_FAULTS) : null;
      return sendBytes(req, res, f, { ...headers, ETag: `"${f.blobId}"`, 'Content-Type': 'application/octet-stream' },
        bodyFault);
    }
    return error(res, 404, 'NotFound', 'Not Found');
  }

  // The CDN: /repos/{org}/{name}/blobs/{sha256}, no auth (it logs any Authorization it gets).
  async function onCdn(req, res, segs) {
    const blob = segs.length === 5 && segs[0] === 'repos' && segs[3] === 'blobs';
    const r = blob ? repoMap.get(`${segs[1]}/${segs[2]}`) : null;
    const f = r?.files.find((x) => x.lfs && x.sha256 === segs[4]);
    if (!f) return error(res, 404, 'EntryNotFound', 'Blob not found');
    const bodyFault = req.method === 'GET' ? takeFault(r.id, f.name, BODY_FAULTS) : null;
    return sendBytes(req, res, f, { 'Accept-Ranges': 'bytes', ETag: `"${f.sha256}"`,
      'Content-Type': 'application/octet-stream' }, bodyFault);
  }

  function serve(kind, handler) {
    const sockets = new Set();
    const server = http.createServer((req, res) => {
      res.rec = { server: kind, method: req.method, path: req.url, range: req.headers.range ?? null,
        authorization: req.headers.authorization ?? null, status: null };
      log.push(res.rec);
      res.on('error', () => {}); // a client gone mid-body is expected (cut, slow, hang)
      let segs = null;
      try {
        segs = req.url.split('?')[0].split('/').slice(1).map(decodeURIComponent);
      } catch {
        /* bad percent-encoding: 404 below */
      }
      if (!segs || (req.method !== 'GET' && req.method !== 'HEAD')) return error(res, 404, 'NotFound', 'Not Found');
      handler(req, res, segs).catch((e) => {
        if (!res.headersSent) error(res, 500, 'InternalError', String(e));
        else res.destroy();
      });
    });
    // Sockets are tracked so close() can end hung and slow transfers at once.
    server.on('connection', (s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve({
        url: `http://127.0.0.1:${server.address().port}`,
        close: () => new Promise((done) => {
          server.close(() => done());
          for (const s of sockets) s.destroy();
        }),
      }));
    });
  }

  const [h, c] = await Promise.all([serve('hub', onHub), serve('cdn', onCdn)]);
  return Object.assign(hub, {
    url: h.url,
    cdnUrl: c.url,
    addRepo,
    sha: (id) => repoOf(id).sha,
    fileSha256: (id, name) => fileOf(id, name).sha256,
    fileSize: (id, name) => fileOf(id, name).size,
    fileBytes: (id, name) => fileOf(id, name).bytes,
    // { repo, file?, kind, ...opts, times = 1 }; repo omitted matches every repo.
    setFault: (fault) => { faults.push({ ...fault, times: fault.times ?? 1 }); },
    clearFaults: () => { faults.length = 0; },
    setGated: (id, on) => { if (on) gatedSet.add(id); else gatedSet.delete(id); },
    claimSize: (id, name, bytes) => { fileOf(id, name).claimed = bytes; },
    close: () => Promise.all([h.close(), c.close()]).then(() => {}),
  });
}
