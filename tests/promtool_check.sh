#!/usr/bin/env bash
# promtool_check.sh: the alert rules load, and their unit tests pass (Debian's prometheus package).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here/deploy/prometheus"
promtool check rules alerts.yml
promtool test rules alerts_test.yml
