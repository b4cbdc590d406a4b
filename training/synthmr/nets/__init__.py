"""Generators and discriminators MONAI lacks, in 2D and 3D.

MONAI's ``PatchDiscriminator`` is used as it is (see :func:`patchgan70`); what is here: the pix2pix U-Net, the
pix2pixHD global generator (also the CycleGAN/pix2pix ResNet generator) and local enhancer, the pix2pixHD
multi-scale discriminator, SAMR's generator and label-wise discriminators, TF-GAN's dual-head discriminator and
ROI refiner, and the blocks they share.
"""

from synthmr.nets.blocks import ResizeConv, ResnetBlock
from synthmr.nets.channelwise import ChannelwiseDiscriminators, ChannelwiseGenerators
from synthmr.nets.dual_head_discriminator import DualHeadDiscriminator, DualHeadOutput
from synthmr.nets.labelwise_discriminator import LabelwiseDiscriminator
from synthmr.nets.multiscale_discriminator import MultiScaleDiscriminator, patchgan70
from synthmr.nets.pix2pix_unet import Pix2PixUNet
from synthmr.nets.pix2pixhd import GlobalGenerator, LocalEnhancer
from synthmr.nets.roi_refiner import ROIRefiner
from synthmr.nets.samr_generator import SAMRGenerator

__all__ = [
    "ChannelwiseDiscriminators",
    "ChannelwiseGenerators",
    "DualHeadDiscriminator",
    "DualHeadOutput",
    "GlobalGenerator",
    "LabelwiseDiscriminator",
    "LocalEnhancer",
    "MultiScaleDiscriminator",
    "Pix2PixUNet",
    "ROIRefiner",
    "ResizeConv",
    "ResnetBlock",
    "SAMRGenerator",
    "patchgan70",
]
