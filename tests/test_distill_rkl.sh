#!/usr/bin/env bash
# molt distill --kd-loss rkl (issue 17): stage 3 with reverse KL(student ‖ teacher) on
# stories260K. The loss falls; it is not the forward loss (same run with --kd-loss fkl starts
# elsewhere: the soft CE holds the teacher's entropy, the reverse KL none); the stage's
# checkpoint settings and the report record it; an unknown loss is a usage error.
set -u
MOLT=${MOLT_BIN:-build/molt}
TEACHER=models/stories260K/stories260K.bin
[ -f "$TEACHER" ] || { echo "SKIP: needs $TEACHER"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
A=(distill "$TEACHER" --sample-tokens 20000 --seq 64 --batch 4 --stage1-tokens 0 --stage2-tokens 0
   --stage3-tokens 12800 --lr3 2e-3 -q)
$MOLT "${A[@]}" -o "$T/r" --kd-loss rkl > "$T/out" 2>&1 || { echo "FAIL: rkl run"; cat "$T/out"; exit 1; }
$MOLT "${A[@]}" -o "$T/f" --kd-loss fkl > "$T/out" 2>&1 || { echo "FAIL: fkl run"; cat "$T/out"; exit 1; }
python3 - "$T/r/report.json" "$T/f/report.json" <<'PY' || fail=1
import json, sys
r = json.load(open(sys.argv[1]))["stages"][2]; f = json.load(open(sys.argv[2]))["stages"][2]
print(f"rkl {r['first_loss']:.4f} -> {r['final_loss_mean_last10pct']:.4f}; "
      f"fkl {f['first_loss']:.4f} -> {f['final_loss_mean_last10pct']:.4f}")
ok = (r["final_loss_mean_last10pct"] < 0.5 * r["first_loss"] and r["final_loss_mean_last10pct"] >= 0
      and abs(r["first_loss"] - f["first_loss"]) > 0.1)
if not ok:
    print("FAIL: the reverse-KL stage does not fall, or equals the forward loss"); sys.exit(1)
PY
grep -rq '"kd_loss":"rkl"' "$T/r" --include='*.json' --exclude=report.json \
  || { echo "FAIL: the rkl stage's settings do not record kd_loss"; fail=1; }
python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["stages"][2].get("kd_loss") != "rkl")' \
  "$T/r/report.json" && grep -q 'reverse KL' "$T/r/loss_curves.svg" \
  || { echo "FAIL: the report does not name the reverse KL"; fail=1; }
grep -rq '"kd_loss"' "$T/f" && { echo "FAIL: the fkl run records kd_loss (older runs have none)"; fail=1; }
$MOLT distill "$TEACHER" -o "$T/x" --kd-loss js > /dev/null 2> "$T/err"; rc=$?
{ [ $rc = 2 ] && grep -q -- "--kd-loss" "$T/err"; } || { echo "FAIL: --kd-loss js: rc $rc"; cat "$T/err"; fail=1; }
[ $fail = 0 ] && echo "ok: --kd-loss rkl trains stage 3 on the reverse KL"
exit $fail
