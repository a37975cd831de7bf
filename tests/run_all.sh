#!/usr/bin/env bash
# The CPU suites of a test tier, side by side (make check, make test, make test-full; the
# Makefile builds first). Each suite prints its own "N passed, M failed" last line; this script
# runs the tier's suites TEST_JOBS at a time, even after a failure, prints each suite's
# failures and count as it ends, and the sum.
#   tests/run_all.sh [check|test|full] [--only SUBSTR]...
# check  unit, the API and daemon suites, generate, the layer checks and foliod's includes
#        (release build only)
# test   check, plus every other release suite (the admin console in Chromium included), the
#        ASan/UBSan runs that find memory bugs, the TSan runs and a libFuzzer smoke run (3 s a
#        target; 6 s for the two HTTP parsers)
# full   test, plus the ASan/UBSan re-runs test leaves out (models and quantized weights vs
#        PyTorch, the rest of the daemon suite), and long fuzzing (300 s a target, as make
#        fuzz) in place of the smoke run
# Env: FOLIO_REL, FOLIO_ASAN, FOLIO_TSAN: the build dirs (build/release, build/asan, build/tsan);
#      TEST_JOBS: processes at once (6); FOLIO_TEST_MODELS; the layer check's variables (make).
# Suites may run together: each picks free loopback ports (and retries a port lost to a race),
# keeps its files in its own mktemp dirs or under its own build dir, and no two suites here
# share a fixed path (FUZZ_OUT, build/fuzz: the one fuzz run; build/ui-screenshots: the UI run).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
tier=${1:-test}
shift || true
only=()
while [ $# -gt 0 ]; do
  case $1 in
    --only) only+=("$2"); shift 2 ;;
    *) echo "usage: tests/run_all.sh [check|test|full] [--only SUBSTR]..." >&2; exit 2 ;;
  esac
done
case $tier in check | test | full) ;; *) echo "tests/run_all.sh: unknown tier '$tier' (check, test, full)" >&2; exit 2 ;; esac
export FOLIO_TEST_MODELS=${FOLIO_TEST_MODELS:-$(cd .. && pwd)/shared/models}
REL=${FOLIO_REL:-build/release}
ASAN=${FOLIO_ASAN:-build/asan}
TSAN=${FOLIO_TSAN:-build/tsan}
JOBS=${TEST_JOBS:-6}
# Leak checking stays on; ASan must not hide UBSan findings either.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1}

names=()
cmds=()
shards=()
# suite TIERS[:N] NAME COMMAND...: NAME runs in the tiers listed (c check, t test, f full), as N
# processes side by side (FOLIO_TEST_SHARD=I/N: each runs every Nth test; the node suites and
# unit-tests read it) whose counts add up to the suite's. The suites start in the order given: longest first.
suite() {
  local tiers=${1%%:*} n=1 name=$2 o
  [[ $1 == *:* ]] && n=${1#*:}
  shift 2
  [[ $tiers == *"${tier:0:1}"* ]] || return 0
  if [ ${#only[@]} -gt 0 ]; then
    for o in "${only[@]}"; do [[ $name == *"$o"* ]] && break; o=; done
    [ -n "$o" ] || return 0
  fi
  names+=("$name")
  cmds+=("$(printf '%q ' "$@")")
  shards+=("$n")
}

# What each ASan/UBSan run is for (the release runs of the same suites are in every tier):
#  unit, bad input, chat templates, step loop: the parsers and the engine's own memory, where
#    the sanitizers find what no assertion does (test);
#  OpenAI API: the HTTP server, request parsing and streaming in one engine process (test);
#  foliod, a subset (daemon_asan below): the tests that feed foliod untrusted input: the admin
#    API and auth, the hardening cases, the Hub client and pulls, and the /v1 relay (test); the
#    rest, supervision, model switching, restarts and configuration, exercise process handling
#    more than memory (full);
#  models vs PyTorch: the same forward passes the unit and API runs already cover (full);
#    quantized weights vs PyTorch: the quantized checkpoints' loaders and kernels (full).
daemon_asan=('foliod auth:' 'hardening:' 'hub:' 'foliod: errors in the OpenAI shape'
  'foliod: register and load two models' 'foliod: a client that disconnects')
daemon_only=()
daemon_skip=()
for t in "${daemon_asan[@]}"; do daemon_only+=(--only "$t"); daemon_skip+=(--skip "$t"); done
# The fuzz smoke run builds its targets once; the long run (full) fuzzes on both cores.
fuzz_seconds=3 fuzz_shards=1
[ "$tier" = full ] && fuzz_seconds=${FUZZ_SECONDS_FULL:-300} fuzz_shards=2
# CPU-bound and long, so first: the engine thread, its clients and the thread pool under
# ThreadSanitizer; the unit tests under ASan/UBSan.
suite  tf:2 "engine threads (TSan)" "$TSAN"/unit-tests engine_
suite  tf:2 "unit (ASan/UBSan)" "$ASAN"/unit-tests
# The node suites' tests mostly wait (engines starting and draining): they run in shards.
suite ctf:4 "foliod (daemon, engines, openai SDK)" env FOLIO_ENGINE="$REL"/folio-engine tests/daemon/run.sh
suite  tf:3 "foliod (ASan/UBSan), untrusted input" \
  env FOLIO_ENGINE="$ASAN"/folio-engine FOLIO_API_SLOW=3 tests/daemon/run.sh "${daemon_only[@]}"
suite   f:3 "foliod (ASan/UBSan), the rest" \
  env FOLIO_ENGINE="$ASAN"/folio-engine FOLIO_API_SLOW=3 tests/daemon/run.sh "${daemon_skip[@]}"
suite "tf:$fuzz_shards" "fuzz (libFuzzer, ${fuzz_seconds} s a target)" \
  env FUZZ_SECONDS="$fuzz_seconds" FUZZ_SECONDS_HTTP="${FUZZ_SECONDS_HTTP:-$((fuzz_seconds > 60 ? fuzz_seconds : 2 * fuzz_seconds))}" tests/fuzz/run.sh
suite  tf:2 "OpenAI API (ASan/UBSan)" env FOLIO_ENGINE="$ASAN"/folio-engine tests/api/run.sh
suite ctf:2 "OpenAI API (openai SDK, real server)" env FOLIO_ENGINE="$REL"/folio-engine tests/api/run.sh
# Structured output: the clients end to end (release and ASan/UBSan), and MaskBench's 1,743
# schemas with two real vocabularies through the matcher (one shard each).
suite ctf:2 "structured output (openai SDK, LangChain, ajv)" \
  env FOLIO_ENGINE="$REL"/folio-engine FOLIO_BUILD="$REL" tests/structured/run.sh --skip MaskBench
suite  tf:2 "structured output (ASan/UBSan)" \
  env FOLIO_ENGINE="$ASAN"/folio-engine FOLIO_BUILD="$ASAN" FOLIO_API_SLOW=3 tests/structured/run.sh --skip MaskBench
maskbench_every=12
[ "$tier" = full ] && maskbench_every=1
suite  tf:2 "MaskBench: JSON Schemas through the matcher" \
  env FOLIO_ENGINE="$REL"/folio-engine FOLIO_BUILD="$REL" MASKBENCH_EVERY=$maskbench_every tests/structured/run.sh --only MaskBench
suite  tf:2 "abuse (attacks replayed on foliod and engines)" env FOLIO_ENGINE="$REL"/folio-engine tests/abuse/run.sh
suite  tf "admin console (Chromium)" env FOLIO_ENGINE="$REL"/folio-engine tests/ui/run.sh
# The store's and the sessions' threads.
suite  tf "foliod store and auth (TSan)" "$TSAN"/unit-tests store_ auth_
suite ctf:2 "unit" "$REL"/unit-tests
suite ctf "engine layers (links, includes, symbols)" tests/layers/check.sh
suite ctf "foliod's engine headers (base/, model/config.h)" tests/layers/daemon_includes.sh
suite  tf "models vs PyTorch" env FOLIO_ENGINE="$REL"/folio-engine /usr/bin/python3 tests/reference/check_models.py
suite   f "models vs PyTorch (ASan/UBSan)" env FOLIO_ENGINE="$ASAN"/folio-engine /usr/bin/python3 tests/reference/check_models.py
# AWQ, GPTQ, FP8 checkpoints and --quantization vs PyTorch; the lossy modes (~15 s).
suite  tf "quantized weights vs PyTorch" env FOLIO_ENGINE="$REL"/folio-engine /usr/bin/python3 tests/reference/check_quant.py
suite   f "quantized weights vs PyTorch (ASan/UBSan)" env FOLIO_ENGINE="$ASAN"/folio-engine /usr/bin/python3 tests/reference/check_quant.py
suite  tf "tokenizers vs @huggingface/tokenizers" env FOLIO_BUILD="$REL" tests/tokenizer/run.sh
suite  tf "chat templates vs @huggingface/jinja" env FOLIO_BUILD="$REL" tests/chat_template/run.sh
suite  tf "chat templates vs @huggingface/jinja (ASan/UBSan)" env FOLIO_BUILD="$ASAN" tests/chat_template/run.sh
suite  tf "sampler vs PyTorch" env FOLIO_BUILD="$REL" /usr/bin/python3 tests/reference/check_sampler.py
suite ctf "generate: known-good outputs" env FOLIO_ENGINE="$REL"/folio-engine tests/integration/test_generate.sh
suite  tf "bad input (ASan/UBSan)" env FOLIO_ENGINE="$ASAN"/folio-engine tests/integration/test_bad_input.sh
suite  tf "no allocation in the step loop" "$REL"/step_alloc_check "$FOLIO_TEST_MODELS/stories260K"
suite  tf "no allocation in the step loop: bf16 and fp8 KV" sh -c \
  '"$0"/step_alloc_check "$1" bfloat16 && "$0"/step_alloc_check "$1" fp8' "$REL" "$FOLIO_TEST_MODELS/stories260K"
suite  tf "step loop workload (ASan/UBSan)" "$ASAN"/step_alloc_check "$FOLIO_TEST_MODELS/stories260K"
# The experts' buffers and the sliding layers' second pool (Qwen3-MoE, Gemma 3) in the step loop.
suite  tf "no allocation in the step loop: MoE, split KV" tests/tools/with_preset.sh "qwen3-moe gemma3" "$REL"/step_alloc_check
suite  tf "step loop workload: MoE, split KV (ASan/UBSan)" tests/tools/with_preset.sh "qwen3-moe gemma3" "$ASAN"/step_alloc_check

n=${#names[@]}
if [ "$n" -eq 0 ]; then echo "no suite matches"; exit 2; fi
# The node suites' packages, once, before suites that share them start side by side.
for d in api chat_template tokenizer ui structured; do
  # (the structured suite uses the API suite's runner and the tokenizer suite's vocabularies)
  grep -q "tests/$d/" <<<"${cmds[*]}" || { [ "$d" = api ] && grep -qE 'tests/(daemon|abuse|structured)/' <<<"${cmds[*]}"; } ||
    { [ "$d" = tokenizer ] && grep -q 'tests/structured/' <<<"${cmds[*]}"; } || continue
  tests/npm_deps.sh "tests/$d" || exit 1
done

logs=$(mktemp -d "${TMPDIR:-/tmp}/folio-suites.XXXXXX")
total_pass=0
total_fail=0
failed_suites=()
declare -A counts=()
t0=$SECONDS

# Prints suite i's failures and count (its shards' added up); adds them to the total.
report() {
  local i=$1 k rc t_start t_end first=-1 last=0 line p=0 f=0 sp sf
  echo "=== ${names[i]}"
  for ((k = 0; k < shards[i]; k++)); do
    read -r rc t_start t_end <"$logs/$i.$k.rc"
    [ "$first" -lt 0 ] || [ "$t_start" -lt "$first" ] && first=$t_start
    [ "$t_end" -gt "$last" ] && last=$t_end
    line=$(grep -E '^([A-Za-z-]+: )?[0-9]+ passed, [0-9]+ failed' "$logs/$i.$k.log" | tail -1)
    sp=0 sf=0
    if [[ $line =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
      sp=${BASH_REMATCH[1]}
      sf=${BASH_REMATCH[2]}
    fi
    # A run that crashed or printed no count is one failure, whatever it counted.
    if [ "$rc" -ne 0 ] && [ "$sf" -eq 0 ]; then sf=1; fi
    [ -z "$line" ] && [ "$sf" -eq 0 ] && sf=1
    p=$((p + sp))
    f=$((f + sf))
    [ "${shards[i]}" -gt 1 ] && echo "  (shard $k/${shards[i]}: $sp passed, $sf failed, $((t_end - t_start)) s)"
    grep -vE '^(ok|PASS) ' "$logs/$i.$k.log"
  done
  echo "--- ${names[i]}: $p passed, $f failed ($((last - first)) s)"
  counts[$i]="$p passed, $f failed"
  total_pass=$((total_pass + p))
  total_fail=$((total_fail + f))
  [ "$f" -ne 0 ] && failed_suites+=("${names[i]}")
}

# The jobs: every shard of every suite, in the suites' order.
job_suite=()
job_shard=()
for ((i = 0; i < n; i++)); do
  for ((k = 0; k < shards[i]; k++)); do job_suite+=("$i"); job_shard+=("$k"); done
done
njobs=${#job_suite[@]}
echo "$tier: $n suites ($njobs processes), $JOBS at a time; logs in $logs"
declare -A running=() left=()
stop_all() {
  local p
  for p in "${running[@]}"; do kill -TERM -- "-$p" 2>/dev/null; done
  echo "interrupted; logs in $logs" >&2
  exit 130
}
trap stop_all INT TERM
for ((i = 0; i < n; i++)); do left[$i]=${shards[i]}; done
next=0
while [ "$next" -lt "$njobs" ] || [ ${#running[@]} -gt 0 ]; do
  while [ "$next" -lt "$njobs" ] && [ ${#running[@]} -lt "$JOBS" ]; do
    i=${job_suite[next]} k=${job_shard[next]}
    # In its own process group (setsid), so that an interrupted run can stop it whole.
    FOLIO_TEST_SHARD=$k/${shards[i]} setsid bash -c '
      eval "$1" </dev/null >"$2.log" 2>&1
      echo "$? $3 $(($3 + SECONDS))" >"$2.rc.tmp" && mv "$2.rc.tmp" "$2.rc"' _ "${cmds[i]}" "$logs/$i.$k" "$SECONDS" &
    running[$i.$k]=$!
    next=$((next + 1))
  done
  wait -n
  for j in "${!running[@]}"; do
    [ -f "$logs/$j.rc" ] || continue
    wait "${running[$j]}" 2>/dev/null
    unset "running[$j]"
    i=${j%.*}
    left[$i]=$((left[$i] - 1))
    [ "${left[$i]}" -eq 0 ] && report "$i"
  done
done

echo
echo "$tier: the suites in order"
for ((i = 0; i < n; i++)); do echo "  ${names[i]}: ${counts[$i]}"; done
[ ${#failed_suites[@]} -gt 0 ] && echo "failed suites: ${failed_suites[*]}"
echo "total: $total_pass passed, $total_fail failed ($((SECONDS - t0)) s)"
if [ "$total_fail" -eq 0 ]; then rm -rf "$logs"; else echo "logs: $logs"; fi
[ "$total_fail" -eq 0 ]
