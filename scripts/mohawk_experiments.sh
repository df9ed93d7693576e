#!/usr/bin/env bash
# Reproduces docs/reports/mohawk-stories260k.md: MOHAWK on stories260K with the
# default settings, the same budget as stage 3 only (plain knowledge
# distillation), optionally a larger budget, and kv-llama-2m with its
# retrieval accuracy. Held-out text: TinyStories valid head (never trained on;
# the students train on text sampled from the teacher).
#   usage: scripts/mohawk_experiments.sh OUT_DIR [default|stage3|large|kv ...]
set -euo pipefail
OUT=${1:?usage: $0 OUT_DIR [default|stage3|large|kv ...]}; shift
SHARED=${MOLT_SHARED:-$(cd .. && pwd)/shared}
VALID=$SHARED/data/tinystories/tinystories_v1_valid_head.txt
T=models/stories260K/stories260K.bin
mkdir -p "$OUT"
run() { local name=$1; shift; echo "== $name: molt distill $*" >&2
  /usr/bin/time -f "$name wall %e s, max RSS %M KB" ./molt distill "$@" -o "$OUT/$name" -q \
    > "$OUT/$name.txt" 2> "$OUT/$name.err" || { cat "$OUT/$name.err"; return 1; }
  tail -1 "$OUT/$name.err"; cat "$OUT/$name.txt"; }
for what in "${@:-default stage3}"; do
  case $what in
    default) run default "$T" --eval-data "$VALID" ;;
    stage3)  run stage3-only "$T" --stage3-only --eval-data "$VALID" ;;
    large)   run large "$T" --sample-tokens 8000000 --stage1-tokens 4000000 --stage2-tokens 8000000 \
                 --stage3-tokens 36000000 --eval-data "$VALID" ;;
    kv)      run kv-llama "$SHARED/models/kv-llama-2m" --tokens 3000000 --sample-tokens 1000000 \
                 --kv-task data/kv_task.json --kv-pairs 8 ;;
    *) echo "unknown experiment $what" >&2; exit 2 ;;
  esac
done
