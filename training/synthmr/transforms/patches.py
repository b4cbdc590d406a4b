"""Lesion-centred and healthy multi-channel axial patches from breast DCE datalists.

Haarburger et al., "Multiparametric Magnetic Resonance Image Synthesis using Generative Adversarial Networks"
(VCBM 2019), §3: 64 x 64 axial patches

1. of benign and malignant lesions, centred on the centre of mass of each lesion's segmentation;
2. of healthy tissue, centred on random points inside the breast with no finding in a 32 x 32 neighbourhood;

with one channel per contrast and time point (T2 and the T1 dynamic series: pre and every post-contrast phase), cut
at the same place in every channel so that the channels stay coherent.

Intensities: the paper rescales every image to the fixed range [0, 1023]. Rescaling each T1 phase on its own
would change the ratio between phases, i.e. the enhancement curve that tells malignant (wash-out) from benign
(persistent) lesions, so here the five T1 phases of a case share one scale: their common maximum maps to 1 and 0
to -1 (the tanh range). T2, a separate acquisition, is scaled by its own maximum.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from synthmr.errors import InputError
from synthmr.io import read_image

CLASSES = ("healthy", "benign", "malignant")
CHANNELS = ("t2", "t1_pre", "t1_post1", "t1_post2", "t1_post3", "t1_post4")
# Channels that share one intensity scale per case (the dynamic series).
T1_SERIES = ("t1_pre", "t1_post1", "t1_post2", "t1_post3", "t1_post4")


def scale_case(images: dict[str, np.ndarray], channels: Sequence[str] = CHANNELS) -> np.ndarray:
    """Stack a case's ``channels`` scaled to [-1, 1]: T1 phases on one shared scale, every other channel alone.

    Args:
        images: channel -> array (all the same shape).
        channels: the channel order.

    Returns:
        ``(len(channels), *shape)`` float32.
    """
    t1 = [name for name in channels if name in T1_SERIES]
    t1_max = max(float(np.max(images[name])) for name in t1) if t1 else 0.0
    stacked = []
    for name in channels:
        image = np.clip(np.asarray(images[name], dtype=np.float32), 0.0, None)  # magnitudes: noise below 0 clips
        peak = t1_max if name in T1_SERIES else float(image.max())
        stacked.append(2.0 * image / peak - 1.0 if peak > 0 else np.full_like(image, -1.0))
    return np.stack(stacked).astype(np.float32)


def _crop(stack: np.ndarray, centre: Sequence[int], size: int) -> np.ndarray:
    """``size`` x ``size`` window of ``stack`` ``(C, X, Y)`` centred on ``centre``, padded with -1 (no signal)."""
    half = size // 2
    out = np.full((stack.shape[0], size, size), -1.0, dtype=np.float32)
    x0, y0 = int(centre[0]) - half, int(centre[1]) - half
    xs, ys = max(x0, 0), max(y0, 0)
    xe, ye = min(x0 + size, stack.shape[1]), min(y0 + size, stack.shape[2])
    out[:, xs - x0 : xe - x0, ys - y0 : ye - y0] = stack[:, xs:xe, ys:ye]
    return out


def _axial(array: np.ndarray, z: int | None) -> np.ndarray:
    """A 2D image as it is; a 3D volume's axial slice ``z`` (the last axis is the slice axis)."""
    if array.ndim == 2:
        return array
    if array.ndim == 3 and z is not None:
        return array[:, :, z]
    raise InputError(f"expected 2D images or 3D volumes, got an array of shape {array.shape}")


def extract_patches(
    datalist: Sequence[dict],
    size: int = 64,
    healthy_per_case: int = 2,
    neighbourhood: int = 32,
    channels: Sequence[str] = CHANNELS,
    seed: int = 0,
) -> list[dict]:
    """Patches of every lesion and ``healthy_per_case`` healthy patches of every case.

    Args:
        datalist: items with a path per channel, ``lesion`` (one label per lesion, 1..k), ``breast`` (mask) and
            ``lesion_classes`` (k names, "benign" or "malignant", for labels 1..k), as the breast phantom writes
            them. 2D images, or 3D volumes (then the axial slice through each lesion's centre of mass, and for
            healthy patches a random slice holding breast).
        size: patch side in pixels.
        healthy_per_case: healthy patches drawn per case (fewer when the breast has no room for them).
        neighbourhood: side of the square around a healthy centre that must hold no lesion pixel.
        channels: image keys, in channel order.
        seed: of the healthy centres.

    Returns:
        one ``{"image": (len(channels), size, size) float32 in [-1, 1], "label": class index into CLASSES,
        "case_id": str}`` per patch.

    Raises:
        InputError: an item lacks a key, or its lesion classes do not match its lesion labels.
    """
    rng = np.random.default_rng(seed)
    patches: list[dict] = []
    for index, item in enumerate(datalist):
        case_id = str(item.get("case_id", index))
        missing = [key for key in (*channels, "lesion", "breast", "lesion_classes") if key not in item]
        if missing:
            raise InputError(f"datalist item {case_id}: lacks {', '.join(missing)} (needed for patch extraction)")
        images = {name: read_image(item[name]).array for name in channels}
        lesion = np.rint(read_image(item["lesion"]).array).astype(np.int64)
        breast = read_image(item["breast"]).array > 0
        classes = list(item["lesion_classes"])
        labels = [value for value in np.unique(lesion) if value > 0]
        if labels != list(range(1, len(classes) + 1)):
            raise InputError(
                f"datalist item {case_id}: lesion labels {labels} do not match its {len(classes)} lesion_classes"
            )
        unknown = sorted(set(classes) - set(CLASSES[1:]))
        if unknown:
            raise InputError(f"datalist item {case_id}: unknown lesion class(es) {unknown}; use benign or malignant")
        for value, name in enumerate(classes, start=1):
            centre = np.rint(np.argwhere(lesion == value).mean(axis=0)).astype(int)
            z = int(centre[2]) if lesion.ndim == 3 else None
            stack = scale_case({key: _axial(image, z) for key, image in images.items()}, channels)
            patches.append({"image": _crop(stack, centre[:2], size), "label": CLASSES.index(name), "case_id": case_id})
        patches += _healthy(images, lesion, breast, size, healthy_per_case, neighbourhood, channels, rng, case_id)
    return patches


def _healthy(images, lesion, breast, size, count, neighbourhood, channels, rng, case_id) -> list[dict]:
    """Healthy patches: centres inside the breast, the whole patch inside the image, no lesion nearby."""
    from scipy.ndimage import maximum_filter

    found = []
    for _ in range(count):
        z = None
        if lesion.ndim == 3:
            slices = np.flatnonzero(breast.any(axis=(0, 1)))
            if not len(slices):
                break
            z = int(rng.choice(slices))
        near_lesion = maximum_filter(_axial(lesion, z) > 0, size=neighbourhood, mode="constant")
        allowed = _axial(breast, z) & ~near_lesion
        half = size // 2
        border = np.zeros_like(allowed)
        border[half : allowed.shape[0] - half + 1, half : allowed.shape[1] - half + 1] = True
        candidates = np.argwhere(allowed & border)
        if not len(candidates):
            break
        centre = candidates[rng.integers(len(candidates))]
        stack = scale_case({key: _axial(image, z) for key, image in images.items()}, channels)
        found.append({"image": _crop(stack, centre, size), "label": CLASSES.index("healthy"), "case_id": case_id})
    return found


def central_washout(
    patches: np.ndarray, radius: int = 2, early: int = 2, late: int = 5, drop: float = 0.1
) -> np.ndarray:
    """Whether the centre of each patch washes out from the early to the late post-contrast phase.

    The kinetic curve types of the BI-RADS MRI lexicon: the delayed phase "washes out" when its signal falls by
    more than 10 % below the early post-contrast signal (within +-10 %: plateau; above: persistent). Malignant
    lesions typically wash out, benign ones persist. The signal is the mean over the central
    ``(2 radius + 1)^2`` window, on the magnitude scale (the patches' [-1, 1] mapped to [0, 1], 0 = no signal).

    Args:
        patches: ``(N, C, H, W)`` patches in [-1, 1], in :data:`CHANNELS` order by default.
        radius: half side of the central window.
        early, late: channel indices of the first and the last post-contrast phase.
        drop: the relative decrease that counts as wash-out.

    Returns:
        ``(N,)`` bool.
    """
    patches = np.asarray(patches)
    h, w = patches.shape[-2] // 2, patches.shape[-1] // 2
    centre = (patches[:, :, h - radius : h + radius + 1, w - radius : w + radius + 1].mean(axis=(2, 3)) + 1) / 2
    return centre[:, late] < (1 - drop) * centre[:, early]
