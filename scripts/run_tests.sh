#!/usr/bin/env bash
# Runs every test: compiled C tests (build/tests/test_*), shell tests
# (tests/test_*.sh) and short fuzz runs (build/fuzz/fuzz_*). Exit 0 only when
# nothing failed. Last two lines: "P parts of passing tests skipped" and
# "N passed, M failed, K skipped" (the plain closing line CI reads).
# A test skips (exit 77) or skips a part of itself (a "SKIP part: WHAT (needs PATH)" line,
# tests/testutil.c t_have, tests/assets.sh have) only for a model or data file that neither the
# repository nor ../shared ($MOLT_SHARED) holds; each part skipped is listed under its test.
# With ../shared present nothing is skipped.
set -u
BUILD=${BUILD:-build}
export MOLT_BIN=${MOLT_BIN:-$PWD/$BUILD/molt}
export MOLT_BUILD=$BUILD
export MOLT_SHARED=${MOLT_SHARED:-$(cd .. && pwd)/shared}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
pass=0; fail=0; skip=0; parts=0; failed=()
run() {
  local name=$1; shift
  local t0=$EPOCHREALTIME
  local log; log=$(mktemp)
  "$@" >"$log" 2>&1; local rc=$?
  local dt=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}')
  if [ $rc -eq 0 ]; then pass=$((pass+1)); printf 'PASS  %-36s %6ss\n' "$name" "$dt"
  elif [ $rc -eq 77 ]; then skip=$((skip+1)); printf 'SKIP  %-36s %s\n' "$name" "$(tail -n1 "$log")"
  else fail=$((fail+1)); failed+=("$name"); printf 'FAIL  %-36s %6ss (exit %d)\n' "$name" "$dt" $rc; tail -n 30 "$log" | sed 's/^/      | /'
  fi
  if [ $rc -ne 77 ]; then
    local np; np=$(grep -c '^SKIP part: ' "$log")
    parts=$((parts+np))
    grep '^SKIP part: ' "$log" | sed 's/^/      - /'
  fi
  rm -f "$log"
}
filter=${TEST_FILTER:-}
for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  n=$(basename "$t"); [[ -n $filter && $n != *$filter* ]] && continue
  run "$n" "$t"
done
# the GPU tests, from the CUDA build (make cuda; `make test` passes CUDA_TEST, their directory, when it
# built them): each exits 77 with a one-line reason where no GPU is found
for n in test_backend_cuda test_device; do
  [[ -n $filter && $n != *$filter* ]] && continue
  if [ -n "${CUDA_TEST:-}" ] && [ -x "$CUDA_TEST/$n" ]; then
    run "$n" "$CUDA_TEST/$n"
  else
    skip=$((skip+1)); printf 'SKIP  %-36s %s\n' "$n" \
      "CUDA build not made (no nvcc found, or a sanitizer build)"
  fi
done
for t in tests/test_*.sh; do
  [ -f "$t" ] || continue
  n=$(basename "$t"); [[ -n $filter && $n != *$filter* ]] && continue
  run "$n" bash "$t"
done
for f in "$BUILD"/fuzz/fuzz_*; do
  [ -x "$f" ] || continue
  n=$(basename "$f"); [[ -n $filter && $n != *$filter* ]] && continue
  run "$n(short)" "$f" -runs=3000 "fuzz/corpus/${n#fuzz_}"
done
echo
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$parts parts of passing tests skipped (SKIP part lines above)"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
