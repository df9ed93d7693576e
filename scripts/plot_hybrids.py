#!/usr/bin/env python3
"""plot_hybrids.py OUT_DIR — accuracy vs memory for the runs of
scripts/hybrid_experiments.sh: reads OUT_DIR/*/report.json and writes
OUT_DIR/accuracy_vs_memory.svg (x: bytes per sequence at 8k tokens of context,
log scale; y: key-value retrieval accuracy) and prints a markdown table.
Standard library only."""
import json, math, os, sys

out = sys.argv[1]
names = ["pure", "top1", "top2", "top4", "random2", "random4", "top2-ds2", "layer1"]
rows = []
for n in names:
    p = os.path.join(out, n, "report.json")
    if os.path.exists(p):
        rows.append((n, json.load(open(p))))
if not rows:
    sys.exit("no reports in " + out)
t = rows[0][1]
pts = [("teacher", t["bytes_per_sequence"]["teacher_kv_8k"], t["kv_retrieval"]["teacher"], "#000")]
for n, r in rows:
    col = "#c33" if n.startswith("top") else "#36c" if n.startswith("random") else "#393" if n == "layer1" else "#888"
    pts.append((n, r["bytes_per_sequence"]["student_8k"], r["kv_retrieval"]["student"], col))
W, H, pad = 560, 340, 60
xs = [math.log10(p[1]) for p in pts]
x0, x1 = min(xs) - 0.2, max(xs) + 0.2
y1 = max(0.05, max(p[2] for p in pts) * 1.15)
def X(b): return pad + (math.log10(b) - x0) / (x1 - x0) * (W - 2 * pad)
def Y(a): return H - pad - a / y1 * (H - 2 * pad)
svg = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{H}' font-family='sans-serif' font-size='11'>",
       f"<text x='{pad}' y='20' font-size='13'>retrieval accuracy (8 pairs) vs memory per sequence @8k tokens</text>",
       f"<line x1='{pad}' y1='{H-pad}' x2='{W-pad}' y2='{H-pad}' stroke='#444'/>",
       f"<line x1='{pad}' y1='{pad}' x2='{pad}' y2='{H-pad}' stroke='#444'/>"]
for e in range(math.ceil(x0), math.floor(x1) + 1):
    svg.append(f"<text x='{X(10**e)-12:.0f}' y='{H-pad+15}'>1e{e} B</text>")
for k in range(6):
    a = y1 * k / 5
    svg.append(f"<text x='{pad-35}' y='{Y(a)+4:.0f}'>{a:.2f}</text>")
for name, b, a, col in pts:
    svg.append(f"<circle cx='{X(b):.1f}' cy='{Y(a):.1f}' r='5' fill='{col}'/>"
               f"<text x='{X(b)+7:.1f}' y='{Y(a)-6:.1f}'>{name}</text>")
svg.append(f"<text x='{W/2-80}' y='{H-15}'>bytes per sequence @8k (log)</text></svg>")
open(os.path.join(out, "accuracy_vs_memory.svg"), "w").write("\n".join(svg))
print("| model | kept heads | d_state | KV retrieval (8 pairs) | held-out loss | bytes/seq @1k | @8k | @32k |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
b = t["bytes_per_sequence"]
print(f"| teacher | all 36 | – | {t['kv_retrieval']['teacher']:.3f} | {t['eval']['teacher_loss']:.3f} | {b['teacher_kv_1k']:,} | {b['teacher_kv_8k']:,} | {b['teacher_kv_32k']:,} |")
for n, r in rows:
    b = r["bytes_per_sequence"]
    kept = ", ".join(f"L{l}H{h}" for l, h in r["student"]["kept_heads"]) or "none"
    print(f"| {n} | {kept} | {r['student']['d_state']} | {r['kv_retrieval']['student']:.3f} | {r['eval']['student_loss']:.3f} | {b['student_1k']:,} | {b['student_8k']:,} | {b['student_32k']:,} |")
