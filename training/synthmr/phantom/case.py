"""The contract between the organ phantoms and everything that consumes them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from synthmr.io import Volume


@dataclass
class PhantomCase:
    """One simulated case.

    Arrays use ITK index order, ``(x, y)`` or ``(x, y, z)``, as MONAI and nibabel do; every array of a case
    shares one grid described by ``spacing`` (mm), ``origin`` (mm, LPS) and ``direction`` (columns are the
    LPS directions of the array axes).

    Args:
        images: sequence key (docs/design.md, *Data conventions*) -> float32 image.
        masks: mask key (``label``, ``liver``, ``tumor``, ``lesion`` ...) -> uint8 label map.
        spacing, origin, direction: the grid.
        meta: JSON-serialisable facts about the case (seed, lesion classes, parameters drawn).
    """

    images: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    spacing: tuple[float, ...]
    origin: tuple[float, ...] | None = None
    direction: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        ndim = len(self.spacing)
        self.origin = tuple(float(o) for o in (self.origin if self.origin is not None else (0.0,) * ndim))
        self.direction = np.eye(ndim) if self.direction is None else np.asarray(self.direction, dtype=float)
        shapes = {k: a.shape for k, a in {**self.images, **self.masks}.items()}
        if len(set(shapes.values())) > 1:
            raise ValueError(f"phantom arrays are not on one grid: {shapes}")

    def volume(self, key: str) -> Volume:
        """The image or mask ``key`` as a :class:`~synthmr.io.Volume` on the case grid."""
        array = self.images[key] if key in self.images else self.masks[key]
        return Volume(array, self.spacing, self.origin, self.direction)
