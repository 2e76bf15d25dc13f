"""The small digits classifier shipped with the package: features for the Fréchet distance,
class predictions for coverage, and log-probabilities for the ``digit_class`` reward.

``scripts/train_digits_classifier.py`` trains it on the digits training split and writes
``rlgan_core/assets/digits_classifier.safetensors``.
"""

from functools import cache
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

WEIGHTS = Path(__file__).parent / "assets" / "digits_classifier.safetensors"
SPLIT_SEED = 0
TEST_FRACTION = 0.2


class DigitsClassifier(nn.Module):
    """8x8 digit in [-1, 1] -> 64 features -> 10 class logits."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.flatten(1)))


def digits_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits scaled to [-1, 1], as a fixed stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    digits = load_digits()
    images = (digits.data.astype(np.float32) / 16.0) * 2.0 - 1.0
    labels = digits.target.astype(np.int64)
    if split == "all":
        return images, labels
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=labels
    )
    return (train_x, train_y) if split == "train" else (test_x, test_y)


@cache
def load_classifier() -> DigitsClassifier:
    """The shipped classifier, in eval mode, on the CPU, with frozen weights."""
    # built without drawing from the global generator: the first build happens mid-run (the first
    # reward call), and a resumed run must draw exactly what an uninterrupted one does
    with torch.random.fork_rng(devices=[]):
        model = DigitsClassifier()
    model.load_state_dict(load_file(WEIGHTS))
    model.requires_grad_(False)
    return model.eval()
