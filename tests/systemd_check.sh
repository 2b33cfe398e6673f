#!/usr/bin/env bash
# systemd_check.sh BUILD: `systemd-analyze verify` accepts deploy/systemd/caseway-node@.service,
# every option and the hardening, with no warning. The unit names /usr/bin/caseway-node; here it
# points at BUILD/bin, because verify also checks that the commands exist.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: systemd_check.sh BUILD}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s|/usr/bin/caseway-node|$build/bin/caseway-node|g" \
  "$here/deploy/systemd/caseway-node@.service" >"$tmp/caseway-node@.service"
out=$(systemd-analyze verify "$tmp/caseway-node@360102.service" 2>&1) || { echo "$out"; exit 1; }
if [ -n "$out" ]; then
  echo "systemd-analyze verify warned:"
  echo "$out"
  exit 1
fi
echo "systemd-analyze verify: caseway-node@.service is clean"
