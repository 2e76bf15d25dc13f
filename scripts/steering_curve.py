"""Steering digits towards one class: the target-class share against the Fréchet distance to the real class, per reward weight.

    python scripts/steering_curve.py --out docs/results/steering --weights 0.1 0.3 1 3 10

Trains ``configs/digits_steered.toml`` (the default digits run plus the ``digit_class`` reward,
the shipped classifier's log p(target | x), through its gradient) once per weight of that reward,
then draws the 1,000 evaluation samples of the finished run and reports the share the classifier
assigns to the target, and the Fréchet distance between the classifier's features of all the
samples and those of the real training digits of the target class.  The class floor is that
distance between the real training digits of the class and the held-out ones.  Runs go two at a
time, one thread each.  Writes ``OUT/table.md``, ``OUT/runs.json``, ``OUT/curve.png`` and
``OUT/weight-W.png`` (each run's samples).
"""

import argparse
import json
import os
import shutil
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from reward_finetune import train
from rlgan_core import checkpoint
from rlgan_core.classifier import digits_split, load_classifier
from rlgan_core.config import parse_config
from rlgan_core.engine import Engine
from rlgan_core.metrics import frechet_distance

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "digits_steered.toml"


def class_features(split: str, target: int) -> torch.Tensor:
    images, labels = digits_split(split)
    with torch.no_grad():
        return load_classifier().features(torch.from_numpy(images[labels == target]))


def measure(run_dir: Path, target: int, real: torch.Tensor) -> dict:
    """The target share and the Fréchet distance to ``real`` of the finished run's evaluation samples."""
    path = checkpoint.newest(run_dir)
    _, state = checkpoint.load(path)
    config = parse_config(state["config"])
    config.logging.progress = False
    engine = Engine(config, run_dir)
    engine.load_checkpoint(path)
    samples = engine.generate(config.evaluation.samples)
    classifier = load_classifier()
    with torch.no_grad():
        features = classifier.features(samples.flatten(1).float())
        share = float((classifier.head(features).argmax(1) == target).double().mean())
    return {"target_share": share, "frechet_distance_to_class": frechet_distance(real, features)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the runs, the table and the pictures")
    parser.add_argument("--weights", nargs="+", type=float, default=[0.03, 0.1, 0.3, 1.0, 3.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    base = tomllib.loads(CONFIG.read_text())
    target = base["rewards"]["digit_class"]["target"]
    real, held_out = class_features("train", target), class_features("test", target)
    floor = frechet_distance(real, held_out)

    def run(weight):
        config = {**base, "run": {**base["run"], "seed": args.seed},
                  "rewards": {**base["rewards"], "digit_class": {**base["rewards"]["digit_class"], "weight": weight}},
                  "logging": {"progress": False, "tensorboard": False}}
        run_dir = out / "runs" / f"weight-{weight:g}"
        summary = train(config, run_dir)
        result = {"weight": weight, **measure(run_dir, target, real), "frechet_distance": summary["frechet_distance"]}
        shutil.copy(run_dir / "samples.png", out / f"weight-{weight:g}.png")
        print(f"weight {weight:g}: {result['target_share']:.1%} class {target}, "
              f"FD to real {target}s {result['frechet_distance_to_class']:.2f} (floor {floor:.2f})", flush=True)
        return result

    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(run, args.weights))
    (out / "runs.json").write_text(json.dumps({"args": vars(args), "target": target, "class_floor": floor,
                                               "results": results}, indent=2))
    lines = [f"Target class {target}; class floor (real training {target}s against the held-out ones): {floor:.2f}.", "",
             f"| reward weight | classified {target} | FD to the real {target}s | × floor | FD to all digits |",
             "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['weight']:g} | {r['target_share']:.1%} | {r['frechet_distance_to_class']:.2f} | "
                     f"{r['frechet_distance_to_class'] / floor:.2f} | {r['frechet_distance']:.1f} |")
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table)
    plot(results, floor, target, out / "curve.png")
    print(table)
    return 0


def plot(results, floor, target, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    shares = [100 * r["target_share"] for r in results]
    distances = [r["frechet_distance_to_class"] for r in results]
    axes.plot(shares, distances, "o-")
    for r, x, y in zip(results, shares, distances):
        axes.annotate(f"w={r['weight']:g}", (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    axes.axhline(floor, color="green", linestyle="--", label=f"class floor ({floor:.1f})")
    axes.axhline(2 * floor, color="orange", linestyle=":", label="twice the floor")
    axes.axvline(95, color="grey", linestyle=":", label="95 %")
    axes.set_xlabel(f"samples classified {target} (%)")
    axes.set_ylabel(f"Fréchet distance to the real {target}s")
    axes.set_yscale("log")
    axes.legend(fontsize=8)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


if __name__ == "__main__":
    raise SystemExit(main())
