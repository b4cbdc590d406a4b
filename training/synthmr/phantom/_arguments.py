"""Checks of the phantoms' constructor arguments: a bad value is an InputError naming the argument and its range."""

from __future__ import annotations

import math
import numbers

from synthmr.errors import InputError

# Largest in-plane matrix: 1024 puts a 358 mm breast field of view on 0.35 mm pixels, finer than clinical MRI.
MAX_SIZE = 1024
# Largest grid of one case. Drawing a case holds 200-500 bytes of working arrays per voxel (measured on the 3D
# defaults of the three organs), so 2**24 voxels (e.g. 512 x 512 x 64) already take several GB; a larger grid would
# end in a MemoryError rather than a case.
MAX_VOXELS = 2**24


def integer(value, name: str, low: int, high: int | None = None) -> int:
    """``value`` as an int in [low, high], or an InputError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or (
        high is not None and value > high
    ):
        bounds = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise InputError(f"{name} must be {bounds}, got {value!r}")
    return int(value)


def number(value, name: str, low: float, high: float = math.inf, low_open: bool = False) -> float:
    """``value`` as a finite float in [low, high] (low excluded when ``low_open``), or an InputError naming
    ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if value < low or value > high or (low_open and value == low):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        bounds = f"{'>' if low_open else '>='} {low:g}" if high == math.inf else f"in {interval}"
        raise InputError(f"{name} must be {bounds}, got {value!r}")
    return float(value)


def check_voxels(shape: tuple[int, ...], names: str) -> None:
    """Refuse a grid of more than :data:`MAX_VOXELS` voxels; ``names`` says which arguments set ``shape``."""
    voxels = math.prod(shape)
    if voxels > MAX_VOXELS:
        raise InputError(
            f"{names} = {' x '.join(map(str, shape))} = {voxels} voxels: at most {MAX_VOXELS} (2**24) are drawn, "
            "more would exhaust memory; lower them"
        )
