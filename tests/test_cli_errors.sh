#!/usr/bin/env bash
# Bad input to the CLI: every case must print one clear "molt: error:" line
# naming the file / problem, exit non-zero (1 or 2, never a signal), and — in
# the ASan build — leak nothing (LeakSanitizer fails the run otherwise).
set -u
MOLT=${MOLT_BIN:-build/molt}
. tests/assets.sh
KV=$(asset models/kv-llama-2m)
ST=$(dirname "$(asset models/stories260K/stories260K.bin)")
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0; n=0
# expect NAME EXPECTED_SUBSTRING -- command...
expect() {
  local name=$1 want=$2; shift 3
  n=$((n+1))
  "$@" >"$T/out" 2>"$T/err"; local rc=$?
  if [ $rc -eq 0 ] || [ $rc -ge 128 ]; then
    echo "FAIL $name: exit code $rc (want 1 or 2)"; sed 's/^/    /' "$T/err" | head -5; fail=$((fail+1)); return
  fi
  if ! grep -q -- "$want" "$T/err"; then
    echo "FAIL $name: stderr lacks \"$want\""; sed 's/^/    /' "$T/err" | head -5; fail=$((fail+1)); return
  fi
  if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error' "$T/err"; then
    echo "FAIL $name: sanitizer report"; head -20 "$T/err"; fail=$((fail+1)); return
  fi
  local lines; lines=$(grep -c 'error' "$T/err")
  if [ "$lines" -ne 1 ]; then
    echo "FAIL $name: $lines error lines (want exactly one)"; cat "$T/err"; fail=$((fail+1)); return
  fi
  echo "ok   $name: $(grep error "$T/err")"
}
mk() { rm -rf "$T/$1"; cp -r "$KV" "$T/$1"; }
py=/usr/bin/python3

if have "$KV" "damaged safetensors, config.json and tokenizer.json cases"; then
# --- safetensors damage
mk trunc; s="$T/trunc/model-00002-of-00002.safetensors"; head -c $(( $(stat -c %s "$s") / 2 )) "$s" > "$s.x" && mv "$s.x" "$s"
expect truncated-safetensors "model-00002-of-00002.safetensors" -- $MOLT info "$T/trunc"
mk offs; $py - "$T/offs/model-00001-of-00002.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8+n]); k = next(k for k in h if k != '__metadata__')
h[k]['data_offsets'] = [h[k]['data_offsets'][0], 10**12]
hb = json.dumps(h).encode(); hb += b' ' * ((8 - len(hb) % 8) % 8)
open(p, 'wb').write(struct.pack('<Q', len(hb)) + hb + b[8+n:])
PY
expect offsets-beyond-file "model-00001-of-00002.safetensors" -- $MOLT info "$T/offs"
mk hdr; s="$T/hdr/model-00001-of-00002.safetensors"; $py -c "
import struct,sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[:8]=struct.pack('<Q', 2**62); open(p,'wb').write(b)" "$s"
expect absurd-header-length "model-00001-of-00002.safetensors" -- $MOLT info "$T/hdr"
mk shape; $py - "$T/shape/config.json" <<'PY'
import json, sys; p = sys.argv[1]; c = json.load(open(p)); c['intermediate_size'] = 640; json.dump(c, open(p, 'w'))
PY
expect shape-mismatch "shape" -- $MOLT info "$T/shape"
mk dtype; $py - "$T/dtype/model-00001-of-00002.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8+n]); k = 'model.embed_tokens.weight'
h[k]['dtype'] = 'I32'
hb = json.dumps(h).encode(); hb += b' ' * ((8 - len(hb) % 8) % 8)
open(p, 'wb').write(struct.pack('<Q', len(hb)) + hb + b[8+n:])
PY
expect wrong-dtype "I32" -- $MOLT info "$T/dtype"
mk missing; $py - "$T/missing" <<'PY'
import json, struct, sys, os
d = sys.argv[1]; p = os.path.join(d, 'model-00002-of-00002.safetensors')
b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8+n])
k = [k for k in h if k != '__metadata__'][-1]; del h[k]
hb = json.dumps(h).encode(); hb += b' ' * ((8 - len(hb) % 8) % 8)
open(p, 'wb').write(struct.pack('<Q', len(hb)) + hb + b[8+n:])
ix = json.load(open(os.path.join(d, 'model.safetensors.index.json'))); del ix['weight_map'][k]
json.dump(ix, open(os.path.join(d, 'model.safetensors.index.json'), 'w'))
PY
expect missing-tensor "missing" -- $MOLT info "$T/missing"
# --- config.json damage
mk badjson; printf '{"model_type": "llama", "hidden_size": 192,,}' > "$T/badjson/config.json"
expect malformed-json "config.json" -- $MOLT info "$T/badjson"
mk arch; sed -i 's/"model_type": "llama"/"model_type": "gpt_neox"/' "$T/arch/config.json"
expect unknown-model-type "gpt_neox" -- $MOLT info "$T/arch"
mk heads; sed -i 's/"num_key_value_heads": 2/"num_key_value_heads": 4/' "$T/heads/config.json"
expect heads-dont-divide "num_key_value_heads" -- $MOLT info "$T/heads"
mk nokey; sed -i '/"hidden_size"/d' "$T/nokey/config.json"
expect missing-config-key "hidden_size" -- $MOLT info "$T/nokey"
mk tokbad; printf '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}' > "$T/tokbad/tokenizer.json"
expect malformed-tokenizer "tokenizer.json" -- $MOLT info "$T/tokbad"
fi
# --- llama2.c damage
head -c 5000 "$ST/stories260K.bin" > "$T/short.bin"
expect truncated-llama2c "short.bin" -- $MOLT generate "$T/short.bin" --tokenizer "$ST/tok512.bin" -n 5
expect missing-file "nonexistent" -- $MOLT info "$T/nonexistent"
# --- prompts
expect empty-prompt "empty" -- $MOLT generate "$ST/stories260K.bin" --tokenizer "$ST/tok512.bin" -p ""
long=$($py -c "print('Once upon a time ' * 400)")
expect over-long-prompt "context" -- $MOLT generate "$ST/stories260K.bin" --tokenizer "$ST/tok512.bin" -p "$long"
expect bad-option "unknown option" -- $MOLT generate "$ST/stories260K.bin" --frobnicate
expect bad-number "whole number" -- $MOLT generate "$ST/stories260K.bin" -n abc
expect eval-missing-text "nonexistent.txt" -- $MOLT eval "$ST/stories260K.bin" --tokenizer "$ST/tok512.bin" --text "$T/nonexistent.txt"
echo "$((n-fail)) of $n bad-input cases handled"
[ $fail -eq 0 ]
