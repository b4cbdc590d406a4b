"""A PatchGAN with two heads: is this patch real, and which tumour subregions does it show."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv

from synthmr.nets.multiscale_discriminator import patchgan70


class DualHeadOutput(NamedTuple):
    """Both heads' logits: ``realism`` ``(B, 1, *patches)``, ``subregions`` ``(B, num_classes, *patches')``."""

    realism: torch.Tensor
    subregions: torch.Tensor


class DualHeadDiscriminator(nn.Module):
    """TF-GAN's dual-head discriminator, as we read it: a realism head and a tumour-subregion head on one trunk.

    Dong et al., "From Healthy Scans to Annotated Tumors: A Tumor Fabrication Framework for 3D Brain MRI
    Synthesis", arXiv 2511.18654, name a "dual-head discriminator" without (in the text we have) saying what the
    heads are. Ours: the trunk is the pix2pix PatchGAN (:func:`~synthmr.nets.patchgan70`, MONAI's
    ``PatchDiscriminator``); the **realism head** is its last layer (one real/fake logit per patch); the
    **subregion head** is a 3x3 convolution on the trunk's last features that predicts, per patch, the mix of
    label classes (background and the tumour subregions). Trained on real annotated patches only, the subregion
    head learns what each subregion looks like; the generator is then asked that its refined tumour be read as
    the label it was made from, so refinement cannot wash a subregion out (the auxiliary-classifier idea of
    Odena et al., "Conditional Image Synthesis With Auxiliary Classifier GANs", arXiv 1610.09585, per patch).

    Args:
        in_channels: image channels (the four sequences).
        num_classes: label classes the subregion head predicts, background included (4 for BraTS).
        spatial_dims: 3 (volumes) or 2.
        channels: first-layer features of the trunk (doubled per layer up to 8x).
        norm: "instance", "batch" or "none", as :func:`~synthmr.nets.patchgan70`.
    """

    def __init__(
        self, in_channels: int, num_classes: int, spatial_dims: int = 3, channels: int = 32, norm: str = "instance"
    ) -> None:
        super().__init__()
        self.trunk = patchgan70(in_channels, norm=norm, spatial_dims=spatial_dims, channels=channels)
        self.subregion_head = Conv[Conv.CONV, spatial_dims](channels * 8, num_classes, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> DualHeadOutput:
        layers = self.trunk(x)
        return DualHeadOutput(layers[-1], self.subregion_head(layers[-2]))
