#!/usr/bin/env bash
# buf_check.sh BUILD_DIR: lints proto/ with buf (proto/buf.yaml) and, once the repository has a
# tagged version, checks that proto/ makes no breaking change against it. buf comes from the npm
# registry (tests/tools, installed by tests/npm-install.sh, which tests/run.sh runs).
# The breaking check is also run on a scratch repository, so that it is known to work before the
# first tag exists: a tag of today's proto/ must pass, and a renumbered field must fail it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:?usage: buf_check.sh BUILD_DIR}" && pwd)
buf=$build/npm/tools/node_modules/.bin/buf
if [ ! -x "$buf" ]; then
  echo "buf_check: $buf is missing: run bash tests/npm-install.sh ${1} (tests/run.sh does)" >&2
  exit 1
fi
# breaking REPO TAG: proto/ of REPO's work tree against proto/ of its TAG.
breaking() { (cd "$1/proto" && "$buf" breaking --against "$1/.git#tag=$2,subdir=proto"); }

cd "$root/proto"
"$buf" lint
echo "buf lint: proto/ passes"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r "$root/proto" "$scratch/proto"
git -C "$scratch" init -q
git -C "$scratch" add proto
git -C "$scratch" -c user.name=buf-check -c user.email=buf-check@localhost commit -qm base
git -C "$scratch" tag v0.0.0-check
breaking "$scratch" v0.0.0-check || { echo "buf breaking: an unchanged proto/ fails" >&2; exit 1; }
sed -i 's/^  string case_id = 2;/  string case_id = 99;/' "$scratch/proto/caseway/v1/notice.proto"
grep -q "case_id = 99;" "$scratch/proto/caseway/v1/notice.proto"
if breaking "$scratch" v0.0.0-check >"$scratch/out" 2>&1; then
  echo "buf breaking: a renumbered field (Notice.case_id 2 -> 99) passed" >&2
  exit 1
fi
grep -q "case_id" "$scratch/out" || { cat "$scratch/out" >&2; exit 1; }
echo "buf breaking: works (a renumbered field is refused)"

tag=$(git -C "$root" describe --tags --abbrev=0 2>/dev/null || true)
if [ -n "$tag" ]; then
  breaking "$root" "$tag"
  echo "buf breaking: no breaking change since $tag"
else
  echo "buf breaking: the repository has no tagged version yet; nothing to compare against"
fi
