"""The elbo strategy: the generator trained as a VAE's decoder, and the finished VAE fine-tuned as any generator."""

import json
from pathlib import Path

import pytest
import torch

from rlgan_core.checkpoint import load, newest
from rlgan_core.config import load_config, parse_config
from rlgan_core.engine import Engine
from rlgan_core.errors import ConfigError
from rlgan_core.testing import check_strategy, quick_config

DECODER = {"name": "mlp_generator", "latent_dim": 8, "hidden": [64]}


def vae_config(steps=6, **strategy):
    return quick_config(run={"steps": steps, "batch_size": 32}, generator=DECODER, discriminator=None, rewards={},
                        strategy={"name": "elbo", "encoder": [64], **strategy})


def test_the_bound_is_the_gaussian_kl_and_the_bernoulli_likelihood(tmp_path):
    engine = Engine(parse_config(vae_config(), "test"), tmp_path / "run")
    strategy, x = engine.strategy, engine.context.dataset["x"][:5]
    noise = torch.randn(5, 8)
    reconstruction, kl = strategy.bound(x, noise, engine.context.generator)
    mean, log_variance = engine.context.models["encoder"](x)
    posterior = torch.distributions.Normal(mean, (0.5 * log_variance).exp())
    expected_kl = torch.distributions.kl_divergence(posterior, torch.distributions.Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(kl, expected_kl)
    p = (engine.context.generator(mean + posterior.stddev * noise) + 1) / 2
    target = (x + 1) / 2
    torch.testing.assert_close(reconstruction, (target * p.log() + (1 - target) * (1 - p).log()).sum(1))


def test_the_gaussian_likelihood_has_the_pixel_std(tmp_path):
    engine = Engine(parse_config(vae_config(likelihood="gaussian", pixel_std=0.5), "test"), tmp_path / "run")
    x, noise = engine.context.dataset["x"][:3], torch.zeros(3, 8)
    reconstruction, _ = engine.strategy.bound(x, noise, engine.context.generator)
    decoded = engine.context.generator(engine.context.models["encoder"](x)[0])
    torch.testing.assert_close(reconstruction, torch.distributions.Normal(decoded, 0.5).log_prob(x).sum(1))


def test_training_raises_the_elbo_and_brings_samples_to_the_digits(tmp_path):
    config = vae_config(steps=400, warmup=100)
    config["evaluation"] = {"every": 400, "samples": 500}
    config["optimizer"] = {"generator_lr": 3e-3}
    summary = Engine(parse_config(config, "test"), tmp_path / "run").run()
    assert summary["elbo"] > summary["elbo_initial"] + 10
    assert summary["frechet_distance"] < summary["frechet_distance_initial"] / 5
    assert summary["classes_covered"] >= 9
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("policy/elbo" in row and "policy/kl" in row for row in logged)


def test_the_kl_weight_warms_up(tmp_path):
    strategy = Engine(parse_config(vae_config(beta=0.5, warmup=10), "test"), tmp_path / "run").strategy
    assert [strategy.kl_weight(step) for step in (0, 4, 9, 50)] == [0.05, 0.25, 0.5, 0.5]


def test_a_resumed_vae_run_ends_as_an_uninterrupted_one():
    check_strategy(vae_config(warmup=3))


@pytest.mark.parametrize("strategy", [
    {"name": "latent_policy", "beta": 0.5, "flow": "affine", "transforms": 1, "hidden": [8]},
    {"name": "reinforce", "beta": 0.5},
])
def test_a_finished_vae_fine_tunes_as_a_generator(tmp_path, strategy):
    Engine(parse_config(vae_config(steps=20), "test"), tmp_path / "vae").run()
    decoder = {**DECODER, "noise": 0.1} if strategy["name"] == "reinforce" else DECODER
    tuned = quick_config(run={"steps": 3, "batch_size": 32}, generator=decoder, discriminator=None,
                         strategy={**strategy, "init_from": str(tmp_path / "vae")},
                         rewards={"mirror_symmetry": {}})
    engine = Engine(parse_config(tuned, "test"), tmp_path / "tuned")
    saved, _ = load(newest(tmp_path / "vae"))  # the decoder it starts from
    weight = engine.context.generator.state_dict()["net.0.weight"]
    assert any(torch.equal(weight, tensor) for tensor in saved.values())
    summary = engine.run()
    assert summary["steps"] == 3 and summary["started_from"]


@pytest.mark.parametrize("options, message", [
    ({"likelihood": "poisson"}, "likelihood must be one of"),
    ({"beta": -1.0}, "beta and warmup must be >= 0"),
    ({"pixel_std": 0.0}, "pixel_std > 0"),
    ({"encoder": []}, "encoder must be a non-empty list"),
])
def test_bad_elbo_options_are_named(tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        Engine(parse_config(vae_config(**options), "test"), tmp_path / "run")


@pytest.mark.parametrize("name", ["vae_digits.toml", "vae_mnist.toml", "seed_mnist.toml"])
def test_the_shipped_vae_and_mnist_configs_train(tmp_path, name):
    config = load_config(Path(__file__).resolve().parent.parent / "configs" / name)
    config.run.steps, config.logging.progress = 2, False
    config.evaluation.samples = 100
    summary = Engine(config, tmp_path / "run").run()
    assert summary["steps"] == 2 and "frechet_distance" in summary and "classes_covered" in summary
    assert ("elbo" in summary) == (config.strategy.name == "elbo")
