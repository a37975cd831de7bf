#!/usr/bin/env bash
# make deb: builds folio_<version>_amd64.deb from packaging/debian/ with dpkg-buildpackage.
# debian/ cannot sit at the top of the tree (the customer fixed the top level), so the sources
# are staged into OUT/stage/folio-<version>/ with packaging/debian/ as its debian/.
#
#   packaging/build-deb.sh [--out DIR] [--version V]
#
# --version V builds the same sources as version V (a new top changelog entry and
# engine/base/version.h, in the staged copy only): the upgrade test's "version N+1".
# DEB_CUDA=auto|1|0: folio-engine with the CUDA backend (auto: where nvcc is found).
set -euo pipefail
cd "$(dirname "$0")/.."

out=build/deb
version_override=
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --version) version_override=$2; shift 2 ;;
    *) echo "usage: $0 [--out DIR] [--version V]" >&2; exit 2 ;;
  esac
done

changelog_version=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
header_version=$(sed -n 's/^#define FOLIO_VERSION "\(.*\)"$/\1/p' engine/base/version.h)
if [ "$changelog_version" != "$header_version" ]; then
  echo "make deb: engine/base/version.h says $header_version but packaging/debian/changelog says" \
       "$changelog_version; make them agree" >&2
  exit 1
fi
version=${version_override:-$changelog_version}

# The build dependencies are packaging/debian/control's Build-Depends, installed from it.
if ! dpkg-checkbuilddeps packaging/debian/control 2>/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    dpkg-checkbuilddeps packaging/debian/control || true
    echo "make deb: run as root to install them: apt-get build-dep ./packaging" >&2
    exit 1
  fi
  echo "make deb: installing the build dependencies (apt-get build-dep ./packaging)"
  DEBIAN_FRONTEND=noninteractive apt-get build-dep -y -qq ./packaging >/dev/null
fi

cuda=0
case "${DEB_CUDA:-auto}" in
  1) cuda=1 ;;
  0) cuda=0 ;;
  *) if [ -n "${NVCC:-}" ] || command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then cuda=1; fi ;;
esac

stage_root=$out/stage
stage=$stage_root/folio-$version
rm -rf "$stage_root"
mkdir -p "$stage"
cp -a Makefile engine daemon kernels admin-ui db "$stage/"
cp -a packaging/debian "$stage/debian"
if [ -n "$version_override" ]; then
  sed -i "s/^#define FOLIO_VERSION \".*\"$/#define FOLIO_VERSION \"$version_override\"/" "$stage/engine/base/version.h"
  { printf 'folio (%s) unstable; urgency=medium\n\n  * Rebuilt as %s.\n\n -- %s  %s\n\n' \
      "$version_override" "$version_override" \
      "$(dpkg-parsechangelog -l packaging/debian/changelog -S Maintainer)" "$(date -R)"
    cat packaging/debian/changelog; } >"$stage/debian/changelog"
fi

echo "make deb: folio $version ($([ "$cuda" = 1 ] && echo "CUDA backend" || echo "CPU only, no nvcc"))"
(cd "$stage" && FOLIO_DEB_CUDA=$cuda dpkg-buildpackage -b --no-sign -j"$(nproc)" >../build.log 2>&1) || {
  tail -40 "$stage_root/build.log" >&2
  echo "make deb: dpkg-buildpackage failed; the whole log is $stage_root/build.log" >&2
  exit 1
}
deb=folio_${version}_amd64.deb
mv "$stage_root/$deb" "$out/$deb"
echo "make deb: $out/$deb"
