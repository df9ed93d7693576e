#!/usr/bin/env bash
# kill -9 in the middle of a training run, then --resume: the loss curve must
# continue exactly as an uninterrupted run's (bit-identical per-step losses),
# the log holds every step once (cut back to the checkpoint on resume), and no checkpoint may be left half-written (`latest` always names a complete
# checkpoint; no temporary files survive a finished run).
set -u
MOLT=${MOLT_BIN:-build/molt}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cat > "$T/config.json" <<'JSON'
{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
 "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 512,
 "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "tie_word_embeddings": true}
JSON
cp models/stories260K/tok512.bin "$T/tok512.bin"
DATA=tests/fixtures/data/tinystories/tinystories_v1_valid_head_40k.txt
ARGS=(--data "$DATA" --seq 64 --batch 4 --steps 120 --save-every 10 --eval-every 0 --lr 2e-3 --threads 2 -q)
fail=0
# 1. reference: uninterrupted
$MOLT train "$T/config.json" "${ARGS[@]}" -o "$T/a" > /dev/null 2>"$T/a.err" || { echo "FAIL: reference run"; cat "$T/a.err"; exit 1; }
# 2. interrupted: kill -9 once a few checkpoints exist, mid-run
$MOLT train "$T/config.json" "${ARGS[@]}" -o "$T/b" > /dev/null 2>"$T/b.err" &
pid=$!
for _ in $(seq 1 600); do
  n=$(ls -d "$T"/b/ckpt-* 2>/dev/null | wc -l)
  s=$(cat "$T/b/latest" 2>/dev/null | sed 's/ckpt-0*//')
  [ -n "$s" ] && [ "$s" -ge 40 ] && break
  sleep 0.02
done
sleep 0.05 # land between two checkpoints
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
killed_at=$(wc -l < "$T/b/log.jsonl")
latest=$(cat "$T/b/latest")
echo "killed after $killed_at logged steps; latest checkpoint: $latest"
for f in config.json model.safetensors optim.safetensors state.json; do
  [ -s "$T/b/$latest/$f" ] || { echo "FAIL: $latest/$f missing or empty after kill -9"; fail=1; }
done
[ "$killed_at" -lt 120 ] || { echo "FAIL: the run finished before it could be killed"; fail=1; }
# a kill -9 inside an atomic write leaves its temporary: make sure of one in each place
# (beside a listed entry, inside the latest checkpoint), plus a user's look-alike that must stay
echo partial > "$T/b/latest.tmp.999999"
echo partial > "$T/b/$latest/model.safetensors.tmp.999999"
echo mine > "$T/b/notes.tmp.7"
# 3. resume to the end
$MOLT train "$T/config.json" "${ARGS[@]}" -o "$T/b" --resume > /dev/null 2>"$T/r.err" || { echo "FAIL: resume"; cat "$T/r.err"; exit 1; }
# the last logged loss of every step must equal the uninterrupted run's
/usr/bin/python3 - "$T/a/log.jsonl" "$T/b/log.jsonl" <<'PY' || fail=1
import json, sys
a = {}; b = {}
for l in open(sys.argv[1]): r = json.loads(l); a[r["step"]] = r["loss"]
for l in open(sys.argv[2]): r = json.loads(l); b[r["step"]] = r["loss"]
bad = [s for s in a if a[s] != b.get(s)]
print(f"{len(a)} steps compared, {len(bad)} differ" + (f" (first: step {bad[0]}: {a[bad[0]]} vs {b.get(bad[0])})" if bad else ""))
order = [json.loads(l)["step"] for l in open(sys.argv[2])]
if order != list(range(1, 121)):
    print(f"FAIL: the resumed log is not steps 1..120 once each ({len(order)} lines)")
    bad = bad or [0]
sys.exit(1 if bad or len(a) != 120 else 0)
PY
cmp -s "$T/a/model.safetensors" "$T/b/model.safetensors" || { echo "FAIL: final weights differ"; fail=1; }
[ -f "$T/b/notes.tmp.7" ] || { echo "FAIL: resume removed a file molt did not write"; fail=1; }
rm -f "$T/b/notes.tmp.7"
left=$(find "$T/a" "$T/b" -name '*.tmp*' | wc -l)
[ "$left" -eq 0 ] || { echo "FAIL: $left temporary files left"; fail=1; }
[ $fail -eq 0 ] && echo "resume after kill -9: identical loss curve and final weights"
exit $fail
