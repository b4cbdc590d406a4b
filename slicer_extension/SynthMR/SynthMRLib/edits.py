"""The lesion edits of one run, as the module collects them and as ``synthmr lesion`` takes them.

The edits themselves live in ``synthmr.transforms.lesion`` (shared with the command line); the module runs them in
the separate process ``synthmr lesion`` so that Slicer never imports PyTorch and MONAI and never freezes. Positions
and offsets are passed in voxels: the module converts RAS millimetres with the reference's IJK-to-RAS matrix
(:mod:`SynthMRLib.geometry`), and Slicer's IJK is the array index ``synthmr`` uses.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from SynthMRLib.bundles import tool_description_module
from SynthMRLib.errors import SynthMRError

if TYPE_CHECKING:  # annotations only: the reader is loaded at run time (SynthMRLib.bundles)
    from synthmr.bundle.description import ToolDescription


@dataclass(frozen=True)
class LesionEditRequest:
    """Which lesion edits to apply, in voxel units (IJK); applied as transplant, mirror, scale, translate, then
    clipped to the bundle's organ mask.

    Args:
        translate: IJK offset, or None.
        scale: factor about the lesion's centroid, or None.
        mirror: mirror left-right about the organ's mid-sagittal plane (the image's without an organ mask).
        transplant: labelmap file of another case's lesion on the reference grid, or None.
        centre: IJK index where the transplanted lesion's centroid goes; None keeps it where it is.
    """

    translate: tuple[float, float, float] | None = None
    scale: float | None = None
    mirror: bool = False
    transplant: Path | None = None
    centre: tuple[float, float, float] | None = None

    @property
    def requested(self) -> tuple[str, ...]:
        """The names of the edits asked for, in the order of the tool description's ``LESION_EDITS``."""
        asked = {
            "translate": self.translate is not None,
            "scale": self.scale is not None,
            "mirror": self.mirror,
            "transplant": self.transplant is not None,
        }
        return tuple(name for name in tool_description_module().LESION_EDITS if asked[name])

    def check(self, description: ToolDescription, has_lesion: bool) -> None:
        """Refuse edits the bundle does not support, values that cannot work, and edits without a lesion.

        Args:
            description: the bundle's tool description.
            has_lesion: whether the user gave the bundle's lesion input.
        """
        unsupported = [name for name in self.requested if name not in description.lesion_edits]
        if unsupported:
            supported = ", ".join(description.lesion_edits) or "none"
            raise SynthMRError(
                f"bundle {description.name}: does not support the lesion edit(s) {', '.join(unsupported)} "
                f"(it supports: {supported})"
            )
        if self.centre is not None and self.transplant is None:
            raise SynthMRError("transplant centre: places a transplanted lesion; choose the lesion to transplant too")
        if self.scale is not None and not (math.isfinite(self.scale) and self.scale > 0):
            raise SynthMRError(f"scale factor {self.scale:g}: must be a positive number")
        for name, values in (("translation", self.translate), ("transplant centre", self.centre)):
            if values is not None and (len(values) != 3 or not all(map(math.isfinite, values))):
                raise SynthMRError(f"{name} {values}: needs three finite values (I, J, K)")
        if self.requested and self.transplant is None and not has_lesion:
            raise SynthMRError(
                f"lesion edits: choose the lesion input {description.lesion!r} to edit (or transplant another lesion)"
            )

    def arguments(self) -> list[str]:
        """The ``synthmr lesion`` flags for these edits (without ``--lesion``, ``--organ`` and ``--out``)."""
        arguments = ["--unit", "voxel"]
        # --flag=value: fire would read a value starting with "-" as another flag.
        if self.transplant is not None:
            arguments.append(f"--transplant={os.fspath(self.transplant)}")
            if self.centre is not None:
                arguments.append(f"--centre={_numbers(self.centre)}")
        if self.mirror:
            arguments.append("--mirror")
        if self.scale is not None:
            arguments.append(f"--scale={self.scale!r}")
        if self.translate is not None:
            arguments.append(f"--translate={_numbers(self.translate)}")
        return arguments


def _numbers(values: Sequence[float]) -> str:
    return ",".join(repr(float(value)) for value in values)
