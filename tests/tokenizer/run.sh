#!/usr/bin/env bash
# Compares Folio's tokenizer with @huggingface/tokenizers (npm) on a seeded corpus.
#   FOLIO_BUILD=build/release tests/tokenizer/run.sh [--only NAME] [--n N] [--random N]
# FOLIO_BUILD (relative to the repo root, or absolute) holds tok_dump; FOLIO_TEST_MODELS the
# shared models (default ../shared/models). Needs node >= 18 and npm (registry reachable once).
# shellcheck source=tests/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_bins tokenizer "$build/tok_dump"
"$root/tests/npm_deps.sh" "$here"
exec node "$here/compare.mjs" --tok-dump "$build/tok_dump" --models "$models" \
    --work "$build/tokenizer-test" "$@"
