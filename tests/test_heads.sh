#!/usr/bin/env bash
# molt heads: G&A head ablation on kv-llama-2m (a real retrieval teacher).
# One ranking over two probe seeds (--json --out): 36 heads (6 layers x 6),
# sorted by drop, the top head far above the median, spreads over the seeds,
# sharpness in range, the model restored after every ablation (the whole
# model's accuracy, re-measured after the ranking, equals a fresh molt eval),
# layer pruning ending near chance, the plots well-formed. Then the recurrent
# path on a tiny hybrid (attention, kept heads and SSM heads), a model whose
# values are several tokens (stories260K), and clean failures: a model without
# heads, bad arguments.
set -u
MOLT=${MOLT_BIN:-build/molt}
. tests/assets.sh
KV=$(asset models/kv-llama-2m)
ST=$(asset models/stories260K/stories260K.bin)
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0

if have "$KV" "the head ranking of kv-llama-2m (retrieval heads, layer study, plots)"; then
t0=$EPOCHREALTIME
$MOLT heads "$KV" --pairs 6 --examples 60 --seeds 1,2 --json --out "$T/o" -q > "$T/heads.json" 2> "$T/err" \
  || { echo "FAIL: molt heads run"; cat "$T/err"; exit 1; }
dt=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}')
e1=$($MOLT eval "$KV" --task kv --pairs 6 --examples 60 --seed 1 --json) || { echo "FAIL: eval"; exit 1; }
e2=$($MOLT eval "$KV" --task kv --pairs 6 --examples 60 --seed 2 --json) || { echo "FAIL: eval"; exit 1; }
/usr/bin/python3 - "$T/heads.json" "$T/o" "$e1" "$e2" "$dt" <<'PY' || fail=1
import json, math, sys, os
import xml.etree.ElementTree as ET
heads = json.load(open(sys.argv[1]))          # stdout must be only the JSON list
out, e1, e2 = sys.argv[2], json.loads(sys.argv[3])[0], json.loads(sys.argv[4])[0]
assert json.load(open(os.path.join(out, "heads.json"))) == heads, "heads.json differs from --json"
assert len(heads) == 36, len(heads)
keys = {"layer", "head", "accuracy_drop", "accuracy", "entropy", "top_weight", "mass_key",
        "mass_value", "mass_newline", "drop_min", "drop_max"}
for h in heads:
    assert keys <= set(h), set(h)
    assert h["kind"] == "attention"
assert sorted((h["layer"], h["head"]) for h in heads) == [(l, k) for l in range(6) for k in range(6)]
drops = [h["accuracy_drop"] for h in heads]
assert drops == sorted(drops, reverse=True), "not sorted by drop"
# the model is restored: base = accuracy + drop for every head, equal to a fresh eval, and to
# the whole-model accuracy that the layer study measured after all 36 ablations
base = (e1["correct"] + e2["correct"]) / (e1["examples"] + e2["examples"])
for h in heads:
    assert abs(h["accuracy"] + h["accuracy_drop"] - base) < 1e-5, (h, base)
layers = json.load(open(os.path.join(out, "layers.json")))
assert abs(layers["base_accuracy"] - base) < 1e-5, (layers["base_accuracy"], base)
# spreads over the two seeds
for h in heads:
    assert h["drop_min"] <= h["accuracy_drop"] + 1e-9 <= h["drop_max"] + 2e-9, h
    assert abs((h["drop_min"] + h["drop_max"]) / 2 - h["accuracy_drop"]) < 1e-5, h
assert sum(h["drop_max"] - h["drop_min"] > 0 for h in heads) >= 10, "seeds gave no spread"
# a retrieval head stands out (measured: L1H3 0.35, spread 0.30..0.40; median 0.025)
med = sorted(drops)[len(drops) // 2]
assert drops[0] >= 0.2 and drops[0] >= 4 * max(med, 0.02), (drops[0], med)
# sharpness in range
for h in heads:
    assert 0 <= h["entropy"] <= math.log(200) and 0 < h["top_weight"] <= 1, h
    m = [h["mass_key"], h["mass_value"], h["mass_newline"]]
    assert all(0 <= x <= 1 for x in m) and sum(m) <= 1 + 1e-6, h
assert max(h["mass_value"] for h in heads) > 0.2, "no head reads the answer's value"
# layers: pruning everything leaves (near) chance; removing a middle layer hurts
pr = layers["pruned_from_top"]
assert [p["removed"] for p in pr] == list(range(7)) and len(layers["single_layer"]) == 6
assert pr[-1]["accuracy"] <= 0.1 and min(s["accuracy"] for s in layers["single_layer"]) < base - 0.2
for f in ("ablation_heatmap.svg", "top_head_attention.svg"):
    root = ET.parse(os.path.join(out, f)).getroot()
    assert root.tag.endswith("svg"), f
heat = open(os.path.join(out, "ablation_heatmap.svg")).read()
assert heat.count("<rect") >= 36 and "L5 H5" in heat
print("heads ok (%ss): top L%dH%d drop %.3f (spread %.3f..%.3f), median %.3f, base %.3f"
      % (sys.argv[5], heads[0]["layer"], heads[0]["head"], drops[0], heads[0]["drop_min"],
         heads[0]["drop_max"], med, base))
PY
fi

# the recurrent path: a tiny random hybrid (SSM layer, hybrid layer keeping heads 1 and 4,
# attention layer) with kv-llama's tokenizer (without it: stories260K's, vocab 512)
TOK=$(asset models/kv-llama-2m/tokenizer.json) VOCAB=1024
[ -e "$TOK" ] || { TOK=$(asset models/stories260K/tok512.bin) VOCAB=512; echo "note: hybrid uses $TOK"; }
cat > "$T/config.json" <<'EOF'
{"model_type": "molt_hybrid", "vocab_size": 1024, "tie_embeddings": true, "pad_vocab_size_multiple": 1,
 "lm_head_bias": false, "d_model": 32, "n_layer": 3, "norm_epsilon": 1e-5,
 "mlp_cfg": {"intermediate_size": 64, "bias": false, "act_fn": "silu"},
 "ssm_cfg": {"d_state": 8, "n_v_heads": 4, "n_qk_heads": 2, "expand": 1, "chunk_size": 16,
             "activation": "identity", "bias": false, "conv_bias": true, "d_conv": 4},
 "attn_cfg": {"num_attention_heads": 6, "num_key_value_heads": 2, "head_dim": 8,
              "rope_theta": 10000.0, "max_position_embeddings": 512},
 "layers": [{"mixer": "ssm"}, {"mixer": "hybrid", "attention_heads": [1, 4]}, {"mixer": "attention"}],
 "bos_token_id": 0, "eos_token_id": 1}
EOF
sed -i "s/\"vocab_size\": 1024/\"vocab_size\": $VOCAB/" "$T/config.json"
$MOLT train "$T/config.json" --data "$(asset models/kv-llama-2m/kv_task.json)" -o "$T/hy" --steps 1 \
  --seq 32 --batch 1 --tokenizer "$TOK" -q > /dev/null 2> "$T/err" || { echo "FAIL: hybrid init"; cat "$T/err"; exit 1; }
$MOLT heads "$T/hy" --pairs 4 --examples 8 --json --out "$T/ho" -q > "$T/hy.json" 2> "$T/err" \
  || { echo "FAIL: heads on a hybrid"; cat "$T/err"; exit 1; }
/usr/bin/python3 - "$T/hy.json" <<'PY' || fail=1
import json, sys
h = json.load(open(sys.argv[1]))
got = sorted((x["layer"], x["kind"], x["head"]) for x in h)
want = sorted([(0, "recurrent", k) for k in range(4)] + [(1, "attention", 1), (1, "attention", 4)]
              + [(1, "recurrent", k) for k in range(4)] + [(2, "attention", k) for k in range(6)])
assert got == want, got
for x in h:
    assert x["entropy"] is not None and 0 < x["top_weight"] <= 1, x
print("hybrid ok: %d heads (attention, kept and recurrent)" % len(h))
PY
[ -s "$T/ho/top_head_attention.svg" ] || { echo "FAIL: hybrid plots"; fail=1; }

# multi-token values: stories260K (a converted llama2.c model; its 512-token tokenizer
# splits 42 into '4' '2') runs end to end: 40 heads (5 layers x 8), the layer study, plots
$MOLT heads "$ST" --pairs 3 --examples 4 --json --out "$T/so" -q > "$T/st.json" 2> "$T/err" \
  || { echo "FAIL: heads on stories260K"; cat "$T/err"; exit 1; }
/usr/bin/python3 - "$T/st.json" "$T/so" <<'PY' || fail=1
import json, os, sys
h = json.load(open(sys.argv[1]))
assert sorted((x["layer"], x["head"]) for x in h) == [(l, k) for l in range(5) for k in range(8)], h
for x in h:
    assert 0 <= x["accuracy"] <= 1 and 0 < x["top_weight"] <= 1, x
    assert x["mass_value"] is not None, "landmarks unknown on stories260K"
layers = json.load(open(os.path.join(sys.argv[2], "layers.json")))
assert len(layers["pruned_from_top"]) == 6 and len(layers["single_layer"]) == 5, layers
svg = open(os.path.join(sys.argv[2], "top_head_attention.svg")).read()
assert "answer '" in svg
print("stories260K ok: %d heads, base accuracy %.3f" % (len(h), layers["base_accuracy"]))
PY

bad() { # NAME EXIT SUBSTRING -- args
  local name=$1 want_rc=$2 want=$3; shift 4
  "$@" > "$T/out" 2> "$T/err"; local rc=$?
  if [ $rc -ne "$want_rc" ] || ! grep -q -- "$want" "$T/err" || [ -s "$T/out" ]; then
    echo "FAIL $name (exit $rc, wanted $want_rc):"; cat "$T/err"; fail=1
  else
    echo "ok   $name: $(head -1 "$T/err")"
  fi
}
M2=$(asset models/mamba2-random)
have "$M2" "heads refuses a model without attention" &&
  bad no-heads 1 "no attention heads" -- $MOLT heads "$M2" -q
BM=$KV; [ -e "$KV" ] || BM=$ST # bad arguments: on stories260K without kv-llama-2m
bad zero-pairs 2 "pairs" -- $MOLT heads "$BM" --pairs 0
bad too-many-pairs 1 "pairs" -- $MOLT heads "$BM" --pairs 5000 -q
bad zero-examples 2 "examples" -- $MOLT heads "$BM" --examples 0
bad bad-seeds 2 "seeds" -- $MOLT heads "$BM" --seeds 1,x
bad no-model 2 "no MODEL" -- $MOLT heads
exit $fail
