#!/usr/bin/env bash
# gpu_gemv1_check.sh — the batch-1 GEMV (kernels/cuda/dense.cu k_matvec1_w16, the T = 1
# default since run 10; MOLT_GEMV1=0 takes k_matvec_w16) checked and timed on a GPU in one
# call: `make cuda`; every op with it on
# (test_backend_cuda: matmul_w at T = 1 against the CPU); the decode GEMVs alone and Llamba-1B
# decode at batch 1 with MOLT_GEMV1=0 / 1, alternated twice (bench_gpu's copy row comes first:
# decode's share of the copy bandwidth). JSON lines in $OUT/gemv1.jsonl. About 3 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu_gemv1}
LIMIT=${LIMIT:-300}
mkdir -p "$OUT"
. scripts/gpu_deps.sh # MK, B, before, gpu_build
gpu_build
rc=0
MOLT_GEMV1=1 timeout 200 $B/tests/test_backend_cuda > "$OUT/tbc_gemv1.log" 2>&1 || rc=1
grep -E "^FAIL" "$OUT/tbc_gemv1.log" | head; echo "ops (MOLT_GEMV1=1): $(tail -1 "$OUT/tbc_gemv1.log")"
J=$OUT/gemv1.jsonl
: > "$J"
for round in 1 2; do
  for v in 0 1; do
    before $((LIMIT - 40)) || break
    MOLT_GEMV1=$v timeout 60 $B/bench/bench_gpu --bf16 --only gemv 2>&1 | grep '"T": 1,' |
      sed "s/^{/{\"gemv1\": $v, /" >> "$J"
    MOLT_GEMV1=$v timeout 60 $B/bench/bench_gpu --bf16 --only decode --dbatch 1 2>&1 |
      grep -E '"(copy|decode)"' | sed "s/^{/{\"gemv1\": $v, /" >> "$J"
  done
done
cut -c1-200 "$J"
exit $rc
