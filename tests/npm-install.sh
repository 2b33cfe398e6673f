#!/usr/bin/env bash
# npm-install.sh BUILD_DIR: installs, from the npm registry and pinned by their lock files, the
# JavaScript packages the suite runs: the Node.js example's (@grpc/grpc-js, examples/node) into
# BUILD_DIR/npm/examples-node and the proto linter (@bufbuild/buf, tests/tools) into
# BUILD_DIR/npm/tools. Nothing is downloaded at build time; tests/run.sh calls this after the
# build. Does nothing for a package whose lock file is unchanged since its last install.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: npm-install.sh BUILD_DIR}

install() {  # install SOURCE_DIR TARGET_DIR
  local src=$1 dst=$2
  mkdir -p "$dst"
  if [ -d "$dst/node_modules" ] && cmp -s "$src/package-lock.json" "$dst/package-lock.json"; then
    return 0
  fi
  cp "$src/package.json" "$src/package-lock.json" "$dst/"
  echo "npm-install: $src -> $dst"
  (cd "$dst" && npm ci --no-audit --no-fund --loglevel=error)
}

install "$root/examples/node" "$build/npm/examples-node"
install "$root/tests/tools" "$build/npm/tools"
