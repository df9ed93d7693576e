#!/usr/bin/env bash
# scripts/gpu_mixers_check.sh — the GateLoop and Mamba-3 ops on the GPU (issue 14), in one
# call on a machine with a CUDA GPU:
#   1. `make cuda` (build-cuda/);
#   2. build-cuda/tests/test_backend_cuda (every CUDA op against the CPU op, the 21 new ones
#      included) and build-cuda/tests/test_device (whole models GPU vs CPU: GateLoop, Mamba-3
#      SISO / MIMO and a mixed model among the others); a skip (77) counts as a failure here;
#   3. `molt distill` and `molt hybridize --heads 4:0,2:3` with --student gateloop, mamba3 and
#      mamba3-mimo on stories260K, --device cuda and --device cpu, the same seed, the same
#      training text (the first 30 KB of the TinyStories fixture) and held-out text (the last
#      10 KB): the held-out student losses must agree within REL (default 0.02, relative; the
#      two backends sum in different orders, so the runs drift apart a little over the steps).
# Prints a table (student, command, cpu loss, cuda loss, relative difference, seconds) and
# exits non-zero on any failure. Usage: scripts/gpu_mixers_check.sh [-j JOBS]; env REL, KEEP=1
# (keep the work directory), MOLT_THREADS (CPU threads for the cpu runs, default 4); for a dry
# run of step 3 without a GPU: DRY=1 (no build, no tests; "cuda" runs on the CPU too);
# SKIP_BUILD_TESTS=1: step 3 only, on the GPU (build-cuda/ already built and tested).
set -u
cd "$(dirname "$0")/.."
JOBS=$(nproc 2>/dev/null || echo 4)
[ "${1:-}" = "-j" ] && JOBS=$2
REL=${REL:-0.02}
THR=${MOLT_THREADS:-4}
PY=${PY:-$(command -v python3 || echo /usr/bin/python3)}
fail=0
T=$(mktemp -d)
[ "${KEEP:-0}" = 1 ] && echo "work directory: $T" || trap 'rm -rf "$T"' EXIT

GPU=cuda
[ "${DRY:-0}" = 1 ] && GPU=cpu
if [ "${DRY:-0}" != 1 ] && [ -z "${SKIP_BUILD_TESTS:-}" ]; then
echo "== make cuda (-j$JOBS)"
make -j"$JOBS" cuda > "$T/make.log" 2>&1 ||
  { echo "FAIL: make cuda"; tail -40 "$T/make.log"; exit 1; }
if grep -E "warning" "$T/make.log" | grep -v "Werror" | grep -q .; then
  echo "note: compiler warnings:"; grep -E "warning" "$T/make.log" | grep -v "Werror" | head -20
fi

for t in test_backend_cuda test_device; do
  echo "== build-cuda/tests/$t"
  t0=$EPOCHREALTIME
  build-cuda/tests/$t > "$T/$t.log" 2>&1; rc=$?
  dt=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}')
  # the issue-14 lines first (ops gl_* / m3_*, models gateloop / m3_* / mix_gl_m3), then the tail
  grep -E "^(gl_|m3_)|^  (gateloop|m3_siso|m3_mimo|mix_gl_m3) |FAIL" "$T/$t.log" | head -80
  tail -3 "$T/$t.log"
  if [ $rc -ne 0 ]; then
    echo "FAIL: $t exit $rc (${dt}s; 77 = skipped: no GPU)"; fail=1
  else
    echo "ok   $t (${dt}s)"
  fi
done
fi

echo "== distill / hybridize, --device cuda vs cpu (stories260K)"
TEACHER=models/stories260K/stories260K.bin
DATA=tests/fixtures/data/tinystories/tinystories_v1_valid_head_40k.txt
head -c 30000 "$DATA" > "$T/train.txt"
tail -c 10000 "$DATA" > "$T/valid.txt"
MOLT=build-cuda/molt
[ -x $MOLT ] || { echo "FAIL: no $MOLT (make cuda)"; exit 1; }
BUDGET=(--data "$T/train.txt" --eval-data "$T/valid.txt" --seq 64 --batch 4 --seed 7
        --stage1-tokens 6400 --stage2-tokens 6400 --stage3-tokens 12800 -q --overwrite)
printf "%-12s %-10s %10s %10s %9s %7s %7s\n" student command cpu cuda rel_diff cpu_s cuda_s
for st in gateloop mamba3 mamba3-mimo; do
  for cmd in distill hybridize; do
    extra=()
    [ $cmd = hybridize ] && extra=(--heads 4:0,2:3)
    [ $st = mamba3-mimo ] && extra+=(--mimo-rank 2)
    declare -A loss=() secs=()
    for dev in cpu cuda; do
      out="$T/$cmd-$st-$dev"
      t0=$EPOCHREALTIME
      d=$dev
      [ $dev = cuda ] && d=$GPU
      $MOLT $cmd $TEACHER -o "$out" --student $st ${extra[@]+"${extra[@]}"} "${BUDGET[@]}" \
        --device $d --threads "$THR" > "$out.log" 2>&1
      rc=$?
      secs[$dev]=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}')
      if [ $rc -ne 0 ]; then
        echo "FAIL: $cmd --student $st --device $dev (exit $rc):"; tail -8 "$out.log"; fail=1
        loss[$dev]=nan
        continue
      fi
      loss[$dev]=$($PY -c \
        'import json,sys; print(json.load(open(sys.argv[1]))["eval"]["student_loss"])' \
        "$out/report.json" 2> /dev/null || echo nan)
    done
    verdict=$($PY - "${loss[cpu]}" "${loss[cuda]}" "$REL" <<'PY'
import math, sys
c, g, rel = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
if not (math.isfinite(c) and math.isfinite(g) and c > 0):
    print("nan FAIL")
else:
    d = abs(g - c) / c
    print(f"{d:.2e} {'ok' if d <= rel else 'FAIL'}")
PY
)
    printf "%-12s %-10s %10s %10s %9s %7s %7s  %s\n" $st $cmd "${loss[cpu]}" "${loss[cuda]}" \
      "${verdict% *}" "${secs[cpu]}" "${secs[cuda]}" "${verdict#* }"
    [ "${verdict#* }" = ok ] || fail=1
    unset loss secs
  done
done

[ $fail -eq 0 ] && echo "gpu_mixers_check: all passed" || echo "gpu_mixers_check: FAILED"
exit $fail
