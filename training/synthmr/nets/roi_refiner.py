"""Refine an image only inside a weighted region: ``image + weight * head(network(input))``."""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv


class ROIRefiner(nn.Module):
    """Wrap a network so that it changes its input image only where a weight channel is above zero.

    The input is ``[image (image_channels), conditions..., weight (1)]`` on channels; the output is
    ``image + weight * head(network(input))``: ``network`` maps the input to ``features`` channels and a 1x1
    convolution ``head``, initialised to zero, turns them into a correction of the image. Where the weight is 0
    the image passes through exactly (``x + 0 * d == x``), so a refiner trained and run this way cannot touch
    tissue outside its region of interest, and the weight's ramp blends the seam (TF-GAN's refinement of the
    tumour ROI, arXiv 2511.18654). The zero head makes training start from the identity.

    Args:
        network: maps the whole input to ``features`` channels at the input's size (e.g. a MONAI ``UNet``).
        features: the network's output channels.
        image_channels: how many leading input channels are the image.
        spatial_dims: 3 or 2.
    """

    def __init__(self, network: nn.Module, features: int, image_channels: int, spatial_dims: int = 3) -> None:
        super().__init__()
        self.network = network
        self.image_channels = int(image_channels)
        self.head = Conv[Conv.CONV, spatial_dims](features, self.image_channels, kernel_size=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x[:, : self.image_channels]
        weight = x[:, -1:]
        return image + weight * self.head(self.network(x))
