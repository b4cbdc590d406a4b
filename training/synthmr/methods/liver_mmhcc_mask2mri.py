"""Mask-guided liver multiparametric MRI generation: the method of bundle ``liver_mmhcc_mask2mri``.

"Mask-guided Data Augmentation for Multiparametric MRI Generation with a Rare Hepatocellular Carcinoma",
arXiv 2307.16314. Stage 1 makes one conditioning image per sequence: the Canny edges of the real image with a
tumour mask laid on top; for new cases the tumour mask is first augmented (zoom, rotation, flip, translation) and
intersected with the liver mask, so the tumour moves while the anatomy stays. Stage 2 is one Pix2Pix generator per
sequence (T1-FS arterial ``t1fs_arterial``, T1-FS portal ``t1fs_portal``, T2 ``t2``), each turning its
conditioning image into its sequence; the three ship as one network, :class:`synthmr.nets.ChannelwiseGenerators`,
with conditioning channel ``i`` and output channel ``i`` both sequence ``SEQUENCES[i]``. This module holds stage 1
and stage 2's training pairs and checkpoint selection (decisions 6-8, after stage 1); the networks, losses and
schedule are in the bundle's configs.

Decisions where the paper leaves room (each is the default below):

1. **Conditioning image** of sequence ``p``, one channel: background -1, Canny edges of image ``p`` 0, tumour +1
   (the tumour mask filled on top of the edges: the paper's overlay of ``I_ms`` on ``E_mp``). Three values rather
   than the paper's one white, so that dense edges never read as tumour.
2. **Edge erasure.** Edges inside the *source* tumour dilated by ``EDGE_MARGIN`` pixels are erased before the
   overlay, in training and at generation alike, so that a moved tumour leaves no outline at its old place (the
   generator would redraw the tumour there). Edges outside the liver are kept: they carry the anatomy. The overlay
   clears the same margin around the tumour it lays down: in training that band is already free of edges
   (source and overlaid tumour are the same), so at generation every tumour also arrives with the edge-free band
   the generator saw around every tumour during training.
3. **Canny** (SimpleITK's ``CannyEdgeDetection``, in pixel units) runs on the image scaled to 0-255 by its 0.5
   and 99.5 percentiles (clipped). Sigma and the low and high hysteresis thresholds (on the gradient magnitude of
   the 0-255 image) are drawn per call and per sequence from ranges (:data:`CANNY_RANGES`, training: the paper's
   several contour images per MRI); numbers instead of ranges fix them (:data:`CANNY_FIXED`, generation). Stage 1
   runs at inference, so it uses the core dependencies only (SimpleITK, not scikit-image or scipy).
4. **Tumour-mask augmentation** on the label map, nearest neighbour (labels kept): zoom 0.75-1.25, rotation
   +-30 degrees, left-right flip with probability 0.5, translation up to +-20 mm per axis (converted to pixels
   with the slice's spacing), then intersection with the liver mask. Zoom, rotation and flip act about the
   tumour's centroid and only the translation moves it: about the image centre a 30 degree rotation moves a
   tumour 80 mm off-centre by 41 mm and a flip sends a right-lobe tumour into the spleen, so most draws would
   leave the liver and the redraws would decide the distribution. A draw that leaves nothing inside the liver is
   redrawn, up to ``max_tries`` times, then :class:`~synthmr.errors.InputError` names the case.
5. **Training pairs** use the case's own tumour mask, not augmented (the target image shows that tumour); only
   the Canny parameters vary (:func:`training_conditions`). **Generation** uses augmented masks and fixed Canny
   parameters (:func:`generation_conditions`, :func:`draw_conditions`).

Data: one axial 2D slice per case, channel first ``(1, H, W)`` in ITK index order ``(x, y)`` as MONAI's
``LoadImaged(ensure_channel_first=True)`` gives it (array axis 0 is left-right), under the keys of
docs/design.md, *Data conventions*: ``t1fs_arterial``, ``t1fs_portal``, ``t2``, ``liver`` (mask) and ``tumor``
(label map, non-zero is tumour). :func:`draw_conditions` also takes a datalist item (paths) or ``(H, W)`` arrays.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import (
    Affine,
    Compose,
    ConcatItemsd,
    DeleteItemsd,
    LoadImaged,
    MapTransform,
    Randomizable,
    ScaleIntensityRangePercentiles,
)
from monai.transforms.utils import create_rotate, create_scale, create_translate
from monai.utils import convert_to_dst_type, convert_to_numpy

from synthmr.engines.selection import PooledKidSelection as SharedPooledKidSelection
from synthmr.errors import InputError, config_bool

SEQUENCES = ("t1fs_arterial", "t1fs_portal", "t2")
TUMOR = "tumor"
LIVER = "liver"
INPUT_KEY = "image"  # the stacked conditioning images: the network's input (network_data_format inputs.image)

BACKGROUND, EDGE, TUMOUR = -1.0, 0.0, 1.0
EDGE_MARGIN = 2  # pixels of edges erased around a tumour
PERCENTILES = (0.5, 99.5)  # the image range mapped to 0-255 before Canny

# Measured with SimpleITK's Canny (CannyEdgeDetection through CannyEdgesd: spacing 1 so that sigma is in pixels,
# variance sigma**2, maximum error 0.01) on phantom liver cases: 2D, sizes 128 and 256 (384 mm field of view),
# subtypes hcc and mmhcc, seeds 0-5 (24 cases). Per sequence, on the edge maps with the source tumour erased:
# recall of the liver outline (share of its pixels, away from the tumour, within 2 pixels of an edge) and noise
# (share of liver-interior pixels, 3 pixels in from the outline and away from tumour and vessels, marked as edges).
# ITK thresholds its own gradient estimate of the smoothed image (central differences), about an eighth of the
# Sobel magnitude that scikit-image's canny (used before) thresholds: the last upper threshold that still finds a
# step of 100 at sigma 1.5 is 25 here and 191.5 there. The ranges first proposed for scikit-image (sigma 1-2, low
# 20-40, high 60-100 on its scale; 2.5-5 and 7.5-12.5 here) leave T2 almost without edges: its brightest
# structures (fluid, spleen) set the 99.5 percentile, so the liver and body outlines are weak on the 0-255 scale
# (T2 liver outline recall 0.33 here, 0.15 at sigma 2 / 5 / 12.5). Sigma 1.0 with thresholds 1.25 / 3.75 marks
# Rician noise in the liver and the suppressed fat (interior noise 0.22-0.40). Chosen (the ranges: 40 draws per
# case, two draw seeds; in brackets scikit-image's former choice, sigma 1.25-1.75, low 15-20, high 35-50, fixed
# 1.5 / 15 / 40, measured the same way):
#
#            liver outline recall                interior noise
#            T1      T2          T2 worst tenth  pooled     largest (interiors of >= 200 pixels)
#   ranges   0.88    0.67-0.69   0.42-0.44       <= 0.0006  0.029      [0.86  0.58  0.29  <= 0.0009  0.042]
#   fixed    0.91    0.72        0.52            <= 0.0006  0.027      [0.87  0.68  0.44  <= 0.0012  0.036]
#
# (T1: both T1-FS phases.) Worse than scikit-image only on the smallest liver interior (a 128-pixel MMHCC case,
# 55 interior pixels): a faint edge of 4-5 pixels crosses it (noise 0.07-0.09), where scikit-image marked none.
CANNY_RANGES: dict[str, tuple[float, float]] = {
    "sigma": (1.375, 1.875),
    "low_threshold": (2.5, 3.0),
    "high_threshold": (4.0, 5.0),
}
CANNY_FIXED: dict[str, float] = {"sigma": 1.5, "low_threshold": 2.75, "high_threshold": 4.5}
CANNY_MAXIMUM_ERROR = 0.01  # of ITK's discrete Gaussian kernel (its default): sets the kernel's width

ZOOM = (0.75, 1.25)
ROTATE_DEG = 30.0
FLIP_PROB = 0.5
TRANSLATE_MM = 20.0
MAX_TRIES = 100


def edges_key(sequence: str) -> str:
    """Where the edge map of ``sequence`` goes between edge extraction and overlay."""
    return f"{sequence}_edges"


def condition_key(sequence: str) -> str:
    """Where the conditioning image of ``sequence`` goes."""
    return f"{sequence}_condition"


# ----------------------------------------------------------------------------------------------------------
# The three transforms of stage 1.
# ----------------------------------------------------------------------------------------------------------


class CannyEdgesd(Randomizable, MapTransform):
    """Canny edge map of each image, with the edges inside the dilated tumour erased (decisions 2 and 3).

    The image is scaled to 0-255 by its ``PERCENTILES`` (clipped); sigma and the thresholds are drawn per call and
    per image from their ranges, or fixed when given as numbers. Output: float32 ``(1, H, W)``, 1 on an edge.

    Args:
        keys: images, ``(1, H, W)``.
        output_keys: where each edge map goes (default ``edges_key(key)``).
        tumor_key: the source tumour label map (non-zero is tumour) whose area loses its edges.
        sigma: Gaussian smoothing of Canny, pixels: ``(min, max)`` to draw from or one number.
        low_threshold, high_threshold: hysteresis thresholds on the gradient magnitude of the smoothed 0-255 image
            as SimpleITK estimates it (central differences, per pixel; about an eighth of scikit-image's Sobel
            scale), each ``(min, max)`` or one number; every low value must be at most every high value.
        margin: the tumour is dilated by this many pixels (a disc) before its edges are erased.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_keys: Sequence[str] | None = None,
        tumor_key: str = TUMOR,
        sigma: float | Sequence[float] = CANNY_RANGES["sigma"],
        low_threshold: float | Sequence[float] = CANNY_RANGES["low_threshold"],
        high_threshold: float | Sequence[float] = CANNY_RANGES["high_threshold"],
        margin: int = EDGE_MARGIN,
    ) -> None:
        MapTransform.__init__(self, keys)
        self.output_keys = _output_keys(self.keys, output_keys, edges_key, "CannyEdgesd")
        self.tumor_key = tumor_key
        self.sigma = _range(sigma, "Canny sigma", positive=True)
        self.low = _range(low_threshold, "Canny low_threshold")
        self.high = _range(high_threshold, "Canny high_threshold")
        if self.low[1] > self.high[0]:
            raise InputError(
                f"Canny low_threshold {self.low} must stay at or below high_threshold {self.high} for every draw"
            )
        self.margin = _margin(margin)
        self.scale = ScaleIntensityRangePercentiles(*PERCENTILES, b_min=0.0, b_max=255.0, clip=True)
        self.parameters: dict[Hashable, tuple[float, float, float]] = {}

    def randomize(self, data: object = None) -> None:
        self.parameters = {
            key: (self.R.uniform(*self.sigma), self.R.uniform(*self.low), self.R.uniform(*self.high))
            for key in self.keys
        }

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        self.randomize()
        tumour = _slice(d, self.tumor_key)
        erase = _dilate(tumour != 0, self.margin)
        for key, output_key in zip(self.keys, self.output_keys):
            image = _slice(d, key, like=tumour, like_key=self.tumor_key)
            if not np.all(np.isfinite(image)):
                raise InputError(f"{_case_name(d)}: image {key!r} holds NaN or infinite values")
            sigma, low, high = self.parameters[key]
            scaled = convert_to_numpy(self.scale(image[None].astype(np.float32)))[0]
            edges = _canny(scaled, sigma, low, high) & ~erase
            d[output_key] = convert_to_dst_type(edges[None], d[key], dtype=np.float32)[0]
        return d


class OverlayTumourd(MapTransform):
    """Conditioning image from an edge map and a tumour mask: background -1, edges 0, tumour +1 (decision 1).

    Edges within ``margin`` pixels of the tumour are cleared (decision 2), so the tumour always sits in an
    edge-free band, as in training.

    Args:
        keys: edge maps, ``(1, H, W)``, non-zero on an edge.
        output_keys: where each conditioning image goes (default: in place of its edge map).
        tumor_key: the tumour label map to lay on top (non-zero is tumour).
        margin: width of the edge-free band around the tumour, pixels.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_keys: Sequence[str] | None = None,
        tumor_key: str = TUMOR,
        margin: int = EDGE_MARGIN,
    ) -> None:
        MapTransform.__init__(self, keys)
        self.output_keys = _output_keys(self.keys, output_keys, str, "OverlayTumourd")
        self.tumor_key = tumor_key
        self.margin = _margin(margin)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        tumour = _slice(d, self.tumor_key) != 0
        band = _dilate(tumour, self.margin)
        for key, output_key in zip(self.keys, self.output_keys):
            edges = _slice(d, key, like=tumour, like_key=self.tumor_key) != 0
            condition = np.full(tumour.shape, BACKGROUND, dtype=np.float32)
            condition[edges & ~band] = EDGE
            condition[tumour] = TUMOUR
            d[output_key] = convert_to_dst_type(condition[None], d[key], dtype=np.float32)[0]
        return d


class NoEdgesd(MapTransform):
    """Empty edge maps (no pixel is an edge) in place of :class:`CannyEdgesd`'s: the conditioning image is then
    the tumour mask alone, the input of the baseline without edge guidance (issue: Pix2Pix on the mask only).

    Args:
        keys: images, ``(1, H, W)``; each gives its edge map's grid.
        output_keys: where each edge map goes (default ``edges_key(key)``).
    """

    def __init__(self, keys: KeysCollection, output_keys: Sequence[str] | None = None) -> None:
        MapTransform.__init__(self, keys)
        self.output_keys = _output_keys(self.keys, output_keys, edges_key, "NoEdgesd")

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key, output_key in zip(self.keys, self.output_keys):
            blank = np.zeros_like(_slice(d, key), dtype=np.float32)
            d[output_key] = convert_to_dst_type(blank[None], d[key], dtype=np.float32)[0]
        return d


class AugmentTumourd(Randomizable, MapTransform):
    """Replace the tumour label map by a randomly zoomed, rotated, flipped and translated copy kept inside the
    liver (decision 4); redraw while nothing of it is left inside the liver.

    The label map is resampled by MONAI's :class:`~monai.transforms.Affine`, nearest neighbour, so its labels are
    kept; the new map replaces ``tumor_key`` on the same grid (a MetaTensor keeps its metadata).

    Args:
        tumor_key: the tumour label map, ``(1, H, W)``, non-zero is tumour; must not be empty.
        liver_key: the liver mask on the same grid; must not be empty.
        zoom: ``(min, max)`` factor on the tumour's size (or one number), about its centroid.
        rotate_deg: rotation drawn in ``[-rotate_deg, rotate_deg]`` degrees, about the centroid.
        flip_prob: probability of flipping the tumour left-right (array axis 0) about its centroid.
        translate_mm: shift drawn in ``[-translate_mm, translate_mm]`` mm along each axis.
        spacing: pixel spacing ``(x, y)`` in mm; None reads it from the tumour MetaTensor's ``pixdim``.
        max_tries: draws before giving up on a case.
        case_key: the key naming the case in error messages.
    """

    def __init__(
        self,
        tumor_key: str = TUMOR,
        liver_key: str = LIVER,
        zoom: float | Sequence[float] = ZOOM,
        rotate_deg: float = ROTATE_DEG,
        flip_prob: float = FLIP_PROB,
        translate_mm: float = TRANSLATE_MM,
        spacing: Sequence[float] | None = None,
        max_tries: int = MAX_TRIES,
        case_key: str = "case_id",
    ) -> None:
        MapTransform.__init__(self, [tumor_key])
        self.tumor_key, self.liver_key, self.case_key = tumor_key, liver_key, case_key
        self.zoom = _range(zoom, "tumour zoom", positive=True)
        self.rotate_deg = _non_negative(rotate_deg, "tumour rotate_deg")
        self.translate_mm = _non_negative(translate_mm, "tumour translate_mm")
        if not _is_number(flip_prob) or not 0.0 <= flip_prob <= 1.0:
            raise InputError(f"tumour flip_prob must be a probability in [0, 1]; got {flip_prob!r}")
        self.flip_prob = float(flip_prob)
        self.spacing = None if spacing is None else _spacing(spacing, "spacing")
        if isinstance(max_tries, bool) or not isinstance(max_tries, int) or max_tries < 1:
            raise InputError(f"tumour max_tries must be a positive integer; got {max_tries!r}")
        self.max_tries = max_tries
        self.draw = {"zoom": 1.0, "angle_deg": 0.0, "flip": False, "shift_mm": np.zeros(2)}

    def randomize(self, data: object = None) -> None:
        self.draw = {
            "zoom": self.R.uniform(*self.zoom),
            "angle_deg": self.R.uniform(-self.rotate_deg, self.rotate_deg),
            "flip": bool(self.R.random_sample() < self.flip_prob),
            "shift_mm": self.R.uniform(-self.translate_mm, self.translate_mm, size=2),
        }

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        case = _case_name(d, self.case_key)
        tumour = _slice(d, self.tumor_key, case_key=self.case_key)
        liver = _slice(d, self.liver_key, like=tumour, like_key=self.tumor_key, case_key=self.case_key) != 0
        if not np.any(tumour):
            raise InputError(f"{case}: tumour mask {self.tumor_key!r} is empty (every pixel is 0); nothing to augment")
        if not np.any(liver):
            raise InputError(
                f"{case}: liver mask {self.liver_key!r} is empty (every pixel is 0); no place for a tumour"
            )
        spacing = self._pixel_spacing(d[self.tumor_key], case)
        centroid = np.argwhere(tumour != 0).mean(axis=0)
        for _ in range(self.max_tries):
            self.randomize()
            moved = self._move(tumour, centroid, spacing)
            moved[~liver] = 0
            if np.any(moved):
                d[self.tumor_key] = convert_to_dst_type(moved[None], d[self.tumor_key])[0]
                return d
        raise InputError(
            f"{case}: in {self.max_tries} draws the augmented tumour never overlapped the liver mask "
            f"{self.liver_key!r}; check that tumour and liver masks belong to the same slice"
        )

    def _move(self, tumour: np.ndarray, centroid: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
        """The tumour after the drawn flip, zoom and rotation about ``centroid`` and the drawn shift."""
        flip = np.diag([-1.0 if self.draw["flip"] else 1.0, 1.0, 1.0])
        shift = self.draw["shift_mm"] / np.asarray(spacing)
        # index -> index, input to output
        forward = (
            create_translate(2, centroid + shift)
            @ create_rotate(2, np.deg2rad(self.draw["angle_deg"]))
            @ create_scale(2, [self.draw["zoom"]] * 2)
            @ flip
            @ create_translate(2, -centroid)
        )
        # MONAI's Affine maps output to input, in coordinates centred on the image centre ((size - 1) / 2).
        to_centred = create_translate(2, -(np.asarray(tumour.shape) - 1) / 2)
        backward = to_centred @ np.linalg.inv(forward) @ np.linalg.inv(to_centred)
        resample = Affine(affine=backward, mode="nearest", padding_mode="zeros", image_only=True)
        moved = resample(torch.as_tensor(tumour[None], dtype=torch.float32))
        return np.rint(convert_to_numpy(moved)[0]).astype(tumour.dtype)

    def _pixel_spacing(self, image: object, case: str) -> tuple[float, float]:
        if self.spacing is not None:
            return self.spacing
        if isinstance(image, MetaTensor):
            return _spacing(image.pixdim[:2].tolist(), f"{case}: pixel spacing of {self.tumor_key!r}")
        raise InputError(
            f"{case}: the pixel spacing of {self.tumor_key!r} is unknown (a plain array); give spacing (mm) or "
            "load the images as MetaTensors"
        )


# ----------------------------------------------------------------------------------------------------------
# Pipelines: training pairs and new cases.
# ----------------------------------------------------------------------------------------------------------


def training_conditions(
    sequences: Sequence[str] = SEQUENCES,
    sigma: float | Sequence[float] = CANNY_RANGES["sigma"],
    low_threshold: float | Sequence[float] = CANNY_RANGES["low_threshold"],
    high_threshold: float | Sequence[float] = CANNY_RANGES["high_threshold"],
    margin: int = EDGE_MARGIN,
    edge_guidance: bool = True,
) -> Compose:
    """Conditioning images of a training pair: the case's own tumour on its edges, Canny parameters drawn.

    Adds ``condition_key(s)`` for each sequence and their stack ``INPUT_KEY`` ``(len(sequences), H, W)``; the
    images and masks stay (the images are the targets). ``edge_guidance=False`` leaves the edges out (the tumour
    mask on background only: the baseline without edge guidance).
    """
    edges = CannyEdgesd(
        [*sequences], sigma=sigma, low_threshold=low_threshold, high_threshold=high_threshold, margin=margin
    ) if edge_guidance else NoEdgesd([*sequences])
    return _conditions(sequences, None, edges, margin)


def generation_conditions(
    sequences: Sequence[str] = SEQUENCES,
    spacing: Sequence[float] | None = None,
    sigma: float | Sequence[float] = CANNY_FIXED["sigma"],
    low_threshold: float | Sequence[float] = CANNY_FIXED["low_threshold"],
    high_threshold: float | Sequence[float] = CANNY_FIXED["high_threshold"],
    margin: int = EDGE_MARGIN,
    zoom: float | Sequence[float] = ZOOM,
    rotate_deg: float = ROTATE_DEG,
    flip_prob: float = FLIP_PROB,
    translate_mm: float = TRANSLATE_MM,
    max_tries: int = MAX_TRIES,
    edge_guidance: bool = True,
) -> Compose:
    """Conditioning images of a new case: the real edges (source tumour erased) with an augmented tumour on top.

    Adds ``condition_key(s)`` and ``INPUT_KEY`` as :func:`training_conditions` does and replaces ``tumor`` by the
    new tumour mask (the one the synthetic images will show). Arguments: see :class:`CannyEdgesd`,
    :class:`AugmentTumourd` and :func:`training_conditions`.
    """
    edges = CannyEdgesd(
        [*sequences], sigma=sigma, low_threshold=low_threshold, high_threshold=high_threshold, margin=margin
    ) if edge_guidance else NoEdgesd([*sequences])
    augment = AugmentTumourd(
        zoom=zoom,
        rotate_deg=rotate_deg,
        flip_prob=flip_prob,
        translate_mm=translate_mm,
        spacing=spacing,
        max_tries=max_tries,
    )
    return _conditions(sequences, augment, edges, margin)


def _conditions(sequences: Sequence[str], augment: AugmentTumourd | None, edges: MapTransform, margin: int) -> Compose:
    """Edges (of the source tumour's case), then the tumour to overlay (augmented or not), overlay, stack."""
    if not sequences or len(set(sequences)) != len(sequences):
        raise InputError(f"sequences must be distinct image keys, at least one; got {list(sequences)}")
    edge_keys = [edges_key(s) for s in sequences]
    condition_keys = [condition_key(s) for s in sequences]
    steps: list = [edges]
    if augment is not None:
        steps.append(augment)
    steps += [
        OverlayTumourd(edge_keys, condition_keys, margin=margin),
        DeleteItemsd(edge_keys),
        ConcatItemsd(condition_keys, INPUT_KEY, dim=0),
    ]
    return Compose(steps)


def draw_conditions(
    case: Mapping,
    n: int,
    seed: int,
    sequences: Sequence[str] = SEQUENCES,
    spacing: Sequence[float] | None = None,
    **options,
) -> list[dict]:
    """Draw ``n`` conditioning inputs for new cases from one real case, reproducibly from ``seed``.

    Args:
        case: the real case: a datalist item (paths to 2D images, loaded with MONAI's ``LoadImaged``), or arrays
            ``(H, W)`` or ``(1, H, W)`` (NumPy, torch or MONAI MetaTensors), under the ``sequences`` keys,
            ``liver`` and ``tumor``; ``case_id`` names it in messages.
        n: how many to draw.
        seed: the seed of the draws (0 to 2**32 - 1): the same case, ``n`` and seed give the same items.
        sequences: the image keys, in network channel order.
        spacing: pixel spacing ``(x, y)`` in mm; None reads it from the loaded images (MetaTensors).
        options: further :func:`generation_conditions` arguments (Canny values, margin, augmentation ranges).

    Returns:
        ``n`` dicts with ``condition_key(s)`` per sequence ``(1, H, W)``, ``INPUT_KEY`` ``(len(sequences), H, W)``
        (the network input) and ``tumor``, the new tumour label map ``(1, H, W)``: the tumour the synthetic images
        will show. MetaTensor inputs give MetaTensor outputs on the same grid.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"n must be a positive integer; got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise InputError(f"seed must be an integer in [0, 2**32); got {seed!r}")
    data = _load_case(case, [*sequences, LIVER, TUMOR])
    transforms = generation_conditions(sequences, spacing, **options)
    transforms.set_random_state(seed=int(seed))
    keep = [*(condition_key(s) for s in sequences), INPUT_KEY, TUMOR]
    return [{key: drawn[key] for key in keep} for drawn in (transforms(dict(data)) for _ in range(n))]


SOURCE_TUMOR = "source_tumor"  # the tumour as the input images show it, when ``tumor`` is an edited one


class InferenceConditions:
    """The generator's input for one case at inference (``conditions`` of :class:`synthmr.inference.Synthesizer`):
    slice by slice, the Canny edges of each sequence (fixed parameters, :data:`CANNY_FIXED`) with the source
    tumour's edges erased, and the tumour, clipped to the liver, laid on top (decisions 1-3).

    The tumour to draw is ``tumor``; the tumour the images show is ``source_tumor`` when given (a moved, scaled,
    mirrored or transplanted tumour: the edges of the old one are erased so that it leaves no outline), else
    ``tumor`` itself. The tumour is clipped to the liver mask, as in training data generation (decision 4).

    Args:
        sequences: the image keys, in network channel order.
        canny: Canny's ``sigma``, ``low_threshold`` and ``high_threshold`` (default :data:`CANNY_FIXED`).
        margin: the edge-free band around tumours, pixels.
        edge_guidance: False for the baseline without edges (the tumour mask alone).
    """

    def __init__(
        self,
        sequences: Sequence[str] = SEQUENCES,
        canny: Mapping[str, float] | None = None,
        margin: int = EDGE_MARGIN,
        edge_guidance: bool = True,
    ) -> None:
        self.sequences = list(sequences)
        canny = dict(CANNY_FIXED if canny is None else canny)
        if edge_guidance:
            edges: MapTransform = CannyEdgesd(self.sequences, tumor_key=SOURCE_TUMOR, margin=margin, **canny)
        else:
            edges = NoEdgesd(self.sequences)
        self.transforms = _conditions(self.sequences, None, edges, margin)

    def __call__(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """``arrays``: the sequences, ``liver`` and ``tumor`` (optionally ``source_tumor``), each ``(H, W)`` or
        ``(H, W, D)`` (axial slices along the last axis) on one grid. Returns ``(len(sequences), *spatial)``."""
        keys = [*self.sequences, LIVER, TUMOR]
        missing = [key for key in keys if key not in arrays]
        if missing:
            raise InputError(f"the case lacks {missing} (needs {keys}, optionally {SOURCE_TUMOR!r})")
        shape = np.shape(arrays[self.sequences[0]])
        for key in [*keys, SOURCE_TUMOR]:
            if key in arrays and np.shape(arrays[key]) != shape:
                raise InputError(f"{key!r} has shape {np.shape(arrays[key])} but {self.sequences[0]!r} has {shape}")
        if len(shape) not in (2, 3):
            raise InputError(f"expected 2D slices or 3D volumes; {self.sequences[0]!r} has shape {shape}")
        tumour = (np.asarray(arrays[TUMOR]) != 0) & (np.asarray(arrays[LIVER]) != 0)
        if not tumour.any():
            raise InputError(
                f"the tumour mask {TUMOR!r} lies entirely outside the liver mask {LIVER!r}: no tumour to draw "
                "(tumours are clipped to the liver)"
            )
        source = np.asarray(arrays.get(SOURCE_TUMOR, arrays[TUMOR])) != 0
        volume = {key: np.asarray(arrays[key], dtype=np.float32) for key in self.sequences}
        volume[TUMOR], volume[SOURCE_TUMOR] = tumour.astype(np.float32), source.astype(np.float32)
        if len(shape) == 2:
            return self._slice(volume, None)
        return np.stack([self._slice(volume, z) for z in range(shape[2])], axis=-1)

    def _slice(self, volume: Mapping[str, np.ndarray], z: int | None) -> np.ndarray:
        item = {key: (array if z is None else array[..., z])[None] for key, array in volume.items()}
        return np.asarray(self.transforms(item)[INPUT_KEY], dtype=np.float32)


class NewTumourCases:
    """The paper's synthetic set: new cases, each a real case with its tumour augmented and the three sequences
    generated to show it (what ``synthmr generate`` runs through a bundle's ``configs/generate.yaml``).

    New case ``i`` builds on real case ``sources[i % len(sources)]`` (round robin, so every real case contributes
    alike): its tumour is zoomed, rotated, flipped and moved inside the liver (:class:`AugmentTumourd`), the
    conditioning images are its real edges (the real tumour's erased, fixed Canny parameters) with the new tumour
    on top, and the generator makes the three sequences, each in the units of the real case's sequence. The draw
    of case ``i`` depends only on ``(seed, i)``: a set is reproducible from its seed, and its first ``k`` cases
    are those of any longer set of the same seed.

    Args:
        network: the generator ``(B, k, H, W)`` -> ``(B, k, H, W)``, weights loaded.
        sequences: the image keys, in network channel order.
        device: where the generator runs.
        batch_size: cases per generator forward pass.
        progress: optional ``progress(done, total)`` after every batch.
        edge_guidance: False for a generator trained on the tumour mask alone (the baseline).
        image_key: the sequence the downstream-benefit items show (:meth:`__call__`).
        options: further :func:`generation_conditions` arguments (Canny values, augmentation ranges).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        sequences: Sequence[str] = SEQUENCES,
        device: str | torch.device = "cpu",
        batch_size: int = 8,
        progress=None,
        edge_guidance: bool = True,
        image_key: str = SEQUENCES[0],
        **options,
    ) -> None:
        self.network, self.sequences = network, list(sequences)
        if image_key not in self.sequences:
            raise InputError(f"image_key {image_key!r} is not one of the sequences {self.sequences}")
        self.device = torch.device(device)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer; got {batch_size!r}")
        self.batch_size, self.progress = batch_size, progress
        self.edge_guidance, self.options = config_bool(edge_guidance, "edge_guidance"), dict(options)
        self.image_key = image_key

    def describe(self) -> dict:
        """What the downstream-benefit harness records of this synthesizer (its generator's weights)."""
        from synthmr.evaluation.synthesizers import weights_digest

        return {"kind": "NewTumourCases", "network": type(self.network).__name__,
                "weights_sha256": weights_digest(self.network), "image": self.image_key,
                "edge_guidance": self.edge_guidance, "options": self.options}

    def __call__(self, subset: Sequence[Mapping], n: int, out_dir: Path, seed: int) -> list[dict]:
        """The downstream-benefit harness's ``synthesize``: ``n`` new cases from the real ``subset`` (items with
        the sequences, ``liver`` and ``tumor`` besides ``image`` and ``label``), as items ``{"case_id", "image",
        "label"}``: the generated ``image_key`` sequence and the new tumour mask. Any ``n``: new tumours make new
        cases from the same real case (the paper: 1,000 from 89 patients)."""
        items = self.generate(subset, n, out_dir, seed=seed)
        return [{"case_id": item["case_id"], "image": item[self.image_key], "label": item[TUMOR]} for item in items]

    def generate(
        self, sources: Sequence[Mapping], n: int, out_dir: str | os.PathLike, seed: int = 0, overwrite: bool = False,
        provenance: Mapping | None = None,
    ) -> list[dict]:
        """Write ``n`` new cases under ``out_dir`` and their datalist ``out_dir/datalist.json``; return its items.

        Args:
            sources: real cases, datalist items with paths of 2D slices: the ``sequences``, ``liver``, ``tumor``
                (non-empty, inside the liver) and ``case_id``.
            n: how many new cases.
            out_dir: a new or empty folder (or any folder with ``overwrite``).
            seed: the set's seed, 0 to 2**32 - 1.
            overwrite: replace an existing ``out_dir`` once the new set is complete.
            provenance: what the manifest records first (the bundle's name and version, from generate.yaml).

        Cases are made in batches of ``batch_size``, shared out over the ranks of a ``torch.distributed`` group and
        resumed after a kill (:func:`synthmr.generation.write_case_set`). Every new case ``case_NNNNN`` gets ``<out_dir>/case_NNNNN/{<sequences>, liver, tumor}.nii.gz`` on its real
        case's grid; its datalist item also names its real case (``source_case``) and its draw's seed.
        """
        from synthmr.generation import case_id, case_seed, check_set_size_and_seed, digest, write_case_set
        from synthmr.provenance import record, write_synthetic
        from synthmr.io import read_image, write_image
        from synthmr.transforms.intensity import IntensityScaling

        check_set_size_and_seed(n, seed)
        sources = [dict(item) for item in sources]
        if not sources:
            raise InputError("no real case to build new cases on: the source datalist is empty")
        keys = [*self.sequences, LIVER, TUMOR]
        loaded: dict[int, tuple[dict, dict, Compose]] = {}

        def source(index: int) -> tuple[dict, dict, Compose]:
            """Real case ``index``, read once: its volumes, their intensity scalings, its stage-1 transforms."""
            if index not in loaded:
                item = sources[index]
                name = f"source case {item.get('case_id', index)!r}"
                missing = [key for key in keys if key not in item]
                if missing:
                    raise InputError(f"{name}: lacks {missing} (needs {keys})")
                volumes = {key: read_image(item[key]) for key in keys}
                reference = volumes[self.sequences[0]]
                for key, volume in volumes.items():
                    if volume.ndim != 2:
                        raise InputError(f"{name}: {key} is {volume.ndim}D; new cases are drawn from 2D slices")
                    if not volume.same_grid(reference):
                        raise InputError(f"{name}: {key} is not on the grid of {self.sequences[0]}")
                scalings = {s: IntensityScaling.fit(volumes[s].array, name=f"{name}: {s}", **INTENSITY_SCALING)
                            for s in self.sequences}
                options = {"spacing": reference.spacing[:2], **self.options, "edge_guidance": self.edge_guidance}
                loaded[index] = (volumes, scalings, generation_conditions(self.sequences, **options))
            return loaded[index]

        def make(indices: Sequence[int], folder: Path) -> list[dict]:
            """One batch: each case's tumour drawn from (seed, i), the three sequences in one forward pass."""
            batch = []
            for i in indices:
                index = i % len(sources)
                volumes, _, transforms = source(index)
                transforms.set_random_state(seed=case_seed(seed, i))
                data = {key: volume.array[None].astype(np.float32) for key, volume in volumes.items()}
                data["case_id"] = str(sources[index].get("case_id", index))
                batch.append((i, index, transforms(data)))
            conditions = torch.stack([torch.as_tensor(np.asarray(d[INPUT_KEY])) for *_, d in batch]).float()
            with torch.inference_mode():
                fake = self.network(conditions.to(self.device)).float().cpu().numpy()
            items = []
            for (i, index, drawn), images in zip(batch, fake):
                volumes, scalings, _ = source(index)
                arrays = {s: scalings[s].inverse(images[c]).astype(np.float32) for c, s in enumerate(self.sequences)}
                arrays[LIVER] = volumes[LIVER].array
                arrays[TUMOR] = np.asarray(drawn[TUMOR])[0].astype(volumes[TUMOR].array.dtype)
                item = {"case_id": case_id(i)}
                # The sequences and the augmented tumour are SynthMR's, marked synthetic; the liver mask is the source's.
                made = record(provenance or {}, {k: sources[index][k] for k in (*self.sequences, LIVER, TUMOR)},
                              seed=case_seed(seed, i))
                for key, array in arrays.items():
                    volume, path = volumes[self.sequences[0]].with_array(array), folder / case_id(i) / f"{key}.nii.gz"
                    if key == LIVER:
                        write_image(volume, path)
                    else:
                        write_synthetic(volume, path, {**made, "output": key})
                    item[key] = f"{case_id(i)}/{key}.nii.gz"
                items.append({**item, "source_case": str(sources[index].get("case_id", index)),
                              "seed": case_seed(seed, i)})
            return items

        self.network.to(self.device).eval()
        return write_case_set(
            make, n, out_dir, seed, block=self.batch_size, overwrite=overwrite, file_keys=keys,
            description=f"{n} new cases with augmented tumours, generated by synthmr (liver_mmhcc_mask2mri)",
            identity={**(provenance or {}), **self.describe(), "sources_sha256": digest(sources)}, progress=self.progress,
        )


# Hyperenhancing: brighter than this multiple of the median liver parenchyma of the same arterial image. On real
# phantom images that region overlaps the tumour with Dice 0.34-0.68 (MMHCC tumours are partly necrotic and the
# necrosis does not enhance), so the moved tumour is judged against the same kind of region.
HYPERENHANCING = 1.25


def moved_tumour_overlap(arterial: np.ndarray, liver: np.ndarray, old: np.ndarray, moved: np.ndarray) -> dict:
    """How well a synthetic arterial image follows a moved tumour: Dice of its hyperenhancing liver region
    (:data:`HYPERENHANCING`) with the moved tumour and with the old place (the old tumour minus the moved one), and
    the share of the old place that still hyperenhances. All arrays on one grid; masks non-zero inside."""
    from synthmr.metrics.regions import mask_dice

    liver, old, moved = liver != 0, old != 0, moved != 0
    parenchyma = liver & ~old & ~moved
    if not parenchyma.any() or not moved.any() or not (old & ~moved).any():
        raise InputError("moved_tumour_overlap needs liver parenchyma, a moved tumour and an old place it left")
    hyper = liver & (arterial > HYPERENHANCING * np.median(arterial[parenchyma]))
    left = old & ~moved

    return {"dice_moved": mask_dice(hyper, moved), "dice_old_place": mask_dice(hyper, left),
            "old_place_hyperenhancing": float((hyper & left).sum() / left.sum())}


def _load_case(case: Mapping, keys: Sequence[str]) -> dict:
    """The case with ``keys`` as channel-first arrays: paths loaded by MONAI, ``(H, W)`` arrays given a channel."""
    if not isinstance(case, Mapping):
        raise InputError(f"case must be a mapping (a datalist item or a dict of arrays); got {type(case).__name__}")
    missing = [key for key in keys if key not in case]
    if missing:
        raise InputError(f"{_case_name(case)}: lacks {missing} (needs {list(keys)})")
    data = dict(case)
    paths = [key for key in keys if isinstance(data[key], (str, os.PathLike))]
    if paths:
        data = LoadImaged(paths, ensure_channel_first=True, image_only=True)(data)
    for key in keys:
        value = data[key] if torch.is_tensor(data[key]) else np.asarray(data[key])
        data[key] = value[None] if value.ndim == 2 else value
    return data


# ----------------------------------------------------------------------------------------------------------
# Checks shared by the transforms.
# ----------------------------------------------------------------------------------------------------------


def _case_name(data: Mapping, case_key: str = "case_id") -> str:
    return f"case {data[case_key]!r}" if case_key in data else "the case"


def _slice(
    data: Mapping,
    key: Hashable,
    like: np.ndarray | None = None,
    like_key: Hashable | None = None,
    case_key: str = "case_id",
) -> np.ndarray:
    """``data[key]`` as a NumPy ``(H, W)`` array, checked to be one channel-first 2D slice (shaped as ``like``)."""
    if key not in data:
        raise InputError(f"{_case_name(data, case_key)}: lacks {key!r}")
    value = data[key]
    shape = tuple(value.shape) if hasattr(value, "shape") else None
    if shape is None or len(shape) != 3 or shape[0] != 1:
        raise InputError(
            f"{_case_name(data, case_key)}: {key!r} must be one 2D slice, channel first (1, H, W); got shape {shape}"
        )
    array = convert_to_numpy(value)[0]
    if like is not None and array.shape != like.shape:
        raise InputError(
            f"{_case_name(data, case_key)}: {key!r} has shape {array.shape} but {like_key!r} has {like.shape}; "
            "they must share one grid"
        )
    return array


def _canny(image: np.ndarray, sigma: float, low: float, high: float) -> np.ndarray:
    """SimpleITK's Canny edges of a 2D image as a boolean array; spacing 1, so that sigma is in pixels."""
    itk_image = sitk.GetImageFromArray(np.ascontiguousarray(image, dtype=np.float32))
    itk_image.SetSpacing((1.0, 1.0))
    edges = sitk.CannyEdgeDetection(
        itk_image,
        lowerThreshold=float(low),
        upperThreshold=float(high),
        variance=[float(sigma) ** 2] * 2,
        maximumError=[CANNY_MAXIMUM_ERROR] * 2,
    )
    return sitk.GetArrayFromImage(edges) != 0


def _dilate(mask: np.ndarray, margin: int) -> np.ndarray:
    """``mask`` grown by a disc of radius ``margin`` pixels: every pixel within Euclidean distance ``margin``.

    SimpleITK's exact distance map (Maurer), squared and in pixels, so the comparison is exact. Not
    ``BinaryDilate`` with a ball kernel: ITK's ball of radius r holds pixels up to about r + 0.5 away (radius 1 is
    the 3 x 3 square), which would widen the edge-free band.
    """
    if margin == 0 or not mask.any() or mask.all():
        return mask.copy()
    distance = sitk.SignedMaurerDistanceMap(
        sitk.GetImageFromArray(mask.astype(np.uint8)),
        insideIsPositive=False,
        squaredDistance=True,
        useImageSpacing=False,
        backgroundValue=0,
    )
    return sitk.GetArrayFromImage(distance) <= margin * margin


def _is_number(value: object) -> bool:
    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    return numeric and bool(np.isfinite(value))


def _range(value: float | Sequence[float], name: str, positive: bool = False) -> tuple[float, float]:
    """``(min, max)`` from a pair, or ``(v, v)`` from one number ``v``."""
    pair = (value, value) if _is_number(value) else tuple(value) if isinstance(value, Sequence) else ()
    if len(pair) != 2 or not all(_is_number(v) for v in pair) or pair[0] > pair[1]:
        raise InputError(f"{name} must be a number or a (min, max) pair with min <= max; got {value!r}")
    low, high = float(pair[0]), float(pair[1])
    if low < 0 or (positive and low == 0):
        raise InputError(f"{name} must be {'positive' if positive else 'non-negative'}; got {value!r}")
    return low, high


def _non_negative(value: float, name: str) -> float:
    if not _is_number(value) or value < 0:
        raise InputError(f"{name} must be a non-negative number; got {value!r}")
    return float(value)


def _margin(margin: int) -> int:
    if isinstance(margin, bool) or not isinstance(margin, (int, np.integer)) or margin < 0:
        raise InputError(f"edge margin must be a non-negative integer (pixels); got {margin!r}")
    return int(margin)


def _spacing(spacing: Sequence[float], name: str) -> tuple[float, float]:
    values = tuple(spacing) if isinstance(spacing, Sequence) else ()
    if len(values) != 2 or not all(_is_number(v) and v > 0 for v in values):
        raise InputError(f"{name} must be two positive numbers (mm, x and y); got {spacing!r}")
    return float(values[0]), float(values[1])


def _output_keys(keys: Sequence[Hashable], output_keys: Sequence[str] | None, default, name: str) -> list:
    output_keys = [default(key) for key in keys] if output_keys is None else list(output_keys)
    if len(output_keys) != len(keys):
        raise InputError(f"{name}: {len(output_keys)} output_keys for {len(keys)} keys; give one per key")
    return output_keys


# ----------------------------------------------------------------------------------------------------------
# Stage 2: training data and checkpoint selection.
#
# The three Pix2Pix GANs (Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks",
# arXiv 1611.07004) train side by side in one synthmr.engines.PairedGanTrainer: the generators as one
# synthmr.nets.ChannelwiseGenerators, the discriminators as one synthmr.nets.ChannelwiseDiscriminators (pair i =
# conditioning image i and image i); the losses, optimisers and schedule are in the bundle's configs/train.yaml.
#
# Decisions (each is the default below):
#
# 6. **Intensities.** Each sequence is scaled to [-1, 1] (the range of the generator's Tanh) by its own robust
#    range, clipped (synthmr.transforms.RobustScaled with no reference; the Synthesizer at inference alike): the
#    three sequences are separate acquisitions with no shared receiver scale, so each gets its own range; the paper
#    scales only for Canny (0-255), not the network. The range is INTENSITY_SCALING's, not the foreground's alone:
#    in these fat-suppressed images a quarter to a third of each slice, air and dark tissue alike, is darker than
#    the foreground threshold (5 % of the 99th percentile), and clipping it to -1 left the generators unable to
#    write it. On the validation cases, the real
#    images passed through the foreground clip and back (a perfect generator on that scale) scored pooled KID
#    0.247 against the real images; with the low end over the whole image (the air's noise floor) and headroom
#    1.25 above the foreground's 99.5th percentile (bright T2 tumours exceed it) that oracle scores -0.04 and its
#    tumour contrast errors are <= 0.002 (docs/reports/scale_oracle.py in the bundle).
# 7. **Pairs.** Input ``image``: the conditioning images of training_conditions (the case's own tumour, Canny
#    parameters drawn per call: several contour images per MRI, as the paper); target ``target``: the three real
#    sequences in SEQUENCES order, so channel i of both is sequence SEQUENCES[i]. The liver mask is not needed for
#    training pairs (decision 5) and is not loaded. No further augmentation (the paper names none).
# 8. **Validation** uses the fixed Canny parameters of generation (CANNY_FIXED), so every epoch is judged on the
#    same inputs.
# ----------------------------------------------------------------------------------------------------------

TARGET_KEY = "target"  # the three real sequences stacked: the generator's target
# Decision 6; inference.yaml and evaluate.yaml give the Synthesizer the same.
INTENSITY_SCALING = {"headroom": 1.25, "low_over": "image"}


def pair_transforms(sequences: Sequence[str] = SEQUENCES, fixed_canny: bool = False, edge_guidance: bool = True) -> Compose:
    """Datalist item (paths of ``sequences`` and ``tumor``) -> ``{INPUT_KEY: (k, H, W), TARGET_KEY: (k, H, W)}``,
    float32 in [-1, 1] (targets) and {-1, 0, 1} (conditions), channel i being ``sequences[i]`` (decisions 6-8).

    Args:
        sequences: image keys, in network channel order.
        fixed_canny: Canny parameters fixed at :data:`CANNY_FIXED` (validation) instead of drawn from
            :data:`CANNY_RANGES` (training).
        edge_guidance: False for conditioning images without edges (the tumour mask only: the baseline).
    """
    from monai.transforms import EnsureTyped, SelectItemsd

    from synthmr.transforms import RobustScaled

    sequences = list(sequences)
    keys = [*sequences, TUMOR]
    canny = CANNY_FIXED if fixed_canny else CANNY_RANGES
    return Compose(
        [
            SelectItemsd([*keys, "case_id"], allow_missing_keys=True),
            _RequireKeysd(keys),
            LoadImaged(keys, ensure_channel_first=True, image_only=True),
            EnsureTyped(keys, dtype=torch.float32, track_meta=False),
            training_conditions(sequences, **canny, edge_guidance=edge_guidance),
            RobustScaled(sequences, **INTENSITY_SCALING),
            ConcatItemsd(sequences, TARGET_KEY, dim=0),
            SelectItemsd([INPUT_KEY, TARGET_KEY]),
        ]
    )


class _RequireKeysd(MapTransform):
    """One clear line when a datalist item lacks a key, before MONAI's loader fails on it."""

    def __call__(self, data: Mapping[Hashable, object]) -> Mapping[Hashable, object]:
        missing = [key for key in self.keys if key not in data]
        if missing:
            raise InputError(f"{_case_name(data)}: datalist item lacks {missing} (needs {list(self.keys)})")
        return data


class PooledKidSelection(SharedPooledKidSelection):
    """Keep the generator with the lowest pooled KID of the three sequences on the validation cases
    (:class:`synthmr.engines.selection.PooledKidSelection`), on this method's validation pairs.

    The validation pairs are the cases' conditioning images with fixed Canny parameters (decision 8) and the
    case's own tumour, and the three real sequences; with 16 cases, 48 images per set against 256 features, KID
    ranks where FID could not (the paper reports FID on 1000 synthetic cases).

    Args:
        generator: the generator being trained (optionally DDP-wrapped): ``(B, k, H, W)`` -> ``(B, k, H, W)``.
        datalist: validation items with the ``sequences``, ``tumor`` and ``case_id``; at least 2.
        work_dir, best_path, interval: see :class:`~synthmr.engines.selection.CheckpointSelection`.
        sequences: the image keys, in network channel order.
        extractor, extractor_weights, batch_size, n_bootstrap: see
            :class:`synthmr.engines.selection.PooledKidSelection`.
        edge_guidance: the conditioning images the generator was trained on: with edges (the method) or the
            tumour mask only (the baseline).
    """

    def __init__(
        self,
        generator: torch.nn.Module,
        datalist: Sequence[Mapping],
        work_dir: str | os.PathLike,
        best_path: str | os.PathLike,
        interval: int = 1,
        sequences: Sequence[str] = SEQUENCES,
        extractor: str = "domain",
        extractor_weights: str | os.PathLike | None = None,
        batch_size: int = 8,
        n_bootstrap: int = 200,
        edge_guidance: bool = True,
    ) -> None:
        super().__init__(
            generator,
            datalist,
            pair_transforms(sequences, fixed_canny=True, edge_guidance=edge_guidance),
            work_dir,
            best_path,
            interval,
            channels=list(sequences),
            extractor=extractor,
            extractor_weights=extractor_weights,
            batch_size=batch_size,
            n_bootstrap=n_bootstrap,
            input_key=INPUT_KEY,
            target_key=TARGET_KEY,
            description={"edge_guidance": bool(edge_guidance)},
        )
        self.edge_guidance = config_bool(edge_guidance, "edge_guidance")


# ----------------------------------------------------------------------------------------------------------
# Held-out evaluation: the method against its baselines on held-out cases.
#
# quality_report judges each candidate's synthetic sequences (one set per real held-out case, made from that case's
# own tumour and, for the method, its edges) against the real sequences, with the shared held-out comparison
# (synthmr.metrics.quality: FID, KID and 1-NN per sequence and pooled, SSIM, PSNR and MAE over pairs); the
# candidates are the method and its baselines (Pix2Pix on the tumour mask only, CycleGAN on the same conditions;
# configs/evaluate.yaml). Pooled, 200 cases (600 slices) against the domain extractor's 256 features make a reliable
# FID; 200 slices of one sequence do not.
#
# What is the method's own is the tumour contrast per phase: C = mean(tumour) / mean(liver outside the tumour), in
# the real and in the synthetic image, per case, in the images' own units (the ratio cancels any scale), and the
# mean |C_synthetic - C_real| over cases with its 95 % bootstrap interval. A hepatocellular carcinoma enhances more
# than the liver in the arterial phase (C > 1: arterial hyperenhancement) and less in the portal phase (C < 1:
# washout), LI-RADS's major features; a generator that draws the tumour with the liver's intensity, or with the
# wrong phase's, fails here although its FID may be good. The tumour is the case's tumour mask inside the liver
# mask: the tumour the generators draw (InferenceConditions clips it to the liver).
# ----------------------------------------------------------------------------------------------------------

# What the tumour contrast of each sequence shows (the report's and the table's labels).
CONTRAST_FEATURES = {
    "t1fs_arterial": "arterial hyperenhancement",
    "t1fs_portal": "portal washout",
    "t2": "T2 hyperintensity",
}
CONTRAST_DEFINITION = (
    "C = mean(tumour) / mean(liver outside the tumour); tumour = tumour mask inside the liver mask of the real case; "
    "error = |C_synthetic - C_real| per case"
)


def tumour_contrasts(item: Mapping):
    """The tumour contrast check of the real case ``item``: its ``liver`` and ``tumor`` masks, read once, and a
    function of one side's images (sequence -> array in its own units) giving ``C`` per sequence."""
    from synthmr.io import read_image
    from synthmr.metrics.regions import region_contrast

    liver = read_image(item[LIVER]).array != 0
    tumour = (read_image(item[TUMOR]).array != 0) & liver
    for region, what in ((tumour, "tumour inside the liver"), (liver & ~tumour, "liver outside the tumour")):
        if not region.any():
            raise InputError(f"the {what} is empty; no tumour contrast")

    def measure(images: Mapping[str, np.ndarray]) -> dict[str, float]:
        return {
            s: region_contrast(image, tumour, liver & ~tumour, "tumour", "liver outside the tumour")
            for s, image in images.items()
        }

    return measure


def quality_report(
    real: Sequence[Mapping],
    candidates: Mapping[str, Sequence[Mapping[str, str | os.PathLike]]],
    sequences: Sequence[str] = SEQUENCES,
    **options,
) -> dict:
    """The held-out comparison of the method and its baselines (see the section's comment above): the report of
    :func:`synthmr.metrics.quality.quality_report` with the tumour contrast of every sequence as its contrast
    checks (named by sequence).

    Args:
        real: the held-out cases, each with ``case_id``, the ``sequences``, ``liver`` (mask) and ``tumor`` (label
            map, non-zero is tumour); a ``seed`` (phantom cases) is recorded.
        candidates: name -> per real case, sequence -> synthetic file on the case's grid.
        sequences: the sequences to judge.
        options: further arguments of the shared report (extractor, extractor_weights, n_bootstrap, out,
            overwrite, weights, seed, batch_size).
    """
    from synthmr.metrics.quality import quality_report as held_out_comparison

    sequences = list(sequences)
    description = {
        "definition": CONTRAST_DEFINITION,
        "features": {s: CONTRAST_FEATURES.get(s, "tumour contrast") for s in sequences},
    }
    return held_out_comparison(
        real, candidates, sequences, contrasts=tumour_contrasts, contrast_description=description,
        what="held-out quality of synthetic liver sequences (synthmr.methods.liver_mmhcc_mask2mri.quality_report)",
        required=[LIVER, TUMOR], **options,
    )


def format_quality_table(report: Mapping) -> str:
    """The report of :func:`quality_report` as a plain-text table
    (:func:`synthmr.metrics.quality.format_quality_table`), its contrast rows named "tumour contrast"."""
    from synthmr.metrics.quality import format_quality_table as table

    return table(report, contrast_name="tumour contrast")
