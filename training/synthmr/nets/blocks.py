"""Building blocks shared by the generators: normalisation by name, resize-convolution, the ResNet block, and the
layer groups of pix2pixHD's encoders and decoders (also SAMR's).

Everything here works in 2D and 3D through MONAI's layer factories (``Conv``, ``Norm``). Reflection padding is the
convolution's own ``padding_mode="reflect"`` (MONAI's ``Pad`` factory has no reflection pad); it computes the same as
the reference code's separate ``ReflectionPad`` layer.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.blocks import UpSample
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_norm_layer

from synthmr.errors import InputError

NORMS = ("batch", "instance", "none")
UPSAMPLINGS = ("transpose", "resize")


def check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    """Return ``value`` lower-cased if it is one of ``choices``, else raise :class:`InputError` naming ``what``."""
    lowered = value.lower()
    if lowered not in choices:
        raise InputError(f"{what} must be one of {', '.join(choices)}; got {value!r}")
    return lowered


def normalization(norm: str, spatial_dims: int, channels: int) -> nn.Module:
    """The normalisation layer ``norm`` ("batch", "instance" or "none") for ``channels`` features.

    "batch" is an affine BatchNorm with running statistics and "instance" an InstanceNorm without affine
    parameters or running statistics: the layers pix2pix and pix2pixHD use (MONAI's defaults for both names).
    """
    norm = check_choice(norm, NORMS, "norm")
    if norm == "none":
        return nn.Identity()
    return get_norm_layer(name=norm, spatial_dims=spatial_dims, channels=channels)


def check_divisible(spatial_shape: list[int], multiple: int, network: str) -> None:
    """Raise :class:`InputError` unless every spatial size is a multiple of ``multiple``.

    Encoder-decoder generators halve the size at each stride-2 convolution and double it on the way back: any
    other size comes back with a different shape and cannot be added to or concatenated with its skip.
    TorchScript-compatible, so it may run inside ``forward`` of a network that ``ckpt_export`` scripts.
    """
    for size in spatial_shape:
        if size % multiple != 0:
            raise InputError(
                f"{network} needs every spatial size to be a multiple of {multiple}; got input spatial size "
                f"{spatial_shape} (pad or crop the input)"
            )


def conv_norm_relu(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int,
    norm: str,
    padding_mode: str = "zeros",
) -> list[nn.Module]:
    """Conv (bias on, as everywhere in pix2pixHD) -> Norm -> ReLU."""
    return [
        Conv[Conv.CONV, spatial_dims](
            in_channels,
            out_channels,
            kernel_size=kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            padding_mode=padding_mode,
        ),
        normalization(norm, spatial_dims, out_channels),
        nn.ReLU(inplace=True),
    ]


def up_norm_relu(spatial_dims: int, in_channels: int, out_channels: int, norm: str, upsample: str) -> list[nn.Module]:
    """x2 upsampling (3x3 transposed convolution, or resize-convolution) -> Norm -> ReLU."""
    if upsample == "resize":
        up: nn.Module = ResizeConv(spatial_dims, in_channels, out_channels)
    else:
        up = Conv[Conv.CONVTRANS, spatial_dims](
            in_channels, out_channels, kernel_size=3, stride=2, padding=1, output_padding=1
        )
    return [up, normalization(norm, spatial_dims, out_channels), nn.ReLU(inplace=True)]


def output_head(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Sequential:
    """The reference's last three layers (ReflectionPad(3), 7x7 convolution, Tanh) of both generators."""
    return nn.Sequential(
        Conv[Conv.CONV, spatial_dims](in_channels, out_channels, kernel_size=7, padding=3, padding_mode="reflect"),
        nn.Tanh(),
    )


class ResizeConv(UpSample):
    """Upsample by interpolation, then a 3x3(x3) convolution: upsampling without checkerboard artefacts.

    Odena, Dumoulin and Olah, "Deconvolution and Checkerboard Artifacts", Distill 2016
    (doi:10.23915/distill.00003): a stride-2 transposed convolution with a kernel size not divisible by the stride
    overlaps unevenly and paints a checkerboard; resizing first and convolving at the new resolution does not.
    This is MONAI's :class:`~monai.networks.blocks.UpSample` in "nontrainable" mode with the convolution as its
    post-convolution; it only fixes the choices that make it the Distill block.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the input.
        out_channels: channels of the output.
        scale: integer upsampling factor along every spatial axis.
        mode: interpolation, "nearest" (the article's choice) or "linear" (bi-/tri-linear by ``spatial_dims``).
        bias: whether the convolution has a bias; leave it off when a BatchNorm follows.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        scale: int = 2,
        mode: str = "nearest",
        bias: bool = True,
    ) -> None:
        mode = check_choice(mode, ("nearest", "linear"), "ResizeConv mode")
        conv = Conv[Conv.CONV, spatial_dims](in_channels, out_channels, kernel_size=3, padding=1, bias=bias)
        super().__init__(
            spatial_dims,
            scale_factor=scale,
            mode="nontrainable",
            pre_conv=None,  # the channel change happens in the convolution after resizing
            post_conv=conv,
            interp_mode=mode,
            # torch rejects align_corners for nearest; False is the resampling convention of the article
            align_corners=None if mode == "nearest" else False,
        )


class ResnetBlock(nn.Module):
    """Residual block ``x + Norm(Conv3(ReLU(Norm(Conv3(x)))))`` with reflection padding.

    The block of Johnson et al. ("Perceptual Losses for Real-Time Style Transfer and Super-Resolution",
    arXiv 1603.08155) as used in the ResNet generators of CycleGAN/pix2pix (arXiv 1703.10593) and pix2pixHD
    (arXiv 1711.11585), and in SAMR's shared trunk (arXiv 2006.14761). The number of channels is unchanged.

    Args:
        spatial_dims: 2 or 3.
        channels: input and output channels.
        norm: "instance", "batch" or "none".
        dropout: dropout probability between the two convolutions (0 disables it; CycleGAN's ``--no_dropout``
            default).
        bias: whether the convolutions have a bias (pix2pixHD: always; pix2pix/CycleGAN: only with instance norm).
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        norm: str = "instance",
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        layers: list[nn.Module] = [
            conv(channels, channels, kernel_size=3, padding=1, padding_mode="reflect", bias=bias),
            normalization(norm, spatial_dims, channels),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [
            conv(channels, channels, kernel_size=3, padding=1, padding_mode="reflect", bias=bias),
            normalization(norm, spatial_dims, channels),
        ]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)
