#!/usr/bin/env bash
# plot.sh: draws a benchmark run's figures as SVG beside its results (gnuplot; bench/run.sh calls
# it at the end, and it can be run again on any kept run).
#
#   bash bench/plot.sh bench/results/<UTC>
#
#   growth.svg   end-to-end notices/s over each GROWTH_INTERVAL notices of the growth run (a line
#                per GROWTH_IDS: ids in publishing order, random or time-ordered UUIDs)
#   latency.svg  publish -> delivered distributions of the latency run (one line per rate and
#                mode: the share of notices delivered within x ms)
# A figure whose data the run did not produce is skipped.
set -euo pipefail
dir=${1:?usage: plot.sh RESULTS_DIR}
command -v gnuplot >/dev/null || { echo "plot.sh: gnuplot not installed (deploy/install-deps.sh --bench)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if grep -q '"bench":"growth growth' "$dir/results.jsonl" 2>/dev/null; then
  # One line per growth run (one per GROWTH_IDS: ids in publishing order, random UUIDs,
  # time-ordered UUIDs).
  sed -n 's/.*"bench":"growth \(growth[^"]*\)".*"at":\([0-9]*\),"notices_per_s":\([0-9.]*\).*/\1 \2 \3/p' \
    "$dir/results.jsonl" >"$tmp/growth.all"
  plots=()
  for label in $(cut -d' ' -f1 "$tmp/growth.all" | sort -u); do
    awk -v l="$label" '$1 == l {print $2, $3}' "$tmp/growth.all" >"$tmp/$label.dat"
    case $label in
      *-uuid4*) ids="random UUIDs (version 4)" ;;
      *-uuid7*) ids="time-ordered UUIDs (version 7)" ;;
      *) ids="ids in publishing order" ;;
    esac
    case $label in *-cases) ids="$ids, many cases" ;; esac
    plots+=("\"$tmp/$label.dat\" using (\$1/1e6):2 with lines lw 2 title \"$ids\"")
  done
  gnuplot <<GP
set terminal svg size 900,450 dynamic font "sans,12" background "white"
set output "$dir/growth.svg"
set title "Growth: end-to-end throughput as one channel pair fills (every guarantee on)"
set xlabel "notices receipted (millions)"
set ylabel "notices/s over the last interval"
set yrange [0:*]
set grid
set key below
plot $(IFS=,; echo "${plots[*]}")
GP
  echo "plot.sh: $dir/growth.svg" >&2
fi

files=()
for mode in unary batch; do
  for r in 1000 5000 20000; do
    f="$dir/latency-$mode-$r.txt"
    [ -s "$f" ] && files+=("$f")
  done
done
if [ ${#files[@]} -gt 0 ]; then
  plots=()
  for f in "${files[@]}"; do
    name=$(basename "$f" .txt); name=${name#latency-}
    mode=${name%-*}; r=${name##*-}
    label="$((r / 1000))k/s $([ "$mode" = batch ] && echo 'batch every 5 ms' || echo unary)"
    plots+=("\"$f\" using 2:1 with lines lw 2 title \"$label\"")
  done
  joined=$(printf '%s, ' "${plots[@]}")
  gnuplot <<GP
set terminal svg size 900,500 dynamic font "sans,12" background "white"
set output "$dir/latency.svg"
set title "Publish -> delivered from the destination's store (open loop)"
set xlabel "milliseconds (log scale)"
set ylabel "share of notices delivered within"
set logscale x
set yrange [0:1]
set ytics 0.1
set grid
set key bottom right
plot ${joined%, }
GP
  echo "plot.sh: $dir/latency.svg" >&2
fi
