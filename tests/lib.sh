# shellcheck shell=bash disable=SC2034
# tests/lib.sh: the prologue the suites' run.sh scripts share (sourced, not run).
# Strict mode; here (the sourcing script's folder) and root (the checkout); the suite's inputs
# made absolute (relative paths are to the repo root):
#   engine  FOLIO_ENGINE       (build/release/folio-engine)
#   build   FOLIO_BUILD        (build/release)
#   models  FOLIO_TEST_MODELS  (../shared/models)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
abs_path() { case "$1" in /*) echo "$1" ;; *) echo "$root/$1" ;; esac; }
engine="$(abs_path "${FOLIO_ENGINE:-build/release/folio-engine}")"
build="$(abs_path "${FOLIO_BUILD:-build/release}")"
models="$(abs_path "${FOLIO_TEST_MODELS:-$root/../shared/models}")"

# need_bins SUITE FILE...: each FILE must be executable, else the suite ends as one failure.
need_bins() {
    local suite=$1 bin
    shift
    for bin in "$@"; do
        if [ ! -x "$bin" ]; then
            echo "$suite: $bin not found (run: make ${bin#"$root"/})" >&2
            echo "0 passed, 1 failed"
            exit 1
        fi
    done
}
