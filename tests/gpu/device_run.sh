#!/usr/bin/env bash
# The whole GPU check in one call on a device machine (after tests/gpu/device_prepare.sh
# here): builds with the carried -dev packages, then make test-gpu (kernels and backend),
# test-gpu-engine, test-gpu-models, bench-gpu, bench-gpu-e2e, compute-sanitizer on the kernel
# tests and on the engine (CUDA graphs included), and an ncu kernel-time profile of a decode step.
# Each step's output goes to $OUT/<step>.log (when $OUT is set) and a summary to stdout.
# STEPS="test-gpu sanitizer" runs a subset. Budget: about 6 minutes on an H100.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-build/device-out}
mkdir -p "$OUT"
D=$PWD/build/gpudeps
L=$(dirname "$(find "$D" -name 'libcjson.so*' | head -n1)")
export LD_LIBRARY_PATH="$L:${LD_LIBRARY_PATH:-}"
export PATH="$PATH:/usr/local/cuda/bin"
export PYTHON=${PYTHON:-$(command -v python3)} # the one with torch there
MK=(make -j16 CUDA_GENCODE="-gencode arch=compute_90,code=sm_90" MODELS="$PWD/build/gpumodels" EXTRA_CFLAGS="-I$D/usr/include -I$D/usr/include/cjson -I$D/usr/include/x86_64-linux-gnu"
    PKG_CONFIG_PATH="$D/usr/lib/x86_64-linux-gnu/pkgconfig"
    LDLIBS="-L$L -lcjson -lpcre2-8 -lutf8proc -lcivetweb -lm -pthread")
STEPS=${STEPS:-"build test-gpu test-gpu-engine test-gpu-models bench-gpu bench-gpu-e2e sanitizer ncu-decode"}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
summary=()
step() { # name, command...
  local name=$1
  shift
  local t0=$SECONDS
  if "$@" >"$OUT/$name.log" 2>&1; then summary+=("ok   $name ($((SECONDS - t0)) s): $(grep -E 'passed|overhead|tok/s' "$OUT/$name.log" | tail -n1)")
  else summary+=("FAIL $name ($((SECONDS - t0)) s): $(tail -n3 "$OUT/$name.log" | tr '\n' ' ')"); fi
}
for s in $STEPS; do
  case $s in
    build) step build sh -c "$(printf '%q ' "${MK[@]}") build/release/gpu-tests & $(printf '%q ' "${MK[@]}") CUDA=1 build/release-cuda/folio-engine build/release-cuda/bench_serve && wait \$! " ;;
    test-gpu) step test-gpu build/release/gpu-tests ;;
    sanitizer) step sanitizer sh -c "timeout -k 5 ${SANITIZER_LIMIT:-240} compute-sanitizer --error-exitcode 1 build/release/gpu-tests &&
      timeout -k 5 120 compute-sanitizer --error-exitcode 1 build/release-cuda/folio-engine generate --device cuda \
        --model build/gpumodels/stories260K --prompt 'Once upon a time' --max-tokens 40 --temperature 0 --n 2" ;;
    # Per-kernel GPU time of one eager decode step of 128 sequences on the bench checkpoint
    # (made by bench-gpu-e2e): the last step's kernels in the log, summed by name offline.
    ncu-decode) step ncu-decode timeout -k 5 150 ncu --metrics gpu__time_duration.sum --csv \
      build/release-cuda/folio-engine generate --device cuda --enforce-eager --max-num-seqs 128 \
      --model build/bench-models/llama3.2-1b-bf16 --prompt-ids "$(seq -s, 1000 1127)" --n 128 --max-tokens 2 \
      --temperature 0 ;;
    test-gpu-engine) step test-gpu-engine env FOLIO_ENGINE=build/release-cuda/folio-engine FOLIO_TEST_MODELS="$PWD/build/gpumodels" tests/gpu/engine_gpu.sh ;;
    test-gpu-models) step test-gpu-models env FOLIO_ENGINE=build/release-cuda/folio-engine FOLIO_TEST_MODELS="$PWD/build/gpumodels" tests/gpu/check_models_gpu.sh ;;
    bench-gpu) step bench-gpu build/release/gpu-tests --bench ;;
    bench-gpu-e2e) step bench-gpu-e2e env FOLIO_ENGINE=build/release-cuda/folio-engine FOLIO_BENCH_SERVE=build/release-cuda/bench_serve tests/gpu/bench_e2e.sh ;;
  esac
done
printf '%s\n' "${summary[@]}" # stdout only: $OUT brings back at most 8 files, one log per step
