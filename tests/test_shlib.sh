#!/usr/bin/env bash
# libmolt.so and `make install` (issue 16):
#   - the shared library's soname is libmolt.so.MAJOR, its file libmolt.so.MAJOR.MINOR.PATCH of
#     molt.h's MOLT_VERSION_*, with the two symlinks;
#   - the symbols it exports (nm -D --defined-only) are exactly the MOLT_API functions declared
#     in include/molt.h, no more (no internal or target_clones symbol) and no fewer;
#   - `make install PREFIX=/opt/molt DESTDIR=TMP` installs header, libmolt.a, libmolt.so*, molt,
#     molt.pc and share/molt/kv_task.json; a tiny C program built against that tree through
#     pkg-config (shared, and --static) greedily generates the same text as the installed molt
#     binary, which runs the key-value probe from another directory (its installed kv_task.json);
#   - `make uninstall` with the same PREFIX/DESTDIR leaves no file behind.
set -u
BUILD=${MOLT_BUILD:-build}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
ver() { sed -n "s/^#define MOLT_VERSION_$1 *\([0-9][0-9]*\).*/\1/p" include/molt.h; }
MAJ=$(ver MAJOR); VER=$MAJ.$(ver MINOR).$(ver PATCH)
SO=$BUILD/libmolt.so.$VER
[ -f "$SO" ] || { echo "FAIL: $SO not built"; exit 1; }

# soname and links
soname=$(readelf -d "$SO" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
if [ "$soname" = "libmolt.so.$MAJ" ] && [ "$(readlink "$BUILD/libmolt.so.$MAJ")" = "libmolt.so.$VER" ] &&
   [ "$(readlink "$BUILD/libmolt.so")" = "libmolt.so.$MAJ" ]; then
  echo "ok   soname $soname, libmolt.so -> libmolt.so.$MAJ -> libmolt.so.$VER"
else
  echo "FAIL soname '$soname' or links: $(ls -l "$BUILD"/libmolt.so*)"; fail=1
fi
if readelf -h "$SO" | grep -q 'DYN' && ! readelf -d "$SO" | grep -q TEXTREL; then
  echo "ok   position-independent (no text relocations)"
else
  echo "FAIL $SO has text relocations or is not a shared object"; fail=1
fi

# exported symbols == the API of molt.h
grep '^MOLT_API' include/molt.h | sed 's/(.*//' | awk '{print $NF}' | tr -d '*' | sort -u > "$T/api"
nm -D --defined-only "$SO" | awk '{print $3}' | sort -u > "$T/exported"
if [ "$(wc -l < "$T/api")" -ge 50 ] && cmp -s "$T/api" "$T/exported"; then
  echo "ok   exports exactly the $(wc -l < "$T/api") MOLT_API functions of include/molt.h"
else
  echo "FAIL exported symbols differ from molt.h's MOLT_API (< api only, > exported only):"
  diff "$T/api" "$T/exported" | grep '^[<>]'; fail=1
fi

# install into a temporary DESTDIR
P=/opt/molt; D=$T/root
if ! make -s --no-print-directory install BUILD="$BUILD" PREFIX=$P DESTDIR="$D" > "$T/log" 2>&1; then
  echo "FAIL make install"; cat "$T/log"; exit 1
fi
(cd "$D" && find . -type f -o -type l | sort) > "$T/files"
want="./opt/molt/bin/molt ./opt/molt/include/molt.h ./opt/molt/lib/libmolt.a ./opt/molt/lib/libmolt.so
./opt/molt/lib/libmolt.so.$MAJ ./opt/molt/lib/libmolt.so.$VER ./opt/molt/lib/pkgconfig/molt.pc
./opt/molt/share/molt/kv_task.json"
if [ "$(tr ' ' '\n' <<< "$want" | sort)" = "$(cat "$T/files")" ]; then
  echo "ok   make install: $(wc -l < "$T/files") files and links"
else
  echo "FAIL make install put:"; cat "$T/files"; fail=1
fi
export PKG_CONFIG_PATH=$D$P/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$D
pcver=$(pkg-config --modversion molt 2>&1)
[ "$pcver" = "$VER" ] && echo "ok   pkg-config --modversion molt = $pcver" ||
  { echo "FAIL pkg-config --modversion molt: $pcver"; fail=1; }

cat > "$T/hello.c" <<'EOF'
// greedy text of a model, through the installed header and library only
#include <molt.h>
#include <stdio.h>
static void put(const char *s, size_t n, void *u) { (void)u; fwrite(s, 1, n, stdout); }
int main(int argc, char **argv) {
    molt_ctx *ctx = molt_ctx_new();
    molt_model *m = NULL;
    if (argc < 2 || molt_model_load(ctx, argv[1], NULL, &m) != MOLT_OK) {
        fprintf(stderr, "error: %s\n", molt_last_error(ctx));
        return 1;
    }
    molt_gen_params gp = molt_gen_defaults();
    gp.temperature = 0.0f;
    gp.max_new_tokens = 40;
    molt_status st = molt_generate(ctx, m, NULL, &gp, put, NULL, NULL);
    printf("\n");
    if (st != MOLT_OK)
        fprintf(stderr, "error: %s\n", molt_last_error(ctx));
    molt_model_free(m);
    molt_ctx_free(ctx);
    return st != MOLT_OK;
}
EOF
# a sanitizer build's library needs its runtime in the program too
SANFL=""
readelf -d "$SO" | grep -q 'libasan' && SANFL="-fsanitize=address,undefined"
readelf -d "$SO" | grep -q 'libtsan' && SANFL="-fsanitize=thread"
MODEL=$PWD/models/stories260K/stories260K.bin
(cd "$T" && "$D$P/bin/molt" generate "$MODEL" -t 0 -n 40 2>/dev/null) > "$T/want.txt"
[ -s "$T/want.txt" ] || { echo "FAIL: the installed molt generated nothing"; fail=1; }
# shared: the program finds libmolt.so.MAJ (its NEEDED entry) through LD_LIBRARY_PATH
if cc $SANFL "$T/hello.c" $(pkg-config --cflags --libs molt) -o "$T/hello" 2> "$T/err" &&
   readelf -d "$T/hello" | grep -q "NEEDED.*\[libmolt.so.$MAJ\]" &&
   LD_LIBRARY_PATH=$D$P/lib "$T/hello" "$MODEL" > "$T/got.txt" 2>> "$T/err" &&
   cmp -s "$T/got.txt" "$T/want.txt"; then
  echo "ok   pkg-config build against the installed libmolt.so: same greedy text as molt"
else
  echo "FAIL shared build/run against the installed tree"; cat "$T/err"; diff "$T/got.txt" "$T/want.txt" | head -5; fail=1
fi
# static: libmolt.a (-l:libmolt.a, as libmolt.so lies beside it) with Libs.private and the
# Requires.private libraries that --static adds
if cc $SANFL "$T/hello.c" $(pkg-config --static --cflags --libs molt | sed 's/-lmolt\b/-l:libmolt.a/') \
     -o "$T/hello_static" 2> "$T/err" &&
   ! readelf -d "$T/hello_static" | grep -q 'libmolt' &&
   "$T/hello_static" "$MODEL" > "$T/got_static.txt" 2>> "$T/err" &&
   cmp -s "$T/got_static.txt" "$T/want.txt"; then
  echo "ok   pkg-config --static build against the installed libmolt.a: same greedy text"
else
  echo "FAIL static build/run against the installed tree"; cat "$T/err"; fail=1
fi
# the installed molt finds share/molt/kv_task.json from any directory
if (cd "$T" && "$D$P/bin/molt" eval "$MODEL" --task kv --pairs 2 --examples 3 --json > kv.json 2> err) &&
   grep -q '"examples":3' "$T/kv.json"; then
  echo "ok   installed molt eval --task kv from $T: $(cat "$T/kv.json")"
else
  echo "FAIL installed molt eval --task kv:"; cat "$T/err" "$T/kv.json"; fail=1
fi

# uninstall removes everything it installed
if make -s --no-print-directory uninstall BUILD="$BUILD" PREFIX=$P DESTDIR="$D" > "$T/log" 2>&1 &&
   [ -z "$(find "$D" -type f -o -type l)" ]; then
  echo "ok   make uninstall leaves no file"
else
  echo "FAIL make uninstall left:"; find "$D" -type f -o -type l; cat "$T/log"; fail=1
fi
exit $fail
