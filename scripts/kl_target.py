"""Fine-tuning towards the KL-regularised target p* = p_ref·exp(r/β)/Z, measured against the exact target.

    python scripts/kl_target.py grid --seeds 0 1 2 3 4 --out runs/kl-grid
    python scripts/kl_target.py digits --seeds 0 --base runs/digits --out runs/kl-digits
    python scripts/kl_target.py diffusion --seeds 0 --out runs/kl-diffusion
    python scripts/kl_target.py digits --seeds 0 --base runs/digits --beta 0.3 --out runs/kl-digits-0.3

For each seed: the base run (at that seed, or the ``--base`` runs given) and the fine-tuning run
from it, measured at its steps and at twice its steps (a run that drifts past p* shows it there):

- ``grid``: ``configs/gaussians25.toml``, then ``configs/grid_box_kl.toml`` (``latent_policy``);
- ``digits``: ``configs/digits.toml``, then ``configs/digits_symmetry_kl.toml`` (``latent_policy``);
- ``vae``: ``configs/vae_digits.toml``, then ``configs/vae_digits_symmetry_kl.toml`` (``latent_policy``
  on the VAE's decoder);
- ``diffusion``: ``configs/diffusion_digits.toml``'s denoising pre-training alone, then its DDPO
  rounds with ``beta`` from the pre-trained run.

Then ``rlgan tilt --compare``: the exact target from ``-n``
samples of the base run, and how close each run comes (share of the target's reward gain, total
variation of class or mode masses, the worst mode's mass error, Fréchet distance; see
``rlgan_core.tilt.compare_row``).  Runs that finished are reused: the script resumes.

Writes ``OUT/table.md`` (mean ± sd over the seeds), ``OUT/results.json`` (every number) and the
first seed's samples of the base run, of the exact target and of the tuned run as ``OUT/TASK-p_ref.png``,
``OUT/TASK-target.png`` and ``OUT/TASK-tuned.png``.  Seeds can be split over processes that share
``--out``: the table and ``results.json`` cover every seed finished there.  One folder holds one
task at one β: its runs are reused, so another task or β there is refused.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tomllib
from pathlib import Path

from rlgan_core.checkpoint import write_atomically

from reward_finetune import train

ROOT = Path(__file__).resolve().parent.parent
DIFFUSION = tomllib.loads((ROOT / "configs/diffusion_digits.toml").read_text())
PRETRAINING = DIFFUSION["strategy"]["pretrain_steps"]
TASKS = {
    "grid": {"base": "configs/gaussians25.toml", "tuned": "configs/grid_box_kl.toml", "count": 50000, "shown": 2500,
             "reward": ["--reward", "inside_box", "--option", "lower=[1.0, -5.0]", "--option", "upper=[5.0, 5.0]"]},
    "digits": {"base": "configs/digits.toml", "tuned": "configs/digits_symmetry_kl.toml", "count": 20000, "shown": 100,
               "reward": ["--reward", "mirror_symmetry"]},
    "vae": {"base": "configs/vae_digits.toml", "tuned": "configs/vae_digits_symmetry_kl.toml", "count": 20000,
            "shown": 100, "reward": ["--reward", "mirror_symmetry"]},
    "diffusion": {"base": "configs/diffusion_digits.toml", "tuned": "configs/diffusion_digits.toml", "count": 20000,
                  "shown": 100, "reward": ["--reward", "mirror_symmetry"],
                  "base_run": {"steps": PRETRAINING},  # the pre-training alone
                  "tuned_run": {"steps": DIFFUSION["run"]["steps"] - PRETRAINING},
                  "tuned_strategy": {"pretrain_steps": 0}},
}
COLUMNS = ["gain_share", "class_tv", "mass_error", "frechet_to_target", "classes"]


def rlgan(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "rlgan_core", *args], check=True, stdout=subprocess.DEVNULL)


def base_run(task: dict, seed: int, out: Path) -> Path:
    run_dir = out / f"base-seed{seed}"
    config = tomllib.loads((ROOT / task["base"]).read_text())
    config["run"] |= {"seed": seed, "device": "cpu", **task.get("base_run", {})}
    config.setdefault("logging", {})["progress"] = False
    train(config, run_dir)
    return run_dir


def tuned_run(task: dict, base: Path, seed: int, steps: int, beta: float, out: Path) -> list[Path]:
    """The fine-tuning run from ``base``, trained for twice its ``steps``: its checkpoint at
    ``steps`` and the run at the end (a strategy here has no schedule over the run's length, so
    the checkpoint is what a run of ``steps`` ends with)."""
    run_dir = out / f"tuned-seed{seed}"
    config = tomllib.loads((ROOT / task["tuned"]).read_text())
    config["run"] |= {"seed": seed, "steps": 2 * steps, "device": "cpu"}
    config["strategy"] |= {"init_from": str(base.resolve()), "beta": beta, **task.get("tuned_strategy", {})}
    config["checkpoint"] = {"every": steps, "keep": 2}
    config.setdefault("logging", {})["progress"] = False
    train(config, run_dir)
    return [run_dir / "checkpoints" / f"step-{steps:08d}", run_dir]


def compare(task: dict, base: Path, beta: float, runs: list[Path], out: Path, seed: int) -> list[dict]:
    report = out / f"compare-seed{seed}.json"
    if not report.exists():
        rlgan("tilt", str(base), *task["reward"], "--beta", str(beta), "-n", str(task["count"]), "--seed", str(seed),
              "--compare", *map(str, runs), "--json", str(report))
    return json.loads(report.read_text())["rows"]


def check_settings(out: Path, settings: dict) -> None:
    """Record the folder's task, β and steps, or refuse ones other than those recorded: the runs
    there are reused, so another setting would be measured on the first one's runs.  A folder
    from before ``settings.json`` is known by its ``results.json``, which names them too."""
    path, results = out / "settings.json", out / "results.json"
    if path.exists():
        recorded = json.loads(path.read_text())
    elif results.exists():
        recorded = {key: json.loads(results.read_text())[key] for key in settings}
    else:
        recorded = settings
    if recorded != settings:
        sys.exit(f"--out {out}: holds runs of {recorded}, not {settings}; give another folder")
    path.write_text(json.dumps(settings))


def merge_results(out: Path, results: list[dict]) -> list[dict]:
    """These results and those of other seeds already in ``OUT/results.json`` (written by another
    process sharing the folder), one per seed, in seed order."""
    path = out / "results.json"
    earlier = json.loads(path.read_text())["results"] if path.exists() else []
    by_seed = {result["seed"]: result for result in [*earlier, *results]}
    return [by_seed[seed] for seed in sorted(by_seed)]


def render(results: list[dict], beta: float) -> str:
    def stat(values):
        if len(values) == 1:
            return f"{values[0]:.3f}"
        return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"

    lines = [f"| β = {beta:g} | seeds | reward | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 3) + "|"]
    for index, name in enumerate(["p* (exact)", "p_ref", "tuned", "tuned, 2× steps"]):
        rows = [result["rows"][index] for result in results]
        cells = [stat([row[key] for row in rows if key in row]) if any(key in row for row in rows) else "–"
                 for key in ["reward", *COLUMNS]]
        lines.append(f"| {name} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--base", nargs="+", help="finished base runs, one per seed (default: train them)")
    parser.add_argument("--out", required=True, help="folder for the runs, the table and the pictures")
    parser.add_argument("--beta", type=float, help="the KL weight (default: the fine-tuning config's)")
    args = parser.parse_args()
    task, out = TASKS[args.task], Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tuned_config = tomllib.loads((ROOT / task["tuned"]).read_text())
    beta = args.beta or tuned_config["strategy"]["beta"]
    steps = task.get("tuned_run", {}).get("steps", tuned_config["run"]["steps"])
    if args.base and len(args.base) != len(args.seeds):
        parser.error("--base: one run per seed")
    settings = {"task": args.task, "beta": beta, "steps": steps}
    check_settings(out, settings)
    results = []
    for index, seed in enumerate(args.seeds):
        base = Path(args.base[index]) if args.base else base_run(task, seed, out)
        runs = tuned_run(task, base, seed, steps, beta, out)
        results.append({"seed": seed, "base": str(base), "rows": compare(task, base, beta, runs, out, seed)})
        print(f"seed {seed}: " + ", ".join(f"{key} {results[-1]['rows'][2][key]:.3f}" for key in COLUMNS
                                            if key in results[-1]["rows"][2]), flush=True)
        if index == 0:
            tuned = runs[0]
            shown = str(task["shown"])
            rlgan("sample", str(base), "-n", shown, "-o", str(out / f"{args.task}-p_ref.png"))
            rlgan("tilt", str(base), *task["reward"], "--beta", str(beta), "-n", str(task["count"]), "--show", shown,
                  "-o", str(out / f"{args.task}-target.png"))
            rlgan("sample", str(tuned), "-n", shown, "-o", str(out / f"{args.task}-tuned.png"))
    results = merge_results(out, results)
    write_atomically(out / "results.json", json.dumps({**settings, "results": results}, indent=2))
    table = render(results, beta)
    write_atomically(out / "table.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
