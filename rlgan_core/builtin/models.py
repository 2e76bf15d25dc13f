"""The seed's MLP generator and discriminator, sized from the config and the data source."""

import math

import torch
from torch import nn

from ..hookspecs import hookimpl


ACTIVATIONS = {"leaky_relu": lambda: nn.LeakyReLU(0.2), "relu": nn.ReLU}


class MLPGenerator(nn.Module):
    """latent -> hidden layers (``activation``, after batch norm with ``batch_norm``) -> data,
    squashed to [-1, 1] by tanh (``output = "linear"``: not squashed).  PacGAN's generator is
    ``hidden = [400, 400, 400, 400]``, ``activation = "relu"``, ``batch_norm = true``, linear output.

    With ``noise > 0`` it is also a policy (``distribution``): its output is the mean of a
    Gaussian with a learned standard deviation, one per output element, starting at ``noise``.
    """

    def __init__(self, data, latent_dim: int = 100, hidden: list[int] = (256, 512), output: str = "tanh",
                 noise: float = 0.0, activation: str = "leaky_relu", batch_norm: bool = False):
        super().__init__()
        if output not in ("tanh", "linear"):
            raise ValueError(f"output must be 'tanh' or 'linear', got {output!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.latent_dim = latent_dim
        self.shape = tuple(data.shape)
        sizes = [latent_dim, *hidden]
        layers = []
        for width_in, width_out in zip(sizes, sizes[1:]):
            layers.append(nn.Linear(width_in, width_out))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width_out))
            layers.append(ACTIVATIONS[activation]())
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
    """data -> hidden layers (LeakyReLU) -> one logit per sample.

    ``spectral_norm``: every linear layer spectrally normalised (Miyato et al. 2018).  ``dropout``:
    dropout of that rate after each hidden layer, as the first GAN's discriminator had (Goodfellow
    et al. 2014): it keeps a discriminator from memorising a small training set.  ``pack``:
    PacGAN's packing (Lin et al. 2018): the discriminator judges ``pack`` samples at once,
    concatenated, and each sample of a pack gets the pack's logit.
    """

    def __init__(self, data, hidden: list[int] = (512, 256), spectral_norm: bool = False, pack: int = 1,
                 dropout: float = 0.0):
        super().__init__()
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.packing = Packing(pack)
        sizes = [pack * math.prod(data.shape), *hidden, 1]
        layers = []
        for width_in, width_out in zip(sizes, sizes[1:]):
            linear = nn.Linear(width_in, width_out)
            # dropout shares the activation's slot, so that the weights' names do not depend on it
            activation = nn.Sequential(nn.LeakyReLU(0.2), nn.Dropout(dropout)) if dropout else nn.LeakyReLU(0.2)
            layers += [nn.utils.parametrizations.spectral_norm(linear) if spectral_norm else linear, activation]
        self.net = nn.Sequential(*layers[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.packing(self.net, x)


class MaxoutDiscriminator(nn.Module):
    """PacGAN's 2-D discriminator: ``len(hidden)`` maxout layers (each unit the maximum of
    ``pieces`` linear pieces), then a linear logit; ``pack`` as for ``mlp_discriminator``."""

    def __init__(self, data, hidden: list[int] = (200, 200, 200), pieces: int = 5, pack: int = 1):
        super().__init__()
        if pieces < 1:
            raise ValueError(f"pieces must be >= 1, got {pieces}")
        self.packing = Packing(pack)
        sizes = [pack * math.prod(data.shape), *hidden]
        layers = [Maxout(width_in, width_out, pieces) for width_in, width_out in zip(sizes, sizes[1:])]
        self.net = nn.Sequential(*layers, nn.Linear(sizes[-1], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.packing(self.net, x)


class Maxout(nn.Module):
    def __init__(self, width_in: int, width_out: int, pieces: int):
        super().__init__()
        self.pieces = pieces
        self.linear = nn.Linear(width_in, width_out * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).unflatten(1, (-1, self.pieces)).amax(2)


class Packing(nn.Module):
    """Runs a network on packs of ``pack`` consecutive samples and gives each sample its pack's
    logit.  A batch that does not divide into packs is completed with its own first samples,
    whose extra logits are dropped."""

    def __init__(self, pack: int):
        super().__init__()
        if pack < 1:
            raise ValueError(f"pack must be >= 1, got {pack}")
        self.pack = pack

    def forward(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        n = len(flat)
        if self.pack == 1:
            return net(flat).squeeze(1)
        if n % self.pack:
            flat = flat[torch.arange(n + -n % self.pack, device=flat.device) % n]
        logits = net(flat.reshape(len(flat) // self.pack, -1)).squeeze(1)
        return logits.repeat_interleave(self.pack)[:n]


@hookimpl
def rlgan_register_models(register):
    register("mlp_generator", MLPGenerator)
    register("mlp_discriminator", MLPDiscriminator)
    register("maxout_discriminator", MaxoutDiscriminator)
