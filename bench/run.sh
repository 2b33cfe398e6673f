#!/usr/bin/env bash
# run.sh: Caseway's end-to-end benchmarks and the peer brokers, in one run on this machine.
#
#   bash bench/run.sh                    everything (about 10 minutes on 2 cores)
#   QUICK=1 bash bench/run.sh            small counts, no peers (a smoke run, ~1 minute)
#   ONLY="throughput latency" bash bench/run.sh
#
# Parts (ONLY selects): units (caseway-bench-units: serializing, validating, hashing, signing and
# storing a notice, one at a time on one thread: the floors under #14's targets; UNITS_COUNT),
# throughput (log and signatures on and off, batch and unary), latency
# (1k/5k/20k per second offered), catchup (B offline while BACKLOG accumulate), import (the CLI),
# fanout (one hub node serving FANOUT_STREAMS subscriptions, FANOUT_PER_STREAM notices each, live
# and as a backlog), peers (NATS JetStream mirror and RabbitMQ shovel from bench/peers),
# integrity (the exchange log's own checks: batched throughput with the background scrub at its
# default pace and off, alternated twice, and caseway-bench-log's check-before-signing figures),
# flood (caseway-bench-flood: a client's publish p99 and the node's memory under each flood of
# issue #10; FLOOD_SECONDS, FLOOD_RATE, FLOODS: which, by number from 0, e.g. 1,5), report (REPORT_NODES real nodes exchange REPORT_N
# notices, then `caseway audit report` over all of them: its time and memory; issue #8), query
# (QUERY_N notices over QUERY_N/10 cases, then remote queries and case timelines, and the per-peer
# rate limit under a flood of queries from one node while another asks; issue #9), disk (bytes on
# disk per notice at origin and destination after DISK_N (100000), and after retention's purge),
# atrest (batched and unary throughput in the clear, with personal data sealed at rest,
# storage.key_file, and sealed with a field-level sharing policy for the peer, alternated twice;
# issue #15), growth (GROWTH_N (10,000,000) notices on one channel pair: the end-to-end rate per
# GROWTH_INTERVAL (100,000), and bytes on disk per notice at both nodes with the WAL as it is
# and after a clean stop checkpoints it, for each of GROWTH_IDS ("ordered": notice ids in
# publishing order; "uuid4": random UUIDs; "uuid7": time-ordered UUIDs; "ordered uuid4" runs
# two) and GROWTH_CASES (0: every notice in one case; N: spread over N cases and subjects, so that
# the case index's keys are random as real cases' are); issue #14), sizes (batched throughput at
# 256 B, 1 KiB, 16 KiB and the largest valid notice, SIZES_MB (400) of notices each), postgres (batched and unary
# throughput with both nodes on SQLite and on PostgreSQL (a server started in a temporary
# directory), alternated twice; then the failover time of 360102 run as an active/standby pair:
# kill -9 of the active node, and the active node paused as a machine that stops answering;
# issue #12).
# Plots (gnuplot, SVG, beside the results; bench/plot.sh): growth.svg, latency.svg.
# PERF=1 with atrest: the origin's perf profile of each mode's first batched run, beside the results.
# NODE_PRELOAD: a library the nodes are started with (LD_PRELOAD; e.g. another malloc, to compare).
# Knobs: COUNT (200000), UNARY_COUNT (20000), CLIENTS (8), BATCH (100), UNARY_CLIENTS (64),
# LAT_SECONDS (10), BACKLOG (1000000), IMPORT (1000000), FANOUT_STREAMS (3000),
# FANOUT_PER_STREAM (100), FANOUT_VARIANTS ("live backlog"), LAT_RATES ("1000 5000 20000"),
# LAT_MODES ("unary batch"), PEER_N (100000), BASE_PORT (17400), BATCH_MAX_ENTRIES (the nodes'
# exchange.batch_max_entries; default: the node's, 2048).
# Two real nodes on 127.0.0.1 with mutual TLS, synchronous=FULL and (unless said) the exchange
# log with signed batches and receipts. Results: bench/results/<UTC>/ (results.jsonl, summary.txt,
# node logs). Every load is bounded by a count and a time limit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${CASEWAY_BUILD_DIR:-$root/build}
if [ "${QUICK:-0}" = 1 ]; then
  : "${COUNT:=20000}" "${UNARY_COUNT:=2000}" "${LAT_SECONDS:=3}" "${BACKLOG:=20000}" "${IMPORT:=20000}"
  : "${FANOUT_STREAMS:=300}" "${FANOUT_PER_STREAM:=20}" "${REPORT_NODES:=6}" "${REPORT_N:=20000}"
  : "${ONLY:=throughput latency catchup import fanout}"
fi
COUNT=${COUNT:-200000}; UNARY_COUNT=${UNARY_COUNT:-20000}; CLIENTS=${CLIENTS:-8}; BATCH=${BATCH:-100}
UNARY_CLIENTS=${UNARY_CLIENTS:-64}; LAT_SECONDS=${LAT_SECONDS:-10}; BACKLOG=${BACKLOG:-1000000}
IMPORT=${IMPORT:-1000000}; PEER_N=${PEER_N:-100000}; BASE_PORT=${BASE_PORT:-17400}
FANOUT_STREAMS=${FANOUT_STREAMS:-3000}; FANOUT_PER_STREAM=${FANOUT_PER_STREAM:-100}
QUERY_N=${QUERY_N:-1000000}
GROWTH_N=${GROWTH_N:-10000000}; GROWTH_INTERVAL=${GROWTH_INTERVAL:-100000}; GROWTH_IDS=${GROWTH_IDS:-ordered}; GROWTH_CASES=${GROWTH_CASES:-0}; SIZES_MB=${SIZES_MB:-400}
ONLY=${ONLY:-units throughput latency catchup import fanout peers integrity flood report query disk atrest sizes growth postgres}

bash "$root/deploy/install-deps.sh" --bench >/dev/null
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j2 --target caseway-node caseway caseway-bench caseway-bench-log \
  caseway-bench-flood caseway-bench-query caseway-bench-units >/dev/null
bin=$build/bin

out="$here/results/$(date -u +%Y%m%dT%H%M%SZ)"
work=$(mktemp -d /tmp/caseway-bench-XXXXXX)
mkdir -p "$out"
results="$out/results.jsonl"
log() { printf '%s\n' "$*" | tee -a "$out/summary.txt"; }
log "caseway bench $(date -u +%FT%TZ) on $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; git $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet HEAD -- . ':!bench/results' 2>/dev/null || echo ' with uncommitted changes')"

[ -n "${NODE_PRELOAD:-}" ] && log "nodes started with LD_PRELOAD=$NODE_PRELOAD"
pki=$work/pki
bash "$root/deploy/pki.sh" init "$pki" bench.caseway >/dev/null
for j in 360102 440305; do
  bash "$root/deploy/pki.sh" node "$pki" "$j" >/dev/null
  bash "$root/deploy/pki.sh" client "$pki" "$j" bench >/dev/null
done

declare -A port=([360102]=$BASE_PORT [440305]=$((BASE_PORT + 1)))
declare -A pid=()
peer_of() { [ "$1" = 360102 ] && echo 440305 || echo 360102; }

# write_config J MODE: MODE is "on" (exchange log, signatures, receipts), "noscrub" (the same
# without the background scrub), "sealed" (on, with personal data sealed at rest) or "off".
write_config() {
  local j=$1 mode=$2 p
  p=$(peer_of "$j")
  {
    echo "federation: bench.caseway"
    echo "jurisdiction: \"$j\""
    echo "listen_address: 127.0.0.1:${port[$j]}"
    echo "port_file: $work/$j.port"
    echo "tls: {ca_file: $pki/ca.crt, cert_file: $pki/nodes/$j.crt, key_file: $pki/nodes/$j.key}"
    if [ "$mode" = pg ]; then
      echo "storage: {postgres: {dsn: \"host=127.0.0.1 port=$pgport user=caseway dbname=bench_${j}_$pg_round\", lease_ttl: ${LEASE_TTL:-6s}}}"
    elif [ "$mode" = sealed ] || [ "$mode" = private ]; then
      [ -f "$work/$j.keys" ] || "$bin/caseway-node" add-key --to "$work/$j.keys" >/dev/null
      echo "storage: {path: $work/data-$mode/$j.db, key_file: $work/$j.keys}"
    else
      echo "storage: {path: $work/data-$mode/$j.db}"
    fi
    echo "peers: [{jurisdiction: \"$p\", address: 127.0.0.1:${port[$p]}}]"
    [ -n "${METRICS:-}" ] && echo "metrics: {listen_address: 127.0.0.1:$(( port[$j] + 1000 ))}"
    echo "limits: {max_batch_notices: 1000, max_message_bytes: 16777216, peer_queries_per_minute: ${QUERY_LIMIT:-120}}"
    [ -n "${BATCH_MAX_ENTRIES:-}" ] && echo "exchange: {batch_max_entries: $BATCH_MAX_ENTRIES}"
    if [ "$mode" = private ]; then
      # The peer is granted part of each notice: every notice gets its own copy for it, made,
      # stored (sealed) and signed at publish (docs/privacy.md, "Sharing policies").
      cat >"$work/$j.sharing.yaml" <<EOF
version: "bench-1"
grants:
  - party: "$p"
    kinds:
      - kind: verification_request
        fields: [subject.name, subject.id_number, subject.registered_region,
                 verification_request.request_id, verification_request.items]
  - party: department/$j/public-security
    kinds:
      - {kind: certificate, fields: [subject.name, subject.id_number, certificate]}
EOF
      echo "sharing_policy_file: $work/$j.sharing.yaml"
    fi
    if [ "$mode" = on ] || [ "$mode" = sealed ] || [ "$mode" = private ] || [ "$mode" = pg ]; then
      echo "exchange_log: {signing_key_file: $pki/nodes/$j.sign.key, directory_file: $pki/directory.yaml}"
    elif [ "$mode" = noscrub ]; then
      echo "exchange_log: {signing_key_file: $pki/nodes/$j.sign.key, directory_file: $pki/directory.yaml, scrub_rate: 0}"
    else
      echo "exchange_log: {disabled: true}"
    fi
    echo "log: {level: warn}"
  } >"$work/$j-$mode.yaml"
}

start_node() {  # start_node J MODE
  local j=$1 mode=$2
  rm -f "$work/$j.port"
  env ${NODE_PRELOAD:+LD_PRELOAD=$NODE_PRELOAD} "$bin/caseway-node" --config "$work/$j-$mode.yaml" >>"$out/node-$j-$mode.log" 2>&1 &
  pid[$j]=$!
  for _ in $(seq 1 400); do [ -f "$work/$j.port" ] && return 0; sleep 0.05; done
  echo "node $j did not start"; cat "$out/node-$j-$mode.log"; exit 1
}
stop_node() {  # stop_node J
  local j=$1
  [ -n "${pid[$j]:-}" ] || return 0
  kill -TERM "${pid[$j]}" 2>/dev/null || true
  wait "${pid[$j]}" 2>/dev/null || true
  pid[$j]=""
}
peak_rss_mb() { awk '/VmHWM/{printf "%.0f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo 0; }
pg_stop=()
cleanup() {
  for j in "${!pid[@]}"; do stop_node "$j"; done
  if [ ${#pg_stop[@]} -gt 0 ]; then "${pg_stop[@]}" >/dev/null 2>&1 || true; rm -rf "$pgdir"; fi
  rm -rf "$work"
}
trap cleanup EXIT

A=(--a "127.0.0.1:${port[360102]}" --ca "$pki/ca.crt" --a-cert "$pki/clients/360102-bench.crt" --a-key "$pki/clients/360102-bench.key")
B=(--b "127.0.0.1:${port[440305]}" --b-cert "$pki/clients/440305-bench.crt" --b-key "$pki/clients/440305-bench.key")
bench() {  # bench ARGS... : run caseway-bench; its row goes to the terminal and summary.txt,
           # its JSON to results.jsonl and to stdout (the caller keeps the last line); its CPU
           # seconds (user, system) to $work/bench.time (GNU time)
  local line
  /usr/bin/time -f "%U %S" -o "$work/bench.time" "$bin/caseway-bench" "$@" >"$work/bench.out" 2>&1 || true
  grep -v '^JSON ' "$work/bench.out" | tee -a "$out/summary.txt" >&2
  line=$(sed -n 's/^JSON //p' "$work/bench.out")
  [ -n "$line" ] && echo "$line" >>"$results"
  echo "$line"
}
field() { sed -n "s/.*\"$2\":\"\{0,1\}\([0-9.]*\).*/\1/p" <<<"$1"; }
# cpu_s PID: the process's CPU time so far (user + system), in seconds.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# writer_s PID: the CPU time so far of the process's database writer thread (named cw-writer,
# docs/operator.md "Threads"): one thread, so 1 / (its CPU per notice) bounds the node's rate
# however many cores there are.
writer_s() {
  local t total=0
  for t in /proc/"$1"/task/*; do
    [ "$(cat "$t/comm" 2>/dev/null)" = cw-writer ] || continue
    total=$(sed 's/.*) //' "$t/stat" | awk -v hz="$(getconf CLK_TCK)" -v s="$total" '{printf "%.2f", s + ($12 + $13) / hz}')
  done
  echo "$total"
}
# bench_cpu LABEL "NAME=PID ..." ARGS...: bench ARGS, then the CPU that run took per notice in
# each named node process (from /proc) and in the load generator (GNU time), and in each node's
# writer thread. On cores shared by all of them, cores / (CPU per notice) is the highest rate the
# run could reach, and 1 / (the busiest writer's CPU per notice) the highest its single writer
# allows: the floors of a CPU-bound figure. Prints bench's JSON line.
bench_cpu() {
  local label=$1 procs=$2; shift 2
  local before=() after=() wbefore=() wafter=() np r n client i
  local t0 t1
  for np in $procs; do before+=("$(cpu_s "${np#*=}")"); wbefore+=("$(writer_s "${np#*=}")"); done
  t0=$(date +%s%N)
  r=$(bench "$@" | tail -1)
  t1=$(date +%s%N)
  for np in $procs; do after+=("$(cpu_s "${np#*=}")"); wafter+=("$(writer_s "${np#*=}")"); done
  n=$(field "$r" notices); [ -n "$n" ] || n=$(field "$r" delivered); [ -n "$n" ] || n=$(field "$r" backlog)
  # The last line: GNU time writes "Command exited with non-zero status N" first when the
  # generator fails (some requests refused), which read as 0 s before.
  client=$(tail -n 1 "$work/bench.time" 2>/dev/null | awk '{printf "%.2f", $1 + $2}')
  [ -n "$client" ] || client=0
  if [ -n "$n" ] && [ "$n" != 0 ]; then
    local spec=""
    i=0
    for np in $procs; do
      spec+="${np%%=*} ${before[$i]} ${after[$i]} ${wbefore[$i]} ${wafter[$i]} "
      i=$((i + 1))
    done
    log "$(awk -v l="$label" -v n="$n" -v c="$client" -v cores="$(nproc)" -v spec="$spec" -v wall="$(( (t1 - t0) / 1000000 ))" 'BEGIN{
      k = split(spec, f, " "); t = c; parts = ""; wmax = 0
      for (i = 1; i + 4 <= k; i += 5) {
        d = f[i+2] - f[i+1]; w = f[i+4] - f[i+3]; t += d; if (w > wmax) wmax = w
        parts = parts sprintf("%s %.0f [writer %.0f], ", f[i], d * 1e6 / n, w * 1e6 / n) }
      printf "cpu %-24s %.0f us per notice (%sload generator %.0f)", l, t * 1e6 / n, parts, c * 1e6 / n
      if (l ~ /^fanout/) printf ": includes setting up the connections of the streams, which the rate does not time"
      else if (ENVIRON["OFFERED"] != "") printf ": at %d/s offered, the %d cores %.0f%% busy over the run", ENVIRON["OFFERED"], cores, 100 * t / (wall / 1000) / cores
      else printf ": at most %.0f/s on %d cores", cores * n / t, cores
      if (wmax > 0) printf ", %.0f/s by the busiest writer thread", n / wmax }')"
    awk -v l="$label" -v n="$n" -v c="$client" -v spec="$spec" 'BEGIN{
      k = split(spec, f, " "); printf "{\"bench\":\"cpu %s\",\"notices\":%d,\"load_generator_s\":%.2f", l, n, c
      for (i = 1; i + 4 <= k; i += 5) printf ",\"%s_s\":%.2f,\"%s_writer_s\":%.2f", f[i], f[i+2] - f[i+1], f[i], f[i+4] - f[i+3]
      printf "}\n" }' >>"$results"
  fi
  echo "$r"
}
# commit_hist J: node J's group commits so far by duration (its metrics endpoint, which the
# latency part turns on: caseway_commit_duration_seconds, cumulative buckets "le count" per line).
commit_hist() {
  local mport=$(( port[$1] + 1000 ))
  { exec 3<>"/dev/tcp/127.0.0.1/$mport" && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3; exec 3<&-; } 2>/dev/null |
    sed -n 's/^caseway_commit_duration_seconds_bucket{le="\([^"]*\)"} \([0-9.e+]*\).*/\1 \2/p'
}
# lat_run MODE RATE: one latency run (unary, or a batch every 5 ms), with the CPU it took per
# notice and how busy the cores were over the run, then how the nodes' group commits
# (BEGIN to the end of the durable COMMIT: the writer's work and the fsync) were spread: what share
# took longer than 5 and 20 ms. An acknowledgement waits for one commit at the origin, a delivery
# for three more (the origin's SENT entry, the destination's batch, its access record).
lat_run() {
  local mode=$1 r=$2 extra=() j
  local -A h0=() h1=()
  [ "$mode" = batch ] && extra=(--batch-ms 5)
  for j in 360102 440305; do h0[$j]=$(commit_hist "$j" | tr '\n' ' '); done
  OFFERED=$r bench_cpu "latency-$mode-$r" "origin=${pid[360102]} destination=${pid[440305]}" \
    latency "${A[@]}" "${B[@]}" --rate "$r" --seconds "$LAT_SECONDS" "${extra[@]}" --samples "$out/latency-$mode-$r.txt" >/dev/null
  for j in 360102 440305; do h1[$j]=$(commit_hist "$j" | tr '\n' ' '); done
  local line
  line=$(awk -v l="$mode-$r" -v a0="${h0[360102]}" -v a1="${h1[360102]}" -v b0="${h0[440305]}" -v b1="${h1[440305]}" '
    function share(before, after, name,   n, m, f, g, i, d, total, le5, le20) {
      n = split(before, f, " "); m = split(after, g, " ")
      if (m == 0) return sprintf("%s: no metrics", name)
      for (i = 1; i + 1 <= m; i += 2) {
        d = g[i+1] - (n >= i + 1 ? f[i+1] : 0)
        if (g[i] == "+Inf") total = d
        if (g[i] == "0.005") le5 = d
        if (g[i] == "0.02") le20 = d
      }
      if (total <= 0) return sprintf("%s: no commits", name)
      return sprintf("%s %d commits, %.2f%% over 5 ms, %.2f%% over 20 ms", name, total, 100 * (total - le5) / total, 100 * (total - le20) / total)
    }
    BEGIN { printf "commits latency-%-13s %s; %s", l, share(a0, a1, "origin"), share(b0, b1, "destination") }')
  log "$line"
}
pair() { for j in 360102 440305; do write_config "$j" "$1"; start_node "$j" "$1"; done; }
unpair() { for j in 360102 440305; do stop_node "$j"; done; }

declare -A rate=()
if [[ " $ONLY " == *" units "* ]]; then
  log ""; log "== units: what a notice is made of, one at a time on one thread (caseway-bench-units, linked as the node is)"
  "$bin/caseway-bench-units" --count "${UNITS_COUNT:-20000}" 2>/dev/null >"$work/units.out" || true
  grep -v '^JSON ' "$work/units.out" | tee -a "$out/summary.txt"
  sed -n 's/^JSON //p' "$work/units.out" >>"$results"
fi

if [[ " $ONLY " == *" throughput "* ]]; then
  log ""; log "== throughput: $COUNT notices of 1 KiB, $CLIENTS clients x $BATCH per request; unary: $UNARY_COUNT, $UNARY_CLIENTS clients"
  for mode in on off; do
    pair "$mode"
    nodes="origin=${pid[360102]} destination=${pid[440305]}"
    r=$(bench_cpu "batch-log-$mode" "$nodes" throughput "${A[@]}" --clients "$CLIENTS" --batch "$BATCH" --count "$COUNT" --label "batch-log-$mode" | tail -1)
    rate[batch-$mode]=$(field "$r" notices_per_s)
    r=$(bench_cpu "unary-log-$mode" "$nodes" throughput "${A[@]}" --clients "$UNARY_CLIENTS" --batch 1 --count "$UNARY_COUNT" --label "unary-log-$mode" | tail -1)
    rate[unary-$mode]=$(field "$r" notices_per_s)
    unpair
  done
  log "log and signatures on/off: batch $(awk "BEGIN{printf \"%.2f\", ${rate[batch-on]}/${rate[batch-off]}}"), unary $(awk "BEGIN{printf \"%.2f\", ${rate[unary-on]}/${rate[unary-off]}}")"
  echo "{\"bench\":\"log on/off ratio\",\"batch\":$(awk "BEGIN{printf \"%.3f\", ${rate[batch-on]}/${rate[batch-off]}}"),\"unary\":$(awk "BEGIN{printf \"%.3f\", ${rate[unary-on]}/${rate[unary-off]}}")}" >>"$results"
fi

if [[ " $ONLY " == *" disk "* ]]; then
  # Disk growth per notice (docs/operations.md): the pair with every guarantee on stores DISK_N
  # notices of 1 KiB; after a clean stop (the WAL checkpointed into the file) each database is
  # measured, then a copy is purged as retention purges (bodies and case-index rows removed,
  # everything else kept) and vacuumed, and measured again.
  DISK_N=${DISK_N:-100000}
  log ""; log "== disk: bytes on disk per 1 KiB notice after $DISK_N, at the origin and the destination, and after retention's purge"
  rm -rf "$work/data-on"; pair on
  bench throughput "${A[@]}" --clients "$CLIENTS" --batch "$BATCH" --count "$DISK_N" --label "disk-load" >/dev/null
  unpair
  for j in 360102 440305; do
    role=origin; [ "$j" = 440305 ] && role=destination
    line=$(python3 - "$work/data-on/$j.db" "$DISK_N" "$role" <<'PY'
import os, shutil, sqlite3, sys
db, n, role = sys.argv[1], int(sys.argv[2]), sys.argv[3]
size = os.path.getsize(db) + (os.path.getsize(db + "-wal") if os.path.exists(db + "-wal") else 0)
copy = db + ".purged"
shutil.copy(db, copy)
c = sqlite3.connect(copy, isolation_level=None)
c.execute("PRAGMA secure_delete=ON")
c.execute("UPDATE notice SET bytes = X''")
c.execute("UPDATE inbox SET bytes = X''")
c.execute("DELETE FROM case_index")
c.execute("DELETE FROM case_index_new")
c.execute("UPDATE evidence SET message = X'' WHERE kind = 5")
c.execute("VACUUM")
c.close()
purged = os.path.getsize(copy)
print('{"bench":"disk","role":"%s","notices":%d,"bytes":%d,"bytes_per_notice":%.0f,'
      '"purged_bytes_per_notice":%.0f}' % (role, n, size, size / n, purged / n))
PY
)
    echo "$line" >>"$results"
    log "disk $role: $(field "$line" bytes_per_notice) bytes per notice; after retention's purge (vacuumed) $(field "$line" purged_bytes_per_notice)"
  done
fi

if [[ " $ONLY " == *" integrity "* ]]; then
  log ""; log "== integrity: batched throughput with the scrub at its default pace (on) and off (noscrub), alternated twice; $COUNT notices each"
  declare -A sum=([on]=0 [noscrub]=0)
  for round in 1 2; do
    for mode in on noscrub; do
      rm -rf "$work/data-$mode"
      pair "$mode"
      r=$(bench throughput "${A[@]}" --clients "$CLIENTS" --batch "$BATCH" --count "$COUNT" --label "batch-$mode-$round" | tail -1)
      sum[$mode]=$(awk "BEGIN{print ${sum[$mode]} + $(field "$r" notices_per_s)}")
      unpair
    done
  done
  ratio=$(awk "BEGIN{printf \"%.3f\", ${sum[on]}/${sum[noscrub]}}")
  log "scrub on/off (sum of two runs each): $ratio (target >= 0.95)"
  echo "{\"bench\":\"scrub on/off ratio\",\"batch\":$ratio}" >>"$results"
  "$bin/caseway-bench-log" --entries "$COUNT" 2>/dev/null >"$work/log.out" || true
  grep -v '^JSON ' "$work/log.out" | tee -a "$out/summary.txt"
  sed -n 's/^JSON //p' "$work/log.out" >>"$results"
fi

if [[ " $ONLY " == *" atrest "* ]]; then
  log ""; log "== atrest: throughput in the clear (on), with personal data sealed at rest (sealed), and sealed with a field-level sharing policy for the peer (private), alternated twice; $COUNT batched, $UNARY_COUNT unary each"
  declare -A sum=([on-batch]=0 [sealed-batch]=0 [private-batch]=0 [on-unary]=0 [sealed-unary]=0 [private-unary]=0)
  for round in 1 2; do
    for mode in on sealed private; do
      rm -rf "$work/data-$mode"
      pair "$mode"
      # PERF=1: the origin's CPU profile during the first batched run of each mode.
      perfpid=""
      if [ -n "${PERF:-}" ] && [ "$round" = 1 ]; then
        perf record -F 499 -g -o "$work/perf-$mode.data" -p "${pid[360102]}" >/dev/null 2>&1 &
        perfpid=$!
      fi
      r=$(bench throughput "${A[@]}" --clients "$CLIENTS" --batch "$BATCH" --count "$COUNT" --label "batch-$mode-$round" | tail -1)
      if [ -n "$perfpid" ]; then
        kill -INT "$perfpid"; wait "$perfpid" || true
        perf report -i "$work/perf-$mode.data" --stdio --no-children --percent-limit 0.5 \
          >"$out/profile-atrest-$mode-origin.txt" 2>/dev/null || true
      fi
      sum[$mode-batch]=$(awk "BEGIN{print ${sum[$mode-batch]} + $(field "$r" notices_per_s)}")
      r=$(bench throughput "${A[@]}" --clients "$UNARY_CLIENTS" --batch 1 --count "$UNARY_COUNT" --label "unary-$mode-$round" | tail -1)
      sum[$mode-unary]=$(awk "BEGIN{print ${sum[$mode-unary]} + $(field "$r" notices_per_s)}")
      unpair
    done
  done
  batch=$(awk "BEGIN{printf \"%.3f\", ${sum[sealed-batch]}/${sum[on-batch]}}")
  unary=$(awk "BEGIN{printf \"%.3f\", ${sum[sealed-unary]}/${sum[on-unary]}}")
  log "sealed at rest / in the clear (sum of two runs each): batch $batch, unary $unary (target >= 0.85)"
  echo "{\"bench\":\"sealed/clear ratio\",\"batch\":$batch,\"unary\":$unary}" >>"$results"
  batch=$(awk "BEGIN{printf \"%.3f\", ${sum[private-batch]}/${sum[on-batch]}}")
  unary=$(awk "BEGIN{printf \"%.3f\", ${sum[private-unary]}/${sum[on-unary]}}")
  log "sealed with a sharing policy / in the clear, no policy (sum of two runs each): batch $batch, unary $unary (target >= 0.85)"
  echo "{\"bench\":\"private/clear ratio\",\"batch\":$batch,\"unary\":$unary}" >>"$results"
fi

if [[ " $ONLY " == *" query "* ]]; then
  cases=${QUERY_CASES:-$((QUERY_N / 10))}
  log ""; log "== query: A publishes $QUERY_N notices to B over $cases cases (10 each); then A's office asks B (remote query: signed and logged on both sides) and reads case timelines"
  rm -rf "$work/data-on"
  QUERY_LIMIT=60000 pair on  # the latency part must not meet the rate limit
  bench throughput "${A[@]}" --clients "$CLIENTS" --batch 500 --count "$QUERY_N" --cases "$cases" --max-s 900 --label "query-load" >/dev/null
  log "B's store: $(du -m "$work/data-on/440305.db" | cut -f1) MiB; A's: $(du -m "$work/data-on/360102.db" | cut -f1) MiB"
  "$bin/caseway-bench-query" latency --a "127.0.0.1:${port[360102]}" --ca "$pki/ca.crt" \
    --a-cert "$pki/clients/360102-bench.crt" --a-key "$pki/clients/360102-bench.key" \
    --peer 440305 --cases "$cases" --count "${QUERY_COUNT:-2000}" >"$work/query.out" 2>&1 || true
  grep -v '^JSON ' "$work/query.out" | tee -a "$out/summary.txt"
  sed -n 's/^JSON //p' "$work/query.out" >>"$results"
  # The CLI's own timeline with the peer's view, process start included.
  t0=$(date +%s%N)
  "$bin/caseway" case bench-case-7 --peers --address "127.0.0.1:${port[360102]}" --ca "$pki/ca.crt" \
    --cert "$pki/clients/360102-bench.crt" --key "$pki/clients/360102-bench.key" >"$work/case.out" 2>&1 || true
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  log "caseway case bench-case-7 --peers: $ms ms ($(head -1 "$work/case.out"))"
  echo "{\"bench\":\"caseway case --peers\",\"notices_held\":$QUERY_N,\"ms\":$ms}" >>"$results"
  unpair
  # The rate limit under a flood: B at its default limit (120 a minute); node A floods, node C asks
  # once a second (within its own limit).
  bash "$root/deploy/pki.sh" node "$pki" 360111 >/dev/null
  bash "$root/deploy/pki.sh" directory "$pki" >/dev/null
  write_config 440305 on; start_node 440305 on
  "$bin/caseway-bench-query" flood --target "127.0.0.1:${port[440305]}" --ca "$pki/ca.crt" \
    --flood-cert "$pki/nodes/360102.crt" --flood-key "$pki/nodes/360102.key" --flood-as 360102 \
    --other-cert "$pki/nodes/360111.crt" --other-key "$pki/nodes/360111.key" --other-as 360111 \
    --cases "$cases" --seconds "${QUERY_FLOOD_SECONDS:-20}" --other-rate 1 --limit-per-minute 120 >"$work/flood.out" 2>&1 || true
  grep -v '^JSON ' "$work/flood.out" | tee -a "$out/summary.txt"
  sed -n 's/^JSON //p' "$work/flood.out" >>"$results"
  stop_node 440305
fi

if [[ " $ONLY " == *" latency "* ]]; then
  log ""; log "== latency: a fixed offered rate for ${LAT_SECONDS}s (unary calls, then a batch every 5 ms); publish -> delivered from B's store"
  rm -rf "$work/data-on"
  METRICS=1 pair on
  # LAT_RATES and LAT_MODES pick a part (e.g. LAT_RATES="5000 20000" LAT_MODES=batch).
  for mode in unary batch; do
    [[ " ${LAT_MODES:-unary batch} " == *" $mode "* ]] || continue
    for r in ${LAT_RATES:-1000 5000 20000}; do lat_run "$mode" "$r"; done
  done
  unpair
fi

if [[ " $ONLY " == *" catchup "* ]]; then
  log ""; log "== catch-up: B offline while $BACKLOG notices accumulate at A, then restarted"
  rm -rf "$work/data-on"
  pair on
  stop_node 440305
  bench throughput "${A[@]}" --clients "$CLIENTS" --batch 500 --count "$BACKLOG" --max-s 600 --label "backlog-build" --no-wait >/dev/null || true
  start_node 440305 on
  line=$(bench_cpu "catch-up" "origin=${pid[360102]} destination=${pid[440305]}" wait-caught-up "${A[@]}" --max-s 900 --label "catch-up $BACKLOG" | tail -1)
  log "peak RSS: A $(peak_rss_mb "${pid[360102]}") MiB, B $(peak_rss_mb "${pid[440305]}") MiB"
  echo "{\"bench\":\"catch-up memory\",\"backlog\":$BACKLOG,\"a_peak_rss_mb\":$(peak_rss_mb "${pid[360102]}"),\"b_peak_rss_mb\":$(peak_rss_mb "${pid[440305]}")}" >>"$results"
  unpair
fi

if [[ " $ONLY " == *" import "* ]]; then
  log ""; log "== bulk import: $IMPORT notices through 'caseway publish --batch 500 --jobs 4', from JSON lines and from binary records (--format binpb), each into a fresh pair"
  for format in json binpb; do
    rm -rf "$work/data-on"
    pair on
    flag=(); [ "$format" = binpb ] && flag=(--binpb)
    "$bin/caseway-bench" gen-jsonl --out "$work/import.$format" --count "$IMPORT" "${flag[@]}"
    start=$(date +%s.%N)
    "$bin/caseway" publish "$work/import.$format" --format "$format" --batch 500 --jobs 4 --progress --address "127.0.0.1:${port[360102]}" \
      --ca "$pki/ca.crt" --cert "$pki/clients/360102-bench.crt" --key "$pki/clients/360102-bench.key" >"$work/import.out" 2>"$work/import.err" || true
    # end to end, as the throughput part: until B holds every notice and A its receipts
    line=$(bench wait-caught-up "${A[@]}" --max-s 600 --label "import-$format-receipted" | tail -1)
    end=$(date +%s.%N)
    ok=$(grep -c '"status":"OK"' "$work/import.out" || true)
    ips=$(awk "BEGIN{printf \"%.0f\", $ok/($end-$start)}")
    log "import $format                        notices=$ok seconds=$(awk "BEGIN{printf \"%.1f\", $end-$start}") notices_per_s=$ips (receipted at A)"
    echo "{\"bench\":\"import\",\"format\":\"$format\",\"cores\":$(nproc),\"notices\":$ok,\"notices_per_s\":$ips}" >>"$results"
    rate[import-$format]=$ips
    rm -f "$work/import.$format"
    unpair
  done
fi

if [[ " $ONLY " == *" postgres "* ]]; then
  log ""; log "== postgres: $COUNT notices batched and $UNARY_COUNT unary, both nodes on SQLite and on PostgreSQL, alternated twice; then failover"
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  pgport=$((BASE_PORT + 20))
  pgdir=$(mktemp -d /tmp/caseway-bench-pg-XXXXXX)
  as_pg=()
  if [ "$(id -u)" = 0 ]; then chown nobody "$pgdir"; as_pg=(runuser -u nobody --); fi
  "${as_pg[@]}" "$pgbin/initdb" -D "$pgdir/data" -U caseway -A trust -E UTF8 --locale=C --no-instructions >/dev/null
  # PostgreSQL's defaults, but for a larger WAL between checkpoints (as a production server has).
  "${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/postgres.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $pgport -k $pgdir -c max_wal_size=4GB -c shared_buffers=512MB" start >/dev/null
  pg_stop=("${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -m fast -w stop)
  psql_pg() { psql -X -q -h 127.0.0.1 -p "$pgport" -U caseway -d postgres "$@"; }
  log "PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pgport (fsync and synchronous_commit on, as shipped)"
  pg_round=0
  for round in 1 2; do
    for mode in on pg; do
      pg_round=$((pg_round + 1))
      for j in 360102 440305; do psql_pg -c "CREATE DATABASE bench_${j}_$pg_round"; done
      pair "$mode"
      r=$(bench throughput "${A[@]}" --clients "$CLIENTS" --batch "$BATCH" --count "$COUNT" --label "store-$mode-batch-$round" | tail -1)
      rate[store-$mode-batch-$round]=$(field "$r" notices_per_s)
      r=$(bench throughput "${A[@]}" --clients "$UNARY_CLIENTS" --batch 1 --count "$UNARY_COUNT" --label "store-$mode-unary-$round" | tail -1)
      rate[store-$mode-unary-$round]=$(field "$r" notices_per_s)
      unpair
    done
  done
  pg_ratio() { awk "BEGIN{printf \"%.2f\", (${rate[store-pg-$1-1]}+${rate[store-pg-$1-2]})/(${rate[store-on-$1-1]}+${rate[store-on-$1-2]})}"; }
  log "PostgreSQL / SQLite, end to end: batched $(pg_ratio batch), unary $(pg_ratio unary)"
  echo "{\"bench\":\"postgres/sqlite\",\"batch\":$(pg_ratio batch),\"unary\":$(pg_ratio unary)}" >>"$results"

  # Failover: 360102 as nodes a (its usual port) and b (BASE_PORT + 2) on one database; 440305
  # on a new SQLite file (its cursor starts again with this new origin store).
  rm -rf "$work/data-on"
  pg_round=$((pg_round + 1))
  for j in 360102 440305; do psql_pg -c "CREATE DATABASE bench_${j}_$pg_round"; done
  LEASE_TTL=${LEASE_TTL:-6s} write_config 360102 pg
  write_config 440305 on
  sed -i "s/address: 127.0.0.1:${port[360102]}}/address: \"127.0.0.1:${port[360102]},127.0.0.1:$((BASE_PORT + 2))\"}/" "$work/440305-on.yaml"
  sed -e "s/127.0.0.1:${port[360102]}/127.0.0.1:$((BASE_PORT + 2))/" -e "s|$work/360102.port|$work/360102-b.port|" \
    "$work/360102-pg.yaml" >"$work/360102-pgb.yaml"
  cat >"$work/client-pair.yaml" <<YAML
address: 127.0.0.1:${port[360102]},127.0.0.1:$((BASE_PORT + 2))
ca_file: $pki/ca.crt
cert_file: $pki/clients/360102-bench.crt
key_file: $pki/clients/360102-bench.key
YAML
  for how in kill pause; do
    rm -f "$work/360102-b.port"
    start_node 360102 pg
    start_node 440305 on
    "$bin/caseway-node" --config "$work/360102-pgb.yaml" >>"$out/node-360102-b.log" 2>&1 &
    standby=$!
    for f in before after; do  # 20 notices each, ids of their own
      "$bin/caseway-bench" gen-jsonl --out "$work/$how-$f.jsonl" --count 20 >/dev/null
    done
    "$bin/caseway" publish "$work/$how-before.jsonl" --client-config "$work/client-pair.yaml" >/dev/null
    t0=$(date +%s%N)
    if [ $how = kill ]; then kill -9 "${pid[360102]}"; else kill -STOP "${pid[360102]}"; fi
    for _ in $(seq 1 600); do [ -f "$work/360102-b.port" ] && break; sleep 0.02; done
    t1=$(date +%s%N)
    "$bin/caseway" publish "$work/$how-after.jsonl" --client-config "$work/client-pair.yaml" >/dev/null
    t2=$(date +%s%N)
    takeover=$(( (t1 - t0) / 1000000 )); served=$(( (t2 - t0) / 1000000 ))
    label="killed (kill -9; the standby sees the dead process on this host)"
    [ $how = pause ] && label="paused (SIGSTOP: as a machine that stops answering; lease_ttl ${LEASE_TTL:-6s})"
    log "failover, active node $label: the standby listened after ${takeover} ms; the next 20 notices acknowledged after ${served} ms"
    echo "{\"bench\":\"failover\",\"how\":\"$how\",\"lease_ttl\":\"${LEASE_TTL:-6s}\",\"takeover_ms\":$takeover,\"first_publish_ms\":$served}" >>"$results"
    [ $how = pause ] && kill -9 "${pid[360102]}" 2>/dev/null
    wait "${pid[360102]}" 2>/dev/null || true
    pid[360102]=""
    kill -TERM "$standby"; wait "$standby" 2>/dev/null || true
    stop_node 440305
    psql_pg -d "bench_360102_$pg_round" -c "TRUNCATE writer_lease" >/dev/null 2>&1 || true
  done
fi

if [[ " $ONLY " == *" sizes "* ]]; then
  log ""; log "== sizes: batched throughput ($CLIENTS clients x $BATCH, or fewer to keep a request under 1 MiB) by notice size, ${SIZES_MB} MB of notices each (at most COUNT), every guarantee on"
  largest=$("$bin/caseway-bench" throughput "${A[@]}" --size 100000000 --count 0 2>&1 | sed -n 's/.*at most \([0-9]*\) bytes.*/\1/p' || true)
  for size in 256 1024 16384 "${largest:-24000}"; do
    n=$(awk "BEGIN{c=int($SIZES_MB*1000000/$size); print (c < $COUNT ? c : $COUNT)}")
    # requests stay under 1 MiB: larger ones are handled one at a time (docs/limits.md)
    b=$(awk "BEGIN{c=int(1000000/$size); print (c < $BATCH ? c : $BATCH)}")
    rm -rf "$work/data-on"
    pair on
    bench throughput "${A[@]}" --clients "$CLIENTS" --batch "$b" --count "$n" --size "$size" --max-s 600 --label "size-$size" >/dev/null
    unpair
  done
fi

if [[ " $ONLY " == *" growth "* ]]; then
  for ids in $GROWTH_IDS; do
    # ordered: ids in publishing order ("<run>-<i>"), so every index keyed by a notice id grows at
    # its right edge; uuid4: random UUIDs, each insert on a random page of those indexes; uuid7:
    # time-ordered UUIDs (caseway-bench throughput --ids).
    suffix=""; [ "$ids" = ordered ] || suffix="-$ids"
    [ "$GROWTH_CASES" = 0 ] || suffix="$suffix-cases"
    log ""; log "== growth: $GROWTH_N notices of 1 KiB on one channel pair ($CLIENTS clients x $BATCH), notice ids $ids, $([ "$GROWTH_CASES" = 0 ] && echo "one case" || echo "$GROWTH_CASES cases"), the rate per $GROWTH_INTERVAL; then bytes on disk"
    rm -rf "$work/data-on"
    pair on
    bench throughput "${A[@]}" --clients "$CLIENTS" --batch "$BATCH" --count "$GROWTH_N" --max-s 7200 \
      --ids "$ids" --cases "$GROWTH_CASES" --interval "$GROWTH_INTERVAL" --series "$out/growth-series$suffix.txt" --label "growth-$GROWTH_N$suffix" >/dev/null
    # Bytes per notice with the nodes running (the WAL as the background checkpoints left it),
    # then after a clean stop (the WAL checkpointed into the database and removed).
    disk() {  # disk J WHEN
      local j=$1 when=$2 role=origin f bytes=0
      [ "$j" = 440305 ] && role=destination
      for f in "$work/data-on/$j.db" "$work/data-on/$j.db-wal"; do
        [ -f "$f" ] && bytes=$((bytes + $(stat -c %s "$f")))
      done
      log "disk $role $when ($ids ids): $bytes bytes, $(awk "BEGIN{printf \"%.0f\", $bytes/$GROWTH_N}") per notice"
      echo "{\"bench\":\"growth disk\",\"ids\":\"$ids\",\"cases\":$GROWTH_CASES,\"role\":\"$role\",\"when\":\"$when\",\"notices\":$GROWTH_N,\"bytes\":$bytes,\"bytes_per_notice\":$(awk "BEGIN{printf \"%.0f\", $bytes/$GROWTH_N}")}" >>"$results"
    }
    for j in 360102 440305; do disk "$j" running; done
    unpair
    for j in 360102 440305; do disk "$j" stopped; done
    rm -rf "$work/data-on"
  done
fi


if [[ " $ONLY " == *" fanout "* ]]; then
  hub=360000  # Jiangxi's provincial node; its subscribers are county-level nodes
  log ""; log "== fan-out: hub $hub serving $FANOUT_STREAMS subscriptions (one mTLS connection and node identity each), $FANOUT_PER_STREAM notices per channel"
  bash "$root/deploy/pki.sh" node "$pki" "$hub" >/dev/null
  bash "$root/deploy/pki.sh" client "$pki" "$hub" bench >/dev/null
  "$bin/caseway-bench" fanout-pki --ca-cert "$pki/ca.crt" --ca-key "$pki/ca.key" --federation bench.caseway \
    --regions "$root/bench/data/regions/areas.csv" --hub "$hub" --directory "$pki/directory.yaml" \
    --out "$work/fanout" --count "$FANOUT_STREAMS" 2>&1 | tee -a "$out/summary.txt"
  port[$hub]=$((BASE_PORT + 2))
  for variant in ${FANOUT_VARIANTS:-live backlog}; do
    rm -rf "$work/data-fanout"
    {
      echo "federation: bench.caseway"
      echo "jurisdiction: \"$hub\""
      echo "listen_address: 127.0.0.1:${port[$hub]}"
      echo "port_file: $work/$hub.port"
      echo "tls: {ca_file: $pki/ca.crt, cert_file: $pki/nodes/$hub.crt, key_file: $pki/nodes/$hub.key}"
      echo "storage: {path: $work/data-fanout/$hub.db}"
      echo "limits: {max_batch_notices: 1000, max_message_bytes: 16777216, peer_queries_per_minute: ${QUERY_LIMIT:-120}}"
      echo "exchange_log: {signing_key_file: $pki/nodes/$hub.sign.key, directory_file: $work/fanout/directory.yaml}"
      echo "log: {level: warn}"
      cat "$work/fanout/peers.yaml"
    } >"$work/$hub-fanout.yaml"
    start_node "$hub" fanout
    flag=(); [ "$variant" = backlog ] && flag=(--publish-first)
    bench_cpu "fanout-$variant" "hub=${pid[$hub]}" fanout --hub-address "127.0.0.1:${port[$hub]}" --hub "$hub" --ca "$pki/ca.crt" \
      --publisher-cert "$pki/clients/$hub-bench.crt" --publisher-key "$pki/clients/$hub-bench.key" \
      --pki "$work/fanout" --hub-pid "${pid[$hub]}" --streams "$FANOUT_STREAMS" \
      --per-stream "$FANOUT_PER_STREAM" --max-s 600 --label "$variant" "${flag[@]}" >/dev/null
    stop_node "$hub"
  done
fi

if [[ " $ONLY " == *" flood "* ]]; then
  log ""; log "== flood: a client's unary publish p99 at ${FLOOD_RATE:-200}/s and the node's memory while each flood runs (${FLOOD_SECONDS:-10} s each; default limits)"
  (cd "$pki" && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out nobody.key 2>/dev/null &&
    openssl req -new -key nobody.key -subj /CN=nobody -out nobody.csr 2>/dev/null &&
    openssl x509 -req -in nobody.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 \
      -out nobody.crt -extfile <(printf 'extendedKeyUsage=clientAuth') 2>/dev/null)
  bash "$root/deploy/pki.sh" client "$pki" 360102 flood >/dev/null
  rm -rf "$work/data-on"
  for j in 360102 440305; do
    write_config "$j" on
    sed -i '/^limits:/d' "$work/$j-on.yaml"  # the default 4 MiB message limit
    start_node "$j" on
  done
  "$bin/caseway-bench-flood" --address "127.0.0.1:${port[360102]}" --ca "$pki/ca.crt" \
    --client-cert "$pki/clients/360102-bench.crt" --client-key "$pki/clients/360102-bench.key" \
    --peer-cert "$pki/nodes/440305.crt" --peer-key "$pki/nodes/440305.key" \
    --nobody-cert "$pki/nobody.crt" --nobody-key "$pki/nobody.key" --pid "${pid[360102]}" \
    --flood-cert "$pki/clients/360102-flood.crt" --flood-key "$pki/clients/360102-flood.key" \
    --seconds "${FLOOD_SECONDS:-10}" --rate "${FLOOD_RATE:-200}" ${FLOODS:+--only "$FLOODS"} \
    >"$work/flood.out" 2>&1 || true
  grep -v '^JSON ' "$work/flood.out" | tee -a "$out/summary.txt"
  sed -n 's/^JSON //p' "$work/flood.out" >>"$results"
  log "node 360102 peak RSS over the floods: $(peak_rss_mb "${pid[360102]}") MiB"
  unpair
fi

if [[ " $ONLY " == *" report "* ]]; then
  # A federation of REPORT_NODES real nodes (county codes of Jiangxi and Guangdong from the
  # bundled table), each peered with the next two around a ring; REPORT_N notices published
  # (each node to both of its next two), receipted and checkpointed; then one coordinator's
  # `caseway audit report` over every node for the current period: its wall time and peak memory
  # (targets: 60 s, 1 GiB).
  RN=${REPORT_NODES:-30}; RTOTAL=${REPORT_N:-1000000}
  log ""; log "== report: $RN nodes, $RTOTAL notices of 1 KiB (ring: each node to its next two), then caseway audit report over all"
  mapfile -t codes < <(awk -F, 'NR > 1 && ($4 == 36 || $4 == 44) {print $1}' "$root/bench/data/regions/areas.csv" | head -n "$RN")
  for j in "${codes[@]}"; do  # 360102 has its certificates already
    [ -f "$pki/nodes/$j.crt" ] || bash "$root/deploy/pki.sh" node "$pki" "$j" >/dev/null
    [ -f "$pki/clients/$j-bench.crt" ] || bash "$root/deploy/pki.sh" client "$pki" "$j" bench >/dev/null
  done
  bash "$root/deploy/pki.sh" directory "$pki" >/dev/null
  bash "$root/deploy/pki.sh" auditor "$pki" coordinator >/dev/null 2>&1 || true
  rport() { echo $((BASE_PORT + 100 + $1)); }
  rpid=()
  for i in "${!codes[@]}"; do
    j=${codes[$i]}
    {
      echo "federation: bench.caseway"
      echo "jurisdiction: \"$j\""
      echo "listen_address: 127.0.0.1:$(rport "$i")"
      echo "port_file: $work/r-$j.port"
      echo "tls: {ca_file: $pki/ca.crt, cert_file: $pki/nodes/$j.crt, key_file: $pki/nodes/$j.key}"
      echo "storage: {path: $work/data-report/$j.db}"
      echo "peers:"
      for d in 1 2 $((RN - 1)) $((RN - 2)); do
        k=$(( (i + d) % RN )); echo "  - {jurisdiction: \"${codes[$k]}\", address: 127.0.0.1:$(rport "$k")}"
      done
      echo "limits: {max_batch_notices: 1000, max_message_bytes: 16777216, peer_queries_per_minute: ${QUERY_LIMIT:-120}}"
      echo "exchange_log: {signing_key_file: $pki/nodes/$j.sign.key, directory_file: $pki/directory.yaml}"
      echo "log: {level: warn}"
    } >"$work/r-$j.yaml"
    "$bin/caseway-node" --config "$work/r-$j.yaml" >>"$out/node-report-$j.log" 2>&1 &
    rpid+=($!)
  done
  for j in "${codes[@]}"; do
    for _ in $(seq 1 400); do [ -f "$work/r-$j.port" ] && break; sleep 0.05; done
  done
  per=$(( RTOTAL / (2 * RN) ))
  t0=$(date +%s.%N)
  for i in "${!codes[@]}"; do
    j=${codes[$i]}
    tp=()
    for d in 1 2; do
      k=$(( (i + d) % RN ))
      "$bin/caseway-bench" throughput --a "127.0.0.1:$(rport "$i")" --ca "$pki/ca.crt" \
        --a-cert "$pki/clients/$j-bench.crt" --a-key "$pki/clients/$j-bench.key" \
        --origin "$j" --dest "${codes[$k]}" --clients 2 --batch 1000 --count "$per" \
        --label "report-$j-${codes[$k]}" >"$work/r-$j-$d.out" 2>&1 &
      tp+=($!)
    done
    wait "${tp[@]}"  # one node's two channels at a time (not `wait`: the nodes are children too)
  done
  t1=$(date +%s.%N)
  log "published and receipted $((per * 2 * RN)) notices in $(awk "BEGIN{printf \"%.0f\", $t1 - $t0}") s"
  sleep 10  # checkpoints (1 s) and cosignatures (5 s) cover the last batches
  addrs=(); for i in "${!codes[@]}"; do addrs+=("127.0.0.1:$(rport "$i")"); done
  period=$(date -u -d "+8 hours" +%Y-%m)  # CST, without needing tzdata
  /usr/bin/time -f "%e %M" -o "$work/report.time" "$bin/caseway" audit report "${addrs[@]}" \
    --period "$period" --format json --skip-notice-bytes --directory "$pki/directory.yaml" \
    --ca "$pki/ca.crt" --cert "$pki/auditors/coordinator.crt" --key "$pki/auditors/coordinator.key" \
    --state-dir "$work/audit-state" --bundle-dir "$work/audit-bundles" >"$work/report.json" 2>"$work/report.err" || true
  read -r secs kb <"$work/report.time" || true
  counted=$(python3 -c 'import json,sys
r=json.load(open(sys.argv[1]))
print(sum(int(t.get("denominator",0)) for t in r.get("totals",[]) if t["indicator"]=="notification_timeliness"))' "$work/report.json" 2>/dev/null || echo "?")
  log "caseway audit report over $RN nodes: ${secs:-?} s, peak RSS $(( ${kb:-0} / 1024 )) MiB, $counted notices counted (targets: 60 s, 1024 MiB)"
  [ -s "$work/report.err" ] && head -5 "$work/report.err" | tee -a "$out/summary.txt"
  echo "{\"bench\":\"report\",\"nodes\":$RN,\"notices\":$((per * 2 * RN)),\"seconds\":${secs:-0},\"peak_rss_mib\":$(( ${kb:-0} / 1024 )),\"counted\":\"$counted\"}" >>"$results"
  for p in "${rpid[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${rpid[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work/data-report"
fi

if [[ " $ONLY " == *" peers "* ]]; then
  peers=$(cd "$root/bench/peers" 2>/dev/null && pwd || true)
  if [ -z "$peers" ]; then
    log "peers: bench/peers not found; skipped"
  else
    log ""; log "== peers (same machine, same run): N=$PEER_N 1 KiB messages, mutual TLS"
    N=$PEER_N RUNS=1 VARIANTS=tls-async256 bash "$peers/nats_mirror.sh" >"$out/nats_mirror.txt" 2>&1 || true
    N=$PEER_N RUNS=1 VARIANTS=quorum-tls-win256 bash "$peers/rabbitmq_shovel.sh" >"$out/rabbitmq_shovel.txt" 2>&1 || true
    nats=$(grep -o 'msgs_per_s=[0-9.]*' "$out/nats_mirror.txt" | tail -1 | cut -d= -f2)
    rmq=$(grep -o 'msgs_per_s=[0-9.]*' "$out/rabbitmq_shovel.txt" | tail -1 | cut -d= -f2)
    log "NATS JetStream mirror, tls-async256 (no fsync before ack): ${nats:-?} msgs/s"
    log "RabbitMQ shovel, quorum queues, tls-win256 (durable):      ${rmq:-?} msgs/s"
    if [ -n "${rate[batch-on]:-}" ] && [ -n "$nats" ] && [ -n "$rmq" ]; then
      log "Caseway batch (log on) / NATS mirror: $(awk "BEGIN{printf \"%.2f\", ${rate[batch-on]}/$nats}")   / RabbitMQ shovel quorum: $(awk "BEGIN{printf \"%.2f\", ${rate[batch-on]}/$rmq}")"
      echo "{\"bench\":\"peer ratios\",\"caseway_batch_log_on\":${rate[batch-on]},\"nats_mirror\":$nats,\"rabbitmq_shovel_quorum\":$rmq,\"vs_nats\":$(awk "BEGIN{printf \"%.3f\", ${rate[batch-on]}/$nats}"),\"vs_rabbitmq\":$(awk "BEGIN{printf \"%.3f\", ${rate[batch-on]}/$rmq}")}" >>"$results"
    fi
  fi
fi
if [ "${rate[import-json]:-}" ] && [ "${rate[import-binpb]:-}" ]; then
  log "import binpb/json: $(awk "BEGIN{printf \"%.2f\", ${rate[import-binpb]}/${rate[import-json]}}")$([ -n "${rate[batch-on]:-}" ] && echo ", binpb/batched: $(awk "BEGIN{printf \"%.2f\", ${rate[import-binpb]}/${rate[batch-on]}}")")"
fi
bash "$here/plot.sh" "$out" 2>>"$out/summary.txt" || log "plots: not drawn (see above)"
log ""; log "results: $out"
