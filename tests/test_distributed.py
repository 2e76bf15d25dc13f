"""Data-parallel training: N processes with per-rank batch B train the model of one process with N*B,
on one machine or several (simulated here by two launchers), through restarts."""

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

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


def write_config(tmp_path, name, batch, steps=20):
    config = tmp_path / f"{name}.toml"
    config.write_text(CONFIG.format(batch=batch).replace("steps = 20", f"steps = {steps}"))
    return config


def newest_tensors(run_dir):
    newest = sorted((run_dir / "checkpoints").glob("step-*"))[-1]
    return load_file(newest / "tensors.safetensors")


def train(tmp_path, name, batch, *extra, steps=20):
    config = write_config(tmp_path, name, batch, steps)
    run_dir = tmp_path / name
    subprocess.run([sys.executable, "-m", "rlgan_core", "train", str(config), "--run-dir", str(run_dir), *extra],
                   check=True, capture_output=True, text=True, timeout=300)
    return newest_tensors(run_dir)


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def readme_multi_machine_command():
    """The command of the README's "Several machines" section, as its arguments."""
    text = (Path(__file__).parent.parent / "README.md").read_text()
    section = text[text.index("### Several machines"):]
    start = section.index("```sh\n") + len("```sh\n")
    return shlex.split(section[start:section.index("```", start)].replace("\\\n", " "))


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


def test_the_readmes_multi_machine_command_as_two_launchers_on_one_machine(tmp_path):
    """Two nodes of one process each (batch 16) train the model of one process with batch 32."""
    config, run_dir = write_config(tmp_path, "nodes", 16), tmp_path / "nodes"
    endpoint = f"localhost:{free_port()}"
    placeholders = {"HOST:29400": endpoint, "RUN_ID": "test-job", "CONFIG": str(config), "RUN_DIR": str(run_dir)}
    command = readme_multi_machine_command()
    assert command[0] == "torchrun" and set(placeholders) <= set(command)
    command = [sys.executable, "-m", "torch.distributed.run", *(placeholders.get(a, a) for a in command[1:])]
    launchers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for launcher in launchers:
        out, error = launcher.communicate(timeout=300)
        assert launcher.returncode == 0, error[-3000:]
    two_nodes, one = newest_tensors(run_dir), train(tmp_path, "one", 32)
    for name in [name for name in one if name.startswith("generator.")]:
        torch.testing.assert_close(two_nodes[name], one[name], rtol=1e-5, atol=1e-6)


def worker_pids(run_dir, rank):
    """The processes of rank ``rank`` that train in ``run_dir`` (Linux: read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if f"RANK={rank}".encode() in environ and str(run_dir).encode() in cmdline and b"TORCHELASTIC_RUN_ID" in b" ".join(environ):
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the worker to kill through /proc")
def test_torchrun_restarts_after_a_rank_is_killed_and_the_run_ends_as_if_never_stopped(tmp_path):
    reference = train(tmp_path, "reference", 16, "--nproc", "2", steps=60)
    config, run_dir = write_config(tmp_path, "elastic", 16, steps=60), tmp_path / "elastic"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "--max-restarts", "3", "-m", "rlgan_core", "train", str(config), "--run-dir", str(run_dir)]
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, killed = time.monotonic() + 120, []
    while not killed and launcher.poll() is None and time.monotonic() < deadline:
        if sorted((run_dir / "checkpoints").glob("step-*")):  # past its first checkpoint: kill rank 1
            for pid in worker_pids(run_dir, 1):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.02)
    out, error = launcher.communicate(timeout=300)
    assert killed and launcher.returncode == 0, error[-3000:]
    assert f"resuming {run_dir} from step" in out  # the restart continued the run
    final = newest_tensors(run_dir)
    assert final.keys() == reference.keys()
    for name in reference:
        assert torch.equal(final[name], reference[name]), name
