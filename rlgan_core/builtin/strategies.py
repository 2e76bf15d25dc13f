"""The built-in strategies for continuous generators.

``gan`` (the default): ``optimizer.discriminator_steps`` discriminator updates on real and
generated batches, then one generator update in which the configured rewards become advantages
that weight the non-saturating generator loss (``rlgan_core.ops.reward_weighted_gan_loss``);
rewards with ``pathwise = true`` also pass their gradient to the generator directly.  Every
strategy here takes ``init_from = RUN_DIR``: start from the models of a trained run.

``reinforce``: the generator as a policy (its ``distribution(outputs)``, see docs/plugins.md).
Each step samples from the policy, scores the samples with the configured rewards (any function of
the samples: they carry no gradient), and takes a score-function gradient step on
``-(A * log pi(x)).mean() - entropy_coef * H``, with the advantages ``A`` the weighted rewards less
the ``[loss] baseline`` over the global batch.  A differentiable reward with ``pathwise = true``
(such as ``realism``) enters through its gradient instead, on the samples reparameterised as
``mean + std * noise``: ``- weight * reward(x).mean()`` joins the loss, and it has no part in
``A``.  The discriminator, when the run has one, is trained as in ``gan``, on the policy's
samples; ``discriminator_steps = 0`` skips that.

``ppo``: ``reinforce`` with ``epochs`` updates per sampled batch on PPO's clipped surrogate (the
importance ratio against the policy that drew the batch, clipped to ``1 ± clip``).

Both need only a ``generator``; a ``discriminator`` is built when the config has its table or a
reward reads it (``realism``).  Both can start from a trained run (``init_from``) and keep close to
the frozen ``reference`` policy they started as: with ``beta``, the KL-regularised objective
``E[r] - beta * KL(pi || pi_ref)``, the log-ratio ``log pi(x) - log pi_ref(x)`` of each sample
folded into its reward and the advantages mean-centred (never whitened: dividing by the rewards'
spread would change the effective beta as it shrinks), so that its optimum is the tilt
``pi_ref(x) * exp(r(x) / beta) / Z`` (docs/kl_target.md; for a generator with output noise, the
tilt of each latent's output distribution).  The older ``kl_coef`` adds
``kl_coef * KL(pi || pi_ref)`` to the loss beside whitened advantages, which targets no fixed
distribution; it keeps working, with a warning.
"""

import copy
import math
import time

import torch
import torch.nn.functional as F

from .. import distributed
from ..errors import ConfigError
from ..hookspecs import hookimpl
from ..policy import policy_problem
from ..strategy import Strategy, sample_model


def discriminator_updates(context, steps, generate=None, r1=0.0):
    """``steps`` updates of the discriminator on real and generated batches; the last batch and loss.
    ``generate(latents)`` makes the generated batch (by default ``generator(latents)``); ``r1 > 0``
    adds ``r1`` times the R1 penalty on the real batch (:func:`r1_penalty`, Mescheder et al. 2018)."""
    batch, discriminator_loss = context.next_batch(), torch.zeros((), device=context.device)
    for index in range(steps):
        batch = batch if index == 0 else context.next_batch()
        real = batch["x"].detach().requires_grad_() if r1 > 0 else batch["x"]
        with torch.no_grad():
            fake = (generate or context.generator)(context.sample_latents())
        logits = context.trained_discriminator(torch.cat([real, fake]))
        discriminator_loss = F.softplus(-logits[: len(real)]).mean() + F.softplus(logits[len(real) :]).mean()
        if r1 > 0:
            discriminator_loss = discriminator_loss + r1 * r1_penalty(logits[: len(real)], real)
        context.discriminator_optimizer.zero_grad(set_to_none=True)
        discriminator_loss.backward()
        context.discriminator_optimizer.step()
    return batch, discriminator_loss.detach()


def check_gan_models(context):
    """The models' part of the GAN contract, checked once before training, so that a model that
    breaks it fails with a line naming it rather than deep inside a step: the generator maps
    ``[N, latent_dim]`` latents to ``[N, *data.shape]`` samples, the discriminator those to ``[N]``
    logits, each on the run's device.  Probed in eval mode on zeros: no state or RNG moves."""
    config, shape = context.config, tuple(context.data.shape)
    generator, discriminator = context.generator, context.discriminator
    where = f"[generator] {config.generator.name!r}"
    if not isinstance(getattr(generator, "latent_dim", None), int):
        raise ConfigError(f"{where}: a generator under gan needs an integer latent_dim attribute")
    modes = (generator.training, discriminator.training)
    generator.eval(), discriminator.eval()
    try:
        with torch.no_grad():
            latents = torch.zeros(2, generator.latent_dim, device=context.device)
            samples = generator(latents)
            if not isinstance(samples, torch.Tensor) or tuple(samples.shape) != (2, *shape):
                found = tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(samples).__name__
                raise ConfigError(f"{where}: generator(latents of shape {tuple(latents.shape)}) returned {found}; "
                                  f"expected {(2, *shape)}, the data's shape per sample")
            if samples.device != context.device:
                raise ConfigError(f"{where}: returned samples on {samples.device}; expected {context.device}")
            logits = discriminator(samples)
            if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (2,):
                found = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                raise ConfigError(f"[discriminator] {config.discriminator.name!r}: discriminator(samples of shape "
                                  f"{tuple(samples.shape)}) returned {found}; expected (2,), one logit per sample")
    finally:
        generator.train(modes[0]), discriminator.train(modes[1])


def r1_penalty(logits, real):
    """``E ||grad_x D(x)||^2 / 2`` over the real batch ``real`` (which requires grad), from the
    discriminator's ``logits`` for it; differentiable, for the discriminator's loss."""
    (gradient,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
    return gradient.square().flatten(1).sum(1).mean() / 2


LR_DECAYS = {
    "none": None,
    "linear": lambda progress: 1.0 - progress,
    "cosine": lambda progress: 0.5 * (1.0 + math.cos(math.pi * progress)),
}


class GAN(Strategy):
    """Options: ``init_from`` (and ``init_weights``: ``average`` or ``raw``; see
    :meth:`TrainingContext.load_models`); ``r1``, the weight of the discriminator's R1 penalty on real data;
    ``r1_every``, apply it on every that many steps only, at that many times the weight (StyleGAN2's
    lazy regularisation, Karras et al. 2020: the penalty's double backward is a large share of a
    small discriminator's step);
    ``ema_decay``, the decay of an exponential moving average of the generator's weights (role
    ``generator_ema``, saved in checkpoints) that evaluation, pictures and ``rlgan sample`` use
    instead of the generator itself (0: none); ``lr_decay``, the learning rates' schedule over the
    run: ``none``, ``linear`` or ``cosine`` (from ``[optimizer]``'s rates down to 0 at the last step);
    ``eval_discriminator``, judge the generator's samples (its loss and the rewards that read the
    discriminator) with the discriminator in eval mode: its dropout then regularises the
    discriminator's own training only, and the generator learns from its whole, noiseless judgement
    rather than from a randomly thinned one."""

    def __init__(self, context, init_from: str = "", r1: float = 0.0, ema_decay: float = 0.0, lr_decay: str = "none",
                 init_weights: str = "average", r1_every: int = 1, eval_discriminator: bool = False):
        super().__init__(context)
        if r1 < 0:
            raise ValueError(f"r1 must be >= 0, got {r1}")
        if r1_every < 1:  # its type is checked with the config, against the annotation
            raise ValueError(f"r1_every must be an integer >= 1, got {r1_every!r}")
        if not 0 <= ema_decay < 1:
            raise ValueError(f"ema_decay must lie in [0, 1), got {ema_decay}")
        if lr_decay not in LR_DECAYS:
            raise ValueError(f"lr_decay must be one of {sorted(LR_DECAYS)}, got {lr_decay!r}")
        if init_from:
            context.load_models(init_from, init_weights)
        check_gan_models(context)
        self.r1, self.r1_every, self.lr_decay = r1, r1_every, LR_DECAYS[lr_decay]
        self.eval_discriminator = eval_discriminator
        self.average = WeightAverage(context, "generator", ema_decay) if ema_decay else None

    def set_learning_rates(self):
        """Each optimizer's rate for this step: its first rate (kept as ``initial_lr``, as PyTorch's
        schedulers keep it, and saved with the optimizer), times the decay at this point of the run."""
        factor = self.lr_decay(self.context.state.step / self.context.config.run.steps)
        for optimizer in self.context.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor

    def step(self):
        context = self.context
        started = time.perf_counter()
        if self.lr_decay is not None:
            self.set_learning_rates()
        # asynchronous rewards (workers > 0) score the generator's samples while the discriminator
        # trains; without them the samples are drawn after its update, as they always were
        early = any(bound.workers for bound in context.rewards)
        if early:
            latents, fake, pending = self.generate()
        lazy_r1 = self.r1 * self.r1_every if context.state.step % self.r1_every == 0 else 0.0
        batch, discriminator_loss = discriminator_updates(context, context.config.optimizer.discriminator_steps,
                                                          r1=lazy_r1)
        if not early:
            latents, fake, pending = self.generate()
        context.discriminator.requires_grad_(False)
        context.discriminator.train(not self.eval_discriminator)
        logits = context.discriminator(fake)
        rewards = pending.result(discriminator_logits=logits, batch=batch)
        losses = {"discriminator": discriminator_loss}
        if rewards is not None:
            loss_config = context.config.loss
            loss = distributed.reward_weighted_gan_loss(
                logits,
                rewards.detach(),
                context.reward_weights,
                baseline=loss_config.baseline,
                temperature=loss_config.temperature,
                eps=loss_config.eps,
            )
            pathwise = [r.weight * rewards[:, i].mean() for i, r in enumerate(context.rewards) if r.pathwise]
            generator_loss = loss - sum(pathwise) if pathwise else loss
            context.generator_optimizer.zero_grad(set_to_none=True)
            generator_loss.backward()
            context.generator_optimizer.step()
            losses["generator"] = generator_loss.detach()
            if self.average is not None:
                self.average.update()
        context.discriminator.requires_grad_(True)
        context.discriminator.train()
        return context.step_output(losses, rewards, started, len(latents))

    def generate(self):
        """A batch from the generator (through the trained model, for the loss): its latents, the
        samples, and the rewards started on them (:meth:`TrainingContext.start_rewards`)."""
        latents = self.context.sample_latents()
        fake = self.context.trained_generator(latents)
        return latents, fake, self.context.start_rewards(fake, self.context.reward_context(latents=latents))

    def sample(self, n, seed):
        if self.average is None:
            return super().sample(n, seed)
        return sample_model(self.average.model, n, seed, self.context.device)

    def state_dict(self):
        return {} if self.average is None else {"ema_updates": torch.tensor(self.average.updates)}

    def load_state_dict(self, state):
        if self.average is not None:
            self.average.updates = int(state["ema_updates"])


class WeightAverage:
    """An exponential moving average of model role ``role``'s weights, kept as the frozen role
    ``ROLE_ema`` (so checkpoints save it and a resumed run continues it).  The decay ramps up as
    ``min(decay, (1 + t) / (10 + t))`` over the ``t`` updates so far, so that the average does not
    linger on the first, untrained weights.  Floating-point buffers (batch-norm statistics) are
    averaged too, so that the average normalises with statistics of weights like its own."""

    def __init__(self, context, role, decay):
        self.source, self.decay, self.updates = context.models[role], decay, 0
        self.model = copy.deepcopy(self.source)
        context.add_model(f"{role}_ema", self.model)

    @torch.no_grad()
    def update(self):
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        pairs = [*zip(self.model.parameters(), self.source.parameters()), *zip(self.model.buffers(), self.source.buffers())]
        for average, current in pairs:
            if average.is_floating_point():
                average.lerp_(current, 1 - decay)
            else:  # counters, such as batch norm's
                average.copy_(current)
        self.updates += 1


def reinforce_loss(distribution, samples, advantages, entropy_coef=0.0):
    """The score-function surrogate ``-(A * log pi(x)).mean() - entropy_coef * H.mean()``: its
    gradient is the REINFORCE estimate of the gradient of the expected advantage, plus the entropy
    bonus.  ``samples`` carry no gradient; ``advantages`` are constants."""
    loss = -(advantages.detach() * distribution.log_prob(samples.detach())).mean()
    if entropy_coef:
        loss = loss - entropy_coef * distribution.entropy().mean()
    return loss


class Reinforce(Strategy):
    roles = {"generator": True, "discriminator": False}

    def __init__(self, context, discriminator_steps: int = 1, init_from: str = "", kl_coef: float = 0.0,
                 init_weights: str = "average", beta: float = 0.0):
        super().__init__(context)
        if discriminator_steps < 0:
            raise ValueError(f"discriminator_steps must be >= 0, got {discriminator_steps}")
        self.check_kl_weights(beta, kl_coef)
        generator, name = context.generator, context.config.strategy.name
        problem = policy_problem(generator)
        if problem:
            raise ConfigError(f"[strategy] {name} needs a generator that is a policy (docs/plugins.md); "
                              f"[generator] {context.config.generator.name!r}: {problem}")
        with torch.no_grad():
            probe = generator.distribution(generator(torch.zeros(1, generator.latent_dim, device=context.device)))
        pathwise = [bound for bound in context.rewards if bound.pathwise]
        if pathwise:
            if not probe.has_rsample:
                raise ConfigError(f"[rewards.{pathwise[0].name}] pathwise = true: the policy of [generator] "
                                  f"{context.config.generator.name!r} has no reparameterised samples")
        self.pathwise = pathwise
        # black-box rewards enter through the advantages, pathwise ones through their gradient
        self.score_mask = torch.tensor([0.0 if b.pathwise else 1.0 for b in context.rewards] or [0.0],
                                       device=context.device)
        # the discriminator, when the run has one, trains as under `gan`
        self.discriminator_steps = discriminator_steps if context.discriminator is not None else 0
        if init_from:
            context.load_models(init_from, init_weights)
        # the frozen reference of the KL term: the policy as training starts (a checkpoint saves
        # it with the other model roles)
        self.kl_coef, self.beta = kl_coef, beta
        if kl_coef or beta:
            context.add_model("reference", copy.deepcopy(generator))

    def score_weights(self):
        """The rewards' weights in the advantages at this step: 0 for the pathwise ones."""
        return self.context.reward_weights * self.score_mask

    def reference_policy(self, latents):
        """The frozen reference policy's distribution for ``latents`` (``None`` without a
        reference): computed once a step, for the advantages, the KL penalty and the diagnostics."""
        if "reference" not in self.context.models:
            return None
        reference_model = self.context.models["reference"]
        with torch.no_grad():
            return reference_model.distribution(reference_model(latents))

    def step_advantages(self, policy, samples, rewards, reference):
        """The advantages of this step's ``samples``: the weighted black-box rewards less the
        ``[loss] baseline``; with ``beta``, less ``beta * (log pi(x) - log pi_ref(x))`` for each
        sample (``reference``: pi_ref), then less their mean over the global batch (no ``[loss]
        baseline``)."""
        if not self.beta:
            return self.context.advantages(rewards, self.score_weights()).to(samples.dtype)
        with torch.no_grad():
            log_ratio = policy.log_prob(samples) - reference.log_prob(samples)
        return self.context.kl_regularised_advantages(rewards, log_ratio, self.beta, self.score_weights()).to(samples.dtype)

    def kl_penalty(self, policy, reference):
        """kl_coef * KL(policy || reference), averaged over the batch (0 without ``kl_coef``)."""
        if not self.kl_coef:
            return 0.0
        return self.kl_coef * torch.distributions.kl_divergence(policy, reference).mean()

    def diagnostics(self, policy, reference) -> dict:
        """What a policy's user tunes by: its mean entropy and standard deviation, and its KL to the
        ``reference`` when there is one (logged as ``policy/entropy``, ``policy/std``, ``policy/kl``)."""
        with torch.no_grad():
            figures = {"entropy": policy.entropy().mean()}
            try:  # a distribution without a variance (a categorical one) raises NotImplementedError
                figures["std"] = policy.stddev.mean()
            except NotImplementedError:
                pass
            if reference is not None:
                try:  # with beta, a policy need not register a KL for its distribution pair
                    figures["kl"] = torch.distributions.kl_divergence(policy, reference).mean()
                except NotImplementedError:
                    pass
        return figures

    def pathwise_term(self, policy, samples, latents):
        """Minus the weighted pathwise rewards of ``samples``, reparameterised as draws of ``policy``
        (the same values, with gradients to the policy's mean and scale), averaged over the batch
        (0 without pathwise rewards)."""
        if not self.pathwise:
            return 0.0
        noise = (samples - policy.mean.detach()) / policy.stddev.detach()
        drawn = policy.mean + policy.stddev * noise
        discriminator = self.context.discriminator
        if discriminator is not None:
            discriminator.requires_grad_(False)
        reward_context = self.context.reward_context(latents=latents)
        term = -sum(bound.weight * bound.reward(drawn, reward_context).mean() for bound in self.pathwise)
        if discriminator is not None:
            discriminator.requires_grad_(True)
        return term

    def step(self):
        started = time.perf_counter()
        latents, outputs, samples, rewards, losses = self.rollout(differentiable=True)
        figures = {}
        if rewards is not None:
            policy, reference = self.context.generator.distribution(outputs), self.reference_policy(latents)
            advantages = self.step_advantages(policy, samples, rewards, reference)
            loss = reinforce_loss(policy, samples, advantages, self.context.config.loss.entropy_coef)
            loss = loss + self.kl_penalty(policy, reference) + self.pathwise_term(policy, samples, latents)
            losses["generator"] = self.update(loss)
            figures = self.diagnostics(policy, reference)
        return self.context.step_output(losses, rewards, started, len(latents), figures)

    def rollout(self, differentiable=False):
        """The discriminator's updates, then a batch drawn from the policy and scored: the latents,
        the policy's outputs for them (``differentiable``: through the trained, data-parallel
        model, ready for a loss; else without gradient), its samples (no gradient), the rewards
        (``None`` for a skipped batch) and the losses so far."""
        context = self.context
        batch, discriminator_loss = discriminator_updates(context, self.discriminator_steps, self.draw_samples)
        latents = context.sample_latents()
        with torch.set_grad_enabled(differentiable):
            outputs = (context.trained_generator if differentiable else context.generator)(latents)
        with torch.no_grad():
            samples = self.draw_samples(latents, outputs.detach())
            logits = context.discriminator(samples) if context.discriminator is not None else None
        reward_context = context.reward_context(discriminator_logits=logits, latents=latents, batch=batch)
        rewards = context.compute_rewards(samples, reward_context)
        losses = {"discriminator": discriminator_loss} if self.discriminator_steps else {}
        return latents, outputs, samples, rewards, losses

    def draw_samples(self, latents, outputs=None):
        """The policy's samples for ``latents`` (around ``outputs``, when computed already), drawn
        for the global batch on every rank, each keeping its rows: N processes draw what one
        process would.  The discriminator learns from these, the samples the rewards score."""
        context = self.context
        outputs = context.generator(latents) if outputs is None else outputs
        everyone = context.generator.distribution(distributed.gather_rows(outputs))
        return distributed.local_part(draw(context, everyone))

    def update(self, loss):
        """One optimiser step of the generator on ``loss``; returns it, detached."""
        optimizer = self.context.generator_optimizer
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()


def draw(context, distribution):
    """A sample of ``distribution`` under a seed from the context (``context.seed()``): every rank
    draws the same, and a resumed run draws what the uninterrupted one did."""
    seed = context.seed()
    with torch.random.fork_rng(devices=[context.device] if context.device.type == "cuda" else []):
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

    def __init__(self, context, discriminator_steps: int = 1, init_from: str = "", kl_coef: float = 0.0,
                 epochs: int = 4, clip: float = 0.2, init_weights: str = "average", beta: float = 0.0):
        super().__init__(context, discriminator_steps, init_from, kl_coef, init_weights, beta)
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        if not clip > 0:
            raise ValueError(f"clip must be > 0, got {clip}")
        self.epochs, self.clip = epochs, clip

    def step(self):
        context = self.context
        started = time.perf_counter()
        latents, outputs, samples, rewards, losses = self.rollout()
        figures = {}
        if rewards is not None:
            with torch.no_grad():
                sampler = context.generator.distribution(outputs)
                old_log_prob = sampler.log_prob(samples)
            reference = self.reference_policy(latents)
            advantages = self.step_advantages(sampler, samples, rewards, reference)
            for _ in range(self.epochs):
                policy = context.generator.distribution(context.trained_generator(latents))
                loss = ppo_loss(policy, samples, old_log_prob, advantages, self.clip, context.config.loss.entropy_coef)
                loss = loss + self.kl_penalty(policy, reference) + self.pathwise_term(policy, samples, latents)
                losses["generator"] = self.update(loss)
            figures = self.diagnostics(policy, reference)
            with torch.no_grad():  # of the last epoch's ratios, the share PPO's clip held back
                ratio = (policy.log_prob(samples) - old_log_prob).exp()
                figures["clip_fraction"] = ((ratio - 1).abs() > self.clip).float().mean()
        return context.step_output(losses, rewards, started, len(latents), figures)


@hookimpl
def rlgan_register_strategies(register):
    register("gan", GAN)
    register("reinforce", Reinforce)
    register("ppo", PPO)
