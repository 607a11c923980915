#!/usr/bin/env bash
# Two codec_bench binaries (a baseline and a change) against each other on this machine:
# alternates them ROUNDS times over the benchmarks FILTER selects and prints, per benchmark,
# the median bytes per second of each and the ratio of the medians. On a shared, noisy machine a
# single run of each says little; alternation gives both the same noise.
#   usage: tools/bench/ab_codec_bench.sh BASELINE_BENCH CHANGED_BENCH [FILTER] [ROUNDS]
# e.g. build the baseline commit's tests/bench/codec_bench and copy it aside, then
#   tools/bench/ab_codec_bench.sh /tmp/codec_bench.base build/tests/bench/codec_bench 'BM_Decode/' 10
set -euo pipefail
base=${1:?usage: ab_codec_bench.sh BASELINE_BENCH CHANGED_BENCH [FILTER] [ROUNDS]}
changed=${2:?usage: ab_codec_bench.sh BASELINE_BENCH CHANGED_BENCH [FILTER] [ROUNDS]}
filter=${3:-BM_Decode/}
rounds=${4:-10}

# One run of BINARY: "NAME BYTES_PER_SECOND" per benchmark, in MB/s.
run() {
  "$1" --benchmark_filter="$filter" --benchmark_min_time=0.2 --benchmark_format=csv 2>/dev/null |
    python3 -c '
import csv, sys
rows = [l for l in sys.stdin if l.startswith("\"BM_") or l.startswith("BM_") or l.startswith("name,")]
for r in csv.DictReader(rows):
    if r.get("bytes_per_second"):
        print(r["name"], float(r["bytes_per_second"]) / 1e6)'
}

for _ in $(seq "$rounds"); do
  run "$base" | sed 's/^/base /'
  run "$changed" | sed 's/^/changed /'
done | python3 -c '
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in sys.stdin:
    which, name, mbps = line.split()
    runs[(name, which)].append(float(mbps))
print("%-28s %10s %13s %6s  (medians of %s alternating runs)"
      % ("benchmark", "base MB/s", "changed MB/s", "ratio", sys.argv[1]))
for name in sorted({n for n, _ in runs}):
    b, c = statistics.median(runs[(name, "base")]), statistics.median(runs[(name, "changed")])
    print("%-28s %10.1f %13.1f %6.3f" % (name, b, c, c / b))' "$rounds"
