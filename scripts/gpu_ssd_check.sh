#!/usr/bin/env bash
# gpu_ssd_check.sh — the tensor-core SSD form (kernels/cuda/ssm_tc.cu; the default under tf32/bf16, MOLT_SSD_TC=0 off)
# checked and timed on a GPU in one call: `make cuda`; `test_backend_cuda --scan` (both forms of
# the chunked scan against the CPU, the tc form under tf32 and bf16 execs: it sets MOLT_SSD_TC=1);
# the scan alone (`bench_gpu --bf16 --only ssd`) with the form off and on; the MOHAWK stage-3
# step with it on; the PyTorch peer's stage 3 and scan in the same lease (with a state-spaces/mamba
# snapshot at .gpu/mamba_ssm_snapshot, see bench/peer_torch.py); then every op
# (test_backend_cuda) and test_device. JSON lines in $OUT/ssd.jsonl (run 8 passed them all and
# made the form the default). About 7 minutes on an H100; a
# section that would pass LIMIT seconds (default 540) is skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu_ssd}
LIMIT=${LIMIT:-540}
mkdir -p "$OUT"
. scripts/gpu_deps.sh # MK (the build dependencies), B, before, gpu_build
gpu_build
rc=0
timeout 120 $B/tests/test_backend_cuda --scan > "$OUT/scan_tests.log" 2>&1 || rc=1
grep -E "^FAIL" "$OUT/scan_tests.log" | head; grep -E "^ssd_scan" "$OUT/scan_tests.log"
echo "scan tests: $(tail -1 "$OUT/scan_tests.log")"
: > "$OUT/ssd.jsonl"
for tc in 0 1; do
  MOLT_SSD_TC=$tc timeout 60 $B/bench/bench_gpu --bf16 --only ssd --steps 5 2>&1 |
    grep '"ssd_scan' | sed "s/^{/{\"ssd_tc\": $tc, /" >> "$OUT/ssd.jsonl"
done
before $((LIMIT - 300)) && MOLT_SSD_TC=1 timeout 150 $B/bench/bench_gpu --bf16 --only stage3 --steps 3 2>&1 |
  grep '"mohawk' | sed 's/^{/{"ssd_tc": 1, /' >> "$OUT/ssd.jsonl"
if [ -d .gpu/mamba_ssm_snapshot ] && before $((LIMIT - 220)); then
  for w in stage3 ssd; do
    timeout 150 python3 bench/peer_torch.py --mamba-ssm .gpu/mamba_ssm_snapshot --only $w --steps 3 2>&1 |
      grep '^{' | grep -v '"gemm"' >> "$OUT/ssd.jsonl"
  done
fi
cut -c1-200 "$OUT/ssd.jsonl"
for t in test_backend_cuda test_device; do
  before $((LIMIT - 100)) || break
  timeout 200 $B/tests/$t > "$OUT/$t.log" 2>&1 || rc=1
  echo "$t: $(tail -1 "$OUT/$t.log")"
done
exit $rc
