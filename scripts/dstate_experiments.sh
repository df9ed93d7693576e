#!/usr/bin/env bash
# Does a smaller SSM state cost little once the retrieval heads are kept?
# (ALGORITHMS.md §7: "8x smaller SSM state dimension with limited loss".)
# Distils kv-llama-2m students at d_state 32 (the teacher's head dim: the
# full attention transfer C<-Q, B<-K) and at 8x smaller, with no kept heads
# (pure recurrent) and with the top-2 / top-4 retrieval heads kept (frozen),
# all with the same budget and data, in parallel (2 threads each), and
# prints retrieval accuracy, held-out loss and memory per sequence.
#   usage: scripts/dstate_experiments.sh OUT_DIR [TOKENS]
#   env:   MOLT (binary, ./molt), KV (teacher dir), RANKING (molt heads --json),
#          EXPS (configs to run), RESUME=1 (continue unfinished runs)
set -uo pipefail
OUT=${1:?usage: $0 OUT_DIR [TOKENS]}
TOK=${2:-2000000}
MOLT=${MOLT:-./molt}
SHARED=${MOLT_SHARED:-$(cd .. && pwd)/shared}
KV=${KV:-$SHARED/models/kv-llama-2m}
RANKING=${RANKING:-docs/reports/kv-llama/heads-ranking.json}
VALID=${VALID:-$SHARED/data/tinystories/tinystories_v1_valid_head.txt}
mkdir -p "$OUT"
[ -s "$OUT/valid.txt" ] || head -c 200000 "$VALID" > "$OUT/valid.txt"
common=(--tokens "$TOK" --sample-tokens $((TOK / 2)) --kv-task data/kv_task.json --kv-pairs 8
        --kv-data-frac 0.3 --kv-examples 300 --eval-data "$OUT/valid.txt" --threads 2 -q)
[ "${RESUME:-0}" = 1 ] && common+=(--resume)
run() { local name=$1; shift; [ -s "$OUT/$name/report.json" ] && return 0
  "$MOLT" "$@" -o "$OUT/$name" "${common[@]}" > "$OUT/$name.txt" 2> "$OUT/$name.err" \
    || { echo "$name failed:"; tail -3 "$OUT/$name.err"; return 1; }; }
top() { echo hybridize "$KV" --keep "$1" --ranking "$RANKING" --freeze-kept; }
EXPS=${EXPS:-pure-ds32 pure-ds4 top2-ds32 top2-ds4 top4-ds32 top4-ds16 top4-ds8 top4-ds4}
for e in $EXPS; do
  n=${e##*-ds}
  case $e in
    pure-*) run "$e" distill "$KV" --d-state "$n" & ;;
    top2-*) run "$e" $(top 2) --d-state "$n" & ;;
    top4-*) run "$e" $(top 4) --d-state "$n" & ;;
    *) echo "unknown experiment $e"; exit 2 ;;
  esac
done
wait
/usr/bin/env python3 - "$OUT" $EXPS <<'PY'
import json, os, sys
out, names = sys.argv[1], sys.argv[2:]
print(f"{'model':<10} {'kept':>4} {'d_state':>7} {'kv acc':>7} {'held-out loss':>13} {'state B':>9} {'bytes @8k':>10}")
for name in names:
    p = os.path.join(out, name, "report.json")
    if not os.path.exists(p):
        print(f"{name:<10} (not finished)"); continue
    r = json.load(open(p))
    s, b = r["student"], r["bytes_per_sequence"]
    kept = len(s["kept_heads"])
    print(f"{name:<10} {kept:>4} {s['d_state']:>7} {r['kv_retrieval']['student']:7.3f} "
          f"{r['eval']['student_loss']:13.4f} {b['student_state']:>9} "
          f"{b['student_8k']:>10}")
t = json.load(open(os.path.join(out, names[0], "report.json"))) if names and os.path.exists(os.path.join(out, names[0], "report.json")) else None
if t:
    print(f"{'teacher':<10} {'36':>4} {'-':>7} {t['kv_retrieval']['teacher']:7.3f} {t['eval']['teacher_loss']:13.4f} {'-':>9} {t['bytes_per_sequence']['teacher_kv_8k']:>10}")
PY
