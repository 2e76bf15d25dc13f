"""Small configs and helpers shared by the tests."""

from rlgan_core.config import parse_config


def tiny_config(**sections):
    """A digits config small enough to train in a second or two on a CPU."""
    raw = {
        "run": {"name": "tiny", "steps": 20, "batch_size": 16, "device": "cpu"},
        "generator": {"name": "mlp_generator", "latent_dim": 8, "hidden": [32]},
        "discriminator": {"name": "mlp_discriminator", "hidden": [32]},
        "evaluation": {"every": 10, "samples": 200},
        "checkpoint": {"every": 5, "keep": 2},
        "logging": {"every": 5, "progress": False, "tensorboard": False},
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values} if name != "rewards" else values
    return parse_config(raw, "test")
