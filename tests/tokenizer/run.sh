#!/usr/bin/env bash
# Compares Folio's tokenizer with @huggingface/tokenizers (npm) on a seeded corpus.
#   FOLIO_BUILD=build/release tests/tokenizer/run.sh [--only NAME] [--n N] [--random N]
# FOLIO_BUILD (relative to the repo root, or absolute) holds tok_dump; FOLIO_TEST_MODELS the
# shared models (default ../shared/models). Needs node >= 18 and npm (registry reachable once).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${FOLIO_BUILD:-build/release}"
case "$build" in /*) ;; *) build="$root/$build" ;; esac
models="${FOLIO_TEST_MODELS:-$root/../shared/models}"
case "$models" in /*) ;; *) models="$root/$models" ;; esac

if [ ! -x "$build/tok_dump" ]; then
    echo "tokenizer: $build/tok_dump not found (run: make ${build#"$root"/}/tok_dump)" >&2
    exit 2
fi
"$root/tests/npm_deps.sh" "$here"
exec node "$here/compare.mjs" --tok-dump "$build/tok_dump" --models "$models" \
    --work "$build/tokenizer-test" "$@"
