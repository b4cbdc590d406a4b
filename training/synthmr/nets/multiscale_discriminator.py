"""The pix2pixHD multi-scale discriminator, and the pix2pix 70x70 PatchGAN as a MONAI PatchDiscriminator."""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.layers.factories import Pool
from monai.networks.nets import PatchDiscriminator

from synthmr.nets.blocks import NORMS, check_choice


def _monai_norm(norm: str) -> str | None:
    """MONAI's name for ``norm`` ("batch", "instance", "none"); ``None`` means no normalisation layer."""
    norm = check_choice(norm, NORMS, "discriminator norm")
    return None if norm == "none" else norm


def patchgan70(in_channels: int, norm: str = "batch", spatial_dims: int = 2, channels: int = 64) -> PatchDiscriminator:
    """The pix2pix "basic" discriminator, the 70x70 PatchGAN, as a MONAI ``PatchDiscriminator``.

    Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks", arXiv 1611.07004
    (``NLayerDiscriminator(n_layers=3, ndf=64)`` of the reference code). MONAI's layout is the same: a 4x4
    stride-2 convolution without norm, three 4x4 convolutions (stride 2, 2, 1) doubling the features to 512 with
    Norm and LeakyReLU(0.2), a 4x4 stride-1 convolution to one logit per patch, padding 1 everywhere.
    The arguments that make it the reference: ``channels=64, num_layers_d=3, kernel_size=4, padding=1,
    out_channels=1`` and, as the reference, no bias in the normalised convolutions when batch norm follows them
    (the first and last convolutions always have one). With batch norm and ``in_channels=6`` (a 3-channel
    condition and a 3-channel image) it has 2,768,705 parameters. Weights are initialised N(0, 0.02) by MONAI.

    ``forward`` returns MONAI's list of every layer's output with the patch logits last.

    Args:
        in_channels: channels of the discriminator input (condition and image concatenated for a conditional D).
        norm: "batch" (pix2pix), "instance" (InstanceNorm without affine parameters) or "none".
        spatial_dims: 2, or 3 for a volumetric PatchGAN (4x4x4 kernels).
        channels: features of the first layer (``ndf``; 64 in the reference, doubled per layer up to 8x): the
            receptive field stays 70x70 at any width, so a narrowed generator can get a discriminator narrowed
            alike.
    """
    monai_norm = _monai_norm(norm)
    return PatchDiscriminator(
        spatial_dims=spatial_dims,
        channels=channels,
        in_channels=in_channels,
        out_channels=1,
        num_layers_d=3,
        kernel_size=4,
        norm=monai_norm,
        bias=monai_norm != "batch",
        padding=1,
    )


class MultiScaleDiscriminator(nn.Module):
    """pix2pixHD multi-scale discriminator: PatchGANs that see the input at successively halved resolutions.

    Wang et al., "High-Resolution Image Synthesis and Semantic Manipulation with Conditional GANs",
    arXiv 1711.11585, section 3.2. Discriminator ``i`` is a MONAI ``PatchDiscriminator`` applied to the input
    downsampled ``i`` times by AvgPool(3, stride 2, padding 1, count_include_pad=False), as the reference code.
    MONAI's own ``MultiScalePatchDiscriminator`` does not do this: its discriminators all see the full-resolution
    input and differ only in depth, so it is not the pix2pixHD discriminator.

    Each PatchGAN follows pix2pixHD's ``NLayerDiscriminator``: 4x4 convolutions with a bias, ``padding=2``, the
    first without norm, ``num_layers_d`` normalised ones with LeakyReLU(0.2) (the last of them stride 1), then
    one to a logit per patch. One difference remains: MONAI pads that last convolution by 1 where the reference
    pads it by 2, so the logit maps are two voxels smaller per axis; the parameters are the same
    (about 5.54 M for ``in_channels=6`` with the defaults).

    ``forward`` returns one list per scale, finest first; each holds that discriminator's layer outputs with the
    logits last, which is what :class:`~synthmr.losses.FeatureMatchingLoss` and
    :class:`~synthmr.losses.AdversarialLoss` take.

    Args:
        in_channels: channels of the discriminator input (condition and image concatenated for a conditional D).
        num_d: number of scales (pix2pixHD option default 2; 3 for its 2048x1024 recipe).
        channels: features of the first convolution (``ndf``), doubled at each following layer.
        num_layers_d: normalised convolutions per discriminator (``n_layers_D``; 3 gives the 70x70 PatchGAN).
        norm: "instance" (pix2pixHD), "batch" or "none".
        spatial_dims: 2 or 3.
        padding: padding of the 4x4 convolutions (pix2pixHD: 2, pix2pix: 1).
    """

    def __init__(
        self,
        in_channels: int,
        num_d: int = 2,
        channels: int = 64,
        num_layers_d: int = 3,
        norm: str = "instance",
        spatial_dims: int = 2,
        padding: int = 2,
    ) -> None:
        super().__init__()
        monai_norm = _monai_norm(norm)
        self.discriminators = nn.ModuleList(
            PatchDiscriminator(
                spatial_dims=spatial_dims,
                channels=channels,
                in_channels=in_channels,
                out_channels=1,
                num_layers_d=num_layers_d,
                kernel_size=4,
                norm=monai_norm,
                bias=True,
                padding=padding,
            )
            for _ in range(num_d)
        )
        self.downsample = Pool[Pool.AVG, spatial_dims](kernel_size=3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        outputs: list[list[torch.Tensor]] = []
        for i, discriminator in enumerate(self.discriminators):
            if i > 0:
                x = self.downsample(x)
            outputs.append(discriminator(x))
        return outputs
