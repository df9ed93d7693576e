#!/usr/bin/env bash
# The key-value retrieval probe on kv-llama-2m (a real retrieval teacher):
# accuracy far above chance at small n, falling as n grows, identical for the
# same seed, different prompts for another seed; bad arguments fail cleanly.
set -u
MOLT=${MOLT_BIN:-build/molt}
KV=${MOLT_SHARED:-../shared}/models/kv-llama-2m
out=$($MOLT eval "$KV" --task kv --pairs 4,16 --examples 100 --seed 3 --json) || { echo "FAIL: probe run"; exit 1; }
again=$($MOLT eval "$KV" --task kv --pairs 4,16 --examples 100 --seed 3 --json)
other=$($MOLT eval "$KV" --task kv --pairs 4,16 --examples 100 --seed 4 --json)
echo "$out"
/usr/bin/python3 - "$out" "$again" "$other" <<'PY' || exit 1
import json, sys
a, b, c = (json.loads(x) for x in sys.argv[1:4])
assert a == b, "same seed must give the same result"
assert a[0]["accuracy"] > 0.2, "4 pairs should be far above chance (0.01)"
assert a[0]["ci_low"] < a[0]["accuracy"] < a[0]["ci_high"]
assert a[1]["accuracy"] < a[0]["accuracy"], "accuracy should fall with more pairs"
assert a != c, "another seed should draw other prompts"
print("kv probe ok: %.2f at 4 pairs, %.2f at 16 (chance %.2f)" % (a[0]["accuracy"], a[1]["accuracy"], a[0]["chance"]))
PY
$MOLT eval "$KV" --task kv --pairs 0 2>/dev/null && { echo "FAIL: 0 pairs accepted"; exit 1; }
$MOLT eval "$KV" --task kv --pairs 10000 2>/tmp/kverr; grep -q "pairs" /tmp/kverr || { echo "FAIL: too many pairs"; cat /tmp/kverr; exit 1; }
exit 0
