#!/usr/bin/env bash
# gpu_stage3_1b.sh — issue 12's long GPU run: `molt distill --device cuda` of a random
# Llama-3.2-1B-shaped teacher into a Llamba-1B student, stage 3 only, STEPS steps of 1 × 2048
# tokens (default 2500), bf16 GEMMs, a checkpoint every 1000 steps; the progress lines (loss,
# tok/s, GPU GB every 100 steps) go to $OUT/distill.log, the report (report.json with the
# timeline, report.txt, timeline.svg, loss_curves.svg) to $OUT. Run from the repository root
# on the GPU machine after `make cuda`:
#   bash scripts/gpu_stage3_1b.sh [STEPS]            fresh run into $WORK/s1b
#   RESUME=1 bash scripts/gpu_stage3_1b.sh [STEPS]   continue it (molt distill --resume)
# Inputs (MOLT_SHARED, default ../shared): data/tokenizers/llama3/tokenizer.model,
# data/tinystories/*.txt; the teacher is made once by scripts/mk_teacher_1b.py into
# $WORK/t1b (WORK default /tmp). At 14.6k tok/s on an H100 2500 steps take ~6 min, plus ~60 s
# per checkpoint (15 GB with the AdamW moments) and ~80 s of loading, eval and report.
set -uo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-2500}
SH=${MOLT_SHARED:-../shared}
WORK=${WORK:-/tmp}
OUT=${OUT:-out/stage3_1b}
mkdir -p "$OUT"
TOK=$SH/data/tokenizers/llama3/tokenizer.model
TRAIN=$SH/data/tinystories/tinystories_v1_train_head_lowercase.txt
VALID=$WORK/tinystories_valid_30k.txt
for f in "$TOK" "$TRAIN" "$SH/data/tinystories/tinystories_v1_valid_head.txt"; do
  [ -f "$f" ] || { echo "gpu_stage3_1b: $f missing (set MOLT_SHARED)"; exit 1; }
done
head -c 30000 "$SH/data/tinystories/tinystories_v1_valid_head.txt" > "$VALID"
[ -x build-cuda/molt ] || { echo "gpu_stage3_1b: build-cuda/molt missing (make cuda)"; exit 1; }
[ -f "$WORK/t1b/model.safetensors" ] || python3 scripts/mk_teacher_1b.py "$WORK/t1b" "$TOK" || exit 1
R=()
if [ -n "${RESUME:-}" ]; then R=(--resume); else rm -rf "$WORK/s1b"; fi
t0=$(date +%s)
build-cuda/molt distill "$WORK/t1b" -o "$WORK/s1b" --device cuda --matmul bf16 --stage3-only \
  --tokens $((STEPS * 2048)) --seq 2048 --batch 1 --d-state 64 --save-every 1000 \
  --data "$TRAIN" --eval-data "$VALID" "${R[@]}" >> "$OUT/distill.log" 2>&1
rc=$?
echo "molt distill rc=$rc in $(( $(date +%s) - t0 )) s"
grep -E "^stage 3" "$OUT/distill.log" | tail -5
for f in report.json report.txt timeline.svg loss_curves.svg; do
  [ -f "$WORK/s1b/$f" ] && cp "$WORK/s1b/$f" "$OUT/"
done
[ -f "$OUT/report.txt" ] && cat "$OUT/report.txt"
exit $rc
