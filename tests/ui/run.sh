#!/usr/bin/env bash
# The admin console in a real browser: Debian's Chromium driven by playwright-core, against a
# real foliod (and its engines) on loopback, a Hub look-alike for pulls.
#   FOLIO_ENGINE=build/release/folio-engine tests/ui/run.sh [--only SUBSTR]...
# Screenshots of each page land in build/ui-screenshots/. The last line is "N passed, M failed".
# shellcheck source=tests/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
"$root/tests/npm_deps.sh" "$root/tests/api"
"$root/tests/npm_deps.sh" "$here"
export FOLIO_ENGINE="$engine" FOLIO_TEST_MODELS="$models" FOLIO_UI_SHOTS="${FOLIO_UI_SHOTS:-$root/build/ui-screenshots}"
exec node "$here/main.mjs" "$@"
