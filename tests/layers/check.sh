#!/usr/bin/env bash
# The engine's layering (engine/README.md), checked on the built archives and the sources:
#  links     each layer's archive, whole (every object pulled in), linked with only the archives
#            of the layers it may use (LAYER_DEPS_<layer> in the Makefile) and the system
#            libraries: it links, so nothing in it refers up or sideways;
#  upward    the check itself works: a file that includes "core/scheduler.h" and calls the
#            scheduler, put into a copy of the model layer's archive, must fail that link with
#            an undefined reference to the scheduler function;
#  includes  no file in engine/<layer>/ includes a header of a layer other than itself and its
#            LAYER_DEPS;
#  symbols   every global symbol an engine object defines (nm -g --defined-only) is declared in
#            exactly one header under engine/, and starts with its file's prefix: for
#            dir/name.c, name_ or the part of name before its first _ then _ (tok_bpe.c: tok_),
#            or folio_ in engine/base/; engine/main.c defines main only.
# make passes the layer lists, the archives and the flags; run on its own, the script asks make
# (for FOLIO_REL's build, build/release):
#   make layer-check [O=build/DIR]
# The last line is "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
if [ -z "${LAYERS:-}" ] || [ -z "${LAYER_BUILD:-}" ]; then
  exec make --no-print-directory -s layer-check O="${FOLIO_REL:-build/release}"
fi
CC=${CC:-cc}
read -r -a cflags <<<"${LAYER_CFLAGS:-}"
read -r -a ldlibs <<<"${LAYER_LDLIBS:-}"
lib() { echo "$LAYER_BUILD/engine/libfolio_$1.a"; }
deps_of() { local v="LAYER_DEPS_$1"; echo "${!v:-}"; }
srcs_of() { local v="LAYER_SRC_$1"; echo "${!v:-}"; }
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
T=$(mktemp -d "${TMPDIR:-/tmp}/folio-layers.XXXXXX")
trap 'rm -rf "$T"' EXIT
printf 'int main(void) { return 0; }\n' >"$T/main.c"
"$CC" -c "$T/main.c" -o "$T/main.o" || { echo "0 passed, 1 failed"; exit 1; }

# Links the archive given whole, then the archives of deps (in the Makefile's order).
link_whole() { # archive, deps..., log
  local a=$1 log=${*: -1} deps=("${@:2:$#-2}") libs=() d
  for d in "${deps[@]}"; do libs+=("$(lib "$d")"); done
  "$CC" -o "$T/a.out" "$T/main.o" -Wl,--whole-archive "$a" -Wl,--no-whole-archive "${libs[@]}" "${ldlibs[@]}" \
    >"$log" 2>&1
}

# --- links -------------------------------------------------------------------------------
for l in $LAYERS; do
  # shellcheck disable=SC2046
  if [ ! -f "$(lib "$l")" ]; then
    bad "links: $l: $(lib "$l") not built"
  elif link_whole "$(lib "$l")" $(deps_of "$l") "$T/link-$l.log"; then
    ok "links: $l with only [$(deps_of "$l")]"
  else
    bad "links: $l with only [$(deps_of "$l")]:"
    grep -E 'undefined reference|multiple definition' "$T/link-$l.log" | sed -E 's/^.*: //' | sort | uniq -c | head -20
  fi
done

# --- upward: a model-layer object that calls the scheduler must not link ----------------------
fn=scheduler_num_running
cat >"$T/upward.c" <<EOF
#include <stddef.h>
#include "core/scheduler.h"
int layers_upward_probe(void);
int layers_upward_probe(void) { return $fn(NULL); }
EOF
cp "$(lib model)" "$T/libfolio_model.a" 2>/dev/null
# shellcheck disable=SC2046
if ! "$CC" "${cflags[@]}" -c "$T/upward.c" -o "$T/upward.o" 2>"$T/upward-cc.log" ||
   ! ar rs "$T/libfolio_model.a" "$T/upward.o" 2>>"$T/upward-cc.log"; then
  bad "upward: the probe ($fn from core/scheduler.h) did not compile:"; cat "$T/upward-cc.log"
elif link_whole "$T/libfolio_model.a" $(deps_of model) "$T/upward.log"; then
  bad "upward: model + a call to $fn linked: the layer link check would not catch an upward reference"
elif grep -q "undefined reference to \`$fn'" "$T/upward.log"; then
  ok "upward: model + a call to $fn fails to link (undefined reference to $fn)"
else
  bad "upward: model + a call to $fn failed to link, but not on $fn:"; head -20 "$T/upward.log"
fi

# --- includes ----------------------------------------------------------------------------
is_layer() { [[ " $LAYERS " == *" $1 "* ]]; }
for l in $LAYERS; do
  allowed=" $l $(deps_of "$l") "
  n=0
  while IFS= read -r hit; do # file:line:#include "dir/x.h"
    f=${hit%%:*}
    inc=$(sed -E 's/^[^"]*"([^"]*)".*/\1/' <<<"$hit")
    top=${inc%%/*}
    [ "$top" = "$inc" ] && continue        # same directory, or a -I path (kernels.h)
    is_layer "$top" || continue             # not an engine layer
    [[ "$allowed" == *" $top "* ]] && continue
    bad "includes: ${hit%%#*} $inc: $l may use [$(deps_of "$l")] only"
    n=$((n + 1))
  done < <(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "engine/$l" --include='*.c' --include='*.h')
  [ "$n" -eq 0 ] && ok "includes: engine/$l/ includes only [${allowed:1:-1}]"
done

# --- symbols -----------------------------------------------------------------------------
# Where each function is declared: gcc -aux-info over every engine source lists the
# prototypes each translation unit saw, with their file (declarations only: NC/OC).
all_src=engine/main.c
for l in $LAYERS; do all_src="$all_src $(srcs_of "$l")"; done
mkdir -p "$T/aux"
# shellcheck disable=SC2086
printf '%s\n' $all_src | xargs -P "$(nproc)" -I{} sh -c \
  '"$0" "$@" -fsyntax-only -aux-info "'"$T"'/aux/$(echo {} | tr / _).aux" {}' "$CC" "${cflags[@]}" 2>"$T/aux.log" ||
  { bad "symbols: gcc -aux-info failed:"; head -20 "$T/aux.log"; }
cat "$T"/aux/*.aux 2>/dev/null |
  sed -nE 's@^/\* (engine/[^:]*\.h):[0-9]+:[NO]C \*/ (.*)$@\1 \2@p' | grep -v ' static ' |
  sed -E 's@^([^ ]*) [^(]*[^A-Za-z0-9_]([A-Za-z_][A-Za-z0-9_]*) \(.*@\2 \1@' | sort -u >"$T/decls"
# Data: extern declarations (comments stripped).
for h in $(find engine -name '*.h' | sort); do
  "$CC" -fpreprocessed -dD -E -P "$h" 2>/dev/null | tr '\n' ' ' | tr ';' '\n' |
    sed -nE 's/^[[:space:]]*extern[^(]*[^A-Za-z0-9_]([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*(\[[^]]*\])*[[:space:]]*$/\1/p' |
    sed "s@\$@ $h@"
done | sort -u >>"$T/decls"
sort -u -o "$T/decls" "$T/decls"

prefixes_of() { # source file: the prefixes its globals may have
  local f=$1 n
  n=$(basename "$f" .c)
  [ "$f" = engine/main.c ] && return
  echo "${n}_"
  [[ $n == *_* ]] && echo "${n%%_*}_"
  [[ $f == engine/base/* ]] && echo folio_
}
for f in $all_src; do
  o="$LAYER_BUILD/${f%.c}.o"
  if [ ! -f "$o" ]; then bad "symbols: $o not built"; continue; fi
  n=0
  mapfile -t pre < <(prefixes_of "$f")
  while read -r _ type sym; do
    [ -n "$sym" ] || continue
    case $type in [TDBRVWGSCu]) ;; *) continue ;; esac
    if [ "$f" = engine/main.c ]; then
      [ "$sym" = main ] || { bad "symbols: $f defines $sym (main.c defines main only)"; n=$((n + 1)); }
      continue
    fi
    okp=0
    for p in "${pre[@]}"; do [[ $sym == "$p"* ]] && okp=1; done
    if [ "$okp" -eq 0 ]; then
      bad "symbols: $f defines $sym: not prefixed ${pre[*]}"; n=$((n + 1))
    fi
    headers=$(awk -v s="$sym" '$1 == s { print $2 }' "$T/decls")
    count=$(grep -c . <<<"$headers")
    if [ "$count" -ne 1 ]; then
      if [ "$count" -eq 0 ]; then bad "symbols: $f defines $sym: declared in no header under engine/"
      else bad "symbols: $f defines $sym: declared in $count headers: $(echo $headers)"; fi
      n=$((n + 1))
    fi
  done < <(nm -g --defined-only "$o")
  [ "$n" -eq 0 ] && ok "symbols: $f"
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
