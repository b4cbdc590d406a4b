"""Generators and discriminators MONAI lacks, in 2D and 3D.

MONAI's ``PatchDiscriminator`` is used as it is (see :func:`patchgan70`); what is here: the pix2pix U-Net, the
pix2pixHD global generator (also the CycleGAN/pix2pix ResNet generator) and local enhancer, the pix2pixHD
multi-scale discriminator, SAMR's generator and label-wise discriminators, and the blocks they share.
"""

from synthmr.nets.blocks import ResizeConv, ResnetBlock
from synthmr.nets.channelwise import ChannelwiseDiscriminators, ChannelwiseGenerators
from synthmr.nets.labelwise_discriminator import LabelwiseDiscriminator
from synthmr.nets.multiscale_discriminator import MultiScaleDiscriminator, patchgan70
from synthmr.nets.pix2pix_unet import Pix2PixUNet
from synthmr.nets.pix2pixhd import GlobalGenerator, LocalEnhancer
from synthmr.nets.samr_generator import SAMRGenerator

__all__ = [
    "ChannelwiseDiscriminators",
    "ChannelwiseGenerators",
    "GlobalGenerator",
    "LabelwiseDiscriminator",
    "LocalEnhancer",
    "MultiScaleDiscriminator",
    "Pix2PixUNet",
    "ResizeConv",
    "ResnetBlock",
    "SAMRGenerator",
    "patchgan70",
]
