#!/usr/bin/env bash
# kvstream perf am_bw against tag_bw on loopback (the data plane's choice between UCX active
# messages and tagged messages), alternating them ROUNDS times per (transport, size) and
# printing each one's median MB/s (MiB/s, as ucx_perftest).
#   usage: tools/bench/am_vs_tag.sh KVSTREAM_BINARY [ROUNDS] [WINDOW]
set -euo pipefail
kvstream=${1:?usage: am_vs_tag.sh KVSTREAM_BINARY [ROUNDS] [WINDOW]}
rounds=${2:-5}
window=${3:-4}
export KVSTREAM_SECRET=${KVSTREAM_SECRET:-am-vs-tag: a local secret, loopback only}
port=$((20000 + RANDOM % 20000))

once() {  # once TLS TEST SIZE N: one run's MB/s
  UCX_TLS=$1 "$kvstream" perf -p "$port" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do
    ss -ltn 2>/dev/null | grep -q ":$port " && break
    sleep 0.05
  done
  UCX_TLS=$1 "$kvstream" perf 127.0.0.1 -p "$port" -t "$2" -s "$3" -n "$4" -w 50 -O "$window" -f |
    awk '/^Final:/ {print $6}'
  wait "$pid" 2>/dev/null || true
  port=$((port + 1))
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

printf '%-10s %10s %12s %12s %8s\n' transport size tag_bw am_bw am/tag
for tls in sm,self tcp; do
  for size in 1048576 8388608; do
    if [ "$size" -le 1048576 ]; then n=2000; else n=300; fi
    tags=() ams=()
    for _ in $(seq "$rounds"); do
      tags+=("$(once "$tls" tag_bw "$size" "$n")")
      ams+=("$(once "$tls" am_bw "$size" "$n")")
    done
    t=$(printf '%s\n' "${tags[@]}" | median)
    a=$(printf '%s\n' "${ams[@]}" | median)
    printf '%-10s %10s %12.2f %12.2f %8.3f\n' "$tls" "$size" "$t" "$a" \
      "$(awk -v a="$a" -v b="$t" 'BEGIN {print a / b}')"
  done
done
