#!/usr/bin/env bash
# Cross-checks `kvstream model score` against the independent numpy reference on real
# contexts: pooled perplexities must agree to float rounding (relative difference < 1e-4;
# the issue's bar is 1e-3).
# usage: crosscheck_ppl.sh KVSTREAM PYTHON DEFAULT_MODELS_DIR MODEL_FILE TOKENS CTX LIMIT
# MODEL_FILE is looked up in $KVSTREAM_MODELS (else DEFAULT_MODELS_DIR); TOKENS is a file in the
# data folder beside it (../data), or `generate` to sample LIMIT contexts with kvstream.
set -euo pipefail
kvstream=$1 python=$2 models=${KVSTREAM_MODELS:-$3} model_file=$4 tokens=$5 ctx=$6 limit=$7
model=$models/$model_file
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ $tokens == generate ]]; then
  tokens=$work/contexts.txt
  "$kvstream" model generate --model "$model" --count "$limit" --length 512 --seed 2024 >"$tokens"
else
  tokens=$models/../data/$tokens
fi
ours=$("$kvstream" model score --model "$model" --tokens "$tokens" --ctx "$ctx" --limit "$limit" --json)
theirs=$("$python" "$here/llama2_numpy.py" --model "$model" --tokens "$tokens" --ctx "$ctx" --limit "$limit")
echo "kvstream: $ours"
echo "numpy:    $theirs"
"$python" - "$ours" "$theirs" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert a["tokens_scored"] == b["tokens_scored"] > 0, (a, b)
rel = abs(a["ppl"] / b["ppl"] - 1.0)
print(f"contexts {a['contexts']}  tokens {a['tokens_scored']}  ppl {a['ppl']:.7f} vs {b['ppl']:.7f}  relative difference {rel:.2e}")
sys.exit(0 if rel < 1e-4 else 1)
PY
