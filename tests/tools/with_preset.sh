#!/usr/bin/env bash
# with_preset.sh "PRESET..." CMD [ARGS...]: for each preset, runs CMD ARGS DIR, where DIR holds a
# random-weight checkpoint of it (tests/fixtures/gen_checkpoint.py, F32), removed afterwards;
# then one "N passed, M failed" line summing the runs' own. For tools that take a model
# directory and should also run on the families stories260K does not cover.
set -uo pipefail
presets=$1
shift
dir=$(mktemp -d /tmp/folio-preset.XXXXXX)
trap 'rm -rf "$dir"' EXIT
pass=0 fail=0
for p in $presets; do
  rm -rf "${dir:?}"/*
  if ! /usr/bin/python3 "$(dirname "$0")/../fixtures/gen_checkpoint.py" --out "$dir" --preset "$p" --dtype F32 \
       --seed 2 >/dev/null; then
    echo "FAIL $p: the checkpoint generator failed"
    fail=$((fail + 1))
    continue
  fi
  echo "# $p"
  out=$("$@" "$dir" 2>&1)
  rc=$?
  printf '%s\n' "$out" | grep -vE '^[0-9]+ passed, [0-9]+ failed$'
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' <<<"$out" | tail -1)
  if [[ $line =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    pass=$((pass + BASH_REMATCH[1])) fail=$((fail + BASH_REMATCH[2]))
  fi
  if [ "$rc" -ne 0 ] && [ "${BASH_REMATCH[2]:-0}" -eq 0 ]; then fail=$((fail + 1)); fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
