#!/usr/bin/env bash
# Issue 13's small items: a llama2.c header with vocab_size = INT_MIN is
# refused without undefined behaviour (the loader is rebuilt here with UBSan,
# which aborts on the negation the old code did); error messages name a path
# once ("molt: error: DIR: DIR/config.json: ..." was printed before), and name
# the file that failed, not the model.
set -u
MOLT=${MOLT_BIN:-build/molt}
LIB=${MOLT_LIB:-${MOLT_BUILD:-build}/libmolt.a}
case ${MOLT_BUILD:-build} in # a sanitized library needs its runtime in the harness too
  *asan*) SANF=-fsanitize=address,undefined ;;
  *tsan*) SANF="-fsanitize=thread -fsanitize=undefined" ;;
  *) SANF=-fsanitize=undefined ;;
esac
SRC=${MOLT_SRC:-.} # the tree whose src/io/llama2c.c is checked
ST=models/stories260K/stories260K.bin
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
py=/usr/bin/python3

# --- llama2.c vocab INT_MIN, under UBSan (src/io/llama2c.c of this tree, the rest from $LIB)
$py -c "import struct,sys; open(sys.argv[1],'wb').write(struct.pack('<7i',8,16,1,2,2,-2**31,4)+bytes(4000))" "$T/intmin.bin"
cat > "$T/h.c" <<'C'
#include "models/model.h"
#include <stdio.h>
int main(int argc, char **argv) {
    molt_ctx *ctx = molt_ctx_new();
    molt_model *m = NULL;
    molt_status st = model_load_llama2c(ctx, argv[1], &m);
    printf("%s\n", st == MOLT_OK ? "loaded" : molt_last_error(ctx));
    molt_model_free(m);
    molt_ctx_free(ctx);
    return st == MOLT_ERR_FORMAT ? 0 : 1;
}
C
if ! cc -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -O1 -g -fopenmp -Iinclude -Isrc \
    $(pkg-config --cflags libcjson) $SANF -fno-sanitize-recover=undefined \
    "$T/h.c" "$SRC/src/io/llama2c.c" "$LIB" $(pkg-config --libs libcjson libpcre2-8 openblas) -lm \
    -o "$T/h" 2> "$T/cc.err"; then
  echo "FAIL llama2c-intmin: cannot build the UBSan harness"; head -5 "$T/cc.err"; fail=1
elif "$T/h" "$T/intmin.bin" > "$T/h.out" 2>&1 && grep -q "out of range" "$T/h.out"; then
  echo "ok   llama2c-intmin: $(cat "$T/h.out")"
else
  echo "FAIL llama2c-intmin:"; head -5 "$T/h.out"; fail=1
fi

# --- messages: each path once, and the file that failed
# once NAME PATH -- command: exits 1 or 2; stderr has one error line naming PATH exactly once
once() {
  local name=$1 p=$2; shift 3
  "$@" > /dev/null 2> "$T/err"; local rc=$?
  local line; line=$(grep 'error' "$T/err" | head -1)
  local k; k=$(P="$p" L="$line" $py -c 'import os; print(os.environ["L"].count(os.environ["P"]))')
  if [ $rc -eq 0 ] || [ $rc -ge 128 ] || [ "$k" != 1 ]; then
    echo "FAIL $name (exit $rc, path named $k times): $line"; fail=1
  else
    echo "ok   $name: $line"
  fi
}
mkdir -p "$T/o5/config.json"
once convert-into-dir "$T/o5" -- $MOLT convert $ST -o "$T/o5"
once eval-kv-task-missing "$T/nofile.json" -- $MOLT eval $ST --task kv --kv-task "$T/nofile.json"
printf '{"keys": ["a",,]}' > "$T/bad_task.json"
once eval-kv-task-bad "$T/bad_task.json" -- $MOLT eval $ST --task kv --kv-task "$T/bad_task.json"
once heads-task-bad "$T/bad_task.json" -- $MOLT heads $ST --kv-task "$T/bad_task.json"
# heads: an error in the task file is not the model's
$MOLT heads $ST --kv-task "$T/bad_task.json" 2> "$T/err" > /dev/null
if grep -q "error: $ST" "$T/err"; then
  echo "FAIL heads-task-blames-model: $(head -1 "$T/err")"; fail=1
else
  echo "ok   heads-task-blames-model"
fi
# train options that would silently do nothing sensible are refused before any write
DATA=tests/fixtures/data/tinystories/tinystories_v1_valid_head_40k.txt
refused() { # NAME PATTERN CMD...
  local name=$1 pat=$2; shift 2
  "$@" > /dev/null 2> "$T/err"; local rc=$?
  if [ $rc = 0 ] || ! grep -q -- "$pat" "$T/err"; then
    echo "FAIL $name: rc=$rc, $(head -1 "$T/err")"; fail=1
  else
    echo "ok   $name"
  fi
}
refused train-freeze-all "matches every parameter" \
  $MOLT train $ST --data $DATA -o "$T/fz" --steps 2 --seq 32 --batch 1 --freeze '*' -q
refused train-warmup-decay "add up to at most 1" \
  $MOLT train $ST --data $DATA -o "$T/wd" --steps 2 --seq 32 --batch 1 --warmup 0.7 --decay 0.5 -q
# distill's stage schedules (each stage a WSD over its steps), the same check, nothing written
refused distill-warmup-decay "add up to at most 1" \
  $MOLT distill $ST --data $DATA -o "$T/dwd" --seq 16 --batch 2 --tokens 320 --warmup 0.7 \
  --decay 0.5 -q
[ -e "$T/dwd" ] && { echo "FAIL distill-warmup-decay wrote $T/dwd"; fail=1; }
# a valid stage schedule is the run's setting: resuming with another one is refused
DA=(--data $DATA --seq 16 --batch 2 --tokens 320 --threads 2 -q)
if $MOLT distill $ST "${DA[@]}" -o "$T/dsch" --warmup 0.2 --decay 0.3 > /dev/null 2> "$T/err"; then
  refused distill-schedule-resume "schedule" \
    $MOLT distill $ST "${DA[@]}" -o "$T/dsch" --warmup 0.2 --decay 0.4 --resume
else
  echo "FAIL distill-schedule: $(head -1 "$T/err")"; fail=1
fi
[ -e "$T/wd" ] && { echo "FAIL train-warmup-decay wrote $T/wd"; fail=1; }
exit $fail
