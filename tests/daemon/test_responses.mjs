// /v1/responses through foliod: the engine answers statelessly, foliod stores each answer
// (daemon/responses.c) and expands previous_response_id into the conversation the engine gets;
// GET/DELETE /v1/responses/{id} and its input_items; store:false, the TTL, the size bound, the
// body limit on an expanded conversation; streamed turns stored from their final event; the
// openai SDK's responses.create across turns.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  assert, assertError, parseSSE, sleep, test,
} from '../api/lib.mjs';
import {
  addModel, engineOf, here, load, login, req, sdk, startFoliod, stopFoliod,
} from './lib.mjs';

const TEMPLATE = readFileSync(path.join(here, '../api/templates/story.jinja'), 'utf8').trim();
const MODEL = 'stories260K';

// foliod with stories260K loaded (a chat template: /v1/responses renders messages).
async function withModel(args = []) {
  const s = await startFoliod({ args });
  const ck = await login(s);
  await addModel(s, ck, MODEL, { chat_template: TEMPLATE });
  await load(s, ck, MODEL);
  return { s, ck };
}

const create = (s, body, opts) => req(s, 'POST', '/v1/responses', { body, ...opts });

// A streamed POST /v1/responses: the parsed events (each with its SSE event name).
async function createStream(s, body, opts = {}) {
  const r = await req(s, 'POST', '/v1/responses', { body: { ...body, stream: true }, ...opts });
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers.get('content-type') || '', /^text\/event-stream/);
  const names = [...r.text.matchAll(/^event: (.*)$/gm)].map((m) => m[1]);
  const { events, done } = parseSSE(r.text);
  assert.equal(done, false, 'no [DONE] in a Responses stream');
  assert.equal(names.length, events.length, 'every event is named');
  events.forEach((e, i) => assert.equal(e.type, names[i]));
  return events;
}

const textOf = (resp) => resp.output.filter((o) => o.type === 'message')
  .flatMap((o) => o.content).map((c) => c.text).join('');

test('responses: two turns with previous_response_id; GET, input_items and DELETE; the engine refuses the id itself', async () => {
  const { s, ck } = await withModel();
  const first = { model: MODEL, input: 'Once upon a time', max_output_tokens: 12, temperature: 0 };
  const r1 = await create(s, first);
  assert.equal(r1.status, 200, r1.text);
  assert.match(r1.json.id, /^resp_[0-9a-f]+$/);
  assert.equal(r1.json.store, true, 'foliod stores it: the engine says so');
  assert.equal(r1.json.previous_response_id, null);
  // The second turn names no model: it continues on the first one's.
  const r2 = await create(s, { previous_response_id: r1.json.id, input: 'The end', max_output_tokens: 12, temperature: 0 });
  assert.equal(r2.status, 200, r2.text);
  assert.equal(r2.json.previous_response_id, r1.json.id, 'the engine echoes the id foliod passed on');
  assert.equal(r2.json.model, r1.json.model);
  // The engine saw the whole conversation: the same prompt as sending all of it at once.
  const whole = [{ role: 'user', content: 'Once upon a time' }, r1.json.output[0], { role: 'user', content: 'The end' }];
  const r3 = await create(s, { model: MODEL, input: whole, max_output_tokens: 12, temperature: 0, store: false });
  assert.equal(r3.status, 200, r3.text);
  assert.equal(r2.json.usage.input_tokens, r3.json.usage.input_tokens);
  assert.ok(r2.json.usage.input_tokens >= r1.json.usage.input_tokens + r1.json.usage.output_tokens,
    `turn 2 prompt ${r2.json.usage.input_tokens} tokens, turn 1 ${JSON.stringify(r1.json.usage)}`);
  assert.equal(textOf(r2.json), textOf(r3.json));
  assert.equal(r3.json.store, false);

  // GET: the response object as the client got it.
  const g1 = await req(s, 'GET', `/v1/responses/${r1.json.id}`);
  assert.equal(g1.status, 200, g1.text);
  assert.deepEqual(g1.json, r1.json);
  // input_items: OpenAI's list page, newest first by default; a string input is a message.
  let items = await req(s, 'GET', `/v1/responses/${r2.json.id}/input_items?order=asc`);
  assert.equal(items.status, 200, items.text);
  assert.equal(items.json.object, 'list');
  assert.deepEqual(items.json.data.map((x) => [x.type, x.role]), [['message', 'user'], ['message', 'assistant'], ['message', 'user']]);
  assert.deepEqual(items.json.data[0].content, [{ type: 'input_text', text: 'Once upon a time' }]);
  assert.equal(items.json.data[1].id, r1.json.output[0].id, 'the first turn\'s output item, as it was');
  assert.deepEqual(items.json.data.map((x) => x.id), [items.json.first_id, items.json.data[1].id, items.json.last_id]);
  assert.equal(items.json.has_more, false);
  const desc = await req(s, 'GET', `/v1/responses/${r2.json.id}/input_items`);
  assert.deepEqual(desc.json.data.map((x) => x.id), items.json.data.map((x) => x.id).reverse());
  // Paged by one, with after.
  const seen = [];
  let after = '';
  for (let i = 0; i < 4; i++) {
    const p = await req(s, 'GET', `/v1/responses/${r2.json.id}/input_items?order=asc&limit=1${after ? `&after=${after}` : ''}`);
    assert.equal(p.status, 200, p.text);
    seen.push(...p.json.data.map((x) => x.id));
    if (!p.json.has_more) break;
    after = p.json.last_id;
  }
  assert.deepEqual(seen, items.json.data.map((x) => x.id));
  assertError(await req(s, 'GET', `/v1/responses/${r2.json.id}/input_items?limit=0`), 400, { param: 'limit' });
  assertError(await req(s, 'GET', `/v1/responses/${r2.json.id}/input_items?order=up`), 400, { param: 'order' });
  assertError(await req(s, 'GET', `/v1/responses/${r2.json.id}/input_items?after=nope`), 400, { param: 'after' });
  // The first turn's own input is one item.
  items = await req(s, 'GET', `/v1/responses/${r1.json.id}/input_items`);
  assert.equal(items.json.data.length, 1);

  // Unknown ids: 404 in the OpenAI shape, on every route.
  assertError(await create(s, { model: MODEL, previous_response_id: 'resp_0123', input: 'x' }), 404,
    { param: 'previous_response_id', message: /resp_0123.*not found/ });
  assertError(await create(s, { model: MODEL, previous_response_id: 'bad id!', input: 'x' }), 400, { param: 'previous_response_id' });
  assertError(await create(s, { model: MODEL, previous_response_id: 7, input: 'x' }), 400, { param: 'previous_response_id' });
  assertError(await create(s, { previous_response_id: r1.json.id, input: 5 }), 400, { param: 'input' });
  assertError(await req(s, 'GET', '/v1/responses/resp_0123'), 404);
  assertError(await req(s, 'GET', '/v1/responses/resp_0123/input_items'), 404);
  assertError(await req(s, 'DELETE', '/v1/responses/resp_0123'), 404);
  assert.equal((await req(s, 'POST', `/v1/responses/${r1.json.id}`, { body: {} })).status, 405);
  assert.equal((await req(s, 'GET', `/v1/responses/${r1.json.id}/other`)).status, 404);

  // DELETE: gone for GET and for previous_response_id; the later turn stays.
  const del = await req(s, 'DELETE', `/v1/responses/${r1.json.id}`);
  assert.equal(del.status, 200, del.text);
  assert.deepEqual(del.json, { id: r1.json.id, object: 'response', deleted: true });
  assertError(await req(s, 'GET', `/v1/responses/${r1.json.id}`), 404);
  assertError(await req(s, 'DELETE', `/v1/responses/${r1.json.id}`), 404);
  assertError(await create(s, { previous_response_id: r1.json.id, input: 'x' }), 404, { param: 'previous_response_id' });
  assert.equal((await req(s, 'GET', `/v1/responses/${r2.json.id}`)).status, 200);

  // store: false is not stored; the engine says store false.
  const nos = await create(s, { ...first, store: false });
  assert.equal(nos.status, 200, nos.text);
  assert.equal(nos.json.store, false);
  assertError(await req(s, 'GET', `/v1/responses/${nos.json.id}`), 404);

  // Straight to the engine (its secret from its environment), previous_response_id is a 400:
  // it keeps nothing.
  const e = await engineOf(s, ck, MODEL);
  const secret = readFileSync(`/proc/${e.pid}/environ`).toString().split('\0')
    .find((x) => x.startsWith('FOLIO_API_KEY=')).split('=')[1];
  const direct = await fetch(`http://127.0.0.1:${e.port}/v1/responses`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` },
    body: JSON.stringify({ model: MODEL, input: 'x', previous_response_id: r2.json.id }),
  });
  const dj = await direct.json();
  assert.equal(direct.status, 400, JSON.stringify(dj));
  assert.equal(dj.error.param, 'previous_response_id');

  // /metrics counts what is stored.
  const met = await req(s, 'GET', '/metrics');
  assert.match(met.text, /^foliod:responses_stored 1$/m);
  assert.match(met.text, /^foliod:responses_stored_bytes [1-9]\d*$/m);
  await stopFoliod(s);
}, { timeout: 90000 });

test('responses: a streamed turn is stored from its final event; a streamed turn continues it', async () => {
  const { s } = await withModel();
  const ev1 = await createStream(s, { model: MODEL, input: 'Once upon a time', max_output_tokens: 10, temperature: 0 });
  const last1 = ev1[ev1.length - 1];
  assert.match(last1.type, /^response\.(completed|incomplete)$/);
  assert.deepEqual(ev1.map((e) => e.sequence_number), ev1.map((_, i) => i));
  const id1 = last1.response.id;
  assert.equal(last1.response.store, true);
  // Stored as the final event carried it.
  const g = await req(s, 'GET', `/v1/responses/${id1}`);
  assert.equal(g.status, 200, g.text);
  assert.deepEqual(g.json, last1.response);
  const ev2 = await createStream(s, { previous_response_id: id1, input: 'The end', max_output_tokens: 10, temperature: 0 });
  const last2 = ev2[ev2.length - 1].response;
  assert.equal(last2.previous_response_id, id1);
  assert.ok(last2.usage.input_tokens >= last1.response.usage.input_tokens + last1.response.usage.output_tokens);
  const items = await req(s, 'GET', `/v1/responses/${last2.id}/input_items?order=asc`);
  assert.equal(items.json.data.length, 3, items.text);
  // And a non-streamed turn continues the streamed one the same way.
  const r3 = await create(s, { previous_response_id: last2.id, input: 'Again', max_output_tokens: 4, temperature: 0 });
  assert.equal(r3.status, 200, r3.text);
  const items3 = await req(s, 'GET', `/v1/responses/${r3.json.id}/input_items?order=asc`);
  assert.equal(items3.json.data.length, 5, items3.text);
  // A streamed store:false turn is not kept.
  const ev4 = await createStream(s, { model: MODEL, input: 'x', max_output_tokens: 2, store: false });
  assertError(await req(s, 'GET', `/v1/responses/${ev4[ev4.length - 1].response.id}`), 404);
  await stopFoliod(s);
}, { timeout: 90000 });

test('responses: --responses-ttl: gone once expired; 0 stores nothing', async () => {
  const { s } = await withModel(['--responses-ttl', '1']);
  const r1 = await create(s, { model: MODEL, input: 'Once upon a time', max_output_tokens: 2 });
  assert.equal(r1.status, 200, r1.text);
  assert.equal((await req(s, 'GET', `/v1/responses/${r1.json.id}`)).status, 200);
  await sleep(1500);
  assertError(await req(s, 'GET', `/v1/responses/${r1.json.id}`), 404);
  assertError(await create(s, { previous_response_id: r1.json.id, input: 'x' }), 404, { param: 'previous_response_id' });
  // The next stored response purges the expired rows.
  const r2 = await create(s, { model: MODEL, input: 'Once upon a time', max_output_tokens: 2 });
  assert.equal(r2.status, 200, r2.text);
  assert.match((await req(s, 'GET', '/metrics')).text, /^foliod:responses_stored 1$/m);
  await stopFoliod(s);

  const t = await withModel(['--responses-ttl', '0']);
  const r = await create(t.s, { model: MODEL, input: 'Once upon a time', max_output_tokens: 2 });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.store, false, 'nothing is kept: the engine is told so');
  assertError(await req(t.s, 'GET', `/v1/responses/${r.json.id}`), 404);
  await stopFoliod(t.s);
}, { timeout: 90000 });

test('responses: an expanded conversation over --max-body is a 400; --responses-max-mib evicts the oldest', async () => {
  const { s } = await withModel(['--max-body', '1', '--responses-max-mib', '1']);
  // Reasoning items are ignored on input by the engine: bytes to store without tokens.
  const pad = (n) => ({ type: 'reasoning', summary: [], content: [{ type: 'reasoning_text', text: 'x'.repeat(n) }] });
  const turn = (n) => ({ model: MODEL, input: [pad(n), { role: 'user', content: 'Once upon a time' }], max_output_tokens: 2 });
  const a = await create(s, turn(600 << 10));
  assert.equal(a.status, 200, a.text);
  // 600 KiB stored plus 500 KiB more passes the 1 MiB limit only once expanded.
  const over = await create(s, { previous_response_id: a.json.id, input: [pad(500 << 10)] });
  assertError(over, 400, { param: 'input', message: /conversation is too long.*--max-body/ });
  const fits = await create(s, { previous_response_id: a.json.id, input: 'The end', max_output_tokens: 2 });
  assert.equal(fits.status, 200, fits.text);
  // The stored rows passed 1 MiB with fits (it repeats a's 600 KiB): a went to make room.
  assertError(await req(s, 'GET', `/v1/responses/${a.json.id}`), 404);
  assert.equal((await req(s, 'GET', `/v1/responses/${fits.json.id}`)).status, 200);
  const met = await req(s, 'GET', '/metrics');
  const bytes = Number(/^foliod:responses_stored_bytes (\d+)$/m.exec(met.text)[1]);
  assert.ok(bytes > 600 << 10 && bytes <= 1 << 20, `stored bytes ${bytes}`);
  await stopFoliod(s);
}, { timeout: 90000 });

test('responses: stored responses belong to the API key that made them', async () => {
  const { s, ck } = await withModel();
  const k1 = await req(s, 'POST', '/api/keys', { cookie: ck, body: { name: 'one' } });
  const k2 = await req(s, 'POST', '/api/keys', { cookie: ck, body: { name: 'two' } });
  const h1 = { authorization: `Bearer ${k1.json.key}` };
  const h2 = { authorization: `Bearer ${k2.json.key}` };
  const r1 = await create(s, { model: MODEL, input: 'Once upon a time', max_output_tokens: 2 }, { headers: h1 });
  assert.equal(r1.status, 200, r1.text);
  assert.equal((await req(s, 'GET', `/v1/responses/${r1.json.id}`, { headers: h1 })).status, 200);
  assertError(await req(s, 'GET', `/v1/responses/${r1.json.id}`, { headers: h2 }), 404);
  assertError(await req(s, 'DELETE', `/v1/responses/${r1.json.id}`, { headers: h2 }), 404);
  assertError(await create(s, { previous_response_id: r1.json.id, input: 'x' }, { headers: h2 }), 404);
  assert.equal((await req(s, 'GET', `/v1/responses/${r1.json.id}`)).status, 401, 'a key is needed');
  assert.equal((await create(s, { previous_response_id: r1.json.id, input: 'x', max_output_tokens: 2 }, { headers: h1 })).status, 200);
  await stopFoliod(s);
}, { timeout: 90000 });

test('responses: the openai SDK (v4) across turns, streamed and not: create, retrieve, inputItems, del', async () => {
  const { s } = await withModel();
  const client = sdk(s);
  const r1 = await client.responses.create({ model: MODEL, input: 'Once upon a time', max_output_tokens: 10, temperature: 0 });
  assert.ok(r1.output_text.length > 0, JSON.stringify(r1));
  const r2 = await client.responses.create({ previous_response_id: r1.id, input: 'The end', max_output_tokens: 10, temperature: 0 });
  assert.equal(r2.previous_response_id, r1.id);
  assert.ok(r2.usage.input_tokens >= r1.usage.input_tokens + r1.usage.output_tokens);
  // Streamed: the final event's response continues the chain.
  const stream = await client.responses.create({
    model: MODEL, previous_response_id: r2.id, input: 'Again', max_output_tokens: 10, temperature: 0, stream: true,
  });
  let final = null;
  let deltas = '';
  for await (const ev of stream) {
    if (ev.type === 'response.output_text.delta') deltas += ev.delta;
    if (ev.type === 'response.completed' || ev.type === 'response.incomplete') final = ev.response;
  }
  assert.ok(final, 'a final event');
  assert.equal(final.previous_response_id, r2.id);
  assert.equal(deltas, final.output.find((o) => o.type === 'message').content[0].text);
  assert.ok(final.usage.input_tokens >= r2.usage.input_tokens + r2.usage.output_tokens);
  // The SDK's stream helper, continuing the streamed turn.
  const helper = client.responses.stream({ previous_response_id: final.id, input: 'More', max_output_tokens: 6, temperature: 0 });
  const done = await helper.finalResponse();
  assert.equal(done.previous_response_id, final.id);
  const got = await client.responses.retrieve(final.id);
  assert.equal(got.id, final.id);
  assert.deepEqual(got.output, final.output);
  const items = [];
  for await (const it of client.responses.inputItems.list(done.id, { order: 'asc', limit: 2 })) items.push(it);
  assert.deepEqual(items.map((i) => i.role), ['user', 'assistant', 'user', 'assistant', 'user', 'assistant', 'user']);
  await client.responses.del(r1.id);
  await assert.rejects(client.responses.retrieve(r1.id), (e) => e.status === 404);
  await stopFoliod(s);
}, { timeout: 90000 });
