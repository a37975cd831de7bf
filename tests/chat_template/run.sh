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
"$root/tests/npm_deps.sh" "$here"
exec node "$here/compare.mjs" --render "$build/chat_template_render" --work "$build/chat-template-test" "$@"
