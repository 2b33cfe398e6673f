#!/usr/bin/env bash
# run.sh: the whole test suite on a fresh Debian 12 machine: installs the packages, configures,
# builds (-j2) and runs every test with ctest. Used by the README and by .ci/run.
#
#   bash tests/run.sh                  everything
#   bash tests/run.sh -R Exchange      extra arguments go to ctest
# Environment: CASEWAY_BUILD_DIR (default ./build).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CASEWAY_BUILD_DIR:-$root/build}

bash "$root/deploy/install-deps.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCASEWAY_BUILD_TESTS=ON
cmake --build "$build" -j2
cd "$build"
# Integration tests start real node processes; two at a time fit the two cores.
ctest -j2 --output-on-failure --timeout 300 "$@"
