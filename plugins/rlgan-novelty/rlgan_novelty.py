"""rlgan-novelty: rewards samples for being far from the rest of their batch.

A mode-collapsing generator makes near-identical samples; rewarding the distance to each sample's
nearest neighbour in the batch pushes it to explore.  Switch it on in a config:

    [rewards.novelty]
    weight = 0.5
    pathwise = true      # it is differentiable
    neighbours = 1
"""

import torch

from rlgan_core import Reward, hookimpl


class Novelty(Reward):
    """Mean distance to the ``neighbours`` nearest other samples of the batch."""

    differentiable = True

    def __init__(self, neighbours: int = 1):
        if not isinstance(neighbours, int) or neighbours < 1:
            raise ValueError(f"neighbours must be a positive integer, got {neighbours!r}")
        self.neighbours = neighbours

    def __call__(self, samples, context):
        flat = samples.flatten(1)
        if len(flat) < 2:  # a sample alone in its batch has no neighbour to be far from
            return flat.new_zeros(len(flat))
        distances = torch.cdist(flat, flat)
        distances = distances + torch.eye(len(flat), device=flat.device) * distances.max().detach()
        k = min(self.neighbours, len(flat) - 1)
        return distances.topk(k, dim=1, largest=False).values.mean(dim=1)


@hookimpl
def rlgan_register_rewards(register):
    register("novelty", Novelty)
