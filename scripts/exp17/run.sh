#!/usr/bin/env bash
# scripts/exp17/run.sh — issue 17's experiment, end to end, time-bounded:
#   data      molt mathgen: train corpus (text), held-out problems (jsonl + text)
#   teacher   a Llama config (char-level byte tokenizer) trained with molt train for
#             TRAIN_S seconds (a short calibration run sizes --steps), saved as bf16
#   llamba    molt distill (pure Llamba, --kd-loss $KD_LLAMBA) on the math corpus, DISTILL_S
#   hybrid    molt hybridize (all heads of HYBRID_LAYERS kept, --kd-loss $KD_HYBRID), HYBRID_S
#   pack      the three bf16 models into $BUNDLE (≤ 15 MiB parts) to run the CPU half elsewhere
#   single    molt reason: greedy (-k 1 -t 0) and sampled (-k SINGLE_K -t $TEMP) accuracy
#   tput256   molt generate --ignore-eos: tok/s and peak memory at batch 1..256, 256 tokens
#   curves    molt reason -k K --budget CURVE_BUDGET: voted accuracy and coverage vs seconds,
#             K = each model's fastest batch (≤ KMAX) in tput256
#   tputlong  the same sweep at 1024 and 2048 tokens
# The same models and problems on the GPU (DEVICE=cuda) and on the CPU (DEVICE=cpu with
# MODELS_FROM=a GPU run's OUT). Every stage is logged with its wall time in
# $OUT/json/stages.jsonl and bounded by `timeout`; the whole run keeps to TOTAL_S seconds
# (stage budgets scaled down to fit). Results: $OUT/json/*.json; logs: $OUT/logs/.
# scripts/exp17/report.py turns them into docs/reports/reasoning.md.
#
# usage: [DEVICE=cuda] [OUT=DIR] [BUNDLE=DIR] [TOTAL_S=480] [STAGES="..."] [knobs] \
#          scripts/exp17/run.sh
#   TINY=1: a one-minute smoke run (tiny model, tiny budgets) to check the plumbing; with
#   TINY_CAL=1 the calibrated (time-budgeted) training and distillation too.
set -euo pipefail

DEVICE=${DEVICE:-cpu}
case $DEVICE in cpu | cuda | cuda:*) ;; *) echo "run.sh: DEVICE=$DEVICE (cpu|cuda)" >&2; exit 2 ;; esac
if [ "$DEVICE" = cpu ]; then MOLT=${MOLT:-build/molt}; else MOLT=${MOLT:-build-cuda/molt}; fi
[ -x "$MOLT" ] || { echo "run.sh: no molt binary at $MOLT (make / make cuda, or MOLT=...)" >&2; exit 2; }
MOLT=$(cd "$(dirname "$MOLT")" && pwd)/$(basename "$MOLT")
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-out/exp17-${DEVICE%%:*}}
BUNDLE=${BUNDLE:-}
MODELS_FROM=${MODELS_FROM:-}
TINY=${TINY:-0}
if [ -n "$MODELS_FROM" ]; then
  STAGES=${STAGES:-"data single tput256 curves tputlong"}
else
  STAGES=${STAGES:-"data teacher llamba hybrid pack single tput256 curves tputlong"}
fi
TOTAL_S=${TOTAL_S:-480}
THREADS=${THREADS:-$([ "$DEVICE" = cpu ] && echo 2 || echo 8)}
MATMUL=${MATMUL:-$([ "$DEVICE" = cpu ] && echo fp32 || echo bf16)}

# --- the task: problems of STEPS operations on DIGITS-digit numbers
STEPS=${STEPS:-2-3}
DIGITS=${DIGITS:-2}
N_TRAIN=${N_TRAIN:-300000}  # problems in the training corpus (about 180 characters each)
N_TEST=${N_TEST:-1000}      # held-out problems (test split: no question shared with train)
N_DISTILL=${N_DISTILL:-100000}  # the head of the training corpus: the distillation data
N_CAL=${N_CAL:-10000}       # a smaller head: the calibration runs (they load it faster)
DATA_SEED=${DATA_SEED:-1}
# --- the teacher: Llama, char-level (bytes) tokenizer, vocab 258 padded to 320
D_MODEL=${D_MODEL:-384}
N_LAYER=${N_LAYER:-6}
N_HEAD=${N_HEAD:-6}
N_KV=${N_KV:-$N_HEAD}
HEAD_DIM=${HEAD_DIM:-64}
FF=${FF:-768}
MAX_POS=${MAX_POS:-4096}   # room for 2048-token throughput runs
SEQ=${SEQ:-256}
BATCH=${BATCH:-64}
LR=${LR:-2e-3}
TRAIN_S=${TRAIN_S:-150}     # teacher training, calibration included
TRAIN_STEPS=${TRAIN_STEPS:-}  # fixed steps instead of the time budget
CAL_STEPS=${CAL_STEPS:-12}
# --- distillation (MOHAWK: 10% / 20% / 70% of the tokens over the three stages)
D_SEQ=${D_SEQ:-256}
D_BATCH=${D_BATCH:-16}
D_LR3=${D_LR3:-1e-3}
DISTILL_S=${DISTILL_S:-45}
HYBRID_S=${HYBRID_S:-40}
DISTILL_TOKENS=${DISTILL_TOKENS:-}  # fixed token budget instead of the time budgets
CAL_D_STEPS=${CAL_D_STEPS:-6}
KD_LLAMBA=${KD_LLAMBA:-fkl}
KD_HYBRID=${KD_HYBRID:-rkl}
D_STATE=${D_STATE:-16}
HYBRID_LAYERS=${HYBRID_LAYERS:-$((N_LAYER / 2))}  # every head of these layers stays attention
# --- evaluation
TEMP=${TEMP:-0.7}
MAX_TOKENS=${MAX_TOKENS:-160}  # per chain (solutions are ~40-100 characters)
GREEDY_N=${GREEDY_N:-48}
SINGLE_N=${SINGLE_N:-48}
SINGLE_K=${SINGLE_K:-8}
SINGLE_S=${SINGLE_S:-20}
CURVE_N=${CURVE_N:-24}
CURVE_BUDGET=${CURVE_BUDGET:-0.6}  # seconds per problem
CURVES_S=${CURVES_S:-90}
KMAX=${KMAX:-64}
K_FIXED=${K_FIXED:-}
TPUT_BATCHES=${TPUT_BATCHES:-"1 4 16 64 256"}
TPUT_LENS=${TPUT_LENS:-"1024 2048"}
# the long sweep's points LEN:BATCH in the order run (the time allows only part of the grid on
# the GPU: the most telling points first); TPUT_LONG_POINTS= (empty): TPUT_LENS x TPUT_BATCHES
TPUT_LONG_POINTS=${TPUT_LONG_POINTS:-"2048:1 2048:64 2048:256 1024:16 1024:256 2048:16 1024:1 1024:64 2048:4 1024:4"}
TPUT_PICK_LEN=${TPUT_PICK_LEN:-256}
TPUT_RUN_S=${TPUT_RUN_S:-25}        # per generate run, 256-token sweep
TPUT_LONG_RUN_S=${TPUT_LONG_RUN_S:-15}  # per generate run, long sweep
TPUT256_S=${TPUT256_S:-20}
TPUTLONG_S=${TPUTLONG_S:-25}
MODELS=${MODELS:-"teacher llamba hybrid"}

if [ "$TINY" = 1 ]; then # the plumbing in seconds (CPU): nothing here learns the task
  N_TRAIN=2000; N_TEST=60; N_DISTILL=1000; N_CAL=500; D_MODEL=64; N_LAYER=2; N_HEAD=2; N_KV=2; HEAD_DIM=32; FF=128
  SEQ=128; BATCH=4; CAL_STEPS=2; D_SEQ=64; D_BATCH=2; CAL_D_STEPS=2; HYBRID_LAYERS=1
  if [ -z "${TINY_CAL:-}" ]; then TRAIN_STEPS=${TRAIN_STEPS:-6}; DISTILL_TOKENS=${DISTILL_TOKENS:-2560}; fi
  GREEDY_N=3; SINGLE_N=3; SINGLE_K=2
  CURVE_N=2; CURVE_BUDGET=0.2; KMAX=4; TPUT_BATCHES="1 4"; TPUT_PICK_LEN=32
  TPUT_LONG_POINTS="64:4 64:1"
  MAX_TOKENS=24; TPUT_RUN_S=20; TPUT_LONG_RUN_S=20
fi

mkdir -p "$OUT"/{data,json,logs,models,work}
OUT=$(cd "$OUT" && pwd)
[ -z "$BUNDLE" ] || { mkdir -p "$BUNDLE"; BUNDLE=$(cd "$BUNDLE" && pwd); }
J=$OUT/json L=$OUT/logs W=$OUT/work
T_START=$(date +%s.%N)

elapsed() { awk -v a="$T_START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
left() { awk -v a="$T_START" -v b="$(date +%s.%N)" -v t="$TOTAL_S" 'BEGIN { printf "%d", t - (b - a) }'; }
log() { echo "[exp17 $(elapsed)s] $*" | tee -a "$L/run.log" >&2; }
want() { case " $STAGES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (a < b ? a : b) }'; }
# stage_rec NAME STATUS SECONDS BUDGET NOTE: one line of json/stages.jsonl
stage_rec() {
  python3 -c 'import json, sys; a = sys.argv; print(json.dumps({"stage": a[1], "status": a[2],
    "seconds": float(a[3]), "budget_s": float(a[4]), "note": a[5], "device": a[6]}))' \
    "$1" "$2" "$3" "$4" "$5" "$DEVICE" >> "$J/stages.jsonl"
}
# bounded SECONDS LOG CMD...: CMD under timeout, stdout+stderr to LOG; returns CMD's status
bounded() {
  local s=$1 lg=$2; shift 2
  [ "$s" -ge 1 ] || { echo "no time left" > "$lg"; return 124; }
  local rc=0
  timeout -k 5 "$s" "$@" > "$lg" 2>&1 || rc=$?
  return $rc
}
# the results (not the models, not the training corpus) as one file in $BUNDLE
snapshot() {
  [ -n "$BUNDLE" ] || return 0
  tar czf "$BUNDLE/results.tar.gz.tmp" -C "$OUT" --exclude=work --exclude='data/*.txt' \
    --exclude='models/*/model.safetensors' . 2>/dev/null && mv "$BUNDLE/results.tar.gz.tmp" "$BUNDLE/results.tar.gz" \
    || log "snapshot failed"
}

# --- stage budgets: scaled down so that the stages fit TOTAL_S (20 s kept for data and packing)
BUDGETS=(TRAIN_S DISTILL_S HYBRID_S SINGLE_S TPUT256_S CURVES_S TPUTLONG_S)
STAGE_OF=(teacher llamba hybrid single tput256 curves tputlong)
sum=0
for i in "${!BUDGETS[@]}"; do want "${STAGE_OF[$i]}" && sum=$((sum + ${!BUDGETS[$i]})); done
avail=$((TOTAL_S - 20))
if [ "$sum" -gt "$avail" ] && [ "$sum" -gt 0 ]; then
  for b in "${BUDGETS[@]}"; do printf -v "$b" '%d' "$(awk -v v="${!b}" -v a="$avail" -v s="$sum" 'BEGIN { printf "%d", v * a / s }')"; done
fi

# stage_budget NAME: its budget plus the slack (the time left beyond the budgets of the stages
# after it), at most the time left
stage_budget() {
  local i rest=0 own=0 after=0 l
  for i in "${!STAGE_OF[@]}"; do
    if [ "${STAGE_OF[$i]}" = "$1" ]; then own=${!BUDGETS[$i]}; after=1
    elif [ $after = 1 ] && want "${STAGE_OF[$i]}"; then rest=$((rest + ${!BUDGETS[$i]})); fi
  done
  l=$(left)
  awk -v o="$own" -v l="$l" -v r="$rest" 'BEGIN { b = l - r - 5; if (b < o) b = o; if (b > l) b = l;
    printf "%d", (b < 0 ? 0 : b) }'
}

{
  echo "device=$DEVICE molt=$MOLT out=$OUT total_s=$TOTAL_S stages=\"$STAGES\""
  for v in TRAIN_S DISTILL_S HYBRID_S SINGLE_S TPUT256_S CURVES_S TPUTLONG_S; do printf '%s=%s ' "$v" "${!v}"; done; echo
} | tee -a "$L/run.log" >&2
python3 - "$J/env.json" <<PY
import json, os, platform, subprocess, sys
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception: return ""
keys = """DEVICE MOLT THREADS MATMUL STEPS DIGITS N_TRAIN N_TEST DATA_SEED D_MODEL N_LAYER N_HEAD N_KV
HEAD_DIM FF MAX_POS SEQ BATCH LR TRAIN_S TRAIN_STEPS CAL_STEPS D_SEQ D_BATCH D_LR3 DISTILL_S HYBRID_S
DISTILL_TOKENS KD_LLAMBA KD_HYBRID D_STATE HYBRID_LAYERS TEMP MAX_TOKENS GREEDY_N SINGLE_N SINGLE_K
CURVE_N CURVE_BUDGET KMAX K_FIXED TPUT_BATCHES TPUT_LONG_POINTS TPUT_PICK_LEN TPUT_RUN_S TPUT_LONG_RUN_S TOTAL_S STAGES
MODELS_FROM TINY""".split()
vals = dict(zip(keys, """$DEVICE|$MOLT|$THREADS|$MATMUL|$STEPS|$DIGITS|$N_TRAIN|$N_TEST|$DATA_SEED|$D_MODEL|$N_LAYER|$N_HEAD|$N_KV|$HEAD_DIM|$FF|$MAX_POS|$SEQ|$BATCH|$LR|$TRAIN_S|$TRAIN_STEPS|$CAL_STEPS|$D_SEQ|$D_BATCH|$D_LR3|$DISTILL_S|$HYBRID_S|$DISTILL_TOKENS|$KD_LLAMBA|$KD_HYBRID|$D_STATE|$HYBRID_LAYERS|$TEMP|$MAX_TOKENS|$GREEDY_N|$SINGLE_N|$SINGLE_K|$CURVE_N|$CURVE_BUDGET|$KMAX|$K_FIXED|$TPUT_BATCHES|$TPUT_LONG_POINTS|$TPUT_PICK_LEN|$TPUT_RUN_S|$TPUT_LONG_RUN_S|$TOTAL_S|$STAGES|$MODELS_FROM|$TINY""".split("|")))
env = {"config": vals, "host": platform.node(), "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
       "nproc": os.cpu_count(), "gpu": sh("nvidia-smi --query-gpu=name,memory.total --format=csv,noheader"),
       "molt_version": sh(vals["MOLT"] + " --version"), "git": sh("git rev-parse HEAD 2>/dev/null")}
json.dump(env, open(sys.argv[1], "w"), indent=1)
PY

# --- data ----------------------------------------------------------------------------------------
D=$OUT/data
if want data; then
  t0=$(date +%s.%N); st=ok
  G=(--steps "$STEPS" --digits "$DIGITS")
  {
    if [ -z "$MODELS_FROM" ]; then # (a file of n problems is the head of one of more)
      for f in train:$N_TRAIN distill:$N_DISTILL cal:$N_CAL; do
        "$MOLT" mathgen --n "${f#*:}" --seed "$DATA_SEED" "${G[@]}" --split train --format text -o "$D/${f%%:*}.txt"
      done
    fi
    "$MOLT" mathgen --n "$N_TEST" --seed $((DATA_SEED + 1)) "${G[@]}" --split test -o "$D/test.jsonl"
    "$MOLT" mathgen --n 300 --seed $((DATA_SEED + 1)) "${G[@]}" --split test --format text -o "$D/eval.txt"
  } > "$L/data.log" 2>&1 || st=failed
  if [ -n "$MODELS_FROM" ] && [ -f "$MODELS_FROM/data/test.jsonl" ] && ! cmp -s "$D/test.jsonl" "$MODELS_FROM/data/test.jsonl"; then
    log "data: test.jsonl differs from $MODELS_FROM/data/test.jsonl (other STEPS/DIGITS/N_TEST/DATA_SEED?): using theirs"
    cp "$MODELS_FROM/data/test.jsonl" "$D/test.jsonl"
  fi
  stage_rec data "$st" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" 0 "$(wc -l < "$D/test.jsonl") held-out problems"
  log "data: $st ($(du -h "$D" | tail -1 | cut -f1))"
  [ "$st" = ok ] || { log "data failed: $(tail -3 "$L/data.log")"; exit 1; }
fi
if [ -n "$MODELS_FROM" ]; then
  for m in $MODELS; do
    [ -f "$MODELS_FROM/models/$m/config.json" ] && { rm -rf "$OUT/models/$m"; cp -r "$MODELS_FROM/models/$m" "$OUT/models/$m"; } \
      || log "MODELS_FROM: no $m in $MODELS_FROM/models"
  done
fi

# --- teacher ---------------------------------------------------------------------------------------
# tokenizer.json: byte-level BPE without merges (every byte one token: digits stay digits);
# ids 0 <|bos|>, 1 <|eos|>, 2 + byte
write_teacher_config() {
  python3 - "$1" <<PY
import json, os, sys
d = sys.argv[1]; os.makedirs(d, exist_ok=True)
bs = list(range(33, 127)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs: bs.append(b); cs.append(256 + n); n += 1
vocab = {"<|bos|>": 0, "<|eos|>": 1}
for b, c in sorted(zip(bs, cs)): vocab[chr(c)] = 2 + b
sp = lambda i, c: {"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
                   "normalized": False, "special": True}
bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
tok = {"version": "1.0", "truncation": None, "padding": None,
       "added_tokens": [sp(0, "<|bos|>"), sp(1, "<|eos|>")], "normalizer": None, "pre_tokenizer": bl,
       "post_processor": None, "decoder": bl,
       "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                 "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                 "ignore_merges": False, "vocab": vocab, "merges": []}}
json.dump(tok, open(os.path.join(d, "tokenizer.json"), "w"))
cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False,
       "mlp_bias": False, "bos_token_id": 0, "eos_token_id": 1, "hidden_act": "silu",
       "hidden_size": $D_MODEL, "intermediate_size": $FF, "num_hidden_layers": $N_LAYER,
       "num_attention_heads": $N_HEAD, "num_key_value_heads": $N_KV, "head_dim": $HEAD_DIM,
       "max_position_embeddings": $MAX_POS, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
       "tie_word_embeddings": True, "vocab_size": 320, "torch_dtype": "float32"}
json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=1)
PY
}
# JSON field of a file's last JSON line
jget() { python3 -c 'import json, sys
l = [x for x in open(sys.argv[1]) if x.strip().startswith("{")]
print(json.loads(l[-1])[sys.argv[2]])' "$1" "$2"; }

if want teacher; then
  t0=$(date +%s.%N); budget=$(stage_budget teacher); st=ok; note=""
  write_teacher_config "$W/teacher_cfg"
  TR=(train "$W/teacher_cfg/config.json" --sep '<|endoftext|>'
      --eval-data "$D/eval.txt" --seq "$SEQ" --batch "$BATCH" --lr "$LR" --warmup 0.05 --decay 0.25
      --eval-batches 4 --threads "$THREADS" --device "$DEVICE" --matmul "$MATMUL" -q --overwrite)
  steps=$TRAIN_STEPS
  if [ -z "$steps" ]; then # calibration: CAL_STEPS steps, then as many as fit the rest of the budget
    rc=0; tc=$(date +%s.%N)
    bounded "$budget" "$L/teacher_cal.log" "$MOLT" "${TR[@]}" --data "$D/cal.txt" --steps "$CAL_STEPS" --eval-every 0 \
      --save-every 100000 -o "$W/teacher_cal" || rc=$?
    cal_wall=$(awk -v a="$tc" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')
    if [ $rc = 0 ]; then
      cal_tok=$(jget "$L/teacher_cal.log" tokens)
      cal_s=$(awk -v n="$cal_tok" -v r="$(jget "$L/teacher_cal.log" tok_per_s)" 'BEGIN { print n / r }')
      rest=$(awk -v b="$budget" -v a="$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" 'BEGIN{print b-a}')
      # the run pays the start-up again (cal_wall - cal_s) and keeps 10% for evaluations
      steps=$(awk -v r="$rest" -v w="$cal_wall" -v s="$cal_s" -v n="$cal_tok" -v bt=$((SEQ * BATCH)) \
        'BEGIN { t = (r - (w - s)) * 0.88; k = int(t * n / s / bt); print (k < 1 ? 1 : k) }')
      note="calibration: $cal_tok tokens in ${cal_s}s (wall ${cal_wall}s); "
      log "teacher: calibration $(awk -v n="$cal_tok" -v s="$cal_s" 'BEGIN{printf "%.0f", n/s}') tok/s -> $steps steps"
    else
      st=failed; log "teacher calibration failed (rc $rc): $(tail -3 "$L/teacher_cal.log")"
    fi
  fi
  if [ "$st" = ok ]; then
    rc=0
    ev=$(( steps / 4 > 0 ? steps / 4 : 1 ))
    bounded "$(min $((budget + 30)) "$(left)")" "$L/teacher.log" "$MOLT" "${TR[@]}" --data "$D/train.txt" --steps "$steps" \
      --eval-every "$ev" --save-every 100000 -o "$W/teacher" || rc=$?
    if [ $rc = 0 ]; then
      cp "$W/teacher/log.jsonl" "$J/teacher_log.jsonl"
      python3 - "$L/teacher.log" "$J/teacher_train.json" "$note" "$steps" <<'PY'
import json, sys
l = [x for x in open(sys.argv[1]) if x.strip().startswith("{")]
r = json.loads(l[-1]); r["note"] = sys.argv[3]; r["steps_planned"] = int(sys.argv[4])
json.dump(r, open(sys.argv[2], "w"), indent=1)
PY
      rm -rf "$OUT/models/teacher"
      "$MOLT" convert "$W/teacher" -o "$OUT/models/teacher" --dtype bf16 >> "$L/teacher.log" 2>&1 || st=failed
      note="$note$steps steps, $(jget "$L/teacher.log" tokens) tokens, eval loss $(jget "$L/teacher.log" eval_loss)"
    else
      st=$([ $rc = 124 ] && echo timeout || echo failed); log "teacher: $st: $(tail -3 "$L/teacher.log")"
    fi
  fi
  stage_rec teacher "$st" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" "$budget" "$note"
  log "teacher: $st $note"
  snapshot
fi

# --- students ------------------------------------------------------------------------------------
# distill_stage NAME BUDGET_S SUBCOMMAND EXTRA...: calibrated MOHAWK run into models/NAME (bf16)
distill_stage() {
  local name=$1 sbudget=$2 sub=$3; shift 3
  local t0 st=ok note="" rc budget tokens
  t0=$(date +%s.%N); budget=$(stage_budget "$name")
  [ -f "$OUT/models/teacher/config.json" ] || { stage_rec "$name" skipped 0 "$budget" "no teacher"; log "$name: no teacher"; return 0; }
  local DS=("$sub" "$OUT/models/teacher" "$@" --sep '<|endoftext|>'
            --seq "$D_SEQ" --batch "$D_BATCH" --d-state "$D_STATE" --lr3 "$D_LR3"
            --threads "$THREADS" --device "$DEVICE" --matmul "$MATMUL" --overwrite)
  tokens=$DISTILL_TOKENS
  if [ -z "$tokens" ]; then
    local per=$((D_SEQ * D_BATCH * CAL_D_STEPS)) tc cal_wall
    rc=0; tc=$(date +%s.%N)
    # (without -q: each stage's last progress line gives its tok/s)
    bounded "$budget" "$L/${name}_cal.log" "$MOLT" "${DS[@]}" --data "$D/cal.txt" \
      --stage1-tokens $per --stage2-tokens $per --stage3-tokens $per -o "$W/${name}_cal" || rc=$?
    cal_wall=$(awk -v a="$tc" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')
    if [ $rc = 0 ]; then
      tokens=$(python3 - "$L/${name}_cal.log" "$budget" "$t0" "$cal_wall" "$per" <<'PY'
import re, sys, time
log = open(sys.argv[1], errors="replace").read(); budget, t0, wall, per = map(float, sys.argv[2:6])
rate = {int(m[0]): float(m[1]) for m in re.findall(r"stage (\d)\s+\d+/\d+\s+loss \S+\s+([\d.]+) tok/s", log)}
secs = [per / max(rate.get(i, 1.0), 1.0) for i in (1, 2, 3)]
overhead = max(wall - sum(secs), 0.0)
rest = budget - (time.time() - t0) - overhead
per_token = 0.1 / max(rate.get(1, 1.0), 1.0) + 0.2 / max(rate.get(2, 1.0), 1.0) + 0.7 / max(rate.get(3, 1.0), 1.0)
print(max(int(rest * 0.75 / per_token), 3 * int(per)))
PY
      ) || { st=failed; tokens=""; }
      note="calibration wall ${cal_wall}s; "
      log "$name: calibration -> $tokens tokens"
    else
      st=failed; log "$name calibration failed (rc $rc): $(tail -3 "$L/${name}_cal.log")"
    fi
  fi
  if [ "$st" = ok ]; then
    rc=0
    bounded "$(min $((budget + 30)) "$(left)")" "$L/$name.log" "$MOLT" "${DS[@]}" -q --data "$D/distill.txt" --tokens "$tokens" \
      --eval-data "$D/eval.txt" -o "$W/$name" || rc=$?
    if [ $rc = 0 ]; then
      cp "$W/$name/report.json" "$J/distill_$name.json"
      rm -rf "$OUT/models/$name"
      "$MOLT" convert "$W/$name" -o "$OUT/models/$name" --dtype bf16 >> "$L/$name.log" 2>&1 || st=failed
      note="$note$tokens tokens"
    else
      st=$([ $rc = 124 ] && echo timeout || echo failed); log "$name: $st: $(tail -3 "$L/$name.log")"
    fi
  fi
  stage_rec "$name" "$st" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" "$budget" "$note"
  log "$name: $st $note"
  snapshot
}
if want llamba; then distill_stage llamba "$DISTILL_S" distill --kd-loss "$KD_LLAMBA"; fi
if want hybrid; then
  heads=""
  for l in ${HYBRID_LAYERS//,/ }; do for ((h = 0; h < N_HEAD; h++)); do heads="$heads${heads:+,}$l:$h"; done; done
  distill_stage hybrid "$HYBRID_S" hybridize --kd-loss "$KD_HYBRID" --heads "$heads"
fi

# --- pack: the three bf16 models as ≤ 15 MiB parts (a device call returns ≤ 8 files of ≤ 16 MiB)
if want pack && [ -n "$BUNDLE" ]; then
  t0=$(date +%s.%N); st=ok
  have=""; for m in $MODELS; do [ -f "$OUT/models/$m/model.safetensors" ] && have="$have models/$m"; done
  if [ -n "$have" ]; then
    # shellcheck disable=SC2086
    tar cf "$W/models.tar" -C "$OUT" $have
    mb=$(( $(stat -c %s "$W/models.tar") / 1048576 ))
    if [ "$mb" -le "${PACK_MAX_MB:-60}" ]; then
      rm -f "$BUNDLE"/models.tar.part-*
      split -b 15m -a 2 "$W/models.tar" "$BUNDLE/models.tar.part-"
    else
      st=failed; log "pack: models.tar is $mb MiB (> ${PACK_MAX_MB:-60}): not packed"
    fi
    rm -f "$W/models.tar"
  else
    st=skipped
  fi
  stage_rec pack "$st" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" 0 "${have:-none}"
  log "pack: $st (${have:-no models})"
fi

# --- evaluation ----------------------------------------------------------------------------------
R=(--data "$D/test.jsonl" -n "$MAX_TOKENS" -s 1 --threads "$THREADS" --device "$DEVICE" -q)
present() { [ -f "$OUT/models/$1/config.json" ]; }

if want single; then
  t0=$(date +%s.%N); budget=$(stage_budget single); note=""
  nm=0; for m in $MODELS; do present "$m" && nm=$((nm + 1)); done
  for m in $MODELS; do
    present "$m" || continue
    per=$(min "$(awk -v b="$budget" -v n="$nm" 'BEGIN { printf "%d", b / n * 0.35 }')" "$(left)")
    rc=0; bounded "$per" "$L/greedy_$m.log" "$MOLT" reason "$OUT/models/$m" "${R[@]}" -k 1 -t 0 \
      --limit "$GREEDY_N" --json "$J/greedy_$m.json" --texts || rc=$?
    note="$note greedy_$m:$rc"
    per=$(min "$(awk -v b="$budget" -v n="$nm" 'BEGIN { printf "%d", b / n * 0.6 }')" "$(left)")
    rc=0; bounded "$per" "$L/single_$m.log" "$MOLT" reason "$OUT/models/$m" "${R[@]}" -k "$SINGLE_K" \
      -t "$TEMP" --limit "$SINGLE_N" --json "$J/single_$m.json" || rc=$?
    note="$note single_$m:$rc"
  done
  stage_rec single ok "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" "$budget" "exit codes:$note"
  log "single: exit codes$note"
  snapshot
fi

# tput_sweep STAGE POINTS: molt generate --ignore-eos at each LEN:BATCH of POINTS for every
# model, one line per run in json/tput.jsonl (status "timeout": not done within limit_s);
# after a model fails or runs out of time at (N, B) its points with N' >= N and B' >= B are
# skipped
tput_sweep() {
  local stage=$1 points=$2 run_s=$3 t0 budget prompt
  t0=$(date +%s.%N); budget=$(stage_budget "$stage")
  prompt=$(python3 -c 'import json, sys; print("Question: %s\nAnswer:" % json.loads(open(sys.argv[1]).readline())["question"], end="")' "$D/test.jsonl")
  local capped="" n b m nb cn runs=0 gbase="" # the idle card's memory, once per sweep
  if [ "${DEVICE%%:*}" = cuda ] && command -v nvidia-smi > /dev/null; then
    gbase=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2> /dev/null | head -1) || gbase=""
  fi
  for nb in $points; do n=${nb%%:*}; b=${nb#*:}; for m in $MODELS; do
    present "$m" || continue
    local skip=0
    for cn in $capped; do # "model:N:B" where it failed
      [ "${cn%%:*}" = "$m" ] || continue
      cn=${cn#*:}; [ "$n" -ge "${cn%%:*}" ] && [ "$b" -ge "${cn#*:}" ] && skip=1
    done
    [ $skip = 0 ] || continue
    local used per rc=0 base="" peak="" poll="" pp="" lg
    used=$(awk -v a="$t0" -v b2="$(date +%s.%N)" 'BEGIN{printf "%d", b2-a}')
    per=$(min "$run_s" $((budget - used))); per=$(min "$per" "$(left)")
    [ "$per" -ge 2 ] || break 2
    if [ -n "$gbase" ]; then
      base=$gbase poll=$W/poll.txt; nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 50 > "$poll" 2>/dev/null &
      pp=$!
    fi
    lg=$L/tput_${m}_b${b}_n$n.log
    timeout -k 5 "$per" /usr/bin/time -f "maxrss_kb %M wall_s %e" -o "$W/time.txt" \
      "$MOLT" generate "$OUT/models/$m" -p "$prompt" -b "$b" -n "$n" -t "$TEMP" -s 1 --ignore-eos \
      --threads "$THREADS" --device "$DEVICE" > /dev/null 2> "$lg" || rc=$?
    cat "$W/time.txt" >> "$lg" 2> /dev/null || true; rm -f "$W/time.txt"
    if [ -n "$pp" ]; then
      kill "$pp" 2> /dev/null || true; wait "$pp" 2> /dev/null || true
      peak=$(sort -n "$poll" | tail -1)
    fi
    python3 - "$lg" "$J/tput.jsonl" "$m" "$b" "$n" "$rc" "$DEVICE" "$THREADS" \
      "${base:-}" "${peak:-}" "$per" <<'PY'
import json, re, sys
log, out, m, b, n, rc, dev, thr, base, peak, lim = sys.argv[1:12]
t = open(log, errors="replace").read()
r = {"model": m, "batch": int(b), "len": int(n), "device": dev, "threads": int(thr), "rc": int(rc),
     "limit_s": int(lim),
     "status": "ok" if rc == "0" else "timeout" if rc in ("124", "137") else "failed"}
g = re.search(r"prompt (\d+) tokens \(([\d.]+) tok/s\), generated (\d+) tokens.* in ([\d.]+)s \(([\d.]+) tok/s\)", t)
if g:
    r.update(prompt_tokens=int(g[1]), prefill_tok_per_s=float(g[2]), generated=int(g[3]),
             decode_s=float(g[4]), tok_per_s=float(g[5]))
h = re.search(r"maxrss_kb (\d+) wall_s ([\d.]+)", t)
if h:
    r.update(host_rss_mib=round(int(h[1]) / 1024, 1), wall_s=float(h[2]))
if base and peak:
    r.update(gpu_mem_base_mib=int(base), gpu_mem_peak_mib=int(peak), gpu_mem_delta_mib=int(peak) - int(base))
if r["status"] == "ok" and "tok_per_s" not in r:
    r["status"] = "unparsed"
open(out, "a").write(json.dumps(r) + "\n")
print(r["status"], r.get("tok_per_s"))
PY
    runs=$((runs + 1))
    [ "$rc" = 0 ] || capped="$capped $m:$n:$b"
  done; done
  stage_rec "$stage" ok "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" "$budget" "$runs runs:$points"
  log "$stage: $runs runs"
  snapshot
}
if want tput256; then
  pts=""; for b in $TPUT_BATCHES; do pts="$pts $TPUT_PICK_LEN:$b"; done
  tput_sweep tput256 "$pts" "$TPUT_RUN_S"
fi

if want curves; then
  t0=$(date +%s.%N); budget=$(stage_budget curves); note=""
  have=""; for m in $MODELS; do present "$m" && have="$have $m"; done
  # per model: K = the batch of the most tok/s at TPUT_PICK_LEN (at most KMAX; K_FIXED overrides)
  # and the seconds one batch of K chains of MAX_TOKENS would take; the problems (the same for
  # every model) are as many as fit: each costs at most CURVE_BUDGET + one batch
  plan=$(python3 - "$J/tput.jsonl" "$TPUT_PICK_LEN" "$KMAX" "$DEVICE" "$MAX_TOKENS" "$CURVE_BUDGET" \
    "$CURVE_N" "$budget" "${K_FIXED:-0}" $have <<'PY'
import json, os, sys
f, n, kmax, dev, mt, cb, cn, budget, kfix = sys.argv[1:10]
n, kmax, mt, cb, cn, budget, kfix = int(n), int(kmax), int(mt), float(cb), int(cn), float(budget), int(kfix)
models = sys.argv[10:]
rs = [json.loads(l) for l in open(f)] if os.path.exists(f) else []
plan, worst = {}, 0.0
for m in models:
    ok = [r for r in rs if r["model"] == m and r["len"] == n and r["batch"] <= kmax
          and r["device"] == dev and r.get("tok_per_s")]
    best = max(ok, key=lambda r: r["tok_per_s"]) if ok else None
    k = kfix or (best["batch"] if best else kmax)
    same = [r for r in ok if r["batch"] == k]
    bt = k * mt / same[0]["tok_per_s"] if same else cb
    plan[m] = k
    worst = max(worst, cb + bt)
per_model = budget / max(len(models), 1)
np_ = max(1, min(cn, int((per_model - 8) / (worst * 1.25))))
print(np_, " ".join("%s:%d" % (m, plan[m]) for m in models))
PY
  ) || plan="$CURVE_N"
  np=${plan%% *}
  for mk in ${plan#* }; do
    case $mk in *:*) ;; *) continue ;; esac
    m=${mk%%:*}; k=${mk#*:}
    per=$(min "$(awk -v b="$budget" -v u="$(awk -v a="$t0" -v c="$(date +%s.%N)" 'BEGIN{print c-a}')" 'BEGIN { printf "%d", b - u }')" "$(left)")
    rc=0; bounded "$per" "$L/curve_$m.log" "$MOLT" reason "$OUT/models/$m" "${R[@]}" -k "$k" -t "$TEMP" \
      --budget "$CURVE_BUDGET" --limit "$np" --json "$J/curve_$m.json" || rc=$?
    note="$note $m:k$k:rc$rc"
  done
  stage_rec curves ok "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" "$budget" "$np problems;$note"
  log "curves: $np problems;$note"
  snapshot
fi

if want tputlong; then
  pts=$TPUT_LONG_POINTS
  if [ -z "$pts" ]; then for n in $TPUT_LENS; do for b in $TPUT_BATCHES; do pts="$pts $n:$b"; done; done; fi
  tput_sweep tputlong "$pts" "$TPUT_LONG_RUN_S"
fi

log "done in $(elapsed)s: $OUT"
if [ -n "$BUNDLE" ]; then snapshot; ls -la "$BUNDLE" >&2; fi
python3 "$HERE/report.py" --print "$OUT" || log "report.py --print failed"
