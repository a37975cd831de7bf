#!/usr/bin/env bash
# make soak: one foliod with two models under 64 misbehaving clients and injected faults for
# SOAK_SECONDS (default 600), then the checks (tests/abuse/soak.mjs).
#   FOLIO_ENGINE=build/release/folio-engine SOAK_SECONDS=120 tests/abuse/soak.sh
# foliod is taken from FOLIO_ENGINE's directory. The last line is "N passed, M failed".
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
engine="${FOLIO_ENGINE:-build/release/folio-engine}"
case "$engine" in /*) ;; *) engine="$root/$engine" ;; esac
models="${FOLIO_TEST_MODELS:-$root/../shared/models}"
case "$models" in /*) ;; *) models="$root/$models" ;; esac
for bin in "$engine" "$(dirname "$engine")/foliod"; do
    if [ ! -x "$bin" ]; then
        echo "soak: $bin not found (run: make ${bin#"$root"/})" >&2
        echo "0 passed, 1 failed"
        exit 1
    fi
done
"$root/tests/npm_deps.sh" "$root/tests/api"
ulimit -n 8192 2>/dev/null || true
export FOLIO_ENGINE="$engine" FOLIO_TEST_MODELS="$models" SOAK_SECONDS="${SOAK_SECONDS:-600}"
exec node "$here/soak.mjs"
