#!/usr/bin/env bash
# Machine-readable output is valid JSON whatever the paths hold: every --json
# output (info, eval --text, eval --task kv/mqar, heads and its heads.json /
# layers.json), train's summary line and distill's report.json, with a model,
# text, task and output directory whose names contain '"' and '\', parse with
# Python's json module and give the paths back unchanged. report.json's
# student "params" is the real parameter count (molt info of the student) and
# its stage loss is labelled as the mean of the last 10% of the steps.
set -u
MOLT=${MOLT_BIN:-build/molt}
. tests/assets.sh
ST=models/stories260K
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
py=/usr/bin/python3
D="$T/we\"ird\\dir"
mkdir -p "$D" && cp "$ST/stories260K.bin" "$ST/tok512.bin" "$D/" || { echo "FAIL: setup"; exit 1; }
M="$D/stories260K.bin"
TXT="$D/te\"xt\\1.txt"
head -c 6000 tests/fixtures/data/tinystories/tinystories_v1_valid_head_40k.txt > "$TXT"
TASK="$D/kv\"task\\.json"
cp "$(asset models/kv-llama-2m/kv_task.json)" "$TASK" || { echo "FAIL: no kv_task.json"; exit 1; }
# check NAME FILE PYTHON: FILE parses as JSON (bound to j) and the PYTHON assertions hold;
# the paths are in the environment as M, TXT, TASK, OUT
check() {
  local name=$1 file=$2 code=$3
  if T="$T" M="$M" TXT="$TXT" TASK="$TASK" OUT="$D/out\"dir\\x" $py - "$file" > "$T/pyerr" 2>&1 <<PY
import json, os, sys
j = json.load(open(sys.argv[1]))
M, TXT, TASK, OUT = (os.environ[k] for k in ("M", "TXT", "TASK", "OUT"))
$code
PY
  then echo "ok   $name"
  else echo "FAIL $name:"; sed 's/^/    /' "$T/pyerr" | tail -4; head -c 400 "$file" | sed 's/^/    /'; echo; fail=1
  fi
}
run() { # NAME OUTFILE -- command: stdout to OUTFILE, must exit 0
  local name=$1 out=$2; shift 3
  "$@" > "$out" 2> "$T/err" || { echo "FAIL $name: exit $?"; head -5 "$T/err"; fail=1; }
}

run info "$T/info.json" -- $MOLT info "$M" --json
check "info --json" "$T/info.json" 'assert j["model"] == M and j["n_layer"] == 5 and j["sequence_bytes"]["1024"] > 0'

run eval-text "$T/eval.out" -- $MOLT eval "$M" --text "$TXT" --json
head -n 1 "$T/eval.out" > "$T/eval.json"
check "eval --text --json" "$T/eval.json" 'assert j["model"] == M and j["text"] == TXT and j["tokens"] > 100 and j["loss"] > 0'

run eval-kv "$T/kv.json" -- $MOLT eval "$M" --task kv --kv-task "$TASK" --pairs 2,3 --examples 4 --json
check "eval --task kv --json" "$T/kv.json" 'assert [r["pairs"] for r in j] == [2, 3] and all(0 <= r["accuracy"] <= 1 for r in j)'
run eval-mqar "$T/mqar.json" -- $MOLT eval "$M" --task mqar --kv-task "$TASK" --pairs 3 --queries 2 --examples 4 --json
check "eval --task mqar --json" "$T/mqar.json" 'assert j[0]["queries"] == 2 and j[0]["answers"] == 8'

H="$D/heads\"out\\dir"
run heads "$T/heads.json" -- $MOLT heads "$M" --kv-task "$TASK" --pairs 2 --examples 4 \
  --seeds 4611686018427387903,1 --json -o "$H" -q
check "heads --json" "$T/heads.json" 'assert len(j) == 40 and {h["kind"] for h in j} == {"attention"}'
check "heads.json == --json" "$H/heads.json" 'assert j == json.load(open(os.environ["T"] + "/heads.json"))'
check "layers.json" "$H/layers.json" 'assert j["n_layer"] == 5 and len(j["pruned_from_top"]) == 6
assert j["seeds"] == [4611686018427387903, 1], j["seeds"]  # exact, beyond a double'

run train "$T/train.out" -- $MOLT train "$M" --data "$TXT" -o "$D/out\"dir\\x" --steps 2 --seq 32 --batch 2 -q
tail -n 1 "$T/train.out" > "$T/train.json"
check "train summary" "$T/train.json" 'assert j["out"] == OUT and j["steps"] == 2 and j["loss"] > 0
assert j["eval_loss"] is None or j["eval_loss"] > 0'

S="$D/stu\"dent\\dir"
run distill "$T/distill.out" -- $MOLT distill "$M" -o "$S" --sample-tokens 2000 --seq 32 --batch 2 \
  --stage1-tokens 128 --stage2-tokens 128 --stage3-tokens 128 --eval-data "$TXT" -q
run student-info "$T/student.json" -- $MOLT info "$S" --json
cp "$T/student.json" "$T/student_info.json"
check "report.json" "$S/report.json" 'assert j["eval"]["text"] == TXT
n = json.load(open(os.environ["T"] + "/student_info.json"))["n_params"]
assert j["student"]["params"] == n, ("params", j["student"]["params"], "real", n)
for s in j["stages"]:
    assert "final_loss" not in s and "final_loss_mean_last10pct" in s, s'
exit $fail
