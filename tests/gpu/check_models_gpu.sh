#!/usr/bin/env bash
# Logits and greedy tokens of generated checkpoints on the GPU against the float64 PyTorch
# reference: tests/reference/check_models.py --device cuda --bench (every small preset in F32,
# F16 and BF16, sharded checkpoints, the --dtype overrides, batches down to block size 1,
# 300-400-token contexts, the shared real models, and the 135M bench preset in BF16), with the
# tolerance of each run's compute dtype (fp32 1e-4; the GPU's 16-bit GEMMs narrow activations:
# f16 5e-3, bf16 3e-2, as per-row relative L2 error), and every case's chunked logits against
# the same binary's --device cpu logits. JOBS shards run at once (each engine run pays CUDA and
# cuBLAS start-up); each is cut at LIMIT seconds so the whole stays under two minutes.
# Needs a CUDA device; FOLIO_ENGINE is the CUDA=1 binary. Extra arguments go to check_models.py
# (e.g. --only BF16). Ends with `N passed, M failed`; exits 1 on any failure. Without a CUDA
# device it fails too, unless FOLIO_GPU_OPTIONAL=1 (then it skips, as make test-gpu does).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
E=${FOLIO_ENGINE:-build/release-cuda/folio-engine}
PY=${PYTHON:-/usr/bin/python3} # the GPU machines keep torch in another python3
JOBS=${JOBS:-6}
LIMIT=${LIMIT:-110}
if [ ! -x "$E" ]; then
  echo "FAIL engine: $E not found (build it with make CUDA=1, or set FOLIO_ENGINE)"
  echo "0 passed, 1 failed"
  exit 1
fi
tmp=$(mktemp -d /tmp/folio-check-gpu.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# Is there a device at all? One token on a tiny generated model tells.
"$PY" tests/fixtures/gen_checkpoint.py --out "$tmp/probe" --preset llama-mha >/dev/null
if ! probe=$("$E" generate --device cuda --model "$tmp/probe" --prompt-ids 1,2,3 --max-tokens 1 \
    --gpu-memory-utilization 0.1 2>&1); then
  if grep -q "no CUDA device" <<<"$probe"; then
    echo "no CUDA device: skipping ($(grep -m1 "no CUDA device" <<<"$probe"))"
    echo "0 passed, 0 failed"
    [ "${FOLIO_GPU_OPTIONAL:-}" = 1 ] && exit 0
    echo "check_models_gpu.sh: a GPU run needs a CUDA device (set FOLIO_GPU_OPTIONAL=1 to allow skipping)" >&2
    exit 1
  fi
  # Anything else: the checks below will say what is wrong.
fi
t0=$(date +%s)
pids=()
for k in $(seq 0 $((JOBS - 1))); do
  FOLIO_ENGINE=$E timeout -k 5 "$LIMIT" "$PY" tests/reference/check_models.py \
    --device cuda --bench --shard "$k/$JOBS" "$@" >"$tmp/$k.out" 2>"$tmp/$k.err" &
  pids+=($!)
done
pass=0
fail=0
for k in $(seq 0 $((JOBS - 1))); do
  wait "${pids[$k]}"
  rc=$?
  grep -v '^[0-9]* passed, [0-9]* failed$' "$tmp/$k.out"
  summary=$(grep '^[0-9]* passed, [0-9]* failed$' "$tmp/$k.out" | tail -n1)
  if [ -z "$summary" ]; then
    # No summary: the shard crashed or ran out of time; what it printed is above.
    why="exit $rc"
    [ "$rc" = 124 ] || [ "$rc" = 137 ] && why="cut at ${LIMIT}s"
    echo "FAIL shard $k/$JOBS: $why: $(tail -n 3 "$tmp/$k.err" | tr '\n' ' ')"
    fail=$((fail + 1))
    continue
  fi
  p=${summary%% passed*}
  f=${summary#*passed, }
  f=${f%% failed}
  pass=$((pass + p))
  fail=$((fail + f))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "FAIL shard $k/$JOBS: exit $rc with no failed check: $(tail -n 3 "$tmp/$k.err" | tr '\n' ' ')"
    fail=$((fail + 1))
  fi
done
echo "# $(($(date +%s) - t0))s, $JOBS shards, engine $E" >&2
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
