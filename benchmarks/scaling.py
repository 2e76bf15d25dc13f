"""Data-parallel scaling on the digits config: steady-state samples/s with 1 and with N processes.

    python benchmarks/scaling.py [--nproc 2] [--steps 600] [--device cpu]

Each process keeps the config's per-process batch (weak scaling), so the ideal is N times the
one-process throughput; efficiency = throughput(N) / (N * throughput(1)).  Throughput is the
median of the ``perf/samples_per_s`` that the runs log (all processes together).
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def throughput(nproc: int, steps: int, device: str, folder: Path) -> float:
    run_dir = folder / f"nproc{nproc}"
    subprocess.run(
        [sys.executable, "-m", "rlgan_core", "train", "configs/digits.toml", "--steps", str(steps),
         "--device", device, "--run-dir", str(run_dir), "--nproc", str(nproc)],
        check=True, capture_output=True,
    )
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["perf/samples_per_s"] for r in records if "perf/samples_per_s" in r and r["step"] > 50]
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--device", default="cpu", help="cpu (gloo), or cuda (NCCL, one GPU per process)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        one = throughput(1, args.steps, args.device, Path(folder))
        many = throughput(args.nproc, args.steps, args.device, Path(folder))
    print("| processes | samples/s (all processes) | scaling efficiency |")
    print("|---|---|---|")
    print(f"| 1 | {one:.0f} | 100% |")
    print(f"| {args.nproc} | {many:.0f} | {many / (args.nproc * one):.0%} |")


if __name__ == "__main__":
    main()
