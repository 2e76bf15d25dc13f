"""The seed's MLP generator and discriminator, sized from the config and the data source."""

import math

import torch
from torch import nn

from ..hookspecs import hookimpl


class MLPGenerator(nn.Module):
    """latent -> hidden layers (LeakyReLU) -> data, squashed to [-1, 1] by tanh."""

    def __init__(self, data, latent_dim: int = 100, hidden: list[int] = (256, 512), output: str = "tanh"):
        super().__init__()
        if output not in ("tanh", "linear"):
            raise ValueError(f"output must be 'tanh' or 'linear', got {output!r}")
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

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.shape)


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
