#!/usr/bin/env bash
# make bench-compare BASE=REV: make bench for REV and for this tree in one run, so that a change
# is judged against its baseline on the same machine under the same load. REV's sources are
# exported (git archive) into build/bench-base/REV and built there; then the benchmark runs
# ROUNDS times (2), baseline and this tree alternating, and prints every table under its name.
# Every knob of run_bench.sh (PRESETS, REPS, THROUGHPUT, SERVING, PROXY, ...) applies to both.
set -euo pipefail
cd "$(dirname "$0")/../.."
BASE=${BASE:?set BASE to a git revision (make bench-compare BASE=HEAD~1)}
ROUNDS=${ROUNDS:-2}
rev=$(git rev-parse --short "$BASE^{commit}")
src=build/bench-base/$rev
if [ ! -x "$src/build/release/folio-engine" ]; then
  rm -rf "$src"
  mkdir -p "$src"
  git archive "$rev" | tar -x -C "$src"
  # The baseline's own Makefile builds it; its tools are named as this tree's are.
  make -C "$src" -j2 --no-print-directory FOLIO_TEST_MODELS="$FOLIO_TEST_MODELS" \
    build/release/folio-engine build/release/foliod build/release/bench_throughput \
    build/release/bench_serve build/release/roofline >"$src.build.log" 2>&1 ||
    { echo "bench-compare: building $rev failed; see $src.build.log" >&2; exit 1; }
fi
run() { # label build-dir
  echo
  echo "=== $1"
  FOLIO_ENGINE=$2/folio-engine FOLIOD=$2/foliod FOLIO_ROOFLINE=$2/roofline \
    FOLIO_BENCH_TOOL=$2/bench_throughput FOLIO_BENCH_SERVE=$2/bench_serve tests/bench/run_bench.sh
}
for r in $(seq 1 "$ROUNDS"); do
  run "baseline $rev, round $r of $ROUNDS" "$src/build/release"
  run "this tree ($(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo +changes)), round $r of $ROUNDS" build/release
done
