"""The pix2pixHD generators: the global ResNet generator and the local enhancer built around it."""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.layers.factories import Pool

from synthmr.nets.blocks import (
    UPSAMPLINGS,
    ResnetBlock,
    check_choice,
    check_divisible,
    conv_norm_relu,
    output_head,
    up_norm_relu,
)


class GlobalGenerator(nn.Module):
    """Global generator G1 of pix2pixHD, a ResNet encoder-decoder.

    Wang, Liu, Zhu, Tao, Kautz and Catanzaro, "High-Resolution Image Synthesis and Semantic Manipulation with
    Conditional GANs", arXiv 1711.11585 (layer layout of NVIDIA/pix2pixHD ``GlobalGenerator``):
    reflection-padded 7x7 convolution, ``n_downsampling`` stride-2 3x3 convolutions doubling the features,
    ``n_blocks`` :class:`~synthmr.nets.blocks.ResnetBlock`, ``n_downsampling`` stride-2 3x3 transposed
    convolutions halving them, reflection-padded 7x7 convolution to ``out_channels``, Tanh. Every convolution has
    a bias; every one but the last is followed by Norm and ReLU.

    With ``n_downsampling=2, n_blocks=9, channels=64, norm="instance"`` this is also the "ResNet 9-block"
    generator of CycleGAN/pix2pix (arXiv 1703.10593, ``resnet_9blocks``): with instance norm that code gives its
    convolutions a bias as well, so the two layouts coincide (11,378,179 parameters for 3 -> 3 channels).
    pix2pixHD's own defaults (``n_downsampling=4``) put about 170 M of its 182 M parameters in the nine
    1024-feature ResNet blocks; ``n_downsampling=3`` or ``channels=32`` cut that about fourfold.

    ``features`` holds everything up to the last ReLU and ``head`` the final 7x7 convolution and Tanh, so
    :class:`LocalEnhancer` can take ``features`` (the paper's "last three layers dropped") and load weights
    trained here.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        channels: features after the first convolution (``ngf``).
        n_downsampling: number of stride-2 downsamplings; every spatial input size must be a multiple of
            ``2**n_downsampling``.
        n_blocks: number of ResNet blocks at the lowest resolution.
        norm: "instance" (InstanceNorm without affine parameters, the paper), "batch" or "none".
        spatial_dims: 2 or 3.
        upsample: "transpose" (the paper) or "resize" (:class:`~synthmr.nets.blocks.ResizeConv`, no checkerboard
            artefacts).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: int = 64,
        n_downsampling: int = 4,
        n_blocks: int = 9,
        norm: str = "instance",
        spatial_dims: int = 2,
        upsample: str = "transpose",
    ) -> None:
        super().__init__()
        upsample = check_choice(upsample, UPSAMPLINGS, "GlobalGenerator upsample")
        self.size_multiple = 2**n_downsampling
        layers = conv_norm_relu(
            spatial_dims, in_channels, channels, kernel_size=7, stride=1, norm=norm, padding_mode="reflect"
        )
        for i in range(n_downsampling):
            layers += conv_norm_relu(
                spatial_dims, channels * 2**i, channels * 2 ** (i + 1), kernel_size=3, stride=2, norm=norm
            )
        bottleneck = channels * 2**n_downsampling
        layers += [ResnetBlock(spatial_dims, bottleneck, norm=norm) for _ in range(n_blocks)]
        for i in range(n_downsampling, 0, -1):
            layers += up_norm_relu(spatial_dims, channels * 2**i, channels * 2 ** (i - 1), norm, upsample)
        self.features = nn.Sequential(*layers)
        self.head = output_head(spatial_dims, channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_divisible(list(x.shape[2:]), self.size_multiple, "GlobalGenerator")
        return self.head(self.features(x))


class LocalEnhancer(nn.Module):
    """pix2pixHD coarse-to-fine generator: a local enhancer network G2 around the global generator G1.

    Wang et al., "High-Resolution Image Synthesis and Semantic Manipulation with Conditional GANs",
    arXiv 1711.11585, section 3.2 (one enhancer, ``--netG local --n_local_enhancers 1``, the 2048x1024 recipe).
    G1 is a :class:`GlobalGenerator` with ``2 * channels`` features and its last three layers dropped; it sees the
    input downsampled by AvgPool(3, stride 2, padding 1, count_include_pad=False). G2 encodes the full-resolution
    input (7x7 convolution, one stride-2 3x3 convolution to ``2 * channels``), adds G1's output features, and
    decodes them through ``n_blocks_local`` ResNet blocks, one x2 upsampling and a 7x7 convolution with Tanh.

    ``global_generator`` has the parameter names of ``GlobalGenerator.features``, so a G1 trained alone (the
    paper trains G1 first, then both) loads with
    ``enhancer.global_generator.load_state_dict({k[len("features."):]: v for k, v in g1.state_dict().items()
    if k.startswith("features.")})``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        channels: features of the local branch (``ngf``; the paper uses 32, so G1 has 64).
        n_downsampling_global: downsamplings inside G1; every spatial input size must be a multiple of
            ``2**(n_downsampling_global + 1)``.
        n_blocks_global: ResNet blocks inside G1.
        n_blocks_local: ResNet blocks of the local branch.
        norm: "instance" (the paper), "batch" or "none".
        spatial_dims: 2 or 3.
        upsample: "transpose" (the paper) or "resize" (:class:`~synthmr.nets.blocks.ResizeConv`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: int = 32,
        n_downsampling_global: int = 4,
        n_blocks_global: int = 9,
        n_blocks_local: int = 3,
        norm: str = "instance",
        spatial_dims: int = 2,
        upsample: str = "transpose",
    ) -> None:
        super().__init__()
        upsample = check_choice(upsample, UPSAMPLINGS, "LocalEnhancer upsample")
        self.size_multiple = 2 ** (n_downsampling_global + 1)
        self.downsample = Pool[Pool.AVG, spatial_dims](kernel_size=3, stride=2, padding=1, count_include_pad=False)
        self.global_generator = GlobalGenerator(
            in_channels,
            out_channels,
            channels=2 * channels,
            n_downsampling=n_downsampling_global,
            n_blocks=n_blocks_global,
            norm=norm,
            spatial_dims=spatial_dims,
            upsample=upsample,
        ).features
        self.local_down = nn.Sequential(
            *conv_norm_relu(
                spatial_dims, in_channels, channels, kernel_size=7, stride=1, norm=norm, padding_mode="reflect"
            ),
            *conv_norm_relu(spatial_dims, channels, 2 * channels, kernel_size=3, stride=2, norm=norm),
        )
        self.local_up = nn.Sequential(
            *[ResnetBlock(spatial_dims, 2 * channels, norm=norm) for _ in range(n_blocks_local)],
            *up_norm_relu(spatial_dims, 2 * channels, channels, norm, upsample),
        )
        self.head = output_head(spatial_dims, channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_divisible(list(x.shape[2:]), self.size_multiple, "LocalEnhancer")
        coarse = self.global_generator(self.downsample(x))
        return self.head(self.local_up(self.local_down(x) + coarse))
