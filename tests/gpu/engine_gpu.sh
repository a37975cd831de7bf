#!/usr/bin/env bash
# The engine end to end on the CUDA backend (make test-gpu-engine): folio-engine built with
# CUDA=1 must give the known-good greedy outputs of the shared models on the GPU, the same
# sampled tokens as the CPU backend for a seeded n=4 request (copy-on-write blocks), each with
# CUDA graphs and with --enforce-eager, and serve HTTP with the GPU backend (concurrent
# requests replayed through padded graphs), and run --quantization int8/int4/fp8 as the CPU
# backend does. Needs a CUDA device; FOLIO_ENGINE is the CUDA=1 binary.
set -uo pipefail
E=${FOLIO_ENGINE:-build/release-cuda/folio-engine}
M=${FOLIO_TEST_MODELS:-../shared/models}
. "$(dirname "$0")/lib.sh"
out=$("$E" generate --device cuda --model "$M/stories260K" --prompt "Once upon a time" --max-tokens 40 --temperature 0 --show-ids 2>&1)
[ "$(ids_of <<<"$out")" = "$story_ids" ] && grep -q "cuda backend" <<<"$out" && grep -q "CUDA graphs up to batch" <<<"$out"
check "stories260K greedy on the GPU (CUDA graphs) equals the README" $? "$out"
out=$("$E" generate --device cuda --enforce-eager --model "$M/stories260K" --prompt "Once upon a time" --max-tokens 40 \
  --temperature 0 --show-ids 2>&1)
[ "$(ids_of <<<"$out")" = "$story_ids" ] && ! grep -q "CUDA graphs" <<<"$out"
check "stories260K greedy on the GPU with --enforce-eager equals the README" $? "$out"
out=$("$E" generate --device cuda --model "$M/aidreams260K" --prompt "I dreamed" --max-tokens 40 --temperature 0 2>/dev/null)
[[ "$out" == ", as I sense the nodes, a gentle hum of probability. Contrast emerge, a flower, as"* ]]
check "aidreams260K greedy on the GPU equals the README" $? "$out"
args=(generate --model "$M/stories260K" --prompt "Once upon a time" --max-tokens 48 --temperature 0.8 --seed 3 --n 4 --show-ids)
g=$("$E" "${args[@]}" --device cuda 2>/dev/null | grep '^ids')
c=$("$E" "${args[@]}" --device cpu 2>/dev/null | grep '^ids')
[ -n "$g" ] && [ "$g" = "$c" ]
check "seeded n=4 samples: GPU tokens equal CPU tokens" $? "gpu: $g / cpu: $c"
g=$("$E" "${args[@]}" --device cuda --enforce-eager 2>/dev/null | grep '^ids')
[ -n "$g" ] && [ "$g" = "$c" ]
check "seeded n=4 samples: GPU tokens with --enforce-eager equal CPU tokens" $? "gpu: $g / cpu: $c"
port=$((20000 + RANDOM % 20000))
"$E" --device cuda --model "$M/stories260K" --port "$port" >/tmp/folio-gpu-serve.log 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "localhost:$port/health" >/dev/null && break; sleep 0.1; done
r=$(curl -s "localhost:$port/v1/completions" -d '{"prompt":"Once upon a time","max_tokens":40,"temperature":0}')
grep -q '"text":", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball."' <<<"$r" &&
  curl -s "localhost:$port/stats" | grep -q '"device":"cuda"'
check "the server on the GPU backend answers with the README text" $? "$r"
# Concurrent greedy requests of different lengths: batches of 1 to 7 rows, padded to the
# recorded graph sizes (2, 4, 8) as requests finish; each must still be the README text.
pids=()
for i in 1 2 3 4 5 6 7; do
  curl -s "localhost:$port/v1/completions" -o "/tmp/folio-gpu-c$i.json" \
    -d "{\"prompt\":\"Once upon a time\",\"max_tokens\":$((5 * i)),\"temperature\":0}" &
  pids+=($!)
done
wait "${pids[@]}"
bad=$("${PYTHON:-/usr/bin/python3}" - <<'PY'
import json
full = ", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball."
for i in range(1, 8):
    r = json.load(open(f"/tmp/folio-gpu-c{i}.json"))
    c = r["choices"][0]
    if r["usage"]["completion_tokens"] != 5 * i or not c["text"] or not full.startswith(c["text"]):
        print(i, json.dumps(r))
PY
)
[ -z "$bad" ]
check "7 concurrent greedy requests (padded graph batches) start with the README text" $? "$bad"
# Greedy rows take their argmax on the device; the memory split adds up inside the share.
st=$(curl -s "localhost:$port/stats")
"${PYTHON:-/usr/bin/python3}" - "$st" <<'PY'
import json, sys
j = json.loads(sys.argv[1]); m = j["memory"]
assert j["steps"]["device_argmax"] > 0, j["steps"]
assert j["steps"]["cuda_graphs_recorded"] > 0 and j["steps"]["cuda_graph"] > 0, j["steps"]
assert m["gpu_memory_utilization"] == 0.9, m
assert m["weights_bytes"] > 0 and m["kv_cache_bytes"] > 0 and m["activation_bytes"] > 0, m
used = m["weights_bytes"] + m["kv_cache_bytes"] + m["activation_bytes"] + m["other_bytes"]
assert used <= 0.9 * m["device_total_bytes"], (used, m)
assert 0 < m["device_free_bytes"] < m["device_total_bytes"], m
PY
check "GPU /stats: device argmax and CUDA graphs for greedy steps; weights + KV + activations within the share" $? "$st"
m=$(curl -s "localhost:$port/metrics")
grep -q '^folio:gpu_memory_total_bytes{' <<<"$m" && grep -q '^folio:memory_activation_bytes{' <<<"$m"
check "GPU /metrics: memory gauges" $? "$(grep memory <<<"$m")"
kill -TERM "$pid"
wait "$pid"
check "the GPU server drains and exits 0 on SIGTERM" $? "$(tail -3 /tmp/folio-gpu-serve.log)"
# A share of ~1 MiB, too small for the activations (or, on a smaller GPU, the weights): a
# refusal that says what would fit.
out=$("$E" generate --device cuda --gpu-memory-utilization 0.00001 --model "$M/stories260K" --prompt x 2>&1)
rc=$?
[ "$rc" -eq 1 ] && grep -q "gpu-memory-utilization" <<<"$out" && grep -qE "no memory is left|weights need" <<<"$out"
check "a share too small is refused with what would fit" $? "rc=$rc $out"
# bf16 weights on the GPU (cuBLAS GemmEx, bf16 activations): the README story's first tokens.
out=$("$E" generate --device cuda --dtype bfloat16 --model "$M/stories260K" --prompt "Once upon a time" --max-tokens 8 \
  --temperature 0 2>&1)
grep -q "bfloat16 weights" <<<"$out" && grep -q "^, there was a little girl" <<<"$out"
check "stories260K in bf16 on the GPU starts the README story" $? "$out"
# The newer families through the engine on the GPU (the split KV cache of Gemma's sliding
# layers, the expert block, LongRoPE), graphs and eager: greedy tokens equal the CPU backend's
# on F32 checkpoints, over prompts longer than the windows (8) and LongRoPE's switch (32).
fam=$(mktemp -d /tmp/folio-gpu-families.XXXXXX)
for p in qwen3-moe mixtral gemma2 gemma3 phi3-longrope; do
  "${PYTHON:-/usr/bin/python3}" tests/fixtures/gen_checkpoint.py --out "$fam/$p" --preset "$p" --dtype F32 --seed 5 >/dev/null
  ids=$(seq -s, 3 43)
  fargs=(generate --model "$fam/$p" --prompt-ids "$ids" --max-tokens 24 --temperature 0 --ignore-eos --show-ids)
  c=$("$E" "${fargs[@]}" --device cpu 2>/dev/null | grep '^ids')
  for mode in graphs eager; do
    extra=()
    [ "$mode" = eager ] && extra=(--enforce-eager)
    g=$("$E" "${fargs[@]}" --device cuda "${extra[@]}" 2>/dev/null | grep '^ids')
    [ -n "$g" ] && [ "$g" = "$c" ]
    check "$p greedy on the GPU ($mode) equals the CPU backend" $? "gpu: $g / cpu: $c"
  done
done
rm -rf "$fam"
# Structured output on the GPU: the masks are filled by the worker while the device runs the
# forward pass. Greedy constrained requests (a JSON Schema, a regex, a choice) on a generated
# Qwen3 checkpoint (its byte-level vocabulary: the device machine has no npm registry for the
# real ones) give the CPU backend's text, and the JSON output validates.
sdir=$(mktemp -d /tmp/folio-gpu-structured.XXXXXX)
"${PYTHON:-/usr/bin/python3}" tests/fixtures/gen_checkpoint.py --out "$sdir/m" --preset qwen3 --dtype F32 --seed 3 >/dev/null
declare -A sout
for dev in cuda cpu; do
  sport=$((20000 + RANDOM % 20000))
  "$E" --device "$dev" --model "$sdir/m" --port "$sport" >"$sdir/$dev.log" 2>&1 &
  spid=$!
  for _ in $(seq 300); do curl -sf "localhost:$sport/health" >/dev/null && break; sleep 0.1; done
  res=""
  for body in '{"prompt":"x","max_tokens":1000,"temperature":0,"guided_json":{"type":"object","properties":{"a":{"type":"integer","minimum":0,"maximum":50},"b":{"enum":["u","v"]}},"required":["a","b"],"additionalProperties":false}}' \
              '{"prompt":"y","max_tokens":60,"temperature":0,"guided_regex":"[a-z]{3,8}-[0-9]{2}"}' \
              '{"prompt":"z","max_tokens":20,"temperature":0,"n":3,"seed":4,"guided_choice":["left","right","up"]}'; do
    res+=$(curl -s "localhost:$sport/v1/completions" -d "$body" | "${PYTHON:-/usr/bin/python3}" -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps([(c["text"], c["finish_reason"]) for c in r["choices"]]))')
  done
  sout[$dev]=$res
  kill -TERM "$spid"; wait "$spid"
done
"${PYTHON:-/usr/bin/python3}" - "${sout[cuda]}" <<'PY'
import json, re, sys
parts = re.findall(r"\[.*?\]\]", sys.argv[1])
j = json.loads(parts[0])[0]
assert j[1] == "stop", j
v = json.loads(j[0]); assert 0 <= v["a"] <= 50 and v["b"] in "uv", v
PY
[ $? -eq 0 ] && [ -n "${sout[cuda]}" ] && [ "${sout[cuda]}" = "${sout[cpu]}" ]
check "structured output on the GPU (masks beside the forward pass) equals the CPU backend, and validates" $? \
  "gpu: ${sout[cuda]} / cpu: ${sout[cpu]}"
rm -rf "$sdir"
# Quantization at load on the GPU (kernels/quant.cu) against the same binary on the CPU, on
# stories260K (in_features 64 and 172: qgemv's padded input). Logits of a 40-token prompt,
# 4 tokens a forward (qgemv) and all 40 in one (bf16-dequantized slices in cuBLAS), per-row
# relative L2: fp8 through qgemv within 1e-4 (both sides dequantize exactly and keep fp32
# activations); the rest within 5e-2 (the CPU multiplies int8/int4 weights by activations
# quantized to int8, which moves logits ~2e-2; the GPU's GEMM rounds to bf16). Then greedy
# tokens: fp8 on the GPU (CUDA graphs) equals the CPU's, and int8/int4 replayed through
# graphs equal --enforce-eager's.
qdir=$(mktemp -d /tmp/folio-gpu-quant.XXXXXX)
qids=$(seq -s, 3 42)
for q in int8 int4 fp8; do
  for chunk in 4 40; do
    for dev in cuda cpu; do
      "$E" logits --device "$dev" --quantization "$q" --model "$M/stories260K" --prompt-ids "$qids" --chunk "$chunk" \
        --out "$qdir/$q-$chunk-$dev.f32" >"$qdir/$q-$chunk-$dev.log" 2>&1
    done
    tol=5e-2
    [ "$q" = fp8 ] && [ "$chunk" = 4 ] && tol=1e-4
    res=$("${PYTHON:-/usr/bin/python3}" - "$qdir/$q-$chunk-cuda.f32" "$qdir/$q-$chunk-cpu.f32" "$tol" 512 <<'PY'
import array, math, sys
g, c = array.array("f"), array.array("f")
try:
    g.frombytes(open(sys.argv[1], "rb").read()); c.frombytes(open(sys.argv[2], "rb").read())
except OSError as e:
    print(e); sys.exit(1)
tol, V = float(sys.argv[3]), int(sys.argv[4])
if len(g) != len(c) or len(c) == 0 or len(c) % V:
    print(f"sizes {len(g)} / {len(c)}"); sys.exit(1)
worst = max((math.sqrt(sum((g[i] - c[i]) ** 2 for i in range(r, r + V))) /
             max(math.sqrt(sum(c[i] ** 2 for i in range(r, r + V))), 1e-30), r // V) for r in range(0, len(c), V))
print(f"worst row {worst[1]}: {worst[0]:.3g}")
sys.exit(0 if worst[0] <= tol else 1)
PY
)
    check "--quantization $q: GPU logits (chunks of $chunk) within $tol of the CPU's ($res)" $? \
      "$res; $(tail -n 2 "$qdir/$q-$chunk-cuda.log" "$qdir/$q-$chunk-cpu.log" | tr '\n' ' ')"
  done
done
qargs=(generate --model "$M/stories260K" --prompt "Once upon a time" --max-tokens 40 --temperature 0 --show-ids)
g=$("$E" "${qargs[@]}" --quantization fp8 --device cuda 2>&1 | grep '^ids')
c=$("$E" "${qargs[@]}" --quantization fp8 --device cpu 2>&1 | grep '^ids')
[ -n "$g" ] && [ "$g" = "$c" ]
check "--quantization fp8: greedy tokens on the GPU (CUDA graphs) equal the CPU's" $? "gpu: $g / cpu: $c"
for q in int8 int4; do
  g=$("$E" "${qargs[@]}" --quantization "$q" --device cuda 2>&1 | grep '^ids')
  e=$("$E" "${qargs[@]}" --quantization "$q" --device cuda --enforce-eager 2>&1 | grep '^ids')
  [ -n "$g" ] && [ "$g" = "$e" ]
  check "--quantization $q: greedy tokens on the GPU with CUDA graphs equal --enforce-eager's" $? "graphs: $g / eager: $e"
done
rm -rf "$qdir"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
