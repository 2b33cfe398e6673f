#!/usr/bin/env bash
# demo.sh: starts a demo federation of three Caseway nodes on 127.0.0.1 with fresh certificates,
# publishes sample notices of every kind, shows them arriving, and says what to try next.
#
#   deploy/demo.sh              install packages, build, run the demo, keep the nodes up (Ctrl-C stops)
#   deploy/demo.sh --no-wait    the same, but stop the nodes once the exchange has been shown
#   deploy/demo.sh --postgres   440305 runs as an active/standby pair of nodes on PostgreSQL (a
#                               server started in a temporary directory); at the end the active
#                               one is killed and the standby takes over (combines with --no-wait)
#
# Jurisdictions: 360102 Donghu and 360111 Qingshanhu (both Nanchang, Jiangxi), 440305 Nanshan
# (Shenzhen, Guangdong). Everything lives in demo-run/ (recreated each time).
# Environment: CASEWAY_DEMO_DIR (default ./demo-run), CASEWAY_DEMO_PORT (first of three ports,
# default 7401), CASEWAY_BUILD_DIR (default ./build), CASEWAY_SKIP_BUILD=1 (use an existing build).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
wait_for_ctrl_c=1
postgres=0
for arg in "$@"; do
  case "$arg" in
    --no-wait) wait_for_ctrl_c=0 ;;
    --postgres) postgres=1 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done

run=${CASEWAY_DEMO_DIR:-$root/demo-run}
port0=${CASEWAY_DEMO_PORT:-7401}
build=${CASEWAY_BUILD_DIR:-$root/build}
jurisdictions=(360102 360111 440305)
declare -A names=([360102]="Donghu, Nanchang (Jiangxi)" [360111]="Qingshanhu, Nanchang (Jiangxi)"
                  [440305]="Nanshan, Shenzhen (Guangdong)")

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ "${CASEWAY_SKIP_BUILD:-0}" != 1 ]; then
  say "Installing Debian packages (if missing) and building"
  if [ $postgres = 1 ]; then bash "$here/install-deps.sh" --postgres; else bash "$here/install-deps.sh"; fi
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" -j2 --target caseway-node caseway
fi
bin=$build/bin

say "Creating a fresh federation in $run"
rm -rf "$run"
mkdir -p "$run"
bash "$here/pki.sh" init "$run/pki" caseway.demo >/dev/null
for j in "${jurisdictions[@]}"; do
  bash "$here/pki.sh" node "$run/pki" "$j" >/dev/null
  bash "$here/pki.sh" client "$run/pki" "$j" office >/dev/null
done
bash "$here/pki.sh" auditor "$run/pki" coordinator >/dev/null
bash "$here/pki.sh" department "$run/pki" 360102 public-security >/dev/null
echo "CA, 3 node certificates, 3 client certificates, 1 auditor and 1 department certificate in $run/pki"

port_of() {
  case $1 in 360102) echo $((port0)) ;; 360111) echo $((port0 + 1)) ;; 440305) echo $((port0 + 2)) ;; esac
}
for j in "${jurisdictions[@]}"; do
  sed -e "s/127.0.0.1:7401/127.0.0.1:$(port_of 360102)/" \
      -e "s/127.0.0.1:7402/127.0.0.1:$(port_of 360111)/" \
      -e "s/127.0.0.1:7403/127.0.0.1:$(port_of 440305)/" \
      "$here/examples/$j.yaml" >"$run/$j.yaml"
  if [ $postgres = 1 ] && [ "$j" != 440305 ]; then
    # 440305 is a pair: its peers dial both of its nodes.
    sed -i "s/127.0.0.1:$(port_of 440305)\$/127.0.0.1:$(port_of 440305),127.0.0.1:$((port0 + 3))/" "$run/$j.yaml"
  fi
  echo "port_file: $j.port" >>"$run/$j.yaml"
  if [ "$j" = 360102 ]; then
    # Donghu's public security bureau may read certificates only: the holder's name and number
    # and the certificate (docs/privacy.md, "Sharing policies").
    cat >"$run/sharing-360102.yaml" <<YAML
version: "demo-1"
grants:
  - party: department/360102/public-security
    kinds:
      - {kind: certificate, fields: [subject.name, subject.id_number, certificate]}
YAML
    echo "sharing_policy_file: $run/sharing-360102.yaml" >>"$run/$j.yaml"
  fi
  mkdir -p -m 700 "$run/keys"
  [ -f "$run/keys/$j.keys" ] || "$bin/caseway-node" add-key --to "$run/keys/$j.keys" >/dev/null
  address="127.0.0.1:$(port_of "$j")"
  if [ $postgres = 1 ] && [ "$j" = 440305 ]; then address="$address,127.0.0.1:$((port0 + 3))"; fi
  cat >"$run/client-$j.yaml" <<YAML
address: $address
ca_file: pki/ca.crt
cert_file: pki/clients/$j-office.crt
key_file: pki/clients/$j-office.key
purpose: inflow and outflow processing (demo)
YAML
done

pids=()
pg_stop=()
stop_nodes() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ ${#pg_stop[@]} -gt 0 ]; then "${pg_stop[@]}" >/dev/null 2>&1 || true; rm -rf "$pgdir"; fi
}
trap stop_nodes EXIT
trap 'exit 130' INT TERM

if [ $postgres = 1 ]; then
  say "Starting PostgreSQL for 440305's active/standby pair"
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  pgport=$((port0 + 10))
  # initdb refuses root: as root, the server runs as nobody, in a directory of its own.
  pgdir=$(mktemp -d /tmp/caseway-demo-pg-XXXXXX)
  as_pg=()
  if [ "$(id -u)" = 0 ]; then chown nobody "$pgdir"; as_pg=(runuser -u nobody --); fi
  "${as_pg[@]}" "$pgbin/initdb" -D "$pgdir/data" -U caseway -A trust -E UTF8 --locale=C \
    --no-instructions >/dev/null
  "${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/postgres.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $pgport -k $pgdir" start >/dev/null
  pg_stop=("${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -m fast -w stop)
  psql -X -q -h 127.0.0.1 -p "$pgport" -U caseway -d postgres -c "CREATE DATABASE caseway"
  echo "PostgreSQL $(basename "$(dirname "$pgbin")") on 127.0.0.1:$pgport, data in $pgdir (removed at the end)"
  # Two nodes of 440305 on that database: a (the demo's 440305 address) and b (the next port).
  dsn="host=127.0.0.1 port=$pgport user=caseway dbname=caseway"
  for half in a b; do
    port=$(port_of 440305)
    [ $half = b ] && port=$((port0 + 3))
    sed -e "s|^  path: data/440305.db|  postgres:\n    dsn: \"$dsn\"\n    lease_ttl: 3s|" \
        -e "s|^listen_address: .*|listen_address: 127.0.0.1:$port|" \
        -e "s|^port_file: .*|port_file: 440305-$half.port|" "$run/440305.yaml" >"$run/440305-$half.yaml"
  done
fi

say "Starting the nodes"
for j in "${jurisdictions[@]}"; do
  config="$run/$j.yaml"
  if [ $postgres = 1 ] && [ "$j" = 440305 ]; then
    config="$run/440305-a.yaml"
    "$bin/caseway-node" --config "$config" >"$run/440305-a.log" 2>&1 &
    pids+=($!)
    echo "node 440305 (${names[$j]}) a: pid $! on 127.0.0.1:$(port_of "$j"), log $run/440305-a.log"
    for _ in $(seq 1 200); do [ -f "$run/440305-a.port" ] && break; sleep 0.05; done
    cp "$run/440305-a.port" "$run/440305.port"
    "$bin/caseway-node" --config "$run/440305-b.yaml" >"$run/440305-b.log" 2>&1 &
    pids+=($!)
    echo "node 440305 b: pid $! on 127.0.0.1:$((port0 + 3)), the standby (log $run/440305-b.log)"
    continue
  fi
  "$bin/caseway-node" --config "$config" >"$run/$j.log" 2>&1 &
  pids+=($!)
  echo "node $j (${names[$j]}) pid $! on 127.0.0.1:$(port_of "$j"), log $run/$j.log"
done
for j in "${jurisdictions[@]}"; do
  for _ in $(seq 1 200); do [ -f "$run/$j.port" ] && break; sleep 0.05; done
  [ -f "$run/$j.port" ] || { echo "node $j did not start:"; cat "$run/$j.log"; exit 1; }
done

cli() { local j=$1; shift; "$bin/caseway" "$@" --client-config "$run/client-$j.yaml"; }
summarize_publish() {
  python3 -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    if r["status"] != "OK":
        print("  line %-3d %s: %s" % (r["line"], r["status"], r["error"]))
        continue
    to = ", ".join("%s seq %s" % (d["destination"], d["seq"]) for d in r["deliveries"])
    print("  line %-3d OK  %-26s -> %s  (sha256 %s...)" % (r["line"], r["notice_id"], to, r["digest"][:12]))
'
}

# The samples describe events of October 2026; the demo dates them yesterday, so that the
# assessment shows a fresh exchange (a reply_due a sample states keeps its distance).
fresh() {
  python3 -c '
import datetime, json, sys
day = datetime.timedelta(days=1)
now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
for line in sys.stdin:
    n = json.loads(line)
    old = datetime.datetime.fromisoformat(n["occurred_at"].replace("Z", "+00:00"))
    new = now - day
    n["occurred_at"] = new.strftime("%Y-%m-%dT%H:%M:%SZ")
    if "reply_due" in n:
        due = datetime.datetime.fromisoformat(n["reply_due"].replace("Z", "+00:00"))
        n["reply_due"] = (new + (due - old)).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(json.dumps(n, ensure_ascii=False))
' <"$1"
}

say "360102 publishes 12 notices of every kind to 440305 (one also to 360111)"
fresh "$here/samples/notices-360102.jsonl" | cli 360102 publish - | summarize_publish
say "440305 publishes an arrival registration (to 360111) and an urgent verification request (to 360102)"
fresh "$here/samples/notices-440305.jsonl" | cli 440305 publish - | summarize_publish

inbox_count() { cli "$1" status --json | sed -n 's/.*"inbox_total":"\{0,1\}\([0-9]*\).*/\1/p'; }
await_inbox() {
  for _ in $(seq 1 200); do [ "$(inbox_count "$1")" = "$2" ] && break; sleep 0.05; done
  [ "$(inbox_count "$1")" = "$2" ] || { echo "node $1 did not receive $2 notices"; exit 1; }
}
await_inbox 440305 12
await_inbox 360102 1

say "Each answers the other's verification request (a feedback names the notice it answers)"
fresh "$here/samples/replies-440305.jsonl" | cli 440305 publish - | summarize_publish
fresh "$here/samples/replies-360102.jsonl" | cli 360102 publish - | summarize_publish
await_inbox 440305 13
await_inbox 360111 2
await_inbox 360102 2

say "To-do of 440305: the replies it owes (federation policy: docs/policy.md) and those it was given"
cli 440305 todo --all
say "Inbox of 440305 (kind, id, origin, channel seq), read and acknowledged"
cli 440305 inbox --ack | python3 -c '
import json, sys
for line in sys.stdin:
    item = json.loads(line)
    n = item["notice"]
    kind = next(k for k in n if k in ("residence_change", "verification_request", "check_report",
        "pregnancy", "birth", "birth_service_registration", "certificate", "technical_service",
        "fee", "status_change", "feedback", "void"))
    print("  #%3s  %-27s %-26s from %s seq %s" % (item["inbox_seq"], kind, n["notice_id"], item["origin"], item["channel_seq"]))
'
say "Inbox of 360111 (left unacknowledged), as JSON lines"
cli 360111 inbox | cut -c1-160
say "Status of 360102"
cli 360102 status

say "Donghu's public security bureau reads what 360102's sharing policy grants it: certificates, with the holder's name and number only"
"$bin/caseway" department follow 360102 --once --state "$run/public-security-360102.json" \
  --address "127.0.0.1:$(port_of 360102)" --ca "$run/pki/ca.crt" \
  --cert "$run/pki/departments/360102-public-security.crt" \
  --key "$run/pki/departments/360102-public-security.key" \
  --directory "$run/pki/directory.yaml" --purpose "certificate register (demo)" | python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    n = e["notice"]
    kind = next(k for k in ("certificate", "birth", "residence_change") if k in n)
    print("  %-9s %-24s %-12s subject fields: %s; %s fields: %s" % (e["role"].replace("ROLE_", "").lower(),
        n["notice_id"], kind, ", ".join(sorted(n.get("subject", {}))), kind, ", ".join(sorted(n[kind]))))
'

say "Coordinator: reconcile the exchange logs of 360102 and 440305"
audit_flags=(--directory "$run/pki/directory.yaml" --ca "$run/pki/ca.crt"
             --cert "$run/pki/auditors/coordinator.crt" --key "$run/pki/auditors/coordinator.key"
             --state-dir "$run/audit-state" --bundle-dir "$run/audit-bundles")
# Checkpoints are signed every second and cosigned by the peers every five: wait until every
# receipt is covered by a checkpoint.
for _ in $(seq 1 40); do
  "$bin/caseway" audit reconcile "127.0.0.1:$(port_of 360102)" "127.0.0.1:$(port_of 440305)" \
    "${audit_flags[@]}" >"$run/reconcile.txt" 2>&1 && grep -q "PROVEN  *13  *2" "$run/reconcile.txt" && break
  sleep 0.25
done
cat "$run/reconcile.txt"

period=$(date -u -d "+8 hours" +%Y-%m)  # CST, without needing tzdata
say "Coordinator: the two-way assessment of $period so far (docs/policy.md)"
"$bin/caseway" audit report "127.0.0.1:$(port_of 360102)" "127.0.0.1:$(port_of 360111)" \
  "127.0.0.1:$(port_of 440305)" --period "$period" "${audit_flags[@]}" \
  --html "$run/report-$period.html" 2>&1 | grep -v "^caseway audit report: wrote"
echo "The joint-meeting page: $run/report-$period.html (open it in a browser; it prints on A4)"

if [ $postgres = 1 ]; then
  say "Failover: kill -9 the active node of 440305; the standby takes the writer lease and serves"
  kill -9 "${pids[2]}"
  started=$(date +%s.%N)
  for _ in $(seq 1 300); do [ -f "$run/440305-b.port" ] && break; sleep 0.05; done
  [ -f "$run/440305-b.port" ] || { echo "the standby did not take over:"; tail "$run/440305-b.log"; exit 1; }
  python3 -c "import sys; print('the standby of 440305 took over after %.1f s' % (float(sys.argv[2]) - float(sys.argv[1])))" \
    "$started" "$(date +%s.%N)"
  head -1 "$here/samples/notices-360102.jsonl" >"$run/after-failover.jsonl"
  fresh "$run/after-failover.jsonl" | sed 's/"notice_id": *"\([^"]*\)"/"notice_id": "\1-after-failover"/' |
    cli 360102 publish - | summarize_publish
  await_inbox 440305 14
  echo "440305 (its node b now) received it: $(inbox_count 440305) notices in its inbox, none lost or repeated"
  "$bin/caseway" audit verify "127.0.0.1:$((port0 + 3))" "${audit_flags[@]}" | tail -2
fi

cat <<TXT

The demo federation is up. Things to try (from $root):
  export CASEWAY_CLIENT_CONFIG=$run/client-360102.yaml
  $bin/caseway status                         # channels, cursors and lag of 360102
  $bin/caseway todo --owed-to-us               # replies 360102 is still waiting for
  $bin/caseway audit report 127.0.0.1:$(port_of 360102) 127.0.0.1:$(port_of 440305) --period $period --details ${audit_flags[*]}
  $bin/caseway publish $here/samples/notices-360102.jsonl   # again: every line is a duplicate
  $bin/caseway inbox --follow --client-config $run/client-360111.yaml   # wait for new notices
  kill -9 ${pids[2]}; $bin/caseway status       # 440305 gone: its channel lags, subscription backs off
  $bin/caseway-node --config $run/440305.yaml &  # restart it: it catches up from its cursor
  $bin/caseway audit verify 127.0.0.1:$(port_of 360102) ${audit_flags[*]}
                                               # a coordinator verifies 360102's log, and that
                                               # nothing beyond its sharing policy left it
  $bin/caseway audit access --subject 360102199306120023 --purpose "the person asked"   # who read her data
  sqlite3 $run/data/360102.db "UPDATE log_leaf SET bytes = bytes || x'00' WHERE idx = 3"
                                               # tamper with it; verify again: LOG_CORRUPT, entry 3
Docs: docs/README.md. Logs: $run/*.log (no personal data is logged).
TXT

if [ $wait_for_ctrl_c = 1 ]; then
  say "Nodes are running; press Ctrl-C to stop them"
  wait
fi
