"""Image and mask operations shared by the bundles and tools: intensity scaling, slice sampling, lesion edits,
registration and group-average templates."""

from synthmr.transforms.intensity import IntensityScaling, RobustScaled, foreground
from synthmr.transforms.lesion import (
    ClipToMask,
    ComposeEdits,
    LesionEdit,
    Mirror,
    Scale,
    Translate,
    Transplant,
    edit_lesion,
    left_right_axis,
)
from synthmr.transforms.registration import group_average, register, warp
from synthmr.transforms.slices import RandForegroundSliced

__all__ = [
    "ClipToMask",
    "ComposeEdits",
    "IntensityScaling",
    "LesionEdit",
    "Mirror",
    "RandForegroundSliced",
    "RobustScaled",
    "Scale",
    "Translate",
    "Transplant",
    "edit_lesion",
    "foreground",
    "group_average",
    "left_right_axis",
    "register",
    "warp",
]
