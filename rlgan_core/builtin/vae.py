"""``elbo``: the generator trained as the decoder of a variational autoencoder.

The generator ``G`` (any model with a ``latent_dim``; ``mlp_generator`` by default) is the decoder,
``x ≈ G(z)`` with ``z ~ N(0, I)``.  The strategy adds an encoder ``q(z | x) = N(μ(x), diag σ(x)²)``,
an MLP (model role ``encoder``), and maximises the evidence lower bound on the training data,

    E_{q(z|x)}[ log p(x | z) ]  −  β · KL(q(z | x) ‖ N(0, I)),

with ``β = 1`` the ELBO itself and other values a β-VAE; β ramps up from 0 over the first
``warmup`` steps (KL warm-up: the decoder learns to use ``z`` before the KL term pulls ``q``
onto the prior).  The likelihood ``p(x | z)`` is a Gaussian of mean ``G(z)`` and a fixed
``pixel_std`` (``likelihood = "gaussian"``), or for data in [-1, 1] that are pixel intensities
(digits), a Bernoulli of mean ``(G(z) + 1) / 2`` per pixel (``"bernoulli"``, the usual choice for
MNIST; it needs ``G``'s output in [-1, 1]).

A finished run is a generator like any other: evaluation, pictures and ``rlgan sample`` draw
``G(z)`` for ``z ~ N(0, I)`` (the decoder's mean, as VAE samples are usually shown), and
``reinforce``, ``ppo`` (a decoder with ``[generator] noise`` is a Gaussian policy) and
``latent_policy`` (which learns the distribution of ``z``) fine-tune it from ``init_from``.
"""

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..hookspecs import hookimpl
from ..strategy import Strategy
from .models import ACTIVATIONS

LIKELIHOODS = ("gaussian", "bernoulli")


class MLPEncoder(nn.Module):
    """A flattened sample -> hidden layers -> the mean and log-variance of ``q(z | x)``, ``[N, latent_dim]`` each."""

    def __init__(self, sample_size: int, latent_dim: int, hidden: list[int], activation: str = "leaky_relu"):
        super().__init__()
        sizes = [sample_size, *hidden]
        layers = []
        for width_in, width_out in zip(sizes, sizes[1:]):
            layers += [nn.Linear(width_in, width_out), ACTIVATIONS[activation]()]
        self.body = nn.Sequential(*layers)
        self.mean = nn.Linear(sizes[-1], latent_dim)
        self.log_variance = nn.Linear(sizes[-1], latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x.flatten(1))
        return self.mean(features), self.log_variance(features)


class ELBO(Strategy):
    """Options: ``encoder`` (the encoder's hidden widths), ``beta`` (the KL term's weight; 1: the
    ELBO), ``warmup`` (steps over which β ramps up from 0), ``likelihood`` (``gaussian`` or
    ``bernoulli``), ``pixel_std`` (the Gaussian's standard deviation), ``init_from`` (start from a
    trained run's models) and ``init_weights``.  The encoder trains at ``[optimizer]
    generator_lr``.  Logs ``loss/generator`` (the weighted loss it minimises) and, per sample in
    nats, ``policy/elbo``, ``policy/reconstruction`` (``E_q log p(x | z)``) and ``policy/kl``;
    each evaluation reports ``elbo``, the ELBO of ``evaluation.samples`` training examples."""

    roles = {"generator": True, "discriminator": False}

    def __init__(self, context, encoder: list[int] = (512, 256), beta: float = 1.0, warmup: int = 0,
                 likelihood: str = "bernoulli", pixel_std: float = 0.1, init_from: str = "",
                 init_weights: str = "average"):
        super().__init__(context)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, got {likelihood!r}")
        if beta < 0 or warmup < 0 or not pixel_std > 0:
            raise ValueError(f"beta and warmup must be >= 0 and pixel_std > 0, got {beta}, {warmup}, {pixel_std}")
        if not encoder or min(encoder) < 1:
            raise ValueError(f"encoder must be a non-empty list of widths, got {encoder}")
        latent_dim = getattr(context.generator, "latent_dim", None)
        if not isinstance(latent_dim, int):
            raise ConfigError(f"[generator] {context.config.generator.name!r}: elbo needs a decoder with an integer "
                              "latent_dim")
        self.beta, self.warmup, self.likelihood, self.pixel_std = beta, warmup, likelihood, pixel_std
        sample_size = math.prod(context.data.shape)
        context.add_model("encoder", MLPEncoder(sample_size, latent_dim, list(encoder)),
                          lr=context.config.optimizer.generator_lr)
        if init_from:
            context.load_models(init_from, init_weights)

    def bound(self, x: torch.Tensor, noise: torch.Tensor, decoder) -> tuple[torch.Tensor, torch.Tensor]:
        """Per example: ``E_q log p(x | z)`` (one draw of ``z``, from ``noise``, decoded by
        ``decoder``) and ``KL(q(z | x) ‖ N(0, I))``."""
        mean, log_variance = self.context.models["encoder"](x)
        latents = mean + (0.5 * log_variance).exp() * noise
        decoded = decoder(latents).flatten(1)
        x = x.flatten(1)
        if self.likelihood == "bernoulli":
            probabilities = ((decoded + 1) / 2).clamp(1e-6, 1 - 1e-6)
            reconstruction = -F.binary_cross_entropy(probabilities, (x + 1) / 2, reduction="none").sum(1)
        else:
            reconstruction = torch.distributions.Normal(decoded, self.pixel_std).log_prob(x).sum(1)
        kl = 0.5 * (mean.square() + log_variance.exp() - 1 - log_variance).sum(1)
        return reconstruction, kl

    def kl_weight(self, step: int) -> float:
        return self.beta * min(1.0, (step + 1) / self.warmup) if self.warmup else self.beta

    def step(self):
        context = self.context
        started = time.perf_counter()
        x = context.next_batch()["x"]
        reconstruction, kl = self.bound(x, context.noise(context.generator.latent_dim), context.trained_generator)
        loss = -(reconstruction - self.kl_weight(context.state.step) * kl).mean()
        optimizer, encoder_optimizer = context.generator_optimizer, context.optimizers["encoder"]
        optimizer.zero_grad(set_to_none=True)
        encoder_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        context.average_gradients("encoder")  # the generator's are averaged by trained_generator
        optimizer.step()
        encoder_optimizer.step()
        diagnostics = {"elbo": (reconstruction - kl).mean(), "reconstruction": reconstruction.mean(), "kl": kl.mean()}
        return context.step_output({"generator": loss.detach()}, None, started, len(x), diagnostics)

    @torch.no_grad()
    def evaluation_metrics(self):
        context = self.context
        x = context.dataset["x"][: context.config.evaluation.samples]
        generator = torch.Generator(context.device).manual_seed(0)
        noise = torch.randn(len(x), context.generator.latent_dim, generator=generator, device=context.device)
        reconstruction, kl = self.bound(x, noise, context.generator)
        return {"elbo": float((reconstruction - kl).mean())}


@hookimpl
def rlgan_register_strategies(register):
    register("elbo", ELBO)
