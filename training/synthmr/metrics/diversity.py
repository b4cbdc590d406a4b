"""Diversity of a generated set: mean MS-SSIM between random pairs of distinct samples (lower = more diverse).

Odena et al., "Conditional Image Synthesis with Auxiliary Classifier GANs", ICML 2017, arXiv 1610.09585, use the
mean MS-SSIM of random pairs of generated images as a mode-collapse indicator; MS-SSIM is Wang, Simoncelli &
Bovik, "Multiscale structural similarity for image quality assessment", Asilomar 2003. The MS-SSIM itself is
MONAI's :class:`monai.metrics.MultiScaleSSIMMetric`.

Small images: the standard MS-SSIM uses 5 scales (4 halvings) and an 11-sample Gaussian window (sigma 1.5),
which needs images of at least 176 pixels per side (MONAI checks ``side // 16 > 10``). For smaller images
:func:`ms_ssim_settings` keeps the 11-sample window and drops the coarsest scales until the window fits into the
coarsest scale (and MONAI's check passes), renormalising the remaining Wang et al. weights to sum 1 so that
identical images still score 1. Images below 22 pixels per side get a single scale (plain SSIM), and axes
below 11 pixels the largest odd window that fits, with its sigma shrunk in proportion
(:func:`synthmr.metrics.image.ssim_window`).
64x64 patches thus use 3 scales, 32x32 patches 2 scales. Values computed with different settings are not
comparable: :func:`ms_ssim_settings` tells which were used.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import MultiScaleSSIMMetric

from synthmr.errors import InputError
from synthmr.metrics.image import SSIM_WINDOW, ssim_window

# Wang et al. 2003 weights of the 5 scales, finest first (MONAI's defaults).
_WANG_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _fits(side: int, scales: int) -> bool:
    """Whether MONAI's MS-SSIM runs on ``side`` pixels: the window fits the coarsest scale and MONAI's own check."""
    return side // 2 ** (scales - 1) >= SSIM_WINDOW and side // max(1, scales - 1) ** 2 > SSIM_WINDOW - 1


def ms_ssim_settings(spatial_shape) -> dict:
    """Kernel size, sigma and scale weights of MS-SSIM for images of ``spatial_shape`` (see module docstring).

    Returns:
        ``{"kernel_size", "kernel_sigma", "weights"}``, keyword arguments of MONAI's MultiScaleSSIMMetric.
    """
    window, sigma = ssim_window(spatial_shape)
    for scales in range(len(_WANG_WEIGHTS), 1, -1):
        if all(_fits(int(side), scales) for side in spatial_shape):
            weights = np.asarray(_WANG_WEIGHTS[:scales])
            return {"kernel_size": window, "kernel_sigma": sigma, "weights": tuple(map(float, weights / weights.sum()))}
    return {"kernel_size": window, "kernel_sigma": sigma, "weights": (1.0,)}


def ms_ssim_diversity(
    images, n_pairs: int = 1000, seed: int = 0, data_range: float = 1.0, batch_size: int = 64
) -> float:
    """Mean MS-SSIM over random pairs of distinct images of one (generated) set; lower = more diverse.

    Args:
        images: array or tensor ``(N, C, H, W)`` or ``(N, C, H, W, D)``, N >= 2, intensities in
            ``[0, data_range]``.
        n_pairs: number of pairs. When the set has at most that many distinct pairs, all of them are used (the
            exact mean); otherwise ``n_pairs`` pairs ``(i, j), i != j`` are drawn independently (a pair may repeat).
        seed: seed of the pair sampling.
        data_range: intensity range of the images.
        batch_size: pairs computed at a time (memory only; the result does not change).

    Returns:
        The mean MS-SSIM, 1 for identical images, near 0 for independent noise.

    Raises:
        InputError: fewer than 2 images, not 4D/5D, ``n_pairs`` < 1.
    """
    images = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if images.ndim not in (4, 5):
        raise InputError(f"images must be (N, C, H, W) or (N, C, H, W, D); got shape {tuple(images.shape)}")
    if len(images) < 2:
        raise InputError(f"MS-SSIM diversity needs at least 2 images; got {len(images)}")
    if n_pairs < 1:
        raise InputError(f"n_pairs must be >= 1; got {n_pairs}")
    images = images.detach().float()
    count = len(images)
    if n_pairs >= count * (count - 1) // 2:
        first, second = torch.triu_indices(count, count, offset=1)
    else:
        generator = torch.Generator().manual_seed(seed)
        first = torch.randint(count, (n_pairs,), generator=generator)
        # An offset in [1, N) makes the second image always differ from the first, uniformly over the others.
        second = (first + torch.randint(1, count, (n_pairs,), generator=generator)) % count
    metric = MultiScaleSSIMMetric(
        spatial_dims=images.ndim - 2, data_range=data_range, reduction="none", **ms_ssim_settings(images.shape[2:])
    )
    values = [
        metric(images[first[start : start + batch_size]], images[second[start : start + batch_size]])
        for start in range(0, len(first), batch_size)
    ]
    return torch.cat(values).mean().item()
