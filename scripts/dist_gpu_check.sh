#!/usr/bin/env bash
# dist_gpu_check.sh — the GPU half of issue 18 (data-parallel train / distill over NCCL), in one
# call. Run from the repository root on a machine with 1 or more GPUs, after `make cuda` (it runs
# it) and scripts/install-deps.sh (Open MPI). No argument needed; MOLT_DIST_STEPS (default 10)
# and MOLT_DIST_SEQ (default 2048) size the benchmark.
#  1. world 1 over NCCL equals a plain run: `molt train` (stories260K, cuda) plain vs
#     `mpirun -np 1`, every logged field but tok/s bit-identical, same final weights;
#  2. N = 2, 4, 8 ranks (as many as there are GPUs): the same run over NCCL, losses within 2e-5
#     of the 1-GPU run (global batch 8 = N × 8/N rows), and `molt distill` (stage 3) 2 ranks vs 1;
#  3. throughput of the 1B-shape MOHAWK stage-3 step (build-cuda/bench/bench_dist: B 1 × T 2048
#     per GPU, weak scaling) on 1, 2, 4, 8 GPUs: tokens/s, per GPU, scaling efficiency vs 1
#     GPU, memory, and the days 8B tokens would take — a markdown table for docs/BENCHMARKS.md.
# Exit 0 only when every check passed.
set -u
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
make -j"$(nproc)" cuda > /tmp/dist_gpu_build.log 2>&1 || { tail -20 /tmp/dist_gpu_build.log; exit 1; }
MOLT=build-cuda/molt BENCH=build-cuda/bench/bench_dist
command -v mpirun > /dev/null || { echo "FAIL: mpirun not found (scripts/install-deps.sh)"; exit 1; }
ngpu=$(nvidia-smi -L 2>/dev/null | wc -l)
[ "$ngpu" -ge 1 ] || { echo "FAIL: no GPU found (nvidia-smi -L)"; exit 1; }
echo "GPUs: $ngpu ($(nvidia-smi --query-gpu=name --format=csv,noheader | head -1))"
MPI=(timeout 900 mpirun --oversubscribe --bind-to none -x NCCL_NVLS_ENABLE)
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
M=models/stories260K/stories260K.bin
DATA=tests/fixtures/data/tinystories/tinystories_v1_valid_head_40k.txt
ARGS=(--data "$DATA" --seq 64 --batch 8 --steps 12 --save-every 6 --eval-every 6 --eval-batches 2
      --lr 2e-3 --device cuda -q)
fail=0
cmp_logs() { # A B TOL
  /usr/bin/python3 - "$T/$1/log.jsonl" "$T/$2/log.jsonl" "$3" "$2" <<'PY'
import json, sys
rd = lambda f: {r["step"]: r for r in map(json.loads, open(f))}
a, b, tol = rd(sys.argv[1]), rd(sys.argv[2]), float(sys.argv[3])
strip = lambda r: {k: v for k, v in r.items() if k != "tok_per_s"}
worst = max(abs(a[s][k] - b[s][k]) for s in a for k in ("loss", "eval_loss") if k in a[s])
same = all(strip(a[s]) == strip(b.get(s, {})) for s in a)
ok = same if tol == 0 else (a.keys() == b.keys() and worst <= tol)
print(f"  {sys.argv[4]}: {len(a)} steps, max |d loss| {worst:.1e}, bit-identical: {same}"
      f" -> {'ok' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
}
echo "1. world 1 over NCCL vs a plain GPU run"
$MOLT train $M "${ARGS[@]}" -o "$T/plain" > /dev/null 2> "$T/plain.err" || { cat "$T/plain.err"; exit 1; }
"${MPI[@]}" -np 1 $MOLT train $M "${ARGS[@]}" -o "$T/n1" > /dev/null 2> "$T/n1.err" || { cat "$T/n1.err"; exit 1; }
cmp_logs plain n1 0 || fail=1
cmp -s "$T/plain/model.safetensors" "$T/n1/model.safetensors" && echo "  final weights identical" ||
  { echo "  FAIL: final weights differ"; fail=1; }
echo "2. N GPUs vs 1 (NCCL all-reduce, ZeRO-1, checkpoints by rank 0)"
for n in 2 4 8; do
  [ "$n" -le "$ngpu" ] || { echo "  $n ranks: not run ($ngpu GPUs)"; continue; }
  "${MPI[@]}" -np $n $MOLT train $M "${ARGS[@]}" -o "$T/n$n" > /dev/null 2> "$T/n$n.err" ||
    { echo "  FAIL: $n ranks"; cat "$T/n$n.err"; fail=1; continue; }
  cmp_logs plain "n$n" 2e-5 || fail=1
done
if [ "$ngpu" -ge 2 ]; then
  D=(--data "$DATA" --seq 64 --batch 8 --stage1-tokens 0 --stage2-tokens 0 --stage3-tokens 5120
     --lr3 2e-3 --device cuda -q)
  $MOLT distill $M "${D[@]}" -o "$T/d1" > /dev/null 2>&1 &&
  "${MPI[@]}" -np 2 $MOLT distill $M "${D[@]}" -o "$T/d2" > /dev/null 2> "$T/d2.err" &&
  /usr/bin/python3 - "$T" <<'PY' || { echo "  FAIL: distill over 2 GPUs"; fail=1; }
import json, sys
a, b = (json.load(open(f"{sys.argv[1]}/{d}/report.json"))["stages"][2] for d in ("d1", "d2"))
r = max(abs(a[k] - b[k]) / abs(a[k]) for k in ("first_loss", "final_loss_mean_last10pct"))
print(f"  distill stage 3, 2 GPUs vs 1: max relative difference {r:.1e} (tolerance 1e-4)")
sys.exit(0 if r <= 1e-4 else 1)
PY
fi
echo "3. 1B-shape MOHAWK stage-3 step, B 1 x T ${MOLT_DIST_SEQ:-2048} per GPU"
for n in 1 2 4 8; do
  [ "$n" -le "$ngpu" ] || continue
  "${MPI[@]}" -np $n $BENCH --seq "${MOLT_DIST_SEQ:-2048}" --steps "${MOLT_DIST_STEPS:-10}" \
    > "$T/b$n.json" 2> "$T/b$n.err" || { echo "  FAIL: bench on $n GPUs"; cat "$T/b$n.err"; fail=1; }
  cat "$T/b$n.json"
done
/usr/bin/python3 - "$T" <<'PY'
import glob, json, sys
rs = sorted((json.loads(open(f).read()) for f in glob.glob(f"{sys.argv[1]}/b*.json")
             if open(f).read().strip()), key=lambda r: r["world"])
if rs:
    base = rs[0]["tokens_per_s"] / rs[0]["world"]
    print("\n| GPUs | tokens/s | per GPU | scaling efficiency | ms/step | GPU memory (rank 0) |"
          " AdamW moments / GPU | 8B tokens take |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rs:
        eff = r["tokens_per_s"] / (base * r["world"])
        days = 8e9 / r["tokens_per_s"] / 86400
        print(f"| {r['world']} | {r['tokens_per_s']:.0f} | {r['tokens_per_s_per_gpu']:.0f} |"
              f" {eff:.0%} | {r['ms_per_step']:.1f} | {r['device_gb_used_rank0']:.1f} GB |"
              f" {r['moments_per_rank_gb']:.2f} GB | {days:.1f} days |")
PY
[ $fail -eq 0 ] && echo "dist_gpu_check: all checks passed" || echo "dist_gpu_check: FAILED"
exit $fail
