#!/usr/bin/env bash
# molt mathgen and molt reason end to end (issue 17), on stories260K (shipped in models/):
#   - mathgen: the same seed writes the same bytes, another seed other bytes; the test split
#     shares no question with the train split; text mode joins documents with the separator;
#     bad --steps / missing -o are usage errors;
#   - reason: mathgen → reason -k 4 --limit 3 prints the table (3 problem rows and the
#     summary; a model of stories has accuracy 0) and valid JSON with the fields the plot
#     script reads; --budget prints a curve, which scripts/plot_reason.py reads; chain 0's text (--texts) is `molt generate`'s
#     continuation with that seed, cut at the first stop string;
#   - errors: a missing data file (exit 1), -k 0 and a missing --data (exit 2).
set -u
MOLT=${MOLT_BIN:-build/molt}
M=models/stories260K/stories260K.bin
[ -f "$M" ] || { echo "SKIP: needs $M"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
die() { echo "FAIL: $*"; fail=1; }
$MOLT mathgen --n 50 --seed 3 --steps 1-4 --digits 2 -o "$T/a.jsonl" || die "mathgen"
$MOLT mathgen --n 50 --seed 3 --steps 1-4 --digits 2 -o "$T/b.jsonl" || die "mathgen again"
$MOLT mathgen --n 50 --seed 4 --steps 1-4 --digits 2 -o "$T/c.jsonl" || die "mathgen seed 4"
cmp -s "$T/a.jsonl" "$T/b.jsonl" || die "mathgen: the same seed gave different files"
cmp -s "$T/a.jsonl" "$T/c.jsonl" && die "mathgen: seeds 3 and 4 gave the same file"
[ "$(wc -l < "$T/a.jsonl")" = 50 ] || die "mathgen: $(wc -l < "$T/a.jsonl") lines, want 50"
$MOLT mathgen --n 100 --seed 5 --steps 1 --digits 1 --split test -o "$T/test.jsonl" || die "test split"
$MOLT mathgen --n 2000 --seed 6 --steps 1 --digits 1 --split train -o "$T/train.jsonl" || die "train split"
python3 - "$T/test.jsonl" "$T/train.jsonl" <<'PY' || fail=1
import json, sys
te = {json.loads(l)["question"] for l in open(sys.argv[1])}
tr = {json.loads(l)["question"] for l in open(sys.argv[2])}
if te & tr or len(te) < 20 or len(tr) < 100:
    print("FAIL: splits share %d questions (test %d, train %d distinct)" % (len(te & tr), len(te), len(tr)))
    sys.exit(1)
PY
$MOLT mathgen --n 3 --seed 1 --format text -o "$T/c.txt" || die "text mode"
[ "$(grep -o '<|endoftext|>' "$T/c.txt" | wc -l)" = 2 ] || die "text mode: want 2 separators"
$MOLT mathgen --n 3 --steps 5-2 -o "$T/x" 2>/dev/null; [ $? = 2 ] || die "--steps 5-2 should be a usage error"
$MOLT mathgen --n 3 2>/dev/null; [ $? = 2 ] || die "mathgen without -o should be a usage error"

# the smoke: mathgen → reason
$MOLT reason "$M" --data "$T/a.jsonl" -k 4 --limit 3 -t 0.8 -n 48 -s 11 --json "$T/r.json" --texts -q \
  > "$T/out" 2>"$T/err" || { die "reason"; cat "$T/err"; }
[ "$(grep -cE '^[0-9]+ ' "$T/out")" = 3 ] || { die "reason: want 3 problem rows"; cat "$T/out"; }
grep -q '^voted accuracy' "$T/out" && grep -q '^coverage pass@4' "$T/out" && grep -q '^single-sample' "$T/out" \
  || { die "reason: summary lines missing"; cat "$T/out"; }
python3 - "$T/r.json" <<'PY' || fail=1
import json, sys
r = json.load(open(sys.argv[1]))
s = r["summary"]
ok = (s["problems"] == 3 and len(r["problems"]) == 3 and r["k"] == 4 and len(r["curve"]) == 1
      and all(len(p["answers"]) == 4 and len(p["texts"]) == 4 for p in r["problems"])
      and 0 <= s["coverage"] <= 1 and s["tokens"] > 0 and set(s["pass_at"]) == {"1", "2", "4"})
if not ok:
    print("FAIL: reason JSON", json.dumps(r)[:400]); sys.exit(1)
PY
# chain 0 of problem 0 is molt generate -s 11 on the same prompt, cut at the first stop string
python3 - "$T/r.json" "$T/a.jsonl" > "$T/prompt" <<'PY'
import json, sys
q = json.loads(open(sys.argv[2]).readline())["question"]
sys.stdout.write("Question: %s\nAnswer:" % q)
PY
$MOLT generate "$M" -p "$(cat "$T/prompt")" -n 48 -t 0.8 --top-p 1 -s 11 -q > "$T/gen" 2>/dev/null || die "generate"
python3 - "$T/r.json" "$T/prompt" "$T/gen" <<'PY' || fail=1
import json, sys
r = json.load(open(sys.argv[1])); prompt = open(sys.argv[2]).read(); gen = open(sys.argv[3]).read()
gen = gen[:-1] if gen.endswith("\n") else gen  # generate ends its output with a newline
if not gen.startswith(prompt):
    print("FAIL: generate does not echo the prompt"); sys.exit(1)
cont = gen[len(prompt):]
cut = min([i for i in (cont.find("\n\n"), cont.find("Question:")) if i >= 0] or [len(cont)])
if r["problems"][0]["texts"][0] != cont[:cut]:
    print("FAIL: chain 0 %r != generate -s 11 %r" % (r["problems"][0]["texts"][0], cont[:cut])); sys.exit(1)
PY
$MOLT reason "$M" --data "$T/a.jsonl" -k 2 --limit 2 -n 16 --budget 0.05 -q --json "$T/b.json" \
  > "$T/bud" 2>"$T/err" || { die "reason --budget"; cat "$T/err"; }
grep -q 'mean per problem after b batches' "$T/bud" || { die "reason --budget: no curve"; cat "$T/bud"; }
# the plot script reads it (the plot itself needs matplotlib; the table is always printed)
python3 scripts/plot_reason.py "$T/plot.png" student="$T/b.json" "$T/r.json" > "$T/plot" 2>&1 \
  && grep -q '^### student' "$T/plot" && grep -q '^| seconds | samples' "$T/plot" \
  || { die "plot_reason.py"; cat "$T/plot"; }
# SVAMP reads (from ../shared when present)
SV=${MOLT_SHARED:-../shared}/data/svamp/SVAMP.json
if [ -f "$SV" ]; then
  $MOLT reason "$M" --data "$SV" -k 2 --limit 1 -n 8 -q > "$T/sv" 2>"$T/err" || { die "reason SVAMP"; cat "$T/err"; }
  grep -qE '^0 +51 ' "$T/sv" || { die "SVAMP: first answer should be 51"; cat "$T/sv"; }
else
  echo "SKIP part: reason on SVAMP (needs $SV)"
fi
$MOLT reason "$M" --data "$T/missing.jsonl" -k 2 -q > /dev/null 2>"$T/err"; rc=$?
{ [ $rc = 1 ] && grep -q missing.jsonl "$T/err"; } || { die "missing data: rc $rc"; cat "$T/err"; }
$MOLT reason "$M" --data "$T/a.jsonl" -k 0 > /dev/null 2>&1; [ $? = 2 ] || die "-k 0 should be a usage error"
$MOLT reason "$M" -k 2 > /dev/null 2>&1; [ $? = 2 ] || die "missing --data should be a usage error"
[ $fail = 0 ] && echo "ok: mathgen deterministic, splits disjoint; reason table + JSON + curve; chain 0 == generate"
exit $fail
