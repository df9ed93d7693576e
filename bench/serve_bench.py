#!/usr/bin/env python3
"""serve_bench.py — `molt serve` under load, with Python's http.client over loopback.

Starts `molt serve MODEL --port 0 SERVE_ARGS` itself (or uses --url) and runs:
  ttft     time to first token (first streamed event) of a long prompt: cold (a prompt no
           earlier request began with) vs a prompt-cache hit (a shared prefix of --prefix-chars
           characters, a new tail each time); median / p90 of --trials each
  load     C concurrent streaming clients (--concurrency 1,4,16,...) for --seconds each:
           generated tokens/s (from /metrics), requests/s, TTFT and request latency p50 / p95
  soak     --soak-clients streaming clients for --soak-seconds: errors, streams, tokens/s and
           the server's VmRSS (/proc/PID/status) sampled every 5 s: first, last, max
Prints one JSON line per measurement and a summary. Requests use ignore_eos so every
completion has its max_tokens.
  python3 bench/serve_bench.py --molt ./molt --model DIR --serve-args "--slots 16 --threads 2" \
      ttft load soak
"""
import argparse
import http.client
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

WORDS = ("once upon a time there was a little girl named lily she liked to play in the park "
         "with her dog one day she saw a big red ball under a tree and ran to it").split()


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


class Server:
    def __init__(self, args):
        self.proc = None
        if args.url:
            m = re.match(r"http://([^:/]+):(\d+)", args.url)
            self.host, self.port = m.group(1), int(m.group(2))
            return
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log")
        cmd = [args.molt, "serve", args.model, "--port", "0"] + args.serve_args.split()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)
        for _ in range(600):
            self.log.seek(0)
            m = re.search(r"listening on http://([0-9.]+):(\d+)", self.log.read())
            if m:
                self.host, self.port = m.group(1), int(m.group(2))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.log.seek(0)
        sys.exit("the server did not start:\n" + self.log.read())

    def rss_kb(self):
        if not self.proc:
            return None
        with open("/proc/%d/status" % self.proc.pid) as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(30)

    def metric(self, name):
        c = http.client.HTTPConnection(self.host, self.port, timeout=60)
        c.request("GET", "/metrics")
        txt = c.getresponse().read().decode()
        c.close()
        m = re.search(r"^%s (\S+)$" % re.escape(name), txt, re.M)
        return float(m.group(1)) if m else 0.0

    def stream(self, body):
        """→ (ttft s, total s, events, ok)"""
        t0 = time.perf_counter()
        c = http.client.HTTPConnection(self.host, self.port, timeout=600)
        c.request("POST", "/v1/completions", body=json.dumps(dict(body, stream=True)),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status != 200:
            r.read()
            c.close()
            return None, time.perf_counter() - t0, 0, False
        ttft, n, done = None, 0, False
        while True:
            line = r.fp.readline()
            if not line:
                break
            if not line.startswith(b"data: "):
                continue
            if line.startswith(b"data: [DONE]"):
                done = True
                break
            if ttft is None:
                ttft = time.perf_counter() - t0
            n += 1
        c.close()
        return ttft, time.perf_counter() - t0, n, done


def out(rec):
    print(json.dumps(rec), flush=True)


def bench_ttft(s, args):
    rnd = random.Random(1)
    prefix = (" ".join(rnd.choice(WORDS) for _ in range(args.prefix_chars // 4)))[:args.prefix_chars]
    res = {}
    for kind in ("cold", "hit"):
        ts = []
        for i in range(args.trials + 1):
            tail = " ".join(rnd.choice(WORDS) for _ in range(8))
            # cold: a new first word, so no cached entry is a prefix; hit: the shared prefix
            head = ("%s %d " % (rnd.choice(WORDS), rnd.randrange(10 ** 9))) if kind == "cold" else ""
            if kind == "hit" and i == 0:
                s.stream({"prompt": prefix, "max_tokens": 1})  # puts the prefix in the cache
            ttft, _, _, ok = s.stream({"prompt": head + prefix + " " + tail, "max_tokens": 4,
                                       "temperature": 0, "ignore_eos": True})
            if ok and i > 0:  # the first is a warm-up
                ts.append(ttft)
        res[kind] = ts
        c = http.client.HTTPConnection(s.host, s.port, timeout=600)  # the last prompt's usage
        c.request("POST", "/v1/completions", body=json.dumps({"prompt": head + prefix + " " + tail,
                                                              "max_tokens": 1}))
        usage = json.loads(c.getresponse().read())["usage"]
        c.close()
        out({"bench": "serve_ttft", "kind": kind, "prefix_chars": args.prefix_chars,
             "prompt_tokens": usage["prompt_tokens"],
             "trials": len(ts), "ttft_ms_median": 1e3 * statistics.median(ts),
             "ttft_ms_p90": 1e3 * pct(ts, 90)})
    return res


def run_clients(s, n, seconds, max_tokens, seed=0):
    stop_at = time.time() + seconds
    ttfts, lats, errors, streams = [], [], [], [0]
    lock = threading.Lock()

    def client(k):
        rnd = random.Random(seed * 1000 + k)
        while time.time() < stop_at:
            body = {"prompt": " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(4, 24))),
                    "max_tokens": max_tokens, "temperature": 0.9, "ignore_eos": True,
                    "seed": rnd.randrange(10 ** 9)}
            try:
                ttft, lat, _, ok = s.stream(body)
            except Exception as e:  # noqa: BLE001
                ok, ttft, lat = False, None, None
                with lock:
                    errors.append(repr(e))
            with lock:
                if ok:
                    ttfts.append(ttft)
                    lats.append(lat)
                    streams[0] += 1
                else:
                    errors.append("stream failed")

    g0, t0 = s.metric("molt_generated_tokens_total"), time.time()
    ts = [threading.Thread(target=client, args=(k,)) for k in range(n)]
    for t in ts:
        t.start()
    return ts, g0, t0, ttfts, lats, errors, streams


def finish(s, ts, g0, t0):
    for t in ts:
        t.join()
    dt = time.time() - t0
    return dt, (s.metric("molt_generated_tokens_total") - g0) / dt


def bench_load(s, args):
    for n in [int(x) for x in args.concurrency.split(",")]:
        ts, g0, t0, ttfts, lats, errors, streams = run_clients(s, n, args.seconds, args.max_tokens)
        dt, tps = finish(s, ts, g0, t0)
        out({"bench": "serve_load", "clients": n, "seconds": round(dt, 1), "streams": streams[0],
             "errors": len(errors), "gen_tok_per_s": round(tps, 1),
             "req_per_s": round(streams[0] / dt, 2), "ttft_ms_p50": 1e3 * pct(ttfts, 50),
             "ttft_ms_p95": 1e3 * pct(ttfts, 95), "latency_ms_p50": 1e3 * pct(lats, 50),
             "latency_ms_p95": 1e3 * pct(lats, 95), "max_tokens": args.max_tokens})


def bench_soak(s, args):
    rss = [s.rss_kb()]
    ts, g0, t0, ttfts, lats, errors, streams = run_clients(s, args.soak_clients,
                                                           args.soak_seconds, args.max_tokens, 7)
    while any(t.is_alive() for t in ts):
        time.sleep(5)
        rss.append(s.rss_kb())
    dt, tps = finish(s, ts, g0, t0)
    rss.append(s.rss_kb())
    half = rss[len(rss) // 2:] if rss[0] is not None else []
    out({"bench": "serve_soak", "clients": args.soak_clients, "seconds": round(dt, 1),
         "streams": streams[0], "errors": len(errors), "first_errors": errors[:3],
         "gen_tok_per_s": round(tps, 1), "ttft_ms_p50": 1e3 * pct(ttfts, 50),
         "ttft_ms_p95": 1e3 * pct(ttfts, 95), "rss_kb_samples": rss,
         "rss_kb_second_half_min_max": [min(half), max(half)] if half else None,
         "active_after": s.metric("molt_slots_active")})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("modes", nargs="+", choices=["ttft", "load", "soak"])
    ap.add_argument("--molt", default="./molt")
    ap.add_argument("--model")
    ap.add_argument("--serve-args", default="--slots 16 --threads 2")
    ap.add_argument("--url")
    ap.add_argument("--prefix-chars", type=int, default=6000)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--concurrency", default="1,4,16,64")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--soak-clients", type=int, default=64)
    ap.add_argument("--soak-seconds", type=float, default=180)
    args = ap.parse_args()
    s = Server(args)
    try:
        for m in args.modes:
            globals()["bench_" + m](s, args)
    finally:
        s.stop()


if __name__ == "__main__":
    main()
