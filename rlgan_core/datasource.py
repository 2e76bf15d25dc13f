"""The data-source interface: training data plus the metrics and pictures that suit it."""

from pathlib import Path

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

    def render(self, samples: torch.Tensor, path: Path) -> None:
        """Save a picture of generated ``samples`` to ``path`` (PNG); nothing by default."""
