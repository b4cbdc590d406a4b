"""Sampling 2D training slices from 2D images or 3D volumes, so 2D methods train on either."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable

from synthmr.transforms.intensity import foreground

# A slice is worth training on when at least this share of its pixels is foreground (not air).
MIN_FOREGROUND_SHARE = 0.01


class RandForegroundSliced(Randomizable, MapTransform):
    """Pick one random axial slice (last array axis) with foreground from channel-first 3D images.

    All ``keys`` get the same slice index, drawn among the slices of ``reference_key`` where at least 1% of the
    pixels are foreground (:func:`~synthmr.transforms.intensity.foreground`); a volume with no such slice falls
    back to all slices. Channel-first 2D images ``(C, H, W)`` pass through unchanged, as do one-slice volumes
    (their slice axis is dropped).

    Args:
        keys: images to slice, ``(C, H, W, D)`` or ``(C, H, W)``.
        reference_key: the image whose foreground decides which slices qualify.
    """

    def __init__(self, keys: KeysCollection, reference_key: str, allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.reference_key = reference_key
        self._index = 0

    def randomize(self, candidates: np.ndarray) -> None:
        self._index = int(self.R.choice(candidates))

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        reference = d[self.reference_key]
        if reference.ndim == 3:
            return d
        array = reference[0].detach().cpu().numpy() if torch.is_tensor(reference) else np.asarray(reference[0])
        share = foreground(array).mean(axis=(0, 1))
        candidates = np.flatnonzero(share >= MIN_FOREGROUND_SHARE)
        self.randomize(candidates if candidates.size else np.arange(array.shape[-1]))
        for key in self.key_iterator(d):
            d[key] = d[key][..., self._index]
        return d
