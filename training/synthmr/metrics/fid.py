"""Fréchet distance between two image sets in the feature space of a pluggable extractor (FID and its relatives).

FID: Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium",
arXiv 1706.08500: fit a Gaussian to each set's features and take

    d^2 = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)).

Why not MONAI's ``FIDMetric``/``get_fid_score`` as it is: it forms the D x D product ``S_a S_b`` and takes
``scipy.linalg.sqrtm`` of it (falling back to ``eps`` on the diagonal only when the result is not finite). With
fewer images than features (the usual case for medical image sets and 2048-d Inception features) both covariances
are singular and the product is a singular, non-symmetric matrix, for which ``sqrtm`` is ill-conditioned (measured
with MONAI 1.6.1 / SciPy 1.17: identical sets of 20 images with 2048 features give -1.1e-3 instead of 0, and
errors of ~1e-4 appear already at 8-30 images with 256-512 features); its result is only guarded against
non-finite values and small imaginary parts. A 2048-d call takes ~30 s on one CPU core, and MONAI passes
``disp=False``, which SciPy 1.17 deprecates and 1.18 removes. Adding ``eps`` to the diagonal (pytorch-fid's and
MONAI's fallback) perturbs the value rather than removing the ill-conditioning.

What is done instead needs no matrix square root: with centred feature matrices ``A`` (n_a x D) and ``B``
(n_b x D), ``S_a = A^T A / (n_a - 1)``, and the non-zero eigenvalues of ``S_a S_b`` are the squared singular values of
``A B^T`` divided by ``(n_a - 1)(n_b - 1)``, so

    Tr (S_a S_b)^(1/2) = ||A B^T||_* / sqrt((n_a - 1)(n_b - 1))      (||.||_* = sum of singular values).

With QR factors ``A = Q_a R_a`` the singular values of ``A B^T`` are those of the small ``R_a R_b^T``
(min(n_a, D) x min(n_b, D)), so the cost is a QR per set plus one small SVD, exact for any n and D, with no eps.
On well-conditioned inputs it agrees with MONAI's ``get_fid_score`` to rounding (tests/test_fid.py checks it).

:func:`frechet_distance_with_interval` adds a 95 % bootstrap interval (both sets resampled independently), moved by
the bootstrap's own bias estimate so that it is centred as the point value is (see its docstring).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn

from synthmr.errors import InputError
from synthmr.metrics.extractors import describe_extractor, get_extractor

# Images must already be scaled to [0, 1]; this slack only forgives interpolation overshoot and rounding.
_RANGE_SLACK = 1e-3


def _feature_matrix(features, what: str) -> np.ndarray:
    array = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    if array.ndim != 2:
        raise InputError(f"{what}: expected a (number of images, number of features) array, got shape {array.shape}")
    if array.shape[0] < 2:
        raise InputError(f"{what}: the Fréchet distance needs at least 2 feature vectors, got {array.shape[0]}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise InputError(f"{what}: features contain NaN or infinity")
    return array


def frechet_distance(features_a, features_b) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (sample mean, unbiased covariance).

    Exact for any number of samples and features (see the module docstring for how the square-root term is
    computed); symmetric in its arguments; never negative (rounding below 0 is clipped).

    Args:
        features_a, features_b: arrays or tensors ``(n, D)`` with the same ``D`` and ``n >= 2``.
    """
    a = _feature_matrix(features_a, "features_a")
    b = _feature_matrix(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise InputError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    centred_a, centred_b = a - mean_a, b - mean_b
    dof_a, dof_b = a.shape[0] - 1, b.shape[0] - 1
    r_a = np.linalg.qr(centred_a, mode="r")
    r_b = np.linalg.qr(centred_b, mode="r")
    import scipy.linalg  # the "train" extra: imported here, so that inference never needs it

    trace_sqrt = scipy.linalg.svdvals(r_a @ r_b.T).sum() / np.sqrt(dof_a * dof_b)
    trace_a = np.square(centred_a).sum() / dof_a
    trace_b = np.square(centred_b).sum() / dof_b
    distance = np.square(mean_a - mean_b).sum() + trace_a + trace_b - 2.0 * trace_sqrt
    return max(float(distance), 0.0)


def _image_batches(images, batch_size: int, what: str) -> Iterator[torch.Tensor]:
    """Batches ``(B, C, H, W)`` of float32 images, in input order; a list's images of one shape share a batch."""
    if isinstance(images, (torch.Tensor, np.ndarray)):
        array = torch.as_tensor(images)
        if array.ndim != 4:
            raise InputError(f"{what}: expected images (N, C, H, W) or a list of 2D arrays, got {tuple(array.shape)}")
        for start in range(0, array.shape[0], batch_size):
            yield array[start : start + batch_size].float()
        return
    if not isinstance(images, Sequence) or isinstance(images, str):
        raise InputError(f"{what}: expected a tensor/array (N, C, H, W) or a list of 2D arrays, got {type(images)}")
    run: list[torch.Tensor] = []
    for index, image in enumerate(images):
        image = torch.as_tensor(np.asarray(image)).float()
        if image.ndim != 2:
            raise InputError(f"{what}[{index}]: expected a 2D array, got shape {tuple(image.shape)}")
        if run and (image.shape != run[0].shape or len(run) == batch_size):
            yield torch.stack(run)[:, None]
            run = []
        run.append(image)
    if run:
        yield torch.stack(run)[:, None]


def _count(images, what: str) -> int:
    if isinstance(images, (torch.Tensor, np.ndarray)):
        return int(images.shape[0]) if images.ndim else 0
    if isinstance(images, Sequence) and not isinstance(images, str):
        return len(images)
    raise InputError(f"{what}: expected a tensor/array (N, C, H, W) or a list of 2D arrays, got {type(images)}")


def extract_features(images, extractor: nn.Module, batch_size: int = 32) -> torch.Tensor:
    """Features ``(N, D)`` (float64, CPU) of ``images`` through ``extractor``, in input order.

    Args:
        images: ``(N, C, H, W)`` tensor/array or a list of 2D arrays (any sizes), intensities scaled to [0, 1];
            the extractor resizes and handles channels itself.
        extractor: a module from :func:`~synthmr.metrics.extractors.get_extractor` or any module mapping such
            batches to ``(B, D)`` (or ``(B, D, 1, 1)``) features; it is run in eval mode on its own device.
        batch_size: images per forward pass (memory only: the extractors here give the same features for any
            batch size).
    """
    return _extract(images, extractor, batch_size, "images")


def _extract(images, extractor: nn.Module, batch_size: int, what: str) -> torch.Tensor:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    parameter = next(extractor.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = extractor.training
    extractor.eval()
    features = []
    try:
        with torch.inference_mode():
            for batch in _image_batches(images, batch_size, what):
                if batch.numel() == 0 or not torch.isfinite(batch).all():
                    raise InputError(f"{what}: empty image or NaN/infinite intensities")
                low, high = float(batch.min()), float(batch.max())
                if low < -_RANGE_SLACK or high > 1 + _RANGE_SLACK:
                    raise InputError(
                        f"{what}: intensities must be scaled to [0, 1] first (e.g. by the 0.5/99.5 percentiles), "
                        f"got values in [{low:.4g}, {high:.4g}]"
                    )
                features.append(extractor(batch.clamp(0, 1).to(device)).flatten(1).double().cpu())
    finally:
        extractor.train(was_training)
    if not features:
        raise InputError(f"{what}: no images given")
    return torch.cat(features)


def extract_sets(
    real_images, fake_images, extractor: nn.Module | str, batch_size: int, metric: str
) -> tuple[torch.Tensor, torch.Tensor, nn.Module]:
    """Features of both image sets through ``extractor`` (a module or a name, then loaded), and the module; each set
    needs at least 2 images for ``metric`` (named in the error)."""
    for images, what in ((real_images, "real_images"), (fake_images, "fake_images")):
        if _count(images, what) < 2:
            raise InputError(f"{what}: {metric} needs at least 2 images, got {_count(images, what)}")
    if isinstance(extractor, str):
        extractor = get_extractor(extractor)
    real = _extract(real_images, extractor, batch_size, "real_images")
    fake = _extract(fake_images, extractor, batch_size, "fake_images")
    return real, fake, extractor


def fid(real_images, fake_images, extractor: nn.Module | str = "domain", batch_size: int = 32) -> dict:
    """Fréchet distance between the feature distributions of real and synthetic images.

    The value depends on the extractor, its weights, the preprocessing and the sample sizes (FID is biased upward
    for small sets): compare numbers only when all of these match, which is why the report names them.

    Args:
        real_images, fake_images: ``(N, C, H, W)`` tensors/arrays or lists of 2D arrays, intensities already
            scaled to [0, 1], at least 2 images each.
        extractor: a module from :func:`~synthmr.metrics.extractors.get_extractor`, any feature module, or an
            extractor name (then loaded with its default weights: only "domain" has them).
        batch_size: images per forward pass.

    Returns:
        ``{"fid": float, "extractor": str, "n_real": int, "n_fake": int, "feature_dim": int}``; "extractor" is
        :func:`~synthmr.metrics.extractors.describe_extractor`'s line (name, weights file, SHA-256 prefix).
    """
    real, fake, extractor = extract_sets(real_images, fake_images, extractor, batch_size, "FID")
    return {
        "fid": frechet_distance(real, fake),
        "extractor": describe_extractor(extractor),
        "n_real": int(real.shape[0]),
        "n_fake": int(fake.shape[0]),
        "feature_dim": int(real.shape[1]),
    }


# Two-sided coverage of the bootstrap interval of :func:`frechet_distance_with_interval`.
FID_CONFIDENCE = 0.95


def frechet_distance_with_interval(features_a, features_b, n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """:func:`frechet_distance` of two feature sets and its 95 % bootstrap interval.

    Each resample draws the rows of each set with replacement, independently of the other set (the two sets are
    independent samples), and recomputes :func:`frechet_distance` on them. The percentile interval of those
    values (their 2.5th and 97.5th percentiles) is biased upward for FID: a resample holds only about 63 % distinct
    rows, so its covariance estimates are poorer and its FID larger than the point value's, by much when the
    sets hold few rows per feature (identical sets of 600 x 256 Gaussian features: point value 0, percentile
    interval about [42, 52]). The reported ``interval`` is therefore that percentile interval moved by the
    bootstrap's estimate of its own bias, ``mean(resampled) - fid`` (Efron and Tibshirani, *An Introduction to
    the Bootstrap*, 1993, ch. 10), clipped at 0: it keeps the spread of the resampled values and is centred as the
    point value is. The raw percentile interval and the bias are reported beside it. The interval describes how
    much the value would move with another draw of as many images; it does not remove FID's own small-sample bias
    (:mod:`synthmr.metrics.kid`), so compare FIDs only between sets of the same sizes.

    Cost: one :func:`frechet_distance` per resample (two QR factorisations and one small SVD), about 35 ms for
    600 x 256 features on one CPU core. When both sets together have fewer rows than features, both are first
    expressed in an orthonormal basis of the span of all their rows (exact: every mean and covariance of a resample
    lies in that span and the distance is invariant to rotations), so resamples cost as for ``n_a + n_b`` features.

    Args:
        features_a, features_b: arrays or tensors ``(n, D)`` with the same ``D`` and ``n >= 2``.
        n_bootstrap: resamples (0: no interval).
        seed: seed of the resampling.

    Returns:
        ``{"fid": float, "interval": [low, high] or None, "percentile_interval": [low, high] or None,
        "bootstrap_bias": float or None, "n_a": int, "n_b": int, "n_bootstrap": int}``.

    Raises:
        InputError: as :func:`frechet_distance`; a negative or non-integer ``n_bootstrap`` or ``seed``.
    """
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 0:
        raise InputError(f"n_bootstrap must be a non-negative integer, got {n_bootstrap!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    a = _feature_matrix(features_a, "features_a")
    b = _feature_matrix(features_b, "features_b")
    value = frechet_distance(a, b)  # also checks that the feature sizes agree
    n_a, n_b = len(a), len(b)
    result = {"fid": value, "interval": None, "percentile_interval": None, "bootstrap_bias": None}
    if n_bootstrap:
        if n_a + n_b < a.shape[1]:
            # Rows of both sets in an orthonormal basis of their joint span: the same distances, fewer columns.
            basis = np.linalg.qr(np.concatenate([a, b]).T, mode="reduced")[0]  # (D, n_a + n_b)
            a, b = a @ basis, b @ basis
        rng = np.random.default_rng(seed)
        draws = np.array(
            [frechet_distance(a[rng.integers(0, n_a, n_a)], b[rng.integers(0, n_b, n_b)]) for _ in range(n_bootstrap)]
        )
        tail = 100 * (1 - FID_CONFIDENCE) / 2
        low, high = (float(v) for v in np.percentile(draws, [tail, 100 - tail]))
        bias = float(draws.mean()) - value
        result.update(
            interval=[max(low - bias, 0.0), max(high - bias, 0.0)], percentile_interval=[low, high], bootstrap_bias=bias
        )
    return {**result, "n_a": int(n_a), "n_b": int(n_b), "n_bootstrap": int(n_bootstrap)}
