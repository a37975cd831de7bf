#!/usr/bin/env bash
# Run here (no GPU) before a device session: the GPU machine has nvcc, torch and the driver
# but none of Folio's -dev packages and no network, so this fetches them as .debs (Debian's
# registry), unpacks them into build/gpudeps and copies the shared models to build/gpumodels.
# Then one `run` call carries build/gpudeps, build/gpumodels and runs tests/gpu/device_run.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
D=build/gpudeps
rm -rf "$D" build/gpudebs
mkdir -p "$D" build/gpudebs
(cd build/gpudebs && apt-get download libcjson-dev libcjson1 libpcre2-dev libpcre2-8-0 libutf8proc-dev libutf8proc2 \
  libcivetweb-dev libcivetweb1 >/dev/null)
for f in build/gpudebs/*.deb; do dpkg -x "$f" "$D"; done
rm -rf build/gpumodels
cp -r "${FOLIO_TEST_MODELS:-../shared/models}" build/gpumodels
du -sh "$D" build/gpumodels
echo "carry: build/gpudeps build/gpumodels; command: tests/gpu/device_run.sh"
