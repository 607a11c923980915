#!/usr/bin/env bash
# kvstream perf kv_stream_bw against ucx_perftest -t tag_bw on loopback, alternating the two
# tools ROUNDS times per (transport, size) so that both see the same machine, and printing the
# median of each and the median of the per-round ratios. ucx_perftest runs at the stream's
# actual mean chunk size, which kvstream perf prints.
#   usage: tools/bench/perf_compare.sh KVSTREAM_BINARY [ROUNDS] [extra kvstream perf options]
# Needs ucx_perftest (Debian: ucx-utils) and KVSTREAM_SECRET (or a default for this local run).
# PERF_TLS and PERF_SIZES pick the transports and sizes, PERF_WINDOW the window (-O, 4).
set -euo pipefail
kvstream=${1:?usage: perf_compare.sh KVSTREAM_BINARY [ROUNDS] [kvstream perf options]}
rounds=${2:-5}
window=${PERF_WINDOW:-4}
shift $(( $# >= 2 ? 2 : 1 ))
extra=("$@")
export KVSTREAM_SECRET=${KVSTREAM_SECRET:-perf-compare: a local secret, loopback only}
port=$((20000 + RANDOM % 20000))

# run_pair SERVER_CMD CLIENT_CMD: starts the server, waits for its port, runs the client.
run_pair() {
  local server=$1 client=$2
  bash -c "$server" >/dev/null 2>&1 &
  local pid=$!
  if command -v ss >/dev/null; then
    for _ in $(seq 100); do
      ss -ltn 2>/dev/null | grep -q ":$port " && break
      sleep 0.05
    done
  else
    sleep 1  # no ss here: give the server time to build its stream and listen
  fi
  bash -c "$client" 2>&1 || true
  # A client that failed before it connected leaves the server waiting for one.
  for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  port=$((port + 1))
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

printf '%-10s %10s %14s %14s %9s %9s\n' transport size tag_bw_MB/s kv_MB/s ratio med_ratio
for tls in ${PERF_TLS:-sm,self tcp}; do
  for size in ${PERF_SIZES:-1048576 8388608}; do
    if [ "$size" -le 1048576 ]; then n=2000 w=200; elif [ "$size" -le 8388608 ]; then n=300 w=30; else n=100 w=10; fi
    tags=() kvs=() ratios=()
    for _ in $(seq "$rounds"); do
      out=$(run_pair "UCX_TLS=$tls '$kvstream' perf -p $port" \
        "UCX_TLS=$tls '$kvstream' perf 127.0.0.1 -p $port -t kv_stream_bw -s $size -n $n -w $w -O $window -f ${extra[*]:-}")
      kv=$(awk '/^Final:/ {print $6}' <<<"$out")
      mean=$(sed -n 's/.* at \([0-9]*\) bytes.*/\1/p' <<<"$out")
      [ -n "$kv" ] && [ -n "$mean" ] || { echo "kvstream perf failed: $out" >&2; exit 1; }
      out=$(run_pair "UCX_TLS=$tls ucx_perftest -p $port" \
        "UCX_TLS=$tls ucx_perftest 127.0.0.1 -p $port -t tag_bw -s $mean -n $n -w $w -O $window")
      tag=$(awk '/^Final:/ {print $6}' <<<"$out")
      [ -n "$tag" ] || { echo "ucx_perftest failed: $out" >&2; exit 1; }
      tags+=("$tag") kvs+=("$kv") ratios+=("$(awk -v a="$kv" -v b="$tag" 'BEGIN {print a / b}')")
    done
    t=$(printf '%s\n' "${tags[@]}" | median)
    k=$(printf '%s\n' "${kvs[@]}" | median)
    r=$(printf '%s\n' "${ratios[@]}" | median)
    printf '%-10s %10s %14.2f %14.2f %9.3f %9.3f\n' "$tls" "$size" "$t" "$k" \
      "$(awk -v a="$k" -v b="$t" 'BEGIN {print a / b}')" "$r"
  done
done
