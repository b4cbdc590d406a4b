"""Grids between 3D Slicer (RAS) and files (LPS), and writing scene voxels as NRRD, with numpy only.

3D Slicer describes a volume's grid by its IJK-to-RAS matrix: column ``i`` of the upper 3x3 is the RAS step of one
voxel along array axis ``i`` (direction times spacing), the last column is the RAS position of voxel (0, 0, 0).
Medical image files and ITK (hence synthmr) use LPS: the same physical points with x and y negated. The module
writes every input with :func:`write_nrrd`, which converts the matrix to an LPS header, and loads outputs back on
the reference's IJK-to-RAS matrix; the tests check both directions against SimpleITK and against Slicer's own
readers.

Arrays are in Slicer's ``arrayFromVolume`` order ``(K, J, I)``, i.e. C order with I fastest, which is also NRRD's
and NIfTI's storage order: the bytes go to the file as they are.
"""

from __future__ import annotations

import gzip
import os
import uuid
from pathlib import Path

import numpy as np

from SynthMRLib.errors import SynthMRError

# Negating x and y turns RAS into LPS and back.
LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])
# NRRD type names of the voxel types volumes hold; bool is stored as uint8, float16 as float.
_NRRD_TYPES = {
    np.dtype(np.int8): "int8",
    np.dtype(np.uint8): "uint8",
    np.dtype(np.int16): "int16",
    np.dtype(np.uint16): "uint16",
    np.dtype(np.int32): "int32",
    np.dtype(np.uint32): "uint32",
    np.dtype(np.int64): "int64",
    np.dtype(np.uint64): "uint64",
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
}
_STORED_AS = {np.dtype(bool): np.uint8, np.dtype(np.float16): np.float32}


def check_matrix(ijk_to_ras: np.ndarray) -> np.ndarray:
    """``ijk_to_ras`` as a float 4x4 affine (last row 0 0 0 1) with an invertible 3x3 part."""
    matrix = np.asarray(ijk_to_ras, dtype=float)
    if matrix.shape != (4, 4) or not np.allclose(matrix[3], [0, 0, 0, 1]) or not np.all(np.isfinite(matrix)):
        raise SynthMRError(f"IJK-to-RAS matrix {matrix.tolist()}: not a 4x4 affine")
    if abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
        raise SynthMRError(f"IJK-to-RAS matrix {matrix.tolist()}: singular (a spacing of 0?)")
    return matrix


def spacing(ijk_to_ras: np.ndarray) -> np.ndarray:
    """Voxel size along I, J, K in mm: the lengths of the matrix's columns."""
    return np.linalg.norm(check_matrix(ijk_to_ras)[:3, :3], axis=0)


def lps_grid(ijk_to_ras: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(spacing, origin, direction)`` in LPS, as ITK and synthmr describe the same grid.

    ``direction`` has the unit LPS direction of array axis I, J, K in its columns.
    """
    matrix = check_matrix(ijk_to_ras)
    steps = LPS_FROM_RAS @ matrix[:3, :3]
    sizes = np.linalg.norm(steps, axis=0)
    return sizes, LPS_FROM_RAS @ matrix[:3, 3], steps / sizes


def ras_vector_to_ijk(vector: np.ndarray, ijk_to_ras: np.ndarray) -> np.ndarray:
    """A RAS displacement (mm) as (real-valued) IJK steps."""
    return np.linalg.solve(check_matrix(ijk_to_ras)[:3, :3], np.asarray(vector, dtype=float))


def ras_point_to_ijk(point: np.ndarray, ijk_to_ras: np.ndarray) -> np.ndarray:
    """A RAS position (mm) as a (real-valued) IJK index."""
    matrix = check_matrix(ijk_to_ras)
    return np.linalg.solve(matrix[:3, :3], np.asarray(point, dtype=float) - matrix[:3, 3])


def on_reference_grid(
    array: np.ndarray, ijk_to_ras: np.ndarray, reference_ijk_to_ras: np.ndarray, tolerance_mm: float = 1e-3
) -> np.ndarray:
    """``array`` (``(K, J, I)``, on the grid ``ijk_to_ras``) in the voxel order of the reference grid.

    Two grids can place the same voxels in the same physical positions with their axes in another order or
    direction: Slicer's file reader turns a left-handed grid (such as a slice axis pointing down) into the
    right-handed equivalent by reversing the slice axis. Such a grid is mapped back by permuting and flipping the
    array axes, exactly (no resampling).

    Raises:
        SynthMRError: the grids do not hold the same voxel positions.
    """
    array = np.asarray(array)
    matrix, reference = check_matrix(ijk_to_ras), check_matrix(reference_ijk_to_ras)
    # reference index = steps @ index + offset; for equivalent grids steps is a signed permutation.
    mapping = np.linalg.solve(reference, matrix)
    steps, offset = np.rint(mapping[:3, :3]), np.rint(mapping[:3, 3])
    sizes = array.shape[::-1]  # I, J, K
    is_permutation = (np.abs(steps).sum(axis=0) == 1).all() and (np.abs(steps).sum(axis=1) == 1).all()
    error_mm = reference[:3, :3] @ (mapping[:3] - np.c_[steps, offset])  # per voxel step, and at voxel 0
    if not (is_permutation and np.abs(error_mm).max() <= tolerance_mm):
        raise SynthMRError("the volume's voxels are not at the positions of the reference grid's voxels")
    source_axes, flips = [], []
    for axis in range(3):  # reference IJK axis
        source = int(np.flatnonzero(steps[axis])[0])
        flipped = steps[axis, source] < 0
        expected = sizes[source] - 1 if flipped else 0
        if offset[axis] != expected:
            raise SynthMRError("the volume's voxels are not at the positions of the reference grid's voxels")
        source_axes.append(source)
        flips.append(flipped)
    if source_axes == [0, 1, 2] and not any(flips):
        return array
    # Array axes are (K, J, I): IJK axis n is array axis 2 - n.
    reordered = np.transpose(array, [2 - source_axes[2 - axis] for axis in range(3)])
    flip_axes = tuple(2 - axis for axis in range(3) if flips[axis])
    return np.flip(reordered, flip_axes) if flip_axes else reordered


def write_nrrd(path: str | os.PathLike, array: np.ndarray, ijk_to_ras: np.ndarray) -> Path:
    """Write a scene volume as a gzip-compressed NRRD file in LPS space, keeping its grid exactly.

    The file is written under a hidden name beside ``path`` and renamed into place, so ``path`` is either complete
    or absent.

    Args:
        path: destination, ending in ``.nrrd``; its folder must exist.
        array: voxels in ``(K, J, I)`` order (``slicer.util.arrayFromVolume``); 3D, one component per voxel.
        ijk_to_ras: the volume's 4x4 IJK-to-RAS matrix.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    array = np.asarray(array)
    if array.ndim != 3:
        raise SynthMRError(f"{path.name}: needs a 3D (K, J, I) array, one component per voxel; got shape {array.shape}")
    array = array.astype(_STORED_AS.get(array.dtype, array.dtype), copy=False)
    if array.dtype.newbyteorder("=") not in _NRRD_TYPES:
        raise SynthMRError(f"{path.name}: voxel type {array.dtype} cannot be stored in NRRD")
    array = array.astype(array.dtype.newbyteorder("<"), copy=False)  # the header says little-endian
    sizes, origin, direction = lps_grid(ijk_to_ras)
    steps = direction * sizes

    def vector(values: np.ndarray) -> str:
        return "(" + ",".join(repr(float(value)) for value in values) + ")"

    header = "\n".join(
        [
            "NRRD0004",
            f"type: {_NRRD_TYPES[array.dtype.newbyteorder('=')]}",
            "dimension: 3",
            "space: left-posterior-superior",
            f"sizes: {array.shape[2]} {array.shape[1]} {array.shape[0]}",
            "space directions: " + " ".join(vector(steps[:, axis]) for axis in range(3)),
            "kinds: domain domain domain",
            "endian: little",
            "encoding: gzip",
            f"space origin: {vector(origin)}",
            "",
            "",
        ]
    )
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temporary, "wb") as stream:
            stream.write(header.encode("ascii"))
            # Level 1: these files live for one run; speed matters more than size.
            stream.write(gzip.compress(np.ascontiguousarray(array).tobytes(), compresslevel=1))
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path
