"""Built-in rewards: the discriminator's judgement, a digit class chosen by the user, and black boxes
computed in NumPy (mirror symmetry of an image; a point inside a box)."""

import numpy as np
import torch
import torch.nn.functional as F

from ..classifier import shipped_classifier
from ..hookspecs import hookimpl
from ..reward import Reward


class Realism(Reward):
    """log D(x): the log-probability the discriminator gives a sample of being real."""

    differentiable = True
    roles = ("discriminator",)

    def __call__(self, samples, context):
        logits = context.discriminator_logits
        if logits is None:
            logits = context.discriminator(samples)
        return -F.softplus(-logits)


class DigitClass(Reward):
    """log p(target | x) under the shipped digit classifier for the samples' size: the 8x8 digits'
    (64 values per sample) or MNIST's (784): steers generation to one digit."""

    differentiable = True

    def __init__(self, target: int = 0):
        if not isinstance(target, int) or not 0 <= target <= 9:
            raise ValueError(f"target must be a digit from 0 to 9, got {target!r}")
        self.target = target
        self._classifiers: dict[tuple[torch.device, int], torch.nn.Module] = {}

    def __call__(self, samples, context):
        size = samples[0].numel()
        key = (samples.device, size)
        classifier = self._classifiers.get(key)
        if classifier is None:
            shipped = shipped_classifier(size)
            if shipped is None:
                raise ValueError(f"digit_class scores 8x8 digits (64 values per sample) or 28x28 MNIST digits (784); "
                                 f"these samples have {size}")
            classifier = self._classifiers[key] = _copy_to(shipped, samples.device)
        return torch.log_softmax(classifier(samples.flatten(1).float()), dim=1)[:, self.target]


class MirrorSymmetry(Reward):
    """Minus the mean absolute difference between an image and its left-right mirror image, in
    NumPy: a reward with no gradient, for the policy strategies (``reinforce``, ``ppo``).  Samples
    are ``[N, H, W]`` (or ``[N, H * W]`` with ``width``)."""

    def __init__(self, width: int = 8):
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.width = width

    def __call__(self, samples, context):
        images = samples.detach().cpu().numpy().reshape(len(samples), -1, self.width)
        values = -np.abs(images - images[:, :, ::-1]).mean(axis=(1, 2))
        return torch.from_numpy(values.astype(np.float32)).to(samples.device)


class InsideBox(Reward):
    """1 for a sample inside the box ``lower <= x <= upper`` (element-wise), 0 outside; in NumPy: a
    black box with no gradient, for steering samples of low-dimensional data into a region."""

    def __init__(self, lower: list[float] = (0.0, 0.0), upper: list[float] = (1.0, 1.0)):
        if len(lower) != len(upper) or any(a > b for a, b in zip(lower, upper)):
            raise ValueError(f"lower and upper must have the same length and lower <= upper, got {lower}, {upper}")
        self.lower, self.upper = np.asarray(lower, dtype=np.float32), np.asarray(upper, dtype=np.float32)

    def __call__(self, samples, context):
        points = samples.detach().cpu().numpy().reshape(len(samples), -1)
        if points.shape[1] != len(self.lower):
            raise ValueError(f"inside_box has {len(self.lower)} bounds; samples have {points.shape[1]} values")
        inside = ((points >= self.lower) & (points <= self.upper)).all(axis=1)
        return torch.from_numpy(inside.astype(np.float32)).to(samples.device)


def _copy_to(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    import copy

    return copy.deepcopy(module).to(device)


@hookimpl
def rlgan_register_rewards(register):
    register("realism", Realism)
    register("digit_class", DigitClass)
    register("mirror_symmetry", MirrorSymmetry)
    register("inside_box", InsideBox)
