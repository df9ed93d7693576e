#!/usr/bin/python3
"""hybrid_mixers.py -- which recurrent mixer beside the kept attention heads?

Retrieval-aware hybrids of one teacher (`molt hybridize --student llamba | mamba2 |
mamba3 | gateloop`): the SAME kept teacher heads for every mixer (kv-llama-2m: the
top 2 of docs/reports/kv-llama/heads-ranking.json, L1H3 and L1H4; stories260K: 2
random heads, --random-heads 2 with the run's --seed, so each seed draws its own
pair), frozen, and every other head recurrent, at EQUAL RECURRENT STATE BYTES (each
mixer's d_state picked as in mixers.py, so that the recurrent state matches
GateLoop's; the kept heads' KV cache is the same for all) and an EQUAL TOKEN
BUDGET. Per student: held-out loss, KV / MQAR accuracy (kv-llama-2m), decode
tok/s, state and KV bytes (`molt info --json`); mean ± std over --seeds.

  usage: scripts/experiments/hybrid_mixers.py [--out DIR] [--work DIR] [--seeds 1,2,3]
         [--teachers stories260K,kv-llama-2m] [--kinds llamba,mamba2,mamba3,gateloop]
         [--molt BIN] [--reps N] [--no-reuse]
Writes OUT/hybrids.json and OUT/hybrids.md. A run (teacher, budget, kind, d_state,
seed) found in the previous OUT/hybrids.json is taken from there, not run again
(--no-reuse: it is). Reuses mixers.py's teachers, state formulas and measurements;
every molt command runs with --threads 1, one at a time.
"""
import argparse, json, os, shutil, statistics, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mixers as mx  # noqa: E402

KINDS = ["llamba", "mamba2", "mamba3", "gateloop"]


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


def run_key(t, kind, n, seed):
    return json.dumps([t["name"], t["distill"], kind, n, seed], sort_keys=True)


def previous(path):
    """the finished runs of an earlier hybrids.json by run_key (the one-seed format of the
    first version too: its seed in res["seed"]) and its teachers' measures"""
    if not os.path.exists(path):
        return {}, {}
    old = json.load(open(path))
    runs, tm = {}, {}
    for t in old["teachers"]:
        tm[t["name"]] = t["teacher"]
        for r in t["students"]:
            r = dict(r, seed=r.get("seed", old.get("seed")))
            runs[run_key(t, r["kind"], r["d_state"], r["seed"])] = r
    return runs, tm


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(mx.ROOT, "docs/reports/mixers"))
    ap.add_argument("--work", default="/tmp/molt-hybrid-mixers")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--teachers", default="stories260K,kv-llama-2m")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--molt", default=os.path.join(mx.ROOT, "build/molt"))
    ap.add_argument("--reps", type=int, default=3, help="decode timing repeats (median)")
    ap.add_argument("--rerun", action="append", default=[], metavar="KIND",
                    help="re-run this kind's hybrids instead of reusing them")
    ap.add_argument("--no-reuse", action="store_true",
                    help="do not take finished runs from the previous OUT/hybrids.json")
    a = ap.parse_args()
    seeds = [int(x) for x in a.seeds.split(",")]
    kinds = a.kinds.split(",")
    os.makedirs(a.out, exist_ok=True)
    os.makedirs(a.work, exist_ok=True)
    log = os.path.join(a.work, "molt.log")
    prev, prev_tm = ({}, {}) if a.no_reuse else previous(os.path.join(a.out, "hybrids.json"))
    res = {"machine": mx.machine(), "command": " ".join(sys.argv), "seeds": seeds,
           "kinds": kinds, "teachers": []}
    t0 = time.time()
    for t in [t for t in mx.teachers(False) if t["name"] in a.teachers.split(",")]:
        t["distill"] = budgets(t)
        g = mx.info(t["model"], a.molt)
        if t.get("samples"):
            t["samples_file"] = mx.teacher_samples(t, a, log)
        gl = mx.state_bytes("gateloop", g)
        tm = mx.measure(t["model"], t, a, log)
        if t["name"] in prev_tm:  # the teacher measured as before (not the timings)?
            tm["same_as_previous"] = {k: tm.get(k) == prev_tm[t["name"]].get(k)
                                      for k in mx.REPRO if k in prev_tm[t["name"]]}
        te = dict(name=t["name"], distill=t["distill"], teacher=tm, students=[])
        res["teachers"].append(te)
        for seed in seeds:
            for kind in kinds:
                n = 0 if kind == "gateloop" else mx.fit(kind, g, gl)
                key = run_key(t, kind, n, seed)
                if key in prev and kind not in a.rerun:
                    r = dict(prev[key], reused=True)
                else:
                    d = os.path.join(a.work, t["name"], kind, f"seed{seed}")
                    dt, rep = hybridize(t, kind, n, seed, d, a, log)
                    r = dict(kind=kind, d_state=n, seed=seed, distill_seconds=dt,
                             kept_heads=rep["student"]["kept_heads"],
                             recurrent_state_planned=mx.state_bytes(kind, g, n),
                             stages=[{k: s[k] for k in ("stage", "tokens", "first_loss",
                                                        "final_loss_mean_last10pct")}
                                     for s in rep["stages"]])
                    r.update(mx.measure(d, t, a, log))
                    for f in os.listdir(d):  # the weights are not kept
                        p = os.path.join(d, f)
                        if f.endswith(".safetensors") or f.startswith("stage"):
                            shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
                te["students"].append(r)
                extra = "".join(f" {k} {r[k]:.3f}" for k in ("sample_loss", "kv_mean",
                                                                "mqar_mean") if k in r)
                print(f"{t['name']} seed {seed} hybrid+{kind} N{n}: loss "
                      f"{r['heldout_loss']:.4f}{extra} state {r['state_bytes']:,} B "
                      f"(+{r['kv_bytes_per_token']} B/token) decode {r['decode_tok_s']:.0f} "
                      f"tok/s ({r['distill_seconds']:.0f} s"
                      f"{', reused' if r.get('reused') else ''}) [{time.time() - t0:.0f} s]",
                      flush=True)
                if r["state_bytes"] != r["recurrent_state_planned"]:
                    print(f"  WARNING: molt info says {r['state_bytes']} B, the plan "
                          f"{r['recurrent_state_planned']} B", flush=True)
    res["seconds"] = time.time() - t0
    json.dump(res, open(os.path.join(a.out, "hybrids.json"), "w"), indent=1)
    md = markdown(res)
    open(os.path.join(a.out, "hybrids.md"), "w").write(md)
    print(md)
    print(f"wrote {a.out}/hybrids.json, hybrids.md ({res['seconds']:.0f} s)")


def heads_str(kept):
    return ", ".join(f"L{l}H{h}" for l, h in kept)


def markdown(res):
    L = []
    for t in res["teachers"]:
        b, tr = t["distill"], t["teacher"]
        tot = b["stage1_tokens"] + b["stage2_tokens"] + b["stage3_tokens"]
        seeds = sorted({r["seed"] for r in t["students"]})
        kept = {}
        for r in t["students"]:
            kept.setdefault(heads_str(r["kept_heads"]), set()).add(r["seed"])
        ks = "; ".join(f"{h} (seed{'s' if len(v) > 1 else ''} "
                       f"{', '.join(map(str, sorted(v)))})" for h, v in kept.items())
        L.append(f"**{t['name']}**: kept heads, frozen: {ks}; {tot:,} tokens per student "
                 f"(stages {b['stage1_tokens']:,} / {b['stage2_tokens']:,} / "
                 f"{b['stage3_tokens']:,}), --sample-tokens {b['sample_tokens']:,}, seeds "
                 f"{', '.join(map(str, seeds))} (mean ± std over seeds; per seed below).\n")
        kv = "kv_mean" in tr
        smp = "sample_loss" in tr
        h = "| model | d_state | seeds | recurrent state B | KV B/token | held-out loss |"
        s = "|---|---:|---:|---:|---:|---:|"
        if smp:
            h += " loss on teacher samples |"
            s += "---:|"
        if kv:
            h += " KV acc | MQAR acc |"
            s += "---:|---:|"
        h += " decode tok/s | distill s |"
        s += "---:|---:|"
        L += [h, s]
        line = (f"| teacher | – | – | – | {tr['kv_bytes_per_token']:,} | "
                f"{tr['heldout_loss']:.3f} |")
        if smp:
            line += f" {tr['sample_loss']:.3f} |"
        if kv:
            line += f" {tr['kv_mean']:.3f} | {tr['mqar_mean']:.3f} |"
        L.append(line + f" {tr['decode_tok_s']:,.0f} | – |")
        kinds = [k for k in KINDS if any(r["kind"] == k for r in t["students"])]
        for k in kinds:
            rs = [r for r in t["students"] if r["kind"] == k]
            c = lambda key: mx.fmt(*mx.ms([r.get(key) for r in rs]))
            line = (f"| hybrid + {k} | {rs[0]['d_state'] or '(hd)'} | {len(rs)} | "
                    f"{rs[0]['state_bytes']:,} | {rs[0]['kv_bytes_per_token']:,} | "
                    f"{c('heldout_loss')} |")
            if smp:
                line += f" {c('sample_loss')} |"
            if kv:
                line += f" {c('kv_mean')} | {c('mqar_mean')} |"
            dm = mx.ms([r["decode_tok_s"] for r in rs])
            line += (f" {dm[0]:,.0f} ± {dm[1]:,.0f} | "
                     f"{statistics.mean(r['distill_seconds'] for r in rs):.0f} |")
            L.append(line)
        L.append("")
        cols = ["heldout_loss"] + (["sample_loss"] if smp else []) + (
            ["kv_mean", "mqar_mean"] if kv else [])
        names = {"heldout_loss": "held-out loss", "sample_loss": "loss on teacher samples",
                 "kv_mean": "KV acc", "mqar_mean": "MQAR acc"}
        L.append("Per seed (" + " / ".join(names[c] for c in cols) + "):\n")
        L.append("| model | " + " | ".join(f"seed {x}" for x in seeds) + " |")
        L.append("|---|" + "---:|" * len(seeds))
        for k in kinds:
            by = {r["seed"]: r for r in t["students"] if r["kind"] == k}
            L.append(f"| hybrid + {k} | " + " | ".join(
                " / ".join(f"{by[x][c]:.3f}" for c in cols) if x in by else "–"
                for x in seeds) + " |")
        L.append("")
    return "\n".join(L)

if __name__ == "__main__":
    main()
