#!/usr/bin/env bash
# Output directories, one writer, resume checks (docs/GUARANTEES.md):
#   1. a run never removes or truncates what it did not write: a non-empty
#      directory that is not a molt run of the same kind is refused (unless
#      --overwrite, which still keeps the user's files), an earlier run is not
#      replaced without --resume / --overwrite, --keep-last K keeps K checkpoints
#   2. -o equal to the input model (real paths) is refused, nothing written
#   3. one writer per directory: a second process gets an error naming the pid;
#      a dead writer's lock (kill -9) does not block
#   4. resume verifies what it resumes: a corrupt file, a bad state.json, other
#      settings or --steps below the checkpoint are errors; the log after a
#      resume holds every step once
#   5. a run written before the manifest existed (no .molt-files, old
#      state.json) is recognised by content: refused with a precise hint
#      (not "not empty"), never resumed, adopted by --overwrite, which removes
#      exactly its entries (train and distill)
set -u
MOLT=${MOLT_BIN:-build/molt}
T=$(mktemp -d); bgpid=
trap '[ -n "$bgpid" ] && kill -9 $bgpid 2>/dev/null; rm -rf "$T"' EXIT
cat > "$T/config.json" <<'JSON'
{"model_type": "llama", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
 "num_key_value_heads": 2, "intermediate_size": 64, "vocab_size": 512,
 "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "tie_word_embeddings": true}
JSON
cp models/stories260K/tok512.bin "$T/tok512.bin"
DATA=tests/fixtures/data/tinystories/tinystories_v1_valid_head_40k.txt
A=(--data "$DATA" --batch 2 --eval-every 0 --lr 2e-3 --threads 2 -q)
train() { $MOLT train "$T/config.json" "${A[@]}" --seq "${SEQ:-32}" "$@" > /dev/null 2> "$T/err"; }
fail=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; sed 's/^/     /' "$T/err"; fail=1; }
tree_sum() { (cd "$1" && find . -type f | sort | xargs md5sum) | md5sum; }
steps_of() { /usr/bin/python3 -c 'import json,sys; print(" ".join(str(json.loads(l)["step"]) for l in open(sys.argv[1])))' "$1"; }

# ---- 1. output directories never destroy user data
mkdir "$T/u"; echo mine > "$T/u/ckpt-mine"; echo notes > "$T/u/notes.txt"
before=$(tree_sum "$T/u"); n_before=$(ls -A "$T/u" | wc -l)
train -o "$T/u" --steps 4 --save-every 2; rc=$?
if [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q "not empty" "$T/err" && [ "$(tree_sum "$T/u")" = "$before" ] \
   && [ "$(ls -A "$T/u" | wc -l)" -eq "$n_before" ]; then ok "1a foreign directory refused, nothing written"
else bad "1a foreign directory: exit $rc, $(ls -A "$T/u" | tr '\n' ' ')"; fi
train -o "$T/u" --steps 4 --save-every 2 --overwrite; rc=$?
if [ $rc -eq 0 ] && [ "$(cat "$T/u/ckpt-mine")" = mine ] && [ "$(cat "$T/u/notes.txt")" = notes ] \
   && [ -s "$T/u/model.safetensors" ]; then ok "1b --overwrite writes beside the user's files and keeps them"
else bad "1b --overwrite: exit $rc, $(ls -A "$T/u" | tr '\n' ' ')"; fi
train -o "$T/r" --steps 6 --save-every 2 || bad "1c first run"
cp "$T/r/log.jsonl" "$T/r.log"; before=$(tree_sum "$T/r")
train -o "$T/r" --steps 6 --save-every 2; rc=$?
if [ $rc -ne 0 ] && grep -q "earlier molt train run" "$T/err" && [ "$(tree_sum "$T/r")" = "$before" ]; then
  ok "1c an earlier run is not replaced without --resume/--overwrite"
else bad "1c earlier run: exit $rc, log $(wc -l < "$T/r/log.jsonl") lines"; fi
cp -r "$T/r" "$T/r2"
train -o "$T/r2" --steps 4 --save-every 2 --overwrite; rc=$?
if [ $rc -eq 0 ] && [ "$(steps_of "$T/r2/log.jsonl")" = "1 2 3 4" ] && [ ! -e "$T/r2/ckpt-00000006" ] \
   && [ -d "$T/r2/ckpt-00000004" ]; then ok "1d --overwrite over an earlier run removes its checkpoints and log"
else bad "1d: exit $rc, $(ls -A "$T/r2" | tr '\n' ' ')"; fi
mkdir "$T/k"; train -o "$T/k" --steps 10 --save-every 2 --keep-last 3; rc=$?
got=$(cd "$T/k" && ls -d ckpt-* 2>/dev/null | tr '\n' ' ')
if [ $rc -eq 0 ] && [ "$got" = "ckpt-00000006 ckpt-00000008 ckpt-00000010 " ]; then ok "1e --keep-last 3 keeps $got"
else bad "1e --keep-last: exit $rc, $got"; fi
mkdir "$T/d"; echo x > "$T/d/keep.txt"
DA=(--sample-tokens 1000 --seq 16 --batch 2 --tokens 320 --threads 2 -q)
$MOLT distill models/stories260K/stories260K.bin -o "$T/d" "${DA[@]}" > /dev/null 2> "$T/err"; rc=$?
if [ $rc -ne 0 ] && grep -q "not empty" "$T/err" && [ "$(ls -A "$T/d")" = keep.txt ]; then ok "1f distill refuses a foreign directory"
else bad "1f distill: exit $rc, $(ls -A "$T/d" | tr '\n' ' ')"; fi
before=$(tree_sum "$T/r")
$MOLT distill models/stories260K/stories260K.bin -o "$T/r" "${DA[@]}" > /dev/null 2> "$T/err"; rc=$?
if [ $rc -ne 0 ] && grep -q "molt train run" "$T/err" && [ "$(tree_sum "$T/r")" = "$before" ]; then
  ok "1g distill refuses a train run's directory"
else bad "1g distill into a train dir: exit $rc"; fi

# ---- 2. -o equal to an input is refused
before=$(tree_sum "$T/r")
$MOLT train "$T/r" "${A[@]}" --seq 32 --steps 2 -o "$T/r/" > /dev/null 2> "$T/err"; rc=$?
if [ $rc -ge 1 ] && [ $rc -le 2 ] && grep -q "replace" "$T/err" && [ "$(tree_sum "$T/r")" = "$before" ]; then
  ok "2a train M -o M refused, nothing written"
else bad "2a train M -o M: exit $rc"; fi
ln -s "$T/r" "$T/link"
$MOLT train "$T/link" "${A[@]}" --seq 32 --steps 2 -o "$T/r/./" --overwrite > /dev/null 2> "$T/err"; rc=$?
if [ $rc -ge 1 ] && [ $rc -le 2 ] && grep -q "replace" "$T/err" && [ "$(tree_sum "$T/r")" = "$before" ]; then
  ok "2b the same through a symlink, even with --overwrite"
else bad "2b symlink: exit $rc"; fi
mkdir "$T/t"; cp models/stories260K/stories260K.bin models/stories260K/tok512.bin "$T/t/"
before=$(tree_sum "$T/t")
$MOLT distill "$T/t/stories260K.bin" -o "$T/t" "${DA[@]}" > /dev/null 2> "$T/err"; rc=$?
if [ $rc -ge 1 ] && [ $rc -le 2 ] && grep -q "replace" "$T/err" && [ "$(tree_sum "$T/t")" = "$before" ] \
   && [ "$(ls -A "$T/t" | wc -l)" -eq 2 ]; then ok "2c distill T -o T's directory refused, nothing written"
else bad "2c distill T -o T: exit $rc, $(ls -A "$T/t" | tr '\n' ' ')"; fi

# ---- 3. one writer per directory
$MOLT train "$T/config.json" "${A[@]}" --seq 32 --steps 1000000 --save-every 100000 -o "$T/L" \
  > /dev/null 2> "$T/L.err" &
bgpid=$!
for _ in $(seq 1 500); do [ -s "$T/L/log.jsonl" ] && break; sleep 0.02; done
train -o "$T/L" --steps 1000000 --save-every 100000 --resume; rc=$?
if [ $rc -ne 0 ] && grep -q "pid $bgpid" "$T/err" && kill -0 $bgpid 2>/dev/null; then
  ok "3a a second writer is refused, naming the holder's pid"
else bad "3a second writer: exit $rc (holder pid $bgpid)"; fi
kill -9 $bgpid; wait $bgpid 2>/dev/null; bgpid=
train -o "$T/L" --steps 2 --overwrite; rc=$?
if [ $rc -eq 0 ]; then ok "3b a killed writer's lock does not block"; else bad "3b stale lock: exit $rc"; fi

# ---- 4. resume checks what it resumes ($T/r: 6 steps, latest ckpt-00000006)
R=(--steps 6 --save-every 2)
cp -r "$T/r" "$T/c1"
/usr/bin/python3 - "$T/c1/ckpt-00000006/optim.safetensors" <<'PY'
import sys; p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[-5] ^= 0x10; open(p, "wb").write(b)
PY
train -o "$T/c1" "${R[@]}" --resume; rc=$?
if [ $rc -ne 0 ] && grep -q "checksum" "$T/err"; then ok "4a a flipped bit in the optimizer moments is an error"
else bad "4a corrupt optim: exit $rc"; fi
cp -r "$T/r" "$T/c2"
sed -i 's/"rng": "[0-9]*"/"rng": "12x"/' "$T/c2/ckpt-00000006/state.json"
train -o "$T/c2" "${R[@]}" --resume; rc=$?
if [ $rc -ne 0 ] && grep -q "rng" "$T/err"; then ok "4b a bad rng value is an error"
else bad "4b bad rng: exit $rc"; fi
cp -r "$T/r" "$T/c3"
train -o "$T/c3" --steps 4 --save-every 2 --resume; rc=$?
if [ $rc -ne 0 ] && grep -q "past this run" "$T/err"; then ok "4c --steps below the checkpoint's step is an error"
else bad "4c steps below: exit $rc"; fi
SEQ=16 train -o "$T/c3" --steps 6 --save-every 2 --resume; rc=$?
if [ $rc -ne 0 ] && grep -q "seq = 32" "$T/err"; then ok "4d other settings are an error naming the setting"
else bad "4d other settings: exit $rc"; fi
train -o "$T/c4" --steps 6 --save-every 2 --keep-last 3 || bad "4e first run"
cp "$T/c4/model.safetensors" "$T/c4.final"
echo ckpt-00000002 > "$T/c4/latest" # as if killed after logging step 6 with ckpt 2 newest
train -o "$T/c4" --steps 6 --save-every 2 --keep-last 3 --resume; rc=$?
got=$(steps_of "$T/c4/log.jsonl")
if [ $rc -eq 0 ] && [ "$got" = "1 2 3 4 5 6" ] && cmp -s "$T/c4/model.safetensors" "$T/c4.final"; then
  ok "4e the log after a resume holds every step once; same final weights"
else bad "4e log after resume: exit $rc, steps $got"; fi
$MOLT distill models/stories260K/stories260K.bin -o "$T/ds" "${DA[@]}" > /dev/null 2> "$T/err" \
  || bad "4f distill run"
ck=$(cat "$T/ds/stage3/latest" 2>/dev/null)
/usr/bin/python3 - "$T/ds/stage3/$ck/model.safetensors" <<'PY'
import sys; p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[-3] ^= 0x01; open(p, "wb").write(b)
PY
$MOLT distill models/stories260K/stories260K.bin -o "$T/ds" "${DA[@]}" --resume > /dev/null 2> "$T/err"; rc=$?
if [ $rc -ne 0 ] && grep -q "checksum" "$T/err"; then ok "4f distill --resume verifies a finished stage's checkpoint"
else bad "4f distill resume of a corrupt stage: exit $rc"; fi
# ---- 5. runs written before .molt-files existed
old_run() { # DIR: make a run directory look as an older molt wrote it
  find "$1" -name .molt-files -delete; rm -f "$1/.molt-lock"
  for f in $(find "$1" -name state.json); do
    /usr/bin/python3 - "$f" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
open(sys.argv[1], "w").write(json.dumps({k: s[k] for k in ("step", "rng", "tokens", "adam_step")}))
PY
  done
}
train -o "$T/o" --steps 4 --save-every 2 --keep-last 2 || bad "5 first run"
old_run "$T/o"; echo notes > "$T/o/notes.txt"; echo mine > "$T/o/ckpt-mine"
before=$(tree_sum "$T/o")
train -o "$T/o" --steps 2 --save-every 2; rc=$?
if [ $rc -ne 0 ] && grep -q "before molt kept a manifest" "$T/err" && grep -q -- "--overwrite" "$T/err" \
   && grep -q "ckpt-0000000" "$T/err" && [ "$(tree_sum "$T/o")" = "$before" ]; then
  ok "5a an older train run is recognised and refused with a precise hint, nothing written"
else bad "5a older run: exit $rc"; fi
train -o "$T/o" --steps 6 --save-every 2 --resume; rc=$?
if [ $rc -ne 0 ] && grep -q "cannot be resumed" "$T/err" && [ "$(tree_sum "$T/o")" = "$before" ]; then
  ok "5b an older run is not resumed (no checksums)"
else bad "5b older run --resume: exit $rc"; fi
$MOLT distill models/stories260K/stories260K.bin -o "$T/o" "${DA[@]}" > /dev/null 2> "$T/err"; rc=$?
if [ $rc -ne 0 ] && grep -q "molt train run, not a run of this kind" "$T/err" \
   && [ "$(tree_sum "$T/o")" = "$before" ]; then ok "5c distill names an older train run"
else bad "5c distill into an older train run: exit $rc"; fi
train -o "$T/o" --steps 2 --save-every 2 --overwrite; rc=$?
if [ $rc -eq 0 ] && grep -q "before molt kept a manifest" "$T/err" && [ "$(steps_of "$T/o/log.jsonl")" = "1 2" ] \
   && [ ! -e "$T/o/ckpt-00000004" ] && [ -d "$T/o/ckpt-00000002" ] && [ "$(cat "$T/o/notes.txt")" = notes ] \
   && [ "$(cat "$T/o/ckpt-mine")" = mine ] && grep -qx "ckpt-00000002" "$T/o/.molt-files"; then
  ok "5d --overwrite adopts it: its checkpoints and log removed, the user's files kept"
else bad "5d older run --overwrite: exit $rc, $(ls -A "$T/o" | tr '\n' ' ')"; fi
$MOLT distill models/stories260K/stories260K.bin -o "$T/od" "${DA[@]}" > /dev/null 2> "$T/err" \
  || bad "5e distill run"
old_run "$T/od"; echo x > "$T/od/stage3/$(cat "$T/od/stage3/latest")/marker"; echo y > "$T/od/stage1/mine.txt"
before=$(tree_sum "$T/od")
$MOLT distill models/stories260K/stories260K.bin -o "$T/od" "${DA[@]}" > /dev/null 2> "$T/err"; rc=$?
if [ $rc -ne 0 ] && grep -q "earlier molt distill run, written before" "$T/err" \
   && [ "$(tree_sum "$T/od")" = "$before" ]; then ok "5e an older distill run is recognised and refused"
else bad "5e older distill run: exit $rc, $(head -c 300 "$T/err")"; fi
$MOLT distill models/stories260K/stories260K.bin -o "$T/od" "${DA[@]}" --overwrite > /dev/null 2> "$T/err"; rc=$?
if [ $rc -eq 0 ] && ! find "$T/od" -name marker | grep -q . && [ "$(cat "$T/od/stage1/mine.txt")" = y ] \
   && [ -s "$T/od/report.json" ]; then ok "5f --overwrite adopts an older distill run (stage checkpoints removed, user files kept)"
else bad "5f older distill --overwrite: exit $rc, $(head -c 300 "$T/err")"; fi

[ $fail -eq 0 ] && echo "run directories: all checks passed"
exit $fail
