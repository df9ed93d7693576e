#!/usr/bin/env python3
"""roofline.py — the side-by-side results of issue 15 as tables and a roofline figure.

usage: roofline.py RESULTS.jsonl [-o FIGURE.svg] [--bw GB/s]

RESULTS.jsonl holds molt's bench_decode lines (bench: decode / prefill / depth / batch, with an
"engine": "molt" key) and llama.cpp's llama-bench / llama-batched-bench jsonl lines (with
"engine": "llama.cpp", "model" and "weights" keys added), several rounds of each. Every number
printed is the median over the rounds. The figure (hand-written SVG: no plotting library needed)
puts each engine and precision's batch-1 decode of each model at (bytes read per token, tokens/s)
on log axes, under the roofline tokens/s = bandwidth / bytes: a point on the line reads its bytes
at the full measured bandwidth. llama.cpp's bytes per token are its model size plus what molt
counts besides the weight matrices for the same model (the KV cache at the mean position, the
recurrent state read and written, one embedding row), so both engines are charged the same traffic
beyond their weights. llama.cpp's llama-bench rows were run with more than one setting (OpenMP
wait policy passive / active, flash attention off / on at depth): each cell shows the setting with
the best median.
"""
import json
import math
import re
import statistics
import sys
from collections import defaultdict

PRECS = ["f32", "bf16", "q8_0"]


def load(path):
    rows = []
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            rows.append(json.loads(line))
    return rows


def med(xs):
    return statistics.median(xs) if xs else None


def collect(rows):
    """cells[(measure, model, engine, weights)] = [tok/s ...]; bytes[(model, engine, weights)]"""
    cells = defaultdict(list)
    nbytes = defaultdict(list)
    extra = defaultdict(list)  # model -> molt's non-matrix bytes per token
    best = defaultdict(lambda: defaultdict(list))
    bw = []
    for r in rows:
        eng = r.get("engine")
        if r.get("bench") == "bandwidth":
            bw.append(max(r.get("gb_s_4k", 0), r.get("gb_s_huge", 0)))
        if eng == "molt":
            b, m, w = r["bench"], r["model"], r["weights"]
            if b == "decode":
                cells[("decode", m, eng, w)].append(r["tok_per_s"])
                nbytes[(m, eng, w)].append(r["bytes_per_tok"])
                extra[m].append(r["bytes_per_tok"] - r["weight_bytes"])
            elif b == "prefill":
                cells[(f"prefill {r['tokens']}", m, eng, w)].append(r["tok_per_s"])
            elif b == "depth":
                # llama.cpp's cache is f16: molt's f16-KV rows are the same-precision cells,
                # its f32-KV rows a molt-only measure
                kv = r.get("kv", "f32")
                meas = f"decode at depth {r['context']}" + ("" if kv == "f16" else ", f32 KV")
                cells[(meas, m, eng, w)].append(r["tok_per_s"])
            elif b == "batch":
                st = r.get("state", "f32")
                meas = f"batched decode, {r['batch']} seq" + ("" if st == "f32" else f", {st} state")
                cells[(meas, m, eng, w)].append(r["tok_per_s"])
        elif eng == "llama.cpp":
            m, w = r["model"], r["weights"]
            if r.get("bench") == "llama-bench":
                npp, ng, nd = r["n_prompt"], r["n_gen"], r.get("n_depth", 0)
                # per setting (OpenMP wait policy, flash attention): the best median is kept
                setting = (r.get("omp", "passive"), r.get("flash_attn"))
                if ng > 0 and npp == 0 and nd == 0:
                    best[("decode", m, eng, w)][setting].append(r["avg_ts"])
                    nbytes[(m, eng, w)].append(r["model_size"])
                elif ng > 0 and npp == 0:
                    # (f16 KV: the widest cache this llama-bench takes)
                    best[(f"decode at depth {nd}", m, eng, w)][setting].append(r["avg_ts"])
                elif npp > 0 and ng == 0:
                    best[(f"prefill {npp}", m, eng, w)][setting].append(r["avg_ts"])
            elif r.get("bench") == "batched-bench":
                cells[(f"batched decode, {r['pl']} seq", m, eng, w)].append(r["speed_tg"])
    for key, by_setting in best.items():
        cells[key] = [max(med(v) for v in by_setting.values())]
    for (m, eng, w), v in list(nbytes.items()):  # llama.cpp: model size + molt's other traffic
        if eng == "llama.cpp" and extra.get(m):
            nbytes[(m, eng, w)] = [x + med(extra[m]) for x in v]
    return cells, nbytes, (med(bw) if bw else None)


def fmt(x):
    if x is None:
        return "—"
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def tables(cells):
    models = []
    for (_, m, _, _) in cells:
        if m not in models:
            models.append(m)
    measures = []
    for (meas, _, _, _) in cells:
        if meas not in measures:
            measures.append(meas)
    order = lambda s: (0 if s == "decode" else 1 if s.startswith("prefill") else
                       2 if s.startswith("decode at") else 3,
                       int(re.search(r"\d+", s).group()) if re.search(r"\d+", s) else 0, s)
    measures.sort(key=order)
    head = "| model · measure (tok/s) | " + " | ".join(
        f"molt {p} | llama.cpp {p}" for p in PRECS) + " | molt ≥ llama.cpp (same precision) |"
    print(head)
    print("|---|" + "---:|" * (2 * len(PRECS)) + "---|")
    for m in models:
        for meas in measures:
            vals = []
            verdict = []
            any_val = False
            for p in PRECS:
                a = med(cells.get((meas, m, "molt", p), []))
                b = med(cells.get((meas, m, "llama.cpp", p), []))
                any_val |= a is not None or b is not None
                vals += [fmt(a), fmt(b)]
                if a is not None and b is not None:
                    verdict.append(f"{p} {'yes' if a >= b else 'no'} ({a / b:.2f}×)")
            if any_val:
                print(f"| {m} · {meas} | " + " | ".join(vals) + " | " + ", ".join(verdict) + " |")


def svg(cells, nbytes, bw, out, min_bytes=5e7):
    W, H, L, R, T, B = 900, 560, 80, 120, 40, 60
    pts = []
    for (meas, m, eng, w), v in cells.items():
        if meas != "decode" or not nbytes.get((m, eng, w)):
            continue
        if med(nbytes[(m, eng, w)]) < min_bytes:  # the small models are overhead-bound
            continue
        pts.append((med(nbytes[(m, eng, w)]), med(v), m, eng, w))
    if not pts:
        return
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    x0, x1 = 10 ** math.floor(math.log10(min(xs))), 10 ** math.ceil(math.log10(max(xs)))
    y0, y1 = 10 ** math.floor(math.log10(min(ys))), 10 ** math.ceil(math.log10(max(ys)))
    if bw:
        y1 = max(y1, 10 ** math.ceil(math.log10(bw * 1e9 / x1)))
    px = lambda x: L + (math.log10(x) - math.log10(x0)) / (math.log10(x1) - math.log10(x0)) * (W - L - R)
    py = lambda y: H - B - (math.log10(y) - math.log10(y0)) / (math.log10(y1) - math.log10(y0)) * (H - T - B)
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{L}" y="22" font-size="14">Batch-1 decode of the 110M Llama and 115M Mamba-2: bytes read per token vs tokens/s (2 threads)</text>']
    for e in range(int(math.log10(x0)), int(math.log10(x1)) + 1):
        x = px(10 ** e)
        o.append(f'<line x1="{x:.1f}" y1="{T}" x2="{x:.1f}" y2="{H - B}" stroke="#ddd"/>')
        o.append(f'<text x="{x:.1f}" y="{H - B + 16}" text-anchor="middle">1e{e}</text>')
    for e in range(int(math.log10(y0)), int(math.log10(y1)) + 1):
        y = py(10 ** e)
        o.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">{10 ** e:g}</text>')
    o.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="#444"/>')
    o.append(f'<text x="{(L + W - R) / 2}" y="{H - 18}" text-anchor="middle">bytes read per token</text>')
    o.append(f'<text transform="translate(20,{(T + H - B) / 2}) rotate(-90)" text-anchor="middle">tokens/s</text>')
    if bw:  # the roof: tok/s = bw / bytes, clipped to the plot
        xa = max(x0, bw * 1e9 / y1)
        xb = min(x1, bw * 1e9 / y0)
        o.append(f'<line x1="{px(xa):.1f}" y1="{py(bw * 1e9 / xa):.1f}" x2="{px(xb):.1f}" '
                 f'y2="{py(bw * 1e9 / xb):.1f}" stroke="#c00" stroke-dasharray="6,4"/>')
        o.append(f'<text x="{px(xa) + 6:.1f}" y="{py(bw * 1e9 / xa) + 14:.1f}" '
                 f'fill="#c00">roof: {bw:.0f} GB/s (measured read bandwidth) / bytes</text>')
    color = {"molt": "#1f5fbf", "llama.cpp": "#e07000"}
    for x, y, m, eng, w in pts:
        cx, cy = px(x), py(y)
        c = color.get(eng, "#333")
        if w == "f32":
            o.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{c}"/>')
        elif w == "bf16":
            o.append(f'<rect x="{cx - 5:.1f}" y="{cy - 5:.1f}" width="10" height="10" fill="{c}"/>')
        else:
            o.append(f'<path d="M{cx:.1f},{cy - 6:.1f} L{cx + 6:.1f},{cy + 5:.1f} L{cx - 6:.1f},{cy + 5:.1f} Z" fill="{c}"/>')
        left = eng == "llama.cpp"  # labels: llama.cpp's to the left, molt's to the right
        o.append(f'<text x="{cx + (-8 if left else 8):.1f}" y="{cy + 4:.1f}" font-size="10" '
                 f'fill="{c}" text-anchor="{"end" if left else "start"}">{m} {w} '
                 f'{y:.0f}</text>')
    lx, ly = W - R + 14, T + 10
    for i, (lab, c) in enumerate(color.items()):
        o.append(f'<circle cx="{lx}" cy="{ly + 16 * i}" r="5" fill="{c}"/><text x="{lx + 10}" y="{ly + 4 + 16 * i}">{lab}</text>')
    ly += 44
    o.append(f'<circle cx="{lx}" cy="{ly}" r="5" fill="#666"/><text x="{lx + 10}" y="{ly + 4}">f32</text>')
    o.append(f'<rect x="{lx - 5}" y="{ly + 11}" width="10" height="10" fill="#666"/><text x="{lx + 10}" y="{ly + 20}">bf16</text>')
    o.append(f'<path d="M{lx},{ly + 26} L{lx + 6},{ly + 37} L{lx - 6},{ly + 37} Z" fill="#666"/><text x="{lx + 10}" y="{ly + 36}">q8_0</text>')
    o.append("</svg>")
    open(out, "w").write("\n".join(o) + "\n")


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    out, bw = None, None
    paths = []
    i = 0
    while i < len(args):
        if args[i] == "-o":
            out = args[i + 1]
            i += 2
        elif args[i] == "--bw":
            bw = float(args[i + 1])
            i += 2
        else:
            paths.append(args[i])
            i += 1
    rows = [r for p in paths for r in load(p)]
    cells, nbytes, mbw = collect(rows)
    tables(cells)
    if out:
        svg(cells, nbytes, bw or mbw, out)


if __name__ == "__main__":
    main()
