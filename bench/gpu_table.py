#!/usr/bin/env python3
"""gpu_table.py — issue 12's table from the JSON lines of bench_gpu (molt) and peer_torch.py
(the PyTorch peer), as scripts/gpu_table_check.sh and `make bench` on a GPU machine write them:
one row per work (stage 3, teacher step, SSD alone, decode at each batch), molt against the
peer at the same weights precision, the ratio, device memory, and the issue's target.

    python3 bench/gpu_table.py out/gpu_table/table.jsonl [--json]

--json prints the rows as one JSON object per line instead of the table. Lines that are not
JSON objects are skipped; a work with only one side measured shows '—' for the other.
"""
import argparse
import json
import signal
import sys

# (bench name, label, target ratio or None, how the issue states the target)
WORKS = [
    ("mohawk_stage3_step", "MOHAWK stage-3 step", 1.5, "≥ 1.5×, less memory"),
    ("teacher_train_step", "teacher training step", 1.3, "≥ 1.3×"),
    ("ssd_scan_fwd_bwd", "SSD mixer fwd + bwd", 1.0, "≥ 1×"),
    ("decode", "Llamba-1B decode", None, "b1 ≥ 60% of HBM; b64 ≥ 30k tok/s"),
]


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(r, dict) and "bench" in r:
                rows.append(r)
    return rows


def engine(r):
    return "pytorch" if r.get("engine") == "pytorch" else "molt"


def memory(r):
    g = r.get("device_gb_used")
    return None if g is None else float(g)


def table(rows):
    out = []
    for bench, label, target, stated in WORKS:
        mine = [r for r in rows if r["bench"] == bench and engine(r) == "molt"]
        for m in mine:
            batch, weights = m.get("batch"), m.get("weights")
            peers = [p for p in rows if p["bench"] == bench and engine(p) == "pytorch"
                     and p.get("batch") == batch and (weights is None or p.get("weights") == weights)]
            p = peers[-1] if peers else None
            mt, pt = m.get("tokens_per_s"), p.get("tokens_per_s") if p else None
            ratio = mt / pt if mt and pt else None
            if bench == "decode":
                name = f"{label}, batch {batch} ({weights or 'f32'} weights"
                name += f", {m['state']} state)" if m.get("state", "f32") != "f32" else ")"
                ok = None
                share = m.get("of_copy_bw")
                if batch == 1 and share:  # of the measured copy bandwidth (bench_gpu's copy row)
                    ok = share >= 0.6
                    name += f", {100 * share:.0f}% of copy bw"
                if batch == 64 and mt:
                    ok = mt >= 30000
            else:
                name = label
                ok = None if ratio is None else ratio >= target
                if ok and bench == "mohawk_stage3_step":
                    # device memory in use on both sides (the peer's allocator peak when its
                    # line lacks it): like with like, CUDA context and library pools included
                    mg, pg = memory(m), memory(p) if memory(p) is not None else p.get("peak_gb")
                    ok = mg is not None and pg is not None and mg < pg
            out.append({"work": name, "molt_tok_s": mt, "peer_tok_s": pt, "ratio": ratio,
                        "molt_gb": memory(m), "peer_gb": memory(p) if p else None,
                        "peer_peak_gb": p.get("peak_gb") if p else None,
                        "target": stated, "meets": ok,
                        "device": (p or {}).get("device")})
    return out


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet under `| head`
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("jsonl")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    try:
        rows = load(a.jsonl)
    except OSError as e:
        print(f"gpu_table: cannot read {a.jsonl}: {e.strerror}", file=sys.stderr)
        return 1
    t = table(rows)
    if not t:
        print(f"gpu_table: no molt rows in {a.jsonl}", file=sys.stderr)
        return 1
    if a.json:
        for r in t:
            print(json.dumps(r))
        return 0
    print(f"{'work':<52} {'molt tok/s':>11} {'peer tok/s':>11} {'molt/peer':>9} "
          f"{'molt GB':>8} {'peer GB':>8}  target (met?)")
    for r in t:
        met = {True: "yes", False: "no", None: "—"}[r["meets"]]
        print(f"{r['work']:<52} {fmt(r['molt_tok_s'], ',.0f'):>11} {fmt(r['peer_tok_s'], ',.0f'):>11} "
              f"{fmt(r['ratio'], '.2f'):>9} {fmt(r['molt_gb'], '.1f'):>8} {fmt(r['peer_gb'], '.1f'):>8}"
              f"  {r['target']} ({met})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
