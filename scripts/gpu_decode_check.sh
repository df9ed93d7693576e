#!/usr/bin/env bash
# gpu_decode_check.sh — issue 12's decode work checked on a GPU in one call: `make cuda`,
# test_device (whole models vs the CPU, recorded decode steps = direct steps bit for bit) and
# test_backend_cuda (every op vs the CPU), `molt generate --device cuda` against the CPU's text
# (stories260K: greedy, batch 4 greedy and sampled through molt_generate_many's device
# sampling), then bench_gpu's decode GEMVs alone and Llamba-1B decode at batch 1/16/64/256 with
# CUDA graphs on and off (MOLT_CUDA_GRAPHS=0), fp32 and bf16 GEMMs: a table at the end, JSON
# lines in $OUT. Run from the repository root on the GPU machine; about 5 minutes on an H100.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu_decode}
mkdir -p "$OUT"
B=build-cuda
. scripts/gpu_deps.sh # MK: the build dependencies (the system's or a .gpu/debs sysroot)
make -j"$(nproc)" cuda "${MK[@]}" > "$OUT/build.log" 2>&1 ||
  { echo "make cuda failed"; tail -20 "$OUT/build.log"; exit 1; }
rc=0
for t in test_device test_backend_cuda; do
  timeout 300 $B/tests/$t > "$OUT/$t.log" 2>&1; r=$?
  echo "$t rc=$r: $(tail -1 "$OUT/$t.log")"; [ $r -eq 0 ] || rc=1
done
grep -E "recorded steps|^FAIL" "$OUT/test_device.log" | head -24
M=models/stories260K/stories260K.bin
for a in "-t 0 -n 200" "-t 0 -n 60 -b 4" "-t 0.8 -s 3 -n 60 -b 4"; do
  c=$($B/molt generate $M $a 2>/dev/null | md5sum | cut -c1-8)
  g=$($B/molt generate $M $a --device cuda 2>/dev/null | md5sum | cut -c1-8)
  echo "generate $a: cpu $c gpu $g $([ "$c" = "$g" ] && echo same || echo DIFFERENT)"
done
: > "$OUT/bench.jsonl"
for mm in "" "--bf16"; do
  timeout 100 $B/bench/bench_gpu $mm --only gemv 2>&1 | grep '"gemv"' >> "$OUT/bench.jsonl"
  for g in 1 0; do
    MOLT_CUDA_GRAPHS=$g timeout 120 $B/bench/bench_gpu $mm --only decode 2>&1 | grep '"decode"' |
      sed "s/^{/{\"graphs_env\": $g, /" >> "$OUT/bench.jsonl"
  done
done
python3 - "$OUT/bench.jsonl" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["bench"] == "gemv":
        print(f"gemv   {r['matmul']:4} T={r['T']:3} {r['in']:5}x{r['out']:6} {r['us']:8.1f} us "
              f"{r['weight_gb_per_s']:6.0f} GB/s")
    else:
        print(f"decode {r['matmul']:4} graphs={r['graphs_env']} w={r['weights']:4} b={r['batch']:3} "
              f"{r['sampling'][:6]} replays={r['graph_replays']:3} {r['tokens_per_s']:8.0f} tok/s "
              f"{r['ms_per_step']:7.3f} ms")
PY
exit $rc
