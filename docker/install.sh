#!/bin/sh
# Installs the folio .deb, with its dependencies from the distribution's archive, into a Debian
# or Ubuntu root filesystem. docker/Dockerfile and docker/Dockerfile.cpu both run it in their
# runtime stage; tests/packaging runs it in a debootstrap chroot to prove what the CPU image
# holds.
#
#   install.sh /path/folio_<version>_amd64.deb
set -eu

deb=${1:-}
if [ -z "$deb" ] || [ ! -f "$deb" ]; then
    echo "usage: install.sh folio_<version>_amd64.deb" >&2
    exit 2
fi
case "$deb" in /*) ;; *) deb="$(pwd)/$deb" ;; esac

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# apt resolves the package's Depends from the archive. curl runs the image's HEALTHCHECK;
# ca-certificates lets libcurl verify the Hugging Face Hub.
apt-get install -y -qq --no-install-recommends "$deb" ca-certificates curl >/dev/null

# The package's postinst made the folio user and /var/lib/folio; an image runs as that user
# with the data dir as its volume. No systemd runs in a container: the unit stays inert.
id folio >/dev/null
test "$(stat -c %U /var/lib/folio)" = folio

apt-get clean
rm -rf /var/lib/apt/lists/*
echo "install.sh: $(dpkg-query -W -f '${Package} ${Version}' folio) installed"
