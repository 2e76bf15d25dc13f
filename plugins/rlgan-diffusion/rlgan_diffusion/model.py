"""A small diffusion model: an MLP that predicts the noise in a noisy sample, with a cosine noise
schedule, the DDPM denoising loss and a DDIM sampler whose stochastic steps are Gaussian policies.

Notation (Ho et al. 2020; Song et al. 2021): ``abar_t`` is the share of signal left at training
timestep ``t`` of ``timesteps``; ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``.  The sampler
walks ``sample_steps`` evenly spaced timesteps (``k * timesteps // sample_steps``) down to a clean
sample; from ``x_t`` it predicts
``x_0`` (clipped to ``[-clip_sample, clip_sample]`` when set) and steps to the previous timestep
with noise of standard deviation ``eta * sqrt((1 - abar_prev) / (1 - abar_t)) * sqrt(1 - abar_t /
abar_prev)``: ``eta = 1`` is DDPM's posterior, ``eta = 0`` deterministic DDIM.  Each step but the
last (which lands on the clean sample, noise-free) is a Gaussian policy over ``x_prev``: DDPO
trains on their log-probabilities.
"""

import math

import torch
from torch import nn


def cosine_schedule(timesteps: int) -> torch.Tensor:
    """``abar_t`` for ``t = 0 .. timesteps - 1`` (Nichol & Dhariwal 2021), in float64."""
    s = 0.008
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    betas = (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, dim=0)


class MLPDenoiser(nn.Module):
    """``eps_theta(x_t, t)``: an MLP over the flattened noisy sample and a sinusoidal embedding
    of ``t``; sizes from the data source's sample shape."""

    def __init__(self, data, hidden: list[int] = (512, 512, 512), embedding: int = 64, timesteps: int = 1000,
                 sample_steps: int = 50, eta: float = 1.0, clip_sample: float = 0.0):
        super().__init__()
        if not 2 <= sample_steps <= timesteps:
            raise ValueError(f"sample_steps must lie in [2, timesteps = {timesteps}], got {sample_steps}")
        if eta < 0 or clip_sample < 0:
            raise ValueError(f"eta and clip_sample must be >= 0, got {eta} and {clip_sample}")
        if embedding % 2:
            raise ValueError(f"embedding must be even, got {embedding}")
        self.shape = tuple(data.shape)
        self.timesteps, self.sample_steps, self.eta, self.clip_sample = timesteps, sample_steps, eta, clip_sample
        self.embedding = embedding
        width = math.prod(self.shape)
        sizes = [width + embedding, *hidden]
        layers = []
        for width_in, width_out in zip(sizes, sizes[1:]):
            layers += [nn.Linear(width_in, width_out), nn.SiLU()]
        layers.append(nn.Linear(sizes[-1], width))
        self.net = nn.Sequential(*layers)
        abar = cosine_schedule(timesteps)
        # the sampler's timesteps, from the noisiest to the cleanest, and abar at each (float64:
        # the noise scales come from differences of numbers close to 1)
        # (evenly spaced from 0, as DDIM's "leading" spacing: the noisiest step keeps a little
        # signal, where the cosine schedule's last timesteps keep almost none and would amplify
        # the denoiser's errors)
        walk = (torch.arange(sample_steps) * (timesteps // sample_steps)).flip(0)
        self.register_buffer("walk", walk, persistent=False)
        self.register_buffer("abar", abar.float(), persistent=False)
        self.register_buffer("abar_walk", abar[walk], persistent=False)
        self.register_buffer("abar_prev", torch.cat([abar[walk[1:]], torch.ones(1, dtype=torch.float64)]), persistent=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The predicted noise in ``x`` ``[N, *shape]`` at training timesteps ``t`` ``[N]``."""
        half = self.embedding // 2
        frequencies = torch.exp(-math.log(10_000) * torch.arange(half, device=x.device) / half)
        angles = t.float()[:, None] * frequencies[None]
        features = torch.cat([x.flatten(1), angles.sin(), angles.cos()], dim=1)
        return self.net(features).view(-1, *self.shape)

    # --- training ------------------------------------------------------------------------------

    def denoising_loss(self, x0: torch.Tensor, uniform: torch.Tensor, noise: torch.Tensor, model=None) -> torch.Tensor:
        """DDPM's loss ``|eps - eps_theta(x_t, t)|^2`` at timesteps ``t = floor(uniform * timesteps)``
        with ``noise`` ``eps``; ``model``: what to run the forward pass through (a data-parallel
        wrapper of this model), by default the model itself."""
        t = (uniform * self.timesteps).long().clamp(max=self.timesteps - 1)
        abar = self.abar[t].view(-1, *[1] * len(self.shape))
        noisy = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
        return (noise - (model or self)(noisy, t)).square().mean()

    # --- the sampler --------------------------------------------------------------------------

    def step_mean(self, x: torch.Tensor, index: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and standard deviation of ``x_prev`` for samples ``x`` at sampler steps
        ``index`` ``[N]`` (0: the noisiest), given the predicted noise ``eps = self(x, walk[index])``."""
        view = (-1, *[1] * len(self.shape))
        abar, abar_prev = self.abar_walk[index].view(view), self.abar_prev[index].view(view)
        std = self.eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).clamp(min=0).sqrt()
        x0 = (x - (1 - abar).sqrt().to(x.dtype) * eps) / abar.sqrt().to(x.dtype)
        if self.clip_sample:
            x0 = x0.clamp(-self.clip_sample, self.clip_sample)
        eps = (x - abar.sqrt().to(x.dtype) * x0) / (1 - abar).sqrt().to(x.dtype)  # consistent with the clipped x0
        direction = (1 - abar_prev - std.square()).clamp(min=0).sqrt().to(x.dtype) * eps
        return abar_prev.sqrt().to(x.dtype) * x0 + direction, std.to(x.dtype)

    def log_prob(self, x_prev: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """The log-density ``[N]`` of a step's ``x_prev`` under ``N(mean, std^2)``, summed over a sample."""
        normal = torch.distributions.Normal(mean, std.expand_as(mean))
        return normal.log_prob(x_prev).flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n: int, seed: int) -> torch.Tensor:
        """``n`` samples drawn by the sampler from ``seed`` alone."""
        device = self.walk.device
        rng = torch.Generator(device).manual_seed(seed)
        x = torch.randn(n, *self.shape, generator=rng, device=device)
        for index in range(self.sample_steps):
            steps = torch.full((n,), index, device=device)
            mean, std = self.step_mean(x, steps, self(x, self.walk[steps]))
            x = mean + std * torch.randn(x.shape, generator=rng, device=device)
        return x
