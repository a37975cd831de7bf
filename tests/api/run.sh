#!/usr/bin/env bash
# folio-engine's OpenAI API against the official openai SDK (npm openai@4) and raw HTTP, on
# real servers on loopback.
#   FOLIO_ENGINE=build/release/folio-engine tests/api/run.sh [--only SUBSTR]... [--skip SUBSTR]...
# FOLIO_ENGINE (relative to the repo root, or absolute) is the binary; FOLIO_TEST_MODELS the
# shared models (default ../shared/models). Needs node >= 18, npm (registry reachable once) and
# curl. Every test starts and stops its own servers. The last line is "N passed, M failed".
# shellcheck source=tests/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_bins api "$engine"
"$root/tests/npm_deps.sh" "$here"
export FOLIO_ENGINE="$engine" FOLIO_TEST_MODELS="$models"
exec node "$here/main.mjs" "$@"
