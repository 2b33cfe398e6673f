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

bash "$root/deploy/install-deps.sh" --test
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCASEWAY_BUILD_TESTS=ON \
  -DCASEWAY_LINE_TABLES_ONLY=ON
cmake --build "$build" -j2
# The JavaScript packages the examples and the proto lint run (pinned by their lock files).
bash "$root/tests/npm-install.sh" "$build"
# Integration tests start real node processes; two at a time fit the two cores.
(cd "$build" && ctest -j2 --output-on-failure --timeout 300 "$@")

# The sanitizer build: the whole suite again with AddressSanitizer and UndefinedBehaviorSanitizer
# (Clang 14), plus each libFuzzer target for CASEWAY_FUZZ_SECONDS (tests/fuzz). Skipped with
# CASEWAY_SANITIZE=0 (e.g. while iterating on one test).
if [ "${CASEWAY_SANITIZE:-1}" != "0" ]; then
  sanitize=${CASEWAY_SANITIZE_BUILD_DIR:-$root/build-sanitize}
  CC=clang-14 CXX=clang++-14 cmake -S "$root" -B "$sanitize" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCASEWAY_BUILD_TESTS=ON -DCASEWAY_SANITIZE=ON \
    -DCASEWAY_FUZZ=ON -DCASEWAY_BUILD_BENCH=OFF
  cmake --build "$sanitize" -j2
  bash "$root/tests/npm-install.sh" "$sanitize"
  # gRPC's c-ares leaks 40 bytes at exit (docs/testing.md); everything else is a failure.
  export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:print_suppressions=0"
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  (cd "$sanitize" && ctest -j2 --output-on-failure --timeout 600 "$@")
fi
