"""SeqGAN's adversarial epoch (configs/seqgan_oracle.toml: one generator update with 16 rollouts per
prefix, then one discriminator round) in 1 and 2 data-parallel processes, at the same global batch
of 64 sequences: `rlgan train --nproc N` with batch 64 / N per process.

The timed call is the whole command (start-up, data, evaluation and 4 adversarial epochs); the
figures that matter, the median time of one adversarial epoch after the first and the sequences per
second it gives, come from the run's own log (``perf/step_time_s`` of rank 0) and are kept in
``extra_info`` (``benchmarks/report.py`` prints them).
"""

import json
import os
import statistics
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

pytest.importorskip("rlgan_seqgan")
ROOT = Path(__file__).resolve().parent.parent
GLOBAL_BATCH, EPOCHS = 64, 4


def toml(tables: dict, prefix: str = "") -> str:
    """Tables of scalars and arrays (nested tables as [a.b]) as TOML text."""
    text = ""
    for name, table in tables.items():
        keys = {k: v for k, v in table.items() if not isinstance(v, dict)}
        text += f"[{prefix}{name}]\n" + "".join(f"{k} = {str(v).lower() if isinstance(v, bool) else json.dumps(v)}\n"
                                               for k, v in keys.items())
        text += toml({k: v for k, v in table.items() if isinstance(v, dict)}, f"{prefix}{name}.")
    return text


@pytest.mark.parametrize("processes,threads", [(1, None), (1, 1), (2, 1)], ids=["1proc", "1proc-1thread", "2proc"])
def test_seqgan_adversarial_epoch(benchmark, tmp_path, processes, threads):
    """``threads``: each process's intra-op threads (``None``: PyTorch's default, every core; with
    several processes torchrun gives each one thread)."""
    benchmark.group = f"seqgan adversarial epoch, global batch {GLOBAL_BATCH}, 16 rollouts (cpu): processes"
    tables = tomllib.loads((ROOT / "configs" / "seqgan_oracle.toml").read_text())
    tables["run"].update(steps=EPOCHS, batch_size=GLOBAL_BATCH // processes, device="cpu")
    tables["strategy"].update(generator_pretrain_epochs=0, discriminator_pretrain_rounds=0)  # straight to adversarial epochs
    tables["data"].update(sequences=2000, test_sequences=100)  # the epoch's work does not depend on them
    tables["evaluation"].update(every=EPOCHS, samples=100)
    tables["logging"].update(every=1, progress=False, tensorboard=False)
    tables["checkpoint"].update(every=EPOCHS)
    config = tmp_path / "seqgan.toml"
    config.write_text(toml(tables))
    run_dir = tmp_path / "run"

    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)

    def train():
        subprocess.run([sys.executable, "-m", "rlgan_core", "train", str(config), "--run-dir", str(run_dir),
                        "--nproc", str(processes)], check=True, capture_output=True, timeout=1800, env=env)

    benchmark.pedantic(train, rounds=1, iterations=1)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    times = [r["perf/step_time_s"] for r in records if "perf/step_time_s" in r][1:]  # after the first epoch
    assert len(times) == EPOCHS - 1
    step = statistics.median(times)
    benchmark.extra_info.update(processes=processes, threads_per_process=threads or torch.get_num_threads(),
                                batch_per_process=GLOBAL_BATCH // processes,
                                epoch_time_s=round(step, 3), sequences_per_s=round(GLOBAL_BATCH / step, 2))
