#!/usr/bin/env bash
# Retrieval-aware hybrids on kv-llama-2m (docs/reports/hybrids-kv-llama.md):
# rank the heads, then distil the pure recurrent student, hybrids keeping the
# top-k heads (k = 1, 2, 4), hybrids keeping k random heads (the control), and
# the top-2 hybrid with an 8x smaller SSM state; each reports KV-retrieval
# accuracy, held-out loss and memory per sequence.
#   usage: scripts/hybrid_experiments.sh OUT_DIR [TOKENS]
set -euo pipefail
OUT=${1:?usage: $0 OUT_DIR [TOKENS]}
TOK=${2:-800000}
SHARED=${MOLT_SHARED:-$(cd .. && pwd)/shared}
KV=$SHARED/models/kv-llama-2m
VALID=$SHARED/data/tinystories/tinystories_v1_valid_head.txt
mkdir -p "$OUT"
head -c 200000 "$VALID" > "$OUT/valid.txt"
[ -s "$OUT/ranking.json" ] || ./molt heads "$KV" --pairs 8 --examples 200 --seeds 1,2 --json > "$OUT/ranking.json"
common=(--tokens "$TOK" --sample-tokens 500000 --kv-task data/kv_task.json --kv-pairs 8 --kv-data-frac 0.3
        --kv-examples 300 --eval-data "$OUT/valid.txt" -q)
run() { local name=$1; shift; [ -s "$OUT/$name/report.json" ] && return 0
  echo "== $name: $*" >&2
  /usr/bin/time -f "$name wall %e s" ./molt "$@" -o "$OUT/$name" "${common[@]}" > "$OUT/$name.txt" 2> "$OUT/$name.err" \
    || { cat "$OUT/$name.err"; return 1; }; tail -1 "$OUT/$name.err"; }
EXPS=${EXPS:-pure top2 random2 top2-ds2 top1 top4 random4 layer1}
for e in $EXPS; do case $e in
  pure)     run pure      distill   "$KV" ;;
  top1)     run top1      hybridize "$KV" --keep 1 --ranking "$OUT/ranking.json" --freeze-kept ;;
  top2)     run top2      hybridize "$KV" --keep 2 --ranking "$OUT/ranking.json" --freeze-kept ;;
  top4)     run top4      hybridize "$KV" --keep 4 --ranking "$OUT/ranking.json" --freeze-kept ;;
  random2)  run random2   hybridize "$KV" --random-heads 2 --seed 7 --freeze-kept ;;
  random4)  run random4   hybridize "$KV" --random-heads 4 --seed 7 --freeze-kept ;;
  top2-ds2) run top2-ds2  hybridize "$KV" --keep 2 --ranking "$OUT/ranking.json" --freeze-kept --d-state 2 ;;
  layer1)   run layer1    hybridize "$KV" --heads 1:0,1:1,1:2,1:3,1:4,1:5 --freeze-kept ;;
esac; done
/usr/bin/python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
rows = []
for name in ["pure", "top1", "top2", "top4", "random2", "random4", "top2-ds2", "layer1"]:
    p = os.path.join(out, name, "report.json")
    if not os.path.exists(p): continue
    r = json.load(open(p))
    rows.append((name, r["student"]["kept_heads"], r["student"]["d_state"], r["kv_retrieval"]["teacher"],
                 r["kv_retrieval"]["student"], r["eval"]["teacher_loss"], r["eval"]["student_loss"],
                 r["bytes_per_sequence"]))
print(f"{'model':<10} {'kept':<18} {'N':>3} {'kv acc':>7} {'loss':>7} {'bytes@1k':>10} {'@8k':>10} {'@32k':>11}")
if rows:
    t = rows[0]; b = t[7]
    print(f"{'teacher':<10} {'all 36':<18} {'-':>3} {t[3]:7.3f} {t[5]:7.4f} {b['teacher_kv_1k']:10d} {b['teacher_kv_8k']:10d} {b['teacher_kv_32k']:11d}")
for name, kept, N, tacc, sacc, tl, sl, b in rows:
    print(f"{name:<10} {str(kept):<18} {N:>3} {sacc:7.3f} {sl:7.4f} {b['student_1k']:10d} {b['student_8k']:10d} {b['student_32k']:11d}")
PY
