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
