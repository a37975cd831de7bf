#!/usr/bin/env bash
# One binary for machines with and without a GPU: folio-engine built with CUDA=1, run where
# no CUDA device (or driver) exists, must pick the CPU under --device auto and give the
# README's greedy output, and must refuse --device cuda with a clear error rather than crash.
# Run by `make cuda-check` (CI compiles the CUDA build wherever nvcc exists). On a machine
# with a GPU, the auto case is the GPU's and is skipped here (test-gpu-engine covers it).
set -uo pipefail
E=${FOLIO_ENGINE:-build/release-cuda/folio-engine}
M=${FOLIO_TEST_MODELS:-../shared/models}
. "$(dirname "$0")/lib.sh"
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  echo "a GPU is present: the fallback is not exercised here"
  echo "0 passed, 0 failed"
  exit 0
fi
out=$("$E" generate --model "$M/stories260K" --prompt "Once upon a time" --max-tokens 40 --temperature 0 --show-ids 2>&1)
[ "$(ids_of <<<"$out")" = "$story_ids" ] && grep -q "cpu backend" <<<"$out"
check "CUDA build without a GPU: --device auto runs on the CPU with the README's output" $? "$out"
out=$("$E" generate --device cuda --model "$M/stories260K" --prompt "x" 2>&1)
rc=$?
[ "$rc" -eq 1 ] && grep -q "error: no CUDA device" <<<"$out" && grep -q "use --device cpu" <<<"$out"
check "CUDA build without a GPU: --device cuda fails with a clear error" $? "rc=$rc $out"
out=$("$E" logits --device cuda --model "$M/stories260K" --prompt-ids 1,2 --out /dev/null 2>&1)
rc=$?
[ "$rc" -eq 1 ] && grep -q "no CUDA device" <<<"$out"
check "CUDA build without a GPU: logits --device cuda fails with a clear error" $? "rc=$rc $out"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
