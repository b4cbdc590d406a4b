"""Loss terms for GAN training; each knows nothing about a particular method.

Adversarial losses and the WGAN-GP penalty, pix2pixHD feature matching, masked and hinge L1, perceptual losses
over a pluggable frozen extractor (VGG19 from a local torchvision file), and segmentation consistency.
"""

from synthmr.losses.adversarial import AdversarialLoss, discriminator_logits, gradient_penalty
from synthmr.losses.consistency import SegmentationConsistencyLoss
from synthmr.losses.feature_matching import FeatureMatchingLoss
from synthmr.losses.frozen import FrozenNetwork
from synthmr.losses.perceptual import ClassWisePerceptualLoss, PerceptualLoss
from synthmr.losses.reconstruction import hinge_l1, masked_l1
from synthmr.losses.vgg19 import VGG19Features, vgg19_features

__all__ = [
    "AdversarialLoss",
    "ClassWisePerceptualLoss",
    "FeatureMatchingLoss",
    "FrozenNetwork",
    "PerceptualLoss",
    "SegmentationConsistencyLoss",
    "VGG19Features",
    "discriminator_logits",
    "gradient_penalty",
    "hinge_l1",
    "masked_l1",
    "vgg19_features",
]
