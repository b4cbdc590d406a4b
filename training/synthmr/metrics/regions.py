"""Paired metrics inside region masks: one synthetic image per real case, compared inside each named label map.

Images get the same per-image robust scaling to [0, 1] as in :func:`~synthmr.metrics.evaluate.evaluate` before
any metric. With ``shared_scale`` every image of a case is instead scaled by the range of one reference image of
that case (its 0.5th and 99.5th percentiles to 0 and 1, clipped to [0, :data:`SHARED_SCALE_HEADROOM`]): a common
scale on which the images' differences in brightness count, where per-image scaling would remove them.

Data range of SSIM and PSNR on the shared scale: the real image's actual range on that scale (its maximum minus
its minimum, per case), as SSIM's stability constants ``(0.01 L)^2`` and ``(0.03 L)^2`` are meant to scale with
the dynamic range ``L`` of the image (Wang et al., "Image Quality Assessment: From Error Visibility to Structural
Similarity", IEEE TIP 2004; no arXiv version). An earlier version used the clipping bound 3.0, a constant that is
no property of the data and never below an image's range on that scale: the constants came out too large, which
pulls SSIM towards 1. A real image that is constant on the shared scale has no range; it is compared with
``L = 1`` (the reference's robust range). With per-image scaling ``L = 1``, the range of the [0, 1] scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from synthmr.errors import InputError
from synthmr.io import read_image
from synthmr.metrics.evaluate import _PERCENTILES, PAIRED_METRICS, unit_scaled_image
from synthmr.metrics.image import paired_metrics

# With a shared scale, images may exceed the reference's range: up to this multiple of it is kept.
SHARED_SCALE_HEADROOM = 3.0


def region_metrics(
    real: Sequence[dict], paths: Sequence, key: str, regions: Sequence[str], shared_scale: str | None = None
) -> dict:
    """Paired metrics of ``paths`` against the real ``key`` images inside each region, mean and std over cases.

    Args:
        real: cases with the real image under ``key``, a label map under each region name (nonzero = inside) and,
            with ``shared_scale``, the reference image under that key.
        paths: one synthetic image per real case, in the same order.
        key: the image key being judged.
        regions: label-map keys of the real cases; the pseudo-region ``"image"`` is the whole image. A case whose
            region is empty does not count for that region.
        shared_scale: key of the reference image that scales all images of its case (see the module docstring),
            or None for per-image scaling.

    Returns:
        ``{region: {"n_cases": int, metric: {"mean", "std"}}}`` for the metrics of
        :data:`~synthmr.metrics.evaluate.PAIRED_METRICS` (None where no case has the region).
    """
    values: dict[str, dict[str, list[float]]] = {region: {m: [] for m in PAIRED_METRICS} for region in regions}
    for item, path in zip(real, paths):
        data_range = 1.0
        if shared_scale is None:
            real_image, fake_image = unit_scaled_image(Path(item[key])), unit_scaled_image(Path(path))
        else:
            low, high = (float(v) for v in np.percentile(read_image(item[shared_scale]).array, _PERCENTILES))
            if high <= low:
                raise InputError(f"{item[shared_scale]}: constant image; it cannot set the shared scale")
            real_image, fake_image = _shared_scaled(Path(item[key]), low, high), _shared_scaled(Path(path), low, high)
            data_range = shared_data_range(real_image)
        if real_image.shape != fake_image.shape:
            raise InputError(f"{path}: shape {fake_image.shape} differs from the real {item[key]} {real_image.shape}")
        for region in regions:
            mask = np.ones(real_image.shape, bool) if region == "image" else read_image(item[region]).array > 0
            if mask.shape != real_image.shape:
                raise InputError(f"{item[region]}: mask shape {mask.shape} differs from the image {real_image.shape}")
            if not mask.any():
                continue  # the region is absent from this case
            for metric, value in paired_metrics(fake_image, real_image, data_range=data_range, mask=mask).items():
                values[region][metric].append(value)
    summary = {}
    for region, per_metric in values.items():
        n = len(per_metric["mae"])
        summary[region] = {"n_cases": n}
        for metric, numbers in per_metric.items():
            array = np.asarray(numbers, dtype=float)
            finite = n > 0 and bool(np.isfinite(array).all())
            summary[region][metric] = {
                "mean": float(array.mean()) if finite else None,
                "std": float(array.std()) if finite else None,
            }
    return summary


def shared_data_range(real_image: np.ndarray) -> float:
    """SSIM's and PSNR's data range for a case on the shared scale: the real image's max - min (1 if constant)."""
    spread = float(real_image.max() - real_image.min())
    return spread if spread > 0 else 1.0


def _shared_scaled(path: Path, low: float, high: float) -> np.ndarray:
    array = read_image(path).array.astype(np.float32)
    return np.clip((array - low) / (high - low), 0.0, SHARED_SCALE_HEADROOM)
