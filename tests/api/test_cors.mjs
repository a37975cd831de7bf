// CORS with --allowed-origins: the allowed origin gets Access-Control-Allow-Origin on every kind
// of response (JSON, errors, streams, metrics) and a 204 preflight; other origins get none.
import http from 'node:http';
import { assert, STORY, test, withServer, SLOW } from './lib.mjs';

// node:http, since fetch may treat Origin as a header it manages itself.
function request(s, method, p, { headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(`${s.url}${p}`, {
      method, agent: false, timeout: 20000 * SLOW,
      headers: { ...(data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {}), ...headers },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(data);
  });
}

const OK = 'http://ok.example';
const args = { args: ['--allowed-origins', `["${OK}"]`] };

test('cors: the allowed origin gets Access-Control-Allow-Origin (JSON, errors, streams, metrics)', async () => {
  await withServer(args, async (s) => {
    const h = { origin: OK };
    const cases = [
      ['GET', '/v1/models'], ['GET', '/health'], ['GET', '/metrics'],
      ['POST', '/v1/completions', { prompt: STORY.prompt, max_tokens: 3 }],
      ['POST', '/v1/completions', { prompt: STORY.prompt, max_tokens: 3, stream: true }],
      ['POST', '/v1/completions', { prompt: 'x', max_tokens: 'abc' }],
      ['POST', '/v1/completions', { prompt: 'x', model: 'nope' }],
      ['GET', '/v1/completions'],
    ];
    for (const [m, p, body] of cases) {
      const r = await request(s, m, p, { headers: h, body });
      assert.equal(r.headers['access-control-allow-origin'], OK, `${m} ${p} ${JSON.stringify(body)} -> ${r.status}`);
      assert.match(r.headers.vary || '', /origin/i, 'Vary: Origin');
    }
  });
});

test('cors: another origin, or none, gets no Access-Control-Allow-Origin (the request itself is served)', async () => {
  await withServer(args, async (s) => {
    for (const headers of [{ origin: 'http://evil.example' }, { origin: 'http://ok.example.evil' }, { origin: 'null' }, {}]) {
      const r = await request(s, 'POST', '/v1/completions', { headers, body: { prompt: STORY.prompt, max_tokens: 3 } });
      assert.equal(r.status, 200);
      assert.equal(r.headers['access-control-allow-origin'], undefined, JSON.stringify(headers));
    }
  });
});

// A browser's preflight: OPTIONS with Access-Control-Request-Method (and -Headers).
const preflight = (origin) => ({
  headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
});

test('cors: preflight OPTIONS from the allowed origin -> 204 with Allow-Origin/Methods/Headers, no API key needed', async () => {
  await withServer({ args: [...args.args, '--api-key', 'k'] }, async (s) => {
    // A preflight carries no credentials, so it must pass without the API key.
    const r = await request(s, 'OPTIONS', '/v1/chat/completions', preflight(OK));
    assert.equal(r.status, 204, `status ${r.status}, headers ${JSON.stringify(r.headers)}`);
    assert.equal(r.headers['access-control-allow-origin'], OK);
    assert.match(r.headers['access-control-allow-methods'] || '', /POST/);
    const allowHeaders = (r.headers['access-control-allow-headers'] || '').toLowerCase();
    assert.match(allowHeaders, /authorization/);
    assert.match(allowHeaders, /content-type/);
    // The real request from the allowed origin, with the key.
    const ok = await request(s, 'POST', '/v1/completions', { headers: { origin: OK, authorization: 'Bearer k' }, body: { prompt: STORY.prompt, max_tokens: 2 } });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['access-control-allow-origin'], OK);
    // A 401 carries the header too, so that the page can read the error.
    const no = await request(s, 'POST', '/v1/completions', { headers: { origin: OK }, body: { prompt: 'x' } });
    assert.equal(no.status, 401);
    assert.equal(no.headers['access-control-allow-origin'], OK);
  });
});

test('cors: preflight OPTIONS from another origin is refused and gets no Access-Control-Allow-Origin', async () => {
  await withServer(args, async (s) => {
    for (const origin of ['http://evil.example', 'null']) {
      const bad = await request(s, 'OPTIONS', '/v1/chat/completions', preflight(origin));
      assert.equal(bad.headers['access-control-allow-origin'], undefined,
        `preflight from ${origin}: ${bad.status} with Access-Control-Allow-Origin: ${bad.headers['access-control-allow-origin']}`);
      assert.notEqual(bad.status, 204);
    }
  });
});

test('cors: without --allowed-origins no CORS headers are sent', async () => {
  await withServer({}, async (s) => {
    const r = await request(s, 'GET', '/v1/models', { headers: { origin: OK } });
    assert.equal(r.status, 200);
    assert.equal(r.headers['access-control-allow-origin'], undefined);
    const p = await request(s, 'OPTIONS', '/v1/completions', preflight(OK));
    assert.equal(p.headers['access-control-allow-origin'], undefined,
      `a preflight with no origins allowed: ${p.status} with Access-Control-Allow-Origin: ${p.headers['access-control-allow-origin']}`);
  });
});
