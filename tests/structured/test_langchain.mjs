// LangChain's withStructuredOutput against folio-engine: the JSON Schema method (response_format
// json_schema, strict) with a zod schema, which LangChain parses and checks itself. (Its json_mode
// method sends response_format json_object, which the completions tests cover: a random model
// may write an object that never ends within max_tokens, which LangChain cannot parse.)
import { ChatOpenAI } from '@langchain/openai';
import { z } from 'zod';
import { assert, test, withServer } from '../api/lib.mjs';
import { structuredModel } from './lib.mjs';

const Pet = z.object({
  kind: z.enum(['cat', 'dog', 'fish']),
  name: z.string().max(10),
  legs: z.number().int().min(0).max(4),
  vaccinated: z.boolean(),
});

function model(s, opts = {}) {
  return new ChatOpenAI({
    model: s.modelPath, apiKey: 'unused', configuration: { baseURL: `${s.url}/v1` }, temperature: 1,
    maxTokens: 1500, maxRetries: 0, ...opts,
  });
}

for (const name of ['qwen3-tok', 'llama3-tok']) test(`structured: LangChain withStructuredOutput (jsonSchema, zod), ${name}: a parsed, checked object`, async () => {
  await withServer({ model: structuredModel(name) }, async (s) => {
    const llm = model(s).withStructuredOutput(Pet, { name: 'pet', method: 'jsonSchema', strict: true });
    for (let seed = 1; seed <= 3; seed++) {
      const pet = await llm.invoke('Describe a pet.', { seed });
      // LangChain has already parsed it with zod; check again so a silent pass-through fails.
      assert.deepEqual(Pet.parse(pet), pet);
      assert.ok(['cat', 'dog', 'fish'].includes(pet.kind));
    }
  });
}, { timeout: 120000 });

// One agent step with LangChain JS: bindTools with a zod-typed local function, a forced call,
// the function run on the parsed arguments, its result fed back as a ToolMessage, and the model's
// answer to that history (tool_choice none: the step ends with text).
// Qwen3 runs in its non-thinking mode (chat_template_kwargs, as its model card has for tool use):
// a random model that opens a <think> block would never close it.
for (const [name, args, kwargs] of [['qwen3-tok', [], { chat_template_kwargs: { enable_thinking: false } }], ['llama3-tok', ['--chat-template', new URL('../chat_template/templates/llama3.1_tools.jinja', import.meta.url).pathname]]]) {
  test(`tools: a LangChain agent step (bindTools, a local function, its result fed back), ${name}`, async () => {
    const { tool } = await import('@langchain/core/tools');
    const { HumanMessage, ToolMessage } = await import('@langchain/core/messages');
    const calls = [];
    const getWeather = tool(async ({ city, unit }) => {
      calls.push({ city, unit });
      return JSON.stringify({ city, unit, temperature: 21 });
    }, {
      name: 'get_weather',
      description: 'The weather in a city',
      schema: z.object({ city: z.string().max(10), unit: z.enum(['celsius', 'fahrenheit']) }),
    });
    await withServer({ model: structuredModel(name), args }, async (s) => {
      const llm = model(s, { maxTokens: 400, modelKwargs: kwargs || {} });
      const history = [new HumanMessage('What is the weather in Paris?')];
      let ai = null;
      for (let seed = 1; seed <= 4 && !ai?.tool_calls?.length; seed++) {
        ai = await llm.bindTools([getWeather], { tool_choice: 'get_weather', parallel_tool_calls: false }).invoke(history, { seed });
      }
      assert.ok(ai.tool_calls.length >= 1, `no call in 4 tries: ${JSON.stringify(ai)}`);
      const call = ai.tool_calls[0];
      assert.equal(call.name, 'get_weather');
      // LangChain parsed the arguments; the tool checks them with zod before it runs
      const result = await getWeather.invoke(call);
      assert.ok(result instanceof ToolMessage);
      assert.equal(result.tool_call_id, call.id);
      assert.deepEqual(calls, [call.args]);
      history.push(ai, result);
      const answer = await llm.bindTools([getWeather], { tool_choice: 'none' }).invoke(history, { seed: 1, max_tokens: 16 });
      assert.equal(typeof answer.content, 'string');
      assert.equal(answer.tool_calls.length, 0);
    });
  }, { timeout: 180000 });
}
