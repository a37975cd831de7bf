#!/usr/bin/env bash
# The whole CPU suite (make test). Each suite prints its own "N passed, N failed" last line;
# this script runs them all, even after a failure, and prints the sum.
set -uo pipefail
cd "$(dirname "$0")/.."
export FOLIO_TEST_MODELS=${FOLIO_TEST_MODELS:-$(cd .. && pwd)/shared/models}
REL=build/release
ASAN=build/asan
# Leak checking stays on; ASan must not hide UBSan findings either.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

total_pass=0
total_fail=0
failed_suites=()

run_suite() {
  local name=$1
  shift
  local log
  log=$(mktemp)
  echo "=== $name"
  local start=$SECONDS
  "$@" 2>&1 | tee "$log" | grep -vE '^(ok|PASS) ' || true
  local rc=${PIPESTATUS[0]}
  local line
  line=$(grep -E '^([A-Za-z-]+: )?[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
  local p=0 f=0
  if [[ $line =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
    p=${BASH_REMATCH[1]}
    f=${BASH_REMATCH[2]}
  fi
  # A suite that crashed or printed no count is one failure, whatever it counted.
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  [ -z "$line" ] && [ "$f" -eq 0 ] && f=1
  echo "--- $name: $p passed, $f failed ($((SECONDS - start)) s)"
  total_pass=$((total_pass + p))
  total_fail=$((total_fail + f))
  [ "$f" -ne 0 ] && failed_suites+=("$name")
  rm -f "$log"
}

run_suite "unit" $REL/unit-tests
run_suite "unit (ASan/UBSan)" $ASAN/unit-tests
# The engine thread, its clients and the thread pool, under ThreadSanitizer.
run_suite "engine threads (TSan)" env TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1} build/tsan/unit-tests engine_
run_suite "no allocation in the step loop" $REL/step_alloc_check "$FOLIO_TEST_MODELS/stories260K"
run_suite "step loop workload (ASan/UBSan)" $ASAN/step_alloc_check "$FOLIO_TEST_MODELS/stories260K"
run_suite "generate: known-good outputs" env FOLIO_ENGINE=$REL/folio-engine tests/integration/test_generate.sh
run_suite "bad input (ASan/UBSan)" env FOLIO_ENGINE=$ASAN/folio-engine tests/integration/test_bad_input.sh
run_suite "models vs PyTorch" env FOLIO_ENGINE=$REL/folio-engine /usr/bin/python3 tests/reference/check_models.py
run_suite "models vs PyTorch (ASan/UBSan)" env FOLIO_ENGINE=$ASAN/folio-engine /usr/bin/python3 tests/reference/check_models.py
run_suite "sampler vs PyTorch" env FOLIO_BUILD=$REL /usr/bin/python3 tests/reference/check_sampler.py
run_suite "tokenizers vs @huggingface/tokenizers" env FOLIO_BUILD=$REL tests/tokenizer/run.sh
run_suite "chat templates vs @huggingface/jinja" env FOLIO_BUILD=$REL tests/chat_template/run.sh
run_suite "chat templates vs @huggingface/jinja (ASan/UBSan)" env FOLIO_BUILD=$ASAN tests/chat_template/run.sh
run_suite "OpenAI API (openai SDK, real server)" env FOLIO_ENGINE=$REL/folio-engine tests/api/run.sh
run_suite "OpenAI API (ASan/UBSan)" env FOLIO_ENGINE=$ASAN/folio-engine tests/api/run.sh
run_suite "foliod (daemon, engines, openai SDK)" env FOLIO_ENGINE=$REL/folio-engine tests/daemon/run.sh
run_suite "foliod (ASan/UBSan)" env FOLIO_ENGINE=$ASAN/folio-engine FOLIO_API_SLOW=3 tests/daemon/run.sh
run_suite "abuse (attacks replayed on foliod and engines)" env FOLIO_ENGINE=$REL/folio-engine tests/abuse/run.sh
run_suite "admin console (Chromium)" env FOLIO_ENGINE=$REL/folio-engine tests/ui/run.sh
# The store's and the sessions' threads, under ThreadSanitizer.
run_suite "foliod store and auth (TSan)" env TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1} build/tsan/unit-tests store_ auth_
run_suite "fuzz (libFuzzer smoke)" tests/fuzz/run.sh

echo
[ ${#failed_suites[@]} -gt 0 ] && echo "failed suites: ${failed_suites[*]}"
echo "total: $total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
