"""PacGAN's 2-D mixture benchmark in our harness: modes covered and high-quality share, per row and layout.

    python scripts/mode_coverage.py --out docs/results/modes            # 10 seeds, every row, both layouts
    python scripts/mode_coverage.py --out /tmp/m --rows gan --layouts ring --seeds 0 1 --steps 500

The protocol of the PacGAN paper (Lin et al. 2018, Table 1): the 25-mode grid (means
{-4,-2,0,2,4}^2, std 0.05) and the 8-mode ring (radius 1, std 0.01), 100,000 training points, its
architecture (generator: 4 x 400 ReLU + batch norm, 2-D latents; discriminator: 3 maxout layers of
200 units x 5 pieces), Adam with beta1 = 0.8, batch 100; a sample is high quality within 3 std of
its nearest mode, a mode is covered when it is the nearest mode of at least one high-quality
sample, 2,500 samples per trained model (``rlgan_core.metrics.mode_statistics``).  The paper
trains for 400 epochs (400,000 steps); every row here uses one shorter schedule (``--steps`` at
``--lr``, falling linearly to 0), the same for all.  Rows:

- ``gan``: the plain non-saturating GAN (every sample weighs the same: temperature 0);
- ``pacgan2``, ``pacgan4``: the same with the discriminator judging packs of 2 or 4 samples;
- ``rlgan``: the plain GAN with the quality options of the default digits run: the R1 penalty on
  the discriminator (``r1 = 1``) and samples from the generator's weight average
  (``ema_decay = 0.99``).

Runs go two at a time, one thread each.  Writes ``OUT/table.md`` (mean ± standard error over the
seeds), ``OUT/runs.json`` (every number) and ``OUT/ROW-LAYOUT.png`` (the first seed's samples).
"""

import argparse
import json
import math
import os
import shutil
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from reward_finetune import train

LAYOUTS = {
    "grid": {"name": "gaussians", "layout": "grid", "std": 0.05},
    "ring": {"name": "gaussians", "layout": "ring", "radius": 1.0, "std": 0.01},
}
PACGAN_GENERATOR = {"name": "mlp_generator", "latent_dim": 2, "hidden": [400, 400, 400, 400], "output": "linear",
                    "activation": "relu", "batch_norm": True}
PACGAN_DISCRIMINATOR = {"name": "maxout_discriminator", "hidden": [200, 200, 200], "pieces": 5}
SCHEDULE = {"name": "gan", "lr_decay": "linear"}  # every row: the rates fall linearly to 0 over the run
PLAIN = {"strategy": SCHEDULE, "loss": {"temperature": 0.0}}
ROWS = {
    "gan": PLAIN,
    "pacgan2": {**PLAIN, "discriminator": {**PACGAN_DISCRIMINATOR, "pack": 2}},
    "pacgan4": {**PLAIN, "discriminator": {**PACGAN_DISCRIMINATOR, "pack": 4}},
    "rlgan": {**PLAIN, "strategy": {**SCHEDULE, "r1": 1.0, "ema_decay": 0.99}},
}
# PacGAN Table 1 (10 trials, mean ± standard error where given): published, not run here
PUBLISHED = {
    "grid": {"gan": "17.3 ± 0.8 / 94.8 %", "pacgan2": "23.8 / 91.3 %", "pacgan4": "24.8 ± 0.2 / 93.6 ± 0.6 %"},
    "ring": {"gan": "6.3 ± 0.5 / 98.2 %", "pacgan2": "7.9 ± 0.1 / 95.6 %", "pacgan4": "7.8 / 95.9 %"},
}


def config(row: str, layout: str, seed: int, steps: int, lr: float) -> dict:
    base = {
        "run": {"name": f"{row}-{layout}", "seed": seed, "steps": steps, "batch_size": 100, "device": "cpu"},
        "data": LAYOUTS[layout],
        "generator": PACGAN_GENERATOR,
        "discriminator": PACGAN_DISCRIMINATOR,
        "optimizer": {"generator_lr": lr, "discriminator_lr": lr, "betas": [0.8, 0.999]},
        "evaluation": {"every": steps, "samples": 2500},
        "checkpoint": {"every": steps, "keep": 1},
        "logging": {"progress": False, "tensorboard": False},
    }
    return {**base, **ROWS[row]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the runs, the table and the pictures")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ["OMP_NUM_THREADS"] = "1"
    jobs = [(row, layout, seed) for row in args.rows for layout in args.layouts for seed in args.seeds]

    def run(job):
        row, layout, seed = job
        run_dir = out / "runs" / f"{row}-{layout}-seed{seed}"
        summary = train(config(row, layout, seed, args.steps, args.lr), run_dir)
        print(f"{row:8s} {layout} seed {seed}: {summary['modes_covered']:.0f} modes, "
              f"{summary['high_quality_fraction']:.1%} high quality, {summary['wall_time_s']:.0f} s", flush=True)
        return job, summary

    with ThreadPoolExecutor(args.jobs) as pool:
        finished = list(pool.map(run, jobs))
    results = {}
    for (row, layout, seed), summary in finished:
        results.setdefault(f"{row}-{layout}", []).append({
            "seed": seed,
            "modes": summary["modes_covered"],
            "high_quality": summary["high_quality_fraction"],
            "wall_time_s": summary["wall_time_s"],
        })
        if seed == args.seeds[0]:
            shutil.copy(out / "runs" / f"{row}-{layout}-seed{seed}" / "samples.png", out / f"{row}-{layout}.png")
    (out / "runs.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    table = render(results, args)
    (out / "table.md").write_text(table)
    print(table)
    return 0


def render(results: dict, args) -> str:
    def stat(values, scale=1.0, digits=1):
        error = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
        return f"{statistics.mean(values) * scale:.{digits}f} ± {error * scale:.{digits}f}"

    lines = []
    for layout in args.layouts:
        total = 25 if layout == "grid" else 8
        lines += [f"**{layout}** ({total} modes; {args.steps} steps, lr {args.lr:g} falling linearly to 0, batch 100, "
                  f"{len(args.seeds)} seeds; mean ± standard error)", "",
                  "| row | modes covered | high quality (%) | all modes covered | PacGAN Table 1 (their schedule) |",
                  "|---|---|---|---|---|"]
        for row in args.rows:
            runs = results.get(f"{row}-{layout}", [])
            if not runs:
                continue
            modes = [r["modes"] for r in runs]
            quality = [r["high_quality"] for r in runs]
            full = sum(m == total for m in modes)
            published = PUBLISHED[layout].get(row, "—")
            lines.append(f"| {row} | {stat(modes)} | {stat(quality, 100)} | {full} of {len(runs)} | {published} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
