"""The seed's MLP generator and discriminator, sized from the config and the data source."""

import math

import torch
from torch import nn

from ..hookspecs import hookimpl


class MLPGenerator(nn.Module):
    """latent -> hidden layers (LeakyReLU) -> data, squashed to [-1, 1] by tanh.

    With ``noise > 0`` it is also a policy (``distribution``): its output is the mean of a
    Gaussian with a learned standard deviation, one per output element, starting at ``noise``.
    """

    def __init__(self, data, latent_dim: int = 100, hidden: list[int] = (256, 512), output: str = "tanh",
                 noise: float = 0.0):
        super().__init__()
        if output not in ("tanh", "linear"):
            raise ValueError(f"output must be 'tanh' or 'linear', got {output!r}")
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.latent_dim = latent_dim
        self.shape = tuple(data.shape)
        sizes = [latent_dim, *hidden]
        layers = []
        for width_in, width_out in zip(sizes, sizes[1:]):
            layers += [nn.Linear(width_in, width_out), nn.LeakyReLU(0.2)]
        layers.append(nn.Linear(sizes[-1], math.prod(self.shape)))
        if output == "tanh":
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

        if noise > 0:
            self.log_std = nn.Parameter(torch.full(self.shape, math.log(noise)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.shape)

    def distribution(self, outputs: torch.Tensor) -> torch.distributions.Distribution:
        """The policy around ``outputs = self(z)``: one sample per row, its log-probability summed
        over the sample's elements."""
        if not hasattr(self, "log_std"):
            raise TypeError("mlp_generator is a policy only with noise > 0 (the [generator] noise option)")
        normal = torch.distributions.Normal(outputs, self.log_std.exp().expand_as(outputs))
        return torch.distributions.Independent(normal, len(self.shape))


class MLPDiscriminator(nn.Module):
    """data -> hidden layers (LeakyReLU) -> one logit per sample."""

    def __init__(self, data, hidden: list[int] = (512, 256)):
        super().__init__()
        sizes = [math.prod(data.shape), *hidden]
        layers = []
        for width_in, width_out in zip(sizes, sizes[1:]):
            layers += [nn.Linear(width_in, width_out), nn.LeakyReLU(0.2)]
        layers.append(nn.Linear(sizes[-1], 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).squeeze(1)


@hookimpl
def rlgan_register_models(register):
    register("mlp_generator", MLPGenerator)
    register("mlp_discriminator", MLPDiscriminator)
