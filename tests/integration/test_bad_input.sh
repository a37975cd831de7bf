#!/usr/bin/env bash
# Broken model dirs must be rejected cleanly: non-zero exit (not a signal, not a timeout),
# exactly one stderr line `folio-engine: error: <message>` whose message names the problem
# (checked with a case-insensitive keyword regex), and no sanitizer report. The suite runs
# it with the ASan build: FOLIO_ENGINE=build/asan/folio-engine.
#
# Each case starts from a fresh copy of a small generated checkpoint
# (tests/fixtures/gen_checkpoint.py) and breaks one thing with a few lines of Python.
# Usage: tests/integration/test_bad_input.sh [FILTER]    (FILTER: run the cases matching it)
# Ends with `N passed, N failed`; exits 1 on any failure.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ENGINE=${FOLIO_ENGINE:-$ROOT/build/release/folio-engine}
PY=/usr/bin/python3
GEN=$ROOT/tests/fixtures/gen_checkpoint.py
FILTER=${1:-}
TIMEOUT=${BAD_INPUT_TIMEOUT:-60}
passed=0
failed=0

if [ ! -x "$ENGINE" ]; then
  echo "FAIL engine: $ENGINE not found or not executable (set FOLIO_ENGINE)"
  echo "0 passed, 1 failed"
  exit 1
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/folio-bad-input.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# The pristine models every case copies: one file, and three shards.
"$PY" "$GEN" --out "$TMP/base" --preset llama-gqa --dtype F32 --seed 7 || exit 1
"$PY" "$GEN" --out "$TMP/base3" --preset llama-gqa --dtype F32 --seed 7 --shards 3 || exit 1

# Python helper: edits of safetensors files and JSON files.
cat > "$TMP/edit.py" <<'EOF'
import json, os, struct, sys

def read(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]

def write(path, header, data, hdr_bytes=None):
    hb = hdr_bytes if hdr_bytes is not None else json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + data)

def tensors(h):
    """tensor names in data order"""
    return sorted((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][0])

op, path = sys.argv[1], sys.argv[2]
args = sys.argv[3:]
if op == "truncate":                      # keep the first FRAC of the file
    size = os.path.getsize(path)
    os.truncate(path, int(size * float(args[0])))
elif op == "set-hdrlen":                  # overwrite the u64 header length
    with open(path, "r+b") as f:
        f.write(struct.pack("<Q", int(args[0], 0)))
elif op == "raw-header":                  # replace the header bytes (length field follows)
    h, data = read(path)
    write(path, None, data, args[0].encode())
elif op == "header":                      # exec python on the header dict `h` (`t`: names)
    h, data = read(path)
    t = tensors(h)
    exec(args[0])
    write(path, h, data)
elif op == "json":                        # exec python on a JSON file's object `j`
    with open(path) as f:
        j = json.load(f)
    exec(args[0])
    with open(path, "w") as f:
        json.dump(j, f)
elif op == "cut":                         # truncate a text file to its first N bytes
    with open(path, "rb") as f:
        b = f.read()
    with open(path, "wb") as f:
        f.write(b[:int(args[0])])
else:
    sys.exit("edit.py: unknown op " + op)
EOF
edit() { "$PY" "$TMP/edit.py" "$@" || { echo "edit.py $1 failed"; exit 1; }; }

# fresh NAME [base|base3] -> prints the dir of a new copy
fresh() {
  local d="$TMP/case-$1"
  rm -rf "$d"
  cp -r "$TMP/${2:-base}" "$d"
  echo "$d"
}

# [PIDS=ids] check NAME KEYWORD_REGEX DIR [extra engine args...]
check() {
  local name=$1 kw=$2 dir=$3
  shift 3
  if [ -n "$FILTER" ] && [[ "$name" != *"$FILTER"* ]]; then return; fi
  local out="$TMP/out" err="$TMP/err" rc
  timeout -k 5 "$TIMEOUT" "$ENGINE" generate --model "$dir" --prompt-ids "${PIDS:-1,2}" --max-tokens 2 \
    "$@" >"$out" 2>"$err" </dev/null
  rc=$?
  local errlines nlines why=""
  errlines=$(grep -c '^folio-engine: error: ' "$err")
  nlines=$(grep -c . "$err")
  if [ "$rc" -eq 0 ]; then
    why="exit status 0"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    why="timed out after ${TIMEOUT}s"
  elif [ "$rc" -ge 128 ]; then
    why="killed by signal $((rc - 128))"
  elif grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:|Segmentation|Aborted' "$err"; then
    why="sanitizer/crash report"
  elif [ "$errlines" -ne 1 ] || [ "$nlines" -ne 1 ]; then
    why="want exactly one 'folio-engine: error:' line on stderr, got $nlines line(s)"
  elif ! grep '^folio-engine: error: ' "$err" | sed 's/^folio-engine: error: //' | grep -qiE "$kw"; then
    why="message does not match /$kw/"
  fi
  if [ -z "$why" ]; then
    passed=$((passed + 1))
    echo "ok $name: $(head -c 200 "$err")"
  else
    failed=$((failed + 1))
    echo "FAIL $name: $why (exit $rc); stderr: $(head -c 600 "$err" | tr '\n' '|')"
  fi
}

ST=model.safetensors
PAST='trunc|past the end|beyond|exceed|out of (bounds|range)|too (short|small)|end of (the )?file|file size|size of the file|outside'

# --- sanity: the pristine copies load (otherwise every case below proves nothing) ---------------
if [ -z "$FILTER" ]; then
  for b in base base3; do
    if timeout -k 5 "$TIMEOUT" "$ENGINE" generate --model "$TMP/$b" --prompt-ids 1,2 --max-tokens 2 \
        >"$TMP/out" 2>"$TMP/err"; then
      passed=$((passed + 1)); echo "ok pristine-$b loads"
    else
      failed=$((failed + 1))
      echo "FAIL pristine-$b loads: exit $?; stderr: $(head -c 600 "$TMP/err" | tr '\n' '|')"
    fi
  done
fi

# --- safetensors container ---------------------------------------------------------------------
d=$(fresh truncated); edit truncate "$d/$ST" 0.5
check truncated-file "$PAST" "$d"

d=$(fresh truncated-in-header); edit truncate "$d/$ST" 0.0005
check truncated-in-header "header|$PAST" "$d"

d=$(fresh empty-file); : >"$d/$ST"
check empty-file "header|empty|$PAST" "$d"

d=$(fresh hdrlen-past-end); edit set-hdrlen "$d/$ST" 0x10000000
check header-length-past-end "header" "$d"

d=$(fresh hdrlen-huge); edit set-hdrlen "$d/$ST" 0xffffffffffffff00
check header-length-overflow "header" "$d"

d=$(fresh hdrlen-zero); edit set-hdrlen "$d/$ST" 0
check header-length-zero "header|json" "$d"

d=$(fresh header-json); edit raw-header "$d/$ST" '{"model.embed_tokens.weight": {"dtype": "F32", "shape": [320, 64], "data_offs'
check header-json-malformed "header|json|parse" "$d"

d=$(fresh header-not-object); edit raw-header "$d/$ST" '[1, 2, 3]'
check header-not-object "header|json|object" "$d"

d=$(fresh offsets-past-end)
edit header "$d/$ST" 'b, e = h[t[-1]]["data_offsets"]; h[t[-1]]["data_offsets"] = [b + 1000000, e + 1000000]'
check offsets-past-end "$PAST|offset" "$d"

d=$(fresh offsets-overflow)
edit header "$d/$ST" 'b, e = h[t[-1]]["data_offsets"]; h[t[-1]]["data_offsets"] = [2**64 - 16, 2**64 - 16 + (e - b)]'
check offsets-overflow "$PAST|offset|overflow|range" "$d"

d=$(fresh offsets-overlap)
edit header "$d/$ST" 'b0 = h[t[2]]["data_offsets"][0]; b, e = h[t[3]]["data_offsets"]; h[t[3]]["data_offsets"] = [b0 + 8, b0 + 8 + (e - b)]'
check offsets-overlap "overlap|offset" "$d"

d=$(fresh offsets-reversed)
edit header "$d/$ST" 'b, e = h[t[2]]["data_offsets"]; h[t[2]]["data_offsets"] = [e, b]'
check offsets-end-before-begin "offset|begin|end|invalid|negative" "$d"

d=$(fresh offsets-size)
edit header "$d/$ST" 'b, e = h[t[2]]["data_offsets"]; h[t[2]]["data_offsets"] = [b, e - 256]'
check offsets-size-vs-shape "size|bytes|shape|match|offset" "$d"

d=$(fresh dtype-f8)
edit header "$d/$ST" 'h["model.layers.0.self_attn.k_proj.weight"]["dtype"] = "F8_E4M3"'
check unknown-dtype-F8_E4M3 "dtype|F8_E4M3|unsupported" "$d"

d=$(fresh dtype-i64)
edit header "$d/$ST" 'h["model.norm.weight"]["dtype"] = "I64"'
check unknown-dtype-I64 "dtype|I64|unsupported" "$d"

d=$(fresh dtype-bogus)
edit header "$d/$ST" 'h["model.norm.weight"]["dtype"] = "Q4_WHATEVER"'
check unknown-dtype-bogus "dtype|Q4_WHATEVER|unsupported|unknown" "$d"

d=$(fresh shape-overflow)
edit header "$d/$ST" 'h["model.norm.weight"]["shape"] = [2**40, 2**40]'
check shape-numel-overflow "shape|size|overflow|match|bytes" "$d"

d=$(fresh shape-negative)
edit header "$d/$ST" 'h["model.norm.weight"]["shape"] = [-64]'
check shape-negative "shape|invalid|negative" "$d"

d=$(fresh header-missing-fields)
edit header "$d/$ST" 'del h["model.norm.weight"]["data_offsets"]'
check header-tensor-without-offsets "data_offsets|offset|header" "$d"

# --- tensors vs config -------------------------------------------------------------------------
d=$(fresh missing-tensor)
edit header "$d/$ST" 'del h["model.layers.1.mlp.up_proj.weight"]'
check missing-tensor "model\.layers\.1\.mlp\.up_proj\.weight|missing|not found" "$d"

d=$(fresh missing-lm-head)
edit json "$d/config.json" 'j["tie_word_embeddings"] = False'
check missing-lm-head-untied "lm_head|missing|not found" "$d"

d=$(fresh wrong-shape)
edit header "$d/$ST" 's = h["model.layers.0.self_attn.k_proj.weight"]["shape"]; h["model.layers.0.self_attn.k_proj.weight"]["shape"] = [s[1], s[0]]'
check wrong-shape "shape|k_proj" "$d"

d=$(fresh vocab-mismatch)
edit json "$d/config.json" 'j["vocab_size"] = 400'
check config-vocab-vs-embedding "shape|vocab|embed" "$d"

# --- config.json -------------------------------------------------------------------------------
d=$(fresh arch)
edit json "$d/config.json" 'j["architectures"] = ["GPT2LMHeadModel"]; j["model_type"] = "gpt2"'
check unsupported-architecture "GPT2LMHeadModel|architecture|unsupported" "$d"

d=$(fresh no-config); rm "$d/config.json"
check missing-config "config\.json|config" "$d"

d=$(fresh bad-config); edit cut "$d/config.json" 120
check malformed-config "config|json|parse" "$d"

d=$(fresh config-no-hidden)
edit json "$d/config.json" 'del j["hidden_size"]'
check config-missing-hidden_size "hidden_size|missing|config" "$d"

d=$(fresh config-heads)
edit json "$d/config.json" 'j["num_attention_heads"] = 5; j["num_key_value_heads"] = 5'
# HF takes head_dim = hidden // heads (12 here), so q_proj [64, 64] has the wrong shape.
check config-heads-not-dividing-hidden "head|divis|hidden|shape" "$d"

d=$(fresh config-gqa)
edit json "$d/config.json" 'j["num_key_value_heads"] = 3'
check config-kv-heads-not-dividing-heads "head|divis|key_value" "$d"

d=$(fresh config-negative)
edit json "$d/config.json" 'j["num_hidden_layers"] = -1'
check config-negative-layers "layer|invalid|negative|range|num_hidden_layers" "$d"

d=$(fresh config-rope)
edit json "$d/config.json" 'j["rope_scaling"] = {"rope_type": "yarn-nonsense", "factor": 2.0}'
check config-unknown-rope-scaling "rope|scaling|yarn" "$d"

# --- tokenizer ---------------------------------------------------------------------------------
d=$(fresh no-tokenizer); rm "$d/tokenizer.json"
check missing-tokenizer "tokenizer" "$d"

d=$(fresh bad-tokenizer); edit cut "$d/tokenizer.json" 500
check malformed-tokenizer "tokenizer|json|parse" "$d"

# --- sharded index -----------------------------------------------------------------------------
d=$(fresh missing-shard base3); rm "$d/model-00002-of-00003.safetensors"
check index-missing-shard "model-00002-of-00003|shard|no such file|open" "$d"

d=$(fresh index-bad-json base3); edit cut "$d/model.safetensors.index.json" 40
check index-malformed "index|json|parse" "$d"

# A tensor dropped from its shard (and from the weight map): missing in a sharded checkpoint.
# (Dropped from the weight map alone it is still found in its shard, as HF would load it.)
d=$(fresh index-missing-tensor base3)
shard=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["weight_map"]["model.layers.1.mlp.up_proj.weight"])' "$d/model.safetensors.index.json")
edit header "$d/$shard" 'del h["model.layers.1.mlp.up_proj.weight"]'
edit json "$d/model.safetensors.index.json" 'del j["weight_map"]["model.layers.1.mlp.up_proj.weight"]'
check sharded-missing-tensor "model\.layers\.1\.mlp\.up_proj\.weight|missing|not found" "$d"

d=$(fresh index-wrong-shard base3)
edit json "$d/model.safetensors.index.json" 'j["weight_map"]["model.norm.weight"] = "model-00009-of-00009.safetensors"'
check index-names-nonexistent-shard "model-00009-of-00009|shard|no such file|open|missing" "$d"

d=$(fresh no-weights); rm "$d/$ST"
check no-safetensors "safetensors|weights|no such file|not found|open" "$d"

# --- the newer families: experts, fused projections, norms, configs -----------------------------
"$PY" "$GEN" --out "$TMP/moe" --preset qwen3-moe --dtype BF16 --seed 7 || exit 1
"$PY" "$GEN" --out "$TMP/phi" --preset phi3-longrope --dtype F32 --seed 7 || exit 1
"$PY" "$GEN" --out "$TMP/gemma" --preset gemma3 --dtype F32 --seed 7 || exit 1
if [ -z "$FILTER" ]; then
  for b in moe phi gemma; do
    if timeout -k 5 "$TIMEOUT" "$ENGINE" generate --model "$TMP/$b" --prompt-ids 1,2 --max-tokens 2 \
        >"$TMP/out" 2>"$TMP/err"; then
      passed=$((passed + 1)); echo "ok pristine-$b loads"
    else
      failed=$((failed + 1))
      echo "FAIL pristine-$b loads: exit $?; stderr: $(head -c 600 "$TMP/err" | tr '\n' '|')"
    fi
  done
fi
d=$(fresh moe-missing-expert moe); edit header "$d/$ST" 'del h["model.layers.2.mlp.experts.5.up_proj.weight"]'
check moe-missing-expert "model\.layers\.2\.mlp\.experts\.5\.up_proj\.weight|missing" "$d"
d=$(fresh moe-expert-shape moe)
edit header "$d/$ST" 'x = h["model.layers.0.mlp.experts.3.down_proj.weight"]; x["shape"] = [x["shape"][1], x["shape"][0]]'
check moe-expert-wrong-shape "experts\.3\.down_proj|shape" "$d"
d=$(fresh moe-topk moe); edit json "$d/config.json" 'j["num_experts_per_tok"] = 9'
check moe-top-k-past-experts "num_experts_per_tok|experts" "$d"
d=$(fresh moe-dense-layer moe); edit json "$d/config.json" 'j["mlp_only_layers"] = [7]'
check moe-mlp-only-layer-out-of-range "mlp_only_layers" "$d"
d=$(fresh phi-qkv phi); edit header "$d/$ST" 'x = h["model.layers.1.self_attn.qkv_proj.weight"]; x["shape"] = [x["shape"][0] // 2, x["shape"][1] * 2]'
check phi3-fused-qkv-wrong-shape "qkv_proj|shape" "$d"
d=$(fresh phi-factors phi); edit json "$d/config.json" 'j["rope_scaling"]["long_factor"] = j["rope_scaling"]["long_factor"][:-1]'
check phi3-longrope-factor-count "long_factor" "$d"
d=$(fresh phi-partial phi); edit json "$d/config.json" 'j["partial_rotary_factor"] = 1e300'
check phi3-partial-rotary-factor "partial_rotary_factor" "$d"
d=$(fresh gemma-qknorm gemma); edit header "$d/$ST" 'del h["model.layers.0.self_attn.k_norm.weight"]'
check gemma3-missing-k-norm "k_norm|missing" "$d"
d=$(fresh gemma-postnorm gemma); edit header "$d/$ST" 'del h["model.layers.1.post_feedforward_layernorm.weight"]'
check gemma3-missing-sandwich-norm "post_feedforward_layernorm|missing" "$d"
d=$(fresh gemma-types gemma); edit json "$d/config.json" 'j["layer_types"] = j["layer_types"][:-1]'
check gemma3-layer-types-count "layer_types" "$d"
d=$(fresh gemma-act gemma); edit json "$d/config.json" 'j["hidden_activation"] = "relu2"'
check gemma3-unsupported-activation "hidden_act|relu2" "$d"
d=$(fresh unknown-arch); edit json "$d/config.json" 'j["architectures"] = ["DeepseekV3ForCausalLM"]'
check unknown-architecture-lists-supported "DeepseekV3ForCausalLM.*Qwen3MoeForCausalLM" "$d"

# --- command line ------------------------------------------------------------------------------
check nonexistent-model-dir "no such|not found|not exist|open|config" "$TMP/does-not-exist"
PIDS=1,99999 check prompt-id-out-of-range "token|id|range|vocab" "$TMP/base"
PIDS=1,-3 check prompt-id-negative "token|id|range|vocab|invalid" "$TMP/base"
PIDS=1,abc check prompt-ids-garbage "prompt|id|invalid|parse|number" "$TMP/base"
check block-size-zero "block" "$TMP/base" --block-size 0
check unknown-option "bogus|option|unknown|argument" "$TMP/base" --bogus-flag 1
check bad-dtype-flag "dtype|float8|unsupported|unknown" "$TMP/base" --dtype float8

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
