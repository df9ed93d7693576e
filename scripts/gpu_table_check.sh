#!/usr/bin/env bash
# gpu_table_check.sh — issue 12's table in one device call: `make cuda`, test_device (whole
# models against the CPU with the defaults: tensor-core SSD form under --bf16), then each row of
# the table measured for molt (build-cuda/bench/bench_gpu --bf16) and for the PyTorch peer
# (bench/peer_torch.py, state-spaces/mamba's Triton SSD from a snapshot at .gpu/mamba_ssm_snapshot)
# on the same GPU in the same lease: MOHAWK stage 3, the teacher training step, the SSD mixer
# alone, Llamba-1B decode at batch 1 and 64 (against the copy bandwidth). JSON lines in
# $OUT/table.jsonl, bench/gpu_table.py's table at the end.
# A section that would run past LIMIT seconds (default 540) is skipped and says so; TESTS=0
# leaves test_device out (`make bench` on a GPU machine runs this script that way).
#   OUT=out/table LIMIT=540 bash scripts/gpu_table_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu_table}
LIMIT=${LIMIT:-540}
mkdir -p "$OUT"
. scripts/gpu_deps.sh # MK, B, before, gpu_build
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
gpu_build
rc=0
if [ "${TESTS:-1}" != 0 ]; then
  timeout 150 $B/tests/test_device > "$OUT/test_device.log" 2>&1 || rc=1
  grep -E "^FAIL" "$OUT/test_device.log" | head; echo "test_device: $(tail -1 "$OUT/test_device.log")"
fi
J=$OUT/table.jsonl
: > "$J"
PEER=(python3 bench/peer_torch.py)
MSSM=${MAMBA_SSM:-.gpu/mamba_ssm_snapshot} # a state-spaces/mamba checkout (bench/peer_torch.py)
[ -d "$MSSM" ] && PEER+=(--mamba-ssm "$MSSM")
molt() { timeout "$1" $B/bench/bench_gpu --bf16 "${@:2}" 2>&1 | grep '^{' | grep -v '"gemm"' |
         sed 's/^{/{"engine": "molt", /' >> "$J"; }
peer() { timeout "$1" "${PEER[@]}" "${@:2}" 2>&1 | grep '^{' | grep -v '"gemm"' >> "$J"; }
before $((LIMIT - 380)) && molt 90 --only stage3 --steps 3
before $((LIMIT - 330)) && peer 170 --only stage3 --steps 3
before $((LIMIT - 170)) && molt 60 --only teacher --steps 3
before $((LIMIT - 130)) && peer 100 --only teacher --steps 3
before $((LIMIT - 150)) && for nb in 1 64; do molt 30 --only decode --dbatch $nb; done
before $((LIMIT - 130)) && peer 60 --only decode
before $((LIMIT - 120)) && molt 30 --only ssd --steps 5
before $((LIMIT - 100)) && peer 110 --only ssd --steps 5 # ~100 s: Triton compiles its kernels
python3 bench/gpu_table.py "$J" || rc=1
exit $rc
