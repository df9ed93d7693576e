#!/usr/bin/env bash
# test_model_files.sh — what `molt convert` (molt_model_save) writes is a whole,
# valid model, and saving over a model never mixes old and new files:
#   - config.json names the weights' dtype (torch_dtype float32 / bfloat16 /
#     float16) and writes float-typed keys as float literals (Mamba-2's
#     time_step_limit [0.0, ...]: transformers refuses an integer there);
#   - saving into a directory that holds a sharded model removes the old index
#     and shards (the loader preferred them: the new weights were ignored),
#     keeps files that are not model files, and the result loads as the new model;
#   - a llama2.c tokenizer is written as tokenizer.bin (what molt reads) and as
#     tokenizer.json + tokenizer_config.json (for HF: the sentencepiece form,
#     PreTrainedTokenizerFast); generating through that tokenizer.json gives
#     the same text; a later save of another tokenizer kind replaces them (a
#     tokenizer.json is saved with a tokenizer_config.json naming it);
#   - a failed save (unwritable staging) leaves the directory as it was
#     (allocation failures at every step: tests/test_llama.c).
set -u
cd "$(dirname "$0")/.."
MOLT=${MOLT:-./molt}
SHARED=${MOLT_SHARED:-../shared}
W=$(mktemp -d); trap 'chmod -R u+w "$W"; rm -rf "$W"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
ST=models/stories260K/stories260K.bin
jget() { /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(repr(eval("d"+sys.argv[2])))' "$1" "$2"; }

$MOLT convert $ST -o "$W/f32" 2>/dev/null || bad "convert f32"
$MOLT convert $ST -o "$W/bf16" --dtype bf16 2>/dev/null || bad "convert bf16"
$MOLT convert $ST -o "$W/f16" --dtype f16 2>/dev/null || bad "convert f16"
[ "$(jget "$W/f32/config.json" "['torch_dtype']")" = "'float32'" ] || bad "f32 torch_dtype"
[ "$(jget "$W/bf16/config.json" "['torch_dtype']")" = "'bfloat16'" ] || bad "bf16 torch_dtype: $(jget "$W/bf16/config.json" "['torch_dtype']")"
[ "$(jget "$W/f16/config.json" "['torch_dtype']")" = "'float16'" ] || bad "f16 torch_dtype"
# float keys stay floats
t=$(jget "$W/f32/config.json" "['rms_norm_eps'].__class__.__name__"); [ "$t" = "'float'" ] || bad "rms_norm_eps is $t"
t=$(jget "$W/f32/config.json" "['rope_theta'].__class__.__name__"); [ "$t" = "'float'" ] || bad "rope_theta is $t"
# the llama2.c tokenizer, also as tokenizer.json for HF
for f in tokenizer.bin tokenizer.json tokenizer_config.json; do
  [ -s "$W/f32/$f" ] || bad "convert wrote no $f"
done
[ "$(jget "$W/f32/tokenizer.json" "['normalizer']['normalizers'][0]['type']")" = "'Prepend'" ] \
  || bad "tokenizer.json is not the sentencepiece form"
[ "$(jget "$W/f32/tokenizer.json" "['model']['byte_fallback']")" = "True" ] || bad "no byte_fallback"
[ "$(jget "$W/f32/tokenizer_config.json" "['tokenizer_class']")" = "'PreTrainedTokenizerFast'" ] \
  || bad "tokenizer_config.json class"
P="Once upon a time, Lily saw a  big   dog. \"Hi!\" she said. caf\xc3\xa9 \xe6\x97\xa5"
P=$(printf "$P")
a=$($MOLT generate $ST -p "$P" -t 0 -n 40 2>/dev/null)
b=$($MOLT generate "$W/f32" -p "$P" -t 0 -n 40 2>/dev/null)
c=$($MOLT generate "$W/f32" --tokenizer "$W/f32/tokenizer.json" -p "$P" -t 0 -n 40 2>/dev/null)
[ -n "$a" ] && [ "$a" = "$b" ] || bad "the converted directory generates other text"
[ -n "$a" ] && [ "$a" = "$c" ] || bad "generation through the written tokenizer.json differs: $c"
if [ -f "$SHARED/models/mamba2-random/config.json" ]; then
  cp -r "$W/f32" "$W/swap"
  $MOLT convert "$SHARED/models/mamba2-random" -o "$W/swap" 2>/dev/null || bad "convert over f32"
  [ ! -e "$W/swap/tokenizer.bin" ] || bad "a save left the llama2.c model's tokenizer.bin"
  # a tokenizer.json is saved with its tokenizer_config.json (PreTrainedTokenizerFast: without
  # it transformers 5 reads a model_type llama's tokenizer as LlamaTokenizer, not as written)
  [ "$(jget "$W/swap/tokenizer_config.json" "['bos_token']")" = "'<|begin_of_text|>'" ] \
    && [ "$(jget "$W/swap/tokenizer_config.json" "['tokenizer_class']")" = "'PreTrainedTokenizerFast'" ] \
    || bad "tokenizer_config.json of a saved tokenizer.json: $(cat "$W/swap/tokenizer_config.json")"
fi

if [ -f "$SHARED/models/mamba2-random/config.json" ]; then
  $MOLT convert "$SHARED/models/mamba2-random" -o "$W/m2" 2>/dev/null || bad "convert mamba2"
  t=$(jget "$W/m2/config.json" "['time_step_limit'][0].__class__.__name__")
  [ "$t" = "'float'" ] || bad "mamba2 time_step_limit[0] is $t"
  a=$($MOLT generate "$SHARED/models/mamba2-random" -p "hello" -t 0 -n 12 2>/dev/null)
  b=$($MOLT generate "$W/m2" -p "hello" -t 0 -n 12 2>/dev/null)
  [ -n "$a" ] && [ "$a" = "$b" ] || bad "mamba2 round trip differs"
else
  echo "mamba2 part skipped: needs ../shared/models/mamba2-random"
fi

# saving over a sharded model
want=$($MOLT generate $ST -t 0 -n 40 2>/dev/null)
D="$W/over"; mkdir -p "$D"
if [ -f "$SHARED/models/kv-llama-2m/config.json" ]; then
  cp "$SHARED"/models/kv-llama-2m/* "$D/"; chmod u+w "$D"/*
else # a stand-in index and shards: the loader must not find them afterwards
  echo '{"metadata": {}, "weight_map": {"x": "model-00001-of-00002.safetensors"}}' > "$D/model.safetensors.index.json"
  echo junk > "$D/model-00001-of-00002.safetensors"; echo junk > "$D/model-00002-of-00002.safetensors"
fi
echo "mine" > "$D/notes.txt"
$MOLT convert $ST -o "$D" 2>/dev/null || bad "convert over a sharded model"
[ ! -e "$D/model.safetensors.index.json" ] || bad "old index left behind"
ls "$D"/model-*-of-*.safetensors >/dev/null 2>&1 && bad "old shards left behind"
[ "$(cat "$D/notes.txt" 2>/dev/null)" = mine ] || bad "a file that is not a model file was touched"
ls -a "$D" | grep -q '^\.molt-save' && bad "staging directory left behind"
got=$($MOLT generate "$D" -t 0 -n 40 2>/dev/null)
[ -n "$want" ] && [ "$got" = "$want" ] || bad "the saved model does not load as the new model"

# a failed save changes nothing: the staging directory cannot be made (a file
# is in its place; root can write anywhere, this fails for root too)
B="$W/blocked"; $MOLT convert $ST -o "$B" 2>/dev/null; before=$(cd "$B" && md5sum * | md5sum)
echo mine > "$B/.molt-save"
$MOLT convert $ST -o "$B" --dtype bf16 2>/dev/null && bad "save with its staging blocked succeeded"
[ "$(cd "$B" && md5sum * | md5sum)" = "$before" ] && [ "$(cat "$B/.molt-save")" = mine ] \
  || bad "a failed save changed the directory"
# the same, stage cannot be created in a read-only dir
if [ "$(id -u)" != 0 ]; then
  R="$W/ro"; $MOLT convert $ST -o "$R" 2>/dev/null; before=$(ls -l "$R" | md5sum)
  chmod a-w "$R"
  $MOLT convert $ST -o "$R" --dtype bf16 2>/dev/null && bad "save into a read-only dir succeeded"
  chmod u+w "$R"; [ "$(ls -l "$R" | md5sum)" = "$before" ] || bad "failed save changed the directory"
fi
[ $fail = 0 ] && echo "test_model_files: all checks passed"
exit $fail
