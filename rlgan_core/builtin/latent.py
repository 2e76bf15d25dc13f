"""``latent_policy``: KL-regularised fine-tuning of a deterministic generator, through its latents.

A GAN's generator is a function, ``x = G(z)`` with ``z ~ N(0, I)``.  Noise added to its output
(what ``reinforce`` and ``ppo`` train) can blur a sample but cannot move mass from one mode to
another.  Here ``G`` stays frozen and the distribution of ``z`` is learned instead: ``q(z)``, a
normalising flow (coupling transforms, splines or affine maps) that starts as ``N(0, I)`` exactly.  The
objective is

    max_q  E_{z~q}[ r(G(z)) ]  −  β · KL(q ‖ N(0, I)),

whose optimum is ``q*(z) = N(z)·exp(r(G(z))/β) / Z``.  Since ``x`` is a function of ``z``, the
samples ``G(z)`` of ``q*`` are distributed exactly as ``p*(x) = p_ref(x)·exp(r(x)/β) / Z``, the
KL-regularised target of the run's own distribution ``p_ref`` (docs/kl_target.md has the proof):
the reward raised, and every mode kept in proportion to ``exp(r/β)``.

With a ``critic`` ``c(x)`` fitted to the black-box rewards of the samples, the run also holds a
model of ``q*`` that needs no flow to be exact: ``N(z)·exp(c(G(z))/β)`` (with the pathwise rewards'
values added to ``c``).  Sampling with ``proposals = M`` draws ``M`` latents from the flow per
sample and keeps one in proportion to ``N(z)·exp(c(G(z))/β) / q(z)`` (importance resampling, no
black-box reward calls), which corrects what the flow could not carve into its density; it
reaches that target as ``M`` grows.

Gradients: a black-box reward enters through the score function, ``-(r - mean r)·log q(z)`` (with
a ``critic``, ``r - c(G(z))`` there and ``c(G(z))`` through its gradient), a differentiable one with
``pathwise = true`` through its gradient back through ``G``; the KL term through the flow's
reparameterised samples.  No division by the rewards' spread: that would change the effective β
as the spread shrinks.
"""

import math
import time

import torch

from .. import distributed, ops
from ..critic import RewardCritic, importance_resample
from ..errors import ConfigError
from ..hookspecs import hookimpl
from ..strategy import Strategy


CANDIDATES_PER_CHUNK = 16384  # latents drawn at once when sampling with proposals


def latent_flow(dim: int, transforms: int, hidden: list[int], kind: str = "spline") -> torch.nn.Module:
    """A coupling flow on ``dim`` values (two passes, so sampling is as fast as density
    evaluation) of monotonic rational-quadratic splines (``kind = "spline"``) or affine maps
    (``"affine"``), whose every transform starts as the identity, so the flow starts as its base,
    ``N(0, I)``.  ``flow()`` is the distribution (``sample``, ``rsample``, ``log_prob``)."""
    import zuko

    build = {"spline": zuko.flows.NSF, "affine": zuko.flows.MAF}[kind]
    flow = build(dim, transforms=transforms, passes=min(2, dim), hidden_features=tuple(hidden))
    for transform in flow.transform.transforms:
        last = [module for module in transform.modules() if isinstance(module, torch.nn.Linear)][-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)
    return flow


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """``log N(z; 0, I)`` per row of ``z`` ``[N, D]``."""
    return -0.5 * z.square().sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


class LatentPolicy(Strategy):
    """Options: ``init_from`` (the run whose generator ``G`` is kept; required) and
    ``init_weights``; ``beta`` (β > 0, the KL weight: smaller moves further); ``lr`` (the flow's
    Adam rate); ``flow`` (``spline``: monotonic rational-quadratic splines, which can split one
    mode of ``z`` into several, for a few latent dimensions; ``affine``: affine couplings, cheaper
    for many), ``transforms`` and ``hidden`` (the flow's size); ``critic``, the hidden widths of
    an MLP ``c(z)`` fitted to the rewards (none by default) that serves as a control variate:
    ``r - c(G(z))`` through the score function, ``c(G(z))`` through its gradient back through
    ``G``, an unbiased gradient of lower variance when ``c`` is close to the reward;
    ``proposals`` (1 by default; more needs a critic): latents the flow draws per sample, of
    which sampling keeps one by importance resampling towards ``N(z)·exp(c(G(z))/β)``.  The flow is the model role
    ``latent_policy`` (saved in checkpoints); evaluation, pictures and ``rlgan sample`` draw
    ``G(z)`` with ``z`` from it.  Logs ``policy/kl`` (the batch's estimate of KL(q ‖ N(0, I)))."""

    roles = {"generator": True, "discriminator": False}

    def __init__(self, context, init_from: str = "", beta: float = 0.1, lr: float = 1e-3, transforms: int = 3,
                 hidden: list[int] = (128, 128), init_weights: str = "average", flow: str = "spline",
                 critic: list[int] = (), proposals: int = 1):
        super().__init__(context)
        if not init_from:
            raise ConfigError("[strategy] latent_policy needs init_from = RUN_DIR: the trained run whose "
                              "generator it keeps and whose distribution it tilts")
        if not beta > 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if flow not in ("spline", "affine"):
            raise ValueError(f"flow must be 'spline' or 'affine', got {flow!r}")
        if proposals < 1 or (proposals > 1 and not critic):
            raise ValueError(f"proposals must be >= 1, and more than 1 needs a critic (the resampling weights "
                             f"come from it), got proposals = {proposals}, critic = {list(critic)}")
        if transforms < 1 or not hidden or min(hidden) < 1:
            raise ValueError(f"transforms must be >= 1 and hidden a non-empty list of widths, got {transforms}, {hidden}")
        generator = context.generator
        if not isinstance(getattr(generator, "latent_dim", None), int):
            raise ConfigError(f"[generator] {context.config.generator.name!r}: latent_policy needs a generator "
                              "with an integer latent_dim, which it maps from N(0, I) latents")
        context.load_models(init_from, init_weights)
        for module in context.models.values():  # G (and a discriminator a reward reads) stay as loaded
            module.requires_grad_(False).eval()
        self.beta, self.proposals = beta, proposals
        self.pathwise = [bound.pathwise for bound in context.rewards]
        # black-box rewards enter through the score function, pathwise ones through their gradient
        self.score_mask = torch.tensor([0.0 if pathwise else 1.0 for pathwise in self.pathwise] or [0.0],
                                       device=context.device)
        context.add_model("latent_policy", latent_flow(generator.latent_dim, transforms, list(hidden), flow), lr=lr)
        if critic:  # on the samples G(z), which the reward reads, not on the latents
            with torch.no_grad():
                sample_size = generator(torch.zeros(1, generator.latent_dim, device=context.device)).numel()
            context.add_model("latent_critic", RewardCritic(sample_size, list(critic)), lr=lr)

    @property
    def flow(self):
        return self.context.models["latent_policy"]

    def step(self):
        context = self.context
        started = time.perf_counter()
        self.keep_frozen()
        global_batch = context.config.run.batch_size * context.world_size
        distribution = self.flow()
        with torch.random.fork_rng(devices=[context.device] if context.device.type == "cuda" else []):
            torch.manual_seed(context.seed())  # the global batch's latents, the same on every rank
            latents = distributed.local_part(distribution.rsample((global_batch,)))
        log_q = distribution.log_prob(latents.detach())
        critic = context.models.get("latent_critic")
        with torch.set_grad_enabled(critic is not None):  # the critic's gradient reaches z through G
            samples = context.generator(latents if critic is not None else latents.detach())
        rewards = context.compute_rewards(samples.detach(), context.reward_context(latents=latents.detach()))
        losses, figures = {}, {}
        if rewards is not None:
            scores = rewards.detach().double() @ (context.reward_weights * self.score_mask).double()
            kl = distribution.log_prob(latents) - standard_normal_log_prob(latents)
            critic_term, predicted = 0.0, 0.0
            if critic is not None:  # a control variate: r - c(G(z)) by the score function, c(G(z)) pathwise
                critic.requires_grad_(False)
                predicted = critic(samples.detach()).double()
                critic_term = -critic(samples).mean()
            centred = ops.advantages(scores - predicted, "mean", 0.0, global_batch=True).to(log_q.dtype)
            loss = -(centred * log_q).mean() + critic_term + self.beta * kl.mean() + self.pathwise_term(latents)
            optimizer = context.optimizers["latent_policy"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            context.average_gradients("latent_policy")
            optimizer.step()
            losses["latent_policy"] = loss.detach()
            if critic is not None:  # fitted after it served this batch: no bias
                losses["latent_critic"] = self.fit_critic(samples.detach(), scores)
            figures["kl"] = kl.detach().mean()
        return context.step_output(losses, rewards, started, len(latents), figures)

    def fit_critic(self, samples, scores):
        """One regression step of the critic ``c(x)`` towards the rewards of the samples ``x = G(z)``; the loss."""
        critic = self.context.models["latent_critic"].requires_grad_(True)
        return self.context.minimise("latent_critic", critic.loss(samples, scores))

    def pathwise_term(self, latents):
        """Minus the mean weighted pathwise rewards of ``G(latents)``, their gradient reaching the
        flow through the latents (0 without pathwise rewards)."""
        if not any(self.pathwise):
            return 0.0
        return -self.pathwise_rewards(self.context.generator(latents), latents).mean()

    def pathwise_rewards(self, samples, latents):
        """The weighted sum of the pathwise rewards of each sample (0 without pathwise rewards)."""
        reward_context = self.context.reward_context(latents=latents)
        return sum((bound.weight * bound.reward(samples, reward_context)
                    for bound, pathwise in zip(self.context.rewards, self.pathwise) if pathwise), 0.0)

    def keep_frozen(self):
        """The kept models in eval mode (batch norm on the statistics ``G`` was trained to), whatever
        mode the engine's evaluation left them in."""
        for role, module in self.context.models.items():
            if role not in ("latent_policy", "latent_critic"):
                module.eval()

    def sample(self, n, seed):
        device = self.context.device
        self.keep_frozen()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            distribution = self.flow()
            if self.proposals == 1:
                return self.context.generator(distribution.sample((n,)))
            per_chunk = max(1, CANDIDATES_PER_CHUNK // self.proposals)
            return torch.cat([self.resampled(distribution, min(per_chunk, n - start)) for start in range(0, n, per_chunk)])

    def resampled(self, distribution, n):
        """``n`` samples, each kept from ``proposals`` drawn from the flow by importance resampling
        towards ``N(z)·exp(c(G(z))/β)``."""
        latents = distribution.sample((n * self.proposals,))
        samples = self.context.generator(latents)
        tilt = self.context.models["latent_critic"](samples) + self.pathwise_rewards(samples, latents)
        log_weights = standard_normal_log_prob(latents) - distribution.log_prob(latents) + tilt / self.beta
        return importance_resample(samples.view(n, self.proposals, *samples.shape[1:]), log_weights.view(n, self.proposals))


@hookimpl
def rlgan_register_strategies(register):
    register("latent_policy", LatentPolicy)
