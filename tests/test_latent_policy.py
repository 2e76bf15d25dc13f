"""The latent_policy strategy: a frozen generator's latent distribution tilted towards p*."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rlgan_core import Reward, hookimpl
from rlgan_core.checkpoint import list_checkpoints
from rlgan_core.config import load_config
from rlgan_core.engine import Engine
from rlgan_core.errors import ConfigError
from rlgan_core.plugins import get_plugin_manager

from helpers import rlgan, tiny_config

AFFINE = {"name": "mlp_generator", "latent_dim": 2, "hidden": [], "output": "linear"}


class FirstCoordinate(Reward):
    """x[0], in NumPy: a black box."""

    def __call__(self, samples, context):
        return torch.from_numpy(samples.cpu().numpy()[:, 0].astype(np.float32)).to(samples.device)


class FirstCoordinatePlugin:
    @hookimpl
    def rlgan_register_rewards(self, register):
        register("first_coordinate", FirstCoordinate)


@pytest.fixture
def first_coordinate():
    pm = get_plugin_manager()
    pm.register(FirstCoordinatePlugin(), name="first-coordinate-test-plugin")
    yield
    pm.unregister(name="first-coordinate-test-plugin")


def grid_config(**sections):
    raw = {"data": {"name": "gaussians", "layout": "grid", "std": 0.5, "samples": 2000}, "generator": AFFINE,
           "evaluation": {"every": 1000, "samples": 500}, "rewards": {"realism": {"weight": 1.0}}}
    return tiny_config(**{**raw, **sections})


@pytest.fixture
def base_run(tmp_path):
    Engine(grid_config(run={"steps": 2}), tmp_path / "base").run()
    return tmp_path / "base"


def latent_config(base, steps, **strategy):
    return grid_config(run={"steps": steps, "batch_size": 256},
                       strategy={"name": "latent_policy", "init_from": str(base), "beta": 0.5, "lr": 1e-2,
                                 "flow": "affine", "transforms": 2, "hidden": [16], **strategy},
                       rewards={"first_coordinate": {"weight": 1.0}})


@pytest.mark.parametrize("critic", [[], [32]], ids=["score-function", "with-a-critic"])
def test_the_tilted_latents_of_an_affine_generator_are_the_analytic_optimum(tmp_path, base_run, first_coordinate,
                                                                             critic):
    # G(z) = W z + b and r(x) = x[0]: r(G(z)) = w.z + c with w = W[0], so
    # q*(z) ∝ N(z; 0, I) exp(w.z / β) = N(z; w / β, I); a critic changes the gradient's variance only
    engine = Engine(latent_config(base_run, 300, critic=critic), tmp_path / "tilted")
    before = engine.strategy.sample(4000, seed=1)
    weight = engine.generator.net[0].weight[0].detach()
    engine.run()
    latents = engine.strategy.flow().sample((20000,))
    torch.testing.assert_close(latents.mean(0), weight / 0.5, atol=0.1, rtol=0)
    torch.testing.assert_close(latents.std(0), torch.ones(2), atol=0.1, rtol=0)
    gain = float(engine.strategy.sample(4000, seed=1)[:, 0].mean() - before[:, 0].mean())
    assert gain == pytest.approx(float(weight.square().sum()) / 0.5, abs=0.15)


@pytest.mark.parametrize("flow_shift", [0.0, -0.5], ids=["flow-at-its-start", "flow-off-target"])
def test_proposals_resample_the_flow_towards_the_critics_tilt(tmp_path, base_run, first_coordinate, flow_shift):
    # with the critic equal to the reward, resampling M proposals from any flow close enough
    # approaches q*(z) = N(z; w / β, I): the first coordinate's mean sits |w|² / β above p_ref's
    beta = 4.0
    engine = Engine(latent_config(base_run, 5, critic=[8], proposals=64, beta=beta), tmp_path / "tilted")
    weight = engine.generator.net[0].weight[0].detach()
    engine.context.models["latent_critic"] = FirstCoordinateCritic()
    engine.context.models["latent_policy"] = ShiftedNormal(flow_shift * weight / beta)
    with torch.no_grad():
        reference = engine.context.generator(torch.randn(100000, 2, generator=torch.Generator().manual_seed(2)))
        resampled = engine.strategy.sample(100000, seed=3)
    gain = float(resampled[:, 0].mean() - reference[:, 0].mean())
    assert gain == pytest.approx(float(weight.square().sum()) / beta, rel=0.15)
    assert engine.strategy.sample(10, seed=3).shape == (10, 2)


class FirstCoordinateCritic(torch.nn.Module):
    def forward(self, samples):
        return samples[:, 0]


class ShiftedNormal(torch.nn.Module):
    """A stand-in flow: N(shift, I)."""

    def __init__(self, shift):
        super().__init__()
        self.shift = shift

    def forward(self):
        return torch.distributions.Independent(torch.distributions.Normal(self.shift, torch.ones_like(self.shift)), 1)


def test_the_flow_starts_as_the_generators_prior_and_the_generator_stays_frozen(tmp_path, base_run, first_coordinate):
    engine = Engine(latent_config(base_run, 5), tmp_path / "tilted")
    latents = torch.randn(50, 2)
    distribution = engine.strategy.flow()
    torch.testing.assert_close(distribution.log_prob(latents),
                               torch.distributions.Normal(0.0, 1.0).log_prob(latents).sum(1))
    start = {name: value.clone() for name, value in engine.generator.state_dict().items()}
    engine.run()
    for name, value in engine.generator.state_dict().items():
        assert torch.equal(value, start[name]), name


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, base_run, first_coordinate):
    whole = Engine(latent_config(base_run, 10), tmp_path / "whole")
    whole.run()
    Engine(latent_config(base_run, 5), tmp_path / "half").run()
    resumed = Engine(latent_config(base_run, 10), tmp_path / "half")
    resumed.load_checkpoint(list_checkpoints(tmp_path / "half" / "checkpoints")[-1])
    assert resumed.state.step == 5
    resumed.run()
    expected, got = whole.strategy.flow.state_dict(), resumed.strategy.flow.state_dict()
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)


@pytest.mark.parametrize("strategy, message", [({"init_from": ""}, "needs init_from"),
                                               ({"beta": 0.0}, "beta must be > 0"),
                                               ({"flow": "maf"}, "flow must be"),
                                               ({"proposals": 4}, "more than 1 needs a critic")])
def test_bad_options_are_named(tmp_path, base_run, first_coordinate, strategy, message):
    with pytest.raises(ConfigError, match=message):
        Engine(latent_config(base_run, 5, **strategy), tmp_path / "bad")


def test_tilt_compare_measures_runs_against_the_target(tmp_path, base_run):
    box = ["--reward", "inside_box", "--option", "lower=[0.0, 0.0]", "--option", "upper=[5.0, 5.0]"]
    report = tmp_path / "compare.json"
    rlgan("tilt", str(base_run), *box, "--beta", "0.3", "-n", "4000", "--compare", str(base_run), "--json", str(report))
    target, reference, again = json.loads(report.read_text())["rows"]
    assert target["run"] == "p*" and target["gain_share"] == 1 and target["class_tv"] == 0
    assert target["reward"] > reference["reward"] and reference["gain_share"] == 0
    assert reference["class_tv"] > 0.05 and reference["frechet_to_target"] > 0.01
    # the reference run, drawn again, is as far from p* as its first draw
    assert again["gain_share"] == pytest.approx(0, abs=0.1)
    assert again["class_tv"] == pytest.approx(reference["class_tv"], abs=0.05)
    failed = rlgan("tilt", str(base_run), *box, "--beta", "0.3", "0.1", "--compare", str(base_run), check=False)
    assert failed.returncode != 0 and "exactly one --beta" in failed.stderr


@pytest.mark.parametrize("base, tuned", [("gaussians25.toml", "grid_box_kl.toml"),
                                         ("digits.toml", "digits_symmetry_kl.toml"),
                                         ("vae_digits.toml", "vae_digits_symmetry_kl.toml")])
def test_the_shipped_kl_configs_fine_tune_a_run_of_their_base_config(tmp_path, base, tuned):
    configs = Path(__file__).resolve().parent.parent / "configs"

    def quick(name):
        config = load_config(configs / name)
        config.run.steps, config.run.batch_size, config.logging.progress = 2, 16, False
        return config

    Engine(quick(base), tmp_path / "base").run()
    config = quick(tuned)
    config.strategy.options["init_from"] = str(tmp_path / "base")
    summary = Engine(config, tmp_path / "tuned").run()
    assert summary["started_from"]["run"] == str(tmp_path / "base") and (tmp_path / "tuned" / "summary.json").exists()
