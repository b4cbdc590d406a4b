"""The pix2pix U-Net generator."""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv

from synthmr.errors import InputError
from synthmr.nets.blocks import NORMS, UPSAMPLINGS, ResizeConv, check_choice, check_divisible, normalization

# pix2pix's four outermost levels grow the width (ngf, 2ngf, 4ngf, 8ngf); only the levels between them and the
# innermost one carry dropout ("for i in range(num_downs - 5)" in the reference code).
_FIRST_DROPOUT_LEVEL = 4


class _SkipLevel(nn.Module):
    """One U-Net level: ``down``, the next level inward, ``up``; the output is concatenated to the level's input."""

    def __init__(self, down: nn.Module, inner: nn.Module, up: nn.Module) -> None:
        super().__init__()
        self.down = down
        self.inner = inner
        self.up = up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.up(self.inner(self.down(x)))], dim=1)


class Pix2PixUNet(nn.Module):
    """U-Net generator of pix2pix.

    Isola, Zhu, Zhou and Efros, "Image-to-Image Translation with Conditional Adversarial Networks",
    arXiv 1611.07004 (layer layout of the authors' ``UnetGenerator``, junyanz/pytorch-CycleGAN-and-pix2pix).
    With the defaults and ``in_channels = out_channels = 3`` it is ``unet_256`` with 54,413,955 parameters.

    Encoder: ``num_downs`` stride-2 4x4 convolutions, each followed by Norm (not the first and not the innermost)
    and LeakyReLU(0.2). Decoder: ReLU, stride-2 4x4 transposed convolution, Norm; the result is concatenated with
    the encoder features of the same resolution; the outermost decoder step has no Norm and ends in Tanh.
    The reference writes the activation at the start of each encoder step but applies it in place, so its skip
    connections carry the activated features; activating at the end of each encoder step computes exactly that.

    Dropout follows the reference code: the ``num_downs - 5`` decoder steps just outside the innermost one.
    (The paper's table lists dropout on the first three decoder layers, i.e. including the innermost one;
    the code, and so the published pix2pix models, do not.)

    Args:
        in_channels: input channels (e.g. stacked input sequences).
        out_channels: output channels (e.g. synthesised sequences).
        num_downs: number of stride-2 downsamplings; 8 takes 256x256 to 1x1 (``unet_256``), 7 is ``unet_128``.
            Every spatial input size must be a multiple of ``2**num_downs``.
        channels: features after the first convolution (``ngf``); doubled at each level up to ``max_channels``.
        max_channels: cap on the features of a level (``8 * ngf`` in the reference).
        norm: "batch" (pix2pix), "instance" or "none". Convolutions get a bias unless a BatchNorm follows them
            (the reference gives them one only with instance norm; a convolution with neither a bias nor a norm
            after it could not shift its output, so "none" has one too). The outermost decoder convolution,
            which has no norm, always has a bias.
        dropout: dropout probability in the middle decoder steps (pix2pix: 0.5, its only noise source).
        spatial_dims: 2 or 3.
        upsample: "transpose" (the paper) or "resize", nearest-neighbour resize then 3x3 convolution
            (:class:`~synthmr.nets.blocks.ResizeConv`), which avoids checkerboard artefacts.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_downs: int = 8,
        channels: int = 64,
        max_channels: int = 512,
        norm: str = "batch",
        dropout: float = 0.5,
        spatial_dims: int = 2,
        upsample: str = "transpose",
    ) -> None:
        super().__init__()
        if num_downs < 2:
            raise InputError(f"Pix2PixUNet needs num_downs >= 2 (an outermost and an innermost level); got {num_downs}")
        norm = check_choice(norm, NORMS, "Pix2PixUNet norm")
        self.upsample = check_choice(upsample, UPSAMPLINGS, "Pix2PixUNet upsample")
        self.spatial_dims = spatial_dims
        self.size_multiple = 2**num_downs
        bias = norm != "batch"
        # width[k]: features produced by the encoder convolution of level k (level 0 is the outermost).
        width = [min(channels * 2**level, max_channels) for level in range(num_downs)]
        conv = Conv[Conv.CONV, spatial_dims]

        innermost = num_downs - 1
        block: nn.Module = _SkipLevel(
            down=conv(width[innermost - 1], width[innermost], kernel_size=4, stride=2, padding=1, bias=bias),
            inner=nn.Identity(),
            up=nn.Sequential(
                nn.ReLU(),
                self._up_conv(width[innermost], width[innermost - 1], bias),
                normalization(norm, spatial_dims, width[innermost - 1]),
            ),
        )
        for level in range(innermost - 1, 0, -1):
            up: list[nn.Module] = [
                nn.ReLU(),
                self._up_conv(2 * width[level], width[level - 1], bias),
                normalization(norm, spatial_dims, width[level - 1]),
            ]
            if level >= _FIRST_DROPOUT_LEVEL and dropout > 0:
                up.append(nn.Dropout(dropout))
            block = _SkipLevel(
                down=nn.Sequential(
                    conv(width[level - 1], width[level], kernel_size=4, stride=2, padding=1, bias=bias),
                    normalization(norm, spatial_dims, width[level]),
                    nn.LeakyReLU(0.2),
                ),
                inner=block,
                up=nn.Sequential(*up),
            )
        self.model = nn.Sequential(
            conv(in_channels, width[0], kernel_size=4, stride=2, padding=1, bias=bias),
            nn.LeakyReLU(0.2),
            block,
            nn.ReLU(),
            self._up_conv(2 * width[0], out_channels, bias=True),
            nn.Tanh(),
        )

    def _up_conv(self, in_channels: int, out_channels: int, bias: bool) -> nn.Module:
        """The x2 upsampling of one decoder step."""
        if self.upsample == "resize":
            return ResizeConv(self.spatial_dims, in_channels, out_channels, bias=bias)
        return Conv[Conv.CONVTRANS, self.spatial_dims](
            in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=bias
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_divisible(list(x.shape[2:]), self.size_multiple, "Pix2PixUNet")
        return self.model(x)
