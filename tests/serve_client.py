#!/usr/bin/env python3
"""serve_client.py — checks a running `molt serve` over loopback with Python's http.client
(tests/test_serve.sh starts the servers and runs one mode each):

  same     completions (non-streaming and streaming), n > 1 and chat equal `molt generate` for the
           same seed / sampling options; unknown fields are ignored
  errors   malformed JSON, wrong types and ranges, oversized body (413), context too long,
           unknown route (404), wrong method (405): the code and a JSON error body each
  exhaust  (server: --slots 1 --queue 1) a running stream holds the slot, a second request
           waits in the queue, a third gets 503; the stream's client disconnects mid-stream,
           the waiting request then runs, and /metrics shows 0 active slots
  cache    a prompt extending an earlier one takes its state from the prompt cache
           (usage.cached_prompt_tokens, /metrics hits) and still matches `molt generate` (greedy)
  load     C concurrent streaming clients for S seconds: no error, every stream ends in [DONE]
  chat     (model dir with a tokenizer_config.json chat_template) a two-turn chat with a system
           message == molt generate on the template's text (--template chatml|llama2|llama3),
           cut at the template's stop string
Exit 0 only when every check passed; each failure prints one FAIL line.
"""
import argparse
import http.client
import json
import random
import re
import socket
import subprocess
import sys
import threading
import time

FAILS = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what, flush=True)
    if not ok:
        FAILS.append(what)
    return ok


class Srv:
    def __init__(self, url):
        m = re.match(r"http://([^:/]+):(\d+)", url)
        self.host, self.port = m.group(1), int(m.group(2))

    def conn(self, timeout=60):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method, path, body=None, raw=None, headers=None):
        c = self.conn()
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        txt = r.read()
        c.close()
        try:
            js = json.loads(txt)
        except ValueError:
            js = None
        return r.status, js, txt

    def stream(self, path, body, on_event=None):
        """POST with stream: true; returns (status, events, text per choice, finish per choice)."""
        c = self.conn()
        c.request("POST", path, body=json.dumps(dict(body, stream=True)).encode(),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status != 200:
            txt = r.read()
            c.close()
            return r.status, [json.loads(txt)], {}, {}
        events, text, finish = [], {}, {}
        while True:
            line = r.fp.readline()
            if not line:
                break
            line = line.decode().rstrip("\n")
            if not line.startswith("data: "):
                continue
            data = line[6:]
            events.append(data)
            if data == "[DONE]":
                break
            ev = json.loads(data)
            if on_event and on_event(ev) is False:
                c.sock.shutdown(socket.SHUT_RDWR)
                c.close()
                return 200, events, text, finish
            for ch in ev.get("choices", []):
                i = ch["index"]
                piece = ch.get("text") if "text" in ch else ch.get("delta", {}).get("content", "")
                text[i] = text.get(i, "") + (piece or "")
                if ch.get("finish_reason"):
                    finish[i] = ch["finish_reason"]
        c.close()
        return 200, events, text, finish

    def metric(self, name):
        _, _, txt = self.request("GET", "/metrics")
        m = re.search(r"^%s (\S+)$" % re.escape(name), txt.decode(), re.M)
        return float(m.group(1)) if m else None


def generate(args, prompt, seed, temp, top_p, top_k, n, batch=1):
    cmd = [args.molt, "generate", args.model, "-p", prompt, "-s", str(seed), "-t", str(temp),
           "--top-p", str(top_p), "--top-k", str(top_k), "-n", str(n), "-q", "--threads", "1"]
    if batch > 1:
        cmd += ["-b", str(batch)]
    return subprocess.run(cmd, capture_output=True, check=True).stdout.decode("utf-8", "replace")


CASES = [  # prompt, seed, temperature, top_p, top_k, max_tokens
    ("Once upon a time", 3, 0.8, 1.0, 0, 60),
    ("The little dog", 11, 1.0, 0.9, 0, 80),
    ("Lily and Ben went to the park", 5, 0.7, 1.0, 20, 50),
    ("One day", 7, 0.0, 1.0, 0, 40),
    # over 256 tokens: prefilled in --prefill-chunk pieces between decode steps
    ("The sun was bright and the birds sang in the tall green trees. " * 14, 2, 0.9, 1.0, 0, 40),
]


def mode_same(s, args):
    for prompt, seed, t, tp, tk, n in CASES:
        want = generate(args, prompt, seed, t, tp, tk, n)
        body = {"prompt": prompt, "seed": seed, "temperature": t, "top_p": tp, "top_k": tk,
                "max_tokens": n, "some_unknown_field": {"x": 1}}
        st, js, _ = s.request("POST", "/v1/completions", body)
        got = js["choices"][0]["text"] if st == 200 else None
        check(st == 200 and want == prompt + got + "\n",
              "completion == molt generate (%r seed %d t %g top_p %g top_k %d n %d)"
              % (prompt[:40], seed, t, tp, tk, n))
        st, ev, text, fin = s.stream("/v1/completions", body)
        check(st == 200 and ev[-1] == "[DONE]" and want == prompt + text.get(0, "") + "\n"
              and fin.get(0) in ("stop", "length"), "streamed completion == molt generate (%r)"
              % prompt[:40])
    # list-of-one prompt
    st, js, _ = s.request("POST", "/v1/completions", {"prompt": ["One day"], "max_tokens": 5})
    check(st == 200 and js["usage"]["completion_tokens"] <= 5, "prompt as a list of one string")
    # n > 1 == molt generate -b n (the same batch of forked slots)
    prompt, seed = "The cat sat", 21
    want = generate(args, prompt, seed, 0.9, 1.0, 0, 40, batch=3)
    samples = re.split(r"--- sample \d+ \(seed \d+\)\n", want)[1:]
    st, js, _ = s.request("POST", "/v1/completions", {"prompt": prompt, "seed": seed, "n": 3,
                                                      "temperature": 0.9, "max_tokens": 40})
    got = [c["text"] for c in sorted(js["choices"], key=lambda c: c["index"])] if st == 200 else []
    check(len(got) == 3 and all(w == prompt + g + "\n" for w, g in zip(samples, got)),
          "n=3 == molt generate -b 3 (choice i seeded seed + i)")
    st, ev, text, fin = s.stream("/v1/completions", {"prompt": prompt, "seed": seed, "n": 3,
                                                     "temperature": 0.9, "max_tokens": 40})
    check(st == 200 and [text.get(i, "") for i in range(3)] == got and len(fin) == 3,
          "n=3 streamed == n=3 non-streamed")
    # chat: the plain template ("User: ...\nAssistant:") and its implicit stop "\nUser:"
    want = generate(args, "User: Tell me a story.\nAssistant:", 9, 0.8, 1.0, 0, 60)
    want = want[len("User: Tell me a story.\nAssistant:"):-1].split("\nUser:")[0]
    body = {"messages": [{"role": "user", "content": "Tell me a story."}], "seed": 9,
            "temperature": 0.8, "max_tokens": 60}
    st, js, _ = s.request("POST", "/v1/chat/completions", body)
    msg = js["choices"][0]["message"] if st == 200 else {}
    check(st == 200 and msg.get("role") == "assistant" and msg.get("content") == want
          and js["object"] == "chat.completion", "chat completion == molt generate on the template")
    st, ev, text, fin = s.stream("/v1/chat/completions", body)
    check(st == 200 and text.get(0) == want and json.loads(ev[0])["choices"][0]["delta"].get(
        "role") == "assistant", "streamed chat == non-streamed chat")
    st, js, _ = s.request("GET", "/v1/models")
    check(st == 200 and js["data"][0]["object"] == "model", "GET /v1/models")
    st, js, _ = s.request("GET", "/health")
    check(st == 200 and js["status"] == "ok", "GET /health")


def is_error(js, code=None):
    e = (js or {}).get("error") if isinstance(js, dict) else None
    return bool(e) and all(k in e for k in ("message", "type", "code")) and \
        (code is None or e["code"] == code)


def mode_errors(s, args):
    P = "/v1/completions"
    for what, kw, status, code in [
        ("malformed JSON", {"raw": b'{"prompt": "x", '}, 400, "invalid_json"),
        ("not an object", {"body": [1, 2]}, 400, "invalid_type"),
        ("max_tokens a string", {"body": {"prompt": "x", "max_tokens": "5"}}, 400, "invalid_type"),
        ("temperature < 0", {"body": {"prompt": "x", "temperature": -1}}, 400, "invalid_value"),
        ("top_p > 1", {"body": {"prompt": "x", "top_p": 1.5}}, 400, "invalid_value"),
        ("seed not whole", {"body": {"prompt": "x", "seed": 1.5}}, 400, "invalid_type"),
        ("prompt a number", {"body": {"prompt": 5}}, 400, "invalid_type"),
        ("no prompt", {"body": {"max_tokens": 5}}, 400, "invalid_type"),
        ("stop a number", {"body": {"prompt": "x", "stop": 3}}, 400, "invalid_type"),
        ("n too large", {"body": {"prompt": "x", "n": 1000}}, 400, "invalid_value"),
        ("frequency_penalty", {"body": {"prompt": "x", "frequency_penalty": 0.5}}, 400,
         "unsupported"),
        ("max_tokens over the context", {"body": {"prompt": "x", "max_tokens": 10 ** 8}}, 400,
         "context_length_exceeded"),
        ("prompt over the context", {"body": {"prompt": "once upon a time " * 400,
                                              "max_tokens": 4}}, 400, "context_length_exceeded"),
        ("oversized body", {"raw": b'{"prompt": "' + b"a" * 70000 + b'"}'}, 413,
         "request_too_large"),
    ]:
        st, js, _ = s.request("POST", P, kw.get("body"), raw=kw.get("raw"))
        check(st == status and is_error(js, code), "%s -> %d %s (got %d %s)" %
              (what, status, code, st, (js or {}).get("error", {}).get("code")))
    st, js, _ = s.request("POST", "/v1/chat/completions", {"messages": "hi"})
    check(st == 400 and is_error(js, "invalid_type"), "messages not a list -> 400")
    st, js, _ = s.request("POST", "/v1/chat/completions", {"messages": [{"content": "x"}]})
    check(st == 400 and is_error(js, "invalid_type"), "message without role -> 400")
    st, js, _ = s.request("GET", "/v1/nothing")
    check(st == 404 and is_error(js, "not_found"), "unknown route -> 404")
    st, js, _ = s.request("GET", P)
    check(st == 405 and is_error(js, "method_not_allowed"), "GET /v1/completions -> 405")
    st, js, _ = s.request("POST", "/health", {})
    check(st == 405 and is_error(js, "method_not_allowed"), "POST /health -> 405")
    st, js, _ = s.request("POST", P, {"prompt": "x", "max_tokens": 3, "logit_bias": {},
                                      "user": "u", "echo": False})
    check(st == 200, "unknown / unused fields are ignored -> 200")
    st, js, _ = s.request("POST", P, {"prompt": "The", "max_tokens": 30, "stop": ["."],
                                      "temperature": 0})
    check(st == 200 and "." not in js["choices"][0]["text"], "stop string cuts the text")
    plain = s.request("POST", P, {"prompt": "Lily", "max_tokens": 60, "temperature": 0})[1]
    pen = s.request("POST", P, {"prompt": "Lily", "max_tokens": 60, "temperature": 0,
                                "repetition_penalty": 1.5, "min_p": 0.05})
    check(pen[0] == 200 and pen[1]["choices"][0]["text"] != plain["choices"][0]["text"],
          "repetition_penalty changes a greedy story")
    # the server still serves after all that
    st, js, _ = s.request("POST", P, {"prompt": "x", "max_tokens": 3})
    check(st == 200, "still serving")


def wait_for(pred, what, limit=20.0):
    t0 = time.time()
    while time.time() - t0 < limit:
        if pred():
            return check(True, what)
        time.sleep(0.02)
    return check(False, what + " (timed out)")


def mode_exhaust(s, args):
    long = {"prompt": "Once upon a time", "max_tokens": args.long_tokens, "temperature": 1.0,
            "seed": 1, "ignore_eos": True}
    got_first = threading.Event()
    release = threading.Event()
    res = {}

    def holder():  # streams, then disconnects mid-stream after `release`
        def on_ev(ev):
            got_first.set()
            release.wait(30)
            return False  # close the connection
        res["a"] = s.stream("/v1/completions", long, on_ev)

    def waiter():
        res["b"] = s.request("POST", "/v1/completions", dict(long, max_tokens=20))

    ta = threading.Thread(target=holder)
    ta.start()
    check(got_first.wait(30), "stream A started (holds the only slot)")
    tb = threading.Thread(target=waiter)
    tb.start()
    wait_for(lambda: s.request("GET", "/health")[1]["queue"] == 1, "request B waits in the queue")
    st, js, _ = s.request("POST", "/v1/completions", dict(long, max_tokens=5))
    check(st == 503 and is_error(js, "server_busy"), "request C -> 503 while full (got %d)" % st)
    ss = s.stream("/v1/completions", dict(long, max_tokens=5))
    check(ss[0] == 503, "streamed request D -> 503 while full")
    check(s.metric("molt_slots_active") == 1, "/metrics: 1 active slot")
    release.set()  # A's client goes away mid-stream
    ta.join(30)
    tb.join(60)
    check(res.get("b", (0,))[0] == 200, "request B ran after A's client left")
    wait_for(lambda: s.metric("molt_slots_active") == 0 and s.metric("molt_queue_length") == 0,
             "/metrics: 0 active slots, empty queue after the disconnect")
    # a non-streaming client that gives up: its slot is freed too
    c = s.conn(timeout=0.3)
    c.request("POST", "/v1/completions", body=json.dumps(long).encode(),
              headers={"Content-Type": "application/json"})
    try:
        c.getresponse()
        check(False, "long non-streaming request should still be running")
    except (socket.timeout, TimeoutError):
        pass
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()
    wait_for(lambda: s.metric("molt_slots_active") == 0, "non-streaming client left: slot freed")
    st, js, _ = s.request("POST", "/v1/completions", dict(long, max_tokens=5))
    check(st == 200, "serving again after the disconnects")


def mode_cache(s, args):
    base = ("Once upon a time, there was a little girl named Lily. She liked to play in the park "
            "with her dog. One day, she saw a big red ball under a tree.")
    ext = base + " She ran to the ball and"
    h0 = s.metric("molt_prompt_cache_hits_total") or 0
    st, js1, _ = s.request("POST", "/v1/completions", {"prompt": base, "max_tokens": 8,
                                                       "temperature": 0})
    st2, js2, _ = s.request("POST", "/v1/completions", {"prompt": ext, "max_tokens": 40,
                                                        "temperature": 0})
    cached = js2["usage"]["cached_prompt_tokens"] if st2 == 200 else 0
    check(st == 200 and st2 == 200 and cached >= js1["usage"]["prompt_tokens"],
          "extended prompt reuses the cached prefix state (%d of %d prompt tokens cached)"
          % (cached, js2["usage"]["prompt_tokens"] if st2 == 200 else 0))
    check((s.metric("molt_prompt_cache_hits_total") or 0) > h0, "/metrics counts the hit")
    want = generate(args, ext, 1, 0, 1.0, 0, 40)
    check(st2 == 200 and want == ext + js2["choices"][0]["text"] + "\n",
          "cache hit: greedy text == molt generate")
    st3, js3, _ = s.request("POST", "/v1/completions", {"prompt": ext, "max_tokens": 40,
                                                        "temperature": 0})
    check(st3 == 200 and js3["usage"]["cached_prompt_tokens"] == js3["usage"]["prompt_tokens"]
          and js3["choices"][0]["text"] == js2["choices"][0]["text"],
          "identical prompt: whole prompt from the cache, same text")


def mode_load(s, args):
    stop_at = time.time() + args.seconds
    errors, counts, toks = [], [0] * args.clients, [0] * args.clients
    words = ["Once", "upon", "a", "time", "the", "dog", "Lily", "park", "ball", "happy"]

    def client(k):
        rnd = random.Random(k)
        while time.time() < stop_at:
            prompt = " ".join(rnd.choice(words) for _ in range(rnd.randint(1, 12)))
            body = {"prompt": prompt, "max_tokens": rnd.randint(8, args.max_tokens),
                    "temperature": 0.9, "seed": rnd.randint(0, 10 ** 6)}
            try:
                st, ev, text, fin = s.stream("/v1/completions", body)
                if st != 200 or not ev or ev[-1] != "[DONE]" or 0 not in fin:
                    errors.append("client %d: status %d, last event %r" % (k, st, ev[-1:]))
                    return
                counts[k] += 1
                toks[k] += len(ev) - 2
            except Exception as e:  # noqa: BLE001 — every failure is a test failure
                errors.append("client %d: %r" % (k, e))
                return

    ts = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    t0 = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.time() - t0
    for e in errors[:5]:
        print("      " + e)
    check(not errors, "%d concurrent streaming clients for %.0f s: %d streams, no error"
          % (args.clients, dt, sum(counts)))
    check(all(c > 0 for c in counts), "every client completed streams")
    wait_for(lambda: s.metric("molt_slots_active") == 0, "/metrics: 0 active slots after load")


TEMPLATES = {  # the texts serve_chat.c renders for SYSTEM, USER1, ANSWER1, USER2
    "chatml": ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
               "<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\nA story?<|im_end|>\n"
               "<|im_start|>assistant\n", "<|im_end|>"),
    "llama3": ("<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\nHello<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\nA story?<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"),
    "llama2": ("[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello </s><s>[INST] A story? "
               "[/INST]", None),
    "plain": ("Be brief.\n\nUser: Hi\nAssistant: Hello\nUser: A story?\nAssistant:", "\nUser:"),
}


def mode_chat(s, args):
    text, stop = TEMPLATES[args.template]
    want = generate(args, text, 4, 0.9, 1.0, 0, 50)
    check(want.startswith(text), "molt generate echoes the %s prompt" % args.template)
    want = want[len(text):-1]
    if stop:
        want = want.split(stop)[0]
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
            {"role": "user", "content": "A story?"}]
    st, js, _ = s.request("POST", "/v1/chat/completions", {"messages": msgs, "seed": 4,
                                                           "temperature": 0.9, "max_tokens": 50})
    check(st == 200 and js["choices"][0]["message"]["content"] == want,
          "%s chat == molt generate on the rendered template" % args.template)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["same", "errors", "exhaust", "cache", "load", "chat"])
    ap.add_argument("--template", default="plain")
    ap.add_argument("--url", required=True)
    ap.add_argument("--molt", default="./molt")
    ap.add_argument("--model")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--max-tokens", type=int, default=120)
    ap.add_argument("--long-tokens", type=int, default=500000)
    args = ap.parse_args()
    s = Srv(args.url)
    globals()["mode_" + args.mode](s, args)
    if FAILS:
        print("%d check(s) failed" % len(FAILS))
        sys.exit(1)


if __name__ == "__main__":
    main()
