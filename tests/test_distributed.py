"""Data-parallel training: N processes with per-rank batch B train the model of one process with N*B."""

import subprocess
import sys

import torch
from safetensors.torch import load_file

CONFIG = """
[run]
name = "ddp"
steps = 20
batch_size = {batch}
device = "cpu"
[loss]
baseline = "whiten"
temperature = 1.0
[rewards.realism]
weight = 1.0
[rewards.digit_class]
weight = 0.2
pathwise = true
target = 7
[generator]
name = "mlp_generator"
latent_dim = 8
hidden = [32]
[discriminator]
name = "mlp_discriminator"
hidden = [32]
[evaluation]
every = 10
samples = 100
[checkpoint]
every = 10
[logging]
progress = false
tensorboard = false
"""


def train(tmp_path, name, batch, *extra):
    config = tmp_path / f"{name}.toml"
    config.write_text(CONFIG.format(batch=batch))
    run_dir = tmp_path / name
    subprocess.run([sys.executable, "-m", "rlgan_core", "train", str(config), "--run-dir", str(run_dir), *extra],
                   check=True, capture_output=True, text=True, timeout=300)
    newest = sorted((run_dir / "checkpoints").glob("step-*"))[-1]
    return load_file(newest / "tensors.safetensors")


def test_two_gloo_processes_equal_one_with_the_doubled_batch(tmp_path):
    two = train(tmp_path, "two", 16, "--nproc", "2")
    one = train(tmp_path, "one", 32)
    names = [name for name in one if name.startswith("generator.")]
    assert names
    for name in names:
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-6)
    # and the runs did train: the weights moved away from their initialisation
    start = train(tmp_path, "start", 32, "--steps", "1")
    assert any(not torch.allclose(one[name], start[name]) for name in names)
