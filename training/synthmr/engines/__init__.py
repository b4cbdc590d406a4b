"""GAN trainers on MONAI/Ignite engines: paired/conditional, latent/class-conditional and unpaired (cycle), and the
checkpoint selection they share (docs/design.md, *Engines, losses and metrics*)."""

from synthmr.engines.cycle import CycleGanTrainer
from synthmr.engines.latent import LatentGanTrainer
from synthmr.engines.paired import GanStep, PairedGanTrainer, concat_condition, image_only, on_features, on_images
from synthmr.engines.selection import CheckpointSelection, PooledKidSelection

__all__ = [
    "CheckpointSelection",
    "CycleGanTrainer",
    "GanStep",
    "LatentGanTrainer",
    "PairedGanTrainer",
    "PooledKidSelection",
    "concat_condition",
    "image_only",
    "on_features",
    "on_images",
]
