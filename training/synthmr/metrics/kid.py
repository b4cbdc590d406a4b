"""Kernel distance between two image sets in the feature space of a pluggable extractor (KID), with an interval.

KID: Bińkowski et al., "Demystifying MMD GANs", arXiv 1801.01401: the squared maximum mean discrepancy between the
two feature distributions under the cubic polynomial kernel ``k(x, y) = (x . y / D + 1) ** 3``, estimated without
bias (the within-set sums leave out each sample's pairing with itself):

    MMD^2 = sum_{i != j} k(a_i, a_j) / (n_a (n_a - 1)) + sum_{i != j} k(b_i, b_j) / (n_b (n_b - 1))
            - 2 sum_{i, j} k(a_i, b_j) / (n_a n_b).

Why KID beside FID: FID fits a D-dimensional Gaussian to each set, and its covariance estimate rests on fewer
samples than it has entries unless n is several times D; FID is then biased upward by an amount that depends on n,
so values from sets of different sizes are not comparable. KID's estimator is unbiased at any n >= 2 and needs no
covariance. SynthMR reports FID only when both sets hold at least :data:`FID_SAMPLES_PER_FEATURE` times as many
samples as features (:func:`fid_is_reliable`), and KID with its interval otherwise.

The point value uses all samples (not the subsets of the paper's implementation). Its 95 % interval is a
percentile bootstrap: each resample draws both sets with replacement, and the within-set sums leave out the pairs
of a sample with its own copies, as the unbiased estimator leaves out ``i == j``. With per-sample counts ``c`` the
within-set sum is ``c^T K c - sum_i c_i^2 K_ii`` over ``n^2 - sum_i c_i^2`` pairs, so a resample costs two
matrix-vector products and no new kernel evaluations.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from synthmr.errors import InputError
from synthmr.metrics.extractors import describe_extractor
from synthmr.metrics.fid import _feature_matrix, extract_sets

# FID is reported only when each set has at least this many samples per feature dimension.
FID_SAMPLES_PER_FEATURE = 2
CONFIDENCE = 0.95


def fid_is_reliable(n_a: int, n_b: int, feature_dim: int) -> bool:
    """Whether both sets are large enough for SynthMR to report their FID (at least 2 samples per feature)."""
    return min(n_a, n_b) >= FID_SAMPLES_PER_FEATURE * feature_dim


def kernel_distance(features_a, features_b, n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """Unbiased squared MMD with the cubic polynomial kernel, and its bootstrap interval.

    Args:
        features_a, features_b: arrays or tensors ``(n, D)`` with the same ``D`` and ``n >= 2``.
        n_bootstrap: resamples of the interval (0: no interval).
        seed: seed of the resampling.

    Returns:
        ``{"kid": float, "interval": [low, high] or None, "n_a", "n_b", "feature_dim", "n_bootstrap"}``; the value
        may be slightly negative for sets from one distribution (the estimator is unbiased, not clipped). The
        interval is None without resamples (or when every resample drew copies of one sample only).

    Raises:
        InputError: not ``(n, D)`` arrays, fewer than 2 samples, different ``D``, NaN or infinite features, a
            negative or non-integer ``n_bootstrap`` or ``seed``.
    """
    a = _kid_features(features_a, "features_a")
    b = _kid_features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise InputError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise InputError(f"n_bootstrap must be a non-negative integer, got {n_bootstrap!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    value, interval = mmd_with_interval(*cubic_kernels(a, b), n_bootstrap=n_bootstrap, seed=seed)
    dim = a.shape[1]
    return {
        "kid": float(value),
        "interval": interval,
        "n_a": int(len(a)),
        "n_b": int(len(b)),
        "feature_dim": int(dim),
        "n_bootstrap": int(n_bootstrap),
    }


def cubic_kernels(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """KID's kernel ``(x . y / D + 1) ** 3`` within ``a``, within ``b`` and between them (float64 ``(n, D)``)."""
    dim = a.shape[1]
    return tuple((x @ y.T / dim + 1.0) ** 3 for x, y in ((a, a), (b, b), (a, b)))


def mmd_with_interval(
    k_aa: np.ndarray, k_bb: np.ndarray, k_ab: np.ndarray, n_bootstrap: int = 1000, seed: int = 0
) -> tuple[float, list[float] | None]:
    """The unbiased squared MMD of given kernel matrices and its percentile-bootstrap interval (module docstring).

    The estimator is linear in the kernel matrices, so the KID averaged over several feature sets of the same samples
    (channels, say) is this function of their mean kernels, interval included. The interval is None without
    resamples, or when every resample drew copies of one sample only.
    """
    n_a, n_b = len(k_aa), len(k_bb)
    value = _mmd(k_aa, k_bb, k_ab, np.ones(n_a), np.ones(n_b))
    if not n_bootstrap:
        return float(value), None
    rng = np.random.default_rng(seed)
    draws = np.empty(n_bootstrap)
    for index in range(n_bootstrap):
        counts_a = np.bincount(rng.integers(0, n_a, n_a), minlength=n_a).astype(float)
        counts_b = np.bincount(rng.integers(0, n_b, n_b), minlength=n_b).astype(float)
        draws[index] = _mmd(k_aa, k_bb, k_ab, counts_a, counts_b)
    # A resample made of copies of one sample has no pair of distinct samples: it gives no value.
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return float(value), None
    tail = 100 * (1 - CONFIDENCE) / 2
    return float(value), [float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))]


def _kid_features(features, what: str) -> np.ndarray:
    """``(n, D)`` float64 features with n >= 2 (checked here so that the message names KID, not the Fréchet
    distance); finiteness as for FID."""
    try:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else np.shape(features)
    except ValueError:  # a ragged nested list
        raise InputError(f"{what}: expected a (number of images, number of features) array") from None
    if len(shape) == 2 and shape[0] < 2:
        raise InputError(f"{what}: KID needs at least 2 feature vectors, got {shape[0]}")
    return _feature_matrix(features, what)


def _within(kernel: np.ndarray, counts: np.ndarray) -> float:
    """Mean kernel value over ordered pairs of distinct samples of a resample given by per-sample counts."""
    pairs = counts.sum() ** 2 - np.square(counts).sum()
    if pairs <= 0:  # every draw was one sample: no pair of distinct samples
        return np.nan
    return (counts @ kernel @ counts - np.square(counts) @ np.diag(kernel)) / pairs


def _mmd(k_aa, k_bb, k_ab, counts_a, counts_b) -> float:
    cross = counts_a @ k_ab @ counts_b / (counts_a.sum() * counts_b.sum())
    return _within(k_aa, counts_a) + _within(k_bb, counts_b) - 2.0 * cross


def kid(
    real_images,
    fake_images,
    extractor: nn.Module | str = "domain",
    batch_size: int = 32,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """KID between the feature distributions of real and synthetic images, with a 95 % bootstrap interval.

    Args:
        real_images, fake_images: ``(N, C, H, W)`` tensors/arrays or lists of 2D arrays, intensities already
            scaled to [0, 1], at least 2 images each.
        extractor: a module from :func:`~synthmr.metrics.extractors.get_extractor`, any feature module, or an
            extractor name (then loaded with its default weights: only "domain" has them).
        batch_size: images per forward pass.
        n_bootstrap, seed: as :func:`kernel_distance`.

    Returns:
        ``{"kid", "interval", "extractor", "n_real", "n_fake", "feature_dim", "n_bootstrap"}``.
    """
    real, fake, extractor = extract_sets(real_images, fake_images, extractor, batch_size, "KID")
    result = kernel_distance(real, fake, n_bootstrap=n_bootstrap, seed=seed)
    return {
        "kid": result["kid"],
        "interval": result["interval"],
        "extractor": describe_extractor(extractor),
        "n_real": result["n_a"],
        "n_fake": result["n_b"],
        "feature_dim": result["feature_dim"],
        "n_bootstrap": result["n_bootstrap"],
    }

