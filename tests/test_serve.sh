#!/usr/bin/env bash
# molt serve over loopback (127.0.0.1, ephemeral ports), with tests/serve_client.py (Python's
# http.client) and curl, on stories260K (Llama) and a MOHAWK student of it distilled here in a
# second (Llamba: recurrent, so the prompt cache holds a few KB per entry):
#   same     completions / streams / n=3 / chat == molt generate for the same seed, both models
#   errors   400 / 404 / 405 / 413 with JSON error bodies (--max-body 65536)
#   cache    a prompt extending an earlier one starts from the cached state (Llamba)
#   exhaust  --slots 1 --queue 1: queueing, 503, disconnect mid-stream frees the slot (Llamba)
#   load     16 concurrent streaming clients for 8 s, no error (Llamba, --slots 8)
# curl: a stream ends in "data: [DONE]"; an unknown route is a JSON 404. SIGTERM: exit 0, a
# stream in flight ends with finish_reason "length" and [DONE].
# Bounded: every server is killed on exit; each client run has a time limit.
set -u
MOLT=${MOLT_BIN:-build/molt}
PY=/usr/bin/python3
T=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT
fail=0
start() { # NAME MODEL [serve options] -> sets URL, PID
  local name=$1 model=$2; shift 2
  "$MOLT" serve "$model" --port 0 --threads 1 "$@" > "$T/$name.log" 2>&1 &
  PID=$!; PIDS+=("$PID")
  for _ in $(seq 100); do
    URL=$(grep -o 'http://127.0.0.1:[0-9]*' "$T/$name.log" 2>/dev/null) && [ -n "$URL" ] && return 0
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "FAIL: $name: the server did not start"; cat "$T/$name.log"; fail=1; return 1
}
client() { # MODE MODEL [args]
  local mode=$1 model=$2; shift 2
  timeout 120 $PY tests/serve_client.py "$mode" --url "$URL" --molt "$MOLT" --model "$model" "$@" \
    || { echo "FAIL: serve_client.py $mode ($model)"; fail=1; }
}
stop() { # NAME: SIGTERM, exit 0 within 10 s
  kill -TERM "$PID"
  for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$PID" 2>/dev/null; then echo "FAIL: $1: still running 10 s after SIGTERM"; fail=1
  else wait "$PID"; local rc=$?; [ $rc -eq 0 ] && echo "ok    $1: SIGTERM -> exit 0" ||
    { echo "FAIL: $1: exit $rc after SIGTERM"; fail=1; }; fi
}

ST=models/stories260K/stories260K.bin
"$MOLT" distill "$ST" -o "$T/student" --sample-tokens 4096 --seq 32 --batch 2 --stage1-tokens 0 \
  --stage2-tokens 0 --stage3-tokens 2048 -q > /dev/null 2> "$T/err" ||
  { echo "FAIL: distill"; cat "$T/err"; exit 1; }
SU="$T/student"

if start llama "$ST" --max-body 65536; then
  client same "$ST"
  client errors "$ST"
  curl -sN "$URL/v1/completions" -d '{"prompt":"Once","max_tokens":8,"stream":true}' > "$T/sse"
  [ "$(grep -c '^data: ' "$T/sse")" -ge 2 ] && [ "$(grep '^data: ' "$T/sse" | tail -n1)" = "data: [DONE]" ] &&
    echo "ok    curl: stream ends with data: [DONE]" || { echo "FAIL: curl stream"; cat "$T/sse"; fail=1; }
  code=$(curl -s -o "$T/404" -w '%{http_code}' "$URL/v2/none")
  [ "$code" = 404 ] && grep -q '"error"' "$T/404" && echo "ok    curl: 404 JSON" ||
    { echo "FAIL: curl 404 ($code)"; fail=1; }
  n=$(grep -c '^serve: ' "$T/llama.log")
  [ "$n" -ge 20 ] && echo "ok    one log line per request ($n)" || { echo "FAIL: $n log lines"; fail=1; }
  stop llama
fi
if start student "$SU" --slots 8 --ctx 4096; then
  client same "$SU"
  client cache "$SU"
  client load "$SU" --clients 16 --seconds 8
  stop student
fi
# chat templates by detection: the student's directory with each kind of chat_template
for tpl in chatml llama3 llama2 plain; do
  mkdir -p "$T/$tpl"; cp "$SU"/config.json "$SU"/model.safetensors "$SU"/tokenizer.* "$T/$tpl/"
  case $tpl in
    chatml) j='{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}' ;;
    llama3) j='{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>{% endfor %}' ;;
    llama2) j="{% for m in messages %}{{ bos_token + '[INST] ' + m.content + ' [/INST]' }}{% endfor %}" ;;
    plain) j='{{ messages }}' ;;
  esac
  printf '{"bos_token": "<s>", "chat_template": "%s"}\n' "$j" > "$T/$tpl/tokenizer_config.json"
  if start "chat-$tpl" "$T/$tpl"; then
    grep -q "chat template $tpl" "$T/chat-$tpl.log" || { echo "FAIL: $tpl not detected"; fail=1; }
    client chat "$T/$tpl" --template $tpl
    stop "chat-$tpl"
  fi
done
if start exhaust "$SU" --slots 1 --queue 1 --ctx 600000; then
  client exhaust "$SU"
  # SIGTERM with a stream in flight: it ends with finish_reason "length" and [DONE], exit 0
  curl -sN "$URL/v1/completions" -d '{"prompt":"Once","max_tokens":500000,"ignore_eos":true,"stream":true}' \
    > "$T/term.sse" 2>&1 & CURL=$!
  for _ in $(seq 100); do grep -q '^data: ' "$T/term.sse" && break; sleep 0.05; done
  stop exhaust
  wait $CURL
  grep -q '"finish_reason":"length"' "$T/term.sse" && [ "$(tail -n2 "$T/term.sse" | head -n1)" = "data: [DONE]" ] &&
    echo "ok    SIGTERM: the running stream ended with length and [DONE]" ||
    { echo "FAIL: SIGTERM: the running stream was cut"; tail -c 300 "$T/term.sse"; fail=1; }
fi
exit $fail
