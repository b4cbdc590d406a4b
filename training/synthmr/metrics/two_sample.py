"""Leave-one-out 1-nearest-neighbour two-sample test between real and generated samples.

Lopez-Paz & Oquab, "Revisiting Classifier Two-Sample Tests", ICLR 2017, arXiv 1610.06545; proposed as a GAN
metric by Xu et al., "An empirical study on evaluation metrics of generative adversarial networks", arXiv
1806.07755.

Every point of the pooled set is classified by its nearest *other* point (leave-one-out: the distance of a point
to itself is excluded): it is correct when that neighbour comes from the same set. With equally sized sets,
accuracy 0.5 means the sets are indistinguishable, near 1 that they are well separated (poor or unrealistic
samples), and clearly below 0.5 that the generated points sit on top of real ones (memorisation). With unequal
sizes the chance level moves towards the larger set's share, so compare sets of equal size.
"""

from __future__ import annotations

import numpy as np
import torch

from synthmr.errors import InputError

_METRICS = ("euclidean", "cosine")


def _as_matrix(samples, name: str) -> torch.Tensor:
    """(N, ...) features or images -> (N, D) float64 rows."""
    matrix = samples if isinstance(samples, torch.Tensor) else torch.as_tensor(np.asarray(samples))
    if matrix.ndim == 0 or matrix.shape[0] == 0:
        raise InputError(f"{name} is empty: give at least one sample (rows = samples)")
    matrix = matrix.detach().to(device="cpu", dtype=torch.float64).reshape(matrix.shape[0], -1)
    if not torch.isfinite(matrix).all():
        raise InputError(f"{name} contains NaN or infinite values")
    return matrix


def nn_accuracy(
    features_real, features_fake, metric: str = "euclidean", chunk_size: int = 1024
) -> dict[str, float | int]:
    """Leave-one-out 1-NN accuracy of telling real from fake samples.

    Args:
        features_real: real samples, array or tensor ``(N_real, ...)``: feature vectors or images (flattened).
        features_fake: generated samples ``(N_fake, ...)`` with the same trailing shape.
        metric: "euclidean" or "cosine" (Euclidean distance after scaling every row to unit length, which orders
            neighbours like the cosine distance).
        chunk_size: rows of the distance matrix computed at a time; bounds memory to ``chunk_size x N`` distances
            without changing the result.

    Returns:
        ``{"accuracy", "accuracy_real", "accuracy_fake", "n_real", "n_fake"}``: overall accuracy over all
        ``N_real + N_fake`` points, and the accuracy over the real and the fake points separately.

    Raises:
        InputError: an empty set, mismatched feature sizes, non-finite values, unknown metric.
    """
    if metric not in _METRICS:
        raise InputError(f"unknown metric {metric!r} for nn_accuracy; use one of {list(_METRICS)}")
    real = _as_matrix(features_real, "features_real")
    fake = _as_matrix(features_fake, "features_fake")
    if real.shape[1] != fake.shape[1]:
        raise InputError(f"real and fake samples differ in size: {real.shape[1]} vs {fake.shape[1]} values each")
    pooled = torch.cat([real, fake])
    if metric == "cosine":
        pooled = torch.nn.functional.normalize(pooled, dim=1)
    is_real = torch.zeros(len(pooled), dtype=torch.bool)
    is_real[: len(real)] = True

    neighbour = torch.empty(len(pooled), dtype=torch.long)
    for start in range(0, len(pooled), chunk_size):
        rows = torch.arange(start, min(start + chunk_size, len(pooled)))
        distances = torch.cdist(pooled[rows], pooled)
        # Leave-one-out: a point must not be its own nearest neighbour.
        distances[torch.arange(len(rows)), rows] = torch.inf
        neighbour[rows] = distances.argmin(dim=1)
    correct = is_real[neighbour] == is_real
    return {
        "accuracy": correct.double().mean().item(),
        "accuracy_real": correct[is_real].double().mean().item(),
        "accuracy_fake": correct[~is_real].double().mean().item(),
        "n_real": len(real),
        "n_fake": len(fake),
    }
