"""The reward/FD trade-off: one point per method or KL weight (mean ± sd over seeds), from the
``runs.json`` files that ``scripts/reward_finetune.py`` writes.

    python scripts/tradeoff_plot.py sym/runs.json kl-0/runs.json ... -o docs/images/kl_tradeoff.png
"""

import argparse
import json
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="runs.json files")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    points = {}
    for path in args.runs:
        data = json.loads(open(path).read())
        for method, rows in data["results"].items():
            label = method if method in ("none", "gan") else f"{method}, kl {data['args']['kl_coef']:g}"
            points[label] = ([r["reward_end"] - r["reward_start"] for r in rows], [r["fd_end"] - r["fd_start"] for r in rows])
    figure, axis = plt.subplots(figsize=(6, 4.2))
    for label, (gains, costs) in sorted(points.items()):
        x, y = statistics.mean(costs), statistics.mean(gains)
        axis.errorbar(x, y, xerr=statistics.stdev(costs), yerr=statistics.stdev(gains), fmt="o", capsize=3,
                      color="black" if label in ("none", "gan") else None)
        axis.annotate(label, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    axis.set_xlabel("change of Fréchet distance (lower is better)")
    axis.set_ylabel("gain of mirror symmetry (higher is better)")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(args.output, dpi=110)
    print(json.dumps({label: [statistics.mean(g), statistics.mean(c)] for label, (g, c) in points.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
