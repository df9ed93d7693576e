# gpu_deps.sh — sourced by the GPU machine's scripts (gpu_decode_check.sh, gpu_perf_check.sh,
# gpu_ssd_check.sh) from the repository root: the build dependencies for `make cuda "${MK[@]}"`.
# The system's (MK empty), or, where .gpu/debs/*.deb holds Debian's packages (a GPU machine
# without them installed), a sysroot extracted from those (dpkg -x) into .gpu/sysroot, with
# LD_LIBRARY_PATH and make's PKG_* / SERVE_* flags pointing at it; .gpu/shared, when present,
# becomes MOLT_SHARED.
MK=()
if ls .gpu/debs/*.deb > /dev/null 2>&1; then
  P=$PWD/.gpu/sysroot
  mkdir -p "$P"
  for f in .gpu/debs/*.deb; do dpkg -x "$f" "$P"; done
  L=$P/usr/lib/x86_64-linux-gnu
  export LD_LIBRARY_PATH=$L:$L/openblas-pthread:${LD_LIBRARY_PATH:-}
  [ -d .gpu/shared ] && export MOLT_SHARED=$PWD/.gpu/shared
  MK=(PKG_CFLAGS="-I$P/usr/include -I$P/usr/include/cjson -I$P/usr/include/x86_64-linux-gnu/openblas-pthread"
      PKG_LIBS="-L$L -L$L/openblas-pthread -lcjson -lpcre2-8 -lopenblas -Wl,-rpath,$L:$L/openblas-pthread"
      SERVE_CFLAGS="-I$P/usr/include" SERVE_LIBS="-L$L -lmicrohttpd")
fi

# For the check scripts (gpu_ssd_check.sh, gpu_table_check.sh): with OUT and LIMIT set, `before N`
# is false (and says so) once N seconds have passed since sourcing — a section that would run
# past LIMIT is skipped; gpu_build runs `make cuda` into $OUT/build.log (exit on failure).
B=build-cuda
T0=$(date +%s)
before() { [ $(($(date +%s) - T0)) -lt "$1" ] || { echo "(skipped: the ${LIMIT:-?}s budget)"; return 1; }; }
gpu_build() {
  make -j"$(nproc)" cuda "${MK[@]}" > "$OUT/build.log" 2>&1 ||
    { echo "make cuda failed"; tail -20 "$OUT/build.log"; exit 1; }
}
