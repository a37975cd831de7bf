#!/usr/bin/env bash
# foliod end to end: real foliod and folio-engine processes on loopback, the official openai
# SDK and raw HTTP as clients.
#   FOLIO_ENGINE=build/release/folio-engine tests/daemon/run.sh [--only SUBSTR]... [--skip SUBSTR]...
# foliod is taken from FOLIO_ENGINE's directory. The last line is "N passed, M failed".
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
engine="${FOLIO_ENGINE:-build/release/folio-engine}"
case "$engine" in /*) ;; *) engine="$root/$engine" ;; esac
models="${FOLIO_TEST_MODELS:-$root/../shared/models}"
case "$models" in /*) ;; *) models="$root/$models" ;; esac
"$root/tests/npm_deps.sh" "$root/tests/api"
export FOLIO_ENGINE="$engine" FOLIO_TEST_MODELS="$models"
exec node "$here/main.mjs" "$@"
