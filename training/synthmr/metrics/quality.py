"""A paper-style quality table: candidates (a model, baselines) against the real images, globally and per region.

For each candidate set of synthetic images, :func:`quality_report` computes

- the global report of :func:`synthmr.metrics.evaluate.evaluate` (paired SSIM, PSNR, MSE, MAE; FID, ...);
- the paired metrics inside each named region mask of the real cases (e.g. ``lesion``, ``fgt``), per case, as
  mean and standard deviation over the cases where the region is present. Images get the same per-image robust
  scaling to [0, 1] as in :func:`~synthmr.metrics.evaluate.evaluate` before any metric;
- SAMe over the candidates (:func:`synthmr.metrics.evaluate.select_checkpoint`), best first.

Per-image scaling is the protocol of Osuala et al. (arXiv 2311.10879), but it hides what matters in DCE-MRI:
a post-contrast image's own range is set by its brightest enhancing structure (the heart), so an unenhanced
copy of the pre-contrast image can look close to it. With ``shared_scale="t1_pre"`` the region metrics are
computed a second time with every image of a case scaled by that case's ``t1_pre`` range instead (0.5th and
99.5th percentiles to 0 and 1, clipped to [0, :data:`SHARED_SCALE_HEADROOM`], SSIM and PSNR with that data range),
the common receiver scale of the acquisitions, on which enhancement is measured (subtraction images,
percentage enhancement). That second table is under ``"regions_shared_scale"`` and includes the whole image.

Baselines are just more candidates: the identity baseline of an image-to-image method is its input images.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from synthmr.errors import InputError
from synthmr.io import read_image, save_datalist
from synthmr.io._atomic import atomic_output, check_destination
from synthmr.metrics.evaluate import _PERCENTILES, PAIRED_METRICS, evaluate, select_checkpoint, unit_scaled_image
from synthmr.metrics.image import paired_metrics

# With a shared scale, images may exceed the source's range (enhancement): up to this multiple of it is kept.
SHARED_SCALE_HEADROOM = 3.0


def quality_report(
    real: Sequence[Mapping],
    candidates: Mapping[str, Sequence[str | os.PathLike]],
    key: str,
    regions: Sequence[str] = (),
    metrics: Sequence[str] = ("ssim", "psnr", "mse", "mae", "fid"),
    extractor: str = "domain",
    extractor_weights: str | os.PathLike | None = None,
    same_weights: Mapping[str, float] | None = None,
    shared_scale: str | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> dict:
    """Compare each candidate's images with the real ``key`` images, globally and inside ``regions``.

    Args:
        real: cases with ``case_id``, the real image under ``key`` and a label map under each region name
            (nonzero = inside).
        candidates: name -> one synthetic image path per real case, in the same order.
        key: the image key being judged (e.g. ``"t1_post1"``).
        regions: label-map keys of the real cases to compute region metrics in.
        metrics: global metrics (names of :data:`synthmr.metrics.evaluate.METRICS`).
        extractor, extractor_weights: the FID feature extractor.
        same_weights: SAMe weights per metric (e.g. ``{"psnr": 0}``).
        shared_scale: key of the real cases' image whose range scales all images of the case for a second set of
            region metrics (see the module docstring), or None.
        out: JSON file to write the report to.
        overwrite: replace an existing ``out``.

    Returns:
        ``{"key", "n_cases", "regions", "candidates": {name: {"global": report, "regions": {region: {"n_cases",
        metric: {"mean", "std"}}}}}, "same": [[name, score], ...]}``.
    """
    if out is not None:
        check_destination(Path(out), overwrite)
    if not candidates:
        raise InputError("no candidate to evaluate")
    real = [dict(item) for item in real]
    for name, paths in candidates.items():
        if len(paths) != len(real):
            raise InputError(f"candidate {name!r} has {len(paths)} images for {len(real)} real cases")
    for index, item in enumerate(real):
        missing = [k for k in ("case_id", key, *regions, *([shared_scale] if shared_scale else [])) if k not in item]
        if missing:
            raise InputError(f"real case {index} lacks {missing}")

    report: dict = {"key": key, "n_cases": len(real), "regions": list(regions), "candidates": {}}
    with tempfile.TemporaryDirectory() as scratch:
        real_json = save_datalist(
            {"training": [{"case_id": item["case_id"], key: str(Path(item[key]).absolute())} for item in real]},
            Path(scratch) / "real.json",
        )
        for name, paths in candidates.items():
            fake_items = [{"case_id": item["case_id"], key: str(Path(p).absolute())} for item, p in zip(real, paths)]
            fake_json = save_datalist({"training": fake_items}, Path(scratch) / f"{name}.json")
            global_report = evaluate(
                real_json, fake_json, metrics=metrics, extractor=extractor, extractor_weights=extractor_weights, keys=[key]
            )
            global_report["real"], global_report["fake"] = "real", name
            report["candidates"][name] = {
                "global": global_report,
                "regions": _region_metrics(real, paths, key, regions),
            }
            if shared_scale:
                report["candidates"][name]["regions_shared_scale"] = _region_metrics(
                    real, paths, key, ["image", *regions], shared_scale
                )
    report["shared_scale"] = shared_scale
    ranking = select_checkpoint(
        [report["candidates"][name]["global"] for name in candidates], names=list(candidates), weights=same_weights
    )
    report["same"] = [[name, score] for name, score in ranking]
    if out is not None:
        with atomic_output(Path(out), suffix=".json") as temporary:
            temporary.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return report


def _shared_scaled(path: Path, low: float, high: float) -> np.ndarray:
    array = read_image(path).array.astype(np.float32)
    return np.clip((array - low) / (high - low), 0.0, SHARED_SCALE_HEADROOM)


def _region_metrics(
    real: list[dict], paths: Sequence, key: str, regions: Sequence[str], shared_scale: str | None = None
) -> dict:
    """Paired metrics per region (the pseudo-region ``"image"`` is the whole image), mean and std over cases."""
    values: dict[str, dict[str, list[float]]] = {region: {m: [] for m in PAIRED_METRICS} for region in regions}
    data_range = 1.0 if shared_scale is None else SHARED_SCALE_HEADROOM
    for item, path in zip(real, paths):
        if shared_scale is None:
            real_image, fake_image = unit_scaled_image(Path(item[key])), unit_scaled_image(Path(path))
        else:
            low, high = (float(v) for v in np.percentile(read_image(item[shared_scale]).array, _PERCENTILES))
            if high <= low:
                raise InputError(f"{item[shared_scale]}: constant image; it cannot set the shared scale")
            real_image, fake_image = _shared_scaled(Path(item[key]), low, high), _shared_scaled(Path(path), low, high)
        if real_image.shape != fake_image.shape:
            raise InputError(f"{path}: shape {fake_image.shape} differs from the real {item[key]} {real_image.shape}")
        for region in regions:
            mask = np.ones(real_image.shape, bool) if region == "image" else read_image(item[region]).array > 0
            if mask.shape != real_image.shape:
                raise InputError(f"{item[region]}: mask shape {mask.shape} differs from the image {real_image.shape}")
            if not mask.any():
                continue  # the region is absent from this case (e.g. a healthy breast has no lesion)
            for metric, value in paired_metrics(fake_image, real_image, data_range=data_range, mask=mask).items():
                values[region][metric].append(value)
    summary = {}
    for region, per_metric in values.items():
        n = len(per_metric["mae"])
        summary[region] = {"n_cases": n}
        for metric, numbers in per_metric.items():
            array = np.asarray(numbers, dtype=float)
            finite = n > 0 and bool(np.isfinite(array).all())
            summary[region][metric] = {
                "mean": float(array.mean()) if finite else None,
                "std": float(array.std()) if finite else None,
            }
    return summary


def format_quality_table(report: Mapping) -> str:
    """The report as text: one row per candidate and region, the SAMe ranking last."""

    def cell(value) -> str:
        if isinstance(value, Mapping):
            value = value.get("mean")
        return "n/a" if value is None else f"{value:.4f}"

    metric_names = [m for m in PAIRED_METRICS]
    extra = [m for m in next(iter(report["candidates"].values()))["global"]["metrics"] if m not in metric_names]
    header = ["candidate", "region", "cases", *metric_names, *extra]
    rows = [header]
    for name, result in report["candidates"].items():
        global_metrics = result["global"]["metrics"]
        rows.append([name, "image", str(report["n_cases"]), *(cell(global_metrics.get(m)) for m in metric_names + extra)])
        for region, values in result["regions"].items():
            rows.append([name, region, str(values["n_cases"]), *(cell(values[m]) for m in metric_names), *[""] * len(extra)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip() for row in rows]
    if report.get("shared_scale"):
        lines.append(f"\nthe same regions with every image of a case on its {report['shared_scale']} scale:")
        shared = [header[:3] + metric_names]
        for name, result in report["candidates"].items():
            for region, values in result["regions_shared_scale"].items():
                shared.append([name, region, str(values["n_cases"]), *(cell(values[m]) for m in metric_names)])
        widths = [max(len(row[i]) for row in shared) for i in range(len(shared[0]))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in shared]
    lines.append("SAMe (0 = best of these candidates): " + ", ".join(f"{n} {s:.3f}" for n, s in report["same"]))
    return "\n".join(lines)
