#!/usr/bin/env bash
# foliod end to end: real foliod and folio-engine processes on loopback, the official openai
# SDK and raw HTTP as clients.
#   FOLIO_ENGINE=build/release/folio-engine tests/daemon/run.sh [--only SUBSTR]... [--skip SUBSTR]...
# foliod is taken from FOLIO_ENGINE's directory. The last line is "N passed, M failed".
# shellcheck source=tests/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_bins daemon "$engine" "$(dirname "$engine")/foliod"
# The supervisor's restart back-off (0.5 s, doubling) scaled down, so that the crash tests do
# not wait it out in real time (FOLIO_RESTART_BACKOFF_MS, daemon/supervisor.h).
export FOLIO_RESTART_BACKOFF_MS="${FOLIO_RESTART_BACKOFF_MS:-50}"
"$root/tests/npm_deps.sh" "$root/tests/api"
export FOLIO_ENGINE="$engine" FOLIO_TEST_MODELS="$models"
exec node "$here/main.mjs" "$@"
