"""Voxel-wise reconstruction losses restricted to a region: masked L1 and TF-GAN's hinge L1."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` over the voxels where ``mask`` is non-zero (weighted by it); 0 for an empty mask."""
    if mask is None:
        return values.mean()
    try:
        weights = torch.broadcast_to(mask.to(values.dtype), values.shape)
    except RuntimeError as error:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to the image shape {tuple(values.shape)}"
        ) from error
    # Dividing by at least eps turns the 0/0 of an empty mask into 0 (the numerator is then exactly 0).
    return (values * weights).sum() / weights.sum().clamp_min(torch.finfo(values.dtype).eps)


def _check_same_shape(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference over the masked region only.

    The mean runs over every masked element of the whole batch (all channels the mask covers), so differences
    outside the mask have no effect and the value does not shrink with the size of the region. An empty mask
    gives 0 (and zero gradients), not NaN.

    Args:
        pred: prediction ``(B, C, *spatial)``.
        target: reference of the same shape.
        mask: region, broadcastable to ``pred`` (e.g. ``(B, 1, *spatial)``); binary or soft weights in [0, 1].
    """
    _check_same_shape(pred, target)
    return _masked_mean((pred - target).abs(), mask)


def hinge_l1(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, margin: float = 0.1
) -> torch.Tensor:
    """L1 beyond a margin: ``mean over the region of max(0, |pred - target| - margin)``.

    The non-tumour-region loss of TF-GAN (Dong et al., "From Healthy Scans to Annotated Tumors: A Tumor
    Fabrication Framework for 3D Brain MRI Synthesis", arXiv 2511.18654, "hinge L1 loss for non-tumor regions").
    Our reading of the paper: outside the tumour ROI the refined image ``pred`` should stay the healthy anatomy of
    the coarse input ``target``, but the refiner may change it by up to ``margin`` (blend the seam, adjust
    contrast) without penalty; only larger deviations cost, linearly. The paper's value of the margin is not in
    the text we have; 0.1 is 5 % of the [-1, 1] intensity range the generators produce.

    Args:
        pred: refined image ``(B, C, *spatial)``.
        target: coarse input image, same shape.
        mask: region the loss covers, broadcastable to ``pred`` (for TF-GAN: 1 outside the tumour ROI);
            ``None`` for everywhere. An empty region gives 0.
        margin: deviation allowed for free, in intensity units (>= 0; 0 gives plain L1).
    """
    if margin < 0:
        raise ValueError(f"hinge_l1 margin must be >= 0; got {margin}")
    _check_same_shape(pred, target)
    return _masked_mean(F.relu((pred - target).abs() - margin), mask)
