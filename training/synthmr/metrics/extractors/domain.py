"""A small MRI-domain feature extractor, trained in this project and shipped with it (the default FID extractor).

Natural-image networks (Inception-v3) and RadImageNet need weights the user must download; this network needs none:
it is trained by ``training/scripts/train_domain_extractor.py`` to tell organ and sequence of phantom MRI slices
apart (and whether a lesion is present), and its pooled features are what the Fréchet distance (Heusel et al.,
"GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium", arXiv 1706.08500) compares.
Why in-domain features: ImageNet features capture medical anatomy poorly (Konz, Osuala et al., "Fréchet Radiomic
Distance (FRD): A Versatile Metric for Comparing Medical Imaging Datasets", arXiv 2412.01496). Its numbers are not
comparable with published Inception FIDs, nor across versions of the shipped weights: reports always name the
extractor and the weights' SHA-256.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks import Convolution

from synthmr.errors import InputError


class DomainExtractor(nn.Module):
    """Strided-convolution encoder with GroupNorm and global average pooling: image -> ``channels[-1]``-d embedding.

    Each stage is a stride-2 3x3 convolution followed by a stride-1 3x3 convolution, each with GroupNorm and
    LeakyReLU(0.2) (MONAI ``Convolution`` blocks); the last stage is the stride-2 convolution alone (the embedding
    layer: a second convolution on its 4 x 4 grid would double the parameter count for little). GroupNorm, not
    BatchNorm, so a feature depends on its own image only: features of a set do not change with the batch size or
    with which images share a batch.

    Input: images ``(N, C, H, W)`` in [0, 1]; ``C`` = 1, or 3 (an RGB rendering: converted to grey by the channel
    mean). They are resized to ``image_size`` x ``image_size`` (bilinear with antialiasing, so downsizing a 256-pixel
    slice does not alias). Output: ``(N, channels[-1])``.

    Args:
        channels: output channels of the stages; the last is the embedding size. The default 5 stages take a
            128-pixel input to a 4 x 4 grid before pooling.
        image_size: side of the square the input is resized to (the size the shipped weights were trained at).
        num_groups: GroupNorm groups (capped at each stage's channel count).
    """

    def __init__(
        self, channels: Sequence[int] = (16, 32, 64, 128, 256), image_size: int = 128, num_groups: int = 8
    ) -> None:
        super().__init__()
        if not channels:
            raise InputError("DomainExtractor: channels must name at least one stage")
        self.image_size = image_size
        self.feature_dim = int(channels[-1])
        act = ("leakyrelu", {"negative_slope": 0.2, "inplace": True})
        layers: list[nn.Module] = []
        in_channels = 1
        for stage, out_channels in enumerate(channels):
            norm = ("group", {"num_groups": min(num_groups, out_channels)})
            layers.append(Convolution(2, in_channels, out_channels, strides=2, kernel_size=3, act=act, norm=norm))
            if stage < len(channels) - 1:
                layers.append(Convolution(2, out_channels, out_channels, strides=1, kernel_size=3, act=act, norm=norm))
            in_channels = out_channels
        self.encoder = nn.Sequential(*layers)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``(N, 1 or 3, H, W)`` -> ``(N, 1, image_size, image_size)``, the network's input.

        Separate from :meth:`forward` so training can resize its data once; ``forward`` skips the resize for input
        that is already at ``image_size``.
        """
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise InputError(f"domain extractor: expected images (N, 1 or 3, H, W), got {tuple(images.shape)}")
        x = images.float().mean(dim=1, keepdim=True)
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(self.encoder(self.preprocess(images)), 1), 1)
