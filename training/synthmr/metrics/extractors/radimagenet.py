"""RadImageNet ResNet-50 features (2048-d global average pool) on MONAI's ResNet.

RadImageNet: Mei et al., "RadImageNet: An Open Radiologic Deep Learning Research Dataset for Effective Transfer
Learning", Radiology: Artificial Intelligence 2022 (doi 10.1148/ryai.210315); ResNet: He et al., "Deep Residual
Learning for Image Recognition", arXiv 1512.03385.

The released RadImageNet models are Keras ``.h5`` files; the PyTorch port of the ResNet-50 (Warvito/radimagenet-models,
file ``RadImageNet-ResNet50_notop.pth``, also mirrored by MONAI on Hugging Face for its perceptual loss) keeps the
*Keras* ResNet-50 layout, which differs from torchvision's and MONAI's ``resnet50`` in three ways that change the
output, so MONAI's ``resnet50`` cannot load the file as it is:

* every convolution has a bias (file keys ``conv1.bias``, ``layer1.0.conv1.bias`` ...);
* a strided bottleneck puts its stride on the first 1x1 convolution, not on the 3x3 one ("ResNet v1" as in Keras);
* BatchNorm epsilon is 1.001e-5.

So the network here is MONAI's :class:`~monai.networks.nets.ResNet` skeleton (stem, max-pool, ``layer1..4``, global
average pool, no classifier) with a Keras-layout bottleneck block. Key names are MONAI's/torchvision's
(``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0`` ...), which are the port's names.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from monai.networks.nets.resnet import ResNet, ResNetBottleneck

from synthmr.errors import InputError

# Keras' BatchNormalization default epsilon, which the RadImageNet models were trained with.
KERAS_BN_EPS = 1.001e-5
# Per-channel means subtracted in BGR order from [0, 1] inputs: the preprocessing MONAI's RadImageNet perceptual
# loss (monai.losses.perceptual, ``subtract_mean``) uses for these weights.
RADIMAGENET_BGR_MEAN = (0.406, 0.456, 0.485)


class KerasBottleneck(ResNetBottleneck):
    """MONAI's bottleneck rebuilt in the Keras ResNet-50 layout: biased convolutions, stride on the first 1x1.

    Args:
        in_planes, planes, spatial_dims, stride, downsample, act, norm: as in
            :class:`monai.networks.nets.resnet.ResNetBottleneck`.
    """

    def __init__(
        self,
        in_planes: int,
        planes: int,
        spatial_dims: int = 2,
        stride: int = 1,
        downsample: nn.Module | partial | None = None,
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple = "batch",
    ) -> None:
        super().__init__(in_planes, planes, spatial_dims, stride, downsample, act, norm)
        conv = Conv[Conv.CONV, spatial_dims]
        self.conv1 = conv(in_planes, planes, kernel_size=1, stride=stride, bias=True)
        self.conv2 = conv(planes, planes, kernel_size=3, padding=1, bias=True)
        self.conv3 = conv(planes, planes * self.expansion, kernel_size=1, bias=True)


class RadImageNetResNet50(ResNet):
    """ResNet-50 trunk in the RadImageNet (Keras) layout returning 2048-d pooled features, preprocessing included.

    Input: images ``(N, C, H, W)`` in [0, 1], ``C`` 1 (replicated to 3) or 3 (taken as RGB). They are resized
    bilinearly to ``image_size`` (RadImageNet's images are 224 x 224), reordered to BGR and the channel means
    :data:`RADIMAGENET_BGR_MEAN` are subtracted, as MONAI does for these weights. Output ``(N, 2048)``.

    The network starts with random weights; load the port's file with
    :func:`synthmr.metrics.extractors.get_extractor` ("radimagenet_resnet50"), which reads a local file only.

    Args:
        image_size: side of the square the input is resized to before the network.
    """

    feature_dim = 2048

    def __init__(self, image_size: int = 224) -> None:
        super().__init__(
            block=KerasBottleneck,
            layers=[3, 4, 6, 3],
            block_inplanes=[64, 128, 256, 512],
            spatial_dims=2,
            n_input_channels=3,
            conv1_t_size=7,
            conv1_t_stride=2,
            shortcut_type="B",
            feed_forward=False,
            bias_downsample=True,
        )
        self.image_size = image_size
        # The Keras stem convolution has a bias too (MONAI's has none).
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=True)
        # MONAI's ResNet does not pass its `norm` argument on to the blocks, so the epsilon is set here for all.
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eps = KERAS_BN_EPS
        self.register_buffer("bgr_mean", torch.tensor(RADIMAGENET_BGR_MEAN).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise InputError(f"radimagenet_resnet50 extractor: expected (N, 1 or 3, H, W), got {tuple(images.shape)}")
        x = images.float().expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        x = x.flip(1) - self.bgr_mean
        return super().forward(x)
