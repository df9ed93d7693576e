#!/usr/bin/env bash
# test_hostile_input.sh — inputs that used to hang, read without bound or be
# silently misread now fail at once with a message naming the problem:
#   - a FIFO as MODEL or as --tokenizer (the open blocked forever);
#   - `eval --text /dev/zero` (read until memory ran out);
#   - list options with empty items: `--pairs 10,,20` (read as 10,20) and
#     `--heads 0:1,` (read as 0:1).
# Each command runs under `timeout 20`: a hang fails the test.
set -u
cd "$(dirname "$0")/.."
MOLT=${MOLT:-./molt}
ST=models/stories260K/stories260K.bin
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
fail=0
# expect_err NAME PATTERN CMD...: exits non-zero (not by timeout), stderr matches PATTERN
expect_err() {
  local name=$1 pat=$2; shift 2
  timeout 20 "$@" >/dev/null 2>"$W/err"; local rc=$?
  if [ $rc = 124 ]; then echo "FAIL $name: hung (killed after 20 s)"; fail=1
  elif [ $rc = 0 ]; then echo "FAIL $name: exited 0"; fail=1
  elif ! grep -q -- "$pat" "$W/err"; then echo "FAIL $name: message was: $(head -2 "$W/err")"; fail=1
  fi
}
mkfifo "$W/fifo"
expect_err "FIFO model" "not a regular file" $MOLT generate "$W/fifo" -n 3
expect_err "FIFO tokenizer" "fifo" $MOLT generate $ST --tokenizer "$W/fifo" -n 3
expect_err "text from /dev/zero" "not a regular file or pipe" $MOLT eval $ST --text /dev/zero
expect_err "--pairs 10,,20" "empty item" $MOLT eval $ST --task kv --pairs 10,,20 --examples 2
expect_err "--pairs 10," "empty item" $MOLT eval $ST --task kv --pairs 10, --examples 2
expect_err "--heads 0:1," "LAYER:HEAD" $MOLT hybridize $ST --heads 0:1, -o "$W/h"
[ -e "$W/h" ] && { echo "FAIL --heads 0:1,: output directory created"; fail=1; }
# a pipe with a writer is still read to its end
printf 'Once upon a time there was a cat.\n' > "$W/t.txt"
want=$($MOLT eval $ST --text "$W/t.txt" 2>/dev/null | tail -1)
got=$(cat "$W/t.txt" | $MOLT eval $ST --text /dev/stdin 2>/dev/null | tail -1)
[ -n "$want" ] && [ "$got" = "$want" ] || { echo "FAIL eval from a pipe: '$got' vs '$want'"; fail=1; }
[ $fail = 0 ] && echo "test_hostile_input: all checks passed"
exit $fail
