"""Test grids shared by the test modules."""

import numpy as np
from scipy.spatial.transform import Rotation

from synthmr.io import Volume


def oblique_volume(array: np.ndarray | None = None) -> Volume:
    """A grid that catches axis, sign and order mistakes: anisotropic, off-origin, obliquely rotated."""
    rotation = Rotation.from_rotvec(np.deg2rad(20) * np.array([1.0, 2.0, 3.0]) / np.sqrt(14)).as_matrix()
    if array is None:
        array = np.random.default_rng(0).normal(100, 30, (6, 5, 4)).astype(np.float32)
    return Volume(array, (0.8, 1.1, 3.0), (-10.5, 20.25, 33.0), rotation)
