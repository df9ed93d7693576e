#!/usr/bin/env bash
# check.sh — do HF transformers accept what `molt convert` writes? Converts
# stories260K (llama2.c → HF Llama, f32 / bf16 / f16) and, when given, an HF
# Mamba-2 directory (round trip), then check.py loads each with transformers
# and compares its fp32 logits with molt's; check_tokenizer.py loads the
# converted tokenizer.json with AutoTokenizer and compares its ids with molt's
# llama2.c tokenizer (and Llama 2's tokenizer.bin, when $MOLT_SHARED or
# ../shared has it). Needs python3 with torch + transformers (the GPU machine
# has them); not part of `make test`.
# usage: scripts/hf_compat/check.sh [MAMBA2_DIR]   (from the repo root, after make)
# Prebuilt tools (a machine without the -dev packages): MOLT=..., DUMP=... (a
# dump_logits built against libmolt.a), TT=... (build/tests/test_tokenizer).
set -eu
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
MOLT=${MOLT:-./molt}; CC=${CC:-cc}
DUMP=${DUMP:-$W/dump}
[ -x "$DUMP" ] || $CC -O2 -Iinclude scripts/hf_compat/dump_logits.c build/libmolt.a $(pkg-config --libs libcjson libpcre2-8 openblas 2>/dev/null || echo "${PKG_LIBS:-}") -lm -lpthread -fopenmp -o "$DUMP"
IDS="1,403,407,261,378,434,291,378,327,375,281,116,282,461,434"
dirs=()
for dt in f32 bf16 f16; do
  $MOLT convert models/stories260K/stories260K.bin -o "$W/st-$dt" --dtype $dt 2>/dev/null
  dirs+=("$W/st-$dt")
done
if [ -n "${1:-}" ]; then $MOLT convert "$1" -o "$W/mamba2" 2>/dev/null; dirs+=("$W/mamba2"); fi
for d in "${dirs[@]}"; do "$DUMP" "$d" "$d.f32" ${IDS//,/ } >/dev/null; done
rc=0
python3 scripts/hf_compat/check.py "$IDS" "${dirs[@]}" || rc=1
TT=${TT:-build/tests/test_tokenizer}
[ -x "$TT" ] || make -s "$TT"
SH=${MOLT_SHARED:-../shared}
pairs=("$W/st-f32:models/stories260K/tok512.bin")
[ -n "${1:-}" ] && pairs+=("$W/mamba2:$W/mamba2/tokenizer.json")
if [ -f "$SH/models/kv-llama-2m/config.json" ]; then # a byte-level tokenizer.json, model_type llama
  $MOLT convert "$SH/models/kv-llama-2m" -o "$W/kv" 2>/dev/null && pairs+=("$W/kv:$W/kv/tokenizer.json")
fi
if [ -f "$SH/data/tokenizers/llama2/tokenizer.bin" ]; then
  mkdir "$W/llama2-tok" && $TT --to-hf "$SH/data/tokenizers/llama2/tokenizer.bin" "$W/llama2-tok"
  pairs+=("$W/llama2-tok:$SH/data/tokenizers/llama2/tokenizer.bin")
fi
corpus=tests/fixtures/data/tinystories/tinystories_v1_valid_head_40k.txt
[ -f "$SH/data/tinystories/tinystories_v1_valid_head.txt" ] && corpus=$SH/data/tinystories/tinystories_v1_valid_head.txt
python3 scripts/hf_compat/check_tokenizer.py $TT "${pairs[@]}" -- "$corpus" || rc=1
exit $rc
