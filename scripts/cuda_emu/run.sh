#!/usr/bin/env bash
# scripts/cuda_emu/run.sh — the GateLoop and Mamba-3 CUDA kernels (issue 14) on the host, no GPU:
# the .cu sources are rewritten for g++ (kernel<<<grid, ...>>>(args) → EMU_LAUNCH(kernel, grid)
# (args)) against common.cuh here (one thread per block, blocks in order), built with ASan,
# and run through test_backend_cuda's op tests for the 21 ops (emu_ops.c) and test_device's
# GateLoop / Mamba-3 models (emu_models.c) against the CPU backend. Needs build/libmolt.a
# (`make -j2`). Catches index / bounds / layout / contract mistakes; not races between
# threads of a block, not GPU rounding: the GPU itself is scripts/gpu_mixers_check.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -f build/libmolt.a ] || { echo "cuda_emu: build/libmolt.a missing (make -j2)"; exit 1; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
mkdir -p "$T/kernels/cuda"
cp scripts/cuda_emu/common.cuh "$T/kernels/cuda/common.cuh"
/usr/bin/python3 - "$T" <<'PY'
import re, sys
t = sys.argv[1]
for f in ["gateloop.cu", "gateloop_backward.cu", "mamba3.cu", "mamba3_backward.cu",
          "gateloop.cuh", "mamba3.cuh"]:
    s = open("src/kernels/cuda/" + f).read()
    s = re.sub(r"(\w+)<<<(.*?)>>>\(", lambda m: "EMU_LAUNCH(%s, %s)(" % m.groups(), s, flags=re.S)
    s = s.replace("static __global__", "static")
    out = t + "/kernels/cuda/" + f if f.endswith(".cuh") else t + "/" + f[:-3] + ".cpp"
    open(out, "w").write(s)
PY
CXX="g++ -std=c++17 -O1 -g -ffp-contract=off -fsanitize=address -I$T -Isrc -Iinclude"
CC="gcc -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -g -O1 -fopenmp -fsanitize=address
    -DMOLT_CUDA -Iinclude -Isrc -Itests -I/usr/include/cjson"
for f in gateloop gateloop_backward mamba3 mamba3_backward; do
  $CXX -c "$T/$f.cpp" -o "$T/$f.o"
done
$CXX -c scripts/cuda_emu/emu_globals.cpp -o "$T/emu_globals.o"
for f in tests/testutil.c tests/testmodel.c scripts/cuda_emu/emu_ops.c \
  scripts/cuda_emu/emu_models.c; do
  $CC -c "$f" -o "$T/$(basename "$f" .c).o"
done
LIBS="build/libmolt.a -lcjson -lpcre2-8 -L/usr/lib/x86_64-linux-gnu/openblas-pthread/
      -lopenblas -lm"
K="$T/gateloop.o $T/gateloop_backward.o $T/mamba3.o $T/mamba3_backward.o $T/emu_globals.o"
for d in emu_ops emu_models; do
  g++ -fsanitize=address -fopenmp "$T/$d.o" "$T/testutil.o" "$T/testmodel.o" $K $LIBS -o "$T/$d"
done
rc=0
"$T/emu_ops" | tail -23 || rc=1
"$T/emu_models" | tail -30 || rc=1
exit $rc
