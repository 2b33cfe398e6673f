#!/usr/bin/env bash
# package_test.sh BUILD: the Debian package, and docs/operator.md's walk-through followed literally
# with what it installs: install the package, make the certificates (each county its own keys),
# write the configurations, check them as the node's user, start two nodes as `caseway`,
# exchange a notice, stop them by PID, remove the package. Needs root (dpkg -i); CI runs as root.
# Exit 77 (skipped) otherwise.
set -euo pipefail
build=${1:?usage: package_test.sh BUILD}
here=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "package_test: needs root for dpkg -i; skipped"; exit 77; }
# Never on a machine that runs Caseway: this test installs and purges the package.
if dpkg -s caseway >/dev/null 2>&1 || [ -e /etc/caseway ]; then
  echo "package_test: caseway is installed here (or /etc/caseway exists); skipped"
  exit 77
fi

work=$(mktemp -d)
pids=()
walk=""
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  [ -n "$walk" ] && rm -rf "/etc/caseway/$walk" /var/lib/caseway/"$walk"*
  [ -n "$walk" ] && rm -f "/etc/caseway/$walk-360102.yaml" "/etc/caseway/$walk-360111.yaml"
  dpkg --purge caseway >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "package_test: FAIL: $*" >&2; exit 1; }

# 1. The package.
(cd "$build" && cpack -G DEB -B "$work/deb" >/dev/null)
deb="$work/deb/caseway_0.1.0_amd64.deb"
[ -f "$deb" ] || fail "no $deb"
contents=$(dpkg-deb -c "$deb")
for f in ./usr/bin/caseway-node ./usr/bin/caseway ./usr/share/caseway/pki.sh \
         ./usr/lib/systemd/system/caseway-node@.service ./usr/share/caseway/prometheus/alerts.yml \
         ./usr/share/doc/caseway/operator.md; do
  grep -q " $f\$" <<<"$contents" || fail "$f not in the package"
done
dpkg-deb -f "$deb" Depends | grep -q libgrpc++ || fail "Depends lacks the gRPC library"

# 2. Install: the user and directories exist, with the modes the guide promises.
dpkg -i "$deb" >/dev/null
getent passwd caseway >/dev/null || fail "no caseway user"
[ "$(stat -c '%a %U' /var/lib/caseway)" = "700 caseway" ] || fail "/var/lib/caseway: $(stat -c '%a %U' /var/lib/caseway)"
[ "$(stat -c '%a %G' /etc/caseway)" = "750 caseway" ] || fail "/etc/caseway: $(stat -c '%a %G' /etc/caseway)"
# The installed unit verifies against the installed binaries.
mkdir "$work/unit" && cp /usr/lib/systemd/system/caseway-node@.service "$work/unit/"
out=$(systemd-analyze verify "$work/unit/caseway-node@360102.service" 2>&1) || fail "verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify: $out"

# 3. Certificates (operator.md, "Joining a federation"): the CA signs requests; keys stay put.
pki=/usr/share/caseway/pki.sh
walk="walkthrough-$$"
ca="$work/ca"
bash $pki init "$ca" fed.walk >/dev/null
for j in 360102 360111; do
  tls="/etc/caseway/$walk/$j"
  bash $pki request "$tls" "$j" >/dev/null 2>&1
  bash $pki signing-key "$tls" "$j" >/dev/null 2>&1
  bash $pki sign "$ca" "$tls/$j.csr" "$j" "$tls/$j.sign.pub" >/dev/null 2>&1
  cp "$ca/nodes/$j.crt" "$tls/"
  [ ! -e "$ca/nodes/$j.key" ] && [ ! -e "$tls/ca.key" ] || fail "a key travelled"
done
for j in 360102 360111; do
  tls="/etc/caseway/$walk/$j"
  cp "$ca/ca.crt" "$ca/directory.yaml" "$tls/"
  chown -R root:caseway "/etc/caseway/$walk" && chmod 750 "/etc/caseway/$walk" "$tls"
  chmod 640 "$tls/$j.key" "$tls/$j.sign.key"
done
bash $pki client "$ca" 360102 office >/dev/null
bash $pki client "$ca" 360111 office >/dev/null

# 4. Configurations: two nodes on this machine, on free loopback ports.
read -r port_a port_b < <(/usr/bin/python3 -c '
import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
write_config() {  # J PORT PEER PEER_PORT
  cat >"/etc/caseway/$walk-$1.yaml" <<YAML
federation: fed.walk
jurisdiction: "$1"
listen_address: 127.0.0.1:$2
tls:
  ca_file: $walk/$1/ca.crt
  cert_file: $walk/$1/$1.crt
  key_file: $walk/$1/$1.key
storage:
  path: /var/lib/caseway/$walk-$1.db
peers:
  - jurisdiction: "$3"
    address: 127.0.0.1:$4
exchange_log:
  signing_key_file: $walk/$1/$1.sign.key
  directory_file: $walk/$1/directory.yaml
YAML
  chown root:caseway "/etc/caseway/$walk-$1.yaml" && chmod 640 "/etc/caseway/$walk-$1.yaml"
}
write_config 360102 "$port_a" 360111 "$port_b"
write_config 360111 "$port_b" 360102 "$port_a"

# 5. Check as the node's user, then start as it (what the unit does), and exchange.
for j in 360102 360111; do
  runuser -u caseway -- /usr/bin/caseway-node --config "/etc/caseway/$walk-$j.yaml" --check >/dev/null \
    || fail "--check of $j as caseway"
done
chmod 600 "/etc/caseway/$walk/360102/360102.key"  # root-only: --check must name it
if out=$(runuser -u caseway -- /usr/bin/caseway-node --config "/etc/caseway/$walk-360102.yaml" --check 2>&1); then
  fail "--check accepted a key its user cannot read"
fi
grep -q "360102/360102.key" <<<"$out" || fail "--check did not name the key: $out"
chmod 640 "/etc/caseway/$walk/360102/360102.key"
for j in 360102 360111; do
  # setpriv execs the node itself (as systemd would), so $! is the node's PID.
  setpriv --reuid=caseway --regid=caseway --init-groups -- \
    /usr/bin/caseway-node --config "/etc/caseway/$walk-$j.yaml" 2>"$work/$j.log" &
  pids+=($!)
done
conn() { echo --address "127.0.0.1:$1" --ca "$ca/ca.crt" --cert "$ca/clients/$2-office.crt" --key "$ca/clients/$2-office.key"; }
for _ in $(seq 100); do
  /usr/bin/caseway status $(conn "$port_a" 360102) >/dev/null 2>&1 && \
    /usr/bin/caseway status $(conn "$port_b" 360111) >/dev/null 2>&1 && break
  sleep 0.2
done
/usr/bin/python3 -c '
import json,sys
n=json.loads(open(sys.argv[1]).readline())
n["notice_id"]="walk-1"; n["destinations"]=["360111"]
print(json.dumps(n, ensure_ascii=False))' "$here/deploy/samples/notices-360102.jsonl" >"$work/notice.jsonl"
/usr/bin/caseway publish $(conn "$port_a" 360102) <"$work/notice.jsonl" >"$work/published" \
  || fail "publish: $(cat "$work/published")"
got=""
for _ in $(seq 100); do
  got=$(/usr/bin/caseway inbox --ack --purpose "package walkthrough" $(conn "$port_b" 360111) 2>/dev/null || true)
  grep -q '"walk-1"' <<<"$got" && break
  sleep 0.2
done
grep -q '"walk-1"' <<<"$got" || fail "the notice did not arrive at 360111; its log: $(tail -5 "$work/360111.log")"

# 6. Stop by PID: SIGTERM, exit 0.
for p in "${pids[@]}"; do
  kill -TERM "$p"
  wait "$p" || fail "a node exited $? on SIGTERM"
done
pids=()
[ "$(stat -c '%U %a' "/var/lib/caseway/$walk-360111.db")" = "caseway 600" ] \
  || fail "database: $(stat -c '%U %a' "/var/lib/caseway/$walk-360111.db")"

# 7. Back up and restore as the node's user (operator.md, "Backup and restore"), then start: the
# restored node asks its peer before anything else and goes on.
backup="/var/lib/caseway/$walk-360111.backup.db"
runuser -u caseway -- /usr/bin/caseway-node backup --config "/etc/caseway/$walk-360111.yaml" \
  --to "$backup" >"$work/backup.out" 2>&1 || fail "backup: $(cat "$work/backup.out")"
grep -q "received from 360102: up to seq 1" "$work/backup.out" || fail "backup summary: $(cat "$work/backup.out")"
[ "$(stat -c '%U %a' "$backup")" = "caseway 600" ] || fail "backup file: $(stat -c '%U %a' "$backup")"
runuser -u caseway -- /usr/bin/caseway-node restore --config "/etc/caseway/$walk-360111.yaml" \
  --from "$backup" >"$work/restore.out" 2>&1 || fail "restore: $(cat "$work/restore.out")"
for j in 360102 360111; do
  setpriv --reuid=caseway --regid=caseway --init-groups -- \
    /usr/bin/caseway-node --config "/etc/caseway/$walk-$j.yaml" 2>>"$work/$j.log" &
  pids+=($!)
done
for _ in $(seq 100); do
  grep -q "restore: every peer confirmed" "$work/360111.log" && break
  sleep 0.2
done
grep -q "restore: every peer confirmed" "$work/360111.log" || fail "restored node: $(tail -5 "$work/360111.log")"
for p in "${pids[@]}"; do
  kill -TERM "$p"
  wait "$p" || fail "a node exited $? on SIGTERM after the restore"
done
pids=()
rm -f "$backup" /var/lib/caseway/"$walk"-360111.db.replaced-*
echo "package_test: installed, joined, checked, exchanged, stopped, backed up and restored as the walk-through says"
