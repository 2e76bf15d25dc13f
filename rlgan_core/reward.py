"""The reward interface: what third-party reward plugins implement."""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch

if TYPE_CHECKING:
    from .datasource import DataSource


@dataclass
class RewardContext:
    """Everything a reward may look at besides the samples it scores.

    Build it with keywords; a field that the running strategy does not have is ``None``.

    step: the optimisation step being taken (0-based).
    generator, discriminator: the models of those roles (``discriminator`` is ``None`` in a run
        without one).
    discriminator_logits: the discriminator's logits ``[N]`` for the samples being scored,
        already computed for the generator loss (differentiable with respect to the samples
        under ``gan``).
    latents: the latent batch ``[N, latent_dim]`` the samples were generated from.
    batch: the real batch of this step, a dict with ``"x"`` and any extra fields of the data
        source (such as ``"label"``).
    data: the run's data source.
    device: where the samples live.
    objective: for rewards that score partial samples (``per_step``): the weighted sum of the other
        configured rewards as a function of complete samples, ``objective(samples) -> [M]``, or
        ``None`` when there are none.  ORGAN mixes it with the discriminator's judgement.
    models: every model role of the run by name (``{"generator": ..., "discriminator": ...}``).
    noise: ``noise(n, *shape)``, standard normal noise ``[n, *shape]`` for ``n`` of the samples being
        scored, from the run's latent generator: with N processes each gets its rows of one draw
        for the global batch, so a reward that draws its randomness here (such as rollouts) scores
        as one process would, and a resumed run as the uninterrupted one.  Call it on the training
        thread only (not from ``workers``); ``None`` outside a run.
    """

    step: int = 0
    generator: torch.nn.Module | None = None
    discriminator: torch.nn.Module | None = None
    discriminator_logits: torch.Tensor | None = None
    latents: torch.Tensor | None = None
    batch: dict[str, torch.Tensor] | None = None
    data: "DataSource | None" = None
    device: torch.device | None = None
    objective: Callable[[torch.Tensor], torch.Tensor] | None = None
    models: dict[str, torch.nn.Module] | None = None
    noise: Callable[..., torch.Tensor] | None = None


class Reward:
    """Base class of reward functions: one float per generated sample, larger is better.

    Subclasses take their config options as keyword arguments of ``__init__`` and implement
    ``__call__``.  Set ``differentiable = True`` when the returned tensor carries gradients back to
    ``samples``; only then may a config switch on the reward's pathwise term.  ``roles`` names the
    model roles the reward reads from its context (the ``realism`` reward: ``("discriminator",)``):
    the engine builds them even for a strategy that does not need them itself.  Under a strategy
    whose samples are made in steps (a sequence's tokens), a reward may set ``per_step = True``
    and return one reward per step, ``[N, T]``; it then takes in the other rewards through
    ``context.objective``.  (``per_token``, the older name of ``per_step``, still works.)
    """

    differentiable: bool = False
    per_step: bool = False
    roles: tuple[str, ...] = ()

    def __call__(self, samples: torch.Tensor, context: RewardContext) -> torch.Tensor:
        raise NotImplementedError

