#!/usr/bin/env bash
# make bench: runs every benchmark at 2 threads and prints JSON lines, then a
# table. Results are recorded by hand in docs/BENCHMARKS.md with the machine.
set -euo pipefail
BUILD=${BUILD:-build}
SHARED=${MOLT_SHARED:-$(cd .. && pwd)/shared}
T=${BENCH_THREADS:-2}
mkdir -p out
log=out/bench.jsonl; : > "$log"
run() { echo "+ $*" >&2; "$@" | tee -a "$log"; }
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores" >&2
run "$BUILD/bench/bench_infer" models/stories260K/stories260K.bin --threads "$T" --decode 256
run "$BUILD/bench/bench_infer" "$SHARED/models/kv-llama-2m" --threads "$T" --decode 256 --prefill 1024
run "$BUILD/bench/bench_context" --threads "$T"
run "$BUILD/bench/bench_batch" --threads "$T"
# issue 15: bandwidth, batch-1 decode (bytes/token, % of bandwidth), prefill and batched decode of
# the 110M Llama and 115M Mamba-2 at f32 / bf16 / q8_0 (docs/BENCHMARKS.md "Decoding at the
# bandwidth limit"; the side-by-side with llama.cpp is run by hand, see there)
run "$BUILD/bench/bench_decode" --threads "$T" --rounds 1
if [ -x "$BUILD/bench/bench_train" ]; then
  run "$BUILD/bench/bench_train" --threads "$T" || true
  [ -f bench/train_torch.py ] && run /usr/bin/python3 bench/train_torch.py --threads "$T" || true
fi
# issue 16: molt serve over loopback: time to first token cold vs a prompt-cache hit, and
# throughput / TTFT with 1 and 16 streaming clients (docs/BENCHMARKS.md "Server"; the 64-client
# soak is run by hand: the command is there)
run /usr/bin/python3 bench/serve_bench.py --molt "$BUILD/molt" --model models/stories260K/stories260K.bin \
  --serve-args "--slots 16 --threads $T" --prefix-chars 1200 --trials 5 --seconds 10 \
  --concurrency 1,16 ttft load
# issue 12: on a machine with an NVIDIA GPU (and `make cuda` built), the issue's table — molt's
# bench_gpu against the PyTorch peer (bench/peer_torch.py; MAMBA_SSM=DIR for the Triton SSD) in
# the same run: scripts/gpu_table_check.sh without its tests (BENCH_NO_GPU=1 skips it)
if [ -z "${BENCH_NO_GPU:-}" ] && [ -x build-cuda/bench/bench_gpu ] &&
   nvidia-smi -L > /dev/null 2>&1; then
  echo "+ scripts/gpu_table_check.sh (TESTS=0)" >&2
  TESTS=0 LIMIT=${BENCH_GPU_LIMIT:-3600} OUT=out/bench_gpu bash scripts/gpu_table_check.sh >&2 ||
    echo "gpu bench: some rows missing (out/bench_gpu)" >&2
  cat out/bench_gpu/table.jsonl >> "$log" 2> /dev/null || true
fi
echo >&2
/usr/bin/python3 - "$log" <<'PY' >&2 || true
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]
print(f"{'bench':<20} {'model':<40} {'context/T':>9} {'tok/s':>10}")
for r in rows:
    if 'tok_per_s' not in r and 'tokens_per_s' not in r:
        continue
    print(f"{r['bench']:<20} {str(r.get('model',''))+' '+str(r.get('weights','')):<40} {str(r.get('context', r.get('batch', r.get('tokens','')))):>9} {r.get('tok_per_s', r.get('tokens_per_s', 0)):>10.1f}")
PY
