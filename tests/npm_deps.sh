#!/usr/bin/env bash
# Installs a node test suite's npm packages, exactly as its package-lock.json pins them, when
# they are missing or older than the lock file.
#   tests/npm_deps.sh DIR
set -euo pipefail
dir="$(cd "$1" && pwd)"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# npm ci leaves node_modules/.package-lock.json behind: newer than the lock means up to date.
stamp="$dir/node_modules/.package-lock.json"
if [ -f "$stamp" ] && ! [ "$dir/package-lock.json" -nt "$stamp" ]; then exit 0; fi
echo "installing npm packages into ${dir#"$root"/}/node_modules" >&2
# CI may run without a HOME; npm then needs a cache it can write.
if [ -z "${HOME:-}" ] || [ ! -w "${HOME:-/nonexistent}" ]; then
    export npm_config_cache="$root/build/npm-cache"
fi
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2
