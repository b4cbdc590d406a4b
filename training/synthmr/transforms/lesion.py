"""Lesion edits: move, resize, mirror or transplant a lesion labelmap, then keep it inside the organ.

The 3D Slicer module and ``synthmr lesion`` both edit a bundle's lesion input with these objects before the
bundle runs (docs/design.md, *The 3D Slicer extension*), so a synthetic image can show the lesion somewhere else,
bigger, on the other side, or
taken from another case. Each edit is a small object with one job (TorchIO style): it is called on the lesion
:class:`~synthmr.io.Volume` and returns a new volume on the same grid. :class:`ComposeEdits` chains them and
:func:`edit_lesion` builds the chain the tools use.

Conventions:

- Every non-zero voxel is lesion and keeps its value: multi-label lesions (necrosis, edema, enhancing tumour)
  move together. Labels are resampled with nearest neighbour only, so no new values appear.
- Voxel coordinates are array indices ``(x, y[, z])``: the ITK index, which is also 3D Slicer's IJK.
  Millimetres are in the grid's physical space, LPS (x towards the patient's left, y posterior, z superior), the
  convention of :mod:`synthmr.io`; from 3D Slicer's RAS, negate the first two.
- Shifts are whole voxels (offsets and centres are rounded half up), so a moved lesion keeps its exact shape.
- Mirroring flips the array axis closest to left-right about a mid-sagittal plane: the organ's when an organ
  mask is given (the middle of its left-right extent), else the image's (its middle column). The organ's plane
  is the useful one for organs off the image centre (a liver lesion stays in the liver instead of landing in the
  spleen) and for paired organs (a lesion goes to the same place in the other organ of the pair when the mask
  holds both). Because ``2 * plane`` is always a whole voxel index, the flip is exact on the voxel grid; on an
  oblique grid it is a flip of the axis nearest to left-right, not of the patient's true sagittal plane.
- Clipping to the organ mask (:class:`ClipToMask`) comes last, as in seed paper 000, where augmented tumours are
  intersected with the liver mask so that none lies outside the liver.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from synthmr.errors import InputError
from synthmr.io import Volume

UNITS = ("voxel", "mm")


class LesionEdit:
    """One edit of a lesion labelmap: ``edit(lesion) -> Volume`` on the same grid (subclasses say which)."""

    def __call__(self, lesion: Volume) -> Volume:
        raise NotImplementedError


class Translate(LesionEdit):
    """Move the lesion by a whole number of voxels; what leaves the image is lost.

    Args:
        offset: one value per grid axis, in ``unit``; rounded half up to whole voxels after conversion.
        unit: ``"voxel"`` (array index steps) or ``"mm"`` (a physical LPS displacement).
    """

    def __init__(self, offset: Sequence[float], unit: str = "voxel") -> None:
        self.offset = tuple(float(value) for value in offset)
        self.unit = _check_unit(unit)

    def __call__(self, lesion: Volume) -> Volume:
        _check_labelmap(lesion, "lesion")
        steps = _round_half_up(_index_vector(lesion, self.offset, self.unit, "translation"))
        return lesion.with_array(_shift(lesion.array, steps))


class Scale(LesionEdit):
    """Grow or shrink the lesion about its centroid by ``factor`` (nearest neighbour, labels kept).

    Output voxel ``p`` takes the label of input voxel ``round(c + (p - c) / factor)``, ``c`` being the centroid of
    the lesion's voxels, so the lesion's extent along every axis is multiplied by ``factor``.

    Args:
        factor: positive scale factor; 2 doubles the lesion's diameter, 0.5 halves it.
    """

    def __init__(self, factor: float) -> None:
        factor = float(factor)
        if not np.isfinite(factor) or factor <= 0:
            raise InputError(f"scale factor {factor:g}: must be a positive number")
        self.factor = factor

    def __call__(self, lesion: Volume) -> Volume:
        _check_labelmap(lesion, "lesion")
        array = lesion.array
        voxels = np.argwhere(array != 0)
        if not len(voxels):
            raise InputError("lesion: is empty (every voxel is 0), so there is nothing to scale")
        centre = voxels.mean(axis=0)
        # Scaling about a point is separable: each axis maps target indices to source indices on its own, and only
        # targets within the scaled bounding box can reach a lesion voxel.
        targets, sources = [], []
        for axis, size in enumerate(array.shape):
            low = centre[axis] + self.factor * (voxels[:, axis].min() - 0.5 - centre[axis])
            high = centre[axis] + self.factor * (voxels[:, axis].max() + 0.5 - centre[axis])
            target = np.arange(max(int(np.floor(low)), 0), min(int(np.ceil(high)), size - 1) + 1)
            source = _round_half_up(centre[axis] + (target - centre[axis]) / self.factor)
            inside = (source >= 0) & (source < size)
            targets.append(target[inside])
            sources.append(source[inside])
        scaled = np.zeros_like(array)
        scaled[np.ix_(*targets)] = array[np.ix_(*sources)]
        return lesion.with_array(scaled)


class Mirror(LesionEdit):
    """Mirror the lesion left-right about the organ's mid-sagittal plane, or the image's without an organ mask.

    The plane is the middle of the organ mask's extent along the grid axis closest to left-right (see the module
    docstring), or the middle of that axis for the whole image.

    Args:
        organ: organ mask on the lesion's grid, or None for the image's mid-plane.
        name: what to call the organ mask in messages (e.g. its file).
    """

    def __init__(self, organ: Volume | None = None, name: str = "organ mask") -> None:
        self.organ = organ
        self.name = name

    def __call__(self, lesion: Volume) -> Volume:
        _check_labelmap(lesion, "lesion")
        axis = left_right_axis(lesion)
        size = lesion.array.shape[axis]
        if self.organ is None:
            twice_plane = size - 1
        else:
            _check_same_grid(self.organ, lesion, self.name)
            other_axes = tuple(a for a in range(lesion.ndim) if a != axis)
            extent = np.flatnonzero(np.any(self.organ.array != 0, axis=other_axes))
            if not extent.size:
                raise InputError(f"{self.name}: is empty (every voxel is 0), so it has no mid-sagittal plane")
            twice_plane = int(extent[0] + extent[-1])
        source = twice_plane - np.arange(size)
        inside = (source >= 0) & (source < size)
        mirrored = np.zeros_like(lesion.array)
        target_index = [slice(None)] * lesion.ndim
        target_index[axis] = np.flatnonzero(inside)
        mirrored[tuple(target_index)] = np.take(lesion.array, source[inside], axis=axis)
        return lesion.with_array(mirrored)


class Transplant(LesionEdit):
    """Replace the lesion by another case's lesion, placed with its centroid at ``centre``.

    The donor must be on the recipient's grid (register and resample it first); the recipient's own lesion is
    dropped, as when SAMR (seed paper 003) reassembles lesions between patients.

    Args:
        donor: the other case's lesion labelmap, on the lesion's grid.
        centre: where the donor's centroid goes, one value per grid axis in ``unit`` (rounded to the nearest
            voxel); None keeps the donor where it is.
        unit: ``"voxel"`` (an array index) or ``"mm"`` (a physical LPS position).
        name: what to call the donor in messages (e.g. its file).
    """

    def __init__(
        self, donor: Volume, centre: Sequence[float] | None = None, unit: str = "voxel", name: str = "donor lesion"
    ) -> None:
        self.donor = donor
        self.centre = None if centre is None else tuple(float(value) for value in centre)
        self.unit = _check_unit(unit)
        self.name = name

    def __call__(self, lesion: Volume) -> Volume:
        _check_labelmap(self.donor, self.name)
        _check_same_grid(self.donor, lesion, self.name)
        voxels = np.argwhere(self.donor.array != 0)
        if not len(voxels):
            raise InputError(f"{self.name}: is empty (every voxel is 0), so there is no lesion to transplant")
        placed = self.donor.array
        if self.centre is not None:
            target = _index_point(lesion, self.centre, self.unit, "transplant centre")
            placed = _shift(placed, _round_half_up(target - voxels.mean(axis=0)))
        return lesion.with_array(placed.astype(np.promote_types(lesion.array.dtype, placed.dtype)))


class ClipToMask(LesionEdit):
    """Keep only the lesion voxels inside ``mask`` (non-zero there): the lesion stays within the organ.

    Args:
        mask: organ mask on the lesion's grid.
        name: what to call the mask in messages (e.g. its file).
    """

    def __init__(self, mask: Volume, name: str = "organ mask") -> None:
        self.mask = mask
        self.name = name

    def __call__(self, lesion: Volume) -> Volume:
        _check_labelmap(lesion, "lesion")
        _check_same_grid(self.mask, lesion, self.name)
        return lesion.with_array(np.where(self.mask.array != 0, lesion.array, 0).astype(lesion.array.dtype))


class ComposeEdits(LesionEdit):
    """Apply edits one after the other.

    Args:
        edits: the edits, in the order they are applied.
    """

    def __init__(self, edits: Sequence[LesionEdit]) -> None:
        self.edits = tuple(edits)

    def __call__(self, lesion: Volume) -> Volume:
        for edit in self.edits:
            lesion = edit(lesion)
        return lesion


def edit_lesion(
    lesion: Volume,
    translate: Sequence[float] | None = None,
    scale: float | None = None,
    mirror: bool = False,
    transplant: Volume | None = None,
    centre: Sequence[float] | None = None,
    organ: Volume | None = None,
    unit: str = "voxel",
    names: dict[str, str] | None = None,
    organ_labels: Sequence[int] = (),
) -> Volume:
    """Edit a lesion the way the Slicer module and ``synthmr lesion`` do: transplant, mirror, scale, translate, in
    this order, then clip to the organ mask.

    A map that holds the organ's normal tissue and the lesion together (SAMR's lesion map: 1 normal brain, 2
    edema, 3 cavity, 4 tumour) is edited with ``organ_labels`` naming its normal-tissue labels: only the other
    non-zero labels move, the organ is the map's non-zero voxels (unless ``organ`` is given), the voxels the
    lesion leaves take the first organ label, and the result is the whole map again. A donor map is read the
    same way: its lesion labels are transplanted, its normal tissue is not.

    Args:
        lesion: the case's lesion labelmap; with ``transplant`` it only gives the grid (it may be empty).
        translate: offset per grid axis in ``unit``, or None.
        scale: scale factor about the lesion's centroid, or None.
        mirror: mirror left-right (about the organ's mid-sagittal plane when ``organ`` is given).
        transplant: another case's lesion on the same grid that replaces this one, or None.
        centre: where the transplanted lesion's centroid goes, in ``unit``; None keeps it in place.
        organ: organ mask on the same grid: the mirror plane, and the region the result is clipped to.
        unit: ``"voxel"`` or ``"mm"`` (LPS), for ``translate`` and ``centre``.
        names: how messages call ``"lesion"``, ``"organ"`` and ``"donor"`` (e.g. their files).
        organ_labels: the labels of ``lesion`` (and of ``transplant``) that are normal tissue of the organ, for a
            combined map; empty (default) when every non-zero voxel is lesion.

    Returns:
        The edited lesion on the lesion's grid, in the lesion's data type (or a wider one for a donor's labels).

    Raises:
        InputError: an edit's value is invalid, an input is not a labelmap or not on the lesion's grid, the lesion
            to edit is empty, or nothing of it is left (moved out of the image or of the organ).
    """
    names = {"lesion": "lesion", "organ": "organ mask", "donor": "donor lesion", **(names or {})}
    _check_unit(unit)
    if centre is not None and transplant is None:
        raise InputError("centre: places a transplanted lesion; give the donor lesion to transplant too")
    _check_labelmap(lesion, names["lesion"])
    organ_labels = _organ_labels(organ_labels)
    if organ_labels:
        whole = lesion
        if organ is None:
            organ = whole.with_array((whole.array != 0).astype(np.uint8))
        if not np.any(organ.array):
            raise InputError(f"{names['lesion']}: has no organ voxels (labels {list(organ_labels)}), so a lesion has nowhere to go")
        lesion = _lesion_part(whole, organ_labels)
        if transplant is None and not np.any(lesion.array):
            raise InputError(
                f"{names['lesion']}: has no lesion voxels (only the organ labels {list(organ_labels)} and background), "
                "so there is nothing to edit"
            )
        if transplant is not None:
            _check_labelmap(transplant, names["donor"])
            transplant = _lesion_part(transplant, organ_labels)
        edited = edit_lesion(lesion, translate, scale, mirror, transplant, centre, organ, unit, names)
        # The map's own tissue stays as it is; the voxels the lesion leaves (inside the organ) become tissue.
        tissue = np.where(np.isin(whole.array, organ_labels), whole.array, 0)
        tissue = np.where((lesion.array != 0) & (organ.array != 0), organ_labels[0], tissue)
        dtype = np.result_type(whole.array.dtype, edited.array.dtype)
        return whole.with_array(np.where(edited.array != 0, edited.array, tissue).astype(dtype))
    if transplant is None and not np.any(lesion.array):
        raise InputError(f"{names['lesion']}: is empty (every voxel is 0), so there is nothing to edit")
    edits: list[LesionEdit] = []
    if transplant is not None:
        edits.append(Transplant(transplant, centre, unit, name=names["donor"]))
    if mirror:
        edits.append(Mirror(organ, name=names["organ"]))
    if scale is not None:
        edits.append(Scale(scale))
    if translate is not None:
        edits.append(Translate(translate, unit))
    if organ is not None:
        _check_labelmap(organ, names["organ"])
        edits.append(ClipToMask(organ, name=names["organ"]))
    edited = ComposeEdits(edits)(lesion)
    if not np.any(edited.array):
        where = f"outside {names['organ']}" if organ is not None else "outside the image"
        raise InputError(f"{names['lesion']}: after the edits no lesion voxel is left (it lies entirely {where})")
    return edited


def _organ_labels(labels: Sequence[int] | int) -> tuple[int, ...]:
    values = (labels,) if isinstance(labels, (int, np.integer)) else tuple(labels)
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise InputError(f"organ labels must be positive integers (0 is background); got {list(values)}")
    return tuple(int(value) for value in values)


def _lesion_part(volume: Volume, organ_labels: tuple[int, ...]) -> Volume:
    """The lesion labels of a combined organ-and-lesion map: its normal-tissue labels set to 0."""
    return volume.with_array(np.where(np.isin(volume.array, organ_labels), 0, volume.array).astype(volume.array.dtype))


def left_right_axis(volume: Volume) -> int:
    """The grid axis whose direction is closest to the patient's left-right (LPS x) axis."""
    return int(np.argmax(np.abs(volume.direction[0])))


def _check_unit(unit: str) -> str:
    if unit not in UNITS:
        raise InputError(f"unit {unit!r}: use one of {', '.join(UNITS)}")
    return unit


def _check_labelmap(volume: Volume, name: str) -> None:
    """A labelmap here is one integer value per voxel (masks read from float files are fine if whole)."""
    if volume.array.ndim != volume.ndim:
        raise InputError(f"{name}: has several components per voxel; a labelmap has one")
    array = volume.array
    if np.issubdtype(array.dtype, np.floating) and not np.array_equal(array, np.rint(array)):
        raise InputError(f"{name}: holds non-integer values, so it is not a labelmap (an intensity image?)")


def _check_same_grid(volume: Volume, lesion: Volume, name: str) -> None:
    if not volume.same_grid(lesion):
        shapes = " vs ".join("x".join(map(str, v.array.shape[: v.ndim])) for v in (volume, lesion))
        raise InputError(
            f"{name}: is not on the lesion's grid (shape {shapes}; shape, spacing, origin and direction must all "
            "match; resample it onto the lesion's image first)"
        )


def _values(volume: Volume, values: Sequence[float], what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.shape != (volume.ndim,) or not np.all(np.isfinite(array)):
        given = ", ".join(f"{value:g}" for value in array.ravel())
        raise InputError(f"{what} ({given}): needs {volume.ndim} finite values, one per grid axis")
    return array


def _index_steps(volume: Volume, displacement: np.ndarray) -> np.ndarray:
    """A physical (LPS mm) displacement as real-valued index steps: it equals direction @ (spacing * steps)."""
    return np.linalg.solve(volume.direction @ np.diag(volume.spacing), displacement)


def _index_vector(volume: Volume, vector: Sequence[float], unit: str, what: str) -> np.ndarray:
    """A displacement in ``unit`` as (real-valued) array index steps."""
    vector = _values(volume, vector, what)
    return vector if unit == "voxel" else _index_steps(volume, vector)


def _index_point(volume: Volume, point: Sequence[float], unit: str, what: str) -> np.ndarray:
    """A position in ``unit`` as a (real-valued) array index."""
    point = _values(volume, point, what)
    return point if unit == "voxel" else _index_steps(volume, point - np.asarray(volume.origin))


def _round_half_up(values: np.ndarray | float) -> np.ndarray:
    """Nearest integers, halves rounded up: NumPy's half-to-even would make 2.5 and 3.5 move alike."""
    return np.floor(np.asarray(values, dtype=float) + 0.5).astype(int)


def _shift(array: np.ndarray, steps: Sequence[int]) -> np.ndarray:
    """``array`` moved by whole index ``steps`` per axis, zero-filled, without wrapping around."""
    shifted = np.zeros_like(array)
    target, source = [], []
    for size, step in zip(array.shape, steps):
        step = int(step)
        if abs(step) >= size:
            return shifted
        target.append(slice(max(step, 0), size + min(step, 0)))
        source.append(slice(max(-step, 0), size - max(step, 0)))
    shifted[tuple(target)] = array[tuple(source)]
    return shifted
