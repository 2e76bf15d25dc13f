"""Sample-quality metrics: Fréchet distance between feature sets, and mixture mode coverage."""

import torch


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2)) of two feature sets [n, d], in float64."""
    a, b = features_a.double(), features_b.double()
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    # Tr((C_a C_b)^(1/2)) = sum of sqrt(eigenvalues of C_a^(1/2) C_b C_a^(1/2)), a symmetric matrix.
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    middle = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0)
    distance = (mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * middle.sqrt().sum()
    return float(distance.clamp(min=0))


def mode_labels(samples: torch.Tensor, means: torch.Tensor, std: float) -> torch.Tensor:
    """The mode each sample ``[N, d]`` is a high-quality sample of, within 3 std of its nearest
    mean (``-1``: none), as the Unrolled-GAN, VEEGAN and PacGAN papers count them."""
    nearest_distance, nearest_mode = torch.cdist(samples.double(), means.double()).min(dim=1)
    return torch.where(nearest_distance <= 3 * std, nearest_mode, -1)


def mode_statistics(samples: torch.Tensor, means: torch.Tensor, std: float) -> dict[str, float]:
    """Modes covered and the high-quality share, as in the Unrolled-GAN, VEEGAN and PacGAN papers.

    A sample is high quality when it lies within 3 std of its nearest mode; a mode is covered
    when it is the nearest mode of at least one high-quality sample (:func:`mode_labels`).
    """
    labels = mode_labels(samples, means, std)
    high_quality = labels >= 0
    return {
        "modes_covered": float(torch.unique(labels[high_quality]).numel()),
        "modes_total": float(len(means)),
        "high_quality_fraction": float(high_quality.double().mean()),
    }
