"""What a run learned of its reward, kept for sampling: a critic ``c(x)`` and importance resampling.

A strategy aiming at the KL-regularised target ``p*(x) = p_ref(x)·exp(r(x)/β)/Z``
(docs/kl_target.md) draws its samples from a learned policy ``q``, which may fall short of ``p*``.
With a critic fitted to the rewards it has seen, it can correct them at sampling time without
calling the reward: draw ``M`` candidates per sample from ``q``, weight each by
``p_ref(path)·exp(c(x)/β) / q(path)`` (over whatever path produced ``x``: the latent of a frozen
generator, the steps of a sampler), and keep one in proportion to its weight.  The kept samples
follow ``p_ref·exp(c/β)/Z`` as ``M`` grows, which is ``p*`` where ``c`` is the reward.
"""

import torch


class RewardCritic(torch.nn.Sequential):
    """An MLP ``c(x)`` from a sample's ``sample_size`` values (flattened) to a predicted reward,
    ``hidden`` its widths (SiLU between layers); fitted by regression (:meth:`loss`) to rewards
    of samples."""

    def __init__(self, sample_size: int, hidden: list[int]):
        if sample_size < 1 or not hidden or min(hidden) < 1:
            raise ValueError(f"a critic needs sample_size >= 1 and a non-empty list of positive widths, "
                             f"got {sample_size} and {list(hidden)}")
        sizes = [sample_size, *hidden]
        layers = [module for a, b in zip(sizes, sizes[1:]) for module in (torch.nn.Linear(a, b), torch.nn.SiLU())]
        super().__init__(torch.nn.Flatten(), *layers, torch.nn.Linear(sizes[-1], 1))

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        """The predicted reward of each sample ``[N]``."""
        return super().forward(samples).squeeze(1)

    def loss(self, samples: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        """The mean squared error of the predictions for ``samples`` against their ``rewards`` ``[N]``."""
        return (self(samples) - rewards.to(samples.dtype)).square().mean()


def importance_resample(candidates: torch.Tensor, log_weights: torch.Tensor) -> torch.Tensor:
    """One of each row's ``M`` candidates ``[n, M, ...]``, drawn with probabilities proportional to
    ``exp(log_weights)`` ``[n, M]`` (from the global random generator): ``[n, ...]``."""
    if log_weights.shape != candidates.shape[:2]:
        raise ValueError(f"log_weights {tuple(log_weights.shape)} must be [n, M] for candidates "
                         f"{tuple(candidates.shape)}")
    if not torch.isfinite(log_weights).any(1).all():
        raise ValueError("every row of log_weights needs a finite weight")
    kept = torch.distributions.Categorical(logits=log_weights).sample()
    return candidates[torch.arange(len(candidates), device=candidates.device), kept]
