#!/usr/bin/env bash
# make bench: single-stream CPU decode and prefill speed on generated bf16 checkpoints with
# SmolLM2-135M's and Llama-3.2-1B's shapes, each set against the roofline this same run
# measures: decode against memory bandwidth / weight bytes read per token, prefill against
# FMA throughput / (2 x layer parameters per token; the LM head runs for the last token only). Best of REPS runs, since the machine is shared.
# Then offline throughput (bench_throughput): NUM_PROMPTS requests on the SmolLM2-135M-shaped
# checkpoint, continuously batched against one at a time; THROUGHPUT=0 skips it.
set -euo pipefail
cd "$(dirname "$0")/../.."
ENGINE=${FOLIO_ENGINE:-build/release/folio-engine}
ROOFLINE=${FOLIO_ROOFLINE:-build/release/roofline}
CACHE=${FOLIO_BENCH_DIR:-build/bench-models}
REPS=${REPS:-3}
PRESETS=${PRESETS:-"smollm2-135m llama3.2-1b"}
DECODE_PROMPT=${DECODE_PROMPT:-64}
DECODE_TOKENS=${DECODE_TOKENS:-64}
PREFILL_PROMPT=${PREFILL_PROMPT:-256}
TOOL=${FOLIO_BENCH_TOOL:-build/release/bench_throughput}
THROUGHPUT=${THROUGHPUT:-1}
NUM_PROMPTS=${NUM_PROMPTS:-200}
if [ "$THROUGHPUT" != 0 ] && [ ! -x "$TOOL" ]; then
  echo "run_bench.sh: $TOOL not found; build it with: make $TOOL (or set FOLIO_BENCH_TOOL)" >&2
  exit 1
fi
mkdir -p "$CACHE"

ids() { # n, vocab -> comma-separated deterministic ids
  /usr/bin/python3 -c "import random,sys; r=random.Random(1); print(','.join(str(r.randrange(300, $2)) for _ in range($1)))"
}

read -r roof < <("$ROOFLINE")
bw=$(sed -n 's/.*bandwidth_gbs=\([0-9.]*\).*/\1/p' <<<"$roof")
fl=$(sed -n 's/.*flops_g=\([0-9.]*\).*/\1/p' <<<"$roof")
echo "machine: $roof"

rows=()
for p in $PRESETS; do
  dir=$CACHE/$p-bf16
  if [ ! -f "$dir/config.json" ]; then
    echo "generating $p (bf16) in $dir ..."
    /usr/bin/python3 tests/fixtures/gen_checkpoint.py --out "$dir" --preset "$p" --dtype BF16 --seed 1 >/dev/null
  fi
  vocab=$(/usr/bin/python3 -c "import json; print(json.load(open('$dir/config.json'))['vocab_size'])")
  best_dec=0; best_pre=0; mib=0
  dec_ids=$(ids "$DECODE_PROMPT" "$vocab")
  pre_ids=$(ids "$PREFILL_PROMPT" "$vocab")
  for _ in $(seq "$REPS"); do
    err=$("$ENGINE" generate --model "$dir" --prompt-ids "$dec_ids" --max-tokens "$DECODE_TOKENS" \
          --temperature 0 --ignore-eos 2>&1 >/dev/null)
    mib=$(sed -n 's/.*weights, \([0-9.]*\) MiB.*/\1/p' <<<"$err")
    d=$(sed -n 's/.*decode: .*(\([0-9.]*\) tok\/s).*/\1/p' <<<"$err")
    err=$("$ENGINE" generate --model "$dir" --prompt-ids "$pre_ids" --max-tokens 1 --temperature 0 \
          --ignore-eos 2>&1 >/dev/null)
    pr=$(sed -n 's/.*prefill: [0-9]* tokens in [0-9.]* s (\([0-9.]*\) tok\/s).*/\1/p' <<<"$err")
    best_dec=$(awk -v a="$best_dec" -v b="$d" 'BEGIN{print (b>a)?b:a}')
    best_pre=$(awk -v a="$best_pre" -v b="$pr" 'BEGIN{print (b>a)?b:a}')
  done
  params=$(/usr/bin/python3 - "$dir" <<'PY'
import json, sys
c = json.load(open(sys.argv[1] + "/config.json"))
h, i, l, v = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
hd = c.get("head_dim") or h // c["num_attention_heads"]
q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
# Prefill computes logits for the last prompt token only, so the LM head is not per token.
print(l * (2 * h * q + 2 * h * kv + 3 * h * i))
PY
)
  rows+=("$(awk -v p="$p" -v mib="$mib" -v d="$best_dec" -v pr="$best_pre" -v bw="$bw" -v fl="$fl" -v n="$params" 'BEGIN{
      roof_d = bw * 1e9 / (mib * 1048576); roof_p = fl * 1e9 / (2 * n);
      printf "| %-13s | %8.1f | %8.2f | %8.2f | %5.1f%% | %8.1f | %8.1f | %5.1f%% |", p, mib, d, roof_d, 100*d/roof_d, pr, roof_p, 100*pr/roof_p }')")
done
echo
echo "CPU, bf16 weights, fp32 compute, single stream; best of $REPS; bandwidth ${bw} GB/s, fp32 FMA ${fl} GFLOP/s"
echo "| model         | weights  | decode   | decode   | of     | prefill  | prefill  | of     |"
echo "|               | MiB/tok  | tok/s    | roofline | roof   | tok/s    | roofline | roof   |"
echo "|---------------|----------|----------|----------|--------|----------|----------|--------|"
printf '%s\n' "${rows[@]}"

if [ "$THROUGHPUT" != 0 ]; then
  dir=$CACHE/smollm2-135m-bf16
  if [ ! -f "$dir/config.json" ]; then
    echo "generating smollm2-135m (bf16) in $dir ..."
    /usr/bin/python3 tests/fixtures/gen_checkpoint.py --out "$dir" --preset smollm2-135m --dtype BF16 --seed 1 >/dev/null
  fi
  echo
  echo "Offline throughput, $NUM_PROMPTS requests, smollm2-135m bf16: continuous batching vs one at a time"
  "$TOOL" --model "$dir" --num-prompts "$NUM_PROMPTS"
fi
