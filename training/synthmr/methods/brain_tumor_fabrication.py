"""Healthy 3D brain MRI -> tumour-bearing volumes with exact labels: the method of bundle ``brain_tumor_fabrication``.

Dong, Chowdhury, Phan, Jenkinson, Verjans and Liao, "From Healthy Scans to Annotated Tumors: A Tumor Fabrication
Framework for 3D Brain MRI Synthesis", arXiv 2511.18654 (Tumor Fabrication, TF). Two stages: **TF-Aug** takes
tumour regions (the labelled tumour with the image around it) from a few annotated cases, augments them and places
them into healthy scans, giving a coarse tumour-bearing image ``x_s'`` whose label map ``m_s`` is exact by
construction; **TF-GAN** refines ``x_s'`` inside the tumour's region of interest ``m_roi`` into ``x_s``, trained
without pairs against real tumour images. The baseline **CarveMix** (Zhang et al., "CarveMix: A Simple Data
Augmentation Method for Brain Lesion Segmentation", MICCAI 2021, arXiv 2108.06883) is here too, because the paper
compares against it on the same inputs.

This module holds what is specific to the method; the sections below, top to bottom:

1. **Tumour regions** (:class:`TumorRegion`, :func:`tumor_region`): a tumour's bounding box, with a margin of
   surrounding tissue, cut out of an annotated case: the four sequences, the BraTS label and the brain mask.
2. **TF-Aug** (:class:`RandTumorAugment`, :class:`TumorPlacement`, :func:`place_tumor`, :class:`TFAugd`):
   spatial, shape and intensity augmentation of a region, then its placement into a healthy brain.
3. **CarveMix** (:func:`carvemix`): the baseline, carving a tumour with a random margin into another scan.
4. **TF-GAN** (:func:`refiner_condition`, :class:`TumorPatchesd`, :func:`load_feature_extractor` and the loss
   terms :func:`non_tumor_hinge`, :func:`tumor_perceptual`, :func:`generator_subregions`,
   :func:`discriminator_subregions`): what the bundle's configs assemble with :class:`synthmr.nets.ROIRefiner`,
   :class:`synthmr.nets.DualHeadDiscriminator` and :class:`synthmr.engines.PairedGanTrainer`.
5. **Inference** (:func:`refine_roi`): the trained refiner applied to a coarse case's ROI.
6. **New cases** (:class:`FabricatedCases`): healthy scans and annotated tumour cases in, tumour-bearing cases
   with their labels out, by TF, TF-Aug alone or CarveMix (``synthmr generate`` and the downstream harness);
   :func:`load_annotated` reads the annotated cases for training.
7. **The bundle's inference** (:class:`TumorFabricator`): a healthy scan and a tumour case in, the tumour-bearing
   scan and its label out, on the healthy scan's grid.
8. **The held-out comparison** (:func:`patch_quality_report`): KID of the tumour slices and subregion contrast
   errors of each candidate's fabricated cases against real tumour cases.

Sequence keys are BraTS 2023's (docs/design.md, *Data conventions*): ``t1n``, ``t1c``, ``t2w``, ``t2f``; the label
``label`` has 1 necrotic core, 2 edema, 3 enhancing tumour; ``brain`` is the brain mask (the phantom's, or
``image > 0`` of any sequence for skull-stripped BraTS data). Arrays are ``(x, y, z)`` in ITK index order.

The paper's text beyond its abstract and figure captions is not available to us, so TF-Aug's details are our
design; each decision below is a default, documented in the bundle's card and ablated where it matters:

1. **Region.** The bounding box of the tumour (every label > 0) grown by :data:`REGION_MARGIN_MM` on every side:
   enough surrounding tissue for the seam to blend, and the same margin the refiner's ROI uses.
2. **Augmentation** (:class:`RandTumorAugment`): a left-right flip with probability 0.5 (gliomas occur in both
   hemispheres), a random rotation (up to 15 degrees about each axis) and scaling (0.8-1.25 per axis), and an
   elastic deformation of the region (MONAI's :class:`~monai.transforms.Rand3DElasticd`: control-point sigma
   8-12 voxels, magnitude 0-4 voxels), so no two placed tumours share a shape; images resampled linearly, labels
   and masks by nearest neighbour. Intensity: each sequence's tumour is multiplied by its own gain, uniform in
   0.9-1.1, faded out over the tumour's edge (a Gaussian-smoothed tumour mask weights it), so subregion contrast
   varies between placements without an edge of its own.
3. **Intensity harmonisation.** Each sequence of the region is multiplied by the ratio of the recipient's to the
   donor's median brain intensity (MR signal has an arbitrary scale per scan; a ratio keeps zero at zero).
4. **Where.** The region's tumour centroid goes to a voxel drawn uniformly from ``centre_mask`` (default: the
   recipient's brain mask; the phantom bundle passes white matter, where gliomas arise), accepted when at least
   :data:`MIN_INSIDE` of the tumour's voxels land inside the recipient's brain; of :data:`PLACEMENT_TRIES`
   draws the best is kept when none reaches it. Tumour voxels outside the brain are dropped from the label.
   No mass effect is modelled (the paper names it as a limitation too).
5. **Blending.** The coarse image takes the donor inside the tumour and the recipient beyond
   :data:`FEATHER_MM` from it, linearly in between (signed distance to the tumour, in mm); the donor's
   background (outside its own brain mask) never enters. ``m_roi`` is the tumour grown by
   :data:`REGION_MARGIN_MM` inside the brain: the only voxels TF-GAN may change.
6. **Intensities.** The refiner sees each sequence scaled to [-1, 1] by its own robust range over the volume
   outside the tumour's ROI (:class:`~synthmr.transforms.IntensityScaling`, the 0.5th percentile to the
   foreground's 99.5th; :func:`outside_roi`) with :data:`HEADROOM` above it, and writes back through the
   inverse: healthy tissue sets the scale, whatever the ROI holds.
7. **Refinement weight.** TF-GAN's output is ``x_s' + w * correction`` (:class:`synthmr.nets.ROIRefiner`) with
   ``w`` 1 within :data:`FEATHER_MM` of the tumour, falling linearly to 0 at :data:`REGION_MARGIN_MM`
   (:func:`roi_weight`): the seam is refined, the ramp blends the refined into the untouched, and every voxel
   with ``w = 0`` stays bit-identical (tested).
8. **Patches.** TF-GAN trains on 3D patches (default 48^3 voxels, 96 mm at the phantom's 2 mm) centred on the
   placed tumour, moved by up to 8 voxels; each is paired with a patch of the same size around a real annotated
   tumour, drawn at random: the unpaired real image ``x_r`` of the paper's Fig. 2.
9. **The frozen extractor F.** No pretrained 3D MRI network can be downloaded, so ``F`` is the encoder of a small
   MONAI ``SegResNet`` trained to segment the subregions on annotated phantom cases
   (:func:`feature_segmenter`), shipped with the bundle; a user's own weights of the same layout replace it.
   Its four encoder levels are the perceptual features; the class-wise perceptual loss
   (:class:`synthmr.losses.ClassWisePerceptualLoss`) compares, per subregion, the mean and spread of each
   feature channel between the refined and the real patch.
10. **The dual head.** The discriminator's second head predicts each patch's mix of subregions
   (:class:`synthmr.nets.DualHeadDiscriminator`); it learns on real patches only, and the generator is asked
   that its refined patch be read as the label it was made from.
11. **Inference grid.** The refiner runs on the ROI's bounding box only, resampled to the voxel size it was
   trained at (a BraTS case at 1 mm is refined at the phantom's 2 mm and resampled back), so memory does not
   grow with the volume and any grid works; outside ``m_roi`` the output is the coarse case, bit for bit.
12. **The Pix2Pix baseline** ("label map -> image", the paper's comparison). A whole brain cannot be drawn from
   a tumour label alone, so Pix2Pix here in-paints the tumour's ROI: it sees the label and the tissue around the
   tumour with the tumour and its seam blanked (:func:`inpainting_condition`), and learns, paired, from the
   annotated cases only (:class:`PairedTumorPatchesd`; L1 + a conditional PatchGAN, as pix2pix). At synthesis
   TF-Aug places the label and Pix2Pix draws what lies inside it: same network, same ROI, same data as TF-GAN.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.networks.nets import SegResNet
from monai.transforms import GaussianSmooth, MapTransform, Rand3DElasticd, Randomizable

from synthmr.errors import InputError, config_bool
from synthmr.inference import Synthesizer
from synthmr.io import Volume, load_weights, read_image
from synthmr.io._atomic import check_destination, write_json
from synthmr.losses import ClassWisePerceptualLoss, hinge_l1
from synthmr.transforms.intensity import IntensityScaling

if TYPE_CHECKING:  # the engines need the train extra; inference imports this module from the plain wheel
    from synthmr.engines.paired import GanStep

SEQUENCES = ("t1n", "t1c", "t2w", "t2f")  # BraTS 2023 names: T1, Gd-T1, T2, FLAIR; the networks' channel order
LABEL, BRAIN, ROI = "label", "brain", "roi"
TUMOR_LABELS = {"necrotic core": 1, "edema": 2, "enhancing tumor": 3}  # BraTS 2023
REGION_MARGIN_MM = 8.0  # decision 1 and 5
FEATHER_MM = 3.0  # decision 5
MIN_INSIDE = 0.95  # decision 4
PLACEMENT_TRIES = 64  # decision 4


# ---------------------------------------------------------------------------------------------------------------
# 1. Tumour regions
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class TumorRegion:
    """A tumour with the tissue around it, cut out of an annotated case (module docstring, decision 1).

    Attributes:
        images: ``(len(SEQUENCES), x, y, z)`` float32, the case's intensities.
        label: ``(x, y, z)`` BraTS labels (0 outside the tumour).
        brain: ``(x, y, z)`` bool, the case's brain mask.
        spacing: voxel size, mm.
        brain_median: per sequence, the median over the whole case's brain (decision 3).
        case_id: where it came from, for messages and provenance.
    """

    images: np.ndarray
    label: np.ndarray
    brain: np.ndarray
    spacing: tuple[float, float, float]
    brain_median: np.ndarray
    case_id: str = ""


def tumor_region(
    images: Sequence[np.ndarray] | np.ndarray,
    label: np.ndarray,
    brain: np.ndarray,
    spacing: Sequence[float],
    margin_mm: float = REGION_MARGIN_MM,
    case_id: str = "",
) -> TumorRegion:
    """Cut the tumour of an annotated case out with ``margin_mm`` of surrounding tissue on every side.

    Args:
        images: the case's sequences, each ``(x, y, z)``, in :data:`SEQUENCES` order (or one stacked array).
        label: BraTS labels on the same grid.
        brain: brain mask on the same grid.
        spacing: voxel size, mm.
        margin_mm: tissue kept around the tumour's bounding box.
        case_id: the case's name, for messages.

    Raises:
        InputError: shapes differ, the label holds values other than 0-3, or it has no tumour voxel.
    """
    name = case_id or "tumour case"
    images = _stack(images, name)
    label = np.asarray(label)
    brain = np.asarray(brain) != 0
    _check_grid(name, images.shape[1:], label.shape, brain.shape)
    _check_brats_labels(label, name)
    if not np.any(label):
        raise InputError(f"{name}: label has no tumour voxel (every voxel is 0), so there is no tumour to take")
    if not np.any(brain):
        raise InputError(f"{name}: brain mask is empty")
    spacing = _spacing(spacing, name)
    margin = np.ceil(margin_mm / np.asarray(spacing)).astype(int)
    voxels = np.argwhere(label != 0)
    low = np.maximum(voxels.min(axis=0) - margin, 0)
    high = np.minimum(voxels.max(axis=0) + margin + 1, label.shape)
    box = tuple(slice(a, b) for a, b in zip(low, high))
    return TumorRegion(
        images=images[(slice(None),) + box].astype(np.float32),
        label=label[box].astype(np.uint8),
        brain=brain[box].copy(),
        spacing=spacing,
        brain_median=_brain_median(images, brain),
        case_id=case_id,
    )


def _stack(images, name: str) -> np.ndarray:
    if isinstance(images, np.ndarray) and images.ndim == 4:
        stacked = images
    else:
        arrays = [np.asarray(a) for a in images]
        if len({a.shape for a in arrays}) > 1:
            raise InputError(f"{name}: sequences differ in shape: {[a.shape for a in arrays]}")
        stacked = np.stack(arrays)
    if stacked.ndim != 4 or stacked.shape[0] != len(SEQUENCES):
        raise InputError(
            f"{name}: expected {len(SEQUENCES)} 3D sequences ({', '.join(SEQUENCES)}); got an array of shape "
            f"{stacked.shape}"
        )
    if not np.all(np.isfinite(stacked)):
        raise InputError(f"{name}: images hold NaN or infinite values")
    return stacked.astype(np.float32, copy=False)


def _check_grid(name: str, *shapes) -> None:
    if len({tuple(s) for s in shapes}) > 1:
        raise InputError(f"{name}: images, label and brain mask differ in shape: {[tuple(s) for s in shapes]}")


def _check_brats_labels(label: np.ndarray, name: str) -> None:
    values = np.unique(label)
    unknown = [v for v in values.tolist() if v not in (0, *TUMOR_LABELS.values())]
    if unknown:
        raise InputError(f"{name}: label holds {unknown}; BraTS 2023 labels are 0 and {sorted(TUMOR_LABELS.values())}")


def _spacing(spacing: Sequence[float], name: str) -> tuple[float, float, float]:
    values = tuple(float(s) for s in spacing)
    if len(values) != 3 or not all(np.isfinite(values)) or min(values) <= 0:
        raise InputError(f"{name}: spacing must be three positive numbers (mm); got {spacing!r}")
    return values


def _brain_median(images: np.ndarray, brain: np.ndarray) -> np.ndarray:
    return np.array([np.median(channel[brain]) for channel in images], dtype=np.float64)


# ---------------------------------------------------------------------------------------------------------------
# 2. TF-Aug
# ---------------------------------------------------------------------------------------------------------------


class RandTumorAugment(Randomizable):
    """Random spatial, shape and intensity augmentation of a :class:`TumorRegion` (decision 2).

    Args:
        flip_prob: chance of a left-right flip (array axis 0, the BraTS and phantom grids' left-right axis).
        rotate_deg: largest rotation about each axis, degrees.
        scale_range: smallest and largest scale factor per axis.
        elastic_sigma: range of the elastic field's Gaussian sigma, voxels.
        elastic_magnitude: range of its magnitude, voxels.
        gain_range: range of each sequence's tumour gain.
    """

    def __init__(
        self,
        flip_prob: float = 0.5,
        rotate_deg: float = 15.0,
        scale_range: tuple[float, float] = (0.8, 1.25),
        elastic_sigma: tuple[float, float] = (8.0, 12.0),
        elastic_magnitude: tuple[float, float] = (0.0, 4.0),
        gain_range: tuple[float, float] = (0.9, 1.1),
    ) -> None:
        self.flip_prob = float(flip_prob)
        self.rotate_deg = float(rotate_deg)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.elastic_sigma = tuple(float(v) for v in elastic_sigma)
        self.elastic_magnitude = tuple(float(v) for v in elastic_magnitude)
        self.gain_range = (float(gain_range[0]), float(gain_range[1]))

    def __call__(self, region: TumorRegion) -> TumorRegion:
        rng = self.R
        images, label, brain = region.images, region.label, region.brain
        if rng.random() < self.flip_prob:
            images, label, brain = images[:, ::-1], label[::-1], brain[::-1]
        # Room for the largest scale: pad so that a grown tumour is not cut by the box.
        grow = max(self.scale_range[1], 1.0)
        pad = [(0, 0)] + [(int(np.ceil(s * (grow - 1) / 2)) + 1,) * 2 for s in label.shape]
        images = np.pad(images, pad)
        label = np.pad(label, pad[1:])
        brain = np.pad(brain, pad[1:])
        angle = np.deg2rad(self.rotate_deg)
        spatial = Rand3DElasticd(
            keys=("images", "label", "brain"),
            sigma_range=self.elastic_sigma,
            magnitude_range=self.elastic_magnitude,
            prob=1.0,
            rotate_range=(angle, angle, angle),
            # MONAI's scale_range is added to 1: (0.8, 1.25) -> offsets drawn from [-0.2, 0.25]
            scale_range=tuple((self.scale_range[0] - 1.0, self.scale_range[1] - 1.0) for _ in range(3)),
            mode=("bilinear", "nearest", "nearest"),
            padding_mode="zeros",
        )
        spatial.set_random_state(seed=int(rng.randint(2**31)))
        out = spatial(
            {
                "images": torch.from_numpy(np.ascontiguousarray(images)),
                "label": torch.from_numpy(np.ascontiguousarray(label[None].astype(np.float32))),
                "brain": torch.from_numpy(np.ascontiguousarray(brain[None].astype(np.float32))),
            }
        )
        images = np.asarray(out["images"], dtype=np.float32)
        label = np.rint(np.asarray(out["label"])[0]).astype(np.uint8)
        brain = np.asarray(out["brain"])[0] > 0.5
        if np.any(label):
            # A gain per sequence, faded over the tumour's edge so that it makes no edge of its own.
            weight = GaussianSmooth(sigma=1.0)(torch.from_numpy((label[None] > 0).astype(np.float32)))[0]
            gains = rng.uniform(*self.gain_range, size=len(images))
            images = images * (1.0 + (gains[:, None, None, None] - 1.0) * np.asarray(weight)[None])
        return TumorRegion(
            images.astype(np.float32), label, brain, region.spacing, region.brain_median, region.case_id
        )


@dataclass
class TumorPlacement:
    """A region placed into a recipient: the coarse images, the exact label, ``m_roi`` and where it went.

    Attributes:
        images: ``(len(SEQUENCES), x, y, z)`` the coarse tumour-bearing image ``x_s'``.
        label: ``(x, y, z)`` uint8 BraTS labels ``m_s``.
        roi: ``(x, y, z)`` float32, the refiner's blend weight (:func:`roi_weight`); ``m_roi`` is ``roi > 0``.
        centre: voxel index of the placed tumour's centroid.
        inside: share of the region's tumour voxels that landed in the recipient's brain.
    """

    images: np.ndarray
    label: np.ndarray
    roi: np.ndarray
    centre: tuple[int, int, int]
    inside: float


def place_tumor(
    region: TumorRegion,
    images: Sequence[np.ndarray] | np.ndarray,
    brain: np.ndarray,
    spacing: Sequence[float],
    rng: np.random.Generator,
    centre_mask: np.ndarray | None = None,
    feather_mm: float = FEATHER_MM,
    roi_margin_mm: float = REGION_MARGIN_MM,
    name: str = "healthy case",
) -> TumorPlacement:
    """Place ``region`` into a healthy recipient (module docstring, decisions 3-5).

    Args:
        region: the (augmented) tumour region.
        images: the recipient's sequences, each ``(x, y, z)``, in :data:`SEQUENCES` order.
        brain: the recipient's brain mask.
        spacing: the recipient's voxel size, mm; must equal the region's (resample one of them first).
        rng: random generator for the position.
        centre_mask: voxels the tumour's centroid may go to (default: the brain).
        feather_mm: width of the linear blend outside the tumour.
        roi_margin_mm: ``m_roi`` is the tumour grown by this much, inside the brain (:func:`roi_weight`).
        name: the recipient's name, for messages.

    Raises:
        InputError: the recipient's images, brain mask or centre mask do not fit, its spacing differs from the
            region's, its brain or centre mask is empty, or the tumour cannot be placed with any voxel inside.
    """
    images = _stack(images, name)
    brain = np.asarray(brain) != 0
    _check_grid(name, images.shape[1:], brain.shape)
    spacing = _spacing(spacing, name)
    if not np.allclose(spacing, region.spacing, rtol=1e-3):
        raise InputError(
            f"{name}: voxel size {spacing} mm differs from tumour case {region.case_id or '?'}'s {region.spacing} mm; "
            "resample both to one spacing first"
        )
    if not np.any(brain):
        raise InputError(f"{name}: brain mask is empty, so there is nowhere to place a tumour")
    where = brain if centre_mask is None else np.asarray(centre_mask) != 0
    _check_grid(name, brain.shape, where.shape)
    candidates = np.argwhere(where & brain)
    if not len(candidates):
        raise InputError(f"{name}: the centre mask has no voxel inside the brain, so there is nowhere to place a tumour")
    tumour = np.argwhere(region.label != 0)
    if not len(tumour):
        raise InputError(f"tumour case {region.case_id or '?'}: the augmented region has no tumour voxel left")
    centroid = np.rint(tumour.mean(axis=0)).astype(int)

    best, best_inside = None, -1.0
    for _ in range(PLACEMENT_TRIES):
        centre = candidates[rng.integers(len(candidates))]
        target = tumour - centroid + centre
        valid = np.all((target >= 0) & (target < brain.shape), axis=1)
        inside = float(np.count_nonzero(brain[tuple(target[valid].T)])) / len(tumour)
        if inside > best_inside:
            best, best_inside = centre, inside
        if inside >= MIN_INSIDE:
            break
    if best_inside <= 0:
        raise InputError(f"{name}: no placement puts any of tumour case {region.case_id or '?'}'s voxels in the brain")

    # The region's box on the recipient's grid (clipped), and the part of the region that lands there.
    offset = best - centroid
    low = np.maximum(offset, 0)
    high = np.minimum(offset + region.label.shape, brain.shape)
    box = tuple(slice(a, b) for a, b in zip(low, high))
    source = tuple(slice(a - o, b - o) for a, b, o in zip(low, high, offset))
    label = np.zeros(brain.shape, np.uint8)
    label[box] = np.where(brain[box], region.label[source], 0)

    scale = _harmonisation(region, images, brain)
    donor = np.zeros_like(images)
    donor[(slice(None),) + box] = region.images[(slice(None),) + source] * scale[:, None, None, None]
    donor_brain = np.zeros(brain.shape, bool)
    donor_brain[box] = region.brain[source]
    distance = _signed_distance(label != 0, spacing)
    alpha = np.clip(1.0 - distance / feather_mm, 0.0, 1.0) if feather_mm > 0 else (distance <= 0).astype(np.float64)
    alpha = np.where(brain & (donor_brain | (label != 0)), alpha, 0.0).astype(np.float32)
    coarse = images + alpha[None] * (donor - images)
    roi = roi_weight(distance, brain, feather_mm, roi_margin_mm)
    return TumorPlacement(coarse.astype(np.float32), label, roi, tuple(int(v) for v in best), best_inside)


def roi_weight(
    distance_mm: np.ndarray, brain: np.ndarray, feather_mm: float = FEATHER_MM, margin_mm: float = REGION_MARGIN_MM
) -> np.ndarray:
    """The refiner's blend weight (decision 7): 1 up to ``feather_mm`` from the tumour, 0 from ``margin_mm``, linear
    in between, and 0 outside the brain. ``distance_mm`` is the signed distance to the tumour (negative inside)."""
    ramp = np.clip((margin_mm - distance_mm) / max(margin_mm - feather_mm, 1e-6), 0.0, 1.0)
    return np.where(brain, ramp, 0.0).astype(np.float32)


def _harmonisation(region: TumorRegion, images: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Per sequence, recipient's over donor's median brain intensity (decision 3); 1 where the donor's is 0."""
    recipient = _brain_median(images, brain)
    donor = region.brain_median
    return np.where(np.abs(donor) > 0, recipient / np.where(donor == 0, 1.0, donor), 1.0)


def _signed_distance(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Signed distance to the mask's boundary in mm: negative inside, positive outside (SimpleITK, no SciPy)."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(mask.astype(np.uint8))))
    image.SetSpacing(tuple(float(s) for s in spacing))
    distance = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    return np.transpose(sitk.GetArrayFromImage(distance)).astype(np.float64)


class TFAugd(Randomizable, MapTransform):
    """TF-Aug on a healthy case: a random region of ``bank``, augmented, placed into it (decisions 1-5).

    Reads the healthy case's sequences (``(1, x, y, z)`` or ``(x, y, z)`` each, MONAI's channel-first or plain) and
    brain mask; writes the coarse sequences under the same keys, the exact label under ``label_key``, ``m_roi``
    under ``roi_key`` and a record of the placement under ``"tf_aug"``.

    Args:
        bank: tumour regions (:func:`tumor_region`) from the annotated cases.
        spacing: the healthy cases' voxel size, mm.
        sequences: the image keys, in :data:`SEQUENCES` order.
        brain_key, label_key, roi_key: keys of the brain mask (read) and of the label and ``m_roi`` (written).
        centre_key: optional key of a label map whose ``centre_values`` are where the tumour's centroid may go
            (decision 4; the phantom's ``tissue`` and 3, white matter); without values, its non-zero voxels.
        centre_values: see ``centre_key``.
        augment: the region augmentation; None places regions as they are (an ablation).
    """

    def __init__(
        self,
        bank: Sequence[TumorRegion],
        spacing: Sequence[float],
        sequences: Sequence[str] = SEQUENCES,
        brain_key: str = BRAIN,
        label_key: str = LABEL,
        roi_key: str = ROI,
        centre_key: str | None = None,
        centre_values: Sequence[int] = (),
        augment: RandTumorAugment | None = None,
    ) -> None:
        MapTransform.__init__(self, list(sequences) + [brain_key] + ([centre_key] if centre_key else []))
        if not bank:
            raise InputError("TF-Aug needs at least one annotated tumour case; the tumour bank is empty")
        self.bank = list(bank)
        self.spacing = _spacing(spacing, "healthy cases")
        self.sequences = tuple(sequences)
        self.brain_key, self.label_key, self.roi_key, self.centre_key = brain_key, label_key, roi_key, centre_key
        self.centre_values = tuple(int(v) for v in centre_values)
        self.augment = augment

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> TFAugd:
        super().set_random_state(seed, state)
        if self.augment is not None:
            self.augment.set_random_state(seed=int(self.R.randint(2**31)))
        return self

    def randomize(self, data=None) -> None:
        self._index = int(self.R.randint(len(self.bank)))
        self._rng = np.random.default_rng(int(self.R.randint(2**31)))

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        self.randomize()
        d = dict(data)
        name = str(d.get("case_id", "healthy case"))
        missing = [k for k in self.keys if k not in d]
        if missing:
            raise InputError(f"{name}: has no {', '.join(map(str, missing))}")
        channel_first = np.asarray(d[self.sequences[0]]).ndim == 4
        plain = {k: _plain(d[k]) for k in self.keys}
        region = self.bank[self._index]
        if self.augment is not None:
            region = self.augment(region)
        centre = None
        if self.centre_key is not None:
            centre = _plain(d[self.centre_key])
            centre = np.isin(centre, self.centre_values) if self.centre_values else centre != 0
        placed = place_tumor(
            region, [plain[s] for s in self.sequences], plain[self.brain_key], self.spacing, self._rng, centre, name=name
        )
        for i, key in enumerate(self.sequences):
            d[key] = _like(d[key], placed.images[i], channel_first)
        d[self.label_key] = _like(d[self.brain_key], placed.label, channel_first)
        d[self.roi_key] = _like(d[self.brain_key], placed.roi, channel_first)
        d["tf_aug"] = {"tumor_case": region.case_id, "centre_voxel": list(placed.centre), "inside": placed.inside}
        return d


def _plain(value) -> np.ndarray:
    array = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
    return array[0] if array.ndim == 4 else array


def _like(template, array: np.ndarray, channel_first: bool):
    """``array`` in the form of ``template``: a channel axis when it had one; a MetaTensor keeps its affine and meta."""
    out = np.ascontiguousarray(array[None] if channel_first else array)
    if isinstance(template, MetaTensor):
        meta = {k: v for k, v in template.meta.items() if k != "affine"}
        return MetaTensor(torch.from_numpy(out), affine=template.affine, meta=meta)
    return torch.from_numpy(out) if isinstance(template, torch.Tensor) else out


# ---------------------------------------------------------------------------------------------------------------
# 3. CarveMix (the baseline)
# ---------------------------------------------------------------------------------------------------------------


def carvemix(
    images_a: Sequence[np.ndarray] | np.ndarray,
    label_a: np.ndarray,
    images_b: Sequence[np.ndarray] | np.ndarray,
    label_b: np.ndarray,
    spacing: Sequence[float],
    rng: np.random.Generator,
    names: tuple[str, str] = ("case A", "case B"),
) -> tuple[np.ndarray, np.ndarray, float]:
    """CarveMix: carve B's tumour with a random margin and put it, in place, into A (image and label alike).

    Zhang et al., MICCAI 2021, arXiv 2108.06883, as its authors' code does it: the signed distance ``D`` to B's
    tumour in mm (negative inside, both sides moved one unit towards the boundary), ``lambda ~ U(-|min D| / 2,
    |min D|)`` (negative: a core shrunk inside the tumour; positive: the tumour with a margin of tissue), the carved
    region ``M = D < lambda``, and ``new = A (1 - M) + B M`` for the images and the labels. A and B share one grid
    (BraTS cases are co-registered to one atlas); A may be a healthy scan (label all 0).

    Returns:
        the mixed images ``(len(SEQUENCES), x, y, z)``, the mixed label and the drawn ``lambda`` (mm).

    Raises:
        InputError: the cases differ in shape, a label is not BraTS's, or B has no tumour.
    """
    images_a, images_b = _stack(images_a, names[0]), _stack(images_b, names[1])
    label_a, label_b = np.asarray(label_a), np.asarray(label_b)
    _check_grid(f"{names[0]} and {names[1]}", images_a.shape[1:], label_a.shape, images_b.shape[1:], label_b.shape)
    _check_brats_labels(label_a, names[0])
    _check_brats_labels(label_b, names[1])
    if not np.any(label_b):
        raise InputError(f"{names[1]}: label has no tumour voxel, so there is no tumour to carve")
    tumour = label_b != 0
    distance = _signed_distance(tumour, _spacing(spacing, names[1]))
    # The reference code's D = -(edt_inside - 1) inside and edt_outside - 1 outside (SciPy's distance to the nearest
    # voxel of the other side, in mm). SimpleITK's map is 0 on the boundary voxels inside, -s one voxel deeper, and
    # s on the first voxels outside (s the voxel size): the same up to these shifts on an isotropic grid.
    step = min(_spacing(spacing, names[1]))
    distance = np.where(tumour, distance - step + 1.0, distance - 1.0)
    depth = abs(float(distance.min()))
    lam = float(rng.uniform(-0.5 * depth, depth))
    carved = distance < lam
    mixed = np.where(carved[None], images_b, images_a).astype(np.float32)
    label = np.where(carved, label_b, label_a).astype(np.uint8)
    return mixed, label, lam


# ---------------------------------------------------------------------------------------------------------------
# 4. TF-GAN: the refiner's input, patches, the frozen extractor and the loss terms
# ---------------------------------------------------------------------------------------------------------------

CLASSES = 1 + len(TUMOR_LABELS)  # background and the three subregions
CONDITION_CHANNELS = len(SEQUENCES) + len(TUMOR_LABELS) + 1  # coarse image, label one-hot (1-3), ROI weight
HEADROOM = 2.0  # decision 6: enhancing tumour reaches ~1.8x the brain's 99.5th percentile on t1c (phantom)
CONDITION, REAL, REAL_LABEL = "image", "real", "real_label"


def refiner_condition(images: torch.Tensor, label: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The refiner's input ``(B, 8, ...)``: the coarse image (4), the label one-hot without background (3), the ROI
    weight (1, last, as :class:`synthmr.nets.ROIRefiner` reads it)."""
    one_hot = torch.cat([(label == value).to(images.dtype) for value in TUMOR_LABELS.values()], dim=1)
    return torch.cat([images, one_hot, weight.to(images.dtype)], dim=1)


def sequence_scalings(images: np.ndarray, outside: np.ndarray) -> list[IntensityScaling]:
    """Each sequence's map to the refiner's range (decision 6), fitted on the voxels ``outside`` the tumour's ROI:
    the healthy tissue sets the scale, whatever the ROI holds (a coarse tumour, a real one, a blank)."""
    return [
        IntensityScaling.fit(channel[outside], HEADROOM, name=name, low_over="image")
        for name, channel in zip(SEQUENCES, images)
    ]


def outside_roi(label: np.ndarray, spacing: Sequence[float], margin_mm: float = REGION_MARGIN_MM) -> np.ndarray:
    """The voxels farther than ``margin_mm`` from the tumour (every voxel when there is none)."""
    if not np.any(label):
        return np.ones(label.shape, bool)
    return _signed_distance(label > 0, spacing) > margin_mm


def _scaled(images: np.ndarray, outside: np.ndarray) -> np.ndarray:
    scalings = sequence_scalings(images, outside)
    return np.stack([s.forward(channel) for s, channel in zip(scalings, images)]).astype(np.float32)


class ScaledSequencesd(MapTransform):
    """The four sequences stacked into one ``(4, x, y, z)`` image under ``out_key`` and scaled as the refiner sees
    them (decision 6, the scale set outside the ROI of the tumour in ``label_key``): what the feature extractor
    ``F`` is trained on, so that its features mean the same on the refiner's patches.

    Args:
        spacing: the cases' voxel size, mm.
        sequences, label_key, out_key: the keys read and written.
    """

    def __init__(
        self, spacing: Sequence[float], sequences: Sequence[str] = SEQUENCES, label_key: str = LABEL, out_key: str = "image"
    ) -> None:
        super().__init__(list(sequences))
        self.spacing, self.label_key, self.out_key = _spacing(spacing, "cases"), label_key, out_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = {k: v for k, v in data.items() if k not in self.keys}
        images = np.stack([_plain(data[k]) for k in self.keys]).astype(np.float32)
        outside = outside_roi(_plain(data[self.label_key]), self.spacing)
        d[self.out_key] = torch.from_numpy(_scaled(images, outside))
        return d


def _patch(arrays: Sequence[np.ndarray], fills: Sequence[float], centre: np.ndarray, size: Sequence[int]) -> list[np.ndarray]:
    """Cut ``size`` voxels centred on ``centre`` out of each array (channel axis first, or none), padding with
    ``fills`` where the box leaves the volume."""
    shape = np.asarray(arrays[0].shape[-3:])
    size = np.asarray(size)
    low = np.asarray(centre) - size // 2
    src = [slice(max(a, 0), min(a + n, m)) for a, n, m in zip(low, size, shape)]
    dst = [slice(s.start - a, s.stop - a) for s, a in zip(src, low)]
    out = []
    for array, fill in zip(arrays, fills):
        patch = np.full(array.shape[:-3] + tuple(size), fill, dtype=array.dtype)
        patch[(...,) + tuple(dst)] = array[(...,) + tuple(src)]
        out.append(patch)
    return out


def _scaled_annotated(
    real_cases: Sequence[tuple[np.ndarray, np.ndarray]], spacing: Sequence[float], purpose: str
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Annotated cases as ``(scaled images, label, ROI weight)``, scaled as the refiner sees them (decision 6)."""
    if not real_cases:
        raise InputError(f"{purpose} needs at least one annotated tumour case; got none")
    spacing = _spacing(spacing, "annotated cases")
    prepared = []
    for index, (images, label) in enumerate(real_cases):
        label = np.asarray(label, np.uint8)
        if not np.any(label):
            raise InputError(f"annotated case {index}: label has no tumour voxel")
        distance = _signed_distance(label > 0, spacing)
        images = _scaled(np.asarray(images, np.float32), distance > REGION_MARGIN_MM)
        prepared.append((images, label, roi_weight(distance, np.any(images > -1.0, axis=0))))
    return prepared


def _around_tumor(arrays: Sequence[np.ndarray], fills: Sequence[float], label: np.ndarray, shift: np.ndarray,
                  size: Sequence[int]) -> list[np.ndarray]:
    """:func:`_patch` centred on the tumour's centroid moved by ``shift`` voxels."""
    return _patch(arrays, fills, np.rint(np.argwhere(label > 0).mean(axis=0)).astype(int) + shift, size)


class TumorPatchesd(Randomizable, MapTransform):
    """Training pairs for TF-GAN from a case that :class:`TFAugd` has just made (decision 8).

    Scales the coarse sequences (decision 6), cuts a ``size`` patch around the placed tumour's centroid (moved by
    up to ``jitter`` voxels per axis, so the tumour is not always central) and writes the refiner's input under
    :data:`CONDITION` and the patch's ``label`` and ``roi``; from one of the annotated ``real_cases`` (drawn
    uniformly) it cuts a patch the same way and writes it under :data:`REAL` and :data:`REAL_LABEL`: the unpaired
    real tumour the discriminator and the class-wise perceptual loss compare against.

    Args:
        real_cases: annotated cases as ``(images (4, x, y, z), label)`` arrays, in the recipients' units.
        spacing: the voxel size of the cases, mm.
        size: patch size, voxels.
        jitter: largest shift of the patch centre per axis, voxels.
        sequences, label_key, roi_key: keys TF-Aug wrote.
    """

    def __init__(
        self,
        real_cases: Sequence[tuple[np.ndarray, np.ndarray]],
        spacing: Sequence[float],
        size: Sequence[int] = (48, 48, 48),
        jitter: int = 8,
        sequences: Sequence[str] = SEQUENCES,
        label_key: str = LABEL,
        roi_key: str = ROI,
    ) -> None:
        MapTransform.__init__(self, list(sequences) + [label_key, roi_key])
        self.real = _scaled_annotated(real_cases, spacing, "TF-GAN, to compare against,")
        self.size = tuple(int(v) for v in size)
        self.jitter = int(jitter)
        self.sequences, self.label_key, self.roi_key = tuple(sequences), label_key, roi_key

    def randomize(self, data=None) -> None:
        self._shifts = self.R.randint(-self.jitter, self.jitter + 1, size=(2, 3))
        self._real = int(self.R.randint(len(self.real)))

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        self.randomize()
        d = dict(data)
        label = _plain(d[self.label_key]).astype(np.uint8)
        roi = _plain(d[self.roi_key]).astype(np.float32)
        images = _scaled(np.stack([_plain(d[s]) for s in self.sequences]).astype(np.float32), roi == 0)
        images, label, roi = _around_tumor([images, label, roi], [-1.0, 0, 0.0], label, self._shifts[0], self.size)
        x, y, w = (torch.from_numpy(a[None] if a.ndim == 4 else a[None, None]) for a in (images, label, roi))
        condition = refiner_condition(x, y, w)
        real_images, real_label, _ = self.real[self._real]
        real_images, real_label = _around_tumor([real_images, real_label], [-1.0, 0], real_label, self._shifts[1],
                                                self.size)
        out = {k: v for k, v in d.items() if k not in (*self.sequences, self.label_key, self.roi_key)}
        out.update(
            {
                CONDITION: condition[0],
                LABEL: torch.from_numpy(label[None]),
                ROI: torch.from_numpy(roi[None]),
                REAL: torch.from_numpy(real_images),
                REAL_LABEL: torch.from_numpy(real_label[None]),
            }
        )
        return out


def inpainting_condition(images: torch.Tensor, label: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The Pix2Pix baseline's input (decision 12): :func:`refiner_condition` with the image set to 0 (mid-range)
    where the ROI weight is 1 (the tumour and its seam), so the network sees the label and the tissue around it,
    never the tumour it must draw."""
    return refiner_condition(torch.where(weight >= 1.0, torch.zeros_like(images), images), label, weight)


class PairedTumorPatchesd(Randomizable):
    """Training pairs of the Pix2Pix baseline (decision 12) from the annotated cases alone: a ``size`` patch around
    a real tumour (moved by up to ``jitter`` voxels), its ROI weight from its own label (:func:`roi_weight`), the
    in-painting input under :data:`CONDITION` and the real patch under ``"target"``.

    Applied to any item (its content is ignored; use a datalist of the annotated cases for one pair per case and
    epoch), it draws the case uniformly.

    Args:
        real_cases: annotated cases as ``(images (4, x, y, z), label)`` arrays.
        spacing: their voxel size, mm.
        size, jitter: as :class:`TumorPatchesd`.
    """

    def __init__(
        self,
        real_cases: Sequence[tuple[np.ndarray, np.ndarray]],
        spacing: Sequence[float],
        size: Sequence[int] = (48, 48, 48),
        jitter: int = 8,
    ) -> None:
        self.cases = _scaled_annotated(real_cases, spacing, "Pix2Pix, to learn from,")
        self.size, self.jitter = tuple(int(v) for v in size), int(jitter)

    def randomize(self, data=None) -> None:
        self._case = int(self.R.randint(len(self.cases)))
        self._shift = self.R.randint(-self.jitter, self.jitter + 1, size=3)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        self.randomize()
        images, label, roi = self.cases[self._case]
        images, label, roi = _around_tumor([images, label, roi], [-1.0, 0, 0.0], label, self._shift, self.size)
        x, y, w = torch.from_numpy(images[None]), torch.from_numpy(label[None, None]), torch.from_numpy(roi[None, None])
        return {CONDITION: inpainting_condition(x, y, w)[0], "target": x[0], LABEL: y[0], ROI: w[0]}


class EncoderFeatures(nn.Module):
    """The frozen feature extractor ``F``: the encoder levels of a trained MONAI ``SegResNet`` (decision 9)."""

    def __init__(self, network: SegResNet) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.network.encode(x)[1]


def feature_segmenter(init_filters: int = 8) -> SegResNet:
    """The network ``F`` is trained as (decision 9): a small 3D ``SegResNet`` segmenting the four subregions from the
    four sequences."""
    return SegResNet(spatial_dims=3, init_filters=init_filters, in_channels=len(SEQUENCES), out_channels=CLASSES)


def load_feature_extractor(path: str | os.PathLike | None, init_filters: int = 8) -> EncoderFeatures:
    """``F`` from a weights file: the bundle's ``models/feature_extractor.pt`` or a user's own (a ``SegResNet``
    state dict of :func:`feature_segmenter`'s layout).

    Raises:
        InputError: no file given, the file is missing or unreadable, or its layers do not fit.
    """
    how = (
        "train one with configs/train_extractor.yaml (python -m monai.bundle run ... train_extractor.yaml), "
        "or pass your own SegResNet weights as --extractor_weights PATH"
    )
    if path is None or not Path(path).is_file():
        raise InputError(f"feature extractor weights {path}: no such file. The class-wise perceptual loss needs them: {how}")
    network = feature_segmenter(init_filters)
    try:
        load_weights(network, path)
    except InputError as error:
        raise InputError(f"feature extractor weights: {error}; {how}") from None
    return EncoderFeatures(network)


def realism(adversarial: Callable) -> Callable:
    """The adversarial loss on the dual-head discriminator's realism head (what :class:`PairedGanTrainer` calls)."""
    return lambda output, target_is_real, for_discriminator: adversarial(output.realism, target_is_real, for_discriminator)


def subregion_loss(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the subregion head against the label's class mix per patch (soft targets: the share of each
    class in the patch's cells, by area averaging the one-hot label to the head's size)."""
    one_hot = torch.cat([(label == value).to(logits.dtype) for value in range(CLASSES)], dim=1)
    targets = F.interpolate(one_hot, size=logits.shape[2:], mode="area")
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def discriminator_subregions(d_real, d_fake, batch: Mapping) -> torch.Tensor:
    """D's subregion head learns on the real annotated patches only (decision 10)."""
    return subregion_loss(d_real.subregions, batch[REAL_LABEL])


def generator_subregions(step: GanStep) -> torch.Tensor:
    """G is asked that D's subregion head read its refined patch as the label it was made from (decision 10)."""
    return subregion_loss(step.d_fake.subregions, step.batch[LABEL])


def non_tumor_hinge(margin: float = 0.1) -> Callable[[GanStep], torch.Tensor]:
    """``L_n-roi``: hinge L1 between the refined and the coarse image on the non-tumour voxels of the ROI (outside
    the ROI the refiner cannot change anything, decision 7)."""

    def term(step: GanStep) -> torch.Tensor:
        region = ((step.batch[LABEL] == 0) & (step.batch[ROI] > 0)).to(step.fake.dtype)
        return hinge_l1(step.fake, step.condition[:, : len(SEQUENCES)], region, margin)

    return term


def tumor_perceptual(loss: ClassWisePerceptualLoss) -> Callable[[GanStep], torch.Tensor]:
    """``L_roi``: the class-wise perceptual loss of the refined tumour subregions against the unpaired real ones."""
    return lambda step: loss(step.fake, step.batch[LABEL], step.batch[REAL], step.batch[REAL_LABEL])


# ---------------------------------------------------------------------------------------------------------------
# 5. Inference: refine the ROI of a coarse case, leave every other voxel as it was
# ---------------------------------------------------------------------------------------------------------------

SIZE_MULTIPLE = 8  # the refiner's U-Net halves the patch three times


def refine_roi(
    refiner: nn.Module,
    images: np.ndarray,
    label: np.ndarray,
    roi: np.ndarray,
    spacing: Sequence[float],
    model_spacing: Sequence[float] | None = None,
    device: torch.device | str = "cpu",
    inpaint: bool = False,
) -> np.ndarray:
    """TF-GAN's refinement of a coarse case (decisions 6, 7 and 11): only voxels with ``roi > 0`` change.

    The ROI's bounding box is cut out, resampled to ``model_spacing`` when the case's voxels differ from those the
    refiner was trained on (trilinear for images and weight, nearest for the label), scaled to the refiner's
    range with each sequence's scaling over the whole volume, refined, mapped back and resampled to the case's
    grid; the result replaces the coarse voxels where ``roi > 0`` and nowhere else.

    Args:
        refiner: :class:`synthmr.nets.ROIRefiner` taking :func:`refiner_condition`'s input.
        images: coarse sequences ``(4, x, y, z)``.
        label: BraTS labels ``(x, y, z)``.
        roi: blend weight ``(x, y, z)`` (:func:`roi_weight`).
        spacing: the case's voxel size, mm.
        model_spacing: the voxel size the refiner was trained at (None: the case's).
        device: where the refiner runs.
        inpaint: blank the image where ``roi == 1`` before the network sees it (:func:`inpainting_condition`): the
            Pix2Pix baseline, which draws the tumour from its label and the surrounding tissue alone.

    Returns:
        the refined sequences ``(4, x, y, z)`` float32, equal to ``images`` bit for bit where ``roi == 0``.
    """
    images = np.asarray(images, np.float32)
    inside = np.argwhere(roi > 0)
    if not len(inside):
        return images.copy()
    scalings = sequence_scalings(images, roi == 0)
    low, high = inside.min(axis=0), inside.max(axis=0) + 1
    box = tuple(slice(a, b) for a, b in zip(low, high))
    scaled = np.stack([s.forward(channel[box]) for s, channel in zip(scalings, images)]).astype(np.float32)
    crop_label, crop_roi = label[box], roi[box].astype(np.float32)
    size = np.asarray(crop_label.shape)
    ratio = np.ones(3) if model_spacing is None else np.asarray(spacing, float) / np.asarray(model_spacing, float)
    model_size = np.maximum(np.rint(size * ratio).astype(int), 1)
    padded = (np.ceil(model_size / SIZE_MULTIPLE) * SIZE_MULTIPLE).astype(int)

    def to_model(array: np.ndarray, mode: str) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
        if tuple(model_size) != tuple(size):
            corners = {} if mode == "nearest" else {"align_corners": False}
            tensor = F.interpolate(tensor, size=tuple(model_size), mode=mode, **corners)
        return tensor

    x = to_model(scaled, "trilinear")
    y = to_model(crop_label[None], "nearest")
    w = to_model(crop_roi[None], "trilinear")
    pad = [v for extra in reversed(padded - model_size) for v in (0, int(extra))]
    make = inpainting_condition if inpaint else refiner_condition
    condition = make(F.pad(x, pad, value=-1.0), F.pad(y, pad), F.pad(w, pad))
    refiner.eval()
    with torch.no_grad():
        refined = refiner(condition.to(device)).float().cpu()
    refined = refined[(slice(None), slice(None)) + tuple(slice(0, int(n)) for n in model_size)]
    if tuple(model_size) != tuple(size):
        refined = F.interpolate(refined, size=tuple(size), mode="trilinear", align_corners=False)
    refined = refined[0].numpy()
    out = images.copy()
    changed = crop_roi > 0
    for channel, scaling in enumerate(scalings):
        view = out[channel][box]
        view[changed] = scaling.inverse(refined[channel][changed])
    return out


# ---------------------------------------------------------------------------------------------------------------
# 6. New cases: healthy scans + annotated tumours -> tumour-bearing cases (generate, the downstream harness)
# ---------------------------------------------------------------------------------------------------------------

MODES = ("tf", "tf_aug", "carvemix", "pix2pix")  # the method, its ablation, the two baselines


def _read_case(item: Mapping, keys: Sequence[str], name: str) -> dict[str, Volume]:
    missing = [key for key in keys if key not in item]
    if missing:
        raise InputError(f"{name}: lacks {', '.join(repr(k) for k in missing)}")
    volumes = {key: read_image(item[key]) for key in keys}
    reference = volumes[keys[0]]
    for key, volume in volumes.items():
        if volume.array.ndim != 3:
            raise InputError(f"{name}: {item[key]} is not a 3D volume (shape {volume.array.shape})")
        if not volume.same_grid(reference):
            raise InputError(f"{name}: {item[key]} is not on the grid of {item[keys[0]]}")
    return volumes


def fabricate(
    images: np.ndarray,
    brain: np.ndarray,
    spacing: Sequence[float],
    source_images: np.ndarray,
    source_label: np.ndarray,
    source_brain: np.ndarray,
    source_spacing: Sequence[float],
    rng: np.random.Generator,
    augment: RandTumorAugment | None = None,
    refiner: nn.Module | None = None,
    model_spacing: Sequence[float] | None = None,
    device: torch.device | str = "cpu",
    centre_mask: np.ndarray | None = None,
    name: str = "healthy case",
    source_id: str = "",
    inpaint: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """One tumour-bearing case: the source's tumour region, augmented (unless ``augment`` is None), placed into the
    healthy ``images`` (TF-Aug) and, with a ``refiner``, refined inside its ROI (TF-GAN; with ``inpaint``, drawn
    there by the Pix2Pix baseline).

    Returns:
        the images ``(4, x, y, z)`` in the healthy case's units, the BraTS label ``(x, y, z)`` uint8, and what was
        drawn (the tumour's centre voxel and the share of it inside the brain).
    """
    region = tumor_region(source_images, source_label, source_brain, source_spacing, case_id=source_id)
    if augment is not None:
        augment.set_random_state(seed=int(rng.integers(2**31)))
        region = augment(region)
    placed = place_tumor(region, images, brain, spacing, rng, centre_mask=centre_mask, name=name)
    out = placed.images
    if refiner is not None:
        out = refine_roi(refiner, out, placed.label, placed.roi, spacing, model_spacing, device, inpaint=inpaint)
    return out, placed.label, {"centre_voxel": list(placed.centre), "inside": placed.inside}


class FabricatedCases:
    """Tumour-bearing cases made from healthy scans and annotated tumour cases (``synthmr generate`` and the
    downstream harness's ``synthesize``).

    New case ``i`` takes healthy scan ``i % len(healthy)`` (round robin) and a tumour case drawn from the sources,
    with every draw depending only on ``(seed, i)``, so a set is reproducible from its seed. ``mode``:

    - ``"tf"``: TF-Aug then TF-GAN's refinement of the ROI (the method);
    - ``"tf_aug"``: TF-Aug alone (the ablation: the coarse case);
    - ``"carvemix"``: CarveMix of the tumour case into the healthy scan (the baseline; the grids must match);
    - ``"pix2pix"``: TF-Aug places the label, the Pix2Pix baseline in-paints its ROI (decision 12).

    Each case is ``<out_dir>/case_NNNNN/{t1n, t1c, t2w, t2f, label}.nii.gz`` on its healthy scan's grid, with
    ``datalist.json``; the folder appears whole or not at all.

    Args:
        healthy: datalist items of healthy scans with the four sequences and ``brain``.
        mode: one of :data:`MODES`.
        refiner: the trained :class:`synthmr.nets.ROIRefiner`: TF-GAN's (``"tf"``) or Pix2Pix's (``"pix2pix"``).
        model_spacing: the voxel size the refiner was trained at.
        centre_key, centre_values: a label map of the healthy scans and its values where tumours may be centred
            (the phantom's ``tissue`` and 3, white matter); None: anywhere in the brain.
        augment: TF-Aug's region augmentation (default :class:`RandTumorAugment`'s).
        device: where the refiner runs.
        progress: optional ``progress(done, total)`` after each case.
    """

    def __init__(
        self,
        healthy: Sequence[Mapping],
        mode: str = "tf",
        refiner: nn.Module | None = None,
        model_spacing: Sequence[float] | None = None,
        centre_key: str | None = None,
        centre_values: Sequence[int] = (),
        augment: RandTumorAugment | None = None,
        device: str | torch.device = "cpu",
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        if mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        if mode in ("tf", "pix2pix") and refiner is None:
            raise InputError(f"mode {mode!r} runs a trained network: give it as the refiner")
        self.healthy = [dict(item) for item in healthy]
        if not self.healthy:
            raise InputError("no healthy scan to place tumours into: the healthy datalist is empty")
        self.mode, self.device = mode, torch.device(device)
        self.refiner = refiner if mode in ("tf", "pix2pix") else None
        self.model_spacing = None if model_spacing is None else tuple(float(s) for s in model_spacing)
        self.centre_key, self.centre_values = centre_key, tuple(int(v) for v in centre_values)
        self.augment = augment if augment is not None else RandTumorAugment()
        self.progress = progress

    def describe(self) -> dict:
        """What the downstream-benefit harness records of this synthesizer."""
        from synthmr.evaluation.synthesizers import weights_digest

        return {
            "kind": "FabricatedCases", "mode": self.mode, "healthy_cases": len(self.healthy),
            "weights_sha256": None if self.refiner is None else weights_digest(self.refiner),
            "augment": {k: v for k, v in vars(self.augment).items() if not k.startswith("_") and k != "R"},
        }

    def __call__(self, subset: Sequence[Mapping], n: int, out_dir: Path, seed: int) -> list[dict]:
        """The harness's ``synthesize``: ``n`` cases from the annotated ``subset``, as ``{"case_id", "image",
        "label"}`` items (the four sequences as channels)."""
        items = self.generate(subset, n, out_dir, seed=seed)
        return [{"case_id": item["case_id"], "image": [item[s] for s in SEQUENCES], "label": item[LABEL]} for item in items]

    def generate(
        self, sources: Sequence[Mapping], n: int, out_dir: str | os.PathLike, seed: int = 0, overwrite: bool = False,
        provenance: Mapping | None = None,
    ) -> list[dict]:
        """Write ``n`` new cases and ``out_dir/datalist.json``; return its items (absolute paths).

        Args:
            sources: annotated tumour cases: the four sequences, ``label`` (BraTS) and ``brain``.
            n: how many new cases.
            out_dir: a new or empty folder (or any folder with ``overwrite``).
            seed: the set's seed, 0 to 2**32 - 1.
            overwrite: replace an existing ``out_dir`` once the new set is complete.
            provenance: what the manifest records first (the bundle's name and version, from generate.yaml).
        """
        from synthmr.generation import case_id, case_seed, check_set_size_and_seed, digest, write_case_set
        from synthmr.provenance import record, write_synthetic

        check_set_size_and_seed(n, seed)
        if not sources:
            raise InputError("no annotated tumour case to take tumours from: the source datalist is empty")
        tumours = []
        for index, item in enumerate(sources):
            name = f"tumour case {item.get('case_id', index)!r}"
            case = _read_case(item, [*SEQUENCES, LABEL, *([BRAIN] if BRAIN in item else [])], name)
            tumours.append((str(item.get("case_id", index)), case))
        sources_by_id = {str(item.get("case_id", index)): item for index, item in enumerate(sources)}
        centre_keys = [self.centre_key] if self.centre_key else []

        def make(indices: Sequence[int], folder: Path) -> list[dict]:
            """Each case: its healthy scan (round robin), a tumour case and every draw from (seed, i)."""
            items = []
            for i in indices:
                rng = np.random.default_rng(case_seed(seed, i))
                h_index = i % len(self.healthy)
                h_item = self.healthy[h_index]
                h_name = f"healthy case {h_item.get('case_id', h_index)!r}"
                healthy = _read_case(h_item, [*SEQUENCES, *([BRAIN] if BRAIN in h_item else []), *centre_keys], h_name)
                source_id, source = tumours[int(rng.integers(len(tumours)))]
                images, label, drawn = self._one(healthy, source, source_id, rng, h_name)
                grid = healthy[SEQUENCES[0]]
                made = record(provenance or {}, {**{f"healthy_{k}": h_item[k] for k in SEQUENCES},
                                                 **{f"tumor_{k}": sources_by_id[source_id][k] for k in (*SEQUENCES, LABEL)}},
                              seed=case_seed(seed, i), mode=self.mode)
                for channel, key in enumerate(SEQUENCES):
                    write_synthetic(grid.with_array(images[channel]), folder / case_id(i) / f"{key}.nii.gz",
                                    {**made, "output": key})
                write_synthetic(grid.with_array(label), folder / case_id(i) / f"{LABEL}.nii.gz", {**made, "output": LABEL})
                items.append({"case_id": case_id(i), **{k: f"{case_id(i)}/{k}.nii.gz" for k in (*SEQUENCES, LABEL)},
                              "healthy_case": str(h_item.get("case_id", h_index)), "tumor_case": source_id,
                              "seed": case_seed(seed, i), **drawn})
            return items

        return write_case_set(
            make, n, out_dir, seed, overwrite=overwrite, file_keys=[*SEQUENCES, LABEL],
            description=f"{n} tumour-bearing cases made by synthmr (brain_tumor_fabrication, mode {self.mode})",
            identity={**(provenance or {}), **self.describe(), "sources_sha256": digest([dict(s) for s in sources]),
                      "healthy_sha256": digest(self.healthy)},
            progress=self.progress,
        )

    def _one(self, healthy: dict[str, Volume], source: dict[str, Volume], source_id: str, rng, name: str):
        spacing = healthy[SEQUENCES[0]].spacing
        images = np.stack([healthy[s].array for s in SEQUENCES]).astype(np.float32)
        brain = _brain_or_foreground(healthy, images, BRAIN)  # skull-stripped scans need no brain mask
        source_images = np.stack([source[s].array for s in SEQUENCES]).astype(np.float32)
        if self.mode == "carvemix":
            if not source[LABEL].same_grid(healthy[SEQUENCES[0]]):
                raise InputError(f"{name} and tumour case {source_id!r}: CarveMix mixes in place and needs one grid")
            mixed, label, lam = carvemix(images, np.zeros(brain.shape, np.uint8), source_images,
                                         source[LABEL].array, spacing, rng, (name, f"tumour case {source_id!r}"))
            return mixed, label, {"lambda_mm": lam}
        centre = None
        if self.centre_key:
            array = healthy[self.centre_key].array
            centre = np.isin(array, self.centre_values) if self.centre_values else array != 0
        return fabricate(
            images, brain, spacing, source_images, source[LABEL].array,
            _brain_or_foreground(source, source_images, BRAIN), source[LABEL].spacing,
            rng, self.augment, self.refiner if self.mode in ("tf", "pix2pix") else None, self.model_spacing,
            self.device, centre, name, source_id, inpaint=self.mode == "pix2pix",
        )


def load_annotated(items: Sequence[Mapping]) -> tuple[list[TumorRegion], list[tuple[np.ndarray, np.ndarray]]]:
    """The annotated tumour cases of a datalist (the four sequences, ``label`` and ``brain``; without ``brain``, the
    voxels where a sequence is not 0, as in skull-stripped BraTS cases), read once, as TF-Aug's
    tumour regions and as the whole ``(images, label)`` arrays :class:`TumorPatchesd` cuts real patches from.

    Raises:
        InputError: the list is empty, or a case lacks a key, is not 3D, mixes grids or has no tumour.
    """
    if not items:
        raise InputError("no annotated tumour case: the datalist is empty")
    regions, reals = [], []
    for index, item in enumerate(items):
        case_id = str(item.get("case_id", index))
        keys = [*SEQUENCES, LABEL, *([BRAIN] if BRAIN in item else [])]  # BraTS ships no brain mask
        case = _read_case(item, keys, f"tumour case {case_id!r}")
        images = np.stack([case[s].array for s in SEQUENCES]).astype(np.float32)
        brain = _brain_or_foreground(case, images, BRAIN)
        regions.append(tumor_region(images, case[LABEL].array, brain, case[LABEL].spacing, case_id=case_id))
        reals.append((images, case[LABEL].array.astype(np.uint8)))
    return regions, reals


# ---------------------------------------------------------------------------------------------------------------
# 7. The bundle's inference: one healthy case and one tumour case in, the tumour-bearing case and its label out
# ---------------------------------------------------------------------------------------------------------------

TUMOR_PREFIX = "tumor_"  # the tumour case's roles: tumor_t1n ... tumor_t2f, tumor_label, tumor_brain
PLACEMENT = "placement"  # optional label map: where the tumour's centre may go
INFERENCE_INPUTS = (
    *SEQUENCES, BRAIN, *(TUMOR_PREFIX + s for s in SEQUENCES), TUMOR_PREFIX + LABEL, TUMOR_PREFIX + BRAIN, PLACEMENT
)
INFERENCE_LABELMAPS = (BRAIN, TUMOR_PREFIX + LABEL, TUMOR_PREFIX + BRAIN, PLACEMENT)
INFERENCE_OPTIONAL = (BRAIN, TUMOR_PREFIX + BRAIN, PLACEMENT)
INFERENCE_OUTPUTS = (*SEQUENCES, LABEL)


def _brain_or_foreground(volumes: Mapping[str, Volume], images: np.ndarray, key: str) -> np.ndarray:
    """The given brain mask, or (skull-stripped images, as BraTS) every voxel where some sequence is not 0."""
    return volumes[key].array != 0 if key in volumes else np.any(images != 0, axis=0)


def _inference_kwargs() -> dict:
    return {
        "inputs": list(INFERENCE_INPUTS),
        "outputs": list(INFERENCE_OUTPUTS),
        "labelmaps": list(INFERENCE_LABELMAPS),
        "optional": list(INFERENCE_OPTIONAL),
        "output_labelmaps": [LABEL],
        "spatial_dims": 3,
        "roi_size": (128, 128, 128),  # unused: the refiner runs once on each ROI (refine_roi)
    }


class TumorFabricator(Synthesizer):
    """What ``inference.yaml`` runs: for every case, the tumour of its tumour case placed into its healthy scan by
    TF-Aug and refined by TF-GAN (:func:`fabricate`); writes the four sequences and ``label`` on the healthy scan's
    grid. Every voxel outside the refined ROI is the healthy scan's (plus the placed tumour: TF-Aug's coarse
    image), and every input is read and checked, and every output path refused if it exists, before any work
    (:class:`synthmr.inference.Synthesizer`).

    A case (datalist item) names the healthy scan's ``t1n``, ``t1c``, ``t2w``, ``t2f`` (and optionally ``brain``),
    the tumour case's ``tumor_t1n`` ... ``tumor_t2f``, ``tumor_label`` (BraTS 2023 labels) and optionally
    ``tumor_brain``, all on one grid, and optionally ``placement``, a label map of where the tumour's centre may
    go (default: anywhere in the brain). Brain masks default to the voxels where a sequence is not 0
    (skull-stripped images).

    Args:
        network: the trained :class:`synthmr.nets.ROIRefiner`.
        datalist, output_dir, device, overwrite, progress: as :class:`synthmr.inference.Synthesizer`.
        model_spacing: the voxel size the refiner was trained at (mm).
        seed: the draws (augmentation, position) of case ``i`` come from ``(seed, i)``.
        augment: TF-Aug's augmentation (default :class:`RandTumorAugment`'s); None places the tumour as it is.
        refine: False writes TF-Aug's coarse case (the ablation).
        precision, channels_last: the refiner's, as :class:`synthmr.inference.Synthesizer`'s.
        provenance: recorded in every output's sidecar, as :class:`synthmr.inference.Synthesizer`'s.
    """

    def __init__(
        self,
        network: nn.Module,
        datalist: Sequence[Mapping],
        output_dir: str | os.PathLike,
        model_spacing: Sequence[float] | None = None,
        device: torch.device | str = "cpu",
        seed: int = 0,
        augment: RandTumorAugment | None = "default",
        refine: bool = True,
        overwrite: bool = False,
        progress: Callable[[int, int], None] | None = None,
        precision: str = "fp32",
        channels_last: bool = False,
        provenance: Mapping | None = None,
    ) -> None:
        super().__init__(network, datalist, output_dir=output_dir, device=device, overwrite=overwrite,
                         progress=progress, precision=precision, channels_last=channels_last, provenance=provenance,
                         **_inference_kwargs())
        self.model_spacing = None if model_spacing is None else tuple(float(s) for s in model_spacing)
        self.seed, self.refine = int(seed), config_bool(refine, "refine")
        self.augment = RandTumorAugment() if augment == "default" else augment
        self._case = 0

    def _synthesise(self, volumes: dict[str, Volume], step: Callable[[], None]) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self._case])
        self._case += 1
        reference = volumes[SEQUENCES[0]]
        images = np.stack([volumes[s].array for s in SEQUENCES]).astype(np.float32)
        source = np.stack([volumes[TUMOR_PREFIX + s].array for s in SEQUENCES]).astype(np.float32)
        placement = volumes[PLACEMENT].array != 0 if PLACEMENT in volumes else None
        out, label, _ = fabricate(
            images,
            _brain_or_foreground(volumes, images, BRAIN),
            reference.spacing,
            source,
            volumes[TUMOR_PREFIX + LABEL].array,
            _brain_or_foreground(volumes, source, TUMOR_PREFIX + BRAIN),
            reference.spacing,
            rng,
            self.augment,
            self.autocast_network if self.refine else None,  # the refiner alone in the run's precision
            self.model_spacing,
            self.device,
            placement,
            name="the healthy scan",
            source_id="the tumour case",
        )
        step()
        return np.concatenate([out, label[None].astype(np.float32)])


# ---------------------------------------------------------------------------------------------------------------
# 8. The held-out comparison: does the fabricated tumour look like a real one?
#
# Fabricated and real cases are unpaired (other subjects, other tumours), so the comparison is between sets: the
# axial slices through each tumour, cut to the tumour's neighbourhood, per sequence and pooled, in the features of
# an image extractor (KID with bootstrap intervals); and, per subregion and sequence, the contrast to the healthy
# brain outside the ROI (median ratio), whose mean over the fabricated cases should match the real cases' (the
# error with a bootstrap interval over the fabricated cases).
# ---------------------------------------------------------------------------------------------------------------

REPORT_SLICES = 5  # axial slices through each tumour's centroid
REPORT_PATCH = 48  # in-plane voxels around it


def tumor_slices(images: np.ndarray, label: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """``(REPORT_SLICES, 4, REPORT_PATCH, REPORT_PATCH)`` in [0, 1]: the axial slices through the tumour's centroid,
    cut around it, each sequence scaled by the tissue outside the ROI (decision 6) and mapped from [-1, 1]."""
    centre = np.rint(np.argwhere(label > 0).mean(axis=0)).astype(int)
    scaled = _scaled(images.astype(np.float32), outside_roi(label, spacing))
    size = (REPORT_PATCH, REPORT_PATCH, REPORT_SLICES)
    (patch,) = _patch([scaled], [-1.0], centre, size)
    return np.clip((np.moveaxis(patch, -1, 0) + 1.0) / 2.0, 0.0, 1.0)


def subregion_contrasts(images: np.ndarray, label: np.ndarray, spacing: Sequence[float], brain: np.ndarray) -> dict:
    """Per subregion and sequence: median inside the subregion / median of the brain outside the ROI (None when the
    case lacks the subregion)."""
    outside = outside_roi(label, spacing) & brain
    contrasts = {}
    for name, value in TUMOR_LABELS.items():
        region = label == value
        for index, sequence in enumerate(SEQUENCES):
            reference = float(np.median(images[index][outside]))
            key = f"{sequence} {name} / brain"
            contrasts[key] = float(np.median(images[index][region])) / reference if region.any() and reference else None
    return contrasts


def _case_arrays(item: Mapping, name: str) -> tuple[np.ndarray, np.ndarray, tuple[float, ...], np.ndarray]:
    keys = [*SEQUENCES, LABEL] + ([BRAIN] if BRAIN in item else [])
    case = _read_case(item, keys, name)
    images = np.stack([case[s].array for s in SEQUENCES]).astype(np.float32)
    label = case[LABEL].array.astype(np.uint8)
    if not np.any(label):
        raise InputError(f"{name}: label has no tumour voxel")
    brain = _brain_or_foreground(case, images, BRAIN)
    return images, label, case[LABEL].spacing, brain


def patch_quality_report(
    real: Sequence[Mapping],
    candidates: Mapping[str, Sequence[Mapping]],
    extractor: str = "domain",
    extractor_weights: str | os.PathLike | None = None,
    n_bootstrap: int = 1000,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> dict:
    """How real the fabricated tumours look, per candidate (section 8's comment): KID (pooled and per sequence, with
    bootstrap intervals) between the tumour slices of the candidate's cases and of the real cases, and per
    subregion and sequence the fabricated minus the real mean contrast (``difference``, its bootstrap interval with
    both sides resampled, and ``error``, its absolute value).

    Args:
        real: real tumour cases (the four sequences, ``label``, optionally ``brain``).
        candidates: name -> its fabricated cases (same keys).
        extractor, extractor_weights: the image feature extractor (:func:`synthmr.metrics.extractors.get_extractor`).
        n_bootstrap: resamples of each interval.
        out: where to write the report as JSON (optional).
        overwrite: replace an existing ``out``.
    """
    from synthmr.metrics.extractors import describe_extractor, get_extractor
    from synthmr.metrics.fid import extract_features
    from synthmr.metrics.kid import kernel_distance

    if out is not None:
        check_destination(Path(out), overwrite)
    network = get_extractor(extractor, extractor_weights)

    def summarise(items: Sequence[Mapping], what: str) -> tuple[dict, list[dict]]:
        slices, contrasts = [], []
        for index, item in enumerate(items):
            images, label, spacing, brain = _case_arrays(item, f"{what} case {item.get('case_id', index)!r}")
            slices.append(tumor_slices(images, label, spacing))
            contrasts.append(subregion_contrasts(images, label, spacing, brain))
        stacked = np.concatenate(slices)  # (cases x slices, 4, H, W)
        features = {
            sequence: extract_features(torch.from_numpy(stacked[:, [i]]), network) for i, sequence in enumerate(SEQUENCES)
        }
        features["pooled"] = torch.cat([features[s] for s in SEQUENCES])
        return features, contrasts

    real_features, real_contrasts = summarise(real, "real")
    real_values = {key: [c[key] for c in real_contrasts if c[key] is not None] for key in real_contrasts[0]}
    real_means = {key: float(np.mean(values)) if values else None for key, values in real_values.items()}
    report = {
        "what": "unpaired realism of fabricated tumours (synthmr.methods.brain_tumor_fabrication.patch_quality_report)",
        "slices": f"{REPORT_SLICES} axial slices of {REPORT_PATCH}x{REPORT_PATCH} voxels through each tumour's centroid",
        "extractor": describe_extractor(network),
        "n_real_cases": len(real),
        "real_contrast_means": real_means,
        "candidates": {},
    }
    for name, items in candidates.items():
        features, contrasts = summarise(items, name)
        kid = {key: kernel_distance(real_features[key], features[key], n_bootstrap=n_bootstrap) for key in features}
        errors = {}
        for key, real_mean in real_means.items():
            values = [c[key] for c in contrasts if c[key] is not None]
            if real_mean is None or not values:
                errors[key] = None
                continue
            difference = float(np.mean(values)) - real_mean
            errors[key] = {"mean": float(np.mean(values)), "difference": difference, "error": abs(difference),
                           "interval": _difference_interval(values, real_values[key], n_bootstrap), "n": len(values)}
        report["candidates"][name] = {
            "n_cases": len(items),
            "kid": {key: {"kid": value["kid"], "interval": value["interval"]} for key, value in kid.items()},
            "contrast": errors,
        }
    if out is not None:
        write_json(Path(out), report, overwrite=overwrite)
    return report


def _difference_interval(fabricated: Sequence[float], real: Sequence[float], n_bootstrap: int,
                         seed: int = 0) -> list[float] | None:
    """95 % percentile-bootstrap interval of ``mean(fabricated) - mean(real)``, both sets resampled independently
    (the fabricated cases are other subjects than the real ones); None with fewer than 2 values a side."""
    fabricated, real = np.asarray(fabricated, float), np.asarray(real, float)
    if n_bootstrap < 1 or len(fabricated) < 2 or len(real) < 2:
        return None
    rng = np.random.default_rng(seed)
    draws = (fabricated[rng.integers(0, len(fabricated), (n_bootstrap, len(fabricated)))].mean(axis=1)
             - real[rng.integers(0, len(real), (n_bootstrap, len(real)))].mean(axis=1))
    return [float(v) for v in np.percentile(draws, [2.5, 97.5])]


def format_patch_report(report: Mapping) -> str:
    """The report as a table: candidates as rows, pooled and per-sequence KID (interval), mean contrast error."""
    lines = [f"{'candidate':<10} {'KID pooled [95% interval]':<32} " + " ".join(f"{s:>8}" for s in SEQUENCES)
             + "  contrast err"]
    for name, result in report["candidates"].items():
        pooled = result["kid"]["pooled"]
        low, high = pooled["interval"] or (float("nan"), float("nan"))
        errors = [v["error"] for v in result["contrast"].values() if v is not None]
        lines.append(f"{name:<10} {pooled['kid']:>8.4f} [{low:.4f}, {high:.4f}]{'':<6} "
                     + " ".join(f"{result['kid'][s]['kid']:>8.4f}" for s in SEQUENCES)
                     + f"  {np.mean(errors) if errors else float('nan'):.3f}")
    return "\n".join(lines)
