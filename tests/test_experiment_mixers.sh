#!/usr/bin/env bash
# scripts/experiments/mixers.py --smoke: the mixer-comparison experiment end to end at tiny
# budgets (stories260K, one seed, three students: Llamba, Mamba-2 and Mamba-3 SISO at equal state
# bytes).
# Checks that mixers.json, mixers.md and loss_vs_state.svg are written and sane: every run's
# held-out loss finite and positive, state bytes > 0 and as planned and within 10% of GateLoop's,
# decode tok/s > 0, the markdown table has a row per student with a loss, the SVG parses and has
# one marker per student.
set -u
MOLT=${MOLT_BIN:-build/molt}
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "skip: no $PY (the experiment script runs on it)"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
t0=$EPOCHREALTIME
"$PY" scripts/experiments/mixers.py --smoke --molt "$MOLT" --out "$T/out" --work "$T/work" \
  > "$T/log" 2>&1 || { echo "FAIL: mixers.py --smoke"; tail -30 "$T/log"; exit 1; }
dt=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}')
echo "mixers.py --smoke: ${dt}s"
"$PY" - "$T/out" <<'PY'
import json, math, os, sys, xml.dom.minidom
d = sys.argv[1]
r = json.load(open(os.path.join(d, "mixers.json")))
ok = True
def check(cond, what):
    global ok
    print(("ok   " if cond else "FAIL ") + what)
    ok &= bool(cond)
check(r["smoke"] and len(r["teachers"]) == 1, "smoke: one teacher")
t = r["teachers"][0]
tl = t["teacher_metrics"]["heldout_loss"]
check(math.isfinite(tl) and tl > 0, f"teacher held-out loss {tl}")
runs = r["runs"]
check(len(runs) == 3 and {x["kind"] for x in runs} == {"llamba", "mamba2", "mamba3"},
      f"three students: {[x['label'] for x in runs]}")
plan = {c["label"]: c["state_bytes_planned"] for c in t["configs"]}
for x in runs:
    l = x["heldout_loss"]
    check(math.isfinite(l) and 0 < l < 20, f"{x['label']}: held-out loss {l:.4f}")
    check(x["state_bytes"] > 0 and x["state_bytes"] == plan[x["label"]],
          f"{x['label']}: state {x['state_bytes']} B (planned {plan[x['label']]})")
    check(abs(x["state_vs_gateloop"] - 1) <= 0.10,
          f"{x['label']}: {x['state_vs_gateloop']:.3f}x GateLoop's state")
    check(x["decode_tok_s"] > 0, f"{x['label']}: decode {x['decode_tok_s']:.0f} tok/s")
    check(len(x["stages"]) == 3, f"{x['label']}: three stages")
check(t["equal_state_mismatch"] == [], "equal-state group within 10%")
md = open(os.path.join(d, "mixers.md")).read()
rows = [ln for ln in md.splitlines() if ln.startswith(("| llamba", "| mamba2", "| mamba3"))]
check(len(rows) == 3 and all("±" in ln for ln in rows), f"markdown: {len(rows)} student rows")
check("| teacher (Llama)" in md, "markdown: teacher row")
svg = xml.dom.minidom.parse(os.path.join(d, "loss_vs_state.svg"))
marks = sum(e.getAttribute("class") == "run" for tag in ("circle", "rect", "polygon")
            for e in svg.getElementsByTagName(tag))
check(marks == len(runs), f"svg: {marks} run markers")
sys.exit(0 if ok else 1)
PY
