"""Label-wise multi-scale discriminators: one multi-scale PatchGAN per region of a label map, each seeing only its
region."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from synthmr.errors import InputError
from synthmr.nets.multiscale_discriminator import MultiScaleDiscriminator


class LabelwiseDiscriminator(nn.Module):
    """SAMR's label-wise discriminators: per region of interest, a multi-scale PatchGAN on the input masked to it.

    Guo et al., "Lesion Mask-based Simultaneous Synthesis of Anatomic and Molecular MR Images using a GAN",
    MICCAI 2020, arXiv 2006.14761, Sec. 2 and Fig. 1(b): the five labels are regrouped into three ROIs
    (background, normal brain, lesion = edema + cavity + tumour) and each ROI gets two discriminators, at the
    original and at half resolution, six in all. Discriminator pair ``k`` sees ``c_k * input``, the element-wise
    (hard) product of the whole input (lesion map, atlas and images, as the authors' ``MultilabelDiscriminator``
    masks all its 25 channels) with the ROI mask ``c_k``, the sum of the one-hot label channels in ``rois[k]``.
    A network holds nothing about labels beyond those channel indices.

    Each pair is a :class:`~synthmr.nets.MultiScaleDiscriminator` (separate weights per ROI and scale; half
    resolution by AvgPool(3, stride 2, padding 1, count_include_pad=False), as the reference code).

    ``forward`` returns one entry per ROI and scale, ``[roi 0 full, roi 0 half, roi 1 full, ...]``, each the list
    of that discriminator's layer outputs with the logits last: the shape
    :class:`~synthmr.losses.AdversarialLoss` and :class:`~synthmr.losses.FeatureMatchingLoss` take, which sum
    or average over the entries as over the scales of one multi-scale discriminator.

    Args:
        in_channels: channels of the discriminator input (the conditioning and the images concatenated).
        rois: per ROI, the input channels (one-hot labels, values in [0, 1]) whose sum is its mask; SAMR's
            ``((0,), (1,), (2, 3, 4))`` with the lesion map's five one-hot channels first.
        num_d: scales per ROI (2 in SAMR).
        channels, num_layers_d, norm, spatial_dims, padding: of each :class:`~synthmr.nets.MultiScaleDiscriminator`
            (the reference: ``ndf=64``, 3 layers, 4x4 convolutions padded by 2).
    """

    def __init__(
        self,
        in_channels: int,
        rois: Sequence[Sequence[int]] = ((0,), (1,), (2, 3, 4)),
        num_d: int = 2,
        channels: int = 64,
        num_layers_d: int = 3,
        norm: str = "instance",
        spatial_dims: int = 2,
        padding: int = 2,
    ) -> None:
        super().__init__()
        rois = [tuple(int(c) for c in roi) for roi in rois]
        if not rois or any(not roi for roi in rois):
            raise InputError(f"LabelwiseDiscriminator needs at least one ROI, each of at least one channel; got {rois}")
        outside = sorted({c for roi in rois for c in roi if not 0 <= c < in_channels})
        if outside:
            raise InputError(f"LabelwiseDiscriminator ROI channels {outside} are not among the {in_channels} input channels")
        self.rois = rois
        self.discriminators = nn.ModuleList(
            MultiScaleDiscriminator(
                in_channels,
                num_d=num_d,
                channels=channels,
                num_layers_d=num_layers_d,
                norm=norm,
                spatial_dims=spatial_dims,
                padding=padding,
            )
            for _ in rois
        )

    def roi_masks(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The ROI masks of input ``x``, each ``(B, 1, *spatial)``: the sum of its label channels."""
        return [x[:, list(roi)].sum(dim=1, keepdim=True) for roi in self.rois]

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        outputs: list[list[torch.Tensor]] = []
        for mask, discriminator in zip(self.roi_masks(x), self.discriminators):
            outputs.extend(discriminator(x * mask))
        return outputs
