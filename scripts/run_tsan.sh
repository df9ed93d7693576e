#!/usr/bin/env bash
# The thread-heavy paths under ThreadSanitizer (run by `make tsan`, which builds
# $BUILD with TSAN=1 first): the pool and slot tests, batched and single
# generation, a few training steps and a short distill (teacher sampler workers),
# all with 4 threads. Exits non-zero if any step fails or TSan reports anything.
# Not part of `make test`.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-tsan}
MOLT=$BUILD/molt
SHARED=${MOLT_SHARED:-../shared}
[ -d "$SHARED" ] || SHARED=/work/shared
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/scripts/tsan.supp ${TSAN_OPTIONS:-}"
export MOLT_TEST_THREADS=4
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0 n=0
TEACHER=models/stories260K/stories260K.bin

step() { # NAME -- command...
  local name=$1; shift 2
  local t0=$SECONDS
  n=$((n + 1))
  "$@" > "$T/out" 2> "$T/err"; local rc=$?
  if [ $rc -ne 0 ] || grep -q "WARNING: ThreadSanitizer\|ERROR: ThreadSanitizer" "$T/err" "$T/out"; then
    echo "FAIL $name (exit $rc, $((SECONDS - t0))s)"
    grep -q "ThreadSanitizer" "$T/err" "$T/out" && cat "$T/err" "$T/out" | sed -n '/ThreadSanitizer/,$p' | head -120 \
      || tail -40 "$T/err"
    fail=$((fail + 1))
  else
    echo "ok   $name ($((SECONDS - t0))s)"
  fi
}

step test_pool -- "$BUILD/tests/test_pool"
step test_slots -- "$BUILD/tests/test_slots"
step "generate -b 4" -- "$MOLT" generate "$TEACHER" -n 40 --threads 4 -b 4 -q
step "generate" -- "$MOLT" generate "$TEACHER" -n 40 --threads 4 -q

DATA="$SHARED/data/tinystories/tinystories_v1_valid_head.txt"
[ -f "$DATA" ] || DATA=$(ls "$SHARED"/data/tinystories/*valid* 2>/dev/null | head -1)
if [ -n "$DATA" ] && [ -f "$DATA" ]; then
  cat > "$T/config.json" <<'JSON'
{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
 "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 512,
 "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "tie_word_embeddings": true}
JSON
  cp models/stories260K/tok512.bin "$T/tok512.bin"
  head -c 40000 "$DATA" > "$T/valid.txt"
  step train -- "$MOLT" train "$T/config.json" --data "$T/valid.txt" --seq 64 --batch 4 --steps 4 \
    --save-every 0 --eval-every 0 --lr 2e-3 --threads 4 -q -o "$T/train"
  step distill -- "$MOLT" distill "$TEACHER" -o "$T/distill" --sample-tokens 2048 --seq 64 --batch 4 \
    --stage1-tokens 512 --stage2-tokens 512 --stage3-tokens 1024 --threads 4 -q
else
  echo "skip train, distill: no TinyStories valid file under $SHARED/data/tinystories"
fi

echo "tsan: $((n - fail)) passed, $fail failed"
[ $fail -eq 0 ]
