// Deterministic test corpus for the tokenizer comparison: hand-written edge cases plus
// seeded random mixes of fragments from many scripts and shapes of text.
//
// Left out on purpose, because @huggingface/tokenizers (JS) and the Rust `tokenizers` crate
// disagree on them and Folio follows Rust:
//   U+FEFF  JS's TextDecoder drops it at the start of a byte-fallback run; JS's \s has it.
//   U+0085  JS's \s (the hard-coded GPT-2 regex) lacks it; Unicode White_Space has it.
//   U+180E  PCRE2's \s would have it (Folio spells \s out, but keep the corpus neutral).
//   U+017F  (long s) matches 's under Unicode case folding (PCRE2, Oniguruma), not JS's ASCII fold.
// Scripts are drawn from blocks assigned before Unicode 14, which PCRE2, utf8proc and Node's
// ICU all know.

export function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const EXCLUDED = /[\uFEFF\u0085\u180E\u017F]/gu;

const FIXED = [
  "", " ", "  ", "\n", "\t", "a", "Once upon a time", "Hello world", "Hello  world",
  " leading space", "trailing space ", "   three leading", "tab\tseparated\tvalues",
  "line one\nline two\r\nline three\rend", "\n\n\n", " \n \n ", "\t\t \n\t",
  "mixed \t\n\r\n  whitespace\u00A0nbsp\u2003emspace\u3000ideographic",
  "don't stop", "I'M HERE", "we've, they're, I'd, she'll, it's", "'s 't 're 've 'm 'll 'd",
  "O'Neil's", "rock 'n' roll", "hello . world , ok ! really ? yes",
  "It isn't , is it ? I 'm sure it 's fine ' quote ' here", "a ' b", "x  ' s", "don 't", "can n't",
  "3.14159", "1,000,000", "-42", "2024-01-01T12:00:00Z", "0x1F600", "1e-9", "12345678901234567890",
  "٣٤٥ ١٢", "१२३४", "Ⅻ ½ ²³",
  "def f(x):\n    return x ** 2  # square\n", "int main(void) { return 0; }",
  "for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}", "<div class=\"x\">&amp;</div>",
  "SELECT * FROM t WHERE id = 1;", "https://example.com/path?q=1&r=2#frag", "user@example.org",
  "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸🇯🇵🇩🇪", "1️⃣", "❤️", "🧑🏿‍💻", "👩🏻‍❤️‍💋‍👨🏼",
  "你好，世界！", "日本語のテキストです。", "한국어 텍스트", "中文 English 混合",
  "e\u0301", "é", "A\u030A", "Å", "\u1100\u1161\u11A8", "각", "n\u0303o", "ñ",
  "o\u0308\u0304", "Zalgo: Z\u0351\u0352\u0353a\u0300\u0301l\u0302g\u0303o\u0304",
  "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "Привет мир", "Γειά σου κόσμε",
  "\uFFFD", "a\uFFFDb", "\uFFFD\uFFFD", "Ã©tÃ©", "â€™", "\\xC3\\x28", "\u0000", "a\u0000b",
  "\u0001\u0002\u0003\u001F\u007F", "\u200B\u200C\u200D", "\u2028\u2029", "\uE000\uF8FF",
  "𝐀𝐁𝐂 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\u{10FFFD}", "\u{1F9D1}",
  "<s>", "</s>", "<unk>", "<s>Hello</s>", "Hello <s> world", "<s><s></s>", "x<s>y",
  "<|begin_of_text|>", "<|end_of_text|>", "<|begin_of_text|>Hello", "<|eot_id|>",
  "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
  "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", "<|im_st", "<|im_start", "<|im_end",
  "<|endoftext|>", "<|endoftext|><|endoftext|>", "<think>\nhmm\n</think>", "<s", "</", "<|", "|>",
  "<<s>>", "<|<|im_start|>|>", "<0x41>", "<0xZZ>", "▁", "▁▁hello", "Ġ", "ĠĠ",
  // Gemma 3: specials, added tokens that are not special (newline, "▁" and tab runs, HTML tags)
  "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n", "<bos><eos><pad><mask>",
  "[multimodal]<start_of_image><image_soft_token><end_of_image>", "<unused0><unused6241>x",
  "<table><tr><td>1</td></tr></table>", "<h1>Title</h1>\n<p>text</p>", "a\n\n\n\nb\t\t\tc",
  "x▁▁▁▁y", "<start_of_turn", "<end_of_turn>\n\n",
  // Phi-3 / Phi-4-mini: specials that take the spaces after them (rstrip), tool tags
  "<|user|>\nHi<|end|>\n<|assistant|>\n", "<|system|>   You are.<|end|>  \n  <|user|>  x",
  "<|user|>\n\n\t<|end|>", "</s>   after", "<|assistant|><|end|> <|user|>",
  "<|system|>S<|tool|>[{\"name\": \"f\"}]<|/tool|><|end|><|user|>Q<|end|><|assistant|>",
  "<|tool_call|>[f(x=1)]<|/tool_call|> <|tool_response|> r <|tag|>", "<|placeholder1|>  x",
  "<|endofprompt|>", "<|end|", "<|user",
  // Mistral / Mixtral
  "[INST] Hello [/INST] Hi</s>[INST] again [/INST]", "<s> [INST] x [/INST]",
  "a".repeat(300), " ".repeat(100), "\n".repeat(50), "ab".repeat(200), "😀".repeat(40),
  "中".repeat(100),
];

const WORDS = ("the quick brown fox jumps over lazy dog once upon a time there was little girl " +
  "named Lily she loved to play outside in park one day saw big red ball tokenizer transformer " +
  "attention cache batch scheduler kernel Folio vLLM GPU throughput latency streaming UTF-8 " +
  "Hello World THE END isn't can't won't they'll we'd you're Mr. Dr. e.g. i.e. etc.").split(" ");

const CODE = [
  "if (x == 0) { return -1; }", "const y = arr.map((v) => v * 2);", "#include <stdio.h>",
  "    pass", "\tif err != nil {\n\t\treturn err\n\t}", "SELECT id, name FROM users;",
  "fn main() -> Result<(), Box<dyn Error>> {", "x += 1; y -= 2; z *= 3;", "/* comment */",
  "// TODO: fix", "print(f\"{x!r:>10}\")", "a[i][j] = b[j][i];", "$ ls -la | grep foo",
  "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}", "<html><body></body></html>",
];

const EMOJI = ["😀", "😂", "🥲", "👍", "👍🏻", "👍🏿", "👋🏽", "🙏", "🔥", "✨", "🎉", "🚀", "❤️",
  "👨‍💻", "👩‍🔬", "🧑‍🤝‍🧑", "👨‍👩‍👧", "🏳️‍⚧️", "🏴‍☠️", "🇫🇷", "🇧🇷", "🇮🇳", "#️⃣", "©️",
  "☕", "⌚", "🐈‍⬛", "🫠", "🦀"];

const CJK = ["你好", "世界", "中文", "测试", "漢字", "東京", "ひらがな", "カタカナ", "ありがとう",
  "한국어", "안녕하세요", "谢谢", "。", "，", "！", "「引用」", "（括弧）"];

const SCRIPTS = ["مرحبا", "كتاب", "السلام عليكم", "שלום", "עברית", "नमस्ते", "हिन्दी", "क्षत्रिय",
  "ไทย", "Ελληνικά", "Русский", "Ўзбек", "Tiếng Việt", "Türkçe", "ქართული", "Հայերեն",
  "አማርኛ", "தமிழ்", "ಕನ್ನಡ", "বাংলা", "ગુજરાતી", "Kiswahili", "Ærøskøbing", "façade", "naïve"];

const COMBINING = ["e\u0301", "a\u0300", "o\u0302", "u\u0308", "c\u0327", "n\u0303", "A\u030A",
  "\u1100\u1161", "\u1112\u1161\u11AB", "i\u0307", "e\u0301\u0301", "\u0915\u094D\u0937",
  "\u05E9\u05C1", "\u0627\u0653", "x\u20DD", "1\u20E3"];

const WS = [" ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", " \n", "\t\t", "    ", "\u00A0",
  "\u2009", "\u3000", " \t \n"];

const SPECIAL = ["<s>", "</s>", "<unk>", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
  "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<|im_st", "<s",
  "<|reserved_special_token_0|>", "<|reserved_special_token_250|>", "<|start_header_id|>",
  "<start_of_turn>", "<end_of_turn>", "<bos>", "<unused17>", "<td>", "</b>", "<|user|>",
  "<|assistant|>", "<|end|>", "<|tool_call|>", "[INST]", "[/INST]"];

const ODD = ["\uFFFD", "\u0000", "\u0007", "\u001B[31m", "\u007F", "\u200B", "\u200D",
  "\u2060", "\uE000", "\uFFFC", "\u{1D11E}", "\u{1F600}", "\u{20000}", "\u{E0041}", "\\x80",
  "Ã©", "\u0301", "\u00AD", "\u202E", "\u{10000}"];

const RANGES = [[0x20, 0x7e], [0xa0, 0xff], [0x100, 0x17e], [0x391, 0x3c9], [0x410, 0x44f],
  [0x4e00, 0x9fa5], [0x3041, 0x3096], [0x30a1, 0x30fa], [0xac00, 0xd7a3], [0x0621, 0x064a],
  [0x05d0, 0x05ea], [0x0905, 0x0939], [0x0e01, 0x0e3a], [0x1f600, 0x1f64f], [0x2200, 0x22ff],
  [0x0300, 0x036f], [0x2000, 0x206f]];

function pick(r, a) { return a[Math.floor(r() * a.length)]; }

function number(r) {
  const k = Math.floor(r() * 5);
  const n = Math.floor(r() * 10 ** (1 + Math.floor(r() * 9)));
  if (k === 0) return String(n);
  if (k === 1) return (r() * 1000).toFixed(Math.floor(r() * 5));
  if (k === 2) return n.toLocaleString("en-US");
  if (k === 3) return "-" + n;
  return String(n).split("").join(pick(r, ["", " ", ","]));
}

function randomChars(r) {
  const [lo, hi] = pick(r, RANGES);
  let s = "";
  const len = 1 + Math.floor(r() * 8);
  for (let i = 0; i < len; i++) s += String.fromCodePoint(lo + Math.floor(r() * (hi - lo + 1)));
  return s;
}

function fragment(r) {
  switch (Math.floor(r() * 12)) {
    case 0: case 1: {
      const n = 1 + Math.floor(r() * 12);
      const w = [];
      for (let i = 0; i < n; i++) w.push(pick(r, WORDS));
      let s = w.join(" ");
      if (r() < 0.5) s = s[0].toUpperCase() + s.slice(1) + pick(r, [".", "!", "?", ",", "", " ."]);
      return s;
    }
    case 2: return pick(r, CODE);
    case 3: return pick(r, WS).repeat(1 + Math.floor(r() * 3));
    case 4: return pick(r, EMOJI).repeat(1 + Math.floor(r() * 2));
    case 5: return pick(r, CJK);
    case 6: return pick(r, SCRIPTS);
    case 7: {
      const c = pick(r, COMBINING);
      return r() < 0.5 ? c : c.normalize("NFC");
    }
    case 8: return number(r);
    case 9: return pick(r, SPECIAL);
    case 10: return pick(r, ODD);
    default: return randomChars(r);
  }
}

// n strings: FIXED first, then random mixes (a few long ones to exercise long BPE words).
export function corpus(seed, n) {
  const r = mulberry32(seed);
  const out = FIXED.slice();
  while (out.length < n) {
    const parts = 1 + Math.floor(r() * 6);
    let s = "";
    for (let i = 0; i < parts; i++) {
      s += fragment(r);
      const sep = r();
      if (sep < 0.5) s += " ";
      else if (sep < 0.6) s += "\n";
    }
    if (r() < 0.02) {
      let long = "";
      while (long.length < 2000 + r() * 3000) long += fragment(r) + " ";
      s = long;
    }
    out.push(s);
  }
  return out.map((s) => s.replace(EXCLUDED, ""));
}
