#!/usr/bin/env bash
# Old vs new binary, same run: training tokens/s and batch-1 decode tokens/s of
# two `molt` builds, interleaved (old, new, old, new, ...) so load changes hit
# both alike; prints the median of each and the ratio new/old.
# usage: scripts/bench_compare.sh OLD_MOLT NEW_MOLT [REPS]   (run on a quiet machine;
#        e.g. `taskset -c 0,1` for 2 cores)
set -euo pipefail
OLD=$1 NEW=$2 REPS=${3:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
ST=$ROOT/models/stories260K/stories260K.bin TK=$ROOT/models/stories260K/tok512.bin
DATA=$ROOT/tests/fixtures/stories.txt
[ -f "$DATA" ] || { head -c 300000 "${MOLT_SHARED:-$ROOT/../shared}/data/tinystories/tinystories_v1_train_head.txt" > "$W/data.txt"; DATA=$W/data.txt; }
# a Llamba of kv-llama-2m's width (as bench/bench_models.h), random init
cat > "$W/llamba.json" <<'J'
{"model_type": "llamba", "vocab_size": 512, "tie_embeddings": true, "d_model": 192, "n_layer": 6,
 "mlp_cfg": {"intermediate_size": 512}, "ssm_cfg": {"d_state": 16, "n_v_heads": 6, "n_qk_heads": 6, "chunk_size": 64}}
J
"$NEW" train "$W/llamba.json" --tokenizer "$TK" --data "$DATA" -o "$W/llamba" --steps 1 --seq 64 --batch 1 -q >/dev/null 2>&1
train_tps() { # BIN CONFIG_OR_MODEL
  rm -rf "$W/tr"; "$1" train "$2" --tokenizer "$TK" --data "$DATA" -o "$W/tr" --steps 12 --seq 256 --batch 8 \
    --eval-every 0 --save-every 1000 --threads 2 -q 2>/dev/null | grep -o '"tok_per_s": *[0-9.]*' | grep -o '[0-9.]*$'; }
gen_tps() { # BIN MODEL
  "$1" generate "$2" --tokenizer "$TK" -n 1000 -t 0 --threads 1 2>&1 >/dev/null | grep -o '[0-9.]* tok/s' | tail -1 | grep -o '^[0-9.]*'; }
declare -A R
for ((i = 0; i < REPS; i++)); do
  for b in old new; do
    bin=$OLD; [ $b = new ] && bin=$NEW
    R[$b,train_llama]+="$(train_tps "$bin" "$ST") "
    R[$b,train_llamba]+="$(train_tps "$bin" "$W/llamba.json") "
    R[$b,decode_llama]+="$(gen_tps "$bin" "$ST") "
    R[$b,decode_llamba]+="$(gen_tps "$bin" "$W/llamba") "
  done
done
printf '%-16s %12s %12s %8s\n' measure old new new/old
for k in train_llama train_llamba decode_llama decode_llamba; do
  o=$(echo ${R[old,$k]} | tr ' ' '\n' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  n=$(echo ${R[new,$k]} | tr ' ' '\n' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  awk -v k="$k" -v o="$o" -v n="$n" 'BEGIN { printf "%-16s %12.1f %12.1f %8.3f\n", k, o, n, n / o }'
done
