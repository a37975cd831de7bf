#!/usr/bin/env bash
# make soak: one foliod with two models under 64 misbehaving clients and injected faults for
# SOAK_SECONDS (default 600), then the checks (tests/abuse/soak.mjs).
#   FOLIO_ENGINE=build/release/folio-engine SOAK_SECONDS=120 tests/abuse/soak.sh
# foliod is taken from FOLIO_ENGINE's directory. The last line is "N passed, M failed".
# shellcheck source=tests/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_bins soak "$engine" "$(dirname "$engine")/foliod"
"$root/tests/npm_deps.sh" "$root/tests/api"
ulimit -n 8192 2>/dev/null || true
export FOLIO_ENGINE="$engine" FOLIO_TEST_MODELS="$models" SOAK_SECONDS="${SOAK_SECONDS:-600}"
exec node "$here/soak.mjs"
