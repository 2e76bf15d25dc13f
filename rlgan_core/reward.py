"""The reward interface: what third-party reward plugins implement."""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch

if TYPE_CHECKING:
    from .datasource import DataSource


@dataclass
class RewardContext:
    """Everything a reward may look at besides the samples it scores.

    step: the optimisation step being taken (0-based).
    generator, discriminator: the models being trained.
    discriminator_logits: the discriminator's logits ``[N]`` for the samples being scored,
        already computed for the generator loss (differentiable with respect to the samples).
    latents: the latent batch ``[N, latent_dim]`` the samples were generated from.
    batch: the real batch of this step, a dict with ``"x"`` and any extra fields of the data
        source (such as ``"label"``).
    data: the run's data source.
    device: where the samples live.
    objective: for rewards that score rollouts (``per_token``): the weighted sum of the other
        configured rewards as a function of complete samples, ``objective(samples) -> [M]``, or
        ``None`` when there are none.  ORGAN mixes it with the discriminator's judgement.
    """

    step: int
    generator: torch.nn.Module
    discriminator: torch.nn.Module
    discriminator_logits: torch.Tensor
    latents: torch.Tensor
    batch: dict[str, torch.Tensor]
    data: "DataSource"
    device: torch.device
    objective: Callable[[torch.Tensor], torch.Tensor] | None = None


class Reward:
    """Base class of reward functions: one float per generated sample, larger is better.

    Subclasses take their config options as keyword arguments of ``__init__`` and implement
    ``__call__``.  Set ``differentiable = True`` when the returned tensor carries gradients back to
    ``samples``; only then may a config switch on the reward's pathwise term.  For sequences
    ``[N, T]`` under a sequence strategy, a reward may set ``per_token = True`` and return one
    reward per token, ``[N, T]``; it then takes in the other rewards through
    ``context.objective``.
    """

    differentiable: bool = False
    per_token: bool = False

    def __call__(self, samples: torch.Tensor, context: RewardContext) -> torch.Tensor:
        raise NotImplementedError
