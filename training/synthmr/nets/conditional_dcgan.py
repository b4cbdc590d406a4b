"""Class-conditional DCGAN generator and critic for multi-channel 64 x 64 images.

The DCGAN of Radford et al. (arXiv 1511.06434) with

- a generator of four upsampling layers with batch norm and ReLU, then an upsampling layer with tanh, whose
  upconvolutions are replaced by the resize-convolutions of Odena et al. (Distill 2016) against checkerboard
  artefacts, and any number of output channels (e.g. one per MR contrast);
- a discriminator of four strided convolutions with batch norm and LeakyReLU and a fully-connected layer;
- class conditioning as in Mirza & Osindero (arXiv 1411.1784): the one-hot class is concatenated to ``z``.

The same pair serves DCGAN (the critic's output is a logit) and WGAN with weight clipping (the output is the
critic's score); which one is a matter of the loss and optimiser the training config chooses.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from synthmr.errors import InputError
from synthmr.nets.blocks import ResizeConv


def _positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return value


class ConditionalDCGANGenerator(nn.Module):
    """``G(z, y)``: noise and class -> ``out_channels`` x 64 x 64 image in [-1, 1].

    The first layer projects the ``latent_dim + n_classes`` vector onto a 4 x 4 grid (a 4 x 4 transposed
    convolution of the 1 x 1 input, DCGAN's projection; on a 1 x 1 input its kernels do not overlap, so it paints
    no checkerboard). Three resize-convolutions with batch norm and ReLU take it to 32 x 32, a last
    resize-convolution with tanh to 64 x 64: four upsampling layers with batch norm and ReLU, then one with tanh.

    Args:
        latent_dim: size of ``z`` (100 in DCGAN).
        n_classes: number of classes of the one-hot condition.
        out_channels: channels of the image (e.g. one per contrast).
        channels: width of the last hidden layer; the layers have 8, 4, 2 and 1 times it (DCGAN's ``ngf``, 64).

    ``forward(x, labels=None)``: with ``labels`` (integer class indices ``(B,)``), ``x`` is ``z`` ``(B,
    latent_dim)``; without, ``x`` is the already concatenated ``[z, one_hot(y)]`` ``(B, latent_dim + n_classes)``
    or ``(B, latent_dim + n_classes, 1, 1)``: the single-tensor form that MONAI's ``verify_net_in_out`` and
    TorchScript export call.
    """

    def __init__(self, latent_dim: int = 100, n_classes: int = 3, out_channels: int = 6, channels: int = 64) -> None:
        super().__init__()
        self.latent_dim = _positive(latent_dim, "latent_dim")
        self.n_classes = _positive(n_classes, "n_classes")
        self.out_channels = _positive(out_channels, "out_channels")
        c = _positive(channels, "channels")
        self.input_dim = latent_dim + n_classes
        self.project = nn.Sequential(
            nn.ConvTranspose2d(self.input_dim, 8 * c, kernel_size=4, bias=False),
            nn.BatchNorm2d(8 * c),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        for width in (8 * c, 4 * c, 2 * c):
            # No bias: the batch norm that follows would cancel it.
            layers += [ResizeConv(2, width, width // 2, bias=False), nn.BatchNorm2d(width // 2), nn.ReLU(inplace=True)]
        self.upsample = nn.Sequential(*layers)
        self.head = nn.Sequential(ResizeConv(2, c, out_channels), nn.Tanh())

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        if labels is not None:
            x = torch.cat([x.flatten(1), F.one_hot(labels.long(), self.n_classes).to(x.dtype)], dim=1)
        if x.dim() == 2:
            x = x[:, :, None, None]
        if x.dim() != 4 or x.shape[1] != self.input_dim or x.shape[2] != 1 or x.shape[3] != 1:
            raise ValueError(
                f"expected z (B, {self.latent_dim}) with labels, or [z, one-hot class] (B, {self.input_dim}[, 1, 1]); "
                f"got {list(x.shape)}"
            )
        return self.head(self.upsample(self.project(x)))


class ConditionalDCGANCritic(nn.Module):
    """``D(x, y)``: image and class -> one score per image (a logit for DCGAN, the critic value for WGAN).

    Four stride-2 4 x 4 convolutions (64 -> 4 pixels) with LeakyReLU(0.2) and batch norm on all but the first
    (DCGAN), then a fully-connected layer. The class enters as ``n_classes`` constant one-hot planes concatenated to
    the image channels, the conditional GAN's way of showing the discriminator the condition.

    Args:
        in_channels: channels of the image.
        n_classes: number of classes.
        channels: width of the first layer; then 2, 4 and 8 times it (DCGAN's ``ndf``, 64).
        patch_size: side of the square image (a multiple of 16; the fully-connected layer's size depends on it).
    """

    def __init__(self, in_channels: int = 6, n_classes: int = 3, channels: int = 64, patch_size: int = 64) -> None:
        super().__init__()
        self.n_classes = _positive(n_classes, "n_classes")
        c = _positive(channels, "channels")
        if _positive(patch_size, "patch_size") % 16:
            raise InputError(f"patch_size must be a multiple of 16 (four stride-2 layers), got {patch_size}")
        layers: list[nn.Module] = []
        width_in = _positive(in_channels, "in_channels") + n_classes
        for stage, width in enumerate((c, 2 * c, 4 * c, 8 * c)):
            layers.append(nn.Conv2d(width_in, width, kernel_size=4, stride=2, padding=1, bias=stage == 0))
            if stage > 0:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            width_in = width
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(8 * c * (patch_size // 16) ** 2, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        planes = F.one_hot(labels.long(), self.n_classes).to(x.dtype)[:, :, None, None]
        x = torch.cat([x, planes.expand(-1, -1, x.shape[2], x.shape[3])], dim=1)
        return self.fc(self.features(x).flatten(1))
