"""The data-source interface: training data plus the metrics and pictures that suit it."""

import math
import warnings
from pathlib import Path

import numpy as np
import torch


class DataSource:
    """Training data held in memory, with optional metrics and pictures for generated samples.

    Subclasses set ``shape`` (the shape of one sample) and implement ``tensors``.
    """

    shape: tuple[int, ...]

    def tensors(self) -> dict[str, torch.Tensor]:
        """All training examples: ``"x"`` of shape ``[M, *shape]`` and any extra fields ``[M, ...]``."""
        raise NotImplementedError

    def metrics(self, samples: torch.Tensor) -> dict[str, float]:
        """Quality metrics of generated ``samples`` (CPU); none by default."""
        return {}

    def classify(self, samples: torch.Tensor) -> torch.Tensor | None:
        """The class (or mode) of each generated sample, ``[N]`` integers from 0 (``-1``: in no
        class), for comparing two distributions' class masses (``rlgan tilt --compare``); ``None``
        (the default): no classes."""
        return None

    def features(self, samples: torch.Tensor) -> torch.Tensor:
        """Features ``[N, d]`` of generated samples for Fréchet distances between two sample sets
        (``rlgan tilt --compare``); by default the samples' values, flattened."""
        return samples.detach().float().cpu().flatten(1)

    def render(self, samples: torch.Tensor, path: Path) -> None:
        """Save a picture of generated ``samples`` to ``path`` (PNG).  By default: a scatter plot of
        2-D points, a grid of grey images for samples that are square images (``[H, W]``,
        ``[1, H, W]`` or flattened, values in [-1, 1]); for other shapes no picture, and a warning."""
        flat = samples.detach().float().cpu().flatten(1)
        side = math.isqrt(flat.shape[1])
        if flat.shape[1] == 2:
            save_scatter(flat, path)
        elif side * side == flat.shape[1] and side > 2:
            save_image_grid(flat.view(-1, side, side), path)
        else:
            warnings.warn(f"{type(self).__name__} draws no pictures of samples of shape {tuple(samples.shape[1:])}: "
                          "give it a render(samples, path) method", stacklevel=2)


def save_image_grid(images: torch.Tensor, path: Path, columns: int = 10) -> None:
    """Save grey images in [-1, 1], shape [n, h, w], as one PNG grid with a 1-pixel border."""
    from PIL import Image

    images = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    count, height, width = images.shape
    rows = math.ceil(count / columns)
    grid = np.zeros((rows * (height + 1) + 1, columns * (width + 1) + 1), dtype=np.uint8)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        top, left = 1 + row * (height + 1), 1 + column * (width + 1)
        grid[top : top + height, left : left + width] = image
    scale = max(1, 256 // grid.shape[1] * 2)
    Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST).save(path)


def save_scatter(points: torch.Tensor, path: Path, marks: torch.Tensor | None = None) -> None:
    """Save 2-D ``points`` [n, 2] as a scatter plot (PNG), with ``marks`` [m, 2] (such as a
    mixture's modes) drawn over them as red crosses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 5))
    axes.scatter(*points.detach().float().cpu().T.numpy(), s=2, alpha=0.4, label="generated")
    if marks is not None:
        axes.scatter(*marks.T.numpy(), s=30, c="red", marker="x", label="modes")
        axes.legend(loc="upper right")
    axes.set_aspect("equal")
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
