"""The SAMR generator: a lesion-map encoder and an atlas encoder, a shared residual trunk, and one up-sampling
branch per output sequence (the "stretch-out" module)."""

from __future__ import annotations

import torch
import torch.nn as nn

from synthmr.errors import InputError
from synthmr.nets.blocks import (
    UPSAMPLINGS,
    ResnetBlock,
    check_choice,
    check_divisible,
    conv_norm_relu,
    output_head,
    up_norm_relu,
)


def _encoder(spatial_dims: int, in_channels: int, channels: int, n_downsampling: int, norm: str) -> nn.Sequential:
    """A 7x7 stride-1 convolution to ``channels`` features, then ``n_downsampling`` stride-2 3x3 convolutions
    doubling them, each followed by Norm and ReLU (pix2pixHD's global-generator encoder)."""
    layers = conv_norm_relu(spatial_dims, in_channels, channels, kernel_size=7, stride=1, norm=norm, padding_mode="reflect")
    for i in range(n_downsampling):
        layers += conv_norm_relu(spatial_dims, channels * 2**i, channels * 2 ** (i + 1), kernel_size=3, stride=2, norm=norm)
    return nn.Sequential(*layers)


def _branch(spatial_dims: int, width: int, n_downsampling: int, norm: str, upsample: str, outputs: int) -> nn.Sequential:
    """One stretch-out branch: a ResNet block at ``width`` features, ``n_downsampling`` x2 up-samplings halving
    them (Norm, ReLU), and a 7x7 convolution to ``outputs`` channels with Tanh."""
    layers = [ResnetBlock(spatial_dims, width, norm=norm)]
    for i in range(n_downsampling):
        layers += up_norm_relu(spatial_dims, width // 2**i, width // 2 ** (i + 1), norm, upsample)
    return nn.Sequential(*layers, output_head(spatial_dims, width // 2**n_downsampling, outputs))


class SAMRGenerator(nn.Module):
    """Generator of SAMR: lesion map and atlas in, one image per sequence out.

    Guo, Wang, Zhou, Jiang and Patel, "Lesion Mask-based Simultaneous Synthesis of Anatomic and Molecular MR
    Images using a GAN", MICCAI 2020, arXiv 2006.14761, Sec. 2 and Fig. 1(a); layer layout of the authors'
    ``GlobalGenerator_stretch_atlas`` (guopengf/CG-SAMR), which is pix2pixHD's global generator with these changes:

    - Two identical encoders, one for the lesion map and one for the atlas (7x7 stride-1 convolution, then
      ``n_downsampling`` stride-2 3x3 convolutions doubling the features, each with Norm and ReLU). Their
      outputs are concatenated: ``2 * channels * 2**n_downsampling`` features.
    - ``n_blocks`` :class:`~synthmr.nets.blocks.ResnetBlock` on the concatenation (the shared trunk).
    - The stretch-out up-sampling module: ``out_channels`` branches that all read the trunk's output, each one
      ResNet block, ``n_downsampling`` x2 up-samplings halving the features (3x3 transposed convolutions, Norm,
      ReLU) down to ``2 * channels`` (``channels`` without the atlas), and a 7x7 convolution to one channel with
      Tanh. Branch ``i`` writes output
      channel ``i``. (The reference code concatenates the branches in reverse order, last branch first; the
      order only names the channels, and here it is the natural one.)

    Where the paper and the code differ, the defaults follow the code, the only source of a working layout:
    the paper's text has five stride-2 layers per encoder, which with doubling features would put 4096 features
    in every trunk block at ``channels=64``; the code's default is three. The paper names batch normalisation
    (the default here); the code's option default is instance normalisation. The paper does not give the number
    of trunk blocks; the code's default is 9.

    The network takes one tensor, the lesion map's ``label_channels`` (one-hot: background, normal brain, edema,
    cavity, tumour in the paper) followed by the atlas's ``atlas_channels`` (each of the five sequences' atlas
    slice with its two axial neighbours in the paper: 15), so that a bundle has one input and
    ``verify_net_in_out`` and TorchScript export work unchanged; ``forward`` splits it.

    Args:
        label_channels: channels of the lesion map (5 in the paper).
        atlas_channels: channels of the atlas (15 in the paper); 0 gives the "w/o atlas" ablation (no atlas
            encoder; the trunk then has ``channels * 2**n_downsampling`` features).
        out_channels: output sequences, one branch each (5 in the paper); with ``stretch_out=False`` one shared
            decoder writes them all.
        channels: features after the first convolution of each encoder (``ngf``; 64 in the code).
        n_downsampling: stride-2 convolutions per encoder (3 in the code, 5 in the paper's text); every spatial
            input size must be a multiple of ``2**n_downsampling``.
        n_blocks: ResNet blocks of the shared trunk (9 in the code).
        norm: "batch" (the paper), "instance" (the code's option default) or "none".
        spatial_dims: 2 (the paper) or 3.
        upsample: "transpose" (the paper) or "resize" (:class:`~synthmr.nets.blocks.ResizeConv`).
        stretch_out: False gives the "w/o stretch-out" ablation of the paper's Table 2: one decoder (one ResNet
            block, the same up-samplings) ending in a 7x7 convolution to all ``out_channels`` at once.
    """

    def __init__(
        self,
        label_channels: int = 5,
        atlas_channels: int = 15,
        out_channels: int = 5,
        channels: int = 64,
        n_downsampling: int = 3,
        n_blocks: int = 9,
        norm: str = "batch",
        spatial_dims: int = 2,
        upsample: str = "transpose",
        stretch_out: bool = True,
    ) -> None:
        super().__init__()
        for name, value, least in (
            ("label_channels", label_channels, 1),
            ("atlas_channels", atlas_channels, 0),
            ("out_channels", out_channels, 1),
            ("channels", channels, 1),
            ("n_downsampling", n_downsampling, 0),
            ("n_blocks", n_blocks, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InputError(f"SAMRGenerator {name} must be an integer >= {least}; got {value!r}")
        upsample = check_choice(upsample, UPSAMPLINGS, "SAMRGenerator upsample")
        self.label_channels, self.atlas_channels = label_channels, atlas_channels
        self.size_multiple = 2**n_downsampling
        self.label_encoder = _encoder(spatial_dims, label_channels, channels, n_downsampling, norm)
        encoders = 1
        if atlas_channels:
            self.atlas_encoder = _encoder(spatial_dims, atlas_channels, channels, n_downsampling, norm)
            encoders = 2
        else:
            self.atlas_encoder = None
        width = encoders * channels * 2**n_downsampling
        self.trunk = nn.Sequential(*[ResnetBlock(spatial_dims, width, norm=norm) for _ in range(n_blocks)])

        settings = (spatial_dims, width, n_downsampling, norm, upsample)
        self.branches = nn.ModuleList(
            [_branch(*settings, 1) for _ in range(out_channels)] if stretch_out else [_branch(*settings, out_channels)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = self.label_channels + self.atlas_channels
        if x.dim() < 3 or x.shape[1] != expected:
            raise InputError(
                f"SAMRGenerator needs input (batch, {expected}, *spatial): {self.label_channels} lesion-map channels "
                f"then {self.atlas_channels} atlas channels; got shape {list(x.shape)}"
            )
        check_divisible(list(x.shape[2:]), self.size_multiple, "SAMRGenerator")
        features = self.label_encoder(x[:, : self.label_channels])
        if self.atlas_encoder is not None:
            features = torch.cat([features, self.atlas_encoder(x[:, self.label_channels :])], dim=1)
        shared = self.trunk(features)
        return torch.cat([branch(shared) for branch in self.branches], dim=1)
