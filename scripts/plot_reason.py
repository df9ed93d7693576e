#!/usr/bin/env python3
"""plot_reason.py OUT.png RUN.json [RUN.json ...] — accuracy and coverage against wall-clock
time for several models, from `molt reason MODEL --data FILE -k K --budget S --json RUN.json`.

Each RUN.json holds a curve: after b batches of K samples per problem, the mean seconds per
problem, the mean samples, the majority-vote accuracy and the coverage (>= 1 right). The plot
has two panels (voted accuracy vs seconds, coverage vs seconds), one line per run, labelled
with the model's name (or LABEL=RUN.json to name it). It always prints a markdown table of
the curves and the single-sample accuracy; the plot needs matplotlib (Debian:
python3-matplotlib) and is skipped with a message without it."""
import json, os, sys


def load(arg):
    label, path = arg.split("=", 1) if "=" in arg and not os.path.exists(arg) else (None, arg)
    r = json.load(open(path))
    if label is None:
        label = os.path.basename(os.path.normpath(r.get("model", path)))
    return label, r


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    out, runs = argv[1], [load(a) for a in argv[2:]]
    for label, r in runs:
        s = r["summary"]
        print(f"\n### {label} (k {r['k']}, t {r['temperature']}, top-p {r['top_p']}, "
              f"{s['problems']} problems, {r.get('device', '?')})")
        print(f"single-sample accuracy {s['single_sample_accuracy']:.4f}, voted "
              f"{s['voted_accuracy']:.4f}, coverage {s['coverage']:.4f}, "
              f"{s['tok_per_s']:.1f} tok/s")
        print("\n| seconds | samples | voted accuracy | coverage |\n|---:|---:|---:|---:|")
        for p in r["curve"]:
            print(f"| {p['seconds']:.3f} | {p['samples']:.1f} | {p['voted_accuracy']:.4f} | "
                  f"{p['coverage']:.4f} |")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"\nplot_reason: matplotlib not found (apt-get install python3-matplotlib): "
              f"{out} not written", file=sys.stderr)
        return 0
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, r in runs:
        xs = [p["seconds"] for p in r["curve"]]
        ax[0].plot(xs, [p["voted_accuracy"] for p in r["curve"]], marker="o", ms=3, label=label)
        ax[1].plot(xs, [p["coverage"] for p in r["curve"]], marker="o", ms=3, label=label)
    for a, name in zip(ax, ("majority-vote accuracy", "coverage (pass@n)")):
        a.set_xlabel("seconds per problem")
        a.set_ylabel(name)
        a.set_ylim(0, 1)
        a.grid(alpha=0.3)
        a.legend()
    fig.suptitle("accuracy and coverage vs wall-clock time (molt reason --budget)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"\nplot_reason: wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
