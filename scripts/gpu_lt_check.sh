#!/usr/bin/env bash
# gpu_lt_check.sh — the cublasLt GEMM path (kernels/cuda/blaslt.cu, opt-in MOLT_GEMM_LT=1) and
# session 8's unmeasured changes, checked and timed on a GPU in one call: `make cuda`; every op
# with MOLT_GEMM_LT=1 (test_backend_cuda); decode at batch 1 and 64 and the GEMVs alone with
# MOLT_GEMM_LT=0 / 1; MOHAWK stage 3 and the teacher step with MOLT_GEMM_LT=0 / 1 (the stage-3
# line's device_gb_used shows the shared SwiGLU output h); the PyTorch peer's stage 3 in the same
# lease (a state-spaces/mamba snapshot at .gpu/mamba_ssm_snapshot, see bench/peer_torch.py).
# JSON lines in $OUT/lt.jsonl. About 7 minutes on an H100; a section that would pass LIMIT
# seconds (default 540) is skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu_lt}
LIMIT=${LIMIT:-540}
mkdir -p "$OUT"
. scripts/gpu_deps.sh # MK (the build dependencies), B, before, gpu_build
gpu_build
rc=0
MOLT_GEMM_LT=1 timeout 200 $B/tests/test_backend_cuda > "$OUT/tbc_lt.log" 2>&1 || rc=1
grep -E "^FAIL" "$OUT/tbc_lt.log" | head; echo "ops (MOLT_GEMM_LT=1): $(tail -1 "$OUT/tbc_lt.log")"
: > "$OUT/lt.jsonl"
tag() { sed "s/^{/{\"gemm_lt\": $1, /" >> "$OUT/lt.jsonl"; }
for lt in 0 1; do
  for nb in 1 64; do
    MOLT_GEMM_LT=$lt timeout 60 $B/bench/bench_gpu --bf16 --only decode --dbatch $nb 2>&1 |
      grep '"decode"' | tag $lt
  done
  MOLT_GEMM_LT=$lt timeout 60 $B/bench/bench_gpu --bf16 --only gemv 2>&1 | grep '"gemv"' | tag $lt
done
for lt in 0 1; do
  before $((LIMIT - 200)) && MOLT_GEMM_LT=$lt timeout 100 $B/bench/bench_gpu --bf16 --only stage3 \
    --steps 3 2>&1 | grep '"mohawk' | tag $lt
  before $((LIMIT - 150)) && MOLT_GEMM_LT=$lt timeout 60 $B/bench/bench_gpu --bf16 --only teacher \
    --steps 3 2>&1 | grep '"teacher' | tag $lt
done
if [ -d .gpu/mamba_ssm_snapshot ] && before $((LIMIT - 100)); then
  timeout 170 python3 bench/peer_torch.py --mamba-ssm .gpu/mamba_ssm_snapshot --only stage3 \
    --steps 3 2>&1 | grep '^{' | grep -v '"gemm"' >> "$OUT/lt.jsonl"
fi
cut -c1-220 "$OUT/lt.jsonl"
exit $rc
