"""Paired image metrics and segmentation metrics: thin wrappers over MONAI with explicit edge cases.

Paired metrics compare a synthetic image with its real counterpart (SSIM, PSNR, MSE, MAE, as in the evaluation
protocols of the papers this project implements); segmentation metrics compare label maps per label (Dice, 95th
percentile Hausdorff distance, sensitivity, specificity) for downstream-task evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import (
    ConfusionMatrixMetric,
    DiceMetric,
    HausdorffDistanceMetric,
    MAEMetric,
    MSEMetric,
    PSNRMetric,
    SSIMMetric,
)
from monai.metrics.regression import compute_ssim_and_cs

from synthmr.errors import InputError

# The SSIM window of Wang et al. 2004 (also MONAI's default): 11 samples, Gaussian sigma 1.5.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def ssim_window(spatial_shape: Sequence[int]) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """SSIM window size and Gaussian sigma per axis: 11 and 1.5, except on axes shorter than 11 pixels, which get
    the largest odd window that fits, with sigma shrunk in proportion (MONAI's SSIM uses an unpadded window). An
    axis of 1 or 2 voxels gets a window of 1: no smoothing along it, so a ``(H, W, 1)`` volume scores as 2D.
    """
    windows = tuple(min(SSIM_WINDOW, side - 1 + side % 2) for side in map(int, spatial_shape))
    return windows, tuple(SSIM_SIGMA * window / SSIM_WINDOW for window in windows)


def _spatial_tensor(array, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(array, dtype=np.float32))
    if tensor.ndim not in (2, 3) or tensor.numel() == 0:
        raise InputError(f"{name} must be a non-empty 2D or 3D image; got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise InputError(f"{name} contains NaN or infinite values")
    return tensor


def paired_metrics(pred, target, data_range: float = 1.0, mask=None) -> dict[str, float]:
    """SSIM, PSNR, MSE and MAE of a synthetic image against its real counterpart (MONAI metrics).

    Args:
        pred: synthetic image, 2D ``(H, W)`` or 3D ``(H, W, D)`` array or tensor.
        target: real image of the same shape, on the same intensity scale.
        data_range: intensity range of the images (1.0 for images scaled to [0, 1]); sets SSIM's stability
            constants and PSNR's peak.
        mask: optional boolean array of the image's shape; metrics are computed over the masked voxels only.
            SSIM uses windows centred on masked voxels at least half a window from the border (the SSIM map is
            computed without padding).

    Returns:
        ``{"ssim", "psnr", "mse", "mae"}`` as floats. SSIM uses an 11-voxel Gaussian window (smaller for tiny
        images, see :func:`ssim_window`), 2D or 3D as the input. PSNR is ``inf`` for identical images (MSE 0).

    Raises:
        InputError: shapes differ, not 2D/3D, an empty image, non-finite values, an empty mask or a mask with no
            voxel away from the border.
    """
    pred = _spatial_tensor(pred, "pred")
    target = _spatial_tensor(target, "target")
    if pred.shape != target.shape:
        raise InputError(f"pred and target differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}")
    window, sigma = ssim_window(pred.shape)
    batch_pred, batch_target = pred[None, None], target[None, None]
    if mask is None:
        ssim_metric = SSIMMetric(pred.ndim, data_range=data_range, win_size=window, kernel_sigma=sigma)
        ssim = ssim_metric(batch_pred, batch_target).item()
        flat_pred, flat_target = batch_pred, batch_target
    else:
        mask = torch.as_tensor(np.asarray(mask, dtype=bool))
        if mask.shape != pred.shape:
            raise InputError(f"mask shape {tuple(mask.shape)} differs from the image shape {tuple(pred.shape)}")
        if not mask.any():
            raise InputError("mask is empty: no voxel to compute metrics on")
        ssim_map, _ = compute_ssim_and_cs(
            batch_pred, batch_target, pred.ndim, kernel_size=window, kernel_sigma=sigma, data_range=data_range
        )
        # The unpadded SSIM map lies on the voxels at least half a window from every border.
        inner = mask[tuple(slice(w // 2, side - w // 2) for w, side in zip(window, mask.shape))]
        if not inner.any():
            raise InputError(f"mask has no voxel at least half an SSIM window {window} from the border")
        ssim = ssim_map[0, 0][inner].mean().item()
        flat_pred, flat_target = pred[mask][None, None], target[mask][None, None]
    return {
        "ssim": ssim,
        "psnr": PSNRMetric(max_val=data_range)(flat_pred, flat_target).item(),
        "mse": MSEMetric()(flat_pred, flat_target).item(),
        "mae": MAEMetric()(flat_pred, flat_target).item(),
    }


def segmentation_metrics(
    pred_labels, true_labels, labels: Sequence[int], spacing: Sequence[float] | None = None
) -> dict[int, dict[str, float]]:
    """Dice, 95th percentile Hausdorff distance, sensitivity and specificity per label (MONAI metrics).

    Args:
        pred_labels: predicted label map, 2D or 3D integer array.
        true_labels: reference label map of the same shape.
        labels: the label values to evaluate (each one against all other voxels).
        spacing: voxel size per axis for the Hausdorff distance (mm); default 1 (distances in voxels).

    Returns:
        ``{label: {"dice", "hd95", "sensitivity", "specificity"}}``, all finite floats. Cases where a ratio is
        0/0 or a distance has no surface to measure from are defined so that a perfect prediction always scores
        dice 1, hd95 0, sensitivity 1, specificity 1, and no NaN appears:

        - label absent from both maps: dice 1, hd95 0, sensitivity 1, specificity 1;
        - label in one map only: dice 0 and hd95 = the grid diagonal (the largest distance the grid allows,
          a finite worst case); sensitivity 1 when the reference has no such voxel (nothing to miss),
          otherwise 0;
        - label covering the whole reference map: specificity 1 (no negative voxel to get wrong).

    Raises:
        InputError: shapes differ, not 2D/3D, empty ``labels``, ``spacing`` of the wrong length.
    """
    pred = torch.as_tensor(np.asarray(pred_labels))
    true = torch.as_tensor(np.asarray(true_labels))
    if pred.shape != true.shape:
        raise InputError(f"pred_labels and true_labels differ in shape: {tuple(pred.shape)} vs {tuple(true.shape)}")
    if pred.ndim not in (2, 3):
        raise InputError(f"label maps must be 2D or 3D; got shape {tuple(pred.shape)}")
    labels = [int(label) for label in labels]
    if not labels:
        raise InputError("labels is empty: name the label values to evaluate")
    spacing = (1.0,) * pred.ndim if spacing is None else tuple(float(s) for s in spacing)
    if len(spacing) != pred.ndim:
        raise InputError(f"spacing {spacing} must have one value per image axis ({pred.ndim})")

    # One channel per label, batch of 1: MONAI's layout for binary per-class metrics.
    pred_onehot = torch.stack([pred == label for label in labels])[None].float()
    true_onehot = torch.stack([true == label for label in labels])[None].float()
    dice = DiceMetric(include_background=True, reduction="none", ignore_empty=False)(pred_onehot, true_onehot)[0]
    confusion = ConfusionMatrixMetric(
        include_background=True, metric_name=("sensitivity", "specificity"), reduction="none"
    )
    confusion(pred_onehot, true_onehot)
    sensitivity, specificity = (values[0] for values in confusion.aggregate())

    in_pred = pred_onehot[0].flatten(1).any(dim=1)
    in_true = true_onehot[0].flatten(1).any(dim=1)
    both = in_pred & in_true
    diagonal = math.sqrt(sum(((side - 1) * step) ** 2 for side, step in zip(pred.shape, spacing)))
    hd95 = torch.where(in_pred | in_true, diagonal, 0.0).double()
    if both.any():
        # Only labels present in both maps have surfaces to measure; MONAI returns NaN/inf for the others.
        hausdorff = HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none")
        hd95[both] = hausdorff(pred_onehot[:, both], true_onehot[:, both], spacing=spacing)[0].double()

    result = {}
    for index, label in enumerate(labels):
        result[label] = {
            "dice": dice[index].item(),
            "hd95": hd95[index].item(),
            "sensitivity": 1.0 if not in_true[index] else sensitivity[index].item(),
            "specificity": 1.0 if math.isnan(specificity[index].item()) else specificity[index].item(),
        }
    return result
