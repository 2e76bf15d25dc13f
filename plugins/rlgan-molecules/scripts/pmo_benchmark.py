"""PMO's benchmark with this plugin: every task × seed × strategy under the 10,000-call budget.

    python scripts/pmo_benchmark.py --out runs/pmo                      # run what is missing, then report
    python scripts/pmo_benchmark.py --out runs/pmo --seeds 0 --jobs 2   # one seed first
    python scripts/pmo_benchmark.py --out runs/pmo --report-only --results ../../docs/results.md

Each run is ``rlgan train configs/STRATEGY.toml`` with the task as its only reward, in
``OUT/STRATEGY/TASK/seed-K``, one thread each, ``--jobs`` at a time (seed by seed, so a stopped
benchmark has whole seeds).  A run with a ``summary.json`` is skipped; a stopped one is continued
from its last checkpoint.  The report is the per-task AUC top-10 (mean ± sd over seeds) beside
PMO's published REINVENT and Graph GA columns, the sums, the time split of the runs, and a picture
of the top-10 curves; with ``--results`` it replaces the part of that Markdown file between
``<!-- pmo-table -->`` and ``<!-- /pmo-table -->``.
"""

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))  # run from a checkout, installed or not

from rlgan_molecules.oracles import PMO_TASKS  # noqa: E402

# AUC top-10, mean over PMO's 5 seeds (Gao et al. 2022, leaderboard sheet): REINVENT, Graph GA
PUBLISHED = {
    "albuterol_similarity": (0.883, 0.839), "amlodipine_mpo": (0.635, 0.661), "celecoxib_rediscovery": (0.714, 0.630),
    "deco_hop": (0.667, 0.619), "fexofenadine_mpo": (0.785, 0.761), "isomers_c7h8n2o2": (0.852, 0.862),
    "isomers_c9h10n2o2pf2cl": (0.643, 0.719), "median1": (0.357, 0.295), "median2": (0.277, 0.274),
    "mestranol_similarity": (0.619, 0.579), "osimertinib_mpo": (0.837, 0.832), "perindopril_mpo": (0.537, 0.539),
    "qed": (0.941, 0.940), "ranolazine_mpo": (0.760, 0.728), "scaffold_hop": (0.560, 0.518),
    "sitagliptin_mpo": (0.022, 0.433), "thiothixene_rediscovery": (0.534, 0.479),
    "troglitazone_rediscovery": (0.441, 0.390), "valsartan_smarts": (0.179, 0.000), "zaleplon_mpo": (0.358, 0.347),
}
RANDOM_SCREENING_SUM = 7.413
MARKERS = ("<!-- pmo-table -->", "<!-- /pmo-table -->")


def run_config(strategy: str, task: str, calls: int) -> str:
    """The strategy's shipped config with ``task`` as its only reward and the budget set."""
    text = (HERE / "configs" / f"{strategy}.toml").read_text()
    text, rewards = re.subn(r"^\[rewards\.[^\]]+\]$", f"[rewards.{task}]", text, flags=re.M)
    if rewards != 1:
        raise SystemExit(f"configs/{strategy}.toml must have exactly one [rewards.NAME] table")
    text = re.sub(r"^max_oracle_calls = .*$", f"max_oracle_calls = {calls}", text, flags=re.M)
    return text + "\n[logging]\nprogress = false\ntensorboard = false\n"


def run_one(out: Path, strategy: str, task: str, seed: int, calls: int) -> dict:
    folder = out / strategy / task / f"seed-{seed}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    config = folder.parent / "config.toml"
    config.write_text(run_config(strategy, task, calls))
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "rlgan_core", "train", str(config), "--run-dir", str(folder), "--seed", str(seed)]
    started = time.time()
    with open(folder.parent / f"seed-{seed}.log", "a") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
    if result.returncode != 0 or not (folder / "summary.json").exists():
        raise RuntimeError(f"{strategy} {task} seed {seed} failed (exit {result.returncode}); see {folder.parent}/seed-{seed}.log")
    summary = json.loads((folder / "summary.json").read_text())
    summary["wall_seconds"] = time.time() - started
    return summary


def run_missing(args) -> None:
    jobs = [(strategy, task, seed) for seed in args.seeds for task in args.tasks for strategy in args.strategies
            if not (args.out / strategy / task / f"seed-{seed}" / "summary.json").exists()]
    print(f"{len(jobs)} runs to do, {args.jobs} at a time", flush=True)
    failures = 0
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(run_one, args.out, *job, args.calls): job for job in jobs}
        for done, future in enumerate(as_completed(futures), 1):
            strategy, task, seed = futures[future]
            try:
                summary = future.result()
            except RuntimeError as error:
                failures += 1
                print(f"[{done}/{len(jobs)}] {error}", flush=True)
                continue
            print(f"[{done}/{len(jobs)}] {strategy:14s} {task:26s} seed {seed}: AUC top-10 {summary['auc_top10']:.3f}, "
                  f"{summary['oracle_calls']} calls in {summary['wall_seconds']:.0f} s", flush=True)
    if failures:
        raise SystemExit(f"{failures} runs failed")


def finished(out: Path, strategy: str, task: str, seeds: list[int], name: str = "summary.json") -> list[Path]:
    """The files ``name`` of the finished runs of ``strategy`` on ``task`` among ``seeds``."""
    return [path for seed in seeds if (path := out / strategy / task / f"seed-{seed}" / name).is_file()
            and (path.parent / "summary.json").is_file()]


def summaries(out: Path, strategy: str, task: str, seeds: list[int]) -> list[dict]:
    return [json.loads(path.read_text()) for path in finished(out, strategy, task, seeds)]


def cell(values: list[float]) -> str:
    if not values:
        return "–"
    spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.3f}{spread}"


def report(args) -> str:
    columns = [s for s in args.strategies if any(summaries(args.out, s, t, args.seeds) for t in args.tasks)]
    header = "| task | REINVENT (PMO) | Graph GA (PMO) | " + " | ".join(f"`{s}`" for s in columns) + " |"
    lines = [header, "|" + "---|" * (3 + len(columns))]
    sums = {s: 0.0 for s in columns}
    seeds = {s: set() for s in columns}
    for task in args.tasks:
        row = [f"`{task}`", f"{PUBLISHED[task][0]:.3f}", f"{PUBLISHED[task][1]:.3f}"] if task in PUBLISHED else [f"`{task}`", "", ""]
        for strategy in columns:
            values = [s["auc_top10"] for s in summaries(args.out, strategy, task, args.seeds)]
            seeds[strategy].add(len(values))
            sums[strategy] += statistics.mean(values) if values else 0.0
            row.append(cell(values))
        lines.append("| " + " | ".join(row) + " |")
    published = [sum(PUBLISHED[t][i] for t in args.tasks if t in PUBLISHED) for i in (0, 1)]
    lines.append("| **sum** | **" + f"{published[0]:.3f}** | **{published[1]:.3f}** | "
                 + " | ".join(f"**{sums[s]:.3f}**" for s in columns) + " |")
    lines.append("")
    lines.append(f"Seeds per task: " + ", ".join(f"`{s}` {'/'.join(map(str, sorted(seeds[s])))}" for s in columns)
                 + f". PMO's random ZINC screening sums to {RANDOM_SCREENING_SUM} on these 20 tasks.")
    for strategy in columns:
        runs = [s for t in args.tasks for s in summaries(args.out, strategy, t, args.seeds)]
        split = {key: statistics.mean(r["seconds"][key] for r in runs) for key in runs[0]["seconds"]}
        total = statistics.mean(r["wall_time_s"] for r in runs)
        calls = statistics.mean(r["oracle_calls"] for r in runs)
        lines.append(f"`{strategy}`: {len(runs)} runs, {calls:.0f} calls and {total:.0f} s a run on one core on average "
                     f"(" + ", ".join(f"{key} {value:.0f} s" for key, value in split.items()) + ").")
    if args.curves:
        draw_curves(args, columns)
        lines.append("")
        where = os.path.relpath(args.curves, args.results.parent) if args.results else args.curves.name
        lines.append(f"![top-10 curves]({where})")
    return "\n".join(lines)


def top10_curve(scored: Path, calls: int) -> list[float]:
    """The mean of the best 10 scores after each 100 calls, padded with the last value."""
    import heapq

    best, curve = [], []
    with open(scored) as handle:
        for row in csv.DictReader(handle):
            value = float(row["score"])
            (heapq.heappush if len(best) < 10 else heapq.heappushpop)(best, value)
            if int(row["call"]) % 100 == 0:
                curve.append(sum(best) / len(best))
    return (curve + [curve[-1] if curve else 0.0] * (calls // 100))[: calls // 100]


def draw_curves(args, columns: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(4, 5, figsize=(20, 14), sharex=True)
    for axis, task in zip(axes.flat, args.tasks):
        for strategy in columns:
            curves = [top10_curve(path, args.calls) for path in finished(args.out, strategy, task, args.seeds, "scored.csv")]
            if curves:
                mean = [statistics.mean(point) for point in zip(*curves)]
                axis.plot([100 * (i + 1) for i in range(len(mean))], mean, label=strategy)
        axis.set_title(task, fontsize=10)
        axis.set_ylim(0, 1)
    axes.flat[0].legend()
    for axis in axes[-1]:
        axis.set_xlabel("oracle calls")
    figure.suptitle("Mean of the best 10 scores against oracle calls (mean over seeds)")
    figure.tight_layout()
    figure.savefig(args.curves, dpi=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder of the runs")
    parser.add_argument("--strategies", nargs="+", default=["reinvent", "prior_sampling"])
    parser.add_argument("--tasks", nargs="+", default=list(PMO_TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 5])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--report-only", action="store_true", help="only write the report (of the finished runs of --seeds)")
    parser.add_argument("--results", type=Path, help="Markdown file whose marked part gets the report")
    parser.add_argument("--curves", type=Path, help="PNG of the top-10 curves")
    args = parser.parse_args()
    unknown = sorted(set(args.tasks) - set(PMO_TASKS))
    if unknown:
        print(f"note: {unknown} are not PMO tasks; they run if a reward of that name is installed", flush=True)
    if not args.report_only:
        run_missing(args)
    text = report(args)
    if args.results:
        page = args.results.read_text()
        start, end = page.find(MARKERS[0]), page.find(MARKERS[1])
        if start < 0 or end < start:
            raise SystemExit(f"{args.results} has no {MARKERS[0]} ... {MARKERS[1]} part")
        args.results.write_text(page[: start + len(MARKERS[0])] + "\n" + text + "\n" + page[end:])
    print(text)


if __name__ == "__main__":
    main()
