"""Lesion map + atlas -> T1w, Gd-T1w, T2w, FLAIR and APTw: the method of bundle ``brain_lesion2mpmri`` (SAMR).

Guo, Wang, Zhou, Jiang and Patel, "Lesion Mask-based Simultaneous Synthesis of Anatomic and Molecular MR Images
using a GAN", MICCAI 2020, arXiv 2006.14761. A five-label lesion map (background, normal brain, edema, surgical
cavity, tumour) and a multi-sequence brain atlas go into one generator (:class:`synthmr.nets.SAMRGenerator`: a
lesion-map encoder and an atlas encoder, a shared residual trunk, one up-sampling branch per sequence) that writes
all five sequences of one axial slice; six label-wise discriminators (:class:`synthmr.nets.LabelwiseDiscriminator`)
judge background, normal brain and lesion separately at two scales. Because the lesion map is the only
subject-specific input, a lesion can be moved, resized, mirrored or taken from another patient
(:mod:`synthmr.transforms.lesion`) and the sequences follow.

This module holds what is specific to the method; the sections below, top to bottom:

1. **The atlas** (:func:`build_atlas`, :class:`AtlasToSubject`, :func:`atlas_channels`): the paper's group
   average of each sequence over the training patients ("a multivariate template construction tool"), here by
   :func:`synthmr.transforms.group_average` on SimpleITK, shipped in the bundle; at inference it is registered
   to the subject through the brain mask (the only anatomy a lesion map gives), and every axial slice gets its
   atlas slice and the two axial neighbours of each sequence: 5 x 3 = 15 channels, as the paper.
2. **Training pairs** (:func:`prepare_subjects`, :func:`pair_transforms`): every subject gets the atlas registered
   to it once; a pair is one axial slice: input ``image``, the lesion map one-hot (5 channels) then the atlas
   (15), and target ``target``, the five real sequences, each sequence and its atlas scaled to [-1, 1] by the
   atlas's range (the atlas is what inference has, so outputs map back by the same scale).
3. **Inference** (:class:`InferenceConditions`): the same input for every axial slice of a lesion map, built from
   the atlas registered to it, with the scalings that map the five outputs back to the atlas's units, for
   :class:`synthmr.inference.Synthesizer`.
4. **New cases** (:class:`NewLesionCases`, what ``synthmr generate`` runs): real lesion maps randomly manipulated
   (:data:`EDITS`) and the five sequences generated for each, the paper's synthetic training data.
5. **Per-ROI contrasts and the held-out comparison** (:data:`ROI_CONTRASTS`, :func:`roi_contrasts`,
   :func:`quality_report`): what the synthetic sequences must show of each lesion class, measured alike in real
   and synthetic images, beside the shared distribution and pair metrics.

Training (networks, losses, schedule, baselines and ablations) is assembled in the bundle's configs from
:mod:`synthmr.nets`, :mod:`synthmr.losses` and :mod:`synthmr.engines`, with :func:`consistency_term` and the
segmenter's :class:`SegmentationPairsd` from here.

Sequence keys are the phantom's (docs/design.md, *Data conventions*): ``t1n`` (T1w), ``t1c`` (Gd-T1w), ``t2w``,
``t2f`` (FLAIR), ``aptw`` (APT-weighted, MTRasym at 3.5 ppm in percent); the lesion map is ``lesion_map`` with
the SAMR labels 0-4 of :data:`LESION_LABELS`. Volumes are ``(x, y, z)`` in ITK index order with z axial.

Decisions where the paper leaves room (each is the default below):

1. **Atlas subjects and registration.** The atlas averages training subjects registered to each other by their
   T1w image (an affine start, then two rounds of affine + demons registration to the running average,
   :func:`synthmr.transforms.group_average`); lesion voxels (edema, cavity, tumour) stay out of the average
   (``exclude``), so the atlas shows normal anatomy wherever some subject has normal tissue. Sequences are
   averaged in the datalist's units (the phantom's are comparable across subjects: 99th brain percentile ~1000,
   APTw in percent); real data should be normalised per sequence first. The average brain mask goes with it
   (``brain``, a probability), which is what the subject is registered to.
2. **Atlas to subject.** The subject's brain mask (``lesion_map > 0``, or a given ``brain`` mask) and the atlas's
   brain probability, both smoothed by a Gaussian of :data:`MASK_SMOOTHING_MM`, are registered (affine + demons;
   the subject fixed), and the five atlas sequences are resampled onto the subject's grid (linear).
3. **Neighbour slices** beyond the volume repeat the edge slice.
4. **Which slices.** The paper's instances are the 15 axial slices of its APTw slab, placed on the tumour; here a
   training pair is drawn among the axial slices that hold lesion labels (all brain slices for a subject without
   a lesion), and validation takes each subject's slice with the most lesion.
5. **Scaling.** Each anatomical sequence and its atlas channels by the registered atlas's robust range
   (:class:`~synthmr.transforms.IntensityScaling`, the 0.5th percentile of the whole image to the 99.5th of the
   foreground), with :data:`INTENSITY_SCALING`'s headroom above it: the atlas averages normal tissue, and
   lesions are brighter than any of it. Measured on five phantom subjects (6 mm), in units of the atlas range,
   the brain's 99.9th percentile needed headroom up to 1.15 (T1w), 1.95 (Gd-T1w), 1.68 (T2w) and 2.01 (FLAIR),
   the brightest voxel 2.65 (Gd-T1w): headroom 2.5. APTw is a quantitative map whose tumour (3-4 %) lies four
   to five atlas ranges above normal brain (0-1 %): it is scaled by a fixed range instead,
   :data:`FIXED_RANGES` (-5 % to 5 %, a usual APTw display range), the same for every subject.
6. **Size.** Slices are padded to a multiple of :data:`SIZE_MULTIPLE` (the generator's ``2**n_downsampling``):
   the input with 0 in every channel (no label, so no discriminator's ROI covers the padding), as inference's
   sliding window pads it (``cval`` 0), and the target with -1 (air).
7. **Random manipulations.** The paper's are in its supplement, which was not found; its Fig. 3 shows a mirrored
   lesion, a tumour enlarged by 100 % and shrunk to 50 %, and a lesion from another patient. A new case draws one
   of these edits with equal chance: mirror across the brain's mid-sagittal plane, scale about the lesion's
   centroid by a factor log-uniform in [0.5, 2], or transplant the lesion of another source subject on the same
   grid (mirror when there is none); each is clipped to the brain (:func:`synthmr.transforms.edit_lesion` with
   ``organ_labels=(1,)``), and a draw that leaves no lesion is drawn again.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from monai.transforms import (
    Compose,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    Randomizable,
    SelectItemsd,
)

from synthmr.distributed import rank_zero_first
from synthmr.errors import InputError, config_bool
from synthmr.io import Volume, read_image, write_image
from synthmr.io._atomic import atomic_output, check_destination, write_json
from synthmr.transforms.intensity import IntensityScaling
from synthmr.transforms.registration import group_average, register, warp

SEQUENCES = ("t1n", "t1c", "t2w", "t2f", "aptw")  # T1w, Gd-T1w, T2w, FLAIR, APTw: network channel order
LESION_MAP = "lesion_map"
BRAIN = "brain"
LESION_LABELS = ("background", "normal brain", "edema", "cavity", "tumour")  # value i is LESION_LABELS[i]
LESION = (2, 3, 4)  # the labels of the lesion ROI
ROIS = ((0,), (1,), LESION)  # background, normal brain, lesion: the label-wise discriminators' regions
NEIGHBOURS = 1  # axial atlas slices on each side of the slice: 2 * 1 + 1 = 3 per sequence
ATLAS_CHANNELS = len(SEQUENCES) * (2 * NEIGHBOURS + 1)  # 15, the paper's
MASK_SMOOTHING_MM = 2.0  # Gaussian sigma of the brain masks that drive the atlas-to-subject registration
ATLAS_ITERATIONS = 2
REGISTRATIONS_KEPT = 8  # brains whose registered atlas AtlasToSubject keeps (about 18 MB each at 2 mm)
INTENSITY_SCALING = {"headroom": 2.5, "low_over": "image"}  # decision 5, anatomical sequences
FIXED_RANGES = {"aptw": (-5.0, 5.0)}  # decision 5: sequence -> the values that map to -1 and 1 (APTw in percent)
SIZE_MULTIPLE = 8  # decision 6
INPUT_KEY, TARGET_KEY = "image", "target"  # the network's input (5 + 15 channels) and the real sequences (5)
VALID_KEY = "valid"  # 1 on the slice, 0 in its padding (which no loss covers: checkpoint selection ignores it)


def atlas_key(sequence: str) -> str:
    """The datalist key of a subject's registered atlas of ``sequence`` (:func:`prepare_subjects`)."""
    return f"atlas_{sequence}"


def atlas_file(folder: str | os.PathLike, name: str) -> Path:
    """Where :func:`build_atlas` writes image ``name`` (a sequence or ``brain``)."""
    return Path(folder) / f"atlas_{name}.nii.gz"


# ----------------------------------------------------------------------------------------------------------
# 1. The atlas
# ----------------------------------------------------------------------------------------------------------


def build_atlas(
    datalist: Sequence[Mapping[str, str | os.PathLike]],
    out_dir: str | os.PathLike,
    sequences: Sequence[str] = SEQUENCES,
    drive: str = "t1n",
    iterations: int = ATLAS_ITERATIONS,
    overwrite: bool = False,
) -> dict[str, Path]:
    """The multi-sequence atlas of the datalist's subjects (decision 1), written to ``out_dir`` all or nothing.

    Args:
        datalist: training subjects: items with the ``sequences`` and ``lesion_map`` (3D, each subject's images
            on one grid); ``brain`` optional (else ``lesion_map > 0``).
        out_dir: the atlas folder: ``atlas_<sequence>.nii.gz`` per sequence, ``atlas_brain.nii.gz`` (the brain
            probability) and ``atlas.json`` (the subjects and settings), on the first subject's grid.
        sequences: the sequences to average.
        drive: the sequence the subjects are registered by.
        iterations: register-and-average rounds after the affine start.
        overwrite: replace an existing atlas folder.

    Returns:
        name -> path of each written image.
    """
    sequences = list(sequences)
    if drive not in sequences:
        raise InputError(f"the atlas is registered by {drive!r}, which is not among the sequences {sequences}")
    if len(datalist) < 2:
        raise InputError(f"an atlas needs at least 2 training subjects; got {len(datalist)}")
    out_dir = Path(out_dir)
    check_destination(out_dir, overwrite, what="atlas folder")
    subjects = [_atlas_subject(item, sequences) for item in datalist]
    average = group_average(subjects, drive, iterations=iterations, exclude="lesion")
    written = {}
    with atomic_output(out_dir, overwrite=overwrite) as staging:
        for name, volume in average.items():
            write_image(volume, atlas_file(staging, name))
            written[name] = atlas_file(out_dir, name)
        description = {
            "what": "multi-sequence brain atlas (synthmr.methods.brain_lesion2mpmri.build_atlas)",
            "sequences": sequences,
            "drive": drive,
            "iterations": iterations,
            "subjects": [str(item.get("case_id", item[drive])) for item in datalist],
            "lesions": "left out of the average (edema, cavity, tumour)",
        }
        write_json(staging / "atlas.json", description)
    return written


def _atlas_subject(item: Mapping[str, str | os.PathLike], sequences: Sequence[str]) -> dict[str, Volume]:
    """One subject for the average: its sequences, its brain mask (float) and its lesion mask (float)."""
    missing = [key for key in [*sequences, LESION_MAP] if key not in item]
    if missing:
        raise InputError(f"{item.get('case_id', 'a datalist item')}: lacks {missing} (the atlas needs {[*sequences, LESION_MAP]})")
    lesion_map = _labels(read_image(item[LESION_MAP]), item[LESION_MAP])
    brain = read_image(item[BRAIN]) if BRAIN in item else lesion_map.with_array(lesion_map.array > 0)
    subject = {"brain": brain.with_array((brain.array > 0).astype(np.float32))}
    subject["lesion"] = lesion_map.with_array(np.isin(lesion_map.array, LESION).astype(np.float32))
    for key in sequences:
        image = read_image(item[key])
        if image.ndim != 3 or not image.same_grid(lesion_map):
            raise InputError(f"{item[key]}: {key!r} must be a 3D volume on the grid of {item[LESION_MAP]}")
        subject[key] = image.with_array(image.array.astype(np.float32))
    return subject


def atlas_or_build(folder: str | os.PathLike, datalist: Sequence[Mapping[str, str | os.PathLike]], n_subjects: int) -> Path:
    """``folder`` when it holds an atlas; else the atlas of the datalist's first ``n_subjects`` built there first
    (the default data of the training config; under DDP by rank 0 while the others wait). Returns ``folder``."""
    folder = Path(folder)
    rank_zero_first(lambda: (folder / "atlas.json").is_file() or build_atlas(list(datalist)[: int(n_subjects)], folder))
    return folder


def load_atlas(folder: str | os.PathLike, sequences: Sequence[str] = SEQUENCES) -> dict[str, Volume]:
    """The atlas written by :func:`build_atlas`: the ``sequences`` and ``brain``."""
    atlas = {}
    for name in [*sequences, BRAIN]:
        path = atlas_file(folder, name)
        if not path.is_file():
            raise InputError(f"{folder}: no atlas image {path.name} (build it with build_atlas)")
        atlas[name] = read_image(path)
    return atlas


class AtlasToSubject:
    """The atlas registered to one subject through the brain mask and resampled onto its grid (decision 2).

    Args:
        atlas: the atlas (:func:`load_atlas`): the sequences and ``brain``.
        sequences: the atlas sequences to resample, in channel order.
        smoothing_mm: Gaussian sigma of both brain masks before registration.
        keep: how many brains' registered atlases to keep for reuse (most recent first).
    """

    def __init__(
        self,
        atlas: Mapping[str, Volume],
        sequences: Sequence[str] = SEQUENCES,
        smoothing_mm: float = MASK_SMOOTHING_MM,
        keep: int = REGISTRATIONS_KEPT,
    ) -> None:
        missing = [name for name in [*sequences, BRAIN] if name not in atlas]
        if missing:
            raise InputError(f"the atlas lacks {missing}")
        self.atlas, self.sequences, self.smoothing_mm = dict(atlas), list(sequences), float(smoothing_mm)
        self.keep = int(keep)
        self._atlas_brain = _smoothed(self.atlas[BRAIN], self.smoothing_mm)
        # The last few brains registered: lesion edits keep the brain outline (labels above 0), so every edited map
        # of one subject (new cases, a clinician's edits in one session) reuses its registration.
        self._registered: OrderedDict[str, dict[str, Volume]] = OrderedDict()

    def __call__(self, lesion_map: Volume, brain: Volume | None = None) -> dict[str, Volume]:
        """The atlas sequences on ``lesion_map``'s grid; the brain is ``brain > 0`` if given, else ``lesion_map > 0``."""
        mask = lesion_map.array > 0 if brain is None else brain.array > 0
        if not mask.any():
            where = "the lesion map has no label above 0 (background)" if brain is None else "the brain mask is all 0"
            raise InputError(f"the subject's brain mask is empty: {where}")
        key = _grid_and_mask_digest(lesion_map, mask)
        if key not in self._registered:
            subject_brain = _smoothed(lesion_map.with_array(mask.astype(np.float32)), self.smoothing_mm)
            transform = register(subject_brain, self._atlas_brain)
            self._registered[key] = {name: warp(self.atlas[name], lesion_map, transform) for name in self.sequences}
            while len(self._registered) > self.keep:
                self._registered.popitem(last=False)
        self._registered.move_to_end(key)
        return dict(self._registered[key])


def _grid_and_mask_digest(grid: Volume, mask: np.ndarray) -> str:
    """A key for one brain: the grid (shape, spacing, origin, direction) and the mask's voxels."""
    digest = hashlib.sha256(np.packbits(np.ascontiguousarray(mask, dtype=bool)).tobytes())
    geometry = (mask.shape, tuple(grid.spacing), tuple(grid.origin), tuple(np.asarray(grid.direction).ravel()))
    digest.update(repr(geometry).encode())
    return digest.hexdigest()


def atlas_channels(atlas: Mapping[str, Volume] | Sequence[np.ndarray], z: int, sequences: Sequence[str] = SEQUENCES) -> np.ndarray:
    """The atlas input of axial slice ``z``: per sequence, slices ``z - 1``, ``z``, ``z + 1`` (the edge slice
    repeated beyond the volume), ``(15, X, Y)`` for five sequences, sequence-major."""
    arrays = [np.asarray(atlas[name].array) for name in sequences] if isinstance(atlas, Mapping) else [np.asarray(a) for a in atlas]
    depth = arrays[0].shape[-1]
    if not 0 <= z < depth:
        raise InputError(f"slice {z} is outside the atlas's {depth} axial slices")
    picks = [min(max(z + offset, 0), depth - 1) for offset in range(-NEIGHBOURS, NEIGHBOURS + 1)]
    return np.stack([array[..., k] for array in arrays for k in picks]).astype(np.float32)


def one_hot_labels(lesion_map: np.ndarray) -> np.ndarray:
    """The lesion map as ``(5, *spatial)`` one-hot float32 channels, label ``i`` in channel ``i``."""
    labels = np.asarray(lesion_map)
    _check_label_values(labels, "lesion map", need_brain=False)  # a slice above the brain has none
    return np.stack([(labels == value) for value in range(len(LESION_LABELS))]).astype(np.float32)


def _labels(volume: Volume, where: object) -> Volume:
    _check_label_values(volume.array, str(where))
    if volume.ndim != 3:
        raise InputError(f"{where}: the lesion map must be a 3D volume; got {volume.ndim}D")
    return volume.with_array(np.rint(volume.array).astype(np.uint8))


def _check_label_values(array: np.ndarray, what: str, need_brain: bool = True) -> None:
    values = np.unique(array)
    unknown = [v for v in values.tolist() if v not in range(len(LESION_LABELS))]
    if unknown:
        raise InputError(
            f"{what}: labels {unknown[:5]} are not SAMR lesion labels (0-4: {', '.join(LESION_LABELS)})"
        )
    if need_brain and not np.any(array > 0):
        raise InputError(f"{what}: no brain (every voxel is background, label 0)")


def _smoothed(mask: Volume, sigma_mm: float) -> Volume:
    image = sitk.SmoothingRecursiveGaussian(sitk.Cast(mask.to_sitk(), sitk.sitkFloat32), sigma_mm)
    return mask.with_array(Volume.from_sitk(image).array.astype(np.float32))


# ----------------------------------------------------------------------------------------------------------
# 2. Training pairs
# ----------------------------------------------------------------------------------------------------------


def prepare_subjects(
    datalist: Sequence[Mapping[str, str | os.PathLike]],
    atlas_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    sequences: Sequence[str] = SEQUENCES,
) -> list[dict]:
    """Each subject with the atlas registered to it (:class:`AtlasToSubject`), under :func:`atlas_key` keys.

    The registered atlases are written once, to ``out_dir/<case_id>/atlas_<sequence>.nii.gz`` (each subject's
    folder all or nothing), and reused by later calls: ``out_dir`` belongs to one atlas. Under DDP rank 0 writes
    them while the other ranks wait.
    """
    return rank_zero_first(lambda: _prepare_subjects(datalist, atlas_dir, out_dir, sequences))


def _prepare_subjects(
    datalist: Sequence[Mapping[str, str | os.PathLike]],
    atlas_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    sequences: Sequence[str],
) -> list[dict]:
    sequences = list(sequences)
    out_dir = Path(out_dir)
    register_to: AtlasToSubject | None = None
    prepared = []
    for index, item in enumerate(datalist):
        if LESION_MAP not in item:
            raise InputError(f"{item.get('case_id', f'item {index}')}: lacks {LESION_MAP!r}")
        folder = out_dir / str(item.get("case_id", f"case_{index:04d}"))
        if not all(atlas_file(folder, name).is_file() for name in sequences):
            register_to = register_to or AtlasToSubject(load_atlas(atlas_dir, sequences), sequences)
            brain = read_image(item[BRAIN]) if BRAIN in item else None  # as inference registers (decision 2)
            registered = register_to(_labels(read_image(item[LESION_MAP]), item[LESION_MAP]), brain)
            with atomic_output(folder, overwrite=folder.exists()) as staging:
                for name, volume in registered.items():
                    write_image(volume, atlas_file(staging, name))
        prepared.append({**item, **{atlas_key(name): str(atlas_file(folder, name)) for name in sequences}})
    return prepared


def sequence_scaling(sequence: str, atlas: np.ndarray) -> IntensityScaling:
    """How ``sequence`` maps to [-1, 1] (decision 5): by the registered atlas's range with headroom, or by its
    fixed range (:data:`FIXED_RANGES`; a fixed range is an :class:`IntensityScaling` with ``low`` and ``high``
    the two ends and no headroom). Training (:class:`AtlasScaled`) and inference (:class:`InferenceConditions`)
    both scale by it."""
    if sequence in FIXED_RANGES:
        low, high = FIXED_RANGES[sequence]
        return IntensityScaling(float(low), float(high), 1.0)
    return IntensityScaling.fit(atlas, name=f"atlas {sequence}", **INTENSITY_SCALING)


def _to_unit(scaling: IntensityScaling, array) -> np.ndarray:
    """``array`` on the generator scale by ``scaling``, clipped to [-1, 1]."""
    return np.clip(scaling.forward(np.asarray(array, dtype=np.float32)), -1.0, 1.0).astype(np.float32)


class AtlasScaled(MapTransform):
    """Each sequence and its registered atlas scaled by :func:`sequence_scaling` of the atlas, clipped to [-1, 1]
    (decision 5): the scale inference has too, since it has the atlas alone.

    Args:
        sequences: the sequence keys; each has its atlas under :func:`atlas_key`.
    """

    def __init__(self, sequences: Sequence[str] = SEQUENCES) -> None:
        self.sequences = list(sequences)
        MapTransform.__init__(self, [*self.sequences, *map(atlas_key, self.sequences)])

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for name in self.sequences:
            scaling = sequence_scaling(name, _numpy(d[atlas_key(name)]))
            for key in (name, atlas_key(name)):
                d[key] = torch.from_numpy(_to_unit(scaling, _numpy(d[key])))
        return d


class SAMRSliced(Randomizable, MapTransform):
    """One axial slice of a subject as a SAMR pair (decisions 4 and 6): ``image`` (one-hot lesion map, then each
    sequence's atlas slice with its axial neighbours) and ``target`` (the sequences).

    Input: channel-first volumes ``(1, X, Y, Z)`` of the ``sequences``, their :func:`atlas_key` atlases (scaled)
    and ``lesion_map``. Output: ``image`` ``(5 + 3 * len(sequences), X, Y)`` and ``target`` ``(len(sequences),
    X, Y)``, float32, padded to multiples of ``size_multiple`` (input 0, target -1), and ``valid`` ``(1, X, Y)``,
    1 on the slice and 0 in the padding.

    Args:
        sequences: the sequence keys, in channel order.
        random: draw a slice among those with lesion labels (training); else the slice with the most lesion.
        size_multiple: pad X and Y up to a multiple of this.
        atlas_input: False leaves the atlas channels out of ``image`` (the lesion map alone: the "w/o atlas"
            ablation and the pix2pix and pix2pixHD baselines); the atlas still sets the intensity scale.
    """

    def __init__(
        self,
        sequences: Sequence[str] = SEQUENCES,
        random: bool = True,
        size_multiple: int = SIZE_MULTIPLE,
        atlas_input: bool = True,
    ) -> None:
        self.sequences = list(sequences)
        MapTransform.__init__(self, [*self.sequences, *map(atlas_key, self.sequences), LESION_MAP])
        self.random = bool(random)
        self.size_multiple = int(size_multiple)
        self.atlas_input = config_bool(atlas_input, "atlas_input")
        self._z = 0

    def randomize(self, candidates: np.ndarray) -> None:
        self._z = int(self.R.choice(candidates))

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        labels = np.rint(_numpy(d[LESION_MAP])[0]).astype(np.int64)
        _check_label_values(labels, str(d.get("case_id", LESION_MAP)))
        lesion_per_slice = np.isin(labels, LESION).sum(axis=(0, 1))
        if self.random:
            candidates = np.flatnonzero(lesion_per_slice)
            if not candidates.size:
                candidates = np.flatnonzero((labels > 0).any(axis=(0, 1)))
            self.randomize(candidates)
        else:
            self._z = int(np.argmax(lesion_per_slice)) if lesion_per_slice.any() else int(np.argmax((labels > 0).sum(axis=(0, 1))))
        image = one_hot_labels(labels[..., self._z])
        if self.atlas_input:
            atlas = [_numpy(d[atlas_key(name)])[0] for name in self.sequences]
            image = np.concatenate([image, atlas_channels(atlas, self._z)])
        target = np.stack([_numpy(d[name])[0][..., self._z] for name in self.sequences]).astype(np.float32)
        valid = _pad(np.ones_like(target[:1]), self.size_multiple, 0.0)  # 1 on the slice, 0 in the padding
        image = _pad(image, self.size_multiple, 0.0)  # decision 6
        target = _pad(target, self.size_multiple, -1.0)
        d[INPUT_KEY], d[TARGET_KEY], d[VALID_KEY] = torch.from_numpy(image), torch.from_numpy(target), torch.from_numpy(valid)
        d["slice_z"] = self._z
        return d


def pair_transforms(
    sequences: Sequence[str] = SEQUENCES, random: bool = True, atlas_input: bool = True, size_multiple: int = SIZE_MULTIPLE
) -> Compose:
    """Prepared datalist item (:func:`prepare_subjects`) -> ``{image, target}`` of one axial slice (decisions
    4-6), as :class:`SAMRSliced` returns them (``random``, ``atlas_input`` and ``size_multiple`` are its
    arguments)."""
    sequences = list(sequences)
    atlases = [atlas_key(name) for name in sequences]
    keys = [*sequences, *atlases, LESION_MAP]
    return Compose(
        [
            SelectItemsd([*keys, "case_id"], allow_missing_keys=True),
            LoadImaged(keys, ensure_channel_first=True, image_only=True),
            EnsureTyped(keys, dtype=torch.float32, track_meta=False),
            AtlasScaled(sequences),
            SAMRSliced(sequences, random=random, size_multiple=size_multiple, atlas_input=atlas_input),
            SelectItemsd([INPUT_KEY, TARGET_KEY, VALID_KEY]),
        ]
    )


class SegmentationPairsd(MapTransform):
    """A SAMR pair turned around for the segmenter of the lesion-shape consistency (eq. 4's ``U``): ``image``
    becomes the five sequences (the pair's target) and ``label`` the lesion map ``(1, X, Y)`` (the argmax of the
    pair's one-hot channels; padding reads as background)."""

    def __init__(self) -> None:
        MapTransform.__init__(self, [INPUT_KEY, TARGET_KEY])

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        one_hot = torch.as_tensor(d[INPUT_KEY])[: len(LESION_LABELS)]
        d[INPUT_KEY], d["label"] = torch.as_tensor(d[TARGET_KEY]), one_hot.argmax(0, keepdim=True)
        del d[TARGET_KEY]
        d.pop(VALID_KEY, None)
        return d


def consistency_term(segmenter: torch.nn.Module, weights: str | os.PathLike | None = None):
    """The generator's part of the lesion-shape consistency (eq. 4), ``GDL(x, U(G(x)))``: a frozen segmenter's
    softmax over the five labels on the synthetic sequences against the one-hot lesion map the generator was
    given, eq. 3's Dice without class weights (:class:`synthmr.losses.SegmentationConsistencyLoss`, uniform).
    A generator loss term for :class:`synthmr.engines.PairedGanTrainer` (a callable of its ``GanStep``).

    Args:
        segmenter: the segmentation network (five sequences -> five label logits).
        weights: its trained weights (``configs/train_segmenter.yaml`` writes ``models/segmenter.pt``); None
            when ``segmenter`` is trained already.
    """
    from synthmr.io import load_weights
    from synthmr.losses import SegmentationConsistencyLoss

    if weights is not None:
        if not Path(weights).is_file():
            raise InputError(
                f"{weights}: no segmenter weights for the lesion-shape consistency; train them first with "
                "configs/train_segmenter.yaml, or pass --segmenter_weights null to train without it (the paper's "
                "'w/o L_C' ablation)"
            )
        load_weights(segmenter, weights)
    loss = SegmentationConsistencyLoss(segmenter, to_onehot_y=False, softmax=True, w_type="uniform")
    return lambda step: loss(step.fake, step.condition[:, : len(LESION_LABELS)])


def _numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)


def _pad(array: np.ndarray, multiple: int, fill: float) -> np.ndarray:
    """``(C, X, Y)`` padded evenly on both sides with ``fill`` to multiples of ``multiple``."""
    pads = [(0, 0)]
    for size in array.shape[1:]:
        extra = -(-size // multiple) * multiple - size
        pads.append((extra // 2, extra - extra // 2))
    return np.pad(array, pads, constant_values=fill).astype(np.float32)

# ----------------------------------------------------------------------------------------------------------
# 3. Inference
# ----------------------------------------------------------------------------------------------------------


class InferenceConditions:
    """The generator's input for a whole lesion map, for :class:`synthmr.inference.Synthesizer` (section 3).

    Registers the atlas to the lesion map's brain (:class:`AtlasToSubject`), scales each sequence's registered
    atlas as in training (:func:`sequence_scaling`, clipped to [-1, 1]), and stacks, for every axial slice, the
    one-hot lesion map and the 15 atlas channels: ``(20, X, Y, Z)`` (``(5, X, Y, Z)`` without ``atlas_input``).
    It returns the scalings too, which map the generated sequences back to the atlas's units
    (``scales_outputs``), and takes the inputs with their grids (``takes_volumes``). Windows that overhang the
    image are padded with 0 (``pad_value``; an inference config's ``SlidingWindowInferer`` needs ``cval: 0``), as
    training pads (decision 6). The atlas is read when the first case comes.

    Args:
        atlas_dir: the atlas folder (:func:`build_atlas`; a bundle ships it in ``models/atlas``).
        sequences: the output sequences, in channel order.
        lesion_key: the input key of the lesion map; ``brain`` is used as the brain mask when the case has it.
        atlas_input: False gives the lesion map alone as input (as :class:`SAMRSliced`); the atlas still sets the
            output scale.
        register: an :class:`AtlasToSubject` of this atlas to share (several generators judged on the same
            subjects register each subject once); None makes one.
    """

    takes_volumes = True
    scales_outputs = True
    pad_value = 0.0

    def __init__(
        self,
        atlas_dir: str | os.PathLike,
        sequences: Sequence[str] = SEQUENCES,
        lesion_key: str = LESION_MAP,
        atlas_input: bool = True,
        register: AtlasToSubject | None = None,
    ) -> None:
        self.atlas_dir, self.sequences, self.lesion_key = Path(atlas_dir), list(sequences), lesion_key
        self.atlas_input = config_bool(atlas_input, "atlas_input")
        # Without one given, the atlas is read by the first case, not by a config's initialisation, which MONAI's
        # tools run from any folder (where a relative atlas_dir is elsewhere).
        self.register = register

    def __call__(self, volumes: Mapping[str, Volume]) -> tuple[np.ndarray, dict[str, IntensityScaling]]:
        if self.lesion_key not in volumes:
            raise InputError(f"the case has no {self.lesion_key!r} (the lesion map the sequences are made from)")
        lesion_map = _labels(volumes[self.lesion_key], self.lesion_key)
        if self.register is None:
            self.register = AtlasToSubject(load_atlas(self.atlas_dir, self.sequences), self.sequences)
        registered = self.register(lesion_map, volumes.get(BRAIN))
        scalings = {name: sequence_scaling(name, registered[name].array) for name in self.sequences}
        atlas = [_to_unit(scalings[name], registered[name].array) for name in self.sequences]
        labels = lesion_map.array
        slices = [one_hot_labels(labels[..., z]) for z in range(labels.shape[-1])]
        if self.atlas_input:
            slices = [np.concatenate([labels_z, atlas_channels(atlas, z)]) for z, labels_z in enumerate(slices)]
        stacked = np.stack(slices, axis=-1)
        return stacked.astype(np.float32), scalings


# ----------------------------------------------------------------------------------------------------------
# 4. New cases
# ----------------------------------------------------------------------------------------------------------

EDITS = ("mirror", "scale", "transplant")  # decision 7, drawn with equal chance
SCALE_RANGE = (0.5, 2.0)  # decision 7: log-uniform
NORMAL_BRAIN = 1  # the lesion map's tissue label: lesion edits move the other labels
MAX_DRAWS = 20


def manipulate_lesion(lesion_map: Volume, donors: Sequence[Volume], rng: np.random.Generator) -> tuple[Volume, dict]:
    """One random manipulation of ``lesion_map`` (decision 7): the edited map and what was drawn.

    Args:
        lesion_map: a five-label map with a lesion.
        donors: other subjects' lesion maps on the same grid, for a transplant.
        rng: the draw's random generator.
    """
    from synthmr.transforms.lesion import edit_lesion

    for _ in range(MAX_DRAWS):
        edit = str(rng.choice(EDITS))
        if edit == "transplant" and not donors:
            edit = "mirror"
        drawn: dict = {"edit": edit}
        options: dict = {}
        if edit == "mirror":
            options["mirror"] = True
        elif edit == "scale":
            drawn["factor"] = options["scale"] = float(np.exp(rng.uniform(*np.log(SCALE_RANGE))))
        else:
            donor = int(rng.integers(len(donors)))
            drawn["donor"], options["transplant"] = donor, donors[donor]
        try:
            edited = edit_lesion(lesion_map, organ_labels=(NORMAL_BRAIN,), **options)
        except InputError:
            continue  # nothing of the lesion left inside the brain: draw again
        if np.isin(edited.array, LESION).any():
            return edited, drawn
    raise InputError(f"no manipulation in {MAX_DRAWS} draws left a lesion inside the brain")


class NewLesionCases:
    """SAMR's synthetic training data: real lesion maps randomly manipulated (:func:`manipulate_lesion`), and the
    five sequences generated to show each (what ``synthmr generate`` runs through ``configs/generate.yaml``).

    New case ``i`` builds on source ``i % len(sources)`` (round robin) with a draw that depends only on ``(seed,
    i)``, so a set is reproducible from its seed and its first ``k`` cases are those of any longer set. Each case
    is ``<out_dir>/case_NNNNN/{lesion_map, <sequences>}.nii.gz`` on its source's grid, the sequences in the
    atlas's units; ``datalist.json`` lists them with their source and draw. The folder appears whole or not at
    all.

    Args:
        network: the generator (weights loaded).
        atlas_dir: the atlas folder.
        sequences: the output sequences, in channel order.
        device: where the generator runs.
        inferer: the inference config's ``SlidingWindowInferer`` (padding 0), or None for the defaults.
        atlas_input: as :class:`InferenceConditions`.
        progress: optional ``progress(done, total)``.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        atlas_dir: str | os.PathLike,
        sequences: Sequence[str] = SEQUENCES,
        device: str | torch.device = "cpu",
        inferer=None,
        atlas_input: bool = True,
        progress=None,
    ) -> None:
        self.network, self.sequences, self.device = network, list(sequences), torch.device(device)
        self.conditions = InferenceConditions(atlas_dir, self.sequences, atlas_input=atlas_input)
        self.inferer, self.progress = inferer, progress

    def describe(self) -> dict:
        """What the downstream-benefit harness records of this synthesizer (its generator's weights)."""
        from synthmr.evaluation.synthesizers import weights_digest

        return {"kind": "NewLesionCases", "network": type(self.network).__name__,
                "weights_sha256": weights_digest(self.network), "images": self.sequences,
                "atlas_input": self.conditions.atlas_input, "edits": list(EDITS), "scale_range": list(SCALE_RANGE)}

    def __call__(self, subset: Sequence[Mapping], n: int, out_dir: Path, seed: int) -> list[dict]:
        """The downstream-benefit harness's ``synthesize``: ``n`` new cases from the real ``subset`` (items with
        ``lesion_map``), as items ``{"case_id", "image", "label"}``: the five generated sequences (one channel
        each) and the manipulated lesion map, as the paper's segmentation training uses them."""
        items = self.generate(subset, n, out_dir, seed=seed)
        return [{"case_id": item["case_id"], "image": [item[s] for s in self.sequences], "label": item[LESION_MAP]}
                for item in items]

    def generate(
        self, sources: Sequence[Mapping], n: int, out_dir: str | os.PathLike, seed: int = 0, overwrite: bool = False,
        provenance: Mapping | None = None,
    ) -> list[dict]:
        """Write ``n`` new cases and ``out_dir/datalist.json``; return its items (absolute paths).

        Args:
            sources: real subjects, datalist items with ``lesion_map`` (3D, with a lesion) and ``case_id``.
            n: how many new cases.
            out_dir: a new or empty folder (or any folder with ``overwrite``).
            seed: the set's seed, 0 to 2**32 - 1.
            overwrite: replace an existing ``out_dir`` once the new set is complete.
            provenance: what the manifest records first (the bundle's name and version, from generate.yaml).
        """
        from synthmr.generation import case_id, case_seed, check_set_size_and_seed, digest, write_case_set
        from synthmr.provenance import record, write_synthetic
        from synthmr.inference import Synthesizer

        check_set_size_and_seed(n, seed)
        sources = [dict(item) for item in sources]
        if not sources:
            raise InputError("no real subject to build new cases on: the source datalist is empty")
        maps = []
        for index, item in enumerate(sources):
            name = f"source case {item.get('case_id', index)!r}"
            if LESION_MAP not in item:
                raise InputError(f"{name}: lacks {LESION_MAP!r}")
            maps.append(_labels(read_image(item[LESION_MAP]), f"{name}: {item[LESION_MAP]}"))

        def make(indices: Sequence[int], folder: Path) -> list[dict]:
            """Each case's lesion map edited by its draw from (seed, i), then its five sequences generated."""
            items = []
            for i in indices:
                index = i % len(sources)
                donors = [j for j, m in enumerate(maps) if j != index and m.same_grid(maps[index])]
                edited, drawn = manipulate_lesion(
                    maps[index], [maps[j] for j in donors], np.random.default_rng(case_seed(seed, i))
                )
                if "donor" in drawn:  # the donor subject's name, not its place among the donors
                    drawn["donor"] = str(sources[donors[drawn["donor"]]].get("case_id", donors[drawn["donor"]]))
                # The edited map says what was done to it; the sequences' sidecars carry its edits along.
                write_synthetic(edited, folder / case_id(i) / f"{LESION_MAP}.nii.gz",
                                {**record(provenance or {}, {LESION_MAP: sources[index][LESION_MAP]},
                                          seed=case_seed(seed, i), lesion_edits=[drawn]), "output": LESION_MAP})
                items.append({"case_id": case_id(i), LESION_MAP: f"{case_id(i)}/{LESION_MAP}.nii.gz",
                              **{name: f"{case_id(i)}/{name}.nii.gz" for name in self.sequences},
                              "source_case": str(sources[index].get("case_id", index)), "seed": case_seed(seed, i),
                              **drawn})
            Synthesizer(
                self.network,
                [{"case_id": item["case_id"], LESION_MAP: str(folder / item[LESION_MAP])} for item in items],
                [LESION_MAP],
                self.sequences,
                folder,
                device=self.device,
                spatial_dims=2,
                roi_size=(128, 128),  # as inference.yaml
                inferer=self.inferer,
                labelmaps=[LESION_MAP],
                conditions=self.conditions,
                provenance=provenance,
            )()
            return items

        return write_case_set(
            make, n, out_dir, seed, overwrite=overwrite, file_keys=[LESION_MAP, *self.sequences],
            description=f"{n} new cases with manipulated lesions, generated by synthmr (brain_lesion2mpmri)",
            identity={**(provenance or {}), **self.describe(), "sources_sha256": digest(sources)}, progress=self.progress,
        )


# ----------------------------------------------------------------------------------------------------------
# 5. Per-ROI contrasts
#
# Each check compares a lesion class with the normal brain of the same image, as a radiologist reads them: the
# enhancing tumour on Gd-T1w, edema bright on T2w and FLAIR, a resection cavity dark on FLAIR when its fluid is
# CSF-like (the phantom also makes cavities of proteinaceous fluid, which FLAIR does not null), and APTw higher in
# tumour (3-4 %) than in normal brain (0-1 %). Anatomical images are in arbitrary units, so their checks are
# ratios of means; APTw is in percent, so its check is a difference of means (percentage points), which also
# avoids dividing by a normal-brain mean near 0.
# ----------------------------------------------------------------------------------------------------------

# name -> (sequence, region labels, reference labels, "ratio" or "difference")
ROI_CONTRASTS: dict[str, tuple[str, tuple[int, ...], tuple[int, ...], str]] = {
    "Gd-T1w tumour / normal brain": ("t1c", (4,), (1,), "ratio"),
    "T2w edema / normal brain": ("t2w", (2,), (1,), "ratio"),
    "FLAIR edema / normal brain": ("t2f", (2,), (1,), "ratio"),
    "FLAIR cavity / normal brain": ("t2f", (3,), (1,), "ratio"),
    "APTw tumour - normal brain (% points)": ("aptw", (4,), (1,), "difference"),
}


def roi_contrasts(images: Mapping[str, np.ndarray], lesion_map: np.ndarray) -> dict[str, float | None]:
    """Each :data:`ROI_CONTRASTS` check of one case: ``mean(region) / mean(reference)`` or ``mean(region) -
    mean(reference)`` of the sequence, the regions from ``lesion_map`` (the real case's, for a synthetic image made
    from it); None where the case has no such region (no cavity, say), or the check's sequence is not given.

    Raises:
        InputError: an image of another shape than the map, non-finite values inside a region, or a reference
            whose mean is 0 for a ratio.
    """
    labels = np.asarray(lesion_map)
    values: dict[str, float | None] = {}
    for name, (sequence, region, reference, kind) in ROI_CONTRASTS.items():
        inside, normal = np.isin(labels, region), np.isin(labels, reference)
        if sequence not in images or not inside.any() or not normal.any():
            values[name] = None
            continue
        image = np.asarray(images[sequence], dtype=np.float64)
        if image.shape != labels.shape:
            raise InputError(f"{sequence}: shape {image.shape} is not the lesion map's {labels.shape}")
        a, b = image[inside], image[normal]
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            raise InputError(f"{sequence}: NaN or infinite values in the regions of {name!r}")
        if kind == "difference":
            values[name] = float(a.mean() - b.mean())
        elif b.mean() == 0:
            raise InputError(f"{sequence}: the normal brain's mean is 0, so {name!r} has no ratio")
        else:
            values[name] = float(a.mean() / b.mean())
    return values


# A voxel of a Gd-T1w image enhances when it is brighter than this many times the normal brain's median. In real
# phantom images (sample subject, seed 900025) the normal brain's 99.9th percentile is 1.65 times its median and the
# tumour's median 2.3 times: 1.75 separates them (Dice of the enhancing region with the tumour label 0.95).
ENHANCING = 1.75


def enhancing_overlap(t1c: np.ndarray, before: np.ndarray, after: np.ndarray) -> dict[str, float]:
    """How well a synthetic Gd-T1w image made from an edited lesion map follows the edit: the Dice of its enhancing
    brain region (:data:`ENHANCING` times the median of the normal brain, label 1 in both maps) with the edited
    tumour (label 4 of ``after``) and with the tumour before the edit (label 4 of ``before``). All on one grid."""
    from synthmr.metrics.regions import mask_dice

    before, after = np.rint(before).astype(np.int64), np.rint(after).astype(np.int64)
    normal = (before == NORMAL_BRAIN) & (after == NORMAL_BRAIN)
    old, new = before == 4, after == 4
    if not normal.any() or not old.any() or not new.any():
        raise InputError("enhancing_overlap needs normal brain and a tumour (label 4) in both lesion maps")
    enhancing = (after > 0) & (np.asarray(t1c) > ENHANCING * np.median(np.asarray(t1c)[normal]))

    return {"dice_edited": mask_dice(enhancing, new), "dice_before": mask_dice(enhancing, old),
            "enhancing_voxels": int(enhancing.sum()), "tumour_voxels": int(new.sum())}


def lesion_map_contrasts(item: Mapping):
    """The contrast checks of :func:`synthmr.metrics.quality.quality_report` for the real case ``item``: its lesion
    map, read once, and :func:`roi_contrasts` of one side's images in its regions."""
    labels = np.rint(read_image(item[LESION_MAP]).array).astype(np.int64)
    return lambda images: roi_contrasts(images, labels)


def quality_report(
    real: Sequence[Mapping],
    candidates: Mapping[str, Sequence[Mapping[str, str | os.PathLike]]],
    sequences: Sequence[str] = SEQUENCES,
    **options,
) -> dict:
    """The held-out comparison of the method, its baselines and ablations: the shared report
    (:func:`synthmr.metrics.quality.quality_report`: FID, KID and 1-NN per sequence and pooled, SSIM, PSNR and MAE
    over pairs) with the :data:`ROI_CONTRASTS` checks, each over the cases that have its region.

    Args:
        real: held-out subjects with ``case_id``, the ``sequences`` and ``lesion_map``.
        candidates: name -> per real case, sequence -> synthetic file on the case's grid.
        sequences: the sequences to judge.
        options: further arguments of the shared report (extractor, n_bootstrap, out, weights, ...).
    """
    from synthmr.metrics.quality import quality_report as held_out_comparison

    description = {
        "definition": "ratio: mean(region) / mean(normal brain); difference: mean(region) - mean(normal brain); "
        "regions from the real case's lesion map; error = |synthetic - real| per case that has the region",
        "features": {name: f"{check[0]} {check[3]}" for name, check in ROI_CONTRASTS.items()},
    }
    return held_out_comparison(
        real, candidates, sequences, contrasts=lesion_map_contrasts, contrast_description=description,
        what="held-out quality of synthetic brain sequences (synthmr.methods.brain_lesion2mpmri.quality_report)",
        required=[LESION_MAP], **options,
    )
