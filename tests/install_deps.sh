#!/usr/bin/env bash
# Installs the Debian packages Folio builds and tests with, only those missing.
# As root it runs apt-get; otherwise it prints the exact command and fails.
set -euo pipefail

pkgs=(
  make gcc pkg-config
  libcjson-dev libpcre2-dev libutf8proc-dev libcivetweb-dev curl
  libsqlite3-dev libssl-dev libcrypt-dev libcurl4-openssl-dev chromium firefox-esr
  python3 python3-torch python3-numpy
  clang libclang-rt-14-dev
  dpkg-dev debhelper fakeroot lintian debootstrap systemd iproute2 procps util-linux
  python3-seccomp strace
)
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "Folio needs these packages; run as root:" >&2
  echo "  apt-get update && $cmd" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
$cmd -qq >/dev/null
