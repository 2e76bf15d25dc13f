"""The 25-mode grid with a black-box reward: the share of samples inside a box (the 10 modes with x = 2 or 4).

    python scripts/region_grid.py --seeds 0 1 2 3 4 --out docs/results/region

Trains each method from scratch on ``configs/gaussians25.toml``'s data and models, with the
``inside_box`` reward (1 inside ``[1, 5] x [-5, 5]``, else 0, computed in NumPy):

- ``none``: ``gan``, the reward measured (weight 0) but not trained on;
- ``gan``: ``gan``, the reward entering through the softmax weights of the generator loss;
- ``ppo``: the generator as a Gaussian policy (``noise``), realism through its gradient and the
  box as a black box;
- ``gan, fine-tuned`` and ``ppo, fine-tuned``: the same, for 1,000 steps from the seed's finished
  ``none`` run (``init_from``);
- ``ddpo``: the ``rlgan-diffusion`` plugin: denoising pre-training, then DDPO on the box.

Writes ``OUT/table.md``, ``OUT/runs.json`` and each method's samples of the first seed as
``OUT/METHOD.png``.
"""

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

from reward_finetune import train

BOX = {"inside_box": {"weight": 1.0, "lower": [1.0, -5.0], "upper": [5.0, 5.0]}}
BASE = {
    "run": {"steps": 3000, "batch_size": 256, "device": "cpu"},
    "data": {"name": "gaussians", "layout": "grid"},
    "generator": {"name": "mlp_generator", "latent_dim": 2, "hidden": [400, 400, 400], "output": "linear"},
    "discriminator": {"name": "mlp_discriminator", "hidden": [200, 200, 200]},
    "optimizer": {"generator_lr": 1e-3, "discriminator_lr": 1e-3},
    "evaluation": {"every": 500, "samples": 2500},
    "checkpoint": {"every": 3000, "keep": 1},
    "logging": {"progress": False, "tensorboard": False},
}
METHODS = {
    "none": {"strategy": {"name": "gan"}, "rewards": {"realism": {}, "inside_box": {**BOX["inside_box"], "weight": 0.0}}},
    "gan": {"strategy": {"name": "gan"}, "rewards": {"realism": {}, **BOX}, "loss": {"temperature": 2.0}},
    "ppo": {
        "strategy": {"name": "ppo"},
        "generator": {**BASE["generator"], "noise": 0.05},
        "rewards": {"realism": {"pathwise": True}, **BOX},
    },
    # the same two, fine-tuning the finished `none` run of the seed for 1,000 steps
    "gan, fine-tuned": {"strategy": {"name": "gan"}, "rewards": {"realism": {}, **BOX}, "loss": {"temperature": 2.0},
                        "run": {"steps": 1000}, "init_from": "none"},
    "ppo, fine-tuned": {
        "strategy": {"name": "ppo"},
        "generator": {**BASE["generator"], "noise": 0.05},
        "rewards": {"realism": {"pathwise": True}, **BOX},
        "run": {"steps": 1000}, "init_from": "none",
    },
    "ddpo": {
        "run": {"steps": 3300},
        "generator": {"name": "mlp_denoiser", "hidden": [256, 256, 256], "sample_steps": 50},
        "discriminator": None,
        "strategy": {"name": "ddpo", "pretrain_steps": 3000, "policy_lr": 1e-4},
        "optimizer": {"generator_lr": 1e-3, "betas": [0.9, 0.999]},
        "rewards": BOX,
    },
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", required=True)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    args = parser.parse_args()
    out = Path(args.out)
    results = {}
    for name in args.methods:
        for index, seed in enumerate(args.seeds):
            method = dict(METHODS[name])
            start = method.pop("init_from", None)
            config = {**BASE, **method}
            config = {table: values for table, values in config.items() if values is not None}
            folder = name.replace(", ", "-").replace(" ", "-")
            config["run"] = {**BASE["run"], **method.get("run", {}), "name": f"{folder}-seed{seed}", "seed": seed}
            if start:
                config["strategy"] = {**config["strategy"], "init_from": str((out / "runs" / f"{start}-seed{seed}").resolve())}
            run_dir = out / "runs" / f"{folder}-seed{seed}"
            summary = train(config, run_dir)
            results.setdefault(name, []).append({
                "seed": seed,
                "inside": summary["reward_inside_box"],
                "modes": summary["modes_covered"],
                "high_quality": summary["high_quality_fraction"],
            })
            if index == 0:
                shutil.copy(run_dir / "samples.png", out / f"{folder}.png")
    (out / "runs.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    table = render(results)
    (out / "table.md").write_text(table)
    print(table)
    return 0


def render(results: dict) -> str:
    def stat(values, digits=3):
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"

    lines = ["| method | runs | share inside the box | modes covered (of 25; 10 inside) | high-quality share |",
             "|---|---|---|---|---|"]
    for name, rows in results.items():
        lines.append(f"| {name} | {len(rows)} | {stat([r['inside'] for r in rows])} | "
                     f"{stat([r['modes'] for r in rows], 1)} | {stat([r['high_quality'] for r in rows])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
