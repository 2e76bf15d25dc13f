"""A run survives SIGKILL, bad files and bad plugins without losing work or running a file's code."""

import pickle
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from rlgan_core import checkpoint
from rlgan_core.engine import Engine
from rlgan_core.errors import CheckpointError

from helpers import tiny_config

CONFIG = """
[run]
name = "kill"
steps = 300
batch_size = 16
device = "cpu"
[generator]
name = "mlp_generator"
latent_dim = 8
hidden = [32]
[discriminator]
name = "mlp_discriminator"
hidden = [32]
[evaluation]
every = 100
samples = 100
[checkpoint]
every = 7
keep = 3
[logging]
progress = false
tensorboard = false
"""


def command(config, run_dir, resume):
    base = [sys.executable, "-m", "rlgan_core", "train"]
    return base + (["--resume", str(run_dir)] if resume else [str(config), "--run-dir", str(run_dir)])


def every_checkpoint_loads(run_dir):
    for saved in checkpoint.list_checkpoints(run_dir / "checkpoints"):
        checkpoint.load(saved)  # raises on anything unreadable


# ppo: the generator as a policy, several updates per batch, rewards as black boxes
PPO = CONFIG.replace('hidden = [32]\n[discriminator]', 'hidden = [32]\nnoise = 0.1\n[discriminator]') + """
[strategy]
name = "ppo"
epochs = 2
[rewards.realism]
weight = 1.0
[rewards.digit_class]
target = 3
"""


# ddpo (the rlgan-diffusion plugin): denoising pre-training, then DDPO rounds with a KL penalty
DDPO = """
[run]
name = "kill"
steps = 200
batch_size = 16
device = "cpu"
[data]
name = "gaussians"
samples = 2000
[generator]
name = "mlp_denoiser"
hidden = [32, 32]
embedding = 16
timesteps = 100
sample_steps = 5
[strategy]
name = "ddpo"
pretrain_steps = 100
epochs = 2
kl_coef = 0.1
policy_lr = 1e-3
[rewards.mirror_symmetry]
width = 2
[evaluation]
every = 100
samples = 100
[checkpoint]
every = 7
keep = 3
[logging]
progress = false
tensorboard = false
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_with_a_checkpoint_of_the_current_step_and_resume_is_bitwise(tmp_path, signum):
    """SIGTERM (schedulers, torchrun) and SIGINT (Ctrl-C) lose nothing: the run checkpoints the step it
    was in (no regular checkpoint is due), says how to resume, and the resumed run ends where an
    uninterrupted one does."""
    config = tmp_path / "signal.toml"
    config.write_text(CONFIG.replace("every = 7", "every = 1000"))
    reference, run_dir = tmp_path / "reference", tmp_path / "stopped"
    subprocess.run(command(config, reference, False), check=True, capture_output=True, timeout=300)
    process = subprocess.Popen(command(config, run_dir, False), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics, deadline = run_dir / "metrics.jsonl", time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:  # well into the run: three logged steps
        if metrics.exists() and metrics.read_text().count('"loss/generator"') >= 3:
            break
        time.sleep(0.01)
    process.send_signal(signum)
    _, error = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, error.decode()
    assert f"resume with: rlgan train --resume {run_dir}" in error.decode()
    assert "Traceback" not in error.decode()
    (saved,) = checkpoint.list_checkpoints(run_dir / "checkpoints")
    assert 20 < int(saved.name.split("-")[1]) < 300  # the step it stopped at
    assert not (run_dir / "summary.json").exists()  # the run is not finished
    resumed = subprocess.run(command(config, run_dir, True), capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode()
    final = checkpoint.load(checkpoint.list_checkpoints(run_dir / "checkpoints")[-1])[0]
    expected = checkpoint.load(checkpoint.list_checkpoints(reference / "checkpoints")[-1])[0]
    assert final.keys() == expected.keys()
    for name in expected:
        assert torch.equal(final[name], expected[name]), name


@pytest.mark.parametrize("config_text", [CONFIG, PPO, DDPO], ids=["gan", "ppo", "ddpo"])
def test_sigkill_loop_resumes_bitwise(tmp_path, config_text):
    config = tmp_path / "kill.toml"
    config.write_text(config_text)
    reference = tmp_path / "reference"
    subprocess.run(command(config, reference, False), check=True, capture_output=True, timeout=300)

    run_dir, kills, rng = tmp_path / "killed", 0, random.Random(0)
    while True:
        resume = bool(checkpoint.list_checkpoints(run_dir / "checkpoints"))
        process = subprocess.Popen(command(config, run_dir, resume), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kills < 5:
            # kill at a random step: after a random number of new checkpoints, plus a random delay
            seen = len(checkpoint.list_checkpoints(run_dir / "checkpoints"))
            target, deadline = seen + rng.randint(1, 4), time.monotonic() + 120
            while process.poll() is None and time.monotonic() < deadline:
                if len(checkpoint.list_checkpoints(run_dir / "checkpoints")) >= min(target, seen + 3) or (
                    checkpoint.list_checkpoints(run_dir / "checkpoints")
                    and checkpoint.list_checkpoints(run_dir / "checkpoints")[-1].name > f"step-{rng.randint(0, 299):08d}"
                ):
                    time.sleep(rng.uniform(0, 0.3))
                    break
                time.sleep(0.01)
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
                kills += 1
                every_checkpoint_loads(run_dir)
                continue
        _, error = process.communicate(timeout=300)
        assert process.returncode == 0, error.decode()
        break
    assert kills >= 5
    every_checkpoint_loads(run_dir)
    final = checkpoint.load(checkpoint.list_checkpoints(run_dir / "checkpoints")[-1])[0]
    expected = checkpoint.load(checkpoint.list_checkpoints(reference / "checkpoints")[-1])[0]
    assert final.keys() == expected.keys()
    for name in expected:
        assert torch.equal(final[name], expected[name]), name


class CreatesFile:
    """Unpickling this creates a file: the payload a malicious checkpoint would carry."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_pickle_payload_is_never_unpickled(tmp_path):
    engine = Engine(tiny_config(run={"steps": 3}), tmp_path / "run")
    engine.run()
    saved = checkpoint.list_checkpoints(tmp_path / "run" / "checkpoints")[-1]
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"generator.net.0.weight": CreatesFile(marker)})
    for target in ("tensors.safetensors", "state.json"):
        victim = tmp_path / f"victim-{target}"
        subprocess.run(["cp", "-r", str(saved), str(victim)], check=True)
        (victim / target).write_bytes(payload)
        with pytest.raises(CheckpointError):
            engine.load_checkpoint(victim)
        assert not marker.exists()
    # also through the command line, in a fresh process
    victim = tmp_path / "victim-cli"
    subprocess.run(["cp", "-r", str(saved), str(victim)], check=True)
    (victim / "tensors.safetensors").write_bytes(payload)
    result = subprocess.run([sys.executable, "-m", "rlgan_core", "sample", str(victim), "-o", str(tmp_path / "x.png")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "rlgan: error:" in result.stderr and not marker.exists()


def test_truncated_state_and_bit_flips_give_clear_errors(tmp_path):
    engine = Engine(tiny_config(run={"steps": 3}), tmp_path / "run")
    engine.run()
    saved = checkpoint.list_checkpoints(tmp_path / "run" / "checkpoints")[-1]
    state = (saved / "state.json").read_bytes()
    (saved / "state.json").write_bytes(state[: len(state) // 2])
    with pytest.raises(CheckpointError, match="unreadable"):
        engine.load_checkpoint(saved)
    (saved / "state.json").write_bytes(state)
    tensors = bytearray((saved / "tensors.safetensors").read_bytes())
    tensors[len(tensors) // 2] ^= 0x01  # one bit
    (saved / "tensors.safetensors").write_bytes(bytes(tensors))
    with pytest.raises(CheckpointError, match="checksum"):
        engine.load_checkpoint(saved)


def test_skip_mode_skips_bad_batches_and_counts_them(tmp_path):
    from rlgan_core import Reward, hookimpl
    from rlgan_core.plugins import get_plugin_manager

    class Flaky(Reward):
        def __call__(self, samples, context):
            if context.step % 3 == 0:
                return torch.full((len(samples),), float("nan"))
            return torch.zeros(len(samples))

    class FlakyPlugin:
        @hookimpl
        def rlgan_register_rewards(self, register):
            register("flaky", Flaky)

    pm = get_plugin_manager()
    pm.register(FlakyPlugin(), name="flaky-plugin")
    try:
        summary = Engine(tiny_config(run={"steps": 9, "on_bad_reward": "skip"}, rewards={"flaky": {}}),
                         tmp_path).run()
    finally:
        pm.unregister(name="flaky-plugin")
    assert summary["skipped_batches"] == 3


def test_one_command_starts_a_run_resumes_it_and_refuses_another_config(tmp_path):
    """What a requeued or restarted job needs: ``rlgan train CONFIG --run-dir D`` run again and
    again starts the run, continues it from its newest checkpoint that verifies, and never mixes
    in a run of another config."""
    config = tmp_path / "run.toml"
    config.write_text(CONFIG.replace("steps = 300", "steps = 120"))
    reference = tmp_path / "reference"
    subprocess.run(command(config, reference, False), check=True, capture_output=True, timeout=300)

    run_dir = tmp_path / "run"
    run_dir.mkdir()  # an attempt that died before its first checkpoint: only its config.json
    (run_dir / "config.json").write_text((reference / "config.json").read_text())
    process = subprocess.Popen(command(config, run_dir, False), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(checkpoint.list_checkpoints(run_dir / "checkpoints")) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    out, _ = process.communicate()
    assert f"run directory {run_dir}" in out.decode()  # started afresh, not resumed
    saved = checkpoint.list_checkpoints(run_dir / "checkpoints")
    newest = saved[-1]
    data = bytearray((newest / checkpoint.TENSORS).read_bytes())
    data[-1] ^= 0xFF  # the newest checkpoint goes bad on disk
    (newest / checkpoint.TENSORS).write_bytes(bytes(data))

    result = subprocess.run(command(config, run_dir, False), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"passing over a broken checkpoint: {newest / checkpoint.TENSORS}" in result.stderr
    resumed_from = int(saved[-2].name.split("-")[1])
    assert f"resuming {run_dir} from step {resumed_from} (the run there has this config)" in result.stdout
    final = checkpoint.load(checkpoint.list_checkpoints(run_dir / "checkpoints")[-1])[0]
    expected = checkpoint.load(checkpoint.list_checkpoints(reference / "checkpoints")[-1])[0]
    for name in expected:
        assert torch.equal(final[name], expected[name]), name

    other = tmp_path / "other.toml"
    other.write_text(CONFIG.replace("steps = 300", "steps = 121"))
    result = subprocess.run(command(other, run_dir, False), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert (f"rlgan: error: {run_dir} holds a run of another config (run.steps: 120 there, 121 here); pick another "
            f"--run-dir, or continue that run with: rlgan train --resume {run_dir}") in result.stderr
