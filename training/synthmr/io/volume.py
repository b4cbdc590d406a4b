"""An array with its grid: the in-memory image type of SynthMR."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

# ITK's physical space is LPS; nibabel/MONAI affines are RAS: flip the first two world axes.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass
class Volume:
    """An image array and the grid it lives on.

    Args:
        array: voxel data in ITK index order ``(x, y[, z])`` (the order MONAI and nibabel use), optionally with
            a trailing channel axis for vector images.
        spacing: voxel size along each array axis, mm.
        origin: physical position of voxel ``(0, 0[, 0])``, mm, LPS (ITK convention).
        direction: ``(ndim, ndim)`` matrix whose columns are the LPS directions of the array axes.
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: np.ndarray

    def __post_init__(self):
        self.array = np.asarray(self.array)
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = np.asarray(self.direction, dtype=float).reshape(len(self.spacing), len(self.spacing))

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions."""
        return len(self.spacing)

    @property
    def affine(self) -> np.ndarray:
        """Voxel index -> RAS mm, the 4x4 affine nibabel and MONAI use (2D grids are embedded at z = 0)."""
        d = np.eye(3)
        d[: self.ndim, : self.ndim] = self.direction
        s = np.ones(3)
        s[: self.ndim] = self.spacing
        o = np.zeros(3)
        o[: self.ndim] = self.origin
        affine = np.eye(4)
        affine[:3, :3] = _LPS_TO_RAS @ d @ np.diag(s)
        affine[:3, 3] = _LPS_TO_RAS @ o
        return affine

    def same_grid(self, other: "Volume", atol: float = 1e-4) -> bool:
        """True when both volumes have the same spatial shape, spacing, origin and direction."""
        return (
            self.array.shape[: self.ndim] == other.array.shape[: other.ndim]
            and np.allclose(self.spacing, other.spacing, atol=atol)
            and np.allclose(self.origin, other.origin, atol=atol)
            and np.allclose(self.direction, other.direction, atol=atol)
        )

    def with_array(self, array: np.ndarray) -> "Volume":
        """A new volume with ``array`` on this grid."""
        return Volume(array, self.spacing, self.origin, self.direction)

    def to_sitk(self) -> sitk.Image:
        """SimpleITK image with the same grid (SimpleITK arrays are ``(z, y, x)``)."""
        vector = self.array.ndim == self.ndim + 1
        array = np.transpose(self.array, tuple(reversed(range(self.ndim))) + ((self.ndim,) if vector else ()))
        image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=vector)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction.ravel().tolist())
        return image

    @classmethod
    def from_sitk(cls, image: sitk.Image) -> "Volume":
        """Volume from a SimpleITK image, keeping its grid."""
        ndim = image.GetDimension()
        array = sitk.GetArrayFromImage(image)
        vector = image.GetNumberOfComponentsPerPixel() > 1
        array = np.transpose(array, tuple(reversed(range(ndim))) + ((ndim,) if vector else ()))
        direction = np.asarray(image.GetDirection()).reshape(ndim, ndim)
        return cls(array, image.GetSpacing(), image.GetOrigin(), direction)
