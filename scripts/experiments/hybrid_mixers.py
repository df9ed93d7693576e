#!/usr/bin/python3
"""hybrid_mixers.py -- which recurrent mixer beside the kept attention heads?

Retrieval-aware hybrids of one teacher (`molt hybridize --student llamba | mamba3 |
gateloop`): the SAME kept teacher heads (kv-llama-2m: the top 2 of
docs/reports/kv-llama/heads-ranking.json, L1H3 and L1H4; stories260K: 2 random
heads, --random-heads 2 --seed 1), frozen, and every other head recurrent, at
EQUAL RECURRENT STATE BYTES (each mixer's d_state picked as in mixers.py, so that
the recurrent state matches GateLoop's; the kept heads' KV cache is the same for
all three) and an EQUAL TOKEN BUDGET. Per student: held-out loss, KV / MQAR
accuracy (kv-llama-2m), decode tok/s, state and KV bytes (`molt info --json`).
One seed (a short experiment: read differences under a few hundredths of a nat,
or ~0.05 accuracy, as noise).

  usage: scripts/experiments/hybrid_mixers.py [--out DIR] [--work DIR] [--seed S]
         [--teachers stories260K,kv-llama-2m] [--molt BIN] [--reps N]
Writes OUT/hybrids.json and OUT/hybrids.md. Reuses mixers.py's teachers, state
formulas and measurements; every molt command runs with --threads 1, one at a time.
"""
import argparse, json, os, shutil, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mixers as mx  # noqa: E402

KINDS = ["llamba", "mamba3", "gateloop"]


def budgets(t):
    """half of mixers.py's per-student budget (the time box of this experiment)"""
    b = dict(t["distill"])
    for k in ("sample_tokens", "stage1_tokens", "stage2_tokens", "stage3_tokens"):
        b[k] //= 2
    return b


def heads_args(t):
    if t["name"] == "kv-llama-2m":
        return ["--ranking", os.path.join(mx.ROOT, "docs/reports/kv-llama/heads-ranking.json"),
                "--keep", "2"]
    return ["--random-heads", "2"]


def hybridize(t, kind, n, seed, d, a, log):
    b = t["distill"]
    cmd = (["hybridize", t["model"], "-o", d, "--student", kind, "--seed", str(seed),
            "--freeze-kept", "--sample-tokens", str(b["sample_tokens"]), "--seq", str(b["seq"]),
            "--batch", str(b["batch"]), "--stage1-tokens", str(b["stage1_tokens"]),
            "--stage2-tokens", str(b["stage2_tokens"]),
            "--stage3-tokens", str(b["stage3_tokens"]), "--threads", "1", "-q", "--overwrite"]
           + heads_args(t))
    if kind != "gateloop":
        cmd += ["--d-state", str(n)]
    if t["task"]:
        cmd += ["--kv-task", t["task"], "--kv-data-frac", str(b["kv_data_frac"]),
                "--kv-examples", "20"]
    _, _, dt = mx.molt(cmd, a.molt, log)
    return dt, json.load(open(os.path.join(d, "report.json")))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(mx.ROOT, "docs/reports/mixers"))
    ap.add_argument("--work", default="/tmp/molt-hybrid-mixers")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--teachers", default="stories260K,kv-llama-2m")
    ap.add_argument("--molt", default=os.path.join(mx.ROOT, "build/molt"))
    ap.add_argument("--reps", type=int, default=3, help="decode timing repeats (median)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    os.makedirs(a.work, exist_ok=True)
    log = os.path.join(a.work, "molt.log")
    res = {"machine": mx.machine(), "command": " ".join(sys.argv), "seed": a.seed,
           "teachers": []}
    t0 = time.time()
    for t in [t for t in mx.teachers(False) if t["name"] in a.teachers.split(",")]:
        t["distill"] = budgets(t)
        g = mx.info(t["model"], a.molt)
        if t.get("samples"):
            t["samples_file"] = mx.teacher_samples(t, a, log)
        gl = mx.state_bytes("gateloop", g)
        te = dict(name=t["name"], distill=t["distill"], teacher=mx.measure(t["model"], t, a, log),
                  students=[])
        res["teachers"].append(te)
        for kind in KINDS:
            n = 0 if kind == "gateloop" else mx.fit(kind, g, gl)
            d = os.path.join(a.work, t["name"], kind)
            dt, rep = hybridize(t, kind, n, a.seed, d, a, log)
            r = dict(kind=kind, d_state=n, distill_seconds=dt,
                     kept_heads=rep["student"]["kept_heads"],
                     recurrent_state_planned=mx.state_bytes(kind, g, n),
                     stages=[{k: s[k] for k in ("stage", "tokens", "first_loss",
                                                "final_loss_mean_last10pct")}
                             for s in rep["stages"]])
            r.update(mx.measure(d, t, a, log))
            te["students"].append(r)
            extra = "".join(f" {k} {r[k]:.3f}" for k in ("sample_loss", "kv_mean", "mqar_mean")
                            if k in r)
            print(f"{t['name']} hybrid+{kind} N{n}: loss {r['heldout_loss']:.4f}{extra} "
                  f"state {r['state_bytes']:,} B (+{r['kv_bytes_per_token']} B/token) decode "
                  f"{r['decode_tok_s']:.0f} tok/s ({dt:.0f} s) [{time.time() - t0:.0f} s]",
                  flush=True)
            for f in os.listdir(d):  # the weights are not kept
                p = os.path.join(d, f)
                if f.endswith(".safetensors") or f.startswith("stage"):
                    shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
    res["seconds"] = time.time() - t0
    json.dump(res, open(os.path.join(a.out, "hybrids.json"), "w"), indent=1)
    md = markdown(res)
    open(os.path.join(a.out, "hybrids.md"), "w").write(md)
    print(md)
    print(f"wrote {a.out}/hybrids.json, hybrids.md ({res['seconds']:.0f} s)")


def markdown(res):
    L = []
    for t in res["teachers"]:
        b, tr = t["distill"], t["teacher"]
        tot = b["stage1_tokens"] + b["stage2_tokens"] + b["stage3_tokens"]
        kept = t["students"][0]["kept_heads"]
        L.append(f"**{t['name']}**: kept heads {', '.join(f'L{l}H{h}' for l, h in kept)} "
                 f"(frozen); {tot:,} tokens per student (stages {b['stage1_tokens']:,} / "
                 f"{b['stage2_tokens']:,} / {b['stage3_tokens']:,}), --sample-tokens "
                 f"{b['sample_tokens']:,}, seed {res['seed']}.\n")
        kv = "kv_mean" in tr
        smp = "sample_loss" in tr
        h = "| model | d_state | recurrent state B | KV B/token | held-out loss |"
        s = "|---|---:|---:|---:|---:|"
        if smp:
            h += " loss on teacher samples |"
            s += "---:|"
        if kv:
            h += " KV acc | MQAR acc |"
            s += "---:|---:|"
        h += " decode tok/s | distill s |"
        s += "---:|---:|"
        L += [h, s]
        rows = [("teacher", "–", "–", tr["kv_bytes_per_token"], tr, None)]
        rows += [(f"hybrid + {r['kind']}", r["d_state"] or "(hd)", f"{r['state_bytes']:,}",
                  r["kv_bytes_per_token"], r, r["distill_seconds"]) for r in t["students"]]
        for name, n, st, kvb, r, ds in rows:
            line = f"| {name} | {n} | {st} | {kvb:,} | {r['heldout_loss']:.3f} |"
            if smp:
                line += f" {r['sample_loss']:.3f} |"
            if kv:
                line += f" {r['kv_mean']:.3f} | {r['mqar_mean']:.3f} |"
            line += f" {r['decode_tok_s']:,.0f} | {'–' if ds is None else f'{ds:.0f}'} |"
            L.append(line)
        L.append("")
    return "\n".join(L)


if __name__ == "__main__":
    main()
