"""Fine-tune trained digits runs on a black-box reward with each strategy; tabulate reward and FD.

    python scripts/reward_finetune.py --pretrained runs/digits-seed{0..4} --out docs/results/symmetry

For every pretrained run (one per seed) and every method, trains ``rlgan train`` from the run's
checkpoint (``init_from``) with the ``mirror_symmetry`` reward and records the reward of the
evaluation samples and their Fréchet distance before and after.  Methods:

- ``none``: ``gan`` with the realism reward only (what further GAN training alone does; mirror
  symmetry has weight 0: measured, not trained on);
- ``gan``: ``gan`` with mirror symmetry as a second reward, entering through the softmax
  weights of the generator loss (``temperature``);
- ``reinforce``, ``ppo``: the generator as a Gaussian policy (``noise``), realism through its
  gradient (``pathwise``) and mirror symmetry as a black box, a KL penalty to the starting
  generator (``kl_coef``).

Writes ``OUT/table.md`` (mean ± sd over the runs), ``OUT/runs.json`` (every number) and copies
each method's final sample grid of the first run to ``OUT/METHOD.png``.
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

BASE = {
    "run": {"steps": 1500, "batch_size": 64, "device": "cpu"},
    "data": {"name": "digits"},
    "generator": {"name": "mlp_generator", "latent_dim": 100, "hidden": [256, 512]},
    "discriminator": {"name": "mlp_discriminator", "hidden": [512, 256]},
    "evaluation": {"every": 500, "samples": 1000},
    "checkpoint": {"every": 1500, "keep": 1},
    "logging": {"progress": False, "tensorboard": False},
}


def methods(weight: float, temperature: float, kl_coef: float, noise: float, lr: float) -> dict[str, dict]:
    symmetry = {"realism": {"weight": 1.0}, "mirror_symmetry": {"weight": weight}}
    # the policies: realism through its gradient (as under gan), mirror symmetry as a black box
    pathwise = {"realism": {"weight": 1.0, "pathwise": True}, "mirror_symmetry": {"weight": weight}}
    policy = {"generator": {**BASE["generator"], "noise": noise}, "optimizer": {"generator_lr": lr}, "rewards": pathwise}
    return {
        # weight 0: measured at each evaluation, no part in training
        "none": {"strategy": {"name": "gan"}, "rewards": {"realism": {"weight": 1.0}, "mirror_symmetry": {"weight": 0.0}}},
        "gan": {"strategy": {"name": "gan"}, "rewards": symmetry, "loss": {"temperature": temperature}},
        "reinforce": {"strategy": {"name": "reinforce", "kl_coef": kl_coef}, **policy},
        "ppo": {"strategy": {"name": "ppo", "kl_coef": kl_coef}, **policy},
    }


def to_toml(config: dict) -> str:
    lines = []
    for table, values in config.items():
        nested = {k: v for k, v in values.items() if isinstance(v, dict)}
        plain = {k: v for k, v in values.items() if not isinstance(v, dict)}
        if plain or not nested:
            lines.append(f"[{table}]")
            lines += [f"{key} = {json.dumps(value)}" for key, value in plain.items()]
        for name, inner in nested.items():
            lines.append(f"[{table}.{name}]")
            lines += [f"{key} = {json.dumps(value)}" for key, value in inner.items()]
    return "\n".join(lines) + "\n"


def train(config: dict, run_dir: Path) -> dict:
    """Train ``config`` into ``run_dir`` (its TOML beside it, ``RUN_DIR.toml``) unless a finished
    run is there already; return the run's summary."""
    if not (run_dir / "summary.json").exists():
        shutil.rmtree(run_dir, ignore_errors=True)
        path = run_dir.with_name(run_dir.name + ".toml")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(to_toml(config))
        subprocess.run([sys.executable, "-m", "rlgan_core", "train", str(path), "--run-dir", str(run_dir)],
                       check=True, stdout=subprocess.DEVNULL)
    return json.loads((run_dir / "summary.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", nargs="+", required=True, help="finished digits runs, one per seed")
    parser.add_argument("--out", required=True, help="folder for the runs, the table and the pictures")
    parser.add_argument("--methods", nargs="+", default=["none", "gan", "reinforce", "ppo"])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--weight", type=float, default=1.0, help="weight of mirror symmetry")
    parser.add_argument("--temperature", type=float, default=2.0, help="gan: softmax temperature of the weights")
    parser.add_argument("--kl-coef", type=float, default=0.01, help="reinforce, ppo: KL penalty to the start")
    parser.add_argument("--noise", type=float, default=0.1, help="reinforce, ppo: initial policy std")
    parser.add_argument("--lr", type=float, default=2e-4, help="reinforce, ppo: generator learning rate")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = methods(args.weight, args.temperature, args.kl_coef, args.noise, args.lr)
    results = {}
    for name in args.methods:
        for index, pretrained in enumerate(args.pretrained):
            seed = json.loads((Path(pretrained) / "config.json").read_text())["run"]["seed"]
            config = {**BASE, **table[name]}
            config["run"] = {**BASE["run"], "name": f"{name}-seed{seed}", "seed": seed, "steps": args.steps}
            config["strategy"] = {**config["strategy"], "init_from": str(Path(pretrained).resolve())}
            run_dir = out / "runs" / f"{name}-seed{seed}"
            summary = train(config, run_dir)
            results.setdefault(name, []).append({
                "seed": seed,
                "reward_start": summary["reward_mirror_symmetry_initial"],
                "reward_end": summary["reward_mirror_symmetry"],
                "fd_start": summary["frechet_distance_initial"],
                "fd_end": summary["frechet_distance"],
                "classes_end": summary["classes_covered"],
            })
            if index == 0:
                shutil.copy(run_dir / "samples.png", out / f"{name}.png")
    (out / "runs.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    table = render(results)
    (out / "table.md").write_text(table)
    print(table)
    return 0


def render(results: dict) -> str:
    def stat(values):
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):+.3f} ± {sd:.3f}"

    lines = ["| method | runs | symmetry gain | FD change | FD at the end | classes |", "|---|---|---|---|---|---|"]
    for name, rows in results.items():
        gains = [r["reward_end"] - r["reward_start"] for r in rows]
        fd = [r["fd_end"] - r["fd_start"] for r in rows]
        end = [r["fd_end"] for r in rows]
        classes = [r["classes_end"] for r in rows]
        lines.append(f"| {name} | {len(rows)} | {stat(gains)} | {stat(fd)} | {stat(end).lstrip('+')} | "
                     f"{min(classes):.0f}–{max(classes):.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
