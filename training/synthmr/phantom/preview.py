"""A PNG montage of phantom cases: one row per case, one column per sequence, lesion outlines on top."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from synthmr.phantom.case import PhantomCase  # noqa: E402

# APTw is an asymmetry map in percent: clinical viewers show it in colour on a fixed symmetric window.
_COLOUR_MAPS = {"aptw": ("inferno", (-5.0, 5.0))}


def radiological_axial(case: PhantomCase, key: str, z: int | None = None) -> np.ndarray:
    """An axial slice of ``key`` as displayed in radiology: anterior up, patient right on the left.

    Arrays are first reoriented to LPS (x to the patient's left, y posterior, z superior) whatever their
    direction matrix, so the picture is right for every grid. ``z`` indexes the reoriented volume.
    """
    volume = case.volume(key)
    if volume.ndim == 3:
        image = sitk.DICOMOrient(volume.to_sitk(), "LPS")
        array = np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0))
        array = array[:, :, array.shape[2] // 2 if z is None else z]
    else:
        flips = [axis for axis in range(2) if volume.direction[axis, axis] < 0]
        array = np.flip(volume.array, flips) if flips else volume.array
    return array.T  # rows = y (anterior at the top), columns = x (patient right at the left)


def _lesion_slice(case: PhantomCase, lesion_mask: str) -> int | None:
    """Index of the reoriented axial slice with the most lesion voxels (None for 2D cases)."""
    if len(case.spacing) == 2:
        return None
    lps = sitk.GetArrayFromImage(sitk.DICOMOrient(case.volume(lesion_mask).to_sitk(), "LPS"))  # (z, y, x)
    area = (lps > 0).sum(axis=(1, 2))
    return int(area.argmax()) if area.any() else lps.shape[0] // 2


def write_preview(cases: list[PhantomCase], path: str | Path, lesion_mask: str) -> Path:
    """Write a montage of ``cases`` to ``path`` (PNG) with the outline of each label of ``lesion_mask``."""
    keys = list(cases[0].images)
    fig, axes = plt.subplots(
        len(cases), len(keys), figsize=(2.2 * len(keys), 2.3 * len(cases)), squeeze=False, facecolor="black"
    )
    for row, case in enumerate(cases):
        z = _lesion_slice(case, lesion_mask)
        labels = radiological_axial(case, lesion_mask, z)
        for col, key in enumerate(keys):
            ax = axes[row, col]
            image = radiological_axial(case, key, z)
            cmap, window = _COLOUR_MAPS.get(key, ("gray", tuple(np.percentile(image, [1, 99.5]))))
            ax.imshow(image, cmap=cmap, vmin=window[0], vmax=window[1], interpolation="nearest")
            for value in np.unique(labels[labels > 0]):
                ax.contour(labels == value, levels=[0.5], colors=[plt.cm.tab10(int(value) % 10)], linewidths=0.7)
            ax.set_axis_off()
            if row == 0:
                ax.set_title(key, color="white", fontsize=9)
    fig.tight_layout(pad=0.3)
    path = Path(path)
    fig.savefig(path, dpi=100, facecolor="black")
    plt.close(fig)
    return path
