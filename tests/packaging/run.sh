#!/usr/bin/env bash
# make test-packaging: the .deb and the Docker recipe, on this machine, as root.
#  1. build version N (the tree's) and N+1 (the same sources, versioned up) with make deb's
#     script; check Depends, the file list and the conffile; lintian: no error, no warning;
#  2. dpkg -i N: the folio user, the data dir, the conffile's owner and mode; systemd-analyze
#     verify and the unit's exposure score;
#  3. foliod started from the unit's own ExecStart= line as folio, in its sandbox
#     (unit_exec.sh: read-only mounts, private /tmp, no privileges, the seccomp filter):
#     READY=1 from the main pid, /health, /admin/, a completion on stories260K equal to the
#     shared models' README, engines as folio; SIGTERM stops everything;
#  4. N+1 over N with a registered, loaded model and a locally edited conffile: both survive;
#  5. dpkg -r keeps the data, dpkg --purge leaves nothing: no file, user, group or override;
#  6. docker/Dockerfile.cpu built stage by stage in debootstrap'd Debian 12 chroots
#     (dockerfile_chroot.py): the build stage makes the CPU-only .deb, the runtime stage
#     installs it with docker/install.sh; then the image's ENTRYPOINT, as its USER with its
#     ENV and WORKDIR, in its own network namespace: the HEALTHCHECK command, a completion.
# It installs and purges the package `folio` system-wide: run it on a test machine.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/gpu/lib.sh
M=$(realpath "${FOLIO_TEST_MODELS:-../shared/models}")
W=$PWD/build/packaging
story_text=", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball."
[ "$(id -u)" -eq 0 ] || { echo "test-packaging installs a package: run it as root" >&2; exit 1; }

# What the folio user must reach lives in T, not in the checkout, whose parents it may not be
# allowed to enter: the notify socket, a probe directory, and the models (bound read-only).
T=/run/folio-packaging-test
pids=()
mounts=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[i]}" 2>/dev/null; done
  pkill -u folio 2>/dev/null
  rm -rf "$T"
  return 0
}
trap cleanup EXIT
step() { echo "== $*"; }
jq_py() { /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1" 2>/dev/null; }
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # seconds, command...: polls until the command succeeds
  local t=$1
  shift
  for ((i = 0; i < t * 10; i++)); do "$@" && return 0; sleep 0.1; done
  return 1
}

# A leftover from an earlier run goes first; a folio user that no package made is not ours.
if dpkg-query -W -f '${Status}' folio 2>/dev/null | grep -q 'ok installed\|config-files'; then dpkg --purge folio >/dev/null; fi
if getent passwd folio >/dev/null; then echo "a user named folio exists and no folio package does: not touching it" >&2; exit 1; fi
rm -rf "$W"
mkdir -p "$W" "$T/models"
chmod 755 "$T"
mount --bind -o ro "$M" "$T/models" && mounts+=("$T/models")

# ---- 1. build N and N+1 --------------------------------------------------------------------
step "build"
V=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
V1="$V+up1"
make --no-print-directory deb DEB_OUT="$W/n" >"$W/build-n.log" 2>&1
check "make deb builds folio_${V}_amd64.deb" $? "$(tail -20 "$W/build-n.log")"
packaging/build-deb.sh --out "$W/n1" --version "$V1" >"$W/build-n1.log" 2>&1
check "the same sources build as version $V1" $? "$(tail -20 "$W/build-n1.log")"
DEB=$W/n/folio_${V}_amd64.deb
DEB1=$W/n1/folio_${V1}_amd64.deb
[ -f "$DEB" ] && [ -f "$DEB1" ] || { echo "no package to test"; echo "$pass passed, $((fail + 1)) failed"; exit 1; }

deps=$(dpkg-deb -f "$DEB" Depends | tr ',' '\n' | sed 's/^ *//; s/ .*//' | sort | tr '\n' ' ')
want="adduser libc6 libcivetweb1 libcjson1 libcrypt1 libcurl4 libpcre2-8-0 libsqlite3-0 libssl3 libutf8proc2 "
[ "$deps" = "$want" ]
check "Depends is exactly the libraries the binaries link, plus adduser" $? "got: $deps"
files=$(dpkg-deb -c "$DEB" | awk '{print $6}' | sed 's|^\./|/|')
missing=""
for f in /usr/bin/foliod /usr/bin/folio-engine /usr/share/folio/admin-ui/index.html /usr/share/folio/admin-ui/app.js \
  /usr/share/folio/db/schema.sql /usr/share/folio/db/migrations/0001_init.sql /etc/folio/foliod.conf \
  /lib/systemd/system/foliod.service /usr/share/man/man1/foliod.1.gz /usr/share/doc/folio/copyright; do
  grep -qx "$f" <<<"$files" || missing="$missing $f"
done
[ -z "$missing" ] && ! grep -q '\.md$' <<<"$files"
check "the package holds the programs, the console, the schema, the conf, the unit and the man pages" $? "missing:$missing"
[ "$(dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles)" = /etc/folio/foliod.conf ]
check "/etc/folio/foliod.conf is the package's conffile" $?

lint=$(lintian --pedantic -I --show-overrides --fail-on error,warning "$DEB" 2>&1)
rc=$?
echo "$lint" | grep -v 'running with root privileges' | sed 's/^/   lintian: /'
[ "$rc" -eq 0 ] && ! grep -q '^[EW]: ' <<<"$lint"
check "lintian --pedantic: no error and no warning (info tags are overridden with reasons)" $? "$lint"

# ---- 2. install N --------------------------------------------------------------------------
step "dpkg -i $V"
out=$(DEBIAN_FRONTEND=noninteractive dpkg -i "$DEB" </dev/null 2>&1)
check "dpkg -i installs $V" $? "$out"
IFS=: read -r _ _ uid gid _ home shell <<<"$(getent passwd folio)"
[ -n "${uid:-}" ] && [ "$uid" -lt 1000 ] && [ "$home" = /var/lib/folio ] && [ "$shell" = /usr/sbin/nologin ] \
  && [ "$(getent group folio | cut -d: -f3)" = "$gid" ]
check "postinst made the folio system user (uid $uid, home /var/lib/folio, no login shell) and group" $? "$(getent passwd folio)"
[ "$(stat -c '%U:%G %a' /var/lib/folio)" = "folio:folio 750" ]
check "postinst made /var/lib/folio, folio:folio 0750" $? "$(stat -c '%U:%G %a' /var/lib/folio 2>&1)"
[ "$(stat -c '%U:%G %a' /etc/folio/foliod.conf)" = "root:folio 640" ] && dpkg-statoverride --list /etc/folio/foliod.conf >/dev/null
check "foliod.conf may hold secrets: root:folio 0640 through dpkg-statoverride" $? "$(stat -c '%U:%G %a' /etc/folio/foliod.conf)"
[ "$(/usr/bin/foliod --version)" = "foliod $V" ]
check "/usr/bin/foliod --version says $V" $? "$(/usr/bin/foliod --version 2>&1)"
UNIT=/lib/systemd/system/foliod.service
out=$(systemd-analyze verify "$UNIT" 2>&1)
[ -z "$(grep -v 'Cannot add dependency job\|Failed to connect to bus\|No such file or directory.*sysinit' <<<"$out")" ]
check "systemd-analyze verify: the unit is valid" $? "$out"
sec=$(systemd-analyze security --offline=true "$UNIT" 2>&1 | sed -n 's/.*Overall exposure level for foliod.service: \([0-9.]*\).*/\1/p')
echo "   systemd-analyze security: exposure ${sec:-?} (0 is the most locked down, 10 the least)"
[ -n "$sec" ] && awk -v s="$sec" 'BEGIN { exit !(s < 5.0) }'
check "systemd-analyze security rates the unit below 5.0 of 10 (hardened)" $? "exposure '$sec'"
missing=""
for k in 'Type=notify' 'User=folio' 'NoNewPrivileges=yes' 'ProtectSystem=strict' 'ReadWritePaths=/var/lib/folio' 'PrivateTmp=yes'; do
  grep -qx "$k" "$UNIT" || missing="$missing $k"
done
[ -z "$missing" ]
check "the unit runs as folio, Type=notify, with NoNewPrivileges, ProtectSystem=strict, ReadWritePaths and PrivateTmp" $? "missing:$missing"

# A local edit of the conffile: the port (a free one here), kept across the upgrade below.
PORT=$(free_port)
printf '\n# local edit\nport = %s\n' "$PORT" >>/etc/folio/foliod.conf
BASE=http://127.0.0.1:$PORT

# ---- 3. foliod from the unit's ExecStart ---------------------------------------------------
start_unit() { # log file: starts foliod from the unit; sets FOLIOD_PID, waits for READY=1
  : >"$W/notify.log"
  tests/packaging/unit_exec.sh "$UNIT" NOTIFY_SOCKET="$T/notify.sock" >"$1" 2>&1 &
  FOLIOD_PID=$!
  pids+=("$FOLIOD_PID")
  wait_for 60 grep -q 'READY=1' "$W/notify.log"
}
# The sandbox itself, on a copy of the unit that only runs touch: a directory folio owns
# outside ReadWritePaths= is read-only, /var/lib/folio is not, /tmp is private.
mkdir -p "$T/probe" && chown folio "$T/probe"
sed "s|^ExecStart=.*|ExecStart=/usr/bin/touch $T/probe/x /var/lib/folio/probe|" "$UNIT" >"$W/probe.service"
out=$(tests/packaging/unit_exec.sh "$W/probe.service" 2>&1)
grep -q "$T/probe/x.*Read-only file system" <<<"$out" && [ -f /var/lib/folio/probe ] && [ ! -e "$T/probe/x" ]
check "the unit's sandbox (unit_exec.sh) is real: outside ReadWritePaths= even folio's own directory is read-only" $? "$out"
rm -f /var/lib/folio/probe
sed "s|^ExecStart=.*|ExecStart=/usr/bin/touch /tmp/folio-private-probe|" "$UNIT" >"$W/probe.service"
out=$(tests/packaging/unit_exec.sh "$W/probe.service" 2>&1)
[ -z "$out" ] && [ ! -e /tmp/folio-private-probe ]
check "and PrivateTmp= gives it a /tmp of its own" $? "$out"
rm -rf "$T/probe"
sed "s|^ExecStart=.*|ExecStart=/usr/bin/strace -o /dev/null /bin/true|" "$UNIT" >"$W/probe.service"
out=$(tests/packaging/unit_exec.sh "$W/probe.service" 2>&1)
rc=$?
grep -v '^SystemCallFilter=' "$W/probe.service" >"$W/probe-unfiltered.service"
out2=$(tests/packaging/unit_exec.sh "$W/probe-unfiltered.service" 2>&1)
rc2=$?
[ "$rc" -ne 0 ] && grep -q 'PTRACE_TRACEME.*Operation not permitted' <<<"$out" && [ "$rc2" -eq 0 ]
check "and SystemCallFilter=@system-service: ptrace, outside the set, fails with EPERM (and works without the filter)" $? "filtered rc=$rc: $out / unfiltered rc=$rc2: $out2"

tests/packaging/notify_listen.py "$T/notify.sock" "$W/notify.log" &
pids+=($!)
wait_for 10 test -S "$T/notify.sock"

step "foliod $V as the unit runs it"
start_unit "$W/foliod-n.log"
check "foliod signals READY=1 on NOTIFY_SOCKET" $? "$(cat "$W/notify.log" "$W/foliod-n.log")"
# unshare and setpriv exec into foliod: the pid started is foliod's, as systemd's main pid.
grep -q "^pid=$FOLIOD_PID READY=1|STATUS=listening on 127.0.0.1:$PORT" "$W/notify.log" \
  && [ "$(ps -o user= -p "$FOLIOD_PID")" = folio ] && [ "$(cat /proc/"$FOLIOD_PID"/comm)" = foliod ]
check "READY=1 comes from the main pid, which is foliod running as folio" $? "pid $FOLIOD_PID: $(cat "$W/notify.log")"
grep -q NoNewPrivs:.*1 /proc/"$FOLIOD_PID"/status && grep -q 'CapBnd:.*0000000000000000' /proc/"$FOLIOD_PID"/status
check "foliod runs with no_new_privs and an empty capability bounding set" $? "$(grep 'NoNewPrivs\|CapBnd' /proc/"$FOLIOD_PID"/status)"
code=$(curl -s -o "$W/health" -w '%{http_code}' "$BASE/health")
[ "$code" = 200 ]
check "/health answers 200" $? "$code $(cat "$W/health")"
code=$(curl -s -o "$W/admin.html" -w '%{http_code}' "$BASE/admin/")
[ "$code" = 200 ] && grep -q '<title>' "$W/admin.html"
check "/admin/ serves the console from /usr/share/folio/admin-ui" $? "$code"
PW=$(sed -n 's/.*the admin password is \([^ ]*\) .*/\1/p' "$W/foliod-n.log" | head -1)
login() { curl -s -c "$W/cookies" -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
  -d "{\"password\":\"$PW\"}" "$BASE/api/login"; }
[ -n "$PW" ] && [ "$(login)" = 200 ]
check "the first start prints the admin password once, and it logs in" $? "$(head -5 "$W/foliod-n.log")"
# A browser sends Origin with the cookie; foliod refuses a state change without it (CSRF).
api() { curl -s -b "$W/cookies" -H 'Content-Type: application/json' -H "Origin: $BASE" "$@"; }
code=$(api -o "$W/add.json" -w '%{http_code}' \
  -d "{\"name\":\"stories260K\",\"path\":\"$T/models/stories260K\",\"kv_cache_space\":0.25}" "$BASE/api/models")
[ "$code" = 201 ]
check "a model registers by path" $? "$code $(cat "$W/add.json")"
code=$(api -o /dev/null -w '%{http_code}' -X POST "$BASE/api/models/stories260K/load")
model_ready() { [ "$(api "$BASE/api/models/stories260K" | jq_py 'd["state"]')" = ready ]; }
[ "$code" = 202 ] && wait_for 60 model_ready
check "it loads" $? "$code $(api "$BASE/api/models/stories260K")"
complete() { curl -s -H 'Content-Type: application/json' "$BASE/v1/completions" \
  -d '{"model":"stories260K","prompt":"Once upon a time","max_tokens":40,"temperature":0}' | jq_py 'd["choices"][0]["text"]'; }
got=$(complete)
[ "$got" = "$story_text" ]
check "a completion on stories260K gives the README's greedy text" $? "got: $got"
eng=$(pgrep -P "$FOLIOD_PID" -x folio-engine | head -1)
[ -n "$eng" ] && [ "$(ps -o user= -p "$eng")" = folio ]
check "the engine runs as folio, a child of foliod" $? "engine pid '$eng'"
kill -TERM "$FOLIOD_PID"
wait_for 60 sh -c "! kill -0 $FOLIOD_PID 2>/dev/null"
wait "$FOLIOD_PID"
rc=$?
[ "$rc" -eq 0 ] && grep -q 'STOPPING=1' "$W/notify.log" && ! pgrep -u folio >/dev/null
check "SIGTERM: STOPPING=1, foliod exits 0 and no folio process is left" $? "rc=$rc $(pgrep -u folio -a)"
! grep -q 'Read-only file system' "$W/foliod-n.log" /var/lib/folio/logs/* 2>/dev/null
check "nothing was refused a write under ProtectSystem=strict" $? "$(grep -h 'Read-only' "$W/foliod-n.log")"

# ---- 4. upgrade to N+1 ---------------------------------------------------------------------
step "dpkg -i $V1 over $V"
out=$(DEBIAN_FRONTEND=noninteractive dpkg -i "$DEB1" </dev/null 2>&1)
check "dpkg -i upgrades $V to $V1 without a prompt" $? "$out"
[ "$(dpkg-query -W -f '${Version}' folio)" = "$V1" ] && [ "$(/usr/bin/foliod --version)" = "foliod $V1" ]
check "the new foliod is installed" $? "$(/usr/bin/foliod --version 2>&1)"
grep -qx "port = $PORT" /etc/folio/foliod.conf && [ "$(stat -c '%U:%G %a' /etc/folio/foliod.conf)" = "root:folio 640" ]
check "the locally edited conffile is kept, with its owner and mode" $? "$(tail -3 /etc/folio/foliod.conf)"
[ "$(id -u folio)" = "$uid" ] && [ "$(stat -c '%U:%G %a' /var/lib/folio)" = "folio:folio 750" ]
check "the folio user and the data dir are unchanged" $?
start_unit "$W/foliod-n1.log"
check "foliod $V1 starts from the unit" $? "$(cat "$W/foliod-n1.log")"
[ "$(login)" = 200 ] && ! grep -q 'admin password is' "$W/foliod-n1.log"
check "the registry survived: the same admin password logs in, no new one is made" $?
[ "$(api "$BASE/api/status" | jq_py 'd["version"]')" = "$V1" ]
check "/api/status reports $V1" $? "$(api "$BASE/api/status" | head -c 300)"
wait_for 60 model_ready
check "the model registered under $V is back and loaded again by itself" $? "$(api "$BASE/api/models")"
got=$(complete)
[ "$got" = "$story_text" ]
check "and it completes the same text" $? "got: $got"
kill -TERM "$FOLIOD_PID"
wait "$FOLIOD_PID"
check "foliod $V1 stops cleanly" $?

# ---- 5. remove, purge ----------------------------------------------------------------------
step "dpkg -r, dpkg --purge"
pkg_files=$(dpkg -L folio)
out=$(dpkg -r folio 2>&1)
[ $? -eq 0 ] && [ ! -e /usr/bin/foliod ] && [ -f /var/lib/folio/folio.db ] && id folio >/dev/null 2>&1 \
  && [ -f /etc/folio/foliod.conf ]
check "dpkg -r removes the programs and keeps the registry, the conf and the user" $? "$out"
out=$(dpkg --purge folio 2>&1)
check "dpkg --purge succeeds" $? "$out"
left=""
while read -r f; do
  case "$f" in /. | /etc | /lib | /lib/systemd | /lib/systemd/system | /usr | /usr/bin | /usr/share | /usr/share/doc \
    | /usr/share/man | /usr/share/man/man1 | /usr/share/lintian | /usr/share/lintian/overrides) continue ;; esac
  [ -e "$f" ] && left="$left $f"
done <<<"$pkg_files"
for f in /var/lib/folio /etc/folio; do [ -e "$f" ] && left="$left $f"; done
getent passwd folio >/dev/null && left="$left user:folio"
getent group folio >/dev/null && left="$left group:folio"
dpkg-statoverride --list /etc/folio/foliod.conf >/dev/null 2>&1 && left="$left statoverride"
dpkg-query -W folio >/dev/null 2>&1 && left="$left dpkg-entry"
owned=$(find / -xdev \( -path /proc -o -path /sys -o -path /dev \) -prune -o \( -uid "$uid" -o -gid "$gid" \) -print 2>/dev/null | head -5)
[ -z "$left" ] && [ -z "$owned" ]
check "nothing is left: no file of the package, no data, no conf, no user, group or override, no file of uid $uid" $? "left:$left $owned"

# ---- 6. the CPU image: Dockerfile.cpu run stage by stage in debootstrap chroots ------------
step "docker/Dockerfile.cpu, built in Debian 12 chroots"
D=$W/docker
tests/packaging/dockerfile_chroot.py docker/Dockerfile.cpu . "$D" >"$W/docker-build.log" 2>&1
check "Dockerfile.cpu builds: its build stage makes the .deb on debian:bookworm, its runtime stage installs it with docker/install.sh" $? "$(tail -20 "$W/docker-build.log")"
img() { jq_py "$1" <"$D/image.json"; }
R=$(img 'd["Root"]')
DEBC=$(ls "$D"/stage-build/out/folio_*_amd64.deb 2>/dev/null | head -1)
lint=$(lintian --pedantic -I --fail-on error,warning "$DEBC" 2>&1)
rc=$?
[ -f "$DEBC" ] && [ "$rc" -eq 0 ] && ! grep -q '^[EW]: ' <<<"$lint" && grep -q 'CPU only' "$W/docker-build.log"
check "the package the build stage makes is CPU-only and passes lintian" $? "$DEBC $lint"
[ -n "$R" ] && [ "$(chroot "$R" dpkg-query -W -f '${Version}' folio 2>&1)" = "$V" ] && [ ! -e "$R/tmp/install.sh" ] \
  && [ ! -d "$R/src" ] && [ -z "$(ls "$R/var/lib/apt/lists" | grep -v '^lock$\|^partial$')" ]
check "the runtime image holds folio $V and none of the build's files or apt lists" $? "root '$R'"
img_user=$(img 'd["User"]')
img_env=$(img '" ".join(k + "=" + v for k, v in d["Env"].items())')
img_entry=$(img '" ".join(d["Entrypoint"])')
img_health=$(img 'd["Healthcheck"]')
img_wd=$(img 'd["WorkingDir"]')
[ "$img_user" = folio ] && [ "$img_entry" = foliod ] && [ "$(img 'd["ExposedPorts"]')" = "['8000']" ] \
  && [ "$(img 'd["Volumes"]')" = "['/var/lib/folio']" ] && [ -n "$img_health" ]
check "the image runs as folio with ENTRYPOINT foliod, EXPOSE 8000, VOLUME /var/lib/folio and a HEALTHCHECK" $? "$(cat "$D/image.json")"
# What Docker gives a container: /proc, /sys, /dev.
for m in proc sys dev; do mount --rbind /$m "$R/$m" && mount --make-rslave "$R/$m" && mounts+=("$R/$m"); done
mkdir -p "$R/models/stories260K"
mount --bind -o ro "$M/stories260K" "$R/models/stories260K" && mounts+=("$R/models/stories260K")
# The container's own network: a fresh namespace with loopback, so port 8000 is its own.
# shellcheck disable=SC2086
unshare --net -- bash -c '
  ip link set lo up
  chroot --userspec="$1:$1" "$2" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/var/lib/folio $3 \
    sh -c "cd $7 && exec $4 --model /models/stories260K" >"$5/container.log" 2>&1 &
  pid=$!
  for i in $(seq 1 600); do
    grep -q "listening on" "$5/container.log" && break
    sleep 0.1
  done
  chroot --userspec="$1:$1" "$2" sh -c "$6"; echo "health=$?"
  for i in $(seq 1 600); do
    curl -s http://127.0.0.1:8000/v1/models | grep -q stories260K && break
    sleep 0.1
  done
  curl -s -H "Content-Type: application/json" http://127.0.0.1:8000/v1/completions \
    -d "{\"model\":\"default\",\"prompt\":\"Once upon a time\",\"max_tokens\":40,\"temperature\":0}" >"$5/container-completion.json"
  ps -o uid=,comm= -p "$pid,$(pgrep -d, -P "$pid")" | sort -u | tr -s " \n" "  " >"$5/container-ps"
  curl -s -o /dev/null -w "admin=%{http_code}\n" http://127.0.0.1:8000/admin/
  kill -TERM "$pid"
  wait "$pid"; echo "exit=$?"
' container "$img_user" "$R" "$img_env" "$img_entry" "$W" "$img_health" "$img_wd" >"$W/container.out" 2>&1
grep -qx 'health=0' "$W/container.out"
check "in the chroot, as $img_user with the image's ENV, the HEALTHCHECK command passes" $? "$(cat "$W/container.out" "$W/container.log")"
got=$(jq_py 'd["choices"][0]["text"]' <"$W/container-completion.json")
[ "$got" = "$story_text" ]
check "the image's ENTRYPOINT with --model serves a completion with the README's text" $? "got: $got $(tail -5 "$W/container.log")"
cuid=$(chroot "$R" id -u folio)
grep -qx 'admin=200' "$W/container.out" && [ "$(sed 's/^ *//' "$W/container-ps")" = "$cuid folio-engine $cuid foliod " ]
check "the console answers, and foliod and its engine run as folio, not root" $? "$(cat "$W/container.out" "$W/container-ps" 2>&1)"
grep -qx 'exit=0' "$W/container.out"
check "SIGTERM, as docker stop sends it, stops foliod with status 0" $? "$(cat "$W/container.out")"
for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[i]}"; done
mounts=()
echo "   (the CUDA image, docker/Dockerfile, needs a Docker engine and a GPU: not run here)"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
