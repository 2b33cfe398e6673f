#!/usr/bin/env bash
# install-deps.sh: installs every Debian 12 package that building, testing and running the
# demo federation need. Idempotent; safe to run on a fresh machine as root (or with sudo).
#
#   install-deps.sh           what building, the demo and the plain test build need
#   install-deps.sh --test    also Clang 14 and its sanitizer and libFuzzer runtimes, for the
#                             sanitizer build and the fuzz targets that tests/run.sh runs
#   install-deps.sh --bench   also gnuplot, which bench/run.sh uses to draw its plots (SVG)
#   install-deps.sh --postgres  also the PostgreSQL server (deploy/demo.sh --postgres, bench/)
# Flags combine (install-deps.sh --test --bench).
set -euo pipefail
test_deps=0; bench_deps=0; postgres_deps=0
for arg in "$@"; do
  case "$arg" in
    --test) test_deps=1 ;;
    --bench) bench_deps=1 ;;
    --postgres) postgres_deps=1 ;;
    *) echo "install-deps.sh: unknown argument $arg (--test, --bench, --postgres)" >&2; exit 2 ;;
  esac
done

packages=(
  # build (dpkg-dev: the Debian package's library dependencies, cpack -G DEB)
  cmake g++ ninja-build pkg-config dpkg-dev
  # gRPC, protobuf, Abseil (grpc_cpp_plugin lives in protobuf-compiler-grpc)
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  # crypto, storage, config
  libssl-dev openssl libsqlite3-dev sqlite3 libyaml-cpp-dev libcli11-dev
  # Ed25519 signatures (common/signing.cc)
  libsodium-dev
  # the store's PostgreSQL backend (its client library)
  libpq-dev
  # the node's allocator (server/CMakeLists.txt)
  libjemalloc-dev
  # the metrics endpoint (prometheus-cpp with its civetweb pull module)
  prometheus-cpp-dev
  # tests
  libgtest-dev libgmock-dev
  # demo and tests use these tools
  procps python3
  # bench/run.sh measures the report's time and memory with GNU time
  time
)
if [ $test_deps = 1 ]; then
  # chromium and a CJK font: the HTML assessment report is opened in headless Chromium and
  # screenshotted (tests/report_test.cc)
  packages+=(clang-14 libclang-rt-14-dev chromium fonts-wqy-microhei)
  # the integrator examples run in the suite: Python with Debian's gRPC (examples/python), and
  # the buf CLI and @grpc/grpc-js from the npm registry (tests/npm-install.sh), which need npm
  packages+=(python3-grpcio python3-protobuf git)
  # promtool: the alert rules' unit tests and the lint of a scraped node (tests/operations_test.cc);
  # systemd-analyze: the unit's verification (tests/systemd_check.sh)
  packages+=(prometheus systemd)
  # the PostgreSQL server the store's tests start in a temporary directory
  # (tests/testing/postgres_server.h)
  packages+=(postgresql)
  # adduser: the Debian package's dependency, installed with dpkg -i by tests/package_test.sh
  packages+=(adduser)
  if ! command -v npm >/dev/null 2>&1; then packages+=(nodejs npm); fi
fi

if [ $bench_deps = 1 ]; then
  packages+=(gnuplot-nox postgresql)
fi
if [ $postgres_deps = 1 ]; then
  packages+=(postgresql)
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
