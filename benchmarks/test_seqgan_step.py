"""SeqGAN's generator step on its own workload (batch 64 x length 20 = 1280 rows, vocabulary
5000): the policy-gradient update with the fused loss against the fallback, and the whole
adversarial generator step (16 Monte Carlo rollouts scored by the text CNN, then the update)."""

import pytest
import torch

from conftest import DEVICES, synchronize
from rlgan_core import extension
from rlgan_core.config import load_config
from rlgan_core.engine import Engine
from rlgan_core.ops import policy_gradient_loss

pytest.importorskip("rlgan_seqgan")
CONFIG = "configs/seqgan_oracle.toml"


def make_engine(tmp_path, device, backend):
    config = load_config(CONFIG)
    config.run.device = device
    config.kernel.backend = backend
    config.data.options.update(sequences=2000, test_sequences=100)  # the workload does not depend on them
    return Engine(config, tmp_path)


@pytest.mark.parametrize("backend", ["fused", "fallback"])
@pytest.mark.parametrize("device", DEVICES)
def test_policy_gradient_update(benchmark, tmp_path, device, backend):
    """logits of the sampled batch -> policy_gradient_loss -> backward -> Adam step."""
    benchmark.group = f"seqgan generator update, N=1280 V=5000 ({device})"
    engine = make_engine(tmp_path, device, backend)
    generator, optimizer = engine.generator, engine.generator_optimizer
    tokens = generator(engine.sample_latents())
    advantages = torch.rand(tokens.shape, device=engine.device)

    def update():
        logits = generator.logits(tokens).flatten(0, 1)
        loss = policy_gradient_loss(logits, tokens.flatten(), advantages.flatten(), inplace=True)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        synchronize(device)

    benchmark.pedantic(update, rounds=50 if device == "cpu" else 300, iterations=1, warmup_rounds=5)
    extension.set_backend(None)


@pytest.mark.parametrize("backend", ["fused", "fallback"])
@pytest.mark.parametrize("device", DEVICES)
def test_adversarial_generator_step(benchmark, tmp_path, device, backend):
    """Sample a batch, 16 rollouts per prefix scored by the discriminator, then the update."""
    benchmark.group = f"seqgan adversarial generator step with 16 rollouts ({device})"
    engine = make_engine(tmp_path, device, backend)

    def step():
        engine.strategy.policy_gradient_update()
        synchronize(device)

    benchmark.pedantic(step, rounds=3 if device == "cpu" else 20, iterations=1, warmup_rounds=1)
    extension.set_backend(None)

