"""The ``ddpo`` strategy: denoising pre-training, then DDPO (Black et al. 2023) on black-box rewards.

Its first ``pretrain_steps`` steps (phase ``denoise``) train the denoiser on real batches with
DDPM's loss.  Every later step (phase ``ddpo``) is one round of DDPO-clip:

1. sample a batch of trajectories with the sampler, recording every stochastic step's ``x_t``,
   ``x_prev`` and log-probability (each step is a Gaussian policy over ``x_prev``);
2. score the final samples with the configured rewards (any function of the samples, no
   gradient), and turn the weighted sum into advantages: the ``[loss] baseline`` over the global
   batch, clipped to ``[-advantage_clip, advantage_clip]``;
3. ``epochs`` optimiser steps, each on PPO's clipped surrogate over every (sample, step) pair:
   ``-min(rho A, clip(rho, 1 - clip, 1 + clip) A)`` with ``rho`` the ratio of the step's
   probability under the model being trained to the one that sampled it.

The DDPO phase starts the optimizer afresh (new Adam moments) at learning rate ``policy_lr`` (0:
keep ``[optimizer] generator_lr``), and clips the gradient norm at ``max_grad_norm`` (0: no
clipping): a step's log-probability has gradients of the order of ``1 / std^2``, large for the
late, nearly noise-free steps.  ``init_from = RUN_DIR`` starts from a trained run (such as a finished pre-training).

``beta`` makes the objective KL-regularised, ``E[r] - beta * KL(trajectories || reference's)``
with the ``reference`` the frozen model the DDPO phase started as: each trajectory's log-ratio to
the reference, summed over its sampler steps, joins its reward as ``- beta * log_ratio``, and the
advantages are mean-centred over the global batch (neither whitened nor clipped).  On a memoryless
sampler (``eta = 1``, DDPM's posterior: the final sample forgets the starting noise) the optimum's
samples follow ``p_ref(x) * exp(r(x) / beta) / Z`` (docs/kl_target.md).  The older ``kl_coef``
adds ``kl_coef * KL`` between each step's Gaussian and the reference's to the loss beside
whitened advantages, which targets no fixed distribution; it keeps working, with a warning.

With ``beta``, ``critic`` (hidden widths) fits an MLP ``c(x)`` to the rewards of each round's
samples, and ``proposals = M`` makes sampling (evaluation, pictures, ``rlgan sample``) draw ``M``
trajectories per sample and keep one with probability proportional to
``exp(c(x)/beta - log_ratio)``, its path's log-ratio to the reference as in training: importance
resampling towards ``p_ref(x) * exp(c(x) / beta) / Z``, which corrects what the rounds have not
reached yet, at ``2 M`` times the sampler's cost and no reward calls.
"""

import copy
import math
import time

import torch

from rlgan_core import ConfigError, RewardCritic, Strategy, importance_resample

from .model import MLPDenoiser


TRAJECTORIES_PER_CHUNK = 16384  # trajectories sampled at once with proposals


class DDPO(Strategy):
    roles = {"generator": True}

    def __init__(self, context, pretrain_steps: int = 0, init_from: str = "", epochs: int = 1, clip: float = 1e-4,
                 advantage_clip: float = 5.0, kl_coef: float = 0.0, policy_lr: float = 0.0,
                 max_grad_norm: float = 1.0, beta: float = 0.0, critic: list[int] = (), critic_lr: float = 1e-3,
                 proposals: int = 1):
        super().__init__(context)
        if not isinstance(context.generator, MLPDenoiser):
            raise ConfigError("[strategy] 'ddpo' needs a diffusion model as its [generator], such as mlp_denoiser")
        for name, value in (("pretrain_steps", pretrain_steps), ("policy_lr", policy_lr), ("max_grad_norm", max_grad_norm)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        for name, value in (("epochs", epochs), ("clip", clip), ("advantage_clip", advantage_clip)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        for bound in context.rewards:
            if bound.pathwise:
                raise ConfigError(f"[rewards.{bound.name}] pathwise = true: ddpo uses rewards as black boxes")
        self.check_kl_weights(beta, kl_coef)
        if critic and not beta:
            raise ConfigError("[strategy] ddpo: critic serves sampling towards p_ref * exp(r / beta) / Z; set beta")
        if proposals < 1 or (proposals > 1 and not critic):
            raise ValueError(f"proposals must be >= 1, and more than 1 needs a critic (the resampling weights "
                             f"come from it), got proposals = {proposals}, critic = {list(critic)}")
        if not critic_lr > 0:
            raise ValueError(f"critic_lr must be > 0, got {critic_lr}")
        self.pretrain_steps, self.epochs, self.clip = pretrain_steps, epochs, clip
        self.advantage_clip, self.kl_coef, self.beta = advantage_clip, kl_coef, beta
        self.policy_lr, self.max_grad_norm, self.proposals = policy_lr, max_grad_norm, proposals
        if init_from:
            context.load_models(init_from)
        if kl_coef or beta:
            context.add_model("reference", copy.deepcopy(context.generator))
        if critic:
            context.add_model("critic", RewardCritic(math.prod(context.generator.shape), list(critic)), lr=critic_lr)

    def phase(self, step):
        return "denoise" if step < self.pretrain_steps else "ddpo"

    def step(self):
        started = time.perf_counter()
        if self.phase(self.context.state.step) == "denoise":
            return self.denoise(started)
        if self.context.state.step == self.pretrain_steps:
            self.start_policy_optimizer()
        return self.policy_round(started)

    def start_policy_optimizer(self):
        """The DDPO phase starts: the reference of the KL term becomes the model as it is now
        (pre-trained), and the optimizer starts afresh at ``policy_lr``."""
        if "reference" in self.context.models:
            self.context.models["reference"].load_state_dict(self.context.generator.state_dict())
        optimizer = self.context.generator_optimizer
        optimizer.state.clear()
        for group in optimizer.param_groups:
            group["lr"] = self.policy_lr or group["lr"]

    def denoise(self, started):
        context, model = self.context, self.context.generator
        x0 = context.next_batch()["x"]
        uniform, noise = context.noise(uniform=True), context.noise(*model.shape)  # as the batch: global, local part
        loss = model.denoising_loss(x0, uniform, noise, model=context.trained_generator)
        self.update(loss)
        return context.step_output({"denoise": loss.detach()}, None, started, len(x0))

    def policy_round(self, started):
        context, model = self.context, self.context.generator
        states, nexts, old_log_prob, samples = self.rollout()
        rewards = context.compute_rewards(samples, context.reward_context())
        losses, figures = {}, {}
        if rewards is not None:
            steps, n = states.shape[:2]
            index = torch.arange(steps, device=context.device).repeat_interleave(n)
            x, x_prev, old = states.flatten(0, 1), nexts.flatten(0, 1), old_log_prob.flatten()
            if self.beta:
                log_ratio = (old - self.reference_log_prob(x, index, x_prev)).view(steps, n).sum(0)
                advantages = context.kl_regularised_advantages(rewards, log_ratio, self.beta).float()
                figures["trajectory_kl"] = log_ratio.mean()
            else:
                advantages = context.advantages(rewards).clamp(-self.advantage_clip, self.advantage_clip).float()
            advantage = advantages.repeat(steps)
            for _ in range(self.epochs):
                eps = context.trained_generator(x, model.walk[index])
                mean, std = model.step_mean(x, index, eps)
                ratio = torch.exp(model.log_prob(x_prev, mean, std) - old)
                surrogate = torch.minimum(ratio * advantage, ratio.clamp(1 - self.clip, 1 + self.clip) * advantage)
                kl = self.kl_to_reference(x, index, mean, std)
                loss = -surrogate.mean() + (self.kl_coef * kl.mean() if kl is not None else 0.0)
                losses["generator"] = self.update(loss, self.max_grad_norm)
            figures |= self.diagnostics(mean, std, ratio, kl)
            if "critic" in context.models:
                losses["critic"] = self.fit_critic(samples, rewards.double() @ context.reward_weights.double())
        return context.step_output(losses, rewards, started, len(samples), figures)

    def fit_critic(self, samples, scores):
        """One regression step of the critic towards the weighted rewards of this round's samples; the loss."""
        return self.context.minimise("critic", self.context.models["critic"].loss(samples, scores))

    def sample(self, n, seed):
        """Without ``proposals`` (or before the first DDPO round), the sampler's ``n`` samples;
        with them, one of ``proposals`` trajectories per sample, importance-resampled towards
        ``p_ref * exp(c / beta)``."""
        if self.proposals == 1 or self.context.state.step <= self.pretrain_steps:
            return super().sample(n, seed)
        device = self.context.device
        rng = torch.Generator(device).manual_seed(seed)
        per_chunk = max(1, TRAJECTORIES_PER_CHUNK // self.proposals)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            return torch.cat([self.resampled(min(per_chunk, n - start), rng) for start in range(0, n, per_chunk)])

    def resampled(self, n, rng):
        """``n`` samples, each kept from ``proposals`` trajectories of the sampler by importance
        resampling with weights ``exp(c(x) / beta - log_ratio)``."""
        model, reference = self.context.generator, self.context.models["reference"]
        x = torch.randn(n * self.proposals, *model.shape, generator=rng, device=rng.device)
        log_ratio = torch.zeros(len(x), dtype=torch.float64, device=x.device)
        for index in range(model.sample_steps):
            steps = torch.full((len(x),), index, device=x.device)
            mean, std = model.step_mean(x, steps, model(x, model.walk[steps]))
            x_prev = mean + std * torch.randn(x.shape, generator=rng, device=x.device)
            if index < model.sample_steps - 1:  # the stochastic steps: the path's log-ratio, as in training
                reference_mean, _ = reference.step_mean(x, steps, reference(x, reference.walk[steps]))
                log_ratio += model.log_prob(x_prev, mean, std) - reference.log_prob(x_prev, reference_mean, std)
            x = x_prev
        log_weights = self.context.models["critic"](x).double() / self.beta - log_ratio
        return importance_resample(x.view(n, self.proposals, *model.shape), log_weights.view(n, self.proposals))

    @torch.no_grad()
    def rollout(self):
        """A batch of trajectories: ``x_t`` and ``x_prev`` of every stochastic step ``[S, N, ...]``,
        their log-probabilities ``[S, N]`` and the final samples ``[N, ...]``; the noise is drawn
        for the global batch (``context.noise``), so N processes sample what one would."""
        context, model = self.context, self.context.generator
        x = context.noise(*model.shape)
        states, nexts, log_probs = [], [], []
        for index in range(model.sample_steps):
            steps = torch.full((len(x),), index, device=context.device)
            mean, std = model.step_mean(x, steps, model(x, model.walk[steps]))
            x_prev = mean + std * context.noise(*model.shape)
            if index < model.sample_steps - 1:  # the last step is deterministic: no policy to train
                states.append(x)
                nexts.append(x_prev)
                log_probs.append(model.log_prob(x_prev, mean, std))
            x = x_prev
        return torch.stack(states), torch.stack(nexts), torch.stack(log_probs), x

    @torch.no_grad()
    def reference_log_prob(self, x, index, x_prev):
        """The log-probability of each step ``x -> x_prev`` under the reference model ``[S·N]``."""
        reference = self.context.models["reference"]
        mean, std = reference.step_mean(x, index, reference(x, reference.walk[index]))
        return reference.log_prob(x_prev, mean, std)

    def kl_to_reference(self, x, index, mean, std):
        """The KL between each (sample, step)'s Gaussian and the reference model's ``[S·N]`` (both
        with the same standard deviation: ``|mean - mean_ref|^2 / (2 std^2)``, summed over a
        sample); ``None`` without a reference (``kl_coef`` = 0)."""
        if not self.kl_coef:
            return None
        reference = self.context.models["reference"]
        with torch.no_grad():
            reference_mean, _ = reference.step_mean(x, index, reference(x, reference.walk[index]))
        return ((mean - reference_mean).square() / (2 * std.square())).flatten(1).sum(1)

    def diagnostics(self, mean, std, ratio, kl) -> dict:
        """What the last epoch's step policies were (logged as ``policy/NAME``): their mean entropy
        per step and standard deviation, their KL to the reference (with ``kl_coef``) and the share
        of importance ratios the clip held back."""
        with torch.no_grad():
            figures = {"entropy": torch.distributions.Normal(mean, std.expand_as(mean)).entropy().flatten(1).sum(1).mean(),
                       "std": std.expand_as(mean).mean(),
                       "clip_fraction": ((ratio - 1).abs() > self.clip).float().mean()}
            if kl is not None:
                figures["kl"] = kl.mean()
        return figures

    def update(self, loss, max_grad_norm=0.0):
        optimizer = self.context.generator_optimizer
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.context.generator.parameters(), max_grad_norm)
        optimizer.step()
        return loss.detach()

