"""The built-in strategies for continuous generators.

``gan`` (the default): ``optimizer.discriminator_steps`` discriminator updates on real and
generated batches, then one generator update in which the configured rewards become advantages
that weight the non-saturating generator loss (``rlgan_core.ops.reward_weighted_gan_loss``);
rewards with ``pathwise = true`` also pass their gradient to the generator directly.

``reinforce``: the generator as a policy (its ``distribution(outputs)``, see docs/plugins.md).
Each step samples from the policy, scores the samples with the configured rewards (any function of
the samples: they carry no gradient), and takes a score-function gradient step on
``-(A * log pi(x)).mean() - entropy_coef * H``, with the advantages ``A`` the weighted rewards less
the ``[loss] baseline`` over the global batch.  The discriminator, when a reward needs it (the
``realism`` reward), is trained as in ``gan``; ``discriminator_steps = 0`` skips that.

``ppo``: ``reinforce`` with ``epochs`` updates per sampled batch on PPO's clipped surrogate (the
importance ratio against the policy that drew the batch, clipped to ``1 ± clip``).

Both can start from a trained run (``init_from``) and add ``kl_coef * KL(pi || pi_ref)``, the
divergence from the frozen policy they started as, to keep close to it while chasing a reward.
"""

import copy
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import checkpoint, distributed
from ..errors import ConfigError
from ..hookspecs import hookimpl
from ..reward import RewardContext
from ..strategy import Strategy


def discriminator_updates(engine, steps):
    """``steps`` updates of the discriminator on real and generated batches; the last batch and loss."""
    batch, discriminator_loss = engine.next_batch(), torch.zeros((), device=engine.device)
    for index in range(steps):
        batch = batch if index == 0 else engine.next_batch()
        real = batch["x"]
        with torch.no_grad():
            fake = engine.generator(engine.sample_latents())
        logits = engine.trained_discriminator(torch.cat([real, fake]))
        discriminator_loss = F.softplus(-logits[: len(real)]).mean() + F.softplus(logits[len(real) :]).mean()
        engine.discriminator_optimizer.zero_grad(set_to_none=True)
        discriminator_loss.backward()
        engine.discriminator_optimizer.step()
    return batch, discriminator_loss.detach()


class GAN(Strategy):
    def step(self):
        engine = self.engine
        started = time.perf_counter()
        batch, discriminator_loss = discriminator_updates(engine, engine.config.optimizer.discriminator_steps)

        latents = engine.sample_latents()
        fake = engine.trained_generator(latents)
        engine.discriminator.requires_grad_(False)
        logits = engine.discriminator(fake)
        context = RewardContext(
            engine.state.step, engine.generator, engine.discriminator, logits, latents, batch, engine.data, engine.device
        )
        rewards = engine.compute_rewards(fake, context)
        losses = {"discriminator": discriminator_loss}
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


def reinforce_loss(distribution, samples, advantages, entropy_coef=0.0):
    """The score-function surrogate ``-(A * log pi(x)).mean() - entropy_coef * H.mean()``: its
    gradient is the REINFORCE estimate of the gradient of the expected advantage, plus the entropy
    bonus.  ``samples`` carry no gradient; ``advantages`` are constants."""
    loss = -(advantages.detach() * distribution.log_prob(samples.detach())).mean()
    if entropy_coef:
        loss = loss - entropy_coef * distribution.entropy().mean()
    return loss


def load_pretrained(engine, run_dir: str) -> None:
    """Start the generator and the discriminator from the newest checkpoint of ``run_dir`` (a run
    folder or a checkpoint folder); both must have this run's shapes.  Parameters the checkpoint
    lacks, such as a policy's standard deviation, keep their initial values."""
    path = Path(run_dir)
    found = checkpoint.list_checkpoints(path / "checkpoints") if (path / "checkpoints").is_dir() else [path]
    if not found or not (found[-1] / checkpoint.TENSORS).exists():
        raise ConfigError(f"[strategy] init_from = {run_dir!r}: no checkpoint there")
    tensors, _ = checkpoint.load(found[-1])
    for role, module in (("generator", engine.generator), ("discriminator", engine.discriminator)):
        saved = {k[len(role) + 1:]: v for k, v in tensors.items() if k.startswith(role + ".")}
        try:
            unexpected = module.load_state_dict(saved, strict=False).unexpected_keys
        except RuntimeError as error:  # shapes that differ
            raise ConfigError(f"[strategy] init_from = {run_dir!r}: its {role} does not fit this one ({error})") from None
        if unexpected:
            raise ConfigError(f"[strategy] init_from = {run_dir!r}: its {role} has parameters this one lacks: {unexpected}")


class Reinforce(Strategy):
    def __init__(self, engine, discriminator_steps: int = 1, init_from: str = "", kl_coef: float = 0.0):
        super().__init__(engine)
        if discriminator_steps < 0:
            raise ValueError(f"discriminator_steps must be >= 0, got {discriminator_steps}")
        if kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")
        generator = engine.generator
        needs = (f"[strategy] {engine.config.strategy.name} needs a generator that is a policy (docs/plugins.md); "
                 f"[generator] {engine.config.generator.name!r}")
        if not callable(getattr(generator, "distribution", None)):
            raise ConfigError(f"{needs} has no distribution(outputs) method")
        try:  # a model may be a policy only with some options (mlp_generator: noise > 0)
            with torch.no_grad():
                generator.distribution(generator(torch.zeros(1, generator.latent_dim, device=engine.device)))
        except TypeError as error:
            raise ConfigError(f"{needs}: {error}") from None
        for bound in engine.rewards:
            if bound.pathwise:
                raise ConfigError(
                    f"[rewards.{bound.name}] pathwise = true: {engine.config.strategy.name} uses rewards as black boxes"
                )
        self.discriminator_steps = discriminator_steps
        if init_from:
            load_pretrained(engine, init_from)
        # the frozen reference of the KL penalty: the policy as training starts (a resumed run
        # rebuilds it the same way, before its checkpoint is loaded)
        self.kl_coef = kl_coef
        self.reference = copy.deepcopy(engine.generator).requires_grad_(False) if kl_coef else None

    def kl_penalty(self, policy, latents):
        """kl_coef * KL(policy || reference policy), averaged over the batch (0 without a reference)."""
        if self.reference is None:
            return 0.0
        with torch.no_grad():
            reference = self.reference.distribution(self.reference(latents))
        return self.kl_coef * torch.distributions.kl_divergence(policy, reference).mean()

    def step(self):
        started = time.perf_counter()
        latents, outputs, samples, rewards, losses = self.rollout(differentiable=True)
        if rewards is not None:
            policy = self.engine.generator.distribution(outputs)
            advantages = self.advantages(rewards).to(samples.dtype)
            loss = reinforce_loss(policy, samples, advantages, self.engine.config.loss.entropy_coef)
            losses["generator"] = self.update(loss + self.kl_penalty(policy, latents))
        return self.engine.step_output(losses, rewards, started, len(latents))

    def rollout(self, differentiable=False):
        """The discriminator's updates, then a batch drawn from the policy and scored: the latents,
        the policy's outputs for them (``differentiable``: through the trained, data-parallel
        model, ready for a loss; else without gradient), its samples (no gradient), the rewards
        (``None`` for a skipped batch) and the losses so far."""
        engine = self.engine
        batch, discriminator_loss = discriminator_updates(engine, self.discriminator_steps)
        latents = engine.sample_latents()
        with torch.set_grad_enabled(differentiable):
            outputs = (engine.trained_generator if differentiable else engine.generator)(latents)
        with torch.no_grad():
            # drawn for the global batch on every rank, each keeping its rows: N processes draw
            # what one process would
            everyone = engine.generator.distribution(distributed.gather_rows(outputs.detach()))
            samples = distributed.local_part(self._sample(everyone))
            logits = engine.discriminator(samples)
        context = RewardContext(
            engine.state.step, engine.generator, engine.discriminator, logits, latents, batch, engine.data, engine.device
        )
        rewards = engine.compute_rewards(samples, context)
        losses = {"discriminator": discriminator_loss} if self.discriminator_steps else {}
        return latents, outputs, samples, rewards, losses

    def advantages(self, rewards):
        """The weighted rewards less ``[loss] baseline``, over the global batch."""
        config = self.engine.config.loss
        return distributed.advantages(rewards @ self.engine.reward_weights, config.baseline, config.eps)

    def update(self, loss):
        """One optimiser step of the generator on ``loss``; returns it, detached."""
        optimizer = self.engine.generator_optimizer
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    def _sample(self, distribution):
        """Draw from ``distribution`` under a seed taken from the engine's latent generator: every
        rank draws the same, and a resumed run draws what the uninterrupted one did (the default
        generator is not shared by the ranks, and rank 0's plugins may use it)."""
        engine = self.engine
        seed = int(torch.randint(2**62, (1,), generator=engine.latent_rng, device=engine.device))
        with torch.random.fork_rng(devices=[engine.device] if engine.device.type == "cuda" else []):
            torch.manual_seed(seed)
            return distribution.sample()


def ppo_loss(distribution, samples, old_log_prob, advantages, clip, entropy_coef=0.0):
    """PPO's clipped surrogate ``-min(rho A, clip(rho, 1 - clip, 1 + clip) A).mean() - entropy_coef * H``,
    with ``rho = pi(x) / pi_old(x)`` the importance ratio of the samples under the policy being
    trained against the one that drew them."""
    ratio = torch.exp(distribution.log_prob(samples.detach()) - old_log_prob.detach())
    advantages = advantages.detach()
    surrogate = torch.minimum(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages)
    loss = -surrogate.mean()
    if entropy_coef:
        loss = loss - entropy_coef * distribution.entropy().mean()
    return loss


class PPO(Reinforce):
    """``reinforce`` with several updates per sampled batch: ``epochs`` passes of PPO's clipped
    surrogate over the batch, the importance ratio taken against the policy that drew it."""

    def __init__(self, engine, discriminator_steps: int = 1, init_from: str = "", kl_coef: float = 0.0,
                 epochs: int = 4, clip: float = 0.2):
        super().__init__(engine, discriminator_steps, init_from, kl_coef)
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        if not clip > 0:
            raise ValueError(f"clip must be > 0, got {clip}")
        self.epochs, self.clip = epochs, clip

    def step(self):
        engine = self.engine
        started = time.perf_counter()
        latents, outputs, samples, rewards, losses = self.rollout()
        if rewards is not None:
            advantages = self.advantages(rewards).to(samples.dtype)
            with torch.no_grad():
                old_log_prob = engine.generator.distribution(outputs).log_prob(samples)
            for _ in range(self.epochs):
                policy = engine.generator.distribution(engine.trained_generator(latents))
                loss = ppo_loss(policy, samples, old_log_prob, advantages, self.clip, engine.config.loss.entropy_coef)
                losses["generator"] = self.update(loss + self.kl_penalty(policy, latents))
        return engine.step_output(losses, rewards, started, len(latents))


@hookimpl
def rlgan_register_strategies(register):
    register("gan", GAN)
    register("reinforce", Reinforce)
    register("ppo", PPO)
