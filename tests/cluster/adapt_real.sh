#!/usr/bin/env bash
# `kvstream bench adapt --real` on a tc-shaped veth link between two network namespaces: a short
# sweep completes with every policy's row, the planner meets what it should, and nothing the
# harness made is left behind, also when it is interrupted mid-run. Exits 77 (skipped) where
# network namespaces cannot be made (not root, a container without CAP_NET_ADMIN).
set -uo pipefail
kvstream=$1
out=$(mktemp -d /tmp/kvstream-cluster-XXXXXX)
trap 'rm -rf "$out"' EXIT

leftovers() { ip netns list 2>/dev/null | grep -c "^kvs-bench-$1-" ; }

"$kvstream" bench adapt --real --contexts 4 --traces const:1,step:5:0.5:0.04 \
  --deadlines 0.3 --policies planner,cachegen,L0,L5,fp16,int8,recompute \
  --out "$out/run" >"$out/run.out" 2>"$out/run.err" &
pid=$!
wait $pid
rc=$?
if ((rc == 77)); then
  cat "$out/run.err" >&2
  exit 77
fi
if ((rc != 0)); then
  echo "FAIL: bench adapt --real exited with $rc" >&2
  cat "$out/run.err" >&2
  exit 1
fi
rows=$(($(wc -l <"$out/run/results_real.csv") - 1))
if ((rows != 14)); then
  echo "FAIL: $rows result rows, want 2 traces x 7 policies" >&2
  cat "$out/run/results_real.csv" >&2
  exit 1
fi
# At 1 Gbit/s and 0.3 s, fp16 cannot make it (50 MB), the smallest level can, and so must the
# planner.
row() { grep "^real,$1,.*,$2,[01]," "$out/run/results_real.csv"; }
met() { row "$1" "$2" | cut -d, -f8; }
if [[ $(met const:1 fp16) != 0 || $(met const:1 L5) != 1 || $(met const:1 planner) != 1 ]]; then
  echo "FAIL: at 1 Gbit/s, 0.3 s: fp16 met=$(met const:1 fp16) L5=$(met const:1 L5)" \
    "planner=$(met const:1 planner)" >&2
  cat "$out/run.out" >&2
  exit 1
fi
for f in load_time_real_0.3s.svg quality_real_0.3s.svg decisions_real.jsonl summary_real.txt; do
  [[ -s $out/run/$f ]] || { echo "FAIL: no $f" >&2; exit 1; }
done
if (($(leftovers $pid) != 0)); then
  echo "FAIL: namespaces left behind: $(ip netns list)" >&2
  exit 1
fi

# Interrupted while a fetch runs on the shaped link: it stops, and removes what it made.
"$kvstream" bench adapt --real --contexts 2 --traces const:0.2 --deadlines 5 \
  --policies fp16,L0,L1,L2 --out "$out/stop" >"$out/stop.out" 2>"$out/stop.err" &
pid=$!
for _ in $(seq 1 300); do
  (($(leftovers $pid) == 2)) && break
  sleep 0.1
done
sleep 1
kill -INT $pid
wait $pid
rc=$?
if ((rc == 0)); then
  echo "FAIL: an interrupted bench exited 0" >&2
  exit 1
fi
if (($(leftovers $pid) != 0)); then
  echo "FAIL: an interrupted bench left namespaces: $(ip netns list)" >&2
  exit 1
fi
echo "ok: real sweep of 14 runs; interrupted bench exited $rc and left nothing"
