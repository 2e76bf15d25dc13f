import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rlgan_core import ConfigError, read_metrics
from rlgan_core.config import parse_config
from rlgan_core.engine import Engine
from rlgan_diffusion.model import MLPDenoiser, cosine_schedule


class Plane:
    shape = (2,)


def config(**sections):
    raw = {
        "run": {"name": "ddpo", "steps": 30, "batch_size": 32, "device": "cpu"},
        "data": {"name": "gaussians", "layout": "ring", "samples": 2000},
        "generator": {"name": "mlp_denoiser", "hidden": [32, 32], "embedding": 16, "timesteps": 100, "sample_steps": 5},
        "strategy": {"name": "ddpo", "pretrain_steps": 10, "epochs": 2},
        "rewards": {"mirror_symmetry": {"width": 2}},  # a black box: -|x - y|, in NumPy
        "optimizer": {"generator_lr": 2e-3, "betas": [0.9, 0.999]},
        "evaluation": {"every": 10, "samples": 100},
        "checkpoint": {"every": 10, "keep": 2},
        "logging": {"every": 5, "progress": False, "tensorboard": False},
    }
    for name, values in sections.items():  # a table naming another plugin, or rewards, replaces the default
        raw[name] = values if name == "rewards" or "name" in values else {**raw[name], **values}
    return parse_config(raw, "test")


def test_schedule_and_sampler_noise():
    abar = cosine_schedule(1000)
    assert abar[0] > 0.999 and abar[-1] < 1e-3 and bool((abar[1:] < abar[:-1]).all())
    model = MLPDenoiser(Plane(), hidden=[16], embedding=8, timesteps=100, sample_steps=10)
    x, eps = torch.randn(10, 2), torch.randn(10, 2)
    mean, std = model.step_mean(x, torch.arange(10), eps)
    # DDPM's posterior standard deviation at eta = 1, zero at the last step (onto the clean sample)
    a, a_prev = model.abar_walk, model.abar_prev
    expected = ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).sqrt().float()
    torch.testing.assert_close(std.flatten(), expected)
    assert std.flatten()[-1] == 0 and bool((std.flatten()[:-1] > 0).all())
    # at the last step the mean is the predicted clean sample
    x0 = (x[-1] - (1 - a[-1]).sqrt().float() * eps[-1]) / a[-1].sqrt().float()
    torch.testing.assert_close(mean[-1], x0)
    # a step's log-probability is a diagonal Gaussian's
    value = mean + std * 0.5
    expected_log_prob = (-0.5 * 0.25 - std.log() - 0.5 * math.log(2 * math.pi)).flatten() * 2
    torch.testing.assert_close(model.log_prob(value[:-1], mean[:-1], std[:-1]), expected_log_prob[:-1])
    # sampling depends on the seed alone
    torch.testing.assert_close(model.sample(5, seed=3), model.sample(5, seed=3))


def test_denoising_pretraining_learns(tmp_path):
    engine = Engine(config(run={"steps": 300}, strategy={"pretrain_steps": 300}), tmp_path)
    losses = []
    for _ in range(300):
        assert engine.strategy.phase(engine.state.step) == "denoise"
        losses.append(float(engine.train_step().losses["denoise"]))
        engine.state.step += 1
    assert np.mean(losses[-50:]) < 0.75 * np.mean(losses[:50])


def test_ddpo_raises_a_black_box_reward(tmp_path):
    """Pre-trained on the ring, then pulled towards the diagonal x = y."""
    engine = Engine(config(run={"steps": 260}, strategy={"pretrain_steps": 200, "policy_lr": 3e-3}), tmp_path)
    summary = engine.run()
    start, end = summary["reward_mirror_symmetry_denoise"], summary["reward_mirror_symmetry"]
    assert end > start + 0.5 * abs(start)


def test_ddpo_needs_a_diffusion_model_and_black_box_rewards(tmp_path):
    with pytest.raises(ConfigError, match="diffusion model"):
        Engine(config(generator={"name": "mlp_generator", "latent_dim": 2, "hidden": [8]}), tmp_path / "a")
    with pytest.raises(ConfigError, match="does not use"):  # realism reads a discriminator ddpo lacks
        Engine(config(rewards={"realism": {}}), tmp_path / "b")


DDP_CONFIG = """
[run]
name = "ddpo-ddp"
steps = 12
batch_size = {batch}
device = "cpu"
[data]
name = "gaussians"
layout = "ring"
samples = 2000
[generator]
name = "mlp_denoiser"
hidden = [32, 32]
embedding = 16
timesteps = 100
sample_steps = 5
[strategy]
name = "ddpo"
pretrain_steps = 6
epochs = 2
kl_coef = 0.1
[rewards.mirror_symmetry]
width = 2
[evaluation]
every = 6
samples = 100
[checkpoint]
every = 6
[logging]
progress = false
tensorboard = false
"""


def test_two_processes_equal_one_with_the_doubled_batch(tmp_path):
    def train(name, batch, *extra):
        path = tmp_path / f"{name}.toml"
        path.write_text(DDP_CONFIG.format(batch=batch))
        run_dir = tmp_path / name
        subprocess.run([sys.executable, "-m", "rlgan_core", "train", str(path), "--run-dir", str(run_dir), *extra],
                       check=True, capture_output=True, text=True, timeout=300)
        return load_file(sorted((run_dir / "checkpoints").glob("step-*"))[-1] / "tensors.safetensors")

    two, one = train("two", 8, "--nproc", "2"), train("one", 16)
    names = [name for name in one if name.startswith("generator.")]
    assert names
    for name in names:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5)


def test_the_kl_reference_is_the_model_the_ddpo_phase_starts_from(tmp_path):
    engine = Engine(config(strategy={"pretrain_steps": 5, "kl_coef": 0.1}), tmp_path)
    for _ in range(5):
        engine.train_step()
        engine.state.step += 1
    pretrained = {k: v.clone() for k, v in engine.generator.state_dict().items()}
    output = engine.train_step()  # the first DDPO round: KL 0 before its update
    reference = engine.models["reference"].state_dict()
    assert all(torch.equal(reference[k], v) for k, v in pretrained.items())
    assert not all(torch.equal(engine.generator.state_dict()[k], v) for k, v in pretrained.items())
    assert "generator" in output.losses
    figures = output.diagnostics  # of the round's second epoch, after one update: off the reference
    assert set(figures) == {"entropy", "std", "kl", "clip_fraction"}
    assert figures["std"] > 0 and figures["kl"] > 0 and 0 < figures["clip_fraction"] <= 1
    assert torch.isfinite(figures["entropy"])


def test_beta_folds_the_trajectory_log_ratio_into_mean_centred_advantages(tmp_path, monkeypatch):
    engine = Engine(config(strategy={"pretrain_steps": 2, "beta": 0.5}), tmp_path)
    for _ in range(2):
        engine.train_step()
        engine.state.step += 1
    seen = {}
    kl_regularised = engine.context.kl_regularised_advantages

    def spy(rewards, log_ratio, beta, weights=None):
        seen["log_ratio"], seen["beta"] = log_ratio.clone(), beta
        seen["advantages"] = kl_regularised(rewards, log_ratio, beta, weights)
        return seen["advantages"]

    monkeypatch.setattr(engine.context, "kl_regularised_advantages", spy)
    first = engine.train_step()  # sampled by the reference itself: every log-ratio is 0
    assert seen["beta"] == 0.5 and torch.equal(seen["log_ratio"], torch.zeros_like(seen["log_ratio"]))
    assert float(seen["advantages"].mean()) == pytest.approx(0.0, abs=1e-9)
    assert first.diagnostics["trajectory_kl"] == 0
    engine.state.step += 1
    engine.train_step()  # after an update: the trajectories' log-ratios are not 0
    assert seen["log_ratio"].abs().sum() > 0
    with pytest.raises(ConfigError, match="beta or kl_coef"):
        Engine(config(strategy={"kl_coef": 0.1, "beta": 0.1}), tmp_path / "both")


class ZeroCritic(torch.nn.Module):
    def forward(self, samples):
        return torch.zeros(len(samples))


class FirstCoordinateCritic(torch.nn.Module):
    def forward(self, samples):
        return samples[:, 0]


def test_proposals_resample_trajectories_towards_the_critics_tilt_of_the_reference(tmp_path):
    engine = Engine(config(strategy={"pretrain_steps": 0, "beta": 0.5, "critic": [8], "proposals": 64},
                           generator={"clip_sample": 1.0}), tmp_path)
    engine.state.step = 1  # after a DDPO round: sampling resamples
    reference = engine.models["reference"]
    with torch.no_grad():
        expected = reference.sample(20000, seed=1)
        # the model drifts from the reference; with a zero critic, the path weights p_ref / q bring it back
        engine.generator.net[-1].bias += 0.1
        drifted = engine.generator.sample(20000, seed=2)
    engine.context.models["critic"] = ZeroCritic()
    resampled = engine.generate(20000, seed=3)
    assert (drifted.mean(0) - expected.mean(0)).abs().min() > 0.08
    torch.testing.assert_close(resampled.mean(0), expected.mean(0), atol=0.03, rtol=0)
    # at the reference, a critic c(x) = x[0] resamples towards p_ref(x)·exp(x[0] / β) / Z: the
    # reference's samples weighted by exp(x[0] / β) have the same mean
    engine.generator.load_state_dict(reference.state_dict())
    engine.context.models["critic"] = FirstCoordinateCritic()
    weights = torch.softmax(expected[:, 0] / 0.5, 0)
    tilted = (weights[:, None] * expected).sum(0)
    assert float(tilted[0] - expected[:, 0].mean()) > 0.1
    torch.testing.assert_close(engine.generate(20000, seed=4).mean(0), tilted, atol=0.03, rtol=0)


def test_ddpo_fits_its_critic_to_each_rounds_rewards(tmp_path):
    engine = Engine(config(strategy={"pretrain_steps": 2, "beta": 0.5, "critic": [16], "proposals": 4}), tmp_path)
    summary = engine.run()
    assert engine.generate(7, seed=0).shape == (7, 2)
    losses = [record["loss/critic"] for record in read_metrics(tmp_path) if "loss/critic" in record]
    assert losses and all(math.isfinite(loss) for loss in losses)
    assert summary["steps"] == 30
    with pytest.raises(ConfigError, match="set beta"):
        Engine(config(strategy={"critic": [8]}), tmp_path / "no-beta")
    with pytest.raises(ConfigError, match="needs a critic"):
        Engine(config(strategy={"beta": 0.5, "proposals": 4}), tmp_path / "no-critic")
