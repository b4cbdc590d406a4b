"""Perceptual losses over a pluggable frozen feature extractor: paired, and class-wise for unpaired data."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from synthmr.errors import InputError
from synthmr.losses.frozen import FrozenNetwork


def _feature_list(output: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [output] if isinstance(output, torch.Tensor) else list(output)


def _checked_weights(layer_weights: Sequence[float] | None, num_features: int) -> list[float]:
    if layer_weights is None:
        return [1.0] * num_features
    if len(layer_weights) != num_features:
        raise ValueError(f"{len(layer_weights)} layer weights for {num_features} extractor feature maps")
    return list(layer_weights)


class PerceptualLoss(nn.Module):
    """Weighted distance between frozen-extractor features: ``sum_k w_k * criterion(F_k(pred), F_k(target))``.

    Johnson et al., "Perceptual Losses for Real-Time Style Transfer and Super-Resolution", arXiv 1603.08155;
    pix2pixHD's VGG loss (arXiv 1711.11585) is this with :func:`~synthmr.losses.vgg19_features`, L1,
    ``layer_weights=(1/32, 1/16, 1/8, 1/4, 1)`` and an overall weight of 10 applied by the caller.

    The extractor is frozen (see :class:`~synthmr.losses.FrozenNetwork`): gradients reach ``pred`` through it,
    its parameters never change. Target features are computed without gradient.

    Args:
        extractor: module mapping an image batch to a list of feature maps (or one tensor). Any dimensionality.
        layer_weights: one weight per feature map; ``None`` weighs all equally (1).
        criterion: "l1" (mean absolute difference) or "mse".
    """

    def __init__(
        self, extractor: nn.Module, layer_weights: Sequence[float] | None = None, criterion: str = "l1"
    ) -> None:
        super().__init__()
        if criterion not in ("l1", "mse"):
            raise InputError(f"perceptual loss criterion must be 'l1' or 'mse'; got {criterion!r}")
        self.extractor = FrozenNetwork(extractor)
        self.layer_weights = None if layer_weights is None else list(layer_weights)
        self.criterion = F.l1_loss if criterion == "l1" else F.mse_loss

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred_features = _feature_list(self.extractor(pred))
        with torch.no_grad():
            target_features = _feature_list(self.extractor(target))
        weights = _checked_weights(self.layer_weights, len(pred_features))
        return sum(w * self.criterion(p, t) for w, p, t in zip(weights, pred_features, target_features))


class ClassWisePerceptualLoss(nn.Module):
    """Class-wise perceptual loss for unpaired data: match feature statistics inside each labelled region.

    TF-GAN (Dong et al., "From Healthy Scans to Annotated Tumors: A Tumor Fabrication Framework for 3D Brain MRI
    Synthesis", arXiv 2511.18654) guides the refiner with a "class-wise perceptual loss for tumor subregions"
    computed by a frozen feature extractor against *unpaired* real tumour images. The paper's exact formula is not
    in the text we have; this is our reading. Generated and reference images show different anatomy, so features
    cannot be compared voxel by voxel; instead, for every class ``c`` and feature map ``k``, the per-channel mean
    and standard deviation of the features inside class ``c`` are compared (the statistics of style losses,
    Huang & Belongie, arXiv 1703.06868)::

        loss = sum_k w_k * sum_c [ mean_ch |mu_kc(gen) - mu_kc(ref)| + mean_ch |sigma_kc(gen) - sigma_kc(ref)| ]

    where ``mu_kc`` and ``sigma_kc`` are pooled over all voxels of class ``c`` in the whole batch, weighted by the
    class mask resized to feature map ``k`` by area averaging (the fraction of each feature cell in the class).
    Pooling over the batch lets the two batches differ in size and lets a class be missing from some samples.
    A class absent from the generated or from the reference labels contributes nothing; if no class is present
    on both sides the loss is 0 (a constant).

    Args:
        extractor: frozen feature extractor returning a list of feature maps (2D or 3D, like the images).
        num_classes: number of labels in the label maps (values ``0 .. num_classes - 1``).
        layer_weights: one weight per feature map; ``None`` weighs all equally.
        include_background: whether label 0 is compared too (TF-GAN compares the tumour subregions only; the
            healthy region is covered by :func:`~synthmr.losses.hinge_l1`).
        eps: added to the variance before the square root, for a finite gradient in constant regions.
    """

    def __init__(
        self,
        extractor: nn.Module,
        num_classes: int,
        layer_weights: Sequence[float] | None = None,
        include_background: bool = False,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.extractor = FrozenNetwork(extractor)
        self.classes = list(range(0 if include_background else 1, num_classes))
        self.layer_weights = None if layer_weights is None else list(layer_weights)
        self.eps = eps

    def forward(
        self,
        generated: torch.Tensor,
        generated_labels: torch.Tensor,
        reference: torch.Tensor,
        reference_labels: torch.Tensor,
    ) -> torch.Tensor:
        """Loss of ``generated`` against the unpaired ``reference``.

        Args:
            generated: generated images ``(B, C, *spatial)``.
            generated_labels: their label map ``(B, 1, *spatial)`` (integer class per voxel).
            reference: real images ``(B', C, *spatial')``.
            reference_labels: their label map ``(B', 1, *spatial')``.
        """
        for name, image, labels in (
            ("generated", generated, generated_labels),
            ("reference", reference, reference_labels),
        ):
            if labels.shape[0] != image.shape[0] or labels.shape[1] != 1 or labels.shape[2:] != image.shape[2:]:
                raise ValueError(
                    f"{name} labels must have shape (B, 1, *spatial) matching the image {tuple(image.shape)}; "
                    f"got {tuple(labels.shape)}"
                )
        present = [c for c in self.classes if (generated_labels == c).any() and (reference_labels == c).any()]
        if not present:
            return torch.zeros((), dtype=generated.dtype, device=generated.device)
        generated_features = _feature_list(self.extractor(generated))
        with torch.no_grad():
            reference_features = _feature_list(self.extractor(reference))
        weights = _checked_weights(self.layer_weights, len(generated_features))
        loss = torch.zeros((), dtype=generated.dtype, device=generated.device)
        for weight, gen_f, ref_f in zip(weights, generated_features, reference_features):
            for c in present:
                gen_mean, gen_std = self._class_statistics(gen_f, generated_labels == c)
                ref_mean, ref_std = self._class_statistics(ref_f, reference_labels == c)
                loss = loss + weight * (F.l1_loss(gen_mean, ref_mean) + F.l1_loss(gen_std, ref_std))
        return loss

    def _class_statistics(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and standard deviation of ``features`` over the resized ``mask``, pooled over the batch."""
        weights = F.interpolate(mask.to(features.dtype), size=features.shape[2:], mode="area")
        reduce_dims = [0] + list(range(2, features.ndim))
        total = weights.sum(dim=reduce_dims).clamp_min(torch.finfo(features.dtype).eps)
        mean = (features * weights).sum(dim=reduce_dims) / total
        centred = features - mean.view(1, -1, *([1] * (features.ndim - 2)))
        variance = (centred.pow(2) * weights).sum(dim=reduce_dims) / total
        return mean, torch.sqrt(variance + self.eps)
