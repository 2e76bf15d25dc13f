"""Built-in rewards: the discriminator's judgement, and a digit class chosen by the user."""

import torch
import torch.nn.functional as F

from ..classifier import load_classifier
from ..hookspecs import hookimpl
from ..reward import Reward


class Realism(Reward):
    """log D(x): the log-probability the discriminator gives a sample of being real."""

    differentiable = True

    def __call__(self, samples, context):
        return -F.softplus(-context.discriminator_logits)


class DigitClass(Reward):
    """log p(target | x) under the shipped digits classifier: steers generation to one digit."""

    differentiable = True

    def __init__(self, target: int = 0):
        if not isinstance(target, int) or not 0 <= target <= 9:
            raise ValueError(f"target must be a digit from 0 to 9, got {target!r}")
        self.target = target
        self._classifiers: dict[torch.device, torch.nn.Module] = {}

    def __call__(self, samples, context):
        classifier = self._classifiers.get(samples.device)
        if classifier is None:
            classifier = self._classifiers[samples.device] = _copy_to(load_classifier(), samples.device)
        if samples[0].numel() != 64:
            raise ValueError("digit_class scores 8x8 digits (64 values per sample)")
        return torch.log_softmax(classifier(samples.flatten(1).float()), dim=1)[:, self.target]


def _copy_to(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    import copy

    return copy.deepcopy(module).to(device)


@hookimpl
def rlgan_register_rewards(register):
    register("realism", Realism)
    register("digit_class", DigitClass)
