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

Region contrast (:func:`region_contrast`, :func:`contrast_errors`): the mean intensity inside a region divided by
the mean inside a reference region of the same image, ``C = mean(I[region]) / mean(I[reference])``, in the image's
own units (a ratio: any scale factor of the image cancels). A lesion's enhancement relative to its organ is read
this way (e.g. arterial hyperenhancement ``C > 1`` and portal washout ``C < 1`` of a hepatocellular carcinoma
against the liver). A synthetic image is judged by how far its contrast is from the real image's, case by case.
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
# Two-sided coverage of the bootstrap interval of contrast_errors.
CONTRAST_CONFIDENCE = 0.95


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


def mask_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks of one shape, at least one of them not empty: 2 |a & b| / (|a| + |b|)."""
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def shared_data_range(real_image: np.ndarray) -> float:
    """SSIM's and PSNR's data range for a case on the shared scale: the real image's max - min (1 if constant)."""
    spread = float(real_image.max() - real_image.min())
    return spread if spread > 0 else 1.0


def _shared_scaled(path: Path, low: float, high: float) -> np.ndarray:
    array = read_image(path).array.astype(np.float32)
    return np.clip((array - low) / (high - low), 0.0, SHARED_SCALE_HEADROOM)


def region_contrast(
    image: np.ndarray, region: np.ndarray, reference: np.ndarray, region_name: str = "region",
    reference_name: str = "reference",
) -> float:
    """Contrast of a region against a reference region of one image: ``mean(image[region]) / mean(image[reference])``.

    Args:
        image: intensities in the image's own units (2D or 3D).
        region, reference: boolean masks of the image's shape (non-zero counts as inside).
        region_name, reference_name: how error messages name the masks (e.g. ``"tumour"``, ``"liver"``).

    Raises:
        InputError: a mask of another shape, an empty region or reference, non-finite intensities inside them, or a
            reference whose mean intensity is 0 (no contrast is defined).
    """
    image = np.asarray(image, dtype=np.float64)
    masks = {}
    for name, mask in ((region_name, region), (reference_name, reference)):
        mask = np.asarray(mask) != 0
        if mask.shape != image.shape:
            raise InputError(f"{name} mask has shape {mask.shape}, the image {image.shape}")
        if not mask.any():
            raise InputError(f"{name} mask is empty: no contrast of {region_name} against {reference_name}")
        values = image[mask]
        if not np.isfinite(values).all():
            raise InputError(f"the image holds NaN or infinite values inside the {name} mask")
        masks[name] = float(values.mean())
    if masks[reference_name] == 0:
        raise InputError(f"the mean intensity inside the {reference_name} mask is 0: no contrast against it")
    return masks[region_name] / masks[reference_name]


def contrast_errors(
    real_images: Sequence[np.ndarray],
    fake_images: Sequence[np.ndarray],
    regions: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    n_bootstrap: int = 1000,
    seed: int = 0,
    region_name: str = "region",
    reference_name: str = "reference",
) -> dict:
    """Per case, the contrast of ``regions`` against ``references`` (:func:`region_contrast`) in the real and the
    synthetic image, and the absolute error ``|C_fake - C_real|``; the mean error with its 95 % bootstrap interval.

    The masks are the real case's: a synthetic image made for that case should show the region where the real one
    does. The interval is a percentile bootstrap of the mean over cases (cases resampled with replacement), so it
    reflects the sampling of the test cases.

    Args:
        real_images, fake_images: one image per case each, in the same order, in their own units.
        regions, references: one boolean mask per case each, on the case's grid.
        n_bootstrap: resamples of the interval (0: none).
        seed: seed of the resampling.
        region_name, reference_name: how error messages name the masks.

    Returns:
        ``{"n_cases", "real": [C per case], "fake": [C per case], "errors": [|C_fake - C_real| per case],
        "real_mean", "fake_mean", "mean_error", "interval": [low, high] or None, "n_bootstrap"}``; the interval is
        None without resamples or with fewer than 2 cases.

    Raises:
        InputError: lists of different lengths, no case, a bad ``n_bootstrap`` or ``seed``, and
            :func:`region_contrast`'s errors, naming the case.
    """
    lengths = {len(real_images), len(fake_images), len(regions), len(references)}
    if len(lengths) != 1:
        raise InputError(
            f"contrast_errors needs one real image, synthetic image, {region_name} and {reference_name} mask per case; "
            f"got {len(real_images)}, {len(fake_images)}, {len(regions)} and {len(references)}"
        )
    if not real_images:
        raise InputError("contrast_errors: no case")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 0:
        raise InputError(f"n_bootstrap must be a non-negative integer, got {n_bootstrap!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    real, fake = [], []
    for index, (real_image, fake_image, region, reference) in enumerate(
        zip(real_images, fake_images, regions, references)
    ):
        for which, image, values in (("real", real_image, real), ("synthetic", fake_image, fake)):
            try:
                values.append(region_contrast(image, region, reference, region_name, reference_name))
            except InputError as error:
                raise InputError(f"case {index}, {which} image: {error}") from None
    errors = np.abs(np.asarray(fake) - np.asarray(real))
    return {
        "n_cases": len(real),
        "real": real,
        "fake": fake,
        "errors": errors.tolist(),
        "real_mean": float(np.mean(real)),
        "fake_mean": float(np.mean(fake)),
        "mean_error": float(errors.mean()),
        "interval": _mean_interval(errors, int(n_bootstrap), int(seed)),
        "n_bootstrap": int(n_bootstrap),
    }


def _mean_interval(values: np.ndarray, n_bootstrap: int, seed: int) -> list[float] | None:
    """Percentile bootstrap interval of the mean of ``values`` (resampled with replacement), or None.

    The same construction as :func:`synthmr.evaluation.benefit.bootstrap_interval`, written here because that module
    needs the "train" extra (scipy) and this one must not.
    """
    if n_bootstrap == 0 or len(values) < 2:
        return None
    resamples = np.random.default_rng(seed).integers(0, len(values), size=(n_bootstrap, len(values)))
    means = values[resamples].mean(axis=1)
    tail = 100 * (1 - CONTRAST_CONFIDENCE) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return [float(low), float(high)]
