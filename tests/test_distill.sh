#!/usr/bin/env bash
# molt distill: bad options fail before any work with a clear message, and a
# small end-to-end run on stories260K (a real pretrained teacher) where every
# stage's loss falls, the stage-1 distance shrinks, the report and plots are
# written, and the student loads, evaluates and generates.
set -u
MOLT=${MOLT_BIN:-build/molt}
. tests/assets.sh
M2=$(asset models/mamba2-random)
TEACHER=models/stories260K/stories260K.bin
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
bad() { # NAME SUBSTRING -- args
  local name=$1 want=$2; shift 3
  local t0=$EPOCHREALTIME
  "$@" > /dev/null 2> "$T/err"; local rc=$?
  local dt=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.2f", b-a}')
  if [ $rc -eq 0 ] || [ $rc -ge 128 ] || ! grep -q -- "$want" "$T/err"; then
    echo "FAIL $name (exit $rc):"; cat "$T/err"; fail=1
  else
    echo "ok   $name (${dt}s): $(grep error "$T/err")"
  fi
}
bad zero-budget "budget is zero" -- $MOLT distill $TEACHER -o "$T/x" --tokens 0
bad heads-mismatch "stage 1" -- $MOLT distill $TEACHER -o "$T/x" --student-heads 4 --init random
bad bad-teacher "no such file" -- $MOLT distill "$T/missing.bin" -o "$T/x"
have "$M2" "distill refuses a Mamba-2 teacher" &&
  bad not-llama "Llama" -- $MOLT distill "$M2" -o "$T/x"
mkdir -p "$T/ro"; touch "$T/ro/file"
bad unwritable "file" -- $MOLT distill $TEACHER -o "$T/ro/file/sub"
bad bad-init "transfer or random" -- $MOLT distill $TEACHER -o "$T/x" --init magic
bad hybrid-no-such-head "does not exist" -- $MOLT hybridize $TEACHER -o "$T/x" --heads 2:9
bad hybrid-k-too-large "only 40 heads" -- $MOLT hybridize $TEACHER -o "$T/x" --random-heads 41
have "$M2" "hybridize refuses a Mamba-2 teacher" &&
  bad hybrid-no-attention "Llama" -- $MOLT hybridize "$M2" -o "$T/x" --heads 0:0
bad kv-data-no-task "needs --kv-task" -- $MOLT distill $TEACHER -o "$T/x" --kv-data-frac 0.3
bad hybrid-no-plan "exactly one" -- $MOLT hybridize $TEACHER -o "$T/x"
bad bad-student "llamba, mamba2, mamba3, mamba3-mimo or gateloop" -- $MOLT distill $TEACHER -o "$T/x" --student mamba9
bad gateloop-heads "one student head per teacher query head" -- $MOLT distill $TEACHER -o "$T/x" --student gateloop --student-heads 4 --stage1-tokens 0
bad mamba3-no-angles "rotary angles" -- $MOLT distill $TEACHER -o "$T/x" --student mamba3 --d-state 2
bad mamba3-mimo-odd "even" -- $MOLT distill $TEACHER -o "$T/x" --student mamba3-mimo --d-state 9
bad hybrid-rec-bad-head "does not exist" -- $MOLT hybridize $TEACHER -o "$T/x" --heads 2:9 --student mamba3
# small real run (held-out: the first 40 KB of TinyStories valid, never trained on)
cp tests/fixtures/data/tinystories/tinystories_v1_valid_head_40k.txt "$T/valid.txt"
$MOLT distill $TEACHER -o "$T/s" --sample-tokens 40000 --seq 64 --batch 4 \
  --stage1-tokens 12800 --stage2-tokens 12800 --stage3-tokens 25600 --lr3 2e-3 \
  --eval-data "$T/valid.txt" -q > "$T/out" 2> "$T/err" \
  || { echo "FAIL: distill run"; cat "$T/err"; exit 1; }
cat "$T/out"
/usr/bin/python3 - "$T/s/report.json" <<'PY' || fail=1
import json, sys
r = json.load(open(sys.argv[1]))
ok = True
for s in r["stages"]:
    falls = s["final_loss_mean_last10pct"] < s["first_loss"]
    print(f"stage {s['stage']}: {s['first_loss']:.4f} -> {s['final_loss_mean_last10pct']:.4f} {'falls' if falls else 'DOES NOT FALL'}")
    ok &= falls
    # the timeline: windows up to the stage's last step (4 x 64 tokens a step), each with a
    # rate, and no GPU memory on the CPU
    tl = s.get("timeline", [])
    good = len(tl) >= 2 and all(w["tok_per_s"] > 0 and w["device_gb"] == 0 for w in tl) \
        and tl[-1]["step"] * 256 == s["tokens"]
    print(f"stage {s['stage']}: timeline of {len(tl)} windows {'ok' if good else 'WRONG'}")
    ok &= good
f = r["stage1_frobenius_per_layer"]
print(f"stage-1 distance {f['before']:.3f} -> {f['after']:.3f}")
ok &= f["after"] < f["before"]
ok &= r["eval"]["student_loss"] > 0 and r["bytes_per_sequence"]["student_state"] > 0
sys.exit(0 if ok else 1)
PY
for f in report.txt loss_curves.svg timeline.svg attention_vs_mixer.svg config.json model.safetensors; do
  [ -s "$T/s/$f" ] || { echo "FAIL: $f missing"; fail=1; }
done
grep -qE '"model_type":[[:space:]]*"llamba"' "$T/s/config.json" || { echo "FAIL: student is not a llamba model"; fail=1; }
$MOLT generate "$T/s" -t 0 -n 20 -q > "$T/gen" 2>&1 || { echo "FAIL: student does not generate"; cat "$T/gen"; fail=1; }
echo "student says: $(head -c 120 "$T/gen")"
# --resume after a finished run skips every stage and gives the same student,
# and its report (valid JSON) still carries the first run's stage losses
cp "$T/s/model.safetensors" "$T/first.safetensors"
cp "$T/s/report.json" "$T/first.json"
$MOLT distill $TEACHER -o "$T/s" --sample-tokens 40000 --seq 64 --batch 4 \
  --stage1-tokens 12800 --stage2-tokens 12800 --stage3-tokens 25600 --lr3 2e-3 -q --resume > "$T/out2" 2> "$T/err2" \
  || { echo "FAIL: resume"; cat "$T/err2"; fail=1; }
grep -q "(earlier run)" "$T/out2" || { echo "FAIL: resume did not skip the finished stages"; cat "$T/out2"; fail=1; }
cmp -s "$T/s/model.safetensors" "$T/first.safetensors" || { echo "FAIL: resumed student differs"; fail=1; }
/usr/bin/python3 - "$T/first.json" "$T/s/report.json" <<'PY' || { echo "FAIL: resumed report"; fail=1; }
import json, sys
a, b = (json.load(open(p))["stages"] for p in sys.argv[1:3])
for x, y in zip(a, b):
    assert y["skipped"] and x["tokens"] == y["tokens"], (x, y)
    assert abs(x["final_loss_mean_last10pct"] - y["final_loss_mean_last10pct"]) <= 1e-6 * abs(x["final_loss_mean_last10pct"]), (x, y)
    assert abs(x["first_loss"] - y["first_loss"]) <= 1e-6 * abs(x["first_loss"]), (x, y)
PY
# a small hybrid: two kept heads (frozen), the rest recurrent
$MOLT hybridize $TEACHER -o "$T/h" --heads 4:0,2:3 --freeze-kept --sample-tokens 20000 --seq 64 \
  --batch 4 --stage1-tokens 6400 --stage2-tokens 6400 --stage3-tokens 12800 -q > "$T/hout" 2> "$T/herr" \
  || { echo "FAIL: hybridize run"; cat "$T/herr"; fail=1; }
grep -qE '"model_type":[[:space:]]*"molt_hybrid"' "$T/h/config.json" || { echo "FAIL: not a molt_hybrid"; fail=1; }
/usr/bin/python3 - "$T/h/report.json" "$TEACHER" <<'PY' || fail=1
import json, sys, struct
r = json.load(open(sys.argv[1]))
assert r["student"]["kept_heads"] == [[4, 0], [2, 3]], r["student"]["kept_heads"]
assert r["student"]["kv_bytes_per_token"] == 2 * 2 * 8 * 4, r["student"]["kv_bytes_per_token"]
print("hybrid ok: kept", r["student"]["kept_heads"], "KV bytes/token", r["student"]["kv_bytes_per_token"])
PY
$MOLT info "$T/h" | grep -q "2 heads hold a KV cache" || { echo "FAIL: info of the hybrid"; $MOLT info "$T/h"; fail=1; }
# a GateLoop student (attention transfer: q/k/v/o and RoPE's phases): the stage 1 and 2
# losses fall; stage 3 (which starts near its floor, the teacher's entropy, after stages
# 1-2; its first loss is one batch of 4 × 64 tokens, whose noise alone is several percent: at
# --seed 1..4 stage 3 ends 0.79-0.90x its first batch, at the default seed the first batch
# is an easy one and it ends 1.07x) does not rise by 10%; the held-out loss ends within 1.5x
# the teacher's; the student is GateLoop layers with a constant state (5 layers × 8 heads ×
# 8×8 floats = 10240 B) that info reports, and it evaluates and generates. (The stage-1
# distance is printed, not held to shrink: the transfer starts the surrogate attention near
# 0 (q scaled by 1 − 0.98), and stages 2-3 move it again.)
$MOLT distill $TEACHER -o "$T/g" --student gateloop --sample-tokens 20000 --seq 64 --batch 4 \
  --stage1-tokens 6400 --stage2-tokens 6400 --stage3-tokens 12800 --lr3 1e-4 \
  --eval-data "$T/valid.txt" -q > "$T/gout" 2> "$T/gerr" \
  || { echo "FAIL: gateloop distill run"; cat "$T/gerr"; fail=1; }
/usr/bin/python3 - "$T/g/report.json" "$T/g/config.json" <<'PY' || fail=1
import json, sys
r, c = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
ok = r["student"]["mixer"] == "gateloop"
for s in r["stages"]:
    a, b = s["first_loss"], s["final_loss_mean_last10pct"]
    good = b < a if s["stage"] < 3 else b < 1.10 * a  # stage 3: first_loss is one batch
    print(f"gateloop stage {s['stage']}: {a:.4f} -> {b:.4f} {'ok' if good else 'BAD'}")
    ok &= good
f = r["stage1_frobenius_per_layer"]
print(f"gateloop stage-1 distance {f['before']:.3f} -> {f['after']:.3f}, held-out loss student {r['eval']['student_loss']:.4f}, teacher {r['eval']['teacher_loss']:.4f}")
e = r["eval"]
ok &= 0 < e["student_loss"] < 1.5 * e["teacher_loss"]
ok &= r["bytes_per_sequence"]["student_state"] == 10240
ok &= c["model_type"] == "molt_hybrid" and all(l["mixer"] == "gateloop" for l in c["layers"])
ok &= c["gateloop_cfg"] == {"n_heads": 8, "head_dim": 8, "chunk_size": 64}
sys.exit(0 if ok else 1)
PY
$MOLT info "$T/g" | grep -q "recurrent state  10.00 KiB per sequence" || { echo "FAIL: info of the GateLoop student"; $MOLT info "$T/g"; fail=1; }
$MOLT info "$T/g" | grep -q "KV cache         0 B per token" || { echo "FAIL: the GateLoop student holds a KV cache"; fail=1; }
$MOLT eval "$T/g" --text "$T/valid.txt" > "$T/geval" 2>&1 || { echo "FAIL: the GateLoop student does not evaluate"; cat "$T/geval"; fail=1; }
$MOLT generate "$T/g" -t 0 -n 20 -q > "$T/ggen" 2>&1 || { echo "FAIL: the GateLoop student does not generate"; cat "$T/ggen"; fail=1; }
echo "gateloop student says: $(head -c 120 "$T/ggen")"
# Mamba-3 students (SISO; MIMO of rank 2), attention-transfer init: every stage's loss
# falls (the stage-1 distance after all three stages is printed, not held: the transfer init
# starts it low, ~8 per layer against Llamba's ~355, and stages 2-3 need not keep it there),
# the student is a molt_hybrid of mamba3 layers with its
# mamba3_cfg, generates, and `molt info` reports its state (5 layers × (H·P·N + R·H·N + H·P +
# H·S) floats, H 8, P 8, N 16, S 4)
for st in mamba3 mamba3-mimo; do
  $MOLT distill $TEACHER -o "$T/$st" --student $st --mimo-rank 2 --sample-tokens 20000 --seq 64 \
    --batch 4 --stage1-tokens 6400 --stage2-tokens 6400 --stage3-tokens 12800 --lr3 2e-3 -q \
    > "$T/$st.out" 2> "$T/$st.err" || { echo "FAIL: distill --student $st"; cat "$T/$st.err"; fail=1; continue; }
  /usr/bin/python3 - "$T/$st" $st <<'PY' || fail=1
import json, sys
d, st = sys.argv[1], sys.argv[2]
r, c = json.load(open(d + "/report.json")), json.load(open(d + "/config.json"))
ok = True
for s in r["stages"]:
    falls = s["final_loss_mean_last10pct"] < s["first_loss"]
    print(f"{st} stage {s['stage']}: {s['first_loss']:.4f} -> {s['final_loss_mean_last10pct']:.4f} {'falls' if falls else 'DOES NOT FALL'}")
    ok &= falls
f = r["stage1_frobenius_per_layer"]
print(f"{st} stage-1 distance {f['before']:.3f} -> {f['after']:.3f}")
ok &= f["after"] == f["after"] and r["student"]["mixer"] == st
ok &= c["model_type"] == "molt_hybrid" and all(l["mixer"] == "mamba3" for l in c["layers"])
ok &= "ssm_cfg" not in c and c["mamba3_cfg"]["is_mimo"] == (st == "mamba3-mimo")
R = c["mamba3_cfg"].get("mimo_rank", 1)
ok &= R == (2 if st == "mamba3-mimo" else 1)
want = 5 * 4 * (8 * 8 * 16 + R * 8 * 16 + 8 * 8 + 8 * 4)
ok &= r["bytes_per_sequence"]["student_state"] == want
print(f"{st}: state {r['bytes_per_sequence']['student_state']} bytes (want {want})")
sys.exit(0 if ok else 1)
PY
  $MOLT info "$T/$st" --json | /usr/bin/python3 -c 'import json,sys; i=json.load(sys.stdin); R=2 if sys.argv[1]=="mamba3-mimo" else 1; w=5*4*(8*8*16+R*8*16+8*8+8*4); sys.exit(0 if i["state_bytes"]==w and i["d_state"]==16 else 1)' $st \
    || { echo "FAIL: molt info of the $st student"; $MOLT info "$T/$st"; fail=1; }
  $MOLT generate "$T/$st" -t 0 -n 20 -q > "$T/$st.gen" 2>&1 || { echo "FAIL: $st student does not generate"; cat "$T/$st.gen"; fail=1; }
  echo "$st student says: $(head -c 100 "$T/$st.gen")"
done
# hybrids of Mamba-3 / GateLoop / Mamba-2 and two kept heads: the layers holding them are
# "hybrid" with "recurrent": the student's mixer (Mamba-2: the ssm mixer, no "recurrent"), the
# others that mixer alone; the report lists the kept
# heads and their KV bytes; the student evaluates, generates, and survives info
for st in mamba3 gateloop mamba2; do
  $MOLT hybridize $TEACHER -o "$T/h$st" --heads 4:0,2:3 --student $st --sample-tokens 10000 \
    --seq 64 --batch 4 --stage1-tokens 3200 --stage2-tokens 3200 --stage3-tokens 6400 -q \
    > "$T/h$st.out" 2> "$T/h$st.err" || { echo "FAIL: hybridize --student $st"; cat "$T/h$st.err"; fail=1; continue; }
  /usr/bin/python3 - "$T/h$st" $st <<'PY' || fail=1
import json, math, sys
d, st = sys.argv[1], sys.argv[2]
r, c = json.load(open(d + "/report.json")), json.load(open(d + "/config.json"))
L = c["layers"]
m = "ssm" if st == "mamba2" else st  # Mamba-2: the ssm mixer, ssm_cfg "layer": "Mamba2"
ok = [l["mixer"] for l in L] == [m] * 2 + ["hybrid", m, "hybrid"]
rec = {} if st == "mamba2" else {"recurrent": st}
ok &= L[2] == {"mixer": "hybrid", "attention_heads": [3], **rec}
ok &= L[4] == {"mixer": "hybrid", "attention_heads": [0], **rec}
ok &= st != "mamba2" or c["ssm_cfg"]["layer"] == "Mamba2"
ok &= r["student"]["kept_heads"] == [[4, 0], [2, 3]] and r["student"]["kv_bytes_per_token"] == 128
ok &= all(math.isfinite(s["final_loss_mean_last10pct"]) for s in r["stages"])
print(f"hybrid+{st}: layers {[l['mixer'] + ('+' + l['recurrent'] if 'recurrent' in l else '') for l in L]}, stage losses {[round(s['final_loss_mean_last10pct'], 3) for s in r['stages']]}")
sys.exit(0 if ok else 1)
PY
  $MOLT info "$T/h$st" | grep -q "2 heads hold a KV cache" || { echo "FAIL: info of hybrid+$st"; $MOLT info "$T/h$st"; fail=1; }
  $MOLT eval "$T/h$st" --text "$T/valid.txt" > "$T/h$st.eval" 2>&1 || { echo "FAIL: hybrid+$st does not evaluate"; cat "$T/h$st.eval"; fail=1; }
  $MOLT generate "$T/h$st" -t 0 -n 20 -q > "$T/h$st.gen" 2>&1 || { echo "FAIL: hybrid+$st does not generate"; cat "$T/h$st.gen"; fail=1; }
  echo "hybrid+$st says: $(head -c 100 "$T/h$st.gen")"
done
# a Mamba-2 student (the Mamba-2 mixer with the teacher's MLPs and norms): stages 2 and 3
# fall, the file is a molt_hybrid of ssm layers whose ssm_cfg is "layer": "Mamba2", its state
# is 5 layers × (H·P·N + (K−1)·(Di + 2·G·N)) floats (H = G = 8, P 8, N 16, K 4, Di 64), and it
# evaluates and generates (bit-exact save / load: tests/test_hybrid_rec.c)
$MOLT distill $TEACHER -o "$T/m2" --student mamba2 --sample-tokens 20000 --seq 64 --batch 4 \
  --stage1-tokens 3200 --stage2-tokens 6400 --stage3-tokens 12800 --lr3 2e-3 \
  --eval-data "$T/valid.txt" -q > "$T/m2.out" 2> "$T/m2.err" \
  || { echo "FAIL: distill --student mamba2"; cat "$T/m2.err"; fail=1; }
/usr/bin/python3 - "$T/m2" <<'PY' || fail=1
import json, sys
d = sys.argv[1]
r, c = json.load(open(d + "/report.json")), json.load(open(d + "/config.json"))
ok = r["student"]["mixer"] == "mamba2"
for s in r["stages"]:
    falls = s["final_loss_mean_last10pct"] < s["first_loss"]
    print(f"mamba2 stage {s['stage']}: {s['first_loss']:.4f} -> {s['final_loss_mean_last10pct']:.4f} {'falls' if falls else 'DOES NOT FALL'}")
    ok &= falls or s["stage"] == 1
ok &= c["model_type"] == "molt_hybrid" and all(l["mixer"] == "ssm" for l in c["layers"])
ok &= c["ssm_cfg"]["layer"] == "Mamba2" and c["ssm_cfg"]["activation"] == "silu"
want = 5 * 4 * (8 * 8 * 16 + 3 * (64 + 2 * 8 * 16))
ok &= r["bytes_per_sequence"]["student_state"] == want
print(f"mamba2: state {r['bytes_per_sequence']['student_state']} bytes (want {want}), held-out loss {r['eval']['student_loss']:.4f} (teacher {r['eval']['teacher_loss']:.4f})")
sys.exit(0 if ok else 1)
PY
$MOLT eval "$T/m2" --text "$T/valid.txt" > "$T/m2.eval" 2>&1 || { echo "FAIL: the Mamba-2 student does not evaluate"; cat "$T/m2.eval"; fail=1; }
$MOLT generate "$T/m2" -t 0 -n 20 -q > "$T/m2.gen" 2>&1 || { echo "FAIL: the Mamba-2 student does not generate"; cat "$T/m2.gen"; fail=1; }
echo "mamba2 student says: $(head -c 100 "$T/m2.gen")"
exit $fail
