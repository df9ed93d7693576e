#!/usr/bin/env bash
# scripts/exp17/gpu.sh — the GPU half of issue 17's experiment in ONE device call: builds
# build-cuda/molt, checks the GPU answers, then runs scripts/exp17/run.sh with DEVICE=cuda in
# what is left of WALL_S seconds. Run from the repo root on the device machine with .gpu/
# carried (its debs/ hold cjson, pcre2 and OpenBLAS, unpacked into .gpu/sysroot as
# .gpu/dev.sh does):
#
#   run: command "bash scripts/exp17/gpu.sh", carry [".gpu"], timeout_s 600
#
# The device's $OUT gets at most 6 files: results.tar.gz (json/, logs/, data/test.jsonl, the
# models' configs), models.tar.part-* (the three bf16 models, ≤ 15 MiB each) and, when the
# build fails, build.log. The full run directory is RUN_DIR (/tmp/exp17) on the device.
# libmicrohttpd is not on the device image: without it `molt serve` is replaced by
# scripts/exp17/serve_http_stub.c (every other command is unchanged).
# Knobs: WALL_S (520), RUN_DIR, THREADS (8), FORCE_STUB=1 (stub serve even where
# libmicrohttpd is found: to test that path), and every run.sh knob (TRAIN_S, DIGITS, ...).
# CPU_HALF_S=S (default 0): also build build/molt and keep S seconds of WALL_S for the CPU half
# on the same models on this machine's host CPU (CPU_THREADS, default all cores; CPU_CURVE_BUDGET
# 1.5 s a problem, CPU_TPUT_RUN_S, CPU_TPUT_LONG_RUN_S, CPU_TPUT_LONG_POINTS): its
# results.tar.gz comes back in $OUT/cpu/ (for models too large to come back).
# CPU_ONLY=1: the CPU half alone, in all of WALL_S, on the models an earlier call left in RUN_DIR
# on the same (still warm) machine: a GPU call with RUN_DIR=out/exp17g, then at once
# `CPU_ONLY=1 RUN_DIR=out/exp17g bash scripts/exp17/gpu.sh` (its results.tar.gz in $OUT/cpu/).
set -euo pipefail
T0=$(date +%s)
WALL_S=${WALL_S:-520}
: "${OUT:?gpu.sh: OUT, the folder the device call returns, is not set}"
RUN=${RUN_DIR:-/tmp/exp17}
mkdir -p "$RUN/logs"
G=$PWD/.gpu P=$PWD/.gpu/sysroot
[ -d "$G/debs" ] || { echo "gpu.sh: no .gpu/debs here (carry [\".gpu\"])"; exit 2; }
mkdir -p "$P"
for f in "$G"/debs/*.deb; do dpkg -x "$f" "$P"; done
L=$P/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH=$L:$L/openblas-pthread:${LD_LIBRARY_PATH:-}
MK=(PKG_CFLAGS="-I$P/usr/include -I$P/usr/include/cjson -I$P/usr/include/x86_64-linux-gnu/openblas-pthread"
    PKG_LIBS="-L$L -L$L/openblas-pthread -lcjson -lpcre2-8 -lopenblas -Wl,-rpath,$L:$L/openblas-pthread")
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
echo "cores $(nproc)"

# molt without libmicrohttpd: the stub object stands in for serve_http.o (newer than its
# source, so make keeps it), and SERVE_LIBS is set so that the Makefile's check passes
if [ -n "${FORCE_STUB:-}" ] || [ -z "$(pkg-config --libs libmicrohttpd 2> /dev/null)" ]; then
  if [ -z "${FORCE_STUB:-}" ] && [ -f "$L/libmicrohttpd.so" ]; then
    MK+=(SERVE_CFLAGS="-I$P/usr/include" SERVE_LIBS="-L$L -lmicrohttpd")
  else
    echo "gpu.sh: no libmicrohttpd: molt serve stubbed out"
    mkdir -p build-cuda/tools/molt
    ${CC:-cc} -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -O2 -Iinclude -Isrc -Itools/molt \
      -I"$P/usr/include/cjson" -I"$P/usr/include" -c scripts/exp17/serve_http_stub.c \
      -o build-cuda/tools/molt/serve_http.o
    rm -f build-cuda/tools/molt/serve_http.d build-cuda/molt
    touch build-cuda/tools/molt/serve_http.o
    MK+=(SERVE_CFLAGS= SERVE_LIBS=-lm)
  fi
fi
t0=$(date +%s)
CPU_HALF_S=${CPU_HALF_S:-0}
CPU_ONLY=${CPU_ONLY:-}
if [ -n "$CPU_ONLY" ]; then
  for m in teacher llamba hybrid; do
    [ -f "$RUN/models/$m/config.json" ] || { echo "gpu.sh: CPU_ONLY: no $RUN/models/$m (the GPU call's RUN_DIR is gone: machine released?)"; exit 2; }
  done
  CPU_HALF_S=1
fi
if [ "$CPU_HALF_S" -gt 0 ] && ! make -j"${MAKE_J:-16}" build/molt "${MK[@]}" > "$RUN/logs/build_cpu.log" 2>&1; then
  echo "gpu.sh: CPU BUILD FAILED"; grep -E "error" "$RUN/logs/build_cpu.log" | head -20
  cp "$RUN/logs/build_cpu.log" "$OUT/build.log"; exit 1
fi
if [ -z "$CPU_ONLY" ] && ! make -j"${MAKE_J:-16}" BUILD=build-cuda CUDA=1 build-cuda/molt "${MK[@]}" > "$RUN/logs/build.log" 2>&1; then
  echo "gpu.sh: BUILD FAILED"; grep -E "error" "$RUN/logs/build.log" | head -20; tail -5 "$RUN/logs/build.log"
  cp "$RUN/logs/build.log" "$OUT/build.log"; exit 1
fi
echo "gpu.sh: build $(( $(date +%s) - t0 )) s"
M=build-cuda/molt
if [ -n "$CPU_ONLY" ]; then :
elif ! $M generate models/stories260K/stories260K.bin -n 16 -t 0 --device cuda -q > "$RUN/logs/gpu_check.log" 2>&1; then
  echo "gpu.sh: the GPU check failed:"; tail -5 "$RUN/logs/gpu_check.log"; exit 1
fi
left=$((WALL_S - ($(date +%s) - T0) - 10 - CPU_HALF_S))
echo "gpu.sh: $left s left for the experiment"
rc=0
RET=$OUT  # BUNDLE must name the returned folder: a prefix OUT=... would be seen by BUNDLE=$OUT
if [ -z "$CPU_ONLY" ]; then
  DEVICE=cuda MOLT=$M OUT=$RUN BUNDLE=$RET TOTAL_S=$left THREADS=${THREADS:-8} \
    bash scripts/exp17/run.sh || rc=$?
  echo "gpu.sh: run.sh exit $rc after $(( $(date +%s) - T0 )) s"
fi
# the CPU half on the same models, on this machine's host CPU (CPU_HALF_S > 0): its results
# come back as $OUT/cpu/results.tar.gz
if [ "$CPU_HALF_S" -gt 0 ]; then
  cl=$((WALL_S - ($(date +%s) - T0) - 8))
  echo "gpu.sh: CPU half, $cl s, $(nproc) cores"
  crc=0
  mkdir -p "$RET/cpu"
  DEVICE=cpu MOLT=build/molt MODELS_FROM=$RUN OUT=$RUN-cpu BUNDLE=$RET/cpu TOTAL_S=$cl \
    THREADS=${CPU_THREADS:-$(nproc)} MATMUL=fp32 STAGES="data single tput256 curves tputlong" \
    CURVE_BUDGET=${CPU_CURVE_BUDGET:-1.5} TPUT_RUN_S=${CPU_TPUT_RUN_S:-20} \
    TPUT_LONG_RUN_S=${CPU_TPUT_LONG_RUN_S:-25} \
    TPUT_LONG_POINTS="${CPU_TPUT_LONG_POINTS:-1024:1 1024:16 1024:64 2048:1 2048:16}" \
    bash scripts/exp17/run.sh || crc=$?
  echo "gpu.sh: CPU run.sh exit $crc after $(( $(date +%s) - T0 )) s"
  [ $rc -ne 0 ] || rc=$crc
fi
ls -la "$OUT"
exit $rc
