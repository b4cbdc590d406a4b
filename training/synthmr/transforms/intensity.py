"""Per-image robust intensity scaling to the generator range [-1, 1], with its exact inverse (docs/design.md,
*Data conventions*).

MR intensities have no absolute unit, so each case is scaled by its own robust range: the 0.5th and 99.5th
percentiles of its foreground (voxels brighter than 5% of the 99th percentile, i.e. the body without the air
around it) map to -1 and to ``-1 + 2 / headroom``. Where tissue is darker than that threshold (fat-suppressed
images), ``low_over="image"`` takes the low end over the whole image instead (the noise floor of the air), so
that dark tissue is not clipped to -1 and a generator can still write it. ``headroom`` leaves room above the
source's bright end for a target that is brighter than its source on the same receiver scale (contrast
enhancement: a post-contrast image can exceed the pre-contrast 99.5th percentile several times over, so a bundle
picks a headroom that covers its enhancement). Targets are scaled with the *source's* mapping, never their own,
so that the generator learns the enhancement ratio and its output can be mapped back to the source's units.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from synthmr.errors import InputError

PERCENTILES = (0.5, 99.5)
LowOver = Literal["foreground", "image"]
# Air is darker than this fraction of the 99th percentile (noise floor of magnitude images is a few per cent).
FOREGROUND_FRACTION = 0.05


def check_low_over(low_over: str) -> None:
    """Refuse a ``low_over`` other than ``"foreground"`` or ``"image"`` (see :class:`IntensityScaling`)."""
    if low_over not in ("foreground", "image"):
        raise InputError(f"low_over must be 'foreground' or 'image'; got {low_over!r}")


def foreground(array: np.ndarray) -> np.ndarray:
    """Boolean mask of the voxels brighter than 5% of the image's 99th percentile."""
    return array > FOREGROUND_FRACTION * np.percentile(array, 99)


@dataclass(frozen=True)
class IntensityScaling:
    """The affine map between an image's intensities and the generator range.

    ``low`` maps to -1 and ``high`` to ``-1 + 2 / headroom``; :meth:`inverse` undoes :meth:`forward` exactly.
    """

    low: float
    high: float
    headroom: float = 1.0

    @classmethod
    def fit(
        cls,
        array,
        headroom: float = 1.0,
        percentiles: Sequence[float] = PERCENTILES,
        name: str = "image",
        low_over: LowOver = "foreground",
    ) -> "IntensityScaling":
        """The scaling of ``array`` from the percentiles of its foreground (the low percentile over the whole image
        with ``low_over="image"``).

        Raises:
            InputError: ``name`` is constant or has no foreground (nothing to scale by); ``low_over`` is unknown.
        """
        check_low_over(low_over)
        values = np.asarray(array, dtype=np.float32)
        inside = values[foreground(values)]
        if inside.size == 0:
            raise InputError(f"{name} has no foreground (all voxels near zero): nothing to synthesise from")
        low, high = (float(v) for v in np.percentile(inside, percentiles))
        if low_over == "image":
            low = float(np.percentile(values, percentiles[0]))
        if high <= low:
            raise InputError(f"{name} is constant inside its foreground ({low:g}): nothing to synthesise from")
        if headroom < 1:
            raise InputError(f"headroom must be >= 1, got {headroom}")
        return cls(low, high, float(headroom))

    @property
    def scale(self) -> float:
        return 2.0 / (self.headroom * (self.high - self.low))

    def forward(self, array):
        """Image intensities -> generator range (not clipped)."""
        return (array - self.low) * self.scale - 1.0

    def inverse(self, array):
        """Generator range -> image intensities."""
        return (array + 1.0) / self.scale + self.low

    def as_tensor(self) -> torch.Tensor:
        return torch.tensor([self.low, self.high, self.headroom], dtype=torch.float64)


class RobustScaled(MapTransform):
    """Scale ``keys`` to [-1, 1] with the :class:`IntensityScaling` fitted on ``reference_key``, clipped.

    The fitted ``(low, high, headroom)`` is stored under ``"<reference_key>_scaling"`` so that outputs can be
    mapped back. With ``reference_key=None`` every key is scaled by its own range.

    Args:
        keys: images to scale (channel-first tensors or arrays).
        reference_key: the image whose range scales all keys (the generator's input), or None.
        headroom, low_over: see :class:`IntensityScaling`.
        percentiles: the robust range.
    """

    def __init__(
        self,
        keys: KeysCollection,
        reference_key: str | None = None,
        headroom: float = 1.0,
        percentiles: Sequence[float] = PERCENTILES,
        allow_missing_keys: bool = False,
        low_over: LowOver = "foreground",
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        check_low_over(low_over)
        self.reference_key = reference_key
        self.headroom = headroom
        self.percentiles = tuple(percentiles)
        self.low_over = low_over

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        shared = None
        if self.reference_key is not None:
            shared = self._fit(d[self.reference_key], self.reference_key)
            d[f"{self.reference_key}_scaling"] = shared.as_tensor()
        for key in self.key_iterator(d):
            scaling = shared or self._fit(d[key], key)
            d[key] = _clip(scaling.forward(_float(d[key])))
        return d

    def _fit(self, image, key) -> IntensityScaling:
        return IntensityScaling.fit(_numpy(image), self.headroom, self.percentiles, str(key), self.low_over)


def _float(image):
    return image.float() if torch.is_tensor(image) else np.asarray(image, dtype=np.float32)


def _numpy(image) -> np.ndarray:
    return image.detach().cpu().numpy() if torch.is_tensor(image) else np.asarray(image)


def _clip(image):
    return image.clamp(-1.0, 1.0) if torch.is_tensor(image) else np.clip(image, -1.0, 1.0)
