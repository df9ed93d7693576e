#!/usr/bin/env bash
# bench/gpu_table.py (issue 12's table from bench_gpu's and peer_torch.py's JSON lines; `make
# bench` and scripts/gpu_table_check.sh print it): on made-up lines with known numbers, molt
# is paired with the peer at the same work, batch and weights; the ratio, memory and the
# issue's targets come out right (stage 3 needs 1.5x AND less memory, decode batch 1 60% of
# the copy bandwidth, batch 64 30k tok/s); junk lines are skipped; a missing file or a file
# without molt rows is an error (rc 1) with a message.
set -u
PY=${PYTHON:-/usr/bin/python3}
command -v "$PY" > /dev/null || { echo "SKIP: needs $PY"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
cat > "$T/t.jsonl" <<'J'
{"engine": "molt", "bench": "mohawk_stage3_step", "batch": 4, "tokens_per_s": 40000, "device_gb_used": 50.0}
not json at all
{"engine": "pytorch", "bench": "mohawk_stage3_step", "batch": 4, "tokens_per_s": 25000, "device_gb_used": 60.0, "peak_gb": 55.0}
{"engine": "molt", "bench": "teacher_train_step", "batch": 4, "tokens_per_s": 30000, "device_gb_used": 40.0}
{"engine": "pytorch", "bench": "teacher_train_step", "batch": 4, "tokens_per_s": 25000}
{"engine": "molt", "bench": "copy", "gb_per_s": 3000}
{"engine": "molt", "bench": "decode", "weights": "bf16", "batch": 1, "tokens_per_s": 700, "of_copy_bw": 0.65}
{"engine": "molt", "bench": "decode", "weights": "bf16", "batch": 64, "tokens_per_s": 29000, "of_copy_bw": 0.5}
{"engine": "pytorch", "bench": "decode", "weights": "f32", "batch": 64, "tokens_per_s": 1000}
{"engine": "pytorch", "bench": "decode", "weights": "bf16", "batch": 64, "tokens_per_s": 5800}
{"engine": "molt", "bench": "ssd_scan_fwd_bwd", "batch": 4, "tokens_per_s": 900000}
J
"$PY" bench/gpu_table.py --json "$T/t.jsonl" > "$T/out" 2> "$T/err" || { echo "FAIL: gpu_table.py rc $?"; cat "$T/err"; exit 1; }
"$PY" - "$T/out" <<'P' || fail=1
import json, sys
rows = {r["work"].split(",")[0] + ("" if "batch" not in r["work"] else r["work"].split(",")[1]): r
        for r in map(json.loads, open(sys.argv[1]))}
bad = []
def want(cond, what):
    if not cond:
        bad.append(what)
s3 = rows["MOHAWK stage-3 step"]
want(abs(s3["ratio"] - 1.6) < 1e-9 and s3["meets"] is True, f"stage 3 {s3}")
te = rows["teacher training step"]
want(abs(te["ratio"] - 1.2) < 1e-9 and te["meets"] is False, f"teacher {te}")
d1 = rows["Llamba-1B decode batch 1 (bf16 weights)"]
want(d1["meets"] is True and d1["peer_tok_s"] is None and "65% of copy bw" in d1["work"], f"decode b1 {d1}")
d64 = rows["Llamba-1B decode batch 64 (bf16 weights)"]
want(d64["peer_tok_s"] == 5800 and d64["meets"] is False, f"decode b64 (bf16 peer, 30k) {d64}")
ssd = rows["SSD mixer fwd + bwd"]
want(ssd["peer_tok_s"] is None and ssd["meets"] is None, f"ssd without a peer {ssd}")
want(len(rows) == 5, f"{len(rows)} rows")
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
P
# stage 3 at 1.6x but more memory than the peer: not met
sed -i 's/"device_gb_used": 50.0/"device_gb_used": 61.0/' "$T/t.jsonl"
"$PY" bench/gpu_table.py --json "$T/t.jsonl" | grep -q '"work": "MOHAWK stage-3 step".*"meets": false' ||
  { echo "FAIL: stage 3 with more memory than the peer counted as met"; fail=1; }
"$PY" bench/gpu_table.py "$T/t.jsonl" | grep -q "^teacher training step .* 1.20 " ||
  { echo "FAIL: the table for people lacks the teacher row"; "$PY" bench/gpu_table.py "$T/t.jsonl"; fail=1; }
"$PY" bench/gpu_table.py "$T/none.jsonl" > /dev/null 2> "$T/err"; rc=$?
{ [ $rc = 1 ] && grep -q "cannot read" "$T/err"; } || { echo "FAIL: missing file rc $rc"; cat "$T/err"; fail=1; }
echo '{"engine": "pytorch", "bench": "decode", "batch": 1}' > "$T/peer_only.jsonl"
"$PY" bench/gpu_table.py "$T/peer_only.jsonl" > /dev/null 2> "$T/err"; rc=$?
{ [ $rc = 1 ] && grep -q "no molt rows" "$T/err"; } || { echo "FAIL: no molt rows rc $rc"; fail=1; }
[ $fail = 0 ] && echo "test_gpu_table: all checks passed"
exit $fail
