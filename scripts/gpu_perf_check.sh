#!/usr/bin/env bash
# gpu_perf_check.sh — the CUDA backend's speed work (issue 12, branch gpuperf) checked on a GPU
# in one call: `make cuda`, the two GPU tests (test_backend_cuda, test_device: every op and
# whole models against the CPU), then build-cuda/bench/bench_gpu with bf16 GEMMs (--bf16,
# MOLT_EXEC_BF16) at the 1B shapes: the teacher training step, the MOHAWK stage-3 step and
# Llamba-1B decode at batch 1 and 64; a summary table at the end.
#
#   bash scripts/gpu_perf_check.sh            tests + bench
#   NCU=1 bash scripts/gpu_perf_check.sh      + per-kernel times of the kernels this work
#                                              touched (ncu, one teacher step at B=1)
#   SKIP_TESTS=1 / SKIP_BENCH=1               leave a part out
#   BB=4                                      batch of the training benches (default 1)
#
# Time: build about 2 min at -j16, tests 2-4 min, benches about 3 min: within one 10-minute
# device call, but SKIP_TESTS=1 / SKIP_BENCH=1 split it in two if needed (NCU=1 separately).
# Build dependencies: scripts/gpu_deps.sh (the system's, or a .gpu/debs/*.deb sysroot). Logs
# and JSON lines go to $OUT (default out/gpu_perf). Exits non-zero when the build or a test fails.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
OUT=${OUT:-$ROOT/out/gpu_perf}
mkdir -p "$OUT"
BB=${BB:-1}
NCU_BIN=${NCU_BIN:-/usr/local/cuda/bin/ncu}
. scripts/gpu_deps.sh # MK: the build dependencies (the system's or a .gpu/debs sysroot)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null ||
    echo "nvidia-smi: no GPU visible"
rc=0

t0=$(date +%s)
if ! make -j"$(nproc)" cuda "${MK[@]}" > "$OUT/cuda_build.log" 2>&1; then
    echo "CUDA BUILD FAILED"
    grep -E "error" "$OUT/cuda_build.log" | head -20
    tail -5 "$OUT/cuda_build.log"
    exit 1
fi
nw=$(grep -c "warning" "$OUT/cuda_build.log" || true)
echo "make cuda: $(( $(date +%s) - t0 )) s, lines with 'warning': $nw"

if [ -z "${SKIP_TESTS:-}" ]; then
    echo "== test_backend_cuda (every op vs the CPU; gpuperf: wcache, 300 spans, rows bits)"
    timeout 200 ./build-cuda/tests/test_backend_cuda > "$OUT/test_backend_cuda.log" 2>&1
    r=$?; echo "test_backend_cuda rc=$r"; [ $r -eq 0 ] || rc=1
    grep -E "^FAIL|FAILED|wcache|rows vs|spans|checks" "$OUT/test_backend_cuda.log" | head -40
    grep -E "^(matmul|rmsnorm_backward|colsum|sumsq|scale|adamw|attn_decode_rows|kv_append|rope|conv1d_causal_rows|ssd_step_rows)" \
        "$OUT/test_backend_cuda.log"
    echo "== test_device (whole models vs the CPU; gpuperf: bf16 across AdamW steps)"
    timeout 200 ./build-cuda/tests/test_device > "$OUT/test_device.log" 2>&1
    r=$?; echo "test_device rc=$r"; [ $r -eq 0 ] || rc=1
    grep -E "FAIL|bf16 GEMMs|checks" "$OUT/test_device.log" | head -40
fi

if [ -z "${SKIP_BENCH:-}" ]; then
    B=./build-cuda/bench/bench_gpu
    J=$OUT/bench.jsonl
    : > "$J"
    echo "== bench_gpu --bf16, 1B shapes, B=$BB x 2048 (each run starts with the GEMM rate)"
    for w in teacher stage3; do
        timeout 150 stdbuf -oL "$B" --batch "$BB" --seq 2048 --steps 5 --bf16 --only "$w" 2>&1 |
            tee -a "$J"
    done
    timeout 120 stdbuf -oL "$B" --bf16 --only decode 2>&1 | tee -a "$J"
    echo
    python3 - "$J" <<'PY' || true
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]
print(f"{'bench':<22} {'weights/batch':<14} {'ms/step':>9} {'tok/s':>10} {'MFU':>6}")
for r in rows:
    b = r['bench']
    if b == 'gemm':
        continue
    ms = r.get('ms_per_step', r.get('ms', 0))
    extra = f"{r['weights']} b{r['batch']}" if b == 'decode' else f"b{r.get('batch', '')}"
    mfu = r.get('mfu_vs_measured_gemm')
    print(f"{b:<22} {extra:<14} {ms:>9.2f} {r.get('tokens_per_s', 0):>10.0f} "
          f"{'' if mfu is None else f'{mfu:.3f}':>6}")
gem = [r for r in rows if r['bench'] == 'gemm']
if gem:
    print(f"bf16 GEMM rate: {gem[0]['tflops']} TFLOP/s")
print("before this work (H100, B=1x2048, --bf16, docs/notes): teacher step 213 ms, "
      "decode b64 1,634 tok/s (student); PyTorch peer teacher step 78 ms")
PY
fi

if [ -n "${NCU:-}" ]; then
    echo "== ncu: per-kernel GPU time of one teacher step's kernels touched here (B=1)"
    K='regex:k_to_bf16|k_mt_elementwise|k_sumsq_mt|k_colsum_part|k_colsum_fin|k_rmsnorm|k_embedding_bwd|k_ssd_step_rows|k_conv_rows|k_attn_rows'
    timeout 400 "$NCU_BIN" --metrics gpu__time_duration.sum --kernel-name "$K" \
        --launch-skip 0 --launch-count 2000 --print-summary per-kernel \
        ./build-cuda/bench/bench_gpu --batch 1 --seq 2048 --steps 1 --bf16 --only teacher \
        > "$OUT/ncu_teacher.txt" 2>&1
    echo "ncu rc=$? (full output: $OUT/ncu_teacher.txt)"
    grep -E "^  k_|gpu__time_duration.sum|Invocations" "$OUT/ncu_teacher.txt" | head -60
fi
exit $rc
