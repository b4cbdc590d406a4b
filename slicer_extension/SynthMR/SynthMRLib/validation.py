"""Checking the scene inputs the user picked against a bundle's tool description, before anything is written or run.

The runner checks the files again, but its messages name temporary files; these name the scene nodes the user
picked, so a wrong choice is reported in the user's terms. The checks are the runner's (``synthmr run``): every
required role given and no unknown one, every input on the reference's grid, volumes with finite values and one
component, labelmaps holding only whole values, only the bundle's declared labels and, when required, not empty.

Segmentations have no grid of their own here: the module exports them onto the reference grid, with the label value
of each segment chosen by :func:`segment_label_values`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np

from SynthMRLib.errors import SynthMRError
from SynthMRLib.geometry import check_matrix, spacing

if TYPE_CHECKING:  # annotations only: the reader is loaded at run time (SynthMRLib.bundles)
    from synthmr.bundle.description import InputRole, ToolDescription

# Grids closer than this (mm, per matrix entry) are the same grid: files store positions as 32-bit floats.
GRID_TOLERANCE_MM = 1e-3
_MAX_LISTED_VALUES = 10


@dataclass
class SceneInput:
    """One input as taken from the scene: voxels and their grid.

    Args:
        name: the scene node's name, as the user knows it.
        array: voxels in ``(K, J, I)`` order (``slicer.util.arrayFromVolume``), with a trailing component axis for
            vector volumes.
        ijk_to_ras: the node's 4x4 IJK-to-RAS matrix.
    """

    name: str
    array: np.ndarray
    ijk_to_ras: np.ndarray


def check_inputs(description: ToolDescription, inputs: Mapping[str, SceneInput]) -> None:
    """Check the picked inputs as ``synthmr run`` checks files: roles, grids, values (module docstring).

    Raises:
        SynthMRError: the first problem found, naming the role and the node.
    """
    check_roles(description, inputs)
    reference = inputs[description.reference]
    for name, scene_input in inputs.items():
        role = description.inputs[name]
        what = f"input {name!r} ({scene_input.name})"
        if scene_input.array.ndim != 3:
            components = int(np.prod(scene_input.array.shape[3:]))
            raise SynthMRError(f"{what}: has {components} components per voxel; a single-component volume is needed")
        if name != description.reference:
            difference = grid_difference(scene_input, reference)
            if difference:
                raise SynthMRError(
                    f"{what}: is not on the grid of the reference input {description.reference!r} ({reference.name}): "
                    f"{difference}; resample it onto the reference first (e.g. with the Resample Scalar/Vector/DWI "
                    "Volume module)"
                )
        if role.kind == "volume":
            bad = _count_nonfinite(scene_input.array)
            if bad:
                raise SynthMRError(f"{what}: {bad} voxels are NaN or infinite")
        else:
            check_labelmap(description, role, scene_input)


def check_roles(description: ToolDescription, inputs: Mapping[str, object]) -> None:
    """Every required input role given, and no role the bundle does not have."""
    summary = ", ".join(
        f"{name} ({role.description}{'' if role.required else ', optional'})" for name, role in description.inputs.items()
    )
    unknown = [name for name in inputs if name not in description.inputs]
    if unknown:
        raise SynthMRError(
            f"bundle {description.name}: has no input role(s) {', '.join(map(repr, unknown))}; its inputs: {summary}"
        )
    missing = [name for name, role in description.inputs.items() if role.required and name not in inputs]
    if missing:
        names = ", ".join(map(repr, missing))
        raise SynthMRError(f"bundle {description.name}: choose the required input(s) {names}; its inputs: {summary}")


def grid_difference(volume: SceneInput, reference: SceneInput) -> str:
    """How two grids differ (shape, spacing, position or axes, in RAS), or ``""`` when they are the same grid."""

    def numbers(values: Sequence[float]) -> str:
        return "x".join(f"{value:g}" for value in values)

    shape, reference_shape = volume.array.shape[:3][::-1], reference.array.shape[:3][::-1]  # as I x J x K
    matrix, reference_matrix = check_matrix(volume.ijk_to_ras), check_matrix(reference.ijk_to_ras)
    parts = []
    if shape != reference_shape:
        parts.append(f"size {numbers(shape)} vs {numbers(reference_shape)} voxels")
    if not np.allclose(spacing(matrix), spacing(reference_matrix), atol=GRID_TOLERANCE_MM):
        parts.append(f"spacing {numbers(spacing(matrix))} vs {numbers(spacing(reference_matrix))} mm")
    if not np.allclose(matrix[:3, 3], reference_matrix[:3, 3], atol=GRID_TOLERANCE_MM):
        parts.append(f"origin {numbers(matrix[:3, 3])} vs {numbers(reference_matrix[:3, 3])} mm (RAS)")
    if not parts and not np.allclose(matrix, reference_matrix, atol=GRID_TOLERANCE_MM):
        parts.append("the axis directions differ")
    return ", ".join(parts)


def check_labelmap(description: ToolDescription, role: InputRole, scene_input: SceneInput) -> None:
    """Whole values only, only the role's declared labels, and not empty when the role is required."""
    what = f"input {role.name!r} ({scene_input.name})"
    array = scene_input.array
    if np.issubdtype(array.dtype, np.floating) and not np.array_equal(array, np.rint(array)):
        raise SynthMRError(f"{what}: holds non-integer values, so it is not a labelmap (an intensity volume?)")
    if role.labels is not None:
        values = np.unique(array)
        unexpected = values[~np.isin(values, [0, *role.labels])]
        if unexpected.size:
            raise SynthMRError(
                f"{what}: holds label value(s) {_listed(unexpected.tolist())} that bundle {description.name} does not "
                f"declare; expected {_expected(role)}"
            )
    if role.required and not array.any():
        raise SynthMRError(f"{what}: is empty (every voxel is 0); a required labelmap must mark at least one voxel")


def segment_label_values(role: InputRole, node_name: str, segment_names: Sequence[str]) -> list[int]:
    """The label value each segment of a segmentation gets when it is exported for ``role`` (in segment order).

    A role without declared labels takes the segments as 1, 2, 3, ... in their order. A role with declared labels
    takes each segment by its name (case and surrounding spaces ignored); a single segment for a single-label role
    is that label, whatever its name.

    Raises:
        SynthMRError: a segment's name matches no label, or two segments claim the same label.
    """
    if role.labels is None:
        return list(range(1, len(segment_names) + 1))
    if len(role.labels) == 1 and len(segment_names) == 1:
        return list(role.labels)
    by_name = {label.strip().lower(): value for value, label in role.labels.items()}
    values = [by_name.get(segment.strip().lower()) for segment in segment_names]
    unmatched = [segment for segment, value in zip(segment_names, values) if value is None]
    what = f"input {role.name!r} (segmentation {node_name})"
    if unmatched:
        raise SynthMRError(
            f"{what}: segment(s) {', '.join(map(repr, unmatched))} match no label of the bundle; name the segments "
            f"after its labels: {_expected(role, background=False)}"
        )
    claimed = [segment for index, segment in enumerate(segment_names) if values[index] in values[:index]]
    if claimed:
        raise SynthMRError(f"{what}: segment(s) {', '.join(map(repr, claimed))} repeat another segment's label")
    return values


def combine_segments(
    role: InputRole, node_name: str, masks: Sequence[tuple[str, np.ndarray]], values: Sequence[int]
) -> np.ndarray:
    """One labelmap from the segments' binary masks (same shape), segment ``i`` becoming ``values[i]``.

    Raises:
        SynthMRError: two segments overlap, so a voxel would need two labels.
    """
    if not masks:
        raise SynthMRError(f"input {role.name!r} (segmentation {node_name}): has no segments")
    dtype = np.uint8 if max(values) <= np.iinfo(np.uint8).max else np.uint16
    labelmap = np.zeros(masks[0][1].shape, dtype)
    for (segment, mask), value in zip(masks, values):
        inside = mask != 0
        overlap = inside & (labelmap != 0)
        if overlap.any():
            raise SynthMRError(
                f"input {role.name!r} (segmentation {node_name}): segment {segment!r} overlaps another segment in "
                f"{int(overlap.sum())} voxels; a labelmap holds one label per voxel"
            )
        labelmap[inside] = value
    return labelmap


def _expected(role: InputRole, background: bool = True) -> str:
    labels = [f"{value} ({name})" for value, name in (role.labels or {}).items()]
    return ", ".join((["0 (background)"] if background else []) + labels)


def _listed(values: list) -> str:
    shown = ", ".join(str(int(value)) for value in values[:_MAX_LISTED_VALUES])
    return shown + (f" and {len(values) - _MAX_LISTED_VALUES} more" if len(values) > _MAX_LISTED_VALUES else "")


def _count_nonfinite(array: np.ndarray) -> int:
    if not np.issubdtype(array.dtype, np.inexact):
        return 0
    return int(array.size - np.count_nonzero(np.isfinite(array)))
