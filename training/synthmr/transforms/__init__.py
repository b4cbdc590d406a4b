"""Image and mask operations shared by the bundles: intensity scaling, slice sampling (and, later, lesion edits)."""

from synthmr.transforms.intensity import IntensityScaling, RobustScaled, foreground
from synthmr.transforms.slices import RandForegroundSliced

__all__ = ["IntensityScaling", "RandForegroundSliced", "RobustScaled", "foreground"]
