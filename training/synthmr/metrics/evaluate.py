"""Evaluate a set of synthetic images against real ones, write a JSON report, and rank checkpoints by SAMe.

Inputs are two folders of images (NIfTI, NRRD, MetaImage files; subfolders included, hidden files and DICOM
left out) or two datalist JSON files. What :func:`evaluate` does, in order:

1. **Pairing.** Folders: files with the same path relative to their folder are a pair. Datalists: the values of
   the same image key (e.g. ``"t1c"``) in items with the same ``"case_id"`` are a pair; items without
   ``"case_id"`` take part in the distribution metrics only. Pairs get the paired metrics (SSIM, PSNR, MSE,
   MAE), computed per pair (3D SSIM for volumes) and reported as mean and standard deviation over pairs.
2. **Intensities.** Each image is scaled to [0, 1] by its own 0.5th and 99.5th percentiles and clipped (a
   constant image becomes 0). Real and synthetic images get this same scaling before any metric, so paired
   metrics compare structure and contrast and ignore a global linear miscalibration of the synthetic
   intensities, as the per-image normalisation of Osuala et al. (arXiv 2311.10879) does.
3. **Slices.** Distribution metrics work on 2D images: a 2D image (or a one-slice volume) is itself, blank or
   not; a 3D volume contributes its non-empty slices along the third array axis (axial for axial acquisitions;
   a slice is non-empty when at least 1% of its pixels exceed 0.1 on the [0, 1] scale), evenly spaced, at most
   ``max_slices // n_images`` per volume, and each set is capped at ``max_slices`` slices in all.
   Every image file of a folder counts: keep label maps out of the folders (or use datalists with ``keys``).
4. **Distribution metrics** (need no pairs): "fid" (:func:`synthmr.metrics.fid.frechet_distance` on the
   features of the chosen extractor), "kid" (:func:`synthmr.metrics.kid.kernel_distance` on the same features,
   with its 95 % bootstrap interval in ``details``), "nn_accuracy" (leave-one-out 1-NN accuracy on the same
   features; the larger set is randomly subsampled to the size of the smaller so that 0.5 stays the chance level)
   and "ms_ssim_diversity" (mean MS-SSIM of random pairs of synthetic slices; slices of another shape than the
   most common one are resized to it, bilinearly). The MS-SSIM diversity of the real slices is recorded in
   ``details`` as the reference the synthetic value should be close to. Each set goes through the extractor
   once, whichever of these metrics are asked for.
5. **FID or KID.** FID is biased upward by an amount that depends on the sample size until each set has several
   times as many slices as the extractor has features (:mod:`synthmr.metrics.kid`). ``details["fid"]["reliable"]``
   says whether both sets have at least :data:`~synthmr.metrics.kid.FID_SAMPLES_PER_FEATURE` slices per feature.
   With the default metrics FID is reported only then (KID always); asked for by name it is computed at any size,
   because ranking checkpoints that all share one sample size (SAMe during training) is still fair, and
   :func:`format_table` marks an unreliable value. Its 95 % bootstrap interval
   (:func:`synthmr.metrics.fid.frechet_distance_with_interval`) is in ``details["fid"]["interval"]``.

The report names the extractor and its weights (:func:`synthmr.metrics.extractors.describe_extractor`), because
FID and 1-NN values from different extractors are not comparable.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from synthmr.errors import InputError
from synthmr.io import load_datalist, read_image, read_json
from synthmr.io._atomic import check_destination, finite_or_none, write_json
from synthmr.io.image import image_extension
from synthmr.metrics import extractors
from synthmr.metrics.diversity import ms_ssim_diversity, ms_ssim_settings
from synthmr.metrics.fid import extract_features, frechet_distance_with_interval
from synthmr.metrics.image import paired_metrics
from synthmr.metrics.kid import FID_SAMPLES_PER_FEATURE, fid_is_reliable, kernel_distance
from synthmr.metrics.same import Direction, rank_candidates
from synthmr.metrics.two_sample import nn_accuracy

PAIRED_METRICS = ("ssim", "psnr", "mse", "mae")
DISTRIBUTION_METRICS = ("fid", "kid", "nn_accuracy", "ms_ssim_diversity")
METRICS = PAIRED_METRICS + DISTRIBUTION_METRICS
_FEATURE_METRICS = ("fid", "kid", "nn_accuracy")
# Resamples of KID's bootstrap interval: enough for stable 2.5th and 97.5th percentiles, and cheap (no new features).
KID_BOOTSTRAP = 1000
# Resamples of FID's bootstrap interval (synthmr.metrics.fid.frechet_distance_with_interval): as many as KID's.
FID_BOOTSTRAP = 1000

# Robust intensity range of one image: ignores the few hottest and coldest voxels (vessels, artefacts).
_PERCENTILES = (0.5, 99.5)
# A slice is tissue, not air, when this fraction of its pixels is brighter than this level of the scaled range.
_FOREGROUND_LEVEL = 0.1
_FOREGROUND_FRACTION = 0.01


def evaluate(
    real: str | os.PathLike,
    fake: str | os.PathLike,
    metrics: Sequence[str] | None = None,
    extractor: str | nn.Module = "domain",
    extractor_weights: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    keys: Sequence[str] | None = None,
    datalist_key: str = "training",
    max_slices: int = 2048,
    seed: int = 0,
    batch_size: int = 32,
) -> dict:
    """Compare synthetic images with real ones (see the module docstring for pairing, scaling and slicing).

    Args:
        real: folder of real images or a datalist JSON.
        fake: folder of synthetic images or a datalist JSON (the same kind as ``real``).
        metrics: names from :data:`METRICS`; default: the paired metrics when there are pairs, plus all
            distribution metrics, FID only where both sets are large enough for it (see the module docstring).
        extractor: feature extractor for "fid", "kid" and "nn_accuracy": a name for
            :func:`synthmr.metrics.extractors.get_extractor` ("domain" ships with SynthMR) or a module.
        extractor_weights: local weights file of the extractor (needed for "inception" and
            "radimagenet_resnet50"; nothing is downloaded).
        out: where to write the report as JSON (atomically); nothing is written when None.
        overwrite: replace an existing ``out``.
        keys: datalists only: the image keys to compare; default: the keys holding image paths in both
            datalists (pass e.g. ``["t1c"]`` when both also hold label maps).
        datalist_key: datalists only: which list of the JSON files to read.
        max_slices: most 2D slices per set for the distribution metrics.
        seed: seed of the random subsampling (1-NN balance, MS-SSIM pairs) and of KID's bootstrap.
        batch_size: images per forward pass of the extractor.

    Returns:
        ``{"real", "fake", "n_real", "n_fake", "n_pairs", "n_real_slices", "n_fake_slices", "extractor",
        "metrics": {name: value or {"mean", "std"}}, "details": {...}}``; ``n_real``/``n_fake`` count images,
        ``*_slices`` the 2D slices of the distribution metrics, ``extractor`` is None when no metric used one.
        Non-finite values (PSNR of identical images) are None here and null in the JSON file.

    Raises:
        InputError: unknown metric name, an empty folder or datalist, a folder mixed with a datalist, a paired
            metric asked for without pairs, paired images of different shapes, multi-channel images, fewer than
            2 slices in a set for "fid" or "kid", ``out`` existing without ``overwrite``; errors of reading images
            and of the extractor (e.g. missing weights) propagate.
    """
    fid_only_if_reliable = metrics is None
    metrics = _check_metric_names(metrics)
    if out is not None:
        check_destination(Path(out), overwrite)
    if max_slices < 2:
        raise InputError(f"max_slices must be >= 2; got {max_slices}")
    real_images, fake_images = _collect_sets(Path(real), Path(fake), keys, datalist_key)
    pairs = [key for key in real_images.keyed if key in fake_images.keyed]
    if metrics is None:
        metrics = [m for m in METRICS if pairs or m not in PAIRED_METRICS]
    wanted_paired = [m for m in metrics if m in PAIRED_METRICS]
    if wanted_paired and not pairs:
        raise InputError(
            f"{', '.join(wanted_paired)} compare paired images, but no synthetic image in {fake} pairs with a real "
            f"one in {real} (same relative file name, or same case_id and key in datalists)"
        )
    module = None
    if any(m in _FEATURE_METRICS for m in metrics):
        # Loaded before any image is read, so that missing weights fail at once.
        module = extractor if isinstance(extractor, nn.Module) else extractors.get_extractor(
            extractor, weights=None if extractor_weights is None else str(extractor_weights)
        )
    want_slices = any(m in DISTRIBUTION_METRICS for m in metrics)
    real_slices, fake_slices, paired_values = _read_sets(
        real_images, fake_images, pairs, wanted_paired, want_slices, max_slices
    )

    report: dict = {
        "real": str(real),
        "fake": str(fake),
        "n_real": len(real_images),
        "n_fake": len(fake_images),
        "n_pairs": len(pairs),
        "n_real_slices": len(real_slices),
        "n_fake_slices": len(fake_slices),
        "extractor": None if module is None else extractors.describe_extractor(module),
        "metrics": {},
        "details": {"intensity_scaling": f"per image, percentiles {_PERCENTILES} -> [0, 1], clipped"},
    }
    for name in wanted_paired:
        values = np.asarray(paired_values[name], dtype=float)
        # PSNR is infinite for identical pairs: the mean is then infinite and the spread undefined (both null).
        spread = float(values.std()) if np.isfinite(values).all() else math.nan
        report["metrics"][name] = {"mean": float(values.mean()), "std": spread}

    if module is not None:
        real_features = extract_features(real_slices, module, batch_size)
        fake_features = extract_features(fake_slices, module, batch_size)
        _feature_metrics(report, metrics, real_features, fake_features, fid_only_if_reliable, seed)
    if "ms_ssim_diversity" in metrics:
        fake_stack, real_stack = _stack_common_shape(fake_slices), _stack_common_shape(real_slices)
        report["metrics"]["ms_ssim_diversity"] = ms_ssim_diversity(fake_stack, seed=seed)
        report["details"]["ms_ssim_diversity_real"] = ms_ssim_diversity(real_stack, seed=seed)
        report["details"]["ms_ssim_settings"] = ms_ssim_settings(fake_stack.shape[2:])

    report = finite_or_none(report)
    if out is not None:
        check_destination(Path(out), overwrite)
        write_json(Path(out), report, overwrite)
    return report


def _feature_metrics(
    report: dict,
    metrics: Sequence[str],
    real_features: torch.Tensor,
    fake_features: torch.Tensor,
    fid_only_if_reliable: bool,
    seed: int,
) -> None:
    """FID, KID and 1-NN accuracy from one extraction of each set, into ``report``'s metrics and details."""
    n_real, n_fake, feature_dim = len(real_features), len(fake_features), int(real_features.shape[1])
    if any(m in ("fid", "kid") for m in metrics):
        for which, n in (("real", n_real), ("fake", n_fake)):
            if n < 2:
                raise InputError(f"fid and kid need at least 2 slices per set; the {which} images gave {n}")
    common = {"extractor": report["extractor"], "n_real": n_real, "n_fake": n_fake, "feature_dim": feature_dim}
    reliable = fid_is_reliable(n_real, n_fake, feature_dim)
    if "fid" in metrics and (reliable or not fid_only_if_reliable):
        result = frechet_distance_with_interval(real_features, fake_features, n_bootstrap=FID_BOOTSTRAP, seed=seed)
        report["metrics"]["fid"] = result["fid"]
        report["details"]["fid"] = {
            "fid": result["fid"],
            "interval": result["interval"],
            "percentile_interval": result["percentile_interval"],
            "bootstrap_bias": result["bootstrap_bias"],
            **common,
            "n_bootstrap": result["n_bootstrap"],
            "reliable": reliable,
        }
    elif "fid" in metrics:
        report["details"]["fid_left_out"] = (
            f"FID not reported: {min(n_real, n_fake)} slices < {FID_SAMPLES_PER_FEATURE} x {feature_dim} features; "
            "see kid"
        )
    if "kid" in metrics:
        result = kernel_distance(real_features, fake_features, n_bootstrap=KID_BOOTSTRAP, seed=seed)
        report["metrics"]["kid"] = result["kid"]
        report["details"]["kid"] = {
            "kid": result["kid"],
            "interval": result["interval"],
            **common,
            "n_bootstrap": result["n_bootstrap"],
        }
    if "nn_accuracy" in metrics:
        accuracy = _balanced_nn_accuracy(real_features, fake_features, seed)
        report["metrics"]["nn_accuracy"] = accuracy["accuracy"]
        report["details"]["nn_accuracy"] = accuracy


def _check_metric_names(metrics: Sequence[str] | None) -> list[str] | None:
    if metrics is None:
        return None
    if isinstance(metrics, str):
        metrics = [metrics]
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise InputError(f"unknown metric(s) {unknown}; valid metrics: {', '.join(METRICS)}")
    if not metrics:
        raise InputError(f"metrics is empty; valid metrics: {', '.join(METRICS)}")
    return list(dict.fromkeys(metrics))


@dataclass
class _ImageSet:
    """The images of one side: those with a pairing key (relative name, or case_id and key) and those without."""

    keyed: dict = field(default_factory=dict)
    unkeyed: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keyed) + len(self.unkeyed)


def _collect_sets(
    real: Path, fake: Path, keys: Sequence[str] | None, datalist_key: str
) -> tuple[_ImageSet, _ImageSet]:
    kinds = {_kind(path) for path in (real, fake)}
    if kinds == {"folder"}:
        return _folder_images(real), _folder_images(fake)
    if kinds == {"datalist"}:
        real_items = load_datalist(real, datalist_key)
        fake_items = load_datalist(fake, datalist_key)
        if keys is None:
            keys = sorted(_image_keys(real_items) & _image_keys(fake_items))
            if not keys:
                raise InputError(
                    f"{real} and {fake} share no key holding image paths (real: {sorted(_image_keys(real_items))}, "
                    f"fake: {sorted(_image_keys(fake_items))}); pass keys=[...]"
                )
        return _datalist_images(real_items, keys, real), _datalist_images(fake_items, keys, fake)
    raise InputError(f"{real} and {fake}: give two folders of images or two datalist JSON files")


def _kind(path: Path) -> str:
    if path.is_dir():
        return "folder"
    if path.is_file() and path.suffix.lower() == ".json":
        return "datalist"
    if not path.exists():
        raise InputError(f"{path}: no such folder or datalist file")
    raise InputError(f"{path}: not a folder of images nor a datalist .json file")


def _folder_images(folder: Path) -> _ImageSet:
    """Image files below ``folder`` by relative path; DICOM files are left out (a series is not one image)."""
    images = _ImageSet()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if image_extension(path) not in (None, ".dcm"):
            images.keyed[relative.as_posix()] = path
    if not images:
        raise InputError(f"{folder}: no NIfTI, NRRD or MetaImage file found (subfolders included)")
    return images


def _image_keys(items: list[dict]) -> set[str]:
    return {key for item in items for key, value in item.items() if isinstance(value, str) and image_extension(value)}


def _datalist_images(items: list[dict], keys: Sequence[str], datalist: Path) -> _ImageSet:
    images = _ImageSet()
    for index, item in enumerate(items):
        for key in keys:
            if key not in item:
                continue
            if not isinstance(item[key], str):
                raise InputError(f"{datalist}: item {index} key {key!r} is not one image path: {item[key]!r}")
            if "case_id" not in item:
                images.unkeyed.append(Path(item[key]))
                continue
            pair_key = (str(item["case_id"]), key)
            if pair_key in images.keyed:
                raise InputError(f"{datalist}: case_id {pair_key[0]!r} appears more than once with key {key!r}")
            images.keyed[pair_key] = Path(item[key])
    if not images:
        raise InputError(f"{datalist}: no item holds any of the keys {list(keys)}")
    return images


def unit_scaled_image(path: Path) -> np.ndarray:
    """Read one image and scale it to [0, 1] by its own robust range."""
    volume = read_image(path)
    if volume.array.ndim != volume.ndim:
        raise InputError(f"{path}: multi-channel image {volume.array.shape}; give one image per channel")
    array = volume.array.astype(np.float32)
    low, high = np.percentile(array, _PERCENTILES)
    if high <= low:
        return np.zeros_like(array)
    return np.clip((array - low) / (high - low), 0.0, 1.0)


def _slices(image: np.ndarray, cap: int) -> list[np.ndarray]:
    """A 2D image (also one stored as a one-slice volume), or up to ``cap`` evenly spaced non-empty slices of a
    volume along its third axis."""
    if image.ndim == 2 or image.shape[2] == 1:
        return [image.reshape(image.shape[:2])]
    foreground = (image > _FOREGROUND_LEVEL).mean(axis=(0, 1)) >= _FOREGROUND_FRACTION
    indices = np.flatnonzero(foreground)
    if len(indices) > cap:
        indices = indices[np.linspace(0, len(indices) - 1, cap).round().astype(int)]
    return [np.ascontiguousarray(image[:, :, i]) for i in indices]


def _read_sets(
    real_images: _ImageSet, fake_images: _ImageSet, pairs: list, paired: list[str], want_slices: bool, max_slices: int
) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, list[float]]]:
    """Read every image once: paired metrics per pair, slices of both sets for the distribution metrics."""
    paired_values: dict[str, list[float]] = {name: [] for name in paired}
    slices: dict[str, list[np.ndarray]] = {"real": [], "fake": []}
    caps = {"real": max(1, max_slices // len(real_images)), "fake": max(1, max_slices // len(fake_images))}

    def keep(which: str, image: np.ndarray) -> None:
        if want_slices:
            slices[which].extend(_slices(image, caps[which]))

    for key in pairs:
        real_path, fake_path = real_images.keyed[key], fake_images.keyed[key]
        real_image, fake_image = unit_scaled_image(real_path), unit_scaled_image(fake_path)
        if real_image.shape != fake_image.shape:
            raise InputError(
                f"paired images differ in shape: {real_path} {real_image.shape} vs {fake_path} {fake_image.shape}"
            )
        if paired:
            values = paired_metrics(fake_image, real_image, data_range=1.0)
            for name in paired:
                paired_values[name].append(values[name])
        keep("real", real_image)
        keep("fake", fake_image)
    if want_slices:
        paired_keys = set(pairs)
        for which, images in (("real", real_images), ("fake", fake_images)):
            rest = [path for key, path in images.keyed.items() if key not in paired_keys] + images.unkeyed
            for path in rest:
                keep(which, unit_scaled_image(path))
    for which, images in (("real", real_images), ("fake", fake_images)):
        if want_slices and not slices[which]:
            raise InputError(f"no non-empty slice in the {which} images ({len(images)} images): nothing to compare")
        if len(slices[which]) > max_slices:
            chosen = np.linspace(0, len(slices[which]) - 1, max_slices).round().astype(int)
            slices[which] = [slices[which][i] for i in chosen]
    return slices["real"], slices["fake"], paired_values


def _balanced_nn_accuracy(real: torch.Tensor, fake: torch.Tensor, seed: int) -> dict:
    """1-NN accuracy on the features of equally many real and fake slices (the larger set randomly subsampled)."""
    size = min(len(real), len(fake))
    generator = np.random.default_rng(seed)
    real = real[torch.from_numpy(np.sort(generator.choice(len(real), size, replace=False)))]
    fake = fake[torch.from_numpy(np.sort(generator.choice(len(fake), size, replace=False)))]
    return nn_accuracy(real, fake)


def _stack_common_shape(slices: list[np.ndarray]) -> torch.Tensor:
    """``(N, 1, H, W)`` tensor; slices of another shape than the most common one are resized to it."""
    shape = Counter(image.shape for image in slices).most_common(1)[0][0]
    stacked = []
    for image in slices:
        tensor = torch.from_numpy(image)[None, None]
        if image.shape != shape:
            tensor = torch.nn.functional.interpolate(tensor, size=shape, mode="bilinear", align_corners=False)
        stacked.append(tensor[0])
    return torch.stack(stacked)


def format_table(report: Mapping) -> str:
    """The report as an aligned text table: inputs, counts, extractor, then one row per metric; KID with its 95 %
    interval, and FID marked where the sets were too small for it (see the module docstring)."""

    lines = [
        f"real       {report['real']}  ({report['n_real']} images, {report.get('n_real_slices', 0)} slices)",
        f"fake       {report['fake']}  ({report['n_fake']} images, {report.get('n_fake_slices', 0)} slices)",
        f"pairs      {report['n_pairs']}",
        f"extractor  {report['extractor'] or '-'}",
        "",
    ]
    rows = [("metric", "mean", "std", "")]
    for name, value in report["metrics"].items():
        if isinstance(value, Mapping):
            rows.append((name, _number(value["mean"]), _number(value["std"]), ""))
        else:
            rows.append((name, _number(value), "", _metric_note(name, report.get("details", {}))))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for row in rows:
        lines.append(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]}".rstrip())
    return "\n".join(lines)


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _metric_note(name: str, details: Mapping) -> str:
    """KID's and FID's intervals, and the warning on an FID from sets too small for it; empty for other metrics."""
    detail = details.get(name)
    if not isinstance(detail, Mapping):
        return ""
    notes = []
    if name in ("kid", "fid") and detail.get("interval"):
        low, high = detail["interval"]
        notes.append(f"95 % interval [{_number(low)}, {_number(high)}]")
    if name == "fid" and detail.get("reliable") is False:
        n = min(detail["n_real"], detail["n_fake"])
        notes.append(f"(n = {n} < {FID_SAMPLES_PER_FEATURE} x {detail['feature_dim']} features: biased; see kid)")
    return "  ".join(notes)


def select_checkpoint(
    reports: Sequence[str | os.PathLike | Mapping],
    names: Sequence[str] | None = None,
    weights: Mapping[str, float] | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    directions: Mapping[str, Direction] | None = None,
) -> list[tuple[str, float]]:
    """Rank evaluation reports (one per checkpoint) by SAMe, best first.

    Args:
        reports: report dicts from :func:`evaluate` or paths of their JSON files.
        names: one name per report; default: the report's path for files, its ``"fake"`` entry for dicts.
        weights, groups, directions: as :func:`synthmr.metrics.same.same_scores`; a metric reported as
            ``{"mean", "std"}`` enters with its mean. By default every metric of the reports counts, "kid" counts
            as lower-is-better, and so does "ms_ssim_diversity" (the GAN-literature reading, which also rewards
            noise); to reward diversity close to the real images' instead, pass its real value as a target, e.g.
            ``directions={"ms_ssim_diversity": report["details"]["ms_ssim_diversity_real"]}``.

    Returns:
        ``[(name, SAMe), ...]`` sorted best (lowest SAMe) first.

    Raises:
        InputError: no reports, unreadable report files, names not one per report or repeated, reports whose
            metrics were computed with different feature extractors, and the errors of
            :func:`synthmr.metrics.same.same_scores` (e.g. a metric missing from one report).
    """
    if not reports:
        raise InputError("no reports to rank")
    loaded = [_load_report(report) for report in reports]
    if names is None:
        names = [str(report.get("fake") if isinstance(report, Mapping) else report) for report in reports]
    names = [str(name) for name in names]
    if len(names) != len(loaded):
        raise InputError(f"{len(names)} names for {len(loaded)} reports; give one name per report")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(f"reports share the name(s) {repeated}; pass names=[...] to tell them apart")
    used_extractors = {report["extractor"] for report in loaded if report["extractor"] is not None}
    if len(used_extractors) > 1:
        raise InputError(
            f"the reports use different feature extractors {sorted(used_extractors)}; their FID and 1-NN values "
            "are not comparable"
        )
    table = {
        name: {
            metric: value["mean"] if isinstance(value, Mapping) else value
            for metric, value in report["metrics"].items()
        }
        for name, report in zip(names, loaded)
    }
    return rank_candidates(table, directions, weights, groups)


def _load_report(report: str | os.PathLike | Mapping) -> Mapping:
    if isinstance(report, Mapping):
        content = report
        where = f"report of {report.get('fake', '?')}"
    else:
        where = str(report)
        content = read_json(report, "evaluation report")
    if not isinstance(content, Mapping) or not isinstance(content.get("metrics"), Mapping):
        raise InputError(f"{where}: not an evaluation report (no 'metrics' object)")
    return {"extractor": content.get("extractor"), "metrics": content["metrics"]}
