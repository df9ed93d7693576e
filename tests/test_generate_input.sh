#!/usr/bin/env bash
# test_generate_input.sh — where `molt generate` takes its prompt from, and --chat:
#   - -f FILE gives exactly what -p with FILE's bytes gives; -f - reads stdin the same;
#   - a 300 KB prompt file (past the 128 KiB argv cap) runs through a tiny
#     recurrent model (no context limit), and -f - on the same bytes agrees;
#   - a missing file, -p with -f, --chat with -p / -b, and an empty file each fail
#     with a message naming the problem (exit 1 or 2, nothing on stdout);
#   - --chat: two turns piped on stdin print two replies; greedy, the second equals
#     the continuation `molt generate -p` computes for the concatenated
#     conversation (turn 1 + reply 1 + turn 2), i.e. the state carried across the
#     turns is the state of the whole text; a turn is one line, empty lines skipped;
#     a llama (KV-cache) model and a recurrent one both;
#   - --chat stops a reply at -n tokens and at the context (--ctx) with an error.
set -u
cd "$(dirname "$0")/.."
MOLT=${MOLT_BIN:-./molt}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
ST=models/stories260K/stories260K.bin

# -f == -p == -f -
printf 'Once upon a time, a cat' > "$W/p.txt"
a=$($MOLT generate $ST -p 'Once upon a time, a cat' -t 0 -n 40 -q)
b=$($MOLT generate $ST -f "$W/p.txt" -t 0 -n 40 -q)
c=$($MOLT generate $ST -f - -t 0 -n 40 -q < "$W/p.txt")
[ -n "$a" ] && [ "$a" = "$b" ] || bad "-f differs from -p: [$b] vs [$a]"
[ "$a" = "$c" ] || bad "-f - differs from -p: [$c] vs [$a]"
# sampled too (same seed)
a=$($MOLT generate $ST -p 'Once upon a time, a cat' -t 0.8 -s 7 -n 40 -q)
b=$($MOLT generate $ST -f "$W/p.txt" -t 0.8 -s 7 -n 40 -q)
[ "$a" = "$b" ] || bad "-f differs from -p when sampling"

# a 300 KB prompt through a tiny recurrent model (max_position_embeddings 1<<20)
cat > "$W/cfg.json" <<'EOF'
{"model_type": "llamba", "vocab_size": 512, "tie_embeddings": true, "d_model": 16, "n_layer": 1,
 "norm_epsilon": 1e-5, "mlp_cfg": {"intermediate_size": 32},
 "ssm_cfg": {"d_state": 8, "n_v_heads": 2, "n_qk_heads": 2, "expand": 1, "chunk_size": 64}}
EOF
cp models/stories260K/tok512.bin "$W/tokenizer.bin"
DATA=tests/fixtures/data/tinystories/tinystories_v1_valid_head_40k.txt
head -c 4000 $DATA > "$W/d.txt"
$MOLT train "$W/cfg.json" --data "$W/d.txt" --steps 1 --seq 16 --batch 1 --eval-every 0 \
  -o "$W/tiny" -q > /dev/null 2>&1 || bad "could not make the tiny model"
for i in 1 2 3 4 5 6 7 8; do cat $DATA; done | head -c 307200 > "$W/big.txt"
[ "$(wc -c < "$W/big.txt")" -eq 307200 ] || bad "big prompt size"
out=$($MOLT generate "$W/tiny" -f "$W/big.txt" -t 0 -n 8 2>"$W/err"); rc=$?
[ $rc -eq 0 ] || bad "300 KB prompt: exit $rc: $(cat "$W/err")"
grep -q '^prompt [0-9]\{5,\} tokens' "$W/err" || bad "300 KB prompt: not all fed: $(cat "$W/err")"
head -c 300000 "$W/big.txt" | cmp -s - <(printf '%s' "$out" | head -c 300000) \
  || bad "300 KB prompt not echoed whole"
out2=$($MOLT generate "$W/tiny" -f - -t 0 -n 8 -q < "$W/big.txt")
[ "$out" = "$out2" ] || bad "300 KB prompt: -f - differs from -f FILE"

# errors
expect_fail() { # WHAT RC PATTERN -- command...
  local what=$1 want=$2 pat=$3; shift 4
  local o; o=$("$@" 2>"$W/e"); local rc=$?
  [ $rc -eq "$want" ] || bad "$what: exit $rc (want $want)"
  [ -z "$o" ] || bad "$what: printed to stdout: $o"
  grep -q -- "$pat" "$W/e" || bad "$what: message: $(cat "$W/e")"
}
expect_fail "missing file" 1 "$W/nope.txt: cannot open the prompt file: No such file" -- \
  $MOLT generate $ST -f "$W/nope.txt"
expect_fail "-p and -f" 2 "not both" -- $MOLT generate $ST -p x -f "$W/p.txt"
expect_fail "--chat with -p" 2 "no -p" -- $MOLT generate $ST --chat -p x
expect_fail "--chat with -b" 2 "no -b" -- $MOLT generate $ST --chat -b 2
: > "$W/empty.txt"
expect_fail "empty file" 1 "empty" -- $MOLT generate $ST -f "$W/empty.txt"
printf 'a\0b' > "$W/nul.txt"
expect_fail "NUL byte" 1 "NUL byte at offset 1" -- $MOLT generate $ST -f "$W/nul.txt"

# --chat: two turns == the concatenated conversation (greedy)
chat_check() { # MODEL T1 T2 N
  local m=$1 t1=$2 t2=$3 n=$4 r1 r2 full
  # replies may hold newlines: turn 1 alone gives reply 1 (+ "\n"), the rest is reply 2
  printf '%s\n' "$t1" | $MOLT generate "$m" --chat -t 0 -n "$n" -q > "$W/c1"
  printf '%s\n\n%s\n' "$t1" "$t2" | $MOLT generate "$m" --chat -t 0 -n "$n" -q > "$W/c2"
  local s1; s1=$(wc -c < "$W/c1")
  [ "$s1" -gt 1 ] || { bad "chat $m: empty reply 1"; return; }
  head -c "$s1" "$W/c2" | cmp -s - "$W/c1" || { bad "chat $m: turn 1 differs with 2 turns"; return; }
  r1=$(head -c $((s1 - 1)) "$W/c1"; printf x); r1=${r1%x}
  r2=$(tail -c +$((s1 + 1)) "$W/c2"); r2=${r2%$'\n'}
  [ -n "$r2" ] || { bad "chat $m: empty reply 2"; return; }
  [ "$(tail -c 1 "$W/c2" | od -An -c | tr -d ' ')" = '\n' ] || bad "chat $m: no final newline"
  # turn 1 alone is molt generate -p turn 1
  full=$($MOLT generate "$m" -p "$t1" -t 0 -n "$n" -q; printf x); full=${full%$'\n'x}
  [ "$full" = "$t1$r1" ] || bad "chat $m: reply 1 [$r1] is not generate's [$full]"
  full=$($MOLT generate "$m" -p "$t1$r1$t2" -t 0 -n "$n" -q)
  [ "$full" = "$t1$r1$t2$r2" ] || bad "chat $m: reply 2 [$r2] is not the continuation of the \
concatenated conversation: [$full]"
}
# a llama2.c tokenizer puts a dummy-prefix space before each turn: turn 2 starts with one
chat_check $ST 'Once upon a time' ' The cat was sad' 20
chat_check $ST 'Lily had a red ball.' ' She' 30
chat_check "$W/tiny" 'Once upon a time' ' The dog' 12

# the context: --ctx 24 holds turn 1 and its reply, not a second long turn
out=$(printf 'Once upon a time\nThe cat was sad and the dog was happy and they ran\n' |
  $MOLT generate $ST --chat --ctx 24 -t 0 -n 10 -q 2>"$W/e"); rc=$?
[ $rc -eq 1 ] || bad "--ctx overflow: exit $rc"
grep -q "conversation is full" "$W/e" || bad "--ctx overflow message: $(cat "$W/e")"
[ "$(printf '%s\n' "$out" | sed -n 1p | wc -c)" -gt 1 ] || bad "--ctx: turn 1 lost: [$out]"

[ $fail -eq 0 ] && echo "PASS test_generate_input"
exit $fail
