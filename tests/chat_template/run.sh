#!/usr/bin/env bash
# Compares Folio's chat-template interpreter with @huggingface/jinja (npm), byte for byte.
#   FOLIO_BUILD=build/release tests/chat_template/run.sh [--only SUBSTR] [--verbose]
# FOLIO_BUILD (relative to the repo root, or absolute) holds chat_template_render. Needs
# node >= 18 and npm (registry reachable once, for npm ci).
# shellcheck source=tests/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_bins chat_template "$build/chat_template_render"
"$root/tests/npm_deps.sh" "$here"
exec node "$here/compare.mjs" --render "$build/chat_template_render" --work "$build/chat-template-test" "$@"
