#!/usr/bin/env bash
# Runs a systemd unit's ExecStart= line, as is, the way systemd would where systemd does not
# run (a container, CI): as the unit's User= and Group=, with systemd's environment for that
# user, inside a mount namespace that applies the unit's file-system hardening:
#   ProtectSystem=strict  every mount read-only but /dev, /proc and /sys
#   ReadWritePaths=       those paths writable again
#   PrivateTmp=yes        a fresh /tmp and /var/tmp
#   NoNewPrivileges=yes, CapabilityBoundingSet= (empty)  through setpriv
#   SystemCallFilter= (an allow list of sets), SystemCallErrorNumber=  a seccomp filter
#                         (seccomp_exec.py), loaded before setpriv, which it must allow too
# Extra variables for the service (NOTIFY_SOCKET) come as NAME=VALUE arguments.
#
#   unit_exec.sh UNIT_FILE [NAME=VALUE...]
set -euo pipefail
unit=$1
shift
key() { sed -n "s/^$1=//p" "$unit" | tail -1; }
exec_start=$(key ExecStart)
user=$(key User)
group=$(key Group)
rw=$(key ReadWritePaths)
[ -n "$exec_start" ] && [ -n "$user" ] || { echo "unit_exec.sh: $unit has no ExecStart= or User=" >&2; exit 2; }
[ "$(key ProtectSystem)" = strict ] || { echo "unit_exec.sh: only ProtectSystem=strict is emulated" >&2; exit 2; }
home=$(getent passwd "$user" | cut -d: -f6)
shell=$(getent passwd "$user" | cut -d: -f7)
caps=()
if grep -q '^CapabilityBoundingSet=$' "$unit"; then caps=(--bounding-set=-all --inh-caps=-all); fi
nnp=()
if [ "$(key NoNewPrivileges)" = yes ]; then nnp=(--no-new-privs); fi
private_tmp=$(key PrivateTmp)
filter=()
if [ -n "$(key SystemCallFilter)" ]; then
  filter=(/usr/bin/python3 "$(dirname "$0")/seccomp_exec.py" --errno "$(key SystemCallErrorNumber | grep . || echo kill)")
  filter+=($(key SystemCallFilter) --)
fi

# shellcheck disable=SC2016
exec unshare --mount --propagation private -- bash -euo pipefail -c '
  rw=$1 private_tmp=$2
  shift 2
  for p in $rw; do mount --bind "$p" "$p"; done
  # Every mount read-only (a bind remount changes that mount alone), except the API file
  # systems and the writable paths, which were made mounts of their own above.
  awk "{print \$5}" /proc/self/mountinfo | sort -u | while read -r m; do
    case "$m" in /dev|/dev/*|/proc|/proc/*|/sys|/sys/*) continue ;; esac
    for p in $rw; do [ "$m" = "$p" ] && continue 2; done
    mount -o remount,bind,ro "$m"
  done
  if [ "$private_tmp" = yes ]; then
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp
  fi
  exec "$@"
' unit_exec "$rw" "$private_tmp" \
  "${filter[@]}" setpriv --reuid="$user" --regid="${group:-$user}" --init-groups "${nnp[@]}" "${caps[@]}" -- \
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin HOME="$home" USER="$user" \
  LOGNAME="$user" SHELL="$shell" LANG=C.UTF-8 "$@" $exec_start
