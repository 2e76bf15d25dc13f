"""The ``gan`` strategy: the engine's default step for continuous generators.

One step is ``optimizer.discriminator_steps`` discriminator updates on real and generated
batches, then one generator update in which the configured rewards become advantages that weight
the non-saturating generator loss (``rlgan_core.ops.reward_weighted_gan_loss``); rewards with
``pathwise = true`` also pass their gradient to the generator directly.
"""

import time

import torch
import torch.nn.functional as F

from .. import distributed
from ..hookspecs import hookimpl
from ..reward import RewardContext
from ..strategy import Strategy


class GAN(Strategy):
    def step(self):
        engine = self.engine
        started = time.perf_counter()
        for _ in range(engine.config.optimizer.discriminator_steps):
            batch = engine.next_batch()
            real = batch["x"]
            with torch.no_grad():
                fake = engine.generator(engine.sample_latents())
            logits = engine.trained_discriminator(torch.cat([real, fake]))
            discriminator_loss = F.softplus(-logits[: len(real)]).mean() + F.softplus(logits[len(real) :]).mean()
            engine.discriminator_optimizer.zero_grad(set_to_none=True)
            discriminator_loss.backward()
            engine.discriminator_optimizer.step()

        latents = engine.sample_latents()
        fake = engine.trained_generator(latents)
        engine.discriminator.requires_grad_(False)
        logits = engine.discriminator(fake)
        context = RewardContext(
            engine.state.step, engine.generator, engine.discriminator, logits, latents, batch, engine.data, engine.device
        )
        rewards = engine.compute_rewards(fake, context)
        losses = {"discriminator": discriminator_loss.detach()}
        if rewards is not None:
            loss_config = engine.config.loss
            loss = distributed.reward_weighted_gan_loss(
                logits,
                rewards.detach(),
                engine.reward_weights,
                baseline=loss_config.baseline,
                temperature=loss_config.temperature,
                eps=loss_config.eps,
            )
            pathwise = [r.weight * rewards[:, i].mean() for i, r in enumerate(engine.rewards) if r.pathwise]
            generator_loss = loss - sum(pathwise) if pathwise else loss
            engine.generator_optimizer.zero_grad(set_to_none=True)
            generator_loss.backward()
            engine.generator_optimizer.step()
            losses["generator"] = generator_loss.detach()
        engine.discriminator.requires_grad_(True)
        return engine.step_output(losses, rewards, started, len(latents))


@hookimpl
def rlgan_register_strategies(register):
    register("gan", GAN)
