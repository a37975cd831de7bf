#!/usr/bin/env bash
# The attacks of issue 17 (hardening), replayed against real foliod and folio-engine processes
# on loopback: oversized and amplifying bodies (peak RSS measured from /proc), cross-origin and
# DNS-rebinding requests, template paths outside the model, slow and stalled clients, secrets
# in engine environments, login floods, and /metrics under concurrency.
#   FOLIO_ENGINE=build/release/folio-engine tests/abuse/run.sh [--only SUBSTR]... [--skip SUBSTR]...
# foliod is taken from FOLIO_ENGINE's directory; the models from FOLIO_TEST_MODELS (default
# ../shared/models). The last line is "N passed, M failed".
# shellcheck source=tests/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_bins abuse "$engine"
"$root/tests/npm_deps.sh" "$root/tests/api"
# 600 slow connections and their server ends need file descriptors.
ulimit -n 4096 2>/dev/null || true
export FOLIO_ENGINE="$engine" FOLIO_TEST_MODELS="$models"
exec node "$here/main.mjs" "$@"
