"""Segmentation-consistency loss: a frozen segmenter must find the input labels in the generated image."""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.losses import GeneralizedDiceLoss

from synthmr.losses.frozen import FrozenNetwork


class SegmentationConsistencyLoss(nn.Module):
    """Generalized Dice loss between a frozen segmenter's prediction on the generated image and the input labels.

    SAMR's lesion-shape consistency (Guo et al., "Lesion Mask-based Simultaneous Synthesis of Anatomic and
    Molecular MR Images using a GAN", arXiv 2006.14761, eq. 4): ``L_C = GDL(x, U(y)) + GDL(x, U(G(x)))`` with
    ``x`` the label map the generator is conditioned on, ``y`` the real images and ``U`` a U-Net segmenter. The
    first term only trains ``U`` (a segmentation task: train the segmenter on real images beforehand); this is the
    second term, the one that trains the generator: ``GDL(x, U(G(x)))`` with ``U`` frozen, on MONAI's
    ``GeneralizedDiceLoss`` (Sudre et al., arXiv 1707.03237).

    Args:
        segmenter: network mapping images to per-class logits ``(B, num_classes, *spatial)``; frozen here.
        include_background: whether class 0 enters the Dice.
        to_onehot_y: True when labels are a class-index map ``(B, 1, *spatial)``; False when already one-hot.
        softmax: apply softmax to the segmenter output (True for logits).
        w_type: class weighting of the generalized Dice: "square" (inverse squared volume, the paper), "simple"
            or "uniform".
    """

    def __init__(
        self,
        segmenter: nn.Module,
        include_background: bool = True,
        to_onehot_y: bool = True,
        softmax: bool = True,
        w_type: str = "square",
    ) -> None:
        super().__init__()
        self.segmenter = FrozenNetwork(segmenter)
        self.dice = GeneralizedDiceLoss(
            include_background=include_background, to_onehot_y=to_onehot_y, softmax=softmax, w_type=w_type
        )

    def forward(self, generated: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss of the segmentation of ``generated`` against ``labels`` (the generator's input label map)."""
        return self.dice(self.segmenter(generated), labels)
