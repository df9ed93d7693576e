#!/usr/bin/env bash
# gpu_fused_check.sh — session 10's GPU work checked in one call: `make cuda`, test_backend_cuda
# (the fused decode ops add_rmsnorm / ssm_decode_rows and the bf16-state step against the CPU,
# and bit for bit against the launches they replace), test_device, Llamba-1B decode at batch 1
# and 64 with the fused SSM step off / on (MOLT_DECODE_FUSED=0/1, two alternated rounds), on
# bf16 state, a batch-1 kernel profile, `molt bench --device cuda` on stories260K, molt's stage-3
# and teacher steps. A section that would run past LIMIT seconds (default 520) is skipped.
#   OUT=out/fused LIMIT=520 bash scripts/gpu_fused_check.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu_fused}
mkdir -p "$OUT"
. scripts/gpu_deps.sh
t0=$(date +%s); el() { echo "t $(( $(date +%s) - t0 ))"; }
LIMIT=${LIMIT:-520}
left() { [ $(( $(date +%s) - t0 )) -lt $(( LIMIT - $1 )) ]; } # $1: seconds the section needs
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
gpu_build; el
left 200 && timeout 150 $B/tests/test_backend_cuda > $OUT/tbc.log 2>&1; echo "tbc rc $?: $(tail -1 $OUT/tbc.log)"; grep -E "^FAIL" $OUT/tbc.log | head -8; grep -E "add_rmsnorm|ssm_decode_rows|ssd_step_rows_bf16|matmul_backward " $OUT/tbc.log | head; el
timeout 120 $B/tests/test_device > $OUT/td.log 2>&1; echo "td rc $?: $(tail -1 $OUT/td.log)"; grep -E "^FAIL" $OUT/td.log | head -5; el
J=$OUT/decode.jsonl; : > $J
dec() { timeout 40 env "$1" $B/bench/bench_gpu --bf16 --only decode --dbatch $2 ${3:-} 2>&1 | grep '^{' | grep '"decode"' | sed "s/^{/{\"env\": \"$1\", /" | tee -a $J | cut -c1-300; }
for r in 1 2; do for nb in 1 64; do left 40 && { dec MOLT_DECODE_FUSED=0 $nb; dec MOLT_DECODE_FUSED=1 $nb; }; done; done; el
for nb in 1 64; do left 30 && dec MOLT_DECODE_FUSED=1 $nb "--dstate bf16"; done; el
left 40 && { timeout 40 $B/bench/bench_gpu --bf16 --only decode --dbatch 1 --profile > $OUT/prof1.txt 2>&1; grep -A28 -i "profile" $OUT/prof1.txt | head -30; }; el
M=models/stories260K/stories260K.bin
left 30 && { timeout 40 $B/molt bench $M --device cuda --batch 1,8,64 > $OUT/mb.txt 2>&1; echo "molt bench rc $?"; tail -9 $OUT/mb.txt; }; el
left 75 && timeout 70 $B/bench/bench_gpu --bf16 --only stage3 --steps 3 2>&1 | grep '^{' | grep -v gemm | cut -c1-300; el
left 55 && timeout 50 $B/bench/bench_gpu --bf16 --only teacher --steps 3 2>&1 | grep '^{' | grep -v gemm | cut -c1-300; el
