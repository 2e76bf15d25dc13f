"""The reinforce strategy: the generator as a policy, trained by score-function gradients on rewards
that are plain functions of the samples."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rlgan_core import Reward, checkpoint, hookimpl
from rlgan_core.builtin.strategies import ppo_loss, reinforce_loss
from rlgan_core.checkpoint import list_checkpoints
from rlgan_core.config import parse_config
from rlgan_core.engine import Engine
from rlgan_core.errors import ConfigError
from rlgan_core.ops import advantages
from rlgan_core.plugins import get_plugin_manager

from helpers import tiny_config


@pytest.mark.parametrize("entropy_coef", [0.0, 0.1])
def test_score_function_gradient_of_a_1d_gaussian(entropy_coef):
    """pi = N(mu, sigma^2), r(x) = -(x - c)^2: E[r] = -((mu - c)^2 + sigma^2), so
    dE/dmu = -2 (mu - c) and dE/dlog sigma = -2 sigma^2; the entropy log sigma + const adds 1 to the
    latter.  The surrogate's gradient is minus the estimate of these."""
    mu, log_sigma, c = torch.tensor(0.3, requires_grad=True), torch.tensor(math.log(0.5), requires_grad=True), 1.0
    torch.manual_seed(0)
    policy = torch.distributions.Normal(mu, log_sigma.exp().expand(200_000))
    samples = policy.sample()
    rewards = -(samples - c) ** 2
    loss = reinforce_loss(policy, samples, advantages(rewards, "mean", 1e-8).float(), entropy_coef)
    grad_mu, grad_log_sigma = torch.autograd.grad(loss, (mu, log_sigma))
    sigma = 0.5
    assert grad_mu.item() == pytest.approx(2 * (0.3 - c), rel=0.03)
    assert grad_log_sigma.item() == pytest.approx(2 * sigma**2 - entropy_coef, rel=0.05)


def test_ppo_surrogate_is_the_policy_gradient_at_ratio_one_and_clips():
    mu = torch.tensor([0.2, -0.4], requires_grad=True)
    policy = torch.distributions.Normal(mu, torch.ones(2))
    samples, advantages = torch.tensor([1.0, 0.5]), torch.tensor([1.5, -0.7])
    old = policy.log_prob(samples).detach()
    (ppo_grad,) = torch.autograd.grad(ppo_loss(policy, samples, old, advantages, clip=0.2), mu)
    (reinforce_grad,) = torch.autograd.grad(reinforce_loss(policy, samples, advantages), mu)
    torch.testing.assert_close(ppo_grad, reinforce_grad)
    # a ratio beyond 1 + clip with a positive advantage (and below 1 - clip with a negative one) stops
    # pulling: no gradient
    (clipped,) = torch.autograd.grad(ppo_loss(policy, samples, old - torch.tensor([0.5, -0.5]), advantages, 0.2), mu)
    assert torch.equal(clipped, torch.zeros(2))


class Brightness(Reward):
    """A black box: the mean pixel, computed in NumPy."""

    def __call__(self, samples, context):
        values = samples.cpu().numpy().reshape(len(samples), -1).mean(axis=1)
        return torch.from_numpy(np.asarray(values, dtype=np.float32)).to(samples.device)


class BrightnessPlugin:
    @hookimpl
    def rlgan_register_rewards(self, register):
        register("numpy_brightness", Brightness)


@pytest.fixture
def brightness():
    pm = get_plugin_manager()
    pm.register(BrightnessPlugin(), name="numpy-brightness-test-plugin")
    yield
    pm.unregister(name="numpy-brightness-test-plugin")


def reinforce_config(**sections):
    defaults = {
        "strategy": {"name": "reinforce", "discriminator_steps": 0},
        "generator": {"name": "mlp_generator", "latent_dim": 8, "hidden": [32], "noise": 0.1},
        "optimizer": {"generator_lr": 1e-3},
        "rewards": {"numpy_brightness": {"weight": 1.0}},
    }
    return tiny_config(**{**defaults, **sections})


@pytest.mark.parametrize("strategy", [{"name": "reinforce"}, {"name": "ppo", "epochs": 3}], ids=["reinforce", "ppo"])
def test_policy_strategies_raise_a_numpy_reward(tmp_path, brightness, strategy):
    config = reinforce_config(run={"steps": 150, "batch_size": 64}, strategy={**strategy, "discriminator_steps": 0})
    engine = Engine(config, tmp_path)
    before = engine.generate(500).flatten(1).mean().item()
    engine.run()
    after = engine.generate(500).flatten(1).mean().item()
    assert after > before + 0.1, (before, after)  # from about 0.02 to about 0.18 in 150 steps


def test_reinforce_resumes_exactly(tmp_path, brightness):
    uninterrupted = Engine(reinforce_config(), tmp_path / "full")
    uninterrupted.run()
    Engine(reinforce_config(run={"steps": 10}), tmp_path / "part").run()
    resumed = Engine(reinforce_config(), tmp_path / "part")
    resumed.load_checkpoint(list_checkpoints(tmp_path / "part" / "checkpoints")[-1])
    resumed.run()
    for name, value in uninterrupted.generator.state_dict().items():
        assert torch.equal(value, resumed.generator.state_dict()[name]), name


def test_reinforce_needs_a_policy(tmp_path, brightness):
    with pytest.raises(ConfigError, match="needs a generator that is a policy"):
        Engine(tiny_config(strategy={"name": "reinforce"}), tmp_path / "a")


@pytest.mark.parametrize("name", ["reinforce", "ppo"])
def test_a_config_without_a_discriminator_table_trains_no_discriminator(tmp_path, brightness, name):
    raw = {
        "run": {"name": "nodisc", "steps": 20, "batch_size": 16, "device": "cpu"},
        "strategy": {"name": name},
        "generator": {"name": "mlp_generator", "latent_dim": 8, "hidden": [32], "noise": 0.1},
        "rewards": {"numpy_brightness": {}},
        "evaluation": {"every": 10, "samples": 100},
        "checkpoint": {"every": 10},
        "logging": {"progress": False, "tensorboard": False},
    }
    engine = Engine(parse_config(raw), tmp_path)
    summary = engine.run()
    assert list(engine.models) == ["generator"] and summary["steps"] == 20
    tensors, state = checkpoint.load(list_checkpoints(tmp_path / "checkpoints")[-1])
    assert state["roles"] == ["generator"] and not any(k.startswith("discriminator") for k in tensors)
    # the realism reward reads a discriminator: asking for it builds one (the default model)
    with_realism = Engine(parse_config({**raw, "rewards": {"realism": {}, "numpy_brightness": {}}}), tmp_path / "r")
    assert list(with_realism.models) == ["generator", "discriminator"]


def test_a_pathwise_reward_trains_through_reparameterised_samples(tmp_path):
    """digit_class alone, pathwise: its gradient reaches the policy's mean through x = mean + std * noise."""
    config = reinforce_config(run={"steps": 60, "batch_size": 32}, rewards={"digit_class": {"pathwise": True, "target": 3}})
    summary = Engine(config, tmp_path).run()
    assert summary["reward_digit_class"] > summary["reward_digit_class_initial"] + 1.0


DDP_CONFIG = """
[run]
steps = 12
batch_size = {batch}
device = "cpu"
[strategy]
name = "reinforce"
[loss]
baseline = "whiten"
entropy_coef = 0.01
[rewards.realism]
weight = 1.0
[rewards.digit_class]
weight = 0.5
target = 3
[generator]
name = "mlp_generator"
latent_dim = 8
hidden = [32]
noise = 0.2
[discriminator]
name = "mlp_discriminator"
hidden = [32]
[evaluation]
every = 12
samples = 100
[checkpoint]
every = 12
[logging]
progress = false
tensorboard = false
"""


@pytest.mark.parametrize("strategy", ["reinforce", "ppo"])
def test_policy_strategies_two_processes_equal_one_with_the_doubled_batch(tmp_path, strategy):
    def train(name, batch, *extra):
        config = tmp_path / f"{name}.toml"
        config.write_text(DDP_CONFIG.format(batch=batch).replace('name = "reinforce"', f'name = "{strategy}"'))
        run_dir = tmp_path / name
        subprocess.run([sys.executable, "-m", "rlgan_core", "train", str(config), "--run-dir", str(run_dir), *extra],
                       check=True, capture_output=True, text=True, timeout=300)
        return load_file(sorted((run_dir / "checkpoints").glob("step-*"))[-1] / "tensors.safetensors")

    two, one = train("two", 16, "--nproc", "2"), train("one", 32)
    names = [name for name in one if name.startswith("generator.")]
    assert "generator.log_std" in names
    for name in names:
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-6)


def test_init_from_a_trained_run_and_the_kl_penalty(tmp_path, brightness):
    Engine(tiny_config(run={"steps": 10}), tmp_path / "pretrained").run()
    saved, _ = checkpoint.load(list_checkpoints(tmp_path / "pretrained" / "checkpoints")[-1])

    def moved(kl_coef):
        config = reinforce_config(run={"steps": 40, "batch_size": 64},
                                  strategy={"name": "ppo", "discriminator_steps": 0, "epochs": 2,
                                            "init_from": str(tmp_path / "pretrained"), "kl_coef": kl_coef})
        engine = Engine(config, tmp_path / f"kl{kl_coef}")
        start = {k: v.clone() for k, v in engine.generator.state_dict().items()}
        for name, value in start.items():  # the policy starts as the trained run samples (and its own std)
            if name != "log_std":
                assert torch.equal(value, saved[f"generator_ema.{name}"]), name
        engine.run()
        return sum(float((v - start[k]).norm()) for k, v in engine.generator.state_dict().items() if k != "log_std")

    assert moved(10.0) < 0.5 * moved(0.0)  # the KL penalty keeps the policy near where it started
    with pytest.raises(ConfigError, match="no checkpoint there"):
        Engine(reinforce_config(strategy={"name": "ppo", "init_from": str(tmp_path / "nothing")}), tmp_path / "x")


def test_init_from_loads_the_sampled_weights_records_them_and_resume_needs_no_base_run(tmp_path, brightness, monkeypatch):
    generator = {"name": "mlp_generator", "latent_dim": 8, "hidden": [32]}
    Engine(tiny_config(run={"steps": 10}, generator=generator, strategy={"name": "gan", "ema_decay": 0.9}),
           tmp_path / "base").run()
    newest = list_checkpoints(tmp_path / "base" / "checkpoints")[-1]
    saved, state = checkpoint.load(newest)
    assert not torch.equal(saved["generator_ema.net.0.weight"], saved["generator.net.0.weight"])
    monkeypatch.chdir(tmp_path)  # a relative init_from is read from where training starts

    def config(weights):
        return reinforce_config(run={"steps": 4, "batch_size": 16}, strategy={
            "name": "reinforce", "discriminator_steps": 0, "init_from": "base", "kl_coef": 1.0, "init_weights": weights})

    for weights, role in (("average", "generator_ema"), ("raw", "generator")):
        engine = Engine(config(weights), tmp_path / weights)
        for name, value in engine.generator.state_dict().items():
            if name != "log_std":
                assert torch.equal(value, saved[f"{role}.{name}"]), (weights, name)
        summary = engine.run()
        assert summary["started_from"] == {"run": str(tmp_path / "base"), "checkpoint": str(newest),
                                           "tensors_sha256": state["tensors_sha256"], "generator_weights": role}
    (tmp_path / "base").rename(tmp_path / "moved")
    monkeypatch.chdir(tmp_path / "moved")
    resumed = Engine(config("average"), tmp_path / "average")  # its own checkpoints have every model
    resumed.load_checkpoint(list_checkpoints(tmp_path / "average" / "checkpoints")[-1])
    assert torch.equal(resumed.models["reference"].net[0].weight, saved["generator_ema.net.0.weight"])
    assert resumed.context.started_from["run"] == str(tmp_path / "base")  # from its checkpoint, for its summary
    with pytest.raises(ConfigError, match="no checkpoint there"):
        Engine(config("average"), tmp_path / "fresh")
    with pytest.raises(ConfigError, match="init_weights"):
        Engine(config("best"), tmp_path / "other")


def test_mirror_symmetry_is_a_numpy_black_box():
    from rlgan_core.builtin.rewards import MirrorSymmetry

    symmetric = torch.tensor([[1.0, -1.0, -1.0, 1.0], [0.5, 0.0, 0.0, 0.5]]).unsqueeze(0)  # [1, 2, 4]
    lopsided = torch.tensor([[1.0, 0.0, 0.0, -1.0], [1.0, 1.0, -1.0, -1.0]]).unsqueeze(0)
    values = MirrorSymmetry(width=4)(torch.cat([symmetric, lopsided]).requires_grad_(), None)
    assert values.dtype == torch.float32 and not values.requires_grad
    assert values[0].item() == 0 and values[1].item() == pytest.approx(-(2 + 2 + 2 + 2 + 2 + 2) / 8)


def test_inside_box_is_a_numpy_black_box():
    from rlgan_core.builtin.rewards import InsideBox

    points = torch.tensor([[0.5, 0.5], [1.5, 0.5], [1.0, 0.0], [-0.1, 0.2]], requires_grad=True)
    values = InsideBox(lower=[0.0, 0.0], upper=[1.0, 1.0])(points, None)
    assert values.tolist() == [1.0, 0.0, 1.0, 0.0] and not values.requires_grad
    with pytest.raises(ValueError, match="lower <= upper"):
        InsideBox(lower=[1.0, 0.0], upper=[0.0, 1.0])
    with pytest.raises(ValueError, match="3 bounds"):
        InsideBox(lower=[0, 0, 0], upper=[1, 1, 1])(points, None)


def test_is_policy_and_check_policy():
    from rlgan_core import is_policy
    from rlgan_core.builtin.models import MLPGenerator
    from rlgan_core.testing import ContractError, check_policy

    class Digits:
        shape = (64,)

    assert not is_policy(MLPGenerator(Digits(), latent_dim=8, hidden=[16]))  # noise = 0: deterministic
    policy = MLPGenerator(Digits(), latent_dim=8, hidden=[16], noise=0.1)
    assert is_policy(policy)
    check_policy(policy, Digits(), pathwise=True)

    class PerElement(MLPGenerator):  # log_prob [N, 64]: forgot to sum over a sample's elements
        def distribution(self, outputs):
            return torch.distributions.Normal(outputs, self.log_std.exp().expand_as(outputs))

    with pytest.raises(ContractError, match=r"log_prob is one value per sample, shape \(4,\).*\(4, 64\)"):
        check_policy(PerElement(Digits(), latent_dim=8, hidden=[16], noise=0.1), Digits())

    class Detached(MLPGenerator):  # samples' log-probabilities that never reach the parameters
        def distribution(self, outputs):
            return super().distribution(outputs.detach())

    detached = Detached(Digits(), latent_dim=8, hidden=[16], noise=0.1)
    detached.log_std.requires_grad_(False)
    with pytest.raises(ContractError, match="log_prob carries gradients"):
        check_policy(detached, Digits())


def test_policy_strategies_log_entropy_std_kl_and_clip_fraction(tmp_path, brightness):
    from rlgan_core import read_metrics

    def records(name, **strategy):
        config = reinforce_config(run={"steps": 4, "batch_size": 16}, logging={"every": 1},
                                  strategy={"name": name, "kl_coef": 0.5, **strategy})
        Engine(config, tmp_path / name).run()
        return [r for r in read_metrics(tmp_path / name) if "policy/entropy" in r]

    logged = records("reinforce")
    assert len(logged) == 4
    assert logged[0]["policy/kl"] == pytest.approx(0.0, abs=1e-6) and logged[-1]["policy/kl"] > 0  # from where it started
    assert logged[0]["policy/std"] == pytest.approx(0.1, rel=0.05)
    assert "policy/clip_fraction" not in logged[0]
    assert all(0.0 <= r["policy/clip_fraction"] <= 1.0 and r["policy/kl"] > 0 for r in records("ppo", epochs=2))


@pytest.mark.parametrize("name", ["reinforce", "ppo"])
def test_beta_tilts_each_latents_output_distribution_to_the_analytic_optimum(tmp_path, brightness, name):
    # a Gaussian policy N(G(z), σ²) and the reward mean(x) = a.x with a = (1/2, 1/2): the objective
    # E[r] - β KL(π || π_ref) has the optimum π_ref(x | z) exp(a.x / β) / Z = N(G(z) + σ² a / β, σ²)
    generator = {"name": "mlp_generator", "latent_dim": 2, "hidden": [], "output": "linear", "noise": 0.3}
    data = {"name": "gaussians", "samples": 2000}
    Engine(tiny_config(run={"steps": 2}, data=data, generator=generator), tmp_path / "base").run()
    config = reinforce_config(run={"steps": 300, "batch_size": 256}, data=data, generator=generator,
                              optimizer={"generator_lr": 1e-2},
                              strategy={"name": name, "init_from": str(tmp_path / "base"), "beta": 0.045})
    engine = Engine(config, tmp_path / name)
    latents = torch.randn(1000, 2)
    with torch.no_grad():
        before = engine.generator(latents)
    engine.run()
    with torch.no_grad():
        shift = (engine.generator(latents) - before).mean(0)
    torch.testing.assert_close(shift, torch.full((2,), 0.09 * 0.5 / 0.045), atol=0.12, rtol=0)
    torch.testing.assert_close(engine.generator.log_std.exp().detach(), torch.full((2,), 0.3), atol=0.05, rtol=0)


def test_kl_coef_still_runs_with_a_warning_and_not_beside_beta(tmp_path, brightness):
    with pytest.warns(UserWarning, match="kl_coef"):
        Engine(reinforce_config(run={"steps": 2}, strategy={"name": "reinforce", "kl_coef": 0.1}), tmp_path / "a").run()
    with pytest.raises(ConfigError, match="beta or kl_coef"):
        Engine(reinforce_config(strategy={"name": "ppo", "kl_coef": 0.1, "beta": 0.1}), tmp_path / "b")
