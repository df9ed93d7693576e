#!/usr/bin/python3
"""report.py — issue 17's report from scripts/exp17/run.sh outputs.

  report.py --print OUT                      tables of one run (stdout)
  report.py [--gpu OUT_GPU] [--cpu OUT_CPU] [--notes FINDINGS.md] [-o docs/reports/reasoning.md]
                                             the report: method, commands, and per device the
                                             tables and plots (PNG with matplotlib, else SVG)

OUT is run.sh's output directory (json/*.json). A device without a directory, or a stage
without its JSON, is written as "not yet measured": nothing is invented. The claim checked:
under a fixed wall-clock budget per problem, the students' majority-vote accuracy and
coverage pass the teacher's (ALGORITHMS.md §10)."""
import json
import math
import os
import sys

MODELS = ["teacher", "llamba", "hybrid"]
LABEL = {"teacher": "teacher (Llama)", "llamba": "Llamba (pure)", "hybrid": "hybrid"}


def jload(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def jlines(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass
    except OSError:
        pass
    return out


class Run:
    """one run.sh output directory"""

    def __init__(self, out):
        self.out = out
        j = lambda n: os.path.join(out, "json", n)
        self.env = jload(j("env.json")) or {}
        self.cfg = self.env.get("config", {})
        self.stages = jlines(j("stages.jsonl"))
        self.teacher = jload(j("teacher_train.json"))
        self.distill = {m: jload(j("distill_%s.json" % m)) for m in ("llamba", "hybrid")}
        self.greedy = {m: jload(j("greedy_%s.json" % m)) for m in MODELS}
        self.single = {m: jload(j("single_%s.json" % m)) for m in MODELS}
        self.curve = {m: jload(j("curve_%s.json" % m)) for m in MODELS}
        self.tput = jlines(j("tput.jsonl"))
        self.device = self.cfg.get("DEVICE", "?")
        src = self.cfg.get("MODELS_FROM")  # the CPU half: the models were trained in that run
        if src and os.path.isdir(src):
            self.trained_in = src
            self.teacher = self.teacher or jload(os.path.join(src, "json", "teacher_train.json"))
            for m in ("llamba", "hybrid"):
                self.distill[m] = self.distill[m] or jload(os.path.join(src, "json", "distill_%s.json" % m))
            if not os.path.exists(os.path.join(out, "models", "teacher", "config.json")):
                self.out_models = src
        else:
            self.trained_in = None

    def params(self, m):
        if m == "teacher":
            c = jload(os.path.join(getattr(self, "out_models", self.out), "models", "teacher", "config.json"))
            if not c:
                return None
            d, L, ff, V = c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"], c["vocab_size"]
            hd, H, KV = c.get("head_dim", d // c["num_attention_heads"]), c["num_attention_heads"], c["num_key_value_heads"]
            return L * (d * hd * (2 * H + 2 * KV) + 3 * d * ff + 2 * d) + V * d + d
        r = self.distill.get(m)
        return r["student"]["params"] if r else None


def fmt(x, nd=3):
    if x is None:
        return "–"
    if isinstance(x, float):
        return ("%." + str(nd) + "f") % x
    return str(x)


def curve_at(run, t):
    """the curve's (voted, coverage) after the last batch finished by t seconds (None: none)"""
    best = None
    for p in run["curve"]:
        if p["seconds"] <= t + 1e-9:
            best = (p["voted_accuracy"], p["coverage"], p["samples"])
    return best


def budgets_of(runs):
    ts = sorted({round(p["seconds"], 3) for r in runs for p in r["curve"]})
    if not ts:
        return []
    lo, hi = ts[0], ts[-1]
    grid, t = [], 0.05
    while t < hi * 1.01:
        if t >= lo * 0.999:
            grid.append(t)
        t = t * 2 if t < 0.2 else t + (0.25 if t < 2 else 1.0)
        t = round(t, 3)
    return grid or ts


def tables(R, lines, plotdir=None, plotrel=None, tag=None):
    """markdown tables of one run into lines; plots into plotdir"""
    dev = R.device
    tag = tag or dev.replace(":", "")
    c = R.cfg
    lines.append("Run: %s; %s (%s cores); %s, git %s. Task: `molt mathgen --steps %s --digits %s`, "
                 "%s training problems, %s held-out.%s" % (
                     dev, ((R.env.get("cpu") if dev == "cpu" else R.env.get("gpu")) or "?").strip(), R.env.get("nproc", "?"),
                     R.env.get("molt_version", "?"), (R.env.get("git") or "?")[:10],
                     c.get("STEPS"), c.get("DIGITS"), c.get("N_TRAIN"), c.get("N_TEST"),
                     " Models trained in %s (the same bf16 files)." % R.trained_in if R.trained_in else ""))
    lines.append("")
    lines.append("Settings: teacher d %s, %s layers, %s heads of %s (%s KV), MLP %s; train seq %s x batch %s, "
                 "lr %s; distill seq %s x batch %s, d_state %s, Llamba %s, hybrid %s keeping layer(s) %s; "
                 "temperature %s, at most %s tokens per chain; greedy on %s problems, sampled k %s on %s; "
                 "curves: --budget %s s, up to %s problems, K ≤ %s (json/env.json has them all)." % (
                     c.get("D_MODEL"), c.get("N_LAYER"), c.get("N_HEAD"), c.get("HEAD_DIM"), c.get("N_KV"),
                     c.get("FF"), c.get("SEQ"), c.get("BATCH"), c.get("LR"), c.get("D_SEQ"), c.get("D_BATCH"),
                     c.get("D_STATE"), c.get("KD_LLAMBA"), c.get("KD_HYBRID"), c.get("HYBRID_LAYERS"),
                     c.get("TEMP"), c.get("MAX_TOKENS"), c.get("GREEDY_N"), c.get("SINGLE_K"),
                     c.get("SINGLE_N"), c.get("CURVE_BUDGET"), c.get("CURVE_N"), c.get("KMAX")))
    lines.append("")
    # stages
    if R.stages:
        lines.append("| stage | status | seconds | budget s | note |")
        lines.append("|---|---|---:|---:|---|")
        for s in R.stages:
            lines.append("| %s | %s | %.1f | %.0f | %s |" % (s["stage"], s["status"], s["seconds"],
                                                           s["budget_s"], s["note"].strip()))
        lines.append("")
    # models
    lines.append("| model | parameters | training | held-out loss (teacher / student) |")
    lines.append("|---|---:|---|---|")
    t = R.teacher
    lines.append("| %s | %s | %s | %s |" % (
        LABEL["teacher"], fmt(R.params("teacher")),
        "%d steps, %d tokens, %.0f s (%.0f tok/s)" % (t["steps"], t["tokens"], t["seconds"], t["tok_per_s"]) if t else "not yet measured",
        fmt(t.get("eval_loss"), 4) if t else "–"))
    for m in ("llamba", "hybrid"):
        r = R.distill.get(m)
        if r:
            toks = sum(s["tokens"] for s in r["stages"])
            secs = sum(s["seconds"] for s in r["stages"])
            ev = r.get("eval", {})
            lines.append("| %s | %s | MOHAWK %d tokens, %.0f s, kept heads %s | %s / %s |" % (
                LABEL[m], fmt(r["student"]["params"]), toks, secs,
                r["student"].get("kept_heads") or "none", fmt(ev.get("teacher_loss"), 4),
                fmt(ev.get("student_loss"), 4)))
        else:
            lines.append("| %s | – | not yet measured | – |" % LABEL[m])
    lines.append("")
    # single-sample accuracy
    lines.append("Single-sample accuracy on held-out problems (the same problems and sampler "
                 "settings for all three):")
    lines.append("")
    lines.append("| model | greedy accuracy (n) | sampled single-sample accuracy, t %s (problems x k) "
                 "| voted @k | coverage pass@k | answered |" % c.get("TEMP", "?"))
    lines.append("|---|---:|---:|---:|---:|---:|")
    for m in MODELS:
        g, s = R.greedy.get(m), R.single.get(m)
        gs = "%.3f (%d)" % (g["summary"]["single_sample_accuracy"], g["summary"]["problems"]) if g else "not yet measured"
        if s:
            ss = s["summary"]
            lines.append("| %s | %s | %.3f (%d x %d) | %.3f | %.3f | %.3f |" % (
                LABEL[m], gs, ss["single_sample_accuracy"], ss["problems"], s["k"],
                ss["voted_accuracy"], ss["coverage"], ss["answered"]))
        else:
            lines.append("| %s | %s | not yet measured | – | – | – |" % (LABEL[m], gs))
    lines.append("")
    # curves
    runs = {m: R.curve[m] for m in MODELS if R.curve.get(m)}
    if runs:
        lines.append("Majority-vote accuracy / coverage against wall-clock seconds per problem "
                     "(`molt reason -k K --budget %s`, %d problems; each model at its K):" % (
                         c.get("CURVE_BUDGET"), min(r["summary"]["problems"] for r in runs.values())))
        lines.append("")
        hdr = "| seconds | " + " | ".join("%s (k %d) voted / coverage" % (LABEL[m], runs[m]["k"]) for m in runs) + " |"
        lines.append(hdr)
        lines.append("|---:|" + "---:|" * len(runs))
        grid = budgets_of(list(runs.values()))
        wins = {m: [0, 0, 0] for m in runs if m != "teacher"}  # budgets: voted >, coverage >, both measured
        for tt in grid:
            row, vals = [], {}
            for m in runs:
                v = curve_at(runs[m], tt)
                vals[m] = v
                row.append("%.3f / %.3f" % (v[0], v[1]) if v else "–")
            lines.append("| %.2f | %s |" % (tt, " | ".join(row)))
            tv = vals.get("teacher")
            for m in wins:
                if tv and vals[m]:
                    wins[m][2] += 1
                    wins[m][0] += vals[m][0] > tv[0]
                    wins[m][1] += vals[m][1] > tv[1]
        lines.append("")
        if "teacher" in runs:
            for m, (wv, wc, n) in wins.items():
                lines.append("- %s vs teacher: voted accuracy higher at %d of %d budgets, coverage "
                             "higher at %d of %d (budgets where both have finished a batch)." % (
                                 LABEL[m], wv, n, wc, n))
            lines.append("")
        if plotdir:
            series_v = [(LABEL[m] + " k%d" % runs[m]["k"], [p["seconds"] for p in runs[m]["curve"]],
                         [p["voted_accuracy"] for p in runs[m]["curve"]]) for m in runs]
            series_c = [(LABEL[m] + " k%d" % runs[m]["k"], [p["seconds"] for p in runs[m]["curve"]],
                         [p["coverage"] for p in runs[m]["curve"]]) for m in runs]
            f1 = plot(plotdir, "curves_voted_%s" % tag, "majority-vote accuracy vs time (%s)" % dev,
                      "seconds per problem", "voted accuracy", series_v, ylim=(0, 1))
            f2 = plot(plotdir, "curves_coverage_%s" % tag, "coverage vs time (%s)" % dev,
                      "seconds per problem", "coverage (pass@n)", series_c, ylim=(0, 1))
            for f in (f1, f2):
                if f:
                    lines.append(image_line(f, plotrel))
            lines.append("")
    else:
        lines.append("Accuracy / coverage vs time: not yet measured.")
        lines.append("")
    # throughput
    tp = [r for r in R.tput]
    if tp:
        lens = sorted({r["len"] for r in tp})
        batches = sorted({r["batch"] for r in tp})
        lines.append("Decode throughput, tokens/s over all sequences (`molt generate -b B -n N "
                     "--ignore-eos`, %s threads); peak memory %s:" % (
                         tp[0].get("threads"), "on the GPU (nvidia-smi, MiB above the idle card)"
                         if any("gpu_mem_peak_mib" in r for r in tp) else "host RSS MiB"))
        lines.append("")
        lines.append("| tokens | batch | " + " | ".join("%s tok/s" % LABEL[m] for m in MODELS) +
                     " | Llamba / teacher | hybrid / teacher | " + " | ".join("%s MiB" % m for m in MODELS) + " |")
        lines.append("|---:|---:|" + "---:|" * (2 * len(MODELS) + 2))
        idx = {(r["model"], r["len"], r["batch"]): r for r in tp}
        for n in lens:
            for b in batches:
                rs = [idx.get((m, n, b)) for m in MODELS]
                if not any(rs):
                    continue
                tok = [r.get("tok_per_s") if r else None for r in rs]
                cell = [fmt(x, 0) if x is not None else
                        ("not done in %d s" % r["limit_s"] if r and r["status"] == "timeout" and r.get("limit_s")
                         else r["status"] if r else "–") for x, r in zip(tok, rs)]
                ratio = [("%.2fx" % (tok[i] / tok[0])) if tok[0] and tok[i] else "–" for i in (1, 2)]
                mem = [fmt(r.get("gpu_mem_delta_mib", r.get("host_rss_mib")), 0) if r else "–" for r in rs]
                lines.append("| %d | %d | %s | %s | %s |" % (n, b, " | ".join(cell), " | ".join(ratio), " | ".join(mem)))
        lines.append("")
        for m in MODELS:
            best = []
            for n in lens:
                ok = [r for r in tp if r["model"] == m and r["len"] == n and r.get("tok_per_s")]
                if ok:
                    r = max(ok, key=lambda r: r["tok_per_s"])
                    best.append("%d tokens: batch %d (%.0f tok/s)" % (n, r["batch"], r["tok_per_s"]))
            if best:
                lines.append("- %s fastest at %s." % (LABEL[m], "; ".join(best)))
        lines.append("")
        if plotdir:
            for n in lens:
                series = []
                for m in MODELS:
                    pts = sorted((r["batch"], r["tok_per_s"]) for r in tp if r["model"] == m and r["len"] == n and r.get("tok_per_s"))
                    if pts:
                        series.append((LABEL[m], [p[0] for p in pts], [p[1] for p in pts]))
                f = plot(plotdir, "tput_%s_n%d" % (tag, n), "decode tok/s vs batch, %d tokens (%s)" % (n, dev),
                         "batch", "tokens/s", series, logx=True, logy=True)
                if f:
                    lines.append(image_line(f, plotrel))
            lines.append("")
    else:
        lines.append("Throughput: not yet measured.")
        lines.append("")


def image_line(path, plotrel):
    """The markdown line showing the plot file `path`, linked relative to the report."""
    name = os.path.basename(path)
    return "![%s](%s)" % (name, os.path.join(plotrel, name))


# ------------------------------------------------------------------------------------------------
# plots: matplotlib PNG when it imports, else a small SVG

def plot(d, name, title, xl, yl, series, logx=False, logy=False, ylim=None):
    series = [s for s in series if s[1]]
    if not series:
        return None
    os.makedirs(d, exist_ok=True)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for label, xs, ys in series:
            ax.plot(xs, ys, marker="o", ms=3, label=label)
        if logx:
            ax.set_xscale("log", base=2)
        if logy:
            ax.set_yscale("log")
        if ylim:
            ax.set_ylim(*ylim)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = os.path.join(d, name + ".png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path
    except ImportError:
        path = os.path.join(d, name + ".svg")
        svg(path, title, xl, yl, series, logx, logy, ylim)
        return path


def svg(path, title, xl, yl, series, logx, logy, ylim):
    W, H, l, r, t, b = 650, 400, 80, 170, 36, 50
    tx = (lambda v: math.log2(v)) if logx else (lambda v: v)
    ty = (lambda v: math.log10(v)) if logy else (lambda v: v)
    xs = [tx(x) for _, X, _ in series for x in X]
    ys = [ty(y) for _, _, Y in series for y in Y if not (logy and y <= 0)]
    x0, x1 = min(xs), max(xs)
    y0, y1 = (ylim if ylim else (min(ys), max(ys)))
    if ylim and logy:
        y0, y1 = ty(ylim[0]), ty(ylim[1])
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    px = lambda v: l + (tx(v) - x0) / (x1 - x0) * (W - l - r)
    py = lambda v: H - b - (ty(v) - y0) / (y1 - y0) * (H - t - b)
    col = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
         'font-size="12"><rect width="100%%" height="100%%" fill="white"/>' % (W, H),
         '<text x="%d" y="20" font-size="14">%s</text>' % (l, title),
         '<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#444"/>' % (l, t, W - l - r, H - t - b)]
    for i in range(5):  # ticks
        fx, fy = x0 + (x1 - x0) * i / 4, y0 + (y1 - y0) * i / 4
        vx = 2 ** fx if logx else fx
        vy = 10 ** fy if logy else fy
        X = l + (W - l - r) * i / 4
        Y = H - b - (H - t - b) * i / 4
        o.append('<text x="%.0f" y="%d" text-anchor="middle">%s</text>' % (X, H - b + 16, "%.3g" % vx))
        o.append('<text x="%d" y="%.0f" text-anchor="end">%s</text>' % (l - 4, Y + 4, "%.3g" % vy))
        o.append('<line x1="%d" x2="%d" y1="%.0f" y2="%.0f" stroke="#ddd"/>' % (l, W - r, Y, Y))
    o.append('<text x="%d" y="%d" text-anchor="middle">%s</text>' % ((l + W - r) // 2, H - 12, xl))
    o.append('<text x="12" y="%d" transform="rotate(-90 12 %d)" text-anchor="middle">%s</text>' % (
        (t + H - b) // 2, (t + H - b) // 2, yl))
    for i, (label, X, Y) in enumerate(series):
        c = col[i % len(col)]
        pts = [(px(x), py(y)) for x, y in zip(X, Y) if not (logy and y <= 0)]
        o.append('<polyline fill="none" stroke="%s" stroke-width="1.8" points="%s"/>' % (
            c, " ".join("%.1f,%.1f" % p for p in pts)))
        for p in pts:
            o.append('<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>' % (p[0], p[1], c))
        o.append('<text x="%d" y="%d" fill="%s">%s</text>' % (W - r + 8, t + 16 + 18 * i, c, label))
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


# ------------------------------------------------------------------------------------------------

METHOD = """\
## Method

(Sizes, budgets and task difficulty are run.sh's environment knobs; each results section below
states its run's own settings, from its `json/env.json`.)

- **Task** (`molt mathgen --steps A-B --digits D`): arithmetic word and expression problems of
  A to B operations on D-digit numbers (+ and − of D-digit numbers, × and exact ÷ by 2..9),
  each solution one line per operation and `#### <answer>` (GSM8K's format). Train and
  held-out problems come from different splits of the same generator: the split is a hash of
  the question, so no held-out question is in the training corpus.
- **Tokenizer**: a byte-level BPE `tokenizer.json` without merges (every byte one token, so a
  digit is a token; ids 0 `<|bos|>`, 1 `<|eos|>`, 2 + byte), written by `run.sh`.
- **Teacher**: a Llama (MHA, vocab 320, tied embeddings), trained from scratch with
  `molt train` on the corpus (documents separated by `<|endoftext|>`, each starting with BOS),
  WSD schedule, for a wall-clock budget: a 12-step calibration run sizes `--steps`.
- **Students**: `molt distill` (MOHAWK: matrix orientation, hidden-state alignment,
  knowledge distillation; 10 / 20 / 70 % of the tokens) into a pure Llamba (Discrete Mamba-2
  mixers, forward-KL stage 3), and `molt hybridize` keeping every head of the middle layer
  as attention with reverse-KL stage 3 (the published hybrid recipe, ALGORITHMS.md §10), both
  on the training corpus, token budgets sized by a calibration run to a wall-clock budget.
  All three models are saved in bf16 and evaluated from those files, on the GPU and on the
  CPU alike.
- **Accuracy**: `molt reason` on held-out problems, prompt `Question: Q\\nAnswer:`, a chain
  stops at EOS/BOS, a blank line or `Question:`; the answer is the number after `####`.
  Greedy (`-k 1 -t 0`) and sampled (`-k 8 -t 0.7`: single-sample accuracy = mean fraction of
  correct samples) on the same problems for all three models.
- **Time budget**: `molt reason -k K --budget S -t 0.7`: per problem, batches of K chains until
  S seconds have passed; after each batch the majority vote and coverage (≥ 1 correct). K is
  the batch (≤ KMAX) at which the model decodes the most tokens/s in the 256-token sweep
  (`K_FIXED` overrides). The curve is the mean over problems of (seconds, voted, covered)
  after b batches; a model's first point is its first finished batch.
- **Throughput**: `molt generate -b B -n N --ignore-eos` (every sequence decodes exactly N
  tokens; tok/s = B·N / decode seconds) at N = 256 for B = 1, 4, 16, 64, 256, then long
  points N:B in the order listed in each run's stage table, as time allows, each run under a
  time limit (model load included): a run out of time is reported as such ("not done in
  L s"), and that model's points of larger N and B are skipped. Peak memory from `nvidia-smi`
  polled every 50 ms (GPU, MiB above the card before the run) and `/usr/bin/time` (host RSS).
"""

COMMANDS = """\
## Commands

Two device calls on one machine (the lead's checkout with `.gpu/` carried; the second within
the machine's 30 s warm window, so that the models the first trained are still there — a
27M-parameter teacher's three bf16 models are too large to come back from the device):

```
# 1. the GPU half (run: carry [".gpu"], timeout_s 600)
WALL_S=575 RUN_DIR=out/exp17g D_MODEL=512 N_LAYER=8 N_HEAD=8 FF=1536 STEPS=3-4 DIGITS=3 \\
  MAX_TOKENS=200 TRAIN_S=210 DISTILL_S=80 HYBRID_S=60 SINGLE_S=25 TPUT256_S=25 CURVES_S=90 \\
  TPUTLONG_S=30 KMAX=256 CURVE_N=20 CURVE_BUDGET=1.2 \\
  STAGES="data teacher llamba hybrid single tput256 curves tputlong" bash scripts/exp17/gpu.sh
# 2. the CPU half on the same models, the device host's 16 cores (same call shape)
CPU_ONLY=1 WALL_S=560 RUN_DIR=out/exp17g D_MODEL=512 N_LAYER=8 N_HEAD=8 FF=1536 STEPS=3-4 \\
  DIGITS=3 MAX_TOKENS=200 KMAX=256 CURVE_N=20 SINGLE_S=90 TPUT256_S=100 CURVES_S=200 \\
  TPUTLONG_S=120 CPU_CURVE_BUDGET=3 CPU_TPUT_RUN_S=25 CPU_TPUT_LONG_RUN_S=40 bash scripts/exp17/gpu.sh
# 3. the CPU curves again with a budget in which the teacher finishes batches of 256
#    (3 s was too short for it on the CPU), same machine
DEVICE=cpu MOLT=build/molt MODELS_FROM=out/exp17g OUT=out/exp17g-cpu TOTAL_S=520 THREADS=16 \\
  MATMUL=fp32 STAGES="data curves" CURVE_BUDGET=18 CURVE_N=7 CURVES_S=500 KMAX=256 STEPS=3-4 \\
  DIGITS=3 MAX_TOKENS=200 D_MODEL=512 N_LAYER=8 N_HEAD=8 FF=1536 bash scripts/exp17/run.sh
```

`gpu.sh` unpacks `.gpu/debs` into a sysroot (cjson, pcre2, OpenBLAS), builds `build-cuda/molt`
(and `build/molt` for the CPU half; `molt serve` stubbed out where libmicrohttpd is missing),
checks the GPU with a 16-token generate, then runs `scripts/exp17/run.sh` in what is left of
`WALL_S` (stage budgets scaled down to fit; a stage that ends early leaves its time to the
next). The JSON of the runs reported below is in `bench/results/exp17-run2/`; the report:

```
tar xzf bench/results/exp17-run2/gpu-json.tar.gz -C out/exp17g   # (mkdir -p first)
tar xzf bench/results/exp17-run2/cpu-json.tar.gz -C out/exp17g-cpu
/usr/bin/python3 scripts/exp17/report.py --gpu out/exp17g --cpu out/exp17g-cpu \\
  --notes scripts/exp17/findings.md -o docs/reports/reasoning.md
```

Where the models can come back (a teacher of about 9M parameters, run.sh's default sizes), the
CPU half can run on any machine instead: `bash scripts/exp17/gpu.sh` alone returns the models
as `models.tar.part-*`, then `DEVICE=cpu MODELS_FROM=DIR scripts/exp17/run.sh` here.
A one-minute smoke run of the whole pipeline on the CPU (the plumbing; nothing learns):
`TINY=1 OUT=/tmp/exp17-tiny scripts/exp17/run.sh`. Stages can be chosen
(`STAGES="single curves"`), and every budget and size is an environment variable (the
head of `run.sh` lists them).
"""


def write_report(gpu, cpu, out, notes=None):
    d = os.path.dirname(out) or "."
    plotdir = os.path.join(d, "reasoning")
    L = ["# Thinking slow, fast at small scale: many samples under a time budget (issue 17)", ""]
    measured = [(n, R) for n, R in (("GPU", gpu), ("CPU", cpu)) if R and R.stages]
    if not measured:
        L += ["**Status: not yet measured.** The method, the scripts and the commands are in place; "
              "the GPU run (`scripts/exp17/gpu.sh`) and the CPU half have not been run. No number "
              "below is a measurement until this line is gone.", ""]
    else:
        L += ["**Status:** measured on %s (generated by `scripts/exp17/report.py`)." %
              " and ".join(n for n, _ in measured), ""]
    L += ["The claim (ALGORITHMS.md §10, Paliotta et al. 2025): a distilled recurrent model is weaker "
          "per sample but cheaper per sample at large batch and long outputs, so under the same "
          "wall-clock budget its majority-vote accuracy and coverage can pass its Transformer "
          "teacher's. Tested here with a teacher trained from scratch on a generated arithmetic "
          "task, a pure Llamba student and a hybrid, on the GPU and on the CPU.", ""]
    if notes:
        with open(notes) as f:
            L += [f.read().rstrip("\n"), ""]
    L += [METHOD, COMMANDS]
    for name, R in (("GPU", gpu), ("CPU", cpu)):
        L.append("## Results: %s" % name)
        L.append("")
        if not R or not R.stages:
            L.append("Not yet measured.")
            L.append("")
            continue
        tables(R, L, plotdir, "reasoning", name.lower())
    L += ["## Caveats", "",
          "- On the CUDA backend batched decode runs `conv1d_causal_rows` and `ssd_step_rows` "
          "as one launch over all rows; per-step host work (row tables, logits copied out for "
          "host sampling) is still there, which limits every model at sizes like these.",
          "- The models are small (%s parameters, char-level) and briefly trained; the "
          "time-budget curves average over few problems (see each table's n): differences of a "
          "few points are within noise." % sizes(gpu, cpu),
          ""]
    with open(out, "w") as f:
        f.write("\n".join(L))
    print("report.py: wrote %s" % out, file=sys.stderr)


def sizes(*runs):
    """the teachers' sizes of the runs, e.g. 'about 27M'"""
    p = sorted({round(R.params("teacher") / 1e6) for R in runs if R and R.params("teacher")})
    return "about " + " / ".join("%dM" % x for x in p) if p else "a few million"


def main(argv):
    if len(argv) >= 3 and argv[1] == "--print":
        R = Run(argv[2])
        L = []
        tables(R, L)
        print("\n".join(L))
        return 0
    gpu = cpu = notes = None
    out = "docs/reports/reasoning.md"
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in ("--gpu", "--cpu", "-o", "--notes") and i + 1 < len(argv):
            if a == "--notes":
                notes = argv[i + 1]
            elif a == "--gpu":
                gpu = Run(argv[i + 1])
            elif a == "--cpu":
                cpu = Run(argv[i + 1])
            else:
                out = argv[i + 1]
            i += 2
        else:
            sys.exit(__doc__)
    write_report(gpu, cpu, out, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
