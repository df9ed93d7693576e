#!/usr/bin/env bash
# make fuzz: builds every fuzz/fuzz_*.c with clang's libFuzzer + ASan + UBSan
# against a sanitized build of the library and runs each for FUZZ_SECONDS
# (default 60) over its corpus (fuzz/corpus/<name>, new inputs kept in
# build-fuzz/corpus/<name>). Needs clang and libclang-rt-14-dev.
set -euo pipefail
SECS=${FUZZ_SECONDS:-60}
command -v clang >/dev/null || { echo "make fuzz needs clang (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
make -s BUILD=build-fuzz CC=clang SAN=1 OPT=-O1 EXTRA_CFLAGS=-fsanitize=fuzzer-no-link build-fuzz/libmolt.a
FLAGS="-std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -g -O1 -Iinclude -Isrc $(pkg-config --cflags libcjson libpcre2-8 openblas)"
LIBS="$(pkg-config --libs libcjson libpcre2-8 openblas) -fopenmp -lm"
status=0
for src in fuzz/fuzz_*.c; do
  name=$(basename "$src" .c); short=${name#fuzz_}
  bin=build-fuzz/$name
  clang $FLAGS -fsanitize=fuzzer,address,undefined "$src" build-fuzz/libmolt.a $LIBS -o "$bin"
  mkdir -p "build-fuzz/corpus/$short"
  echo "== $name: ${SECS}s" >&2
  "$bin" -max_total_time="$SECS" -rss_limit_mb=4096 "build-fuzz/corpus/$short" "fuzz/corpus/$short" 2>&1 | tail -n 3 || status=1
done
exit $status
