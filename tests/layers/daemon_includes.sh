#!/usr/bin/env bash
# foliod's view of the engine (engine/README.md): daemon/ may include, of engine/, only the
# leaf layer's headers (engine/base/*.h) and the model config (engine/model/config.h), so that
# foliod links base/ and model/config.o only and never a backend or CUDA (the Makefile links
# it with those two archives alone). Every #include in daemon/*.c and daemon/*.h must be a
# system header, a daemon/ header, or one of those engine headers; one file a check.
#   tests/layers/daemon_includes.sh
# The last line is "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

allowed_engine() { # a path under engine/ that daemon/ may include
  case $1 in
    *..* | base/*/*) return 1 ;;
    base/*.h) [ -f "engine/$1" ] ;;
    model/config.h) return 0 ;;
    *) return 1 ;;
  esac
}

# --- includes ----------------------------------------------------------------------------
for f in daemon/*.c daemon/*.h; do
  n=0
  while IFS= read -r hit; do # line:#include "x" or <x>
    line=${hit%%:*}
    inc=$(sed -E 's/^[^"<]*["<]([^">]*)[">].*/\1/' <<<"$hit")
    if [[ $hit == *'"'* ]] && [[ $inc != */* ]]; then
      # A quoted name without a directory: a daemon/ header.
      [ -f "daemon/$inc" ] && continue
      bad "includes: $f:$line: \"$inc\" is not a daemon/ header"
      n=$((n + 1))
      continue
    fi
    # Quoted with a directory, or <...> that -Iengine would find: an engine header.
    if [ -e "engine/$inc" ] || [[ $hit == *'"'* ]]; then
      allowed_engine "$inc" && continue
      bad "includes: $f:$line: $inc (daemon/ may include engine/base/*.h and engine/model/config.h only)"
      n=$((n + 1))
    fi
  done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*["<]' "$f")
  [ "$n" -eq 0 ] && ok "includes: $f"
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
