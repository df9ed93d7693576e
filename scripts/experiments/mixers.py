#!/usr/bin/python3
"""mixers.py -- which recurrent mixer should a Transformer be distilled into?

Distils each teacher into every student kind molt has (`molt distill --student
llamba | mamba2 | mamba3 | mamba3-mimo | gateloop`) at EQUAL RECURRENT STATE BYTES per
sequence (each student's d_state, and the MIMO rank, picked so that the state
matches GateLoop's, which its head dim fixes) and an EQUAL TOKEN BUDGET (the
same --sample-tokens and stage token counts for every student of a teacher),
over several seeds, then measures per student: held-out loss (`molt eval
--text`), key-value retrieval and MQAR accuracy (`molt eval --task kv|mqar`,
kv-llama-2m only), decode tokens/s (`molt generate -n 256 -t 0`, the median of
--reps runs) and the state bytes `molt info --json` reports.

Mamba-3's published claim ("Mamba-2 quality at half the state size") is tested
with a Mamba-3 SISO student at half the state bytes of the Mamba-2 student
(`--student mamba2`: the Mamba-2 mixer with the teacher's MLPs), the Llamba
student (DiscreteMamba2) at the Mamba-2 student's state beside it. Where half of
the equal-state Mamba-2 is below the smallest Mamba-3 state (d_state 4), the pair
is run at a larger level (Mamba-2 and Llamba d_state 16) with Mamba-3 at half and
at equal state beside it.

Writes OUT/mixers.json (every run), OUT/mixers.md (mean ± std over seeds per
student, the claim's verdict) and OUT/loss_vs_state.svg (held-out loss vs state
bytes, one marker per student kind, error bars = std over seeds). Run dirs go
to --work (kept between invocations: a finished run is not run again); a run
whose key (teacher, budget, kind, d_state, rank, seed, measures) is in the
previous OUT/mixers.json is taken from there too (--no-reuse: not), and
--verify TEACHER:LABEL:SEED re-runs such a run and records whether its losses and
retrieval answers reproduce bit for bit.

  usage: scripts/experiments/mixers.py [--smoke] [--out DIR] [--work DIR]
         [--seeds 1,2,3] [--teachers stories260K,kv-llama-2m] [--molt BIN]
         [--no-reuse] [--verify TEACHER:LABEL:SEED]...
Standard library only (no matplotlib on the project's machine: the SVG is
written by hand). Every molt command runs with --threads 1, one at a time.
"""
import argparse, json, math, os, re, shutil, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.environ.get("MOLT_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
VALID = os.path.join(ROOT, "tests/fixtures/data/tinystories/tinystories_v1_valid_head_40k.txt")
KIND_ORDER = ["llamba", "mamba2", "mamba3", "mamba3-mimo", "gateloop"]
MARK = {"llamba": "circle", "mamba2": "down", "mamba3": "square", "mamba3-mimo": "triangle",
        "gateloop": "diamond"}
COLOR = {"llamba": "#1f77b4", "mamba2": "#9467bd", "mamba3": "#d62728", "mamba3-mimo": "#ff7f0e",
         "gateloop": "#2ca02c"}
TOL = 0.10  # state bytes of the equal-state group match within 10%
# what a re-run must reproduce bit for bit (not the timings)
REPRO = ("heldout_loss", "sample_loss", "kv", "mqar", "state_bytes", "n_params")


def teachers(smoke):
    """Each teacher: its model, held-out text, retrieval task and budgets.
    stage tokens 10% / 20% / 70% as `--tokens` splits them."""
    st = {"name": "stories260K", "model": os.path.join(ROOT, "models/stories260K/stories260K.bin"),
          "text": VALID, "window": 256, "task": None,
          "distill": {"sample_tokens": 60000, "seq": 128, "batch": 4, "stage1_tokens": 15360,
                      "stage2_tokens": 30720, "stage3_tokens": 107520}}
    kv_dir = os.path.join(SHARED, "models/kv-llama-2m")
    kv = {"name": "kv-llama-2m", "model": kv_dir, "text": VALID, "window": 256,
          "task": os.path.join(kv_dir, "kv_task.json"), "pairs": "2,4,8", "queries": 2,
          "examples": 100, "samples": {"n": 32, "tokens": 255, "seed": 999},
          "distill": {"sample_tokens": 40000, "seq": 128, "batch": 4, "stage1_tokens": 10240,
                      "stage2_tokens": 20480, "stage3_tokens": 71680, "kv_data_frac": 0.3}}
    if smoke:
        st["distill"] = {"sample_tokens": 4000, "seq": 32, "batch": 4, "stage1_tokens": 640,
                         "stage2_tokens": 1280, "stage3_tokens": 2560}
        st["max_tokens"] = 3000
        return [st]
    return [st, kv]


# ---------------------------------------------------------------------------
# state bytes per sequence (float32), checked against `molt info --json` after
# every run: Llamba (DiscreteMamba2, conv width 4 over x, B, C: ngroups =
# heads) and Mamba-2 (the same conv over x, B, C, ngroups = heads; student_mamba2.c):
# L·(H·P·N + 3·(H·P + 2·H·N)); Mamba-3: L·(H·P·N + R·H·N + H·P + H·S),
# S = the rotary angles (floor(N/2) rounded down to even, halved); GateLoop:
# L·H·P·P (the complex H × P/2 × P state). H, P: the teacher's query heads and
# head dim (one student head per teacher head).

def m3_angles(n):
    s = n // 2
    return (s - s % 2) // 2


def state_bytes(kind, g, n=0, r=1):
    L, H, P = g["n_layer"], g["n_head"], g["head_dim"]
    if kind in ("llamba", "mamba2"):
        f = H * P * n + 3 * (H * P + 2 * H * n)
    elif kind in ("mamba3", "mamba3-mimo"):
        f = H * P * n + r * H * n + H * P + H * m3_angles(n)
    else:
        f = H * P * P
    return 4 * L * f


def fit(kind, g, target, r=1):
    """the d_state whose state is closest to target (Mamba-3: >= 4, MIMO even)"""
    lo = 4 if kind.startswith("mamba3") else 1
    ns = [n for n in range(lo, 513) if kind != "mamba3-mimo" or n % 2 == 0]
    return min(ns, key=lambda n: (abs(state_bytes(kind, g, n, r) - target), n))


def plan(g):
    """the configurations of one teacher: (label, kind, d_state, rank, groups). Groups:
    equal (all matched to GateLoop's state); the claim: claim-full (Mamba-2), claim-half
    (Mamba-3 SISO at half its state), claim-equal (Mamba-3 SISO at its state), claim-llamba
    (Llamba at its state)"""
    gl = state_bytes("gateloop", g)
    cfg = [(k, fit(k, g, gl), 1) for k in ("llamba", "mamba2", "mamba3")]
    for r in (4, 2, 1):  # the default rank 4 where it can match, else smaller
        n = fit("mamba3-mimo", g, gl, r)
        if abs(state_bytes("mamba3-mimo", g, n, r) / gl - 1) <= TOL:
            break
    cfg.append(("mamba3-mimo", n, r))
    out = [dict(label=f"{k}-N{n}" + (f"-R{r}" if k == "mamba3-mimo" else ""), kind=k,
                d_state=n, rank=r, groups=["equal"]) for k, n, r in cfg]
    out.append(dict(label="gateloop", kind="gateloop", d_state=0, rank=1, groups=["equal"]))
    lb, m2, m3 = out[0], out[1], out[2]
    full = state_bytes("mamba2", g, m2["d_state"])
    half_n = fit("mamba3", g, full / 2)
    if abs(state_bytes("mamba3", g, half_n) / full - 0.5) <= 0.5 * TOL:
        m2["groups"].append("claim-full")
        m3["groups"].append("claim-equal")
        if state_bytes("llamba", g, lb["d_state"]) == full:
            lb["groups"].append("claim-llamba")
        out.append(dict(label=f"mamba3-N{half_n}", kind="mamba3", d_state=half_n, rank=1,
                        groups=["claim-half"]))
    else:  # half the equal-state Mamba-2 is below Mamba-3's smallest state: a larger level
        full = state_bytes("mamba2", g, 16)
        for k, grp in (("llamba", "claim-llamba"), ("mamba2", "claim-full")):
            out.append(dict(label=f"{k}-N16", kind=k, d_state=16, rank=1, groups=[grp]))
        for grp, t in (("claim-half", full / 2), ("claim-equal", full)):
            n = fit("mamba3", g, t)
            out.append(dict(label=f"mamba3-N{n}", kind="mamba3", d_state=n, rank=1,
                            groups=[grp]))
    for c in out:
        c["state_bytes_planned"] = state_bytes(c["kind"], g, c["d_state"], c["rank"])
    return out


# ---------------------------------------------------------------------------
# molt

def molt(args, bin_, log=None):
    t0 = time.time()
    p = subprocess.run([bin_] + args, capture_output=True, text=True)
    dt = time.time() - t0
    if log:
        with open(log, "a") as f:
            f.write(f"$ molt {' '.join(args)}\n# rc {p.returncode}, {dt:.1f} s\n{p.stderr}\n")
    if p.returncode != 0:
        raise RuntimeError(f"molt {' '.join(args)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return p.stdout, p.stderr, dt


def info(m, bin_):
    return json.loads(molt(["info", m, "--json"], bin_)[0])



def teacher_samples(t, a, log):
    """held-out text in the teacher's own distribution: samples of `molt generate -t 1
    --top-p 1` from a seed none of the distillations sample with (theirs: --seed 1, 2, 3
    in distill's sampler), one document each (--sep)"""
    sm = t["samples"]
    path = os.path.join(a.work, t["name"] + f"-samples-s{sm['seed']}.txt")
    if not os.path.exists(path):
        out, _, _ = molt(["generate", t["model"], "-t", "1", "--top-p", "1", "-s",
                          str(sm["seed"]), "-n", str(sm["tokens"]), "-b", str(sm["n"]), "-q",
                          "--threads", "1"], a.molt, log)
        docs = [d.strip("\n") for d in re.split(r"^--- sample \d+ \(seed \d+\)$", out,
                                                 flags=re.M) if d.strip()]
        if len(docs) != sm["n"]:
            raise RuntimeError(f"expected {sm['n']} samples, got {len(docs)}")
        open(path, "w").write(SEP.join(docs))
    return path


SEP = "\n<|sample|>\n"


def measure(m, t, a, log, is_teacher=False):
    """held-out loss, retrieval, decode tok/s and state bytes of one model"""
    r = {}
    ev = ["eval", m, "--text", t["text"], "--window", str(t["window"]), "--json",
          "--threads", "1"]
    if t.get("max_tokens"):
        ev += ["--max-tokens", str(t["max_tokens"])]
    out, _, _ = molt(ev, a.molt, log)
    r["heldout_loss"] = json.loads(out.strip().splitlines()[0])["loss"]
    if t.get("samples_file"):
        out, _, _ = molt(["eval", m, "--text", t["samples_file"], "--sep", SEP.replace("\n", "\\n"),
                          "--window", str(t["window"]), "--json", "--threads", "1"], a.molt, log)
        r["sample_loss"] = json.loads(out.strip().splitlines()[0])["loss"]
    if t["task"]:
        for task in ("kv", "mqar"):
            cmd = ["eval", m, "--task", task, "--kv-task", t["task"], "--pairs", t["pairs"],
                   "--examples", str(t["examples"]), "--json", "--threads", "1"]
            if task == "mqar":
                cmd += ["--queries", str(t["queries"])]
            out, _, _ = molt(cmd, a.molt, log)
            res = json.loads(out.strip().splitlines()[0])
            r[task] = {str(x["pairs"]): x["accuracy"] for x in res}
            r[task + "_mean"] = statistics.mean(x["accuracy"] for x in res)
    speeds = [gen_speed(m, a.molt) for _ in range(a.reps)]
    r["decode_tok_s"] = statistics.median(speeds)
    r["decode_tok_s_runs"] = speeds
    i = info(m, a.molt)
    r["state_bytes"] = i["state_bytes"]
    r["kv_bytes_per_token"] = i["kv_bytes_per_token"]
    r["n_params"] = i["n_params"]
    return r


def distill(t, c, seed, d, a, log):
    b = t["distill"]
    cmd = ["distill", t["model"], "-o", d, "--student", c["kind"], "--seed", str(seed),
           "--sample-tokens", str(b["sample_tokens"]), "--seq", str(b["seq"]),
           "--batch", str(b["batch"]), "--stage1-tokens", str(b["stage1_tokens"]),
           "--stage2-tokens", str(b["stage2_tokens"]), "--stage3-tokens", str(b["stage3_tokens"]),
           "--threads", "1", "-q", "--overwrite"]
    if c["kind"] != "gateloop":
        cmd += ["--d-state", str(c["d_state"])]
    if c["kind"] == "mamba3-mimo":
        cmd += ["--mimo-rank", str(c["rank"])]
    if t["task"]:
        cmd += ["--kv-task", t["task"], "--kv-data-frac", str(b["kv_data_frac"]),
                "--kv-examples", "20"]
    _, _, dt = molt(cmd, a.molt, log)
    rep = json.load(open(os.path.join(d, "report.json")))
    return dt, rep


def gen_speed(m, bin_):
    _, err, _ = molt(["generate", m, "-n", "256", "-t", "0", "--threads", "1"], bin_)
    g = re.search(r"generated (\d+) tokens in ([\d.]+)s \(([\d.]+) tok/s\)", err)
    if not g:
        raise RuntimeError("no tok/s in molt generate's stderr:\n" + err)
    return float(g.group(3))


def decode_pass(res, a):
    """Decode speed with the machine's load spread evenly: one untrained student per
    configuration (decode cost depends on the shapes, not the weights: a distillation of
    a few tokens gives the same architecture), then --decode-rounds rounds that each time
    every model of a teacher (the teacher too) once, in turn; the median per model."""
    log = os.path.join(a.work, "molt.log")
    for t in res["teachers"]:
        tiny = dict(t, distill={"sample_tokens": 1000, "seq": 16, "batch": 1,
                                "stage1_tokens": 16, "stage2_tokens": 16, "stage3_tokens": 16,
                                "kv_data_frac": 0.3})
        models = {"teacher": t["model"]}
        for c in t["configs"]:
            d = os.path.join(a.work, "decode", t["name"], c["label"])
            if not os.path.exists(os.path.join(d, "model.safetensors")):
                distill(tiny, c, 1, d, a, log)
            models[c["label"]] = d
        sp = {k: [] for k in models}
        for _ in range(a.decode_rounds):
            for k, m in models.items():
                sp[k].append(gen_speed(m, a.molt))
        t["decode_interleaved"] = {k: {"median": statistics.median(v), "runs": v}
                                   for k, v in sp.items()}
        print(f"{t['name']} decode (interleaved, median of {a.decode_rounds}): "
              + ", ".join(f"{k} {v['median']:.0f}" for k, v in t["decode_interleaved"].items()),
              flush=True)


# ---------------------------------------------------------------------------
# summary

def ms(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def fmt(m, s, p=3):
    return "–" if m is None else f"{m:.{p}f} ± {s:.{p}f}"


def summarize(res):
    rows = []
    for t in res["teachers"]:
        for c in t["configs"]:
            runs = [r for r in res["runs"]
                    if r["teacher"] == t["name"] and r["label"] == c["label"]]
            if not runs:
                continue
            row = dict(teacher=t["name"], label=c["label"], kind=c["kind"], d_state=c["d_state"],
                       rank=c["rank"], groups=c["groups"], n=len(runs),
                       state_bytes=runs[0]["state_bytes"])
            for k in ("heldout_loss", "sample_loss", "kv_mean", "mqar_mean", "decode_tok_s",
                      "distill_seconds"):
                row[k] = ms([r.get(k) for r in runs])
            rows.append(row)
    return rows


def metrics_of(t):
    """the held-out losses of a teacher's runs: (key, what)"""
    m = [("heldout_loss", f"held-out loss ({os.path.basename(t['text'])})")]
    if t.get("samples"):
        m.append(("sample_loss", "held-out loss (teacher samples)"))
    return m


def verdict(rows, tname, tr, metric="heldout_loss", what="held-out loss", runs=()):
    by = {g: r for r in rows if r["teacher"] == tname for g in r["groups"]}
    if not all(g in by for g in ("claim-full", "claim-half")):
        return None
    f, h = by["claim-full"], by["claim-half"]
    (fm, fs), (hm, hs) = f[metric], h[metric]
    d = hm - fm
    se = math.sqrt(fs ** 2 / f["n"] + hs ** 2 / h["n"])
    if d < -2 * se:
        word = ("better: the claim holds here (Mamba-3 at half the state beats the Mamba-2 "
                "student)")
    elif d <= 2 * se:
        word = ("indistinguishable within 2 standard errors: consistent with the claim "
                "(Mamba-3 at half the state matches the Mamba-2 student)")
    else:
        word = ("worse: the claim does not hold here (Mamba-3 at half the state loses to "
                "Mamba-2)")
    s = (f"**{tname}**: Mamba-3 SISO `{h['label']}` ({h['state_bytes']:,} B, "
         f"{h['state_bytes'] / f['state_bytes']:.2f}× the state) {what} "
         f"{fmt(hm, hs)} vs Mamba-2 `{f['label']}` ({f['state_bytes']:,} B) {fmt(fm, fs)}: "
         f"Δ = {d:+.3f} nats (2·SE {2 * se:.3f}, {h['n']} vs {f['n']} seeds) — {word}.")
    # the same seed gives every student the same training text: the paired differences
    by_seed = {}
    for r in runs:
        if r["teacher"] == tname and r["label"] in (f["label"], h["label"]):
            by_seed.setdefault(r["seed"], {})[r["label"]] = r[metric]
    pd = [v[h["label"]] - v[f["label"]] for _, v in sorted(by_seed.items()) if len(v) == 2]
    if pd:
        s += (f" Per seed (same training text for both): "
              f"{', '.join(f'{x:+.3f}' for x in pd)} — Mamba-3 half lower in "
              f"{sum(x < 0 for x in pd)} of {len(pd)} seeds.")
    if "claim-equal" in by:
        e = by["claim-equal"]
        s += (f" At equal state, Mamba-3 `{e['label']}` ({e['state_bytes']:,} B): "
              f"{fmt(*e[metric])} (Δ vs Mamba-2 {e[metric][0] - fm:+.3f}).")
    if "claim-llamba" in by:
        lb = by["claim-llamba"]
        s += (f" Beside them, Llamba `{lb['label']}` ({lb['state_bytes']:,} B): "
              f"{fmt(*lb[metric])} (Δ Mamba-3 half vs Llamba {hm - lb[metric][0]:+.3f}).")
    if metric == "heldout_loss" and f.get("kv_mean") and f["kv_mean"][0] is not None:
        s += (f" Retrieval (KV / MQAR, mean over pair counts): Mamba-3 half "
              f"{fmt(*h['kv_mean'])} / {fmt(*h['mqar_mean'])}, Mamba-2 {fmt(*f['kv_mean'])} / "
              f"{fmt(*f['mqar_mean'])}"
              + (f", Llamba {fmt(*by['claim-llamba']['kv_mean'])} / "
                 f"{fmt(*by['claim-llamba']['mqar_mean'])}" if "claim-llamba" in by else "")
              + f"; teacher {tr['kv_mean']:.3f} / {tr['mqar_mean']:.3f}.")
    return s, word.split(":")[0]


def markdown(res, rows):
    L = []
    for t in res["teachers"]:
        tr = t["teacher_metrics"]
        b = t["distill"]
        tot = b["stage1_tokens"] + b["stage2_tokens"] + b["stage3_tokens"]
        L.append(f"### {t['name']}\n")
        L.append(f"Budget per student: {tot:,} tokens (stages {b['stage1_tokens']:,} / "
                 f"{b['stage2_tokens']:,} / {b['stage3_tokens']:,}), --sample-tokens "
                 f"{b['sample_tokens']:,}, --seq {b['seq']} --batch {b['batch']}"
                 + (f", --kv-data-frac {b['kv_data_frac']}" if t["task"] else "")
                 + f"; seeds {', '.join(map(str, res['seeds']))}. Held-out loss: "
                 f"{os.path.basename(t['text'])}, windows of {t['window']} tokens.\n")
        kv = bool(t["task"])
        smp = bool(t.get("samples"))
        hdr = "| student | group | d_state | R | state B | held-out loss | Δ vs teacher |"
        sep = "|---|---|---:|---:|---:|---:|---:|"
        if smp:
            hdr += " loss on teacher samples | Δ vs teacher |"
            sep += "---:|---:|"
        if kv:
            hdr += f" KV acc | MQAR acc |"
            sep += "---:|---:|"
        di = t.get("decode_interleaved")
        hdr += " decode tok/s (per run) |" + (" decode tok/s (interleaved) |" if di else "")
        hdr += " distill s |"
        sep += "---:|---:|" + ("---:|" if di else "")
        L += [hdr, sep]
        line = (f"| teacher (Llama) | – | – | – | KV {tr['kv_bytes_per_token']:,} B/token "
                f"| {tr['heldout_loss']:.3f} | – |")
        if smp:
            line += f" {tr['sample_loss']:.3f} | – |"
        if kv:
            line += f" {tr['kv_mean']:.3f} | {tr['mqar_mean']:.3f} |"
        line += f" {tr['decode_tok_s']:,.0f} |"
        line += (f" {di['teacher']['median']:,.0f} |" if di else "") + " – |"
        L.append(line)
        for r in rows:
            if r["teacher"] != t["name"]:
                continue
            m, s = r["heldout_loss"]
            line = (f"| {r['kind']} | {', '.join(r['groups'])} | {r['d_state'] or '(hd)'} | "
                    f"{r['rank'] if r['kind'] == 'mamba3-mimo' else '–'} | "
                    f"{r['state_bytes']:,} | {fmt(m, s)} | {m - tr['heldout_loss']:+.3f} |")
            if smp:
                m2, s2 = r["sample_loss"]
                line += f" {fmt(m2, s2)} | {m2 - tr['sample_loss']:+.3f} |"
            if kv:
                line += f" {fmt(*r['kv_mean'])} | {fmt(*r['mqar_mean'])} |"
            dm, dsd = r["decode_tok_s"]
            line += f" {dm:,.0f} ± {dsd:,.0f} |"
            line += (f" {di[r['label']]['median']:,.0f} |" if di else "")
            line += f" {r['distill_seconds'][0]:.0f} |"
            L.append(line)
        if kv:
            L.append(f"\nKV / MQAR accuracy: mean over {t['pairs']} pairs, {t['examples']} "
                     f"prompts each (MQAR: {t['queries']} queries per prompt); chance 0.01. "
                     "Per number of pairs (mean over seeds):\n")
            ps = t["pairs"].split(",")
            L.append("| model | " + " | ".join(f"KV {p}" for p in ps) + " | "
                     + " | ".join(f"MQAR {p}" for p in ps) + " |")
            L.append("|---|" + "---:|" * (2 * len(ps)))
            L.append("| teacher | " + " | ".join(f"{tr['kv'][p]:.3f}" for p in ps) + " | "
                     + " | ".join(f"{tr['mqar'][p]:.3f}" for p in ps) + " |")
            for r in rows:
                if r["teacher"] != t["name"]:
                    continue
                runs = [x for x in res["runs"]
                        if x["teacher"] == t["name"] and x["label"] == r["label"]]
                cell = lambda task, p: f"{statistics.mean(x[task][p] for x in runs):.3f}"
                L.append(f"| {r['label']} | " + " | ".join(cell("kv", p) for p in ps) + " | "
                         + " | ".join(cell("mqar", p) for p in ps) + " |")
        if smp:
            sm = t["samples"]
            L.append(f"\nLoss on teacher samples: {sm['n']} samples of {sm['tokens']} tokens "
                     f"(`molt generate -t 1 --top-p 1 -s {sm['seed']}`; the distillations "
                     "sample their training text with seeds 1-3), one document each.")
        L.append("")
        for key, what in metrics_of(t):
            v = verdict(rows, t["name"], tr, key, what, res["runs"])
            if v:
                L.append("Mamba-3 claim (\"Mamba-2 quality at half the state\"), against the "
                         "Mamba-2 student (`--student mamba2`), by " + what + ": " + v[0] + "\n")
    L.append("Groups: `equal` = the equal-state comparison (every student matched to GateLoop's "
             "state, fixed by the head dim, within 10%); `claim-full` / `claim-half` / "
             "`claim-equal` / `claim-llamba` = Mamba-2, Mamba-3 SISO at half its state, Mamba-3 "
             "SISO at its state, Llamba at its state. "
             "Decode: `molt generate -n 256 -t 0 --threads 1`; per run: the median of the "
             "repeats right after each distillation, mean ± std over seeds; interleaved: the "
             "median over rounds in which every model of the teacher runs once in turn, so the "
             "machine's load falls on all alike.")
    return "\n".join(L) + "\n"


def svg(res, rows, path):
    # one panel per teacher and held-out set
    ps = [(t, key, what) for t in res["teachers"] if any(r["teacher"] == t["name"] for r in rows)
          for key, what in metrics_of(t)]
    PW, PH, pad = 430, 320, 72
    W, H = PW * len(ps) + 150, PH + 40
    o = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{H}' "
         "font-family='sans-serif' font-size='11'>",
         f"<rect width='{W}' height='{H}' fill='white'/>",
         f"<text x='10' y='18' font-size='13'>held-out loss vs recurrent state bytes per sequence "
         f"(mean ± std over seeds; dashed: teacher)</text>"]

    def marker(kind, x, y, cls):
        c, k = f"fill='{COLOR[kind]}' class='{cls}'", MARK[kind]
        if k == "circle":
            return f"<circle cx='{x:.1f}' cy='{y:.1f}' r='5' {c}/>"
        if k == "square":
            return f"<rect x='{x - 5:.1f}' y='{y - 5:.1f}' width='10' height='10' {c}/>"
        if k == "triangle":
            return (f"<polygon points='{x:.1f},{y - 6:.1f} {x - 6:.1f},{y + 5:.1f} "
                    f"{x + 6:.1f},{y + 5:.1f}' {c}/>")
        if k == "down":
            return (f"<polygon points='{x:.1f},{y + 6:.1f} {x - 6:.1f},{y - 5:.1f} "
                    f"{x + 6:.1f},{y - 5:.1f}' {c}/>")
        return (f"<polygon points='{x:.1f},{y - 6:.1f} {x + 6:.1f},{y:.1f} {x:.1f},{y + 6:.1f} "
                f"{x - 6:.1f},{y:.1f}' {c}/>")

    for i, (t, key, what) in enumerate(ps):
        ox, oy = i * PW, 30
        rs = [r for r in rows if r["teacher"] == t["name"]]
        tl = t["teacher_metrics"][key]
        xs = [math.log10(r["state_bytes"]) for r in rs]
        ys = [r[key][0] + s * r[key][1] for r in rs for s in (-1, 1)] + [tl]
        x0, x1 = min(xs) - 0.08, max(xs) + 0.08
        y0, y1 = min(ys), max(ys)
        y0, y1 = y0 - 0.08 * (y1 - y0 + 1e-3), y1 + 0.08 * (y1 - y0 + 1e-3)
        X = lambda b: ox + pad + (math.log10(b) - x0) / (x1 - x0) * (PW - pad - 20)
        Y = lambda v: oy + PH - pad + 10 - (v - y0) / (y1 - y0) * (PH - pad - 20)
        bx, by_, ty = ox + pad, oy + PH - pad + 10, oy + 10
        o.append(f"<text x='{ox + pad}' y='{oy + 4}' font-size='11'>{t['name']}: {what}</text>")
        o.append(f"<line x1='{bx}' y1='{by_}' x2='{ox + PW - 20}' y2='{by_}' stroke='#444'/>")
        o.append(f"<line x1='{bx}' y1='{ty}' x2='{bx}' y2='{by_}' stroke='#444'/>")
        for k in range(6):
            v = y0 + (y1 - y0) * k / 5
            o.append(f"<text x='{bx - 34}' y='{Y(v) + 4:.1f}'>{v:.2f}</text>"
                     f"<line x1='{bx - 3}' y1='{Y(v):.1f}' x2='{bx}' y2='{Y(v):.1f}' "
                     "stroke='#444'/>")
        ticks, last = [], None  # a tick per cluster of states (within 15%)
        for b in sorted({r["state_bytes"] for r in rs}):
            if last is None or b > 1.15 * last:
                ticks.append(b)
                last = b
        for b in ticks:
            o.append(f"<line x1='{X(b):.1f}' y1='{by_}' x2='{X(b):.1f}' y2='{by_ + 4}' "
                     f"stroke='#444'/><text x='{X(b) - 14:.1f}' y='{by_ + 16}' "
                     f"font-size='9'>{b / 1024:.1f} KiB</text>")
        o.append(f"<line x1='{bx}' y1='{Y(tl):.1f}' x2='{ox + PW - 20}' y2='{Y(tl):.1f}' "
                 "stroke='#888' stroke-dasharray='4 3'/>")
        o.append(f"<text x='{ox + PW / 2 - 60}' y='{by_ + 44}'>state bytes / sequence (log)"
                 "</text>")
        o.append(f"<text x='{ox + 12}' y='{oy + PH / 2}' transform='rotate(-90 {ox + 12} "
                 f"{oy + PH / 2})'>held-out loss (nats)</text>")
        lab, prev, right = {}, {}, {}  # labels: top down per tick cluster, >= 10 px apart,
        for r in rs:  # right of the cluster's rightmost marker
            cl = max(b for b in ticks if b <= r["state_bytes"])
            right[cl] = max(right.get(cl, 0), X(r["state_bytes"]))
        for r in sorted(rs, key=lambda r: -r[key][0]):
            cl = max(b for b in ticks if b <= r["state_bytes"])
            lab[r["label"]] = max(Y(r[key][0]) + 3, prev.get(cl, -1e9) + 10)
            prev[cl] = lab[r["label"]]
        for r in rs:
            m, s = r[key]
            x = X(r["state_bytes"])
            o.append(f"<line x1='{x:.1f}' y1='{Y(m - s):.1f}' x2='{x:.1f}' y2='{Y(m + s):.1f}' "
                     f"stroke='{COLOR[r['kind']]}'/>"
                     f"<line x1='{x - 4:.1f}' y1='{Y(m - s):.1f}' x2='{x + 4:.1f}' "
                     f"y2='{Y(m - s):.1f}' stroke='{COLOR[r['kind']]}'/>"
                     f"<line x1='{x - 4:.1f}' y1='{Y(m + s):.1f}' x2='{x + 4:.1f}' "
                     f"y2='{Y(m + s):.1f}' stroke='{COLOR[r['kind']]}'/>")
            o.append(marker(r["kind"], x, Y(m), "run"))
            cl = max(b for b in ticks if b <= r["state_bytes"])
            o.append(f"<text x='{right[cl] + 9:.1f}' y='{lab[r['label']]:.1f}' font-size='8'>"
                     f"{r['label']}</text>")
    lx = PW * len(ps) + 10
    for j, k in enumerate(KIND_ORDER):
        y = 60 + 20 * j
        o.append(marker(k, lx + 6, y, "legend") + f"<text x='{lx + 16}' y='{y + 4}'>{k}</text>")
    o.append("</svg>")
    open(path, "w").write("\n".join(o) + "\n")


# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true",
                    help="one seed, tiny budgets, stories260K only, two students")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs/reports/mixers"))
    ap.add_argument("--work", default="/tmp/molt-mixers")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--teachers", default="stories260K,kv-llama-2m")
    ap.add_argument("--molt", default=os.path.join(ROOT, "build/molt"))
    ap.add_argument("--reps", type=int, default=5, help="decode timing repeats (median)")
    ap.add_argument("--keep-models", action="store_true", help="keep the students' weights")
    ap.add_argument("--decode-rounds", type=int, default=9,
                    help="rounds of the interleaved decode pass (0: none)")
    ap.add_argument("--decode-only", action="store_true",
                    help="only run the interleaved decode pass on OUT/mixers.json's plan")
    ap.add_argument("--replot", action="store_true",
                    help="only rewrite mixers.md and the SVG from OUT/mixers.json")
    ap.add_argument("--rerun", action="append", default=[], metavar="KIND",
                    help="re-run this student kind's runs instead of reusing them (after a "
                         "change to that student)")
    ap.add_argument("--no-reuse", action="store_true",
                    help="do not take finished runs from the previous OUT/mixers.json")
    ap.add_argument("--verify", action="append", default=[], metavar="TEACHER:LABEL:SEED",
                    help="re-run this run of the previous OUT/mixers.json and compare")
    a = ap.parse_args()
    if a.replot or a.decode_only:
        res = json.load(open(os.path.join(a.out, "mixers.json")))
        if a.decode_only:
            os.makedirs(a.work, exist_ok=True)
            decode_pass(res, a)
        write(res, a.out)
        return
    seeds = [int(s) for s in a.seeds.split(",")]
    ts = [t for t in teachers(a.smoke) if t["name"] in a.teachers.split(",")]
    if a.smoke:
        seeds, a.reps = seeds[:1], 1
    prev, prev_teachers = {}, {}  # finished runs of the previous OUT/mixers.json, by key
    pj = os.path.join(a.out, "mixers.json")
    if not a.no_reuse and os.path.exists(pj):
        old = json.load(open(pj))
        if not old.get("smoke"):
            prev = {(r["teacher"], r["key"]): r for r in old["runs"]}
            prev_teachers = {t["name"]: t["teacher_metrics"] for t in old["teachers"]}
    verify = {tuple(v.rsplit(":", 2)) for v in a.verify}
    os.makedirs(a.out, exist_ok=True)
    os.makedirs(a.work, exist_ok=True)
    log = os.path.join(a.work, "molt.log")
    res = {"machine": machine(), "command": " ".join(sys.argv), "seeds": seeds,
           "smoke": a.smoke, "teachers": [], "runs": [], "reproduced": []}
    t_start = time.time()
    for t in ts:
        g = info(t["model"], a.molt)
        if t.get("samples"):
            t["samples_file"] = teacher_samples(t, a, log)
        cfgs = plan(g)
        if a.smoke:  # three students: Llamba, Mamba-2, Mamba-3 SISO at equal state
            cfgs = [c for c in cfgs if c["label"] in [x["label"] for x in cfgs[:3]]]
        print(f"{t['name']}: {len(cfgs)} students × {len(seeds)} seeds", flush=True)
        for c in cfgs:
            print(f"  {c['label']:<20} planned state {c['state_bytes_planned']:>8,} B "
                  f"groups {','.join(c['groups'])}", flush=True)
        tm = measure(t["model"], t, a, log, True)
        if t["name"] in prev_teachers:  # the teacher measured as before (not the timings)?
            pt = prev_teachers[t["name"]]
            same = {k: tm.get(k) == pt.get(k) for k in REPRO if k in pt}
            tm["same_as_previous"] = same
            print(f"  teacher metrics as in the previous mixers.json: {same}", flush=True)
        te = dict(name=t["name"], model=t["model"], text=t["text"], window=t["window"],
                  task=t["task"], distill=t["distill"], configs=cfgs, teacher_metrics=tm,
                  geometry={k: g[k] for k in ("n_layer", "n_head", "head_dim", "d_model")})
        for k in ("pairs", "queries", "examples", "samples", "samples_file"):
            if k in t:
                te[k] = t[k]
        res["teachers"].append(te)
        for seed in seeds:
            for c in cfgs:
                d = os.path.join(a.work, t["name"], c["label"], f"seed{seed}")
                done = os.path.join(d, "metrics.json")
                key = json.dumps([t["distill"], c["kind"], c["d_state"], c["rank"], seed,
                                  t["window"], t.get("max_tokens")]
                                 + ([t["samples"]] if t.get("samples") else []), sort_keys=True)
                r = None
                if os.path.exists(done):
                    r = json.load(open(done))
                    if r.get("key") != key:
                        r = None
                old = prev.get((t["name"], key))
                again = (t["name"], c["label"], str(seed)) in verify
                if again:
                    r = None
                if c["kind"] in a.rerun:
                    r, old = None, None
                if r is None and old is not None and not again:
                    r = dict(old, reused=True)
                if r is None:
                    dt, rep = distill(t, c, seed, d, a, log)
                    r = dict(teacher=t["name"], label=c["label"], kind=c["kind"],
                             d_state=c["d_state"], rank=c["rank"], groups=c["groups"],
                             seed=seed, key=key, distill_seconds=dt,
                             stages=[{k: s[k] for k in ("stage", "tokens", "first_loss",
                                                        "final_loss_mean_last10pct")}
                                     for s in rep["stages"]])
                    r.update(measure(d, t, a, log))
                    json.dump(r, open(done, "w"), indent=1)
                    if again and old is not None:
                        same = {k: r.get(k) == old.get(k) for k in REPRO if k in old}
                        res["reproduced"].append(dict(teacher=t["name"], label=c["label"],
                                                      seed=seed, same=same))
                        print(f"  verify {c['label']} seed {seed}: {same}", flush=True)
                    if not a.keep_models:
                        for f in os.listdir(d):
                            if f.endswith(".safetensors") or re.fullmatch(r"stage\d|ckpt.*", f):
                                p = os.path.join(d, f)
                                shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
                r["groups"] = c["groups"]  # the plan's groups (a reused run: as planned now)
                planned = c["state_bytes_planned"]
                if r["state_bytes"] != planned:
                    print(f"  WARNING {c['label']}: molt info says {r['state_bytes']} B, "
                          f"the plan {planned} B", flush=True)
                r["state_vs_gateloop"] = r["state_bytes"] / state_bytes("gateloop", g)
                res["runs"].append(r)
                extra = "".join(f" {k} {r[k]:.3f}" for k in ("kv_mean", "mqar_mean") if k in r)
                print(f"  seed {seed} {c['label']:<20} loss {r['heldout_loss']:.4f}{extra} "
                      f"decode {r['decode_tok_s']:.0f} tok/s state {r['state_bytes']:,} B "
                      f"({r['distill_seconds']:.0f} s) [{time.time() - t_start:.0f} s]",
                      flush=True)
        # the equal-state group must match within TOL
        eq = [r for r in res["runs"] if r["teacher"] == t["name"] and "equal" in r["groups"]]
        bad = [r["label"] for r in eq if abs(r["state_vs_gateloop"] - 1) > TOL]
        te["equal_state_mismatch"] = bad
        if bad:
            print(f"  WARNING: state not within 10% of GateLoop's: {bad}", flush=True)
    if a.decode_rounds > 0 and not a.smoke:
        decode_pass(res, a)
    res["seconds"] = time.time() - t_start  # this invocation (runs found in --work are reused)
    write(res, a.out)


def write(res, out):
    rows = summarize(res)
    res["summary"] = rows
    res["distill_seconds_total"] = sum(r["distill_seconds"] for r in res["runs"])
    res["claim"] = {}
    for t in res["teachers"]:
        for key, what in metrics_of(t):
            v = verdict(rows, t["name"], t["teacher_metrics"], key, what, res["runs"])
            if v:
                res["claim"][f"{t['name']} {key}"] = {"text": v[0], "verdict": v[1]}
    json.dump(res, open(os.path.join(out, "mixers.json"), "w"), indent=1)
    md = markdown(res, rows)
    open(os.path.join(out, "mixers.md"), "w").write(md)
    svg(res, rows, os.path.join(out, "loss_vs_state.svg"))
    print(md)
    print(f"wrote {out}/mixers.json, mixers.md, loss_vs_state.svg ({res['seconds']:.0f} s)")


def machine():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads_per_run": 1}


if __name__ == "__main__":
    main()
