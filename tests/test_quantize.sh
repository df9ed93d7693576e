#!/usr/bin/env bash
# molt quantize (q8_0 weight matrices): for stories260K, kv-llama-2m, mamba2-random and a
# MOHAWK student distilled here (tiny budget, Llamba), the held-out loss of the quantized model
# is within 1% of fp32 (first 40 KB of TinyStories valid: tests/fixtures); the quantized
# directory round-trips (quantizing it again writes the same bytes) and greedy text equals
# fp32's model run with --weights q8_0. Refused with nothing written: -o the input's own
# directory, a DIR that holds a model (without --overwrite), an unknown --type.
set -u
MOLT=${MOLT_BIN:-build/molt}
. tests/assets.sh
TXT=tests/fixtures/data/tinystories/tinystories_v1_valid_head_40k.txt
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
loss() { "$MOLT" eval "$@" --text "$TXT" --json 2>/dev/null |
  head -n1 | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["loss"])'; }
check() { # NAME MODEL
  local name=$1 m=$2
  "$MOLT" quantize "$m" -o "$T/$name" 2>"$T/err" || { echo "FAIL $name: quantize"; cat "$T/err"; fail=1; return; }
  local f q
  f=$(loss "$m") && q=$(loss "$T/$name") || { echo "FAIL $name: eval"; fail=1; return; }
  if /usr/bin/python3 -c "import sys; f,q=float('$f'),float('$q'); sys.exit(0 if abs(q-f)<=0.01*f else 1)"; then
    echo "ok   $name: held-out loss fp32 $f, q8_0 $q ($(/usr/bin/python3 -c "print(f'{(float(\"$q\")/float(\"$f\")-1)*100:+.3f}')")%)"
  else
    echo "FAIL $name: held-out loss fp32 $f, q8_0 $q: more than 1% apart"; fail=1
  fi
}
check stories260K models/stories260K/stories260K.bin
KV=$(asset models/kv-llama-2m); have "$KV" "kv-llama-2m q8_0 loss" && check kv-llama-2m "$KV"
M2=$(asset models/mamba2-random); have "$M2" "mamba2-random q8_0 loss" && check mamba2-random "$M2"
# a MOHAWK student (Llamba) of stories260K, distilled on a tiny budget
"$MOLT" distill models/stories260K/stories260K.bin -o "$T/student" --sample-tokens 20000 --seq 64 \
  --batch 4 --stage1-tokens 6400 --stage2-tokens 6400 --stage3-tokens 12800 --lr3 2e-3 -q \
  > /dev/null 2> "$T/err" || { echo "FAIL: distill"; cat "$T/err"; exit 1; }
check mohawk-student "$T/student"
# round trip: quantizing the quantized model writes the same bytes
"$MOLT" quantize "$T/stories260K" -o "$T/again" 2>/dev/null &&
  cmp -s "$T/stories260K/model.safetensors" "$T/again/model.safetensors" ||
  { echo "FAIL: quantizing a q8_0 model again changed its bytes"; fail=1; }
grep -q '"quant_method":[[:space:]]*"molt_q8_0"' "$T/stories260K/config.json" ||
  { echo "FAIL: config.json has no quantization_config"; fail=1; }
# the quantized directory runs what --weights q8_0 runs
G=(generate -n 120 -t 0 -q)
"$MOLT" "${G[@]}" "$T/stories260K" > "$T/g1" 2>/dev/null
"$MOLT" "${G[@]}" models/stories260K/stories260K.bin --weights q8_0 > "$T/g2" 2>/dev/null
[ -s "$T/g1" ] && cmp -s "$T/g1" "$T/g2" || { echo "FAIL: greedy text of the q8_0 file != --weights q8_0"; fail=1; }
# refusals
sum() { cat "$1"/* 2>/dev/null | md5sum; }
before=$(sum "$T/stories260K")
"$MOLT" quantize "$T/stories260K" -o "$T/stories260K/" > /dev/null 2>"$T/err"; rc=$?
{ [ $rc = 1 ] && grep -q "where the input" "$T/err" && [ "$(sum "$T/stories260K")" = "$before" ]; } ||
  { echo "FAIL: -o the input's directory (rc $rc)"; cat "$T/err"; fail=1; }
"$MOLT" quantize models/stories260K/stories260K.bin -o "$T/again" > /dev/null 2>"$T/err"; rc=$?
{ [ $rc = 1 ] && grep -q -- "--overwrite" "$T/err"; } ||
  { echo "FAIL: an existing model in DIR was not refused (rc $rc)"; cat "$T/err"; fail=1; }
"$MOLT" quantize models/stories260K/stories260K.bin -o "$T/again" --overwrite 2>/dev/null ||
  { echo "FAIL: --overwrite"; fail=1; }
"$MOLT" quantize models/stories260K/stories260K.bin -o "$T/x" --type q4 > /dev/null 2>"$T/err"; rc=$?
{ [ $rc = 2 ] && [ ! -e "$T/x" ]; } || { echo "FAIL: --type q4 should be a usage error (rc $rc)"; fail=1; }
[ $fail = 0 ] && echo "ok: q8_0 losses within 1%, round trip, greedy text, refusals"
exit $fail
