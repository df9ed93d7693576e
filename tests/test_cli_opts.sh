#!/usr/bin/env bash
# The option tables of the CLI (tools/molt/opt.c): every command's --help is
# generated and lists every option the command has always had (names other
# scripts depend on), each of which the parser knows; out-of-range values,
# unknown options and missing values exit 2 with one message naming the
# option; --name=V means --name V; a repeated option, a value given to a flag
# and a value outside a fixed set are refused.
set -u
MOLT=${MOLT_BIN:-build/molt}
. tests/assets.sh
ST=$(dirname "$(asset models/stories260K/stories260K.bin)")
[ -f "$ST/stories260K.bin" ] || { echo "needs $ST"; exit 77; }
M="$ST/stories260K.bin"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0; n=0
no() { echo "FAIL $*"; fail=$((fail+1)); }

# --- every option of every command is in its --help, and known to the parser
declare -A OPTS=(
  [generate]="-p --prompt -n --max-new -t --temp --top-k --top-p -s --seed --tokenizer --threads -q --quiet -b --batch"
  [eval]="--text --window --sep --max-tokens --tokenizer --threads --json --task --pairs --queries --examples --seed --kv-task"
  [info]="--tokenizer --json"
  [convert]="-o --out --tokenizer --dtype"
  [train]="--data --format --sep --eval-data -o --out --seq --batch --accum --steps --tokens --lr --min-lr --schedule --warmup --decay --wd --clip --eval-every --eval-batches --save-every --freeze --seed --resume --tokenizer --threads -q --quiet"
  [distill]="--tokenizer -o --out --d-state --student-heads --init --no-ssm-bias --data --sep --sample-tokens --eval-data --kv-task --kv-pairs --kv-examples --kv-data-frac --seq --batch --tokens --stage1-tokens --stage2-tokens --stage3-tokens --stage3-only --lr1 --lr2 --lr3 --tau --freeze-mlp --seed --resume --threads -q --quiet"
  [hybridize]="--heads --keep --keep-frac --random-heads --ranking --freeze-kept -o --out --seed --data"
  [heads]="--pairs --examples --seed --seeds --kv-task --top --json -o --out --tokenizer --threads -q --quiet"
)
for cmd in "${!OPTS[@]}"; do
  n=$((n+1))
  $MOLT $cmd --help > "$T/help" 2> "$T/err"; rc=$?
  [ $rc -eq 0 ] && [ -s "$T/help" ] && [ ! -s "$T/err" ] || { no "$cmd --help: exit $rc"; cat "$T/err"; continue; }
  grep -q "^usage: molt $cmd " "$T/help" || no "$cmd --help: no usage line"
  $MOLT $cmd -h | cmp -s - "$T/help" || no "$cmd -h differs from --help"
  for o in ${OPTS[$cmd]}; do
    # "  -o, --out DIR" / "      --out DIR": the option as a word at the start of a row
    grep -qE -- "^  (-[a-z], )?(    )?$o( |,|$)|^  $o, " "$T/help" || no "$cmd --help lacks $o"
    # the parser knows it (no model given: nothing runs)
    $MOLT $cmd "$o" > /dev/null 2> "$T/err"
    grep -q "unknown option" "$T/err" && no "$cmd: $o is unknown to the parser"
  done
done
echo "ok   --help of ${#OPTS[@]} commands lists their options"

# --- defaults in --help come from the table, not from options given before --help
n=$((n+1))
$MOLT generate -n 7 --help | grep -qE -- "--max-new N .*\(default 256\)" || no "generate --help: --max-new default"
$MOLT train --help | grep -qE -- "--seq T .*\(default 256\)" || no "train --help: --seq default"
$MOLT eval --help | grep -qE -- "--pairs .*\(default 10,20,40\)" || no "eval --help: --pairs default"

# --- usage errors: exit 2, one error line that names the option (and the value)
# bad NAME WANT... -- command ...
bad() {
  local name=$1; shift; local want=()
  while [ "$1" != "--" ]; do want+=("$1"); shift; done; shift
  n=$((n+1))
  "$@" > "$T/out" 2> "$T/err"; local rc=$?
  if [ $rc -ne 2 ]; then no "$name: exit $rc (want 2)"; cat "$T/err"; return; fi
  [ -s "$T/out" ] && no "$name: wrote to stdout"
  [ "$(grep -c error "$T/err")" -eq 1 ] || { no "$name: want exactly one error line"; cat "$T/err"; }
  for w in "${want[@]}"; do
    grep -qF -- "$w" "$T/err" || { no "$name: stderr lacks \"$w\""; cat "$T/err"; }
  done
  echo "ok   $name: $(grep error "$T/err")"
}
bad int-below-range "-n" '"-1"' "[0, " -- $MOLT generate "$M" -n -1
bad int-not-a-number "--top-k" '"3x"' "whole number" -- $MOLT generate "$M" --top-k 3x
bad float-above-range "--top-p" '"1.5"' "[0, 1]" -- $MOLT generate "$M" --top-p 1.5
bad float-eq-form "--lr" '"20"' "[0, 10]" -- $MOLT train "$M" --lr=20
bad int-eq-form-alias "-n" '"many"' -- $MOLT generate "$M" -n=many
bad threads-zero "--threads" '"0"' "[1, 256]" -- $MOLT eval "$M" --threads 0
bad heads-pairs "--pairs" '"0"' -- $MOLT heads "$M" --pairs 0
bad frac-range "--kv-data-frac" '"1"' -- $MOLT distill "$M" -o "$T/x" --kv-data-frac 1
bad keep-frac-range "--keep-frac" '"2"' -- $MOLT hybridize "$M" -o "$T/x" --keep-frac 2
bad unknown "unknown option --frobnicate" -- $MOLT generate "$M" --frobnicate
bad unknown-suggest "unknown option --top_k" "did you mean --top-k" -- $MOLT generate "$M" --top_k 3
bad unknown-eq "unknown option --nope" -- $MOLT info "$M" --nope=1
bad missing-value "--text needs a value" -- $MOLT eval "$M" --text
bad missing-value-alias "-o needs a value" -- $MOLT convert "$M" -o
bad missing-list "--data needs at least one FILE" -- $MOLT train "$M" -o "$T/x" --data --steps 1
bad twice "--seed is given twice" -- $MOLT generate "$M" --seed 1 -s 2
bad flag-value "--json takes no value" -- $MOLT info "$M" --json=yes
bad choice "--dtype must be f32, bf16 or f16" '"f8"' -- $MOLT convert "$M" -o "$T/c" --dtype f8
bad extra-arg "unexpected argument" -- $MOLT info "$M" "$M"
bad batch-below-range "-b" '"0"' "[1, 4096]" -- $MOLT generate "$M" -b 0
bad no-plan "exactly one" -- $MOLT hybridize "$M" -o "$T/x"
bad plan-in-distill "molt hybridize" -- $MOLT distill "$M" -o "$T/x" --heads 0:0
bad plan-syntax "LAYER:HEAD" -- $MOLT hybridize "$M" -o "$T/x" --heads 3-1

# --- --name=V and -a=V mean the same as --name V; "--" ends the options
n=$((n+1))
a=$($MOLT generate "$M" --max-new 12 --temp 0 --prompt "Once upon" -q 2>&1) || no "generate (spaces)"
b=$($MOLT generate "$M" --max-new=12 --temp=0 --prompt="Once upon" -q 2>&1) || no "generate (--name=V)"
c=$($MOLT generate "$M" -n=12 -t=0 -p "Once upon" -q 2>&1) || no "generate (-a=V)"
[ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" = "$c" ] || { no "--name=V output differs"; printf '%s\n---\n%s\n---\n%s\n' "$a" "$b" "$c"; }
$MOLT info --json -- "$M" | grep -qE '"n_layer": ?5' || no "info -- MODEL"
$MOLT info --tokenizer="$ST/tok512.bin" "$M" | grep -q "layers *5" || no "info --tokenizer=F"
echo "ok   --name=V, -a=V and -- work"

echo "$((n-fail)) of $n option checks passed"
[ $fail -eq 0 ]
