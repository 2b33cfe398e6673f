#!/usr/bin/env bash
# buf_check.sh BUILD_DIR: lints proto/ with buf (proto/buf.yaml) and, once the repository has a
# tagged version, checks that proto/ makes no breaking change against it. buf comes from the npm
# registry (tests/tools, installed by tests/npm-install.sh, which tests/run.sh runs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
buf=${1:?usage: buf_check.sh BUILD_DIR}/npm/tools/node_modules/.bin/buf
if [ ! -x "$buf" ]; then
  echo "buf_check: $buf is missing: run bash tests/npm-install.sh ${1} (tests/run.sh does)" >&2
  exit 1
fi
cd "$root/proto"
"$buf" lint
echo "buf lint: proto/ passes"
tag=$(git -C "$root" describe --tags --abbrev=0 2>/dev/null || true)
if [ -n "$tag" ]; then
  "$buf" breaking --against "$root/.git#tag=$tag,subdir=proto"
  echo "buf breaking: no breaking change since $tag"
else
  echo "buf breaking: skipped, the repository has no tagged version yet"
fi
