#!/usr/bin/env bash
# molt bench MODEL: prefill and decode speed of a model (stories260K, shipped in models/).
# --json: one object whose rows are the prefill and one decode row per --batch size, every
# speed positive and consistent with its time (tok/s = tokens / time), the KV + state bytes
# growing with the batch; the table mode prints the same rows; --weights q8_0 runs; bad input
# (a batch of 0, an empty list item, a prompt past the model's context, no model, a missing
# file) is an error with a message and a non-zero exit, no crash; without --prompt the prompt
# fits the model's context.
set -u
MOLT=${MOLT_BIN:-build/molt}
PY=${PYTHON:-/usr/bin/python3}
M=models/stories260K/stories260K.bin
[ -f "$M" ] || { echo "SKIP: needs $M"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
B=(bench "$M" --prompt 24 --decode 8 --rounds 2)
$MOLT "${B[@]}" --batch 1,3,5 --json > "$T/j" 2> "$T/err" || { echo "FAIL: bench --json rc $?"; cat "$T/err"; exit 1; }
"$PY" - "$T/j" <<'P' || fail=1
import json, sys
o = json.load(open(sys.argv[1]))
bad = []
rows = o["rows"]
if [r["what"] for r in rows] != ["prefill", "decode", "decode", "decode"]:
    bad.append(f"rows {[r['what'] for r in rows]}")
if [r["batch"] for r in rows] != [1, 1, 3, 5]:
    bad.append(f"batches {[r['batch'] for r in rows]}")
p = rows[0]
if not (p["tokens"] == 24 and p["tok_per_s"] > 0 and abs(p["tok_per_s"] * p["ms"] / 1e3 - 24) < 0.5):
    bad.append(f"prefill row {p}")
for r in rows[1:]:
    # decode: ms a step; tok/s = batch / step time
    if not (r["steps"] == 8 and r["tok_per_s"] > 0 and
            abs(r["tok_per_s"] * r["ms"] / 1e3 - r["batch"]) < 0.05 * r["batch"]):
        bad.append(f"decode row {r}")
sb = [r["state_bytes"] for r in rows[1:]]
if not (sb[0] > 0 and sb[0] < sb[1] < sb[2]):
    bad.append(f"state bytes {sb}")
if o["arch"] != "llama" or o["n_params"] != 260032 or o["device"] != "cpu":
    bad.append(f"header {o['arch']} {o['n_params']} {o['device']}")
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
P
$MOLT "${B[@]}" --batch 2 > "$T/t" 2> /dev/null || { echo "FAIL: bench table rc $?"; fail=1; }
{ grep -q "^prefill " "$T/t" && grep -q "^decode  *2 " "$T/t"; } || { echo "FAIL: table rows"; cat "$T/t"; fail=1; }
$MOLT "${B[@]}" --batch 1 --weights q8_0 --json > "$T/q" 2> "$T/err" && grep -q '"weights":"q8_0"' "$T/q" ||
  { echo "FAIL: --weights q8_0"; cat "$T/err" "$T/q"; fail=1; }
# no --prompt: 512 tokens, or what the model's context leaves after --decode (stories260K: 512 - 8)
$MOLT bench "$M" --decode 8 --rounds 1 --batch 1 --json > "$T/d" 2> "$T/err" &&
  grep -q '"what":"prefill","batch":1,"tokens":504' "$T/d" ||
  { echo "FAIL: the default prompt does not fit the context"; cat "$T/err" "$T/d"; fail=1; }
bad_arg() { # expected rc, what stderr must say, args...
  local want=$1 msg=$2; shift 2
  $MOLT "$@" > /dev/null 2> "$T/err"; local rc=$?
  { [ $rc = "$want" ] && grep -q -- "$msg" "$T/err"; } || { echo "FAIL: molt $* -> rc $rc (want $want, '$msg')"; cat "$T/err"; fail=1; }
}
bad_arg 2 "--batch" "${B[@]}" --batch 0
bad_arg 2 "empty item" "${B[@]}" --batch 1,,4
bad_arg 2 "context" bench "$M" --prompt 500 --decode 100
bad_arg 2 "leaves no room" bench "$M" --decode 600
bad_arg 2 "no MODEL" bench
bad_arg 1 "nope.bin" bench "$T/nope.bin"
[ $fail = 0 ] && echo "test_bench_cmd: all checks passed"
exit $fail
