"""A paper-style quality table: candidates (a model, baselines) against the real images, globally and per region.

For each candidate set of synthetic images, :func:`quality_report` computes

- the global report of :func:`synthmr.metrics.evaluate.evaluate` (paired SSIM, PSNR, MSE, MAE; FID, ...);
- the paired metrics inside each named region mask of the real cases (e.g. ``lesion``, ``fgt``), per case, as
  mean and standard deviation over the cases where the region is present. Images get the same per-image robust
  scaling to [0, 1] as in :func:`~synthmr.metrics.evaluate.evaluate` before any metric;
- SAMe over the candidates (:func:`synthmr.metrics.evaluate.select_checkpoint`), best first.

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
from synthmr.metrics.evaluate import PAIRED_METRICS, unit_scaled_image, evaluate, select_checkpoint
from synthmr.metrics.image import paired_metrics


def quality_report(
    real: Sequence[Mapping],
    candidates: Mapping[str, Sequence[str | os.PathLike]],
    key: str,
    regions: Sequence[str] = (),
    metrics: Sequence[str] = ("ssim", "psnr", "mse", "mae", "fid"),
    extractor: str = "domain",
    extractor_weights: str | os.PathLike | None = None,
    same_weights: Mapping[str, float] | None = None,
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
        missing = [k for k in ("case_id", key, *regions) if k not in item]
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
    ranking = select_checkpoint(
        [report["candidates"][name]["global"] for name in candidates], names=list(candidates), weights=same_weights
    )
    report["same"] = [[name, score] for name, score in ranking]
    if out is not None:
        with atomic_output(Path(out), suffix=".json") as temporary:
            temporary.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return report


def _region_metrics(real: list[dict], paths: Sequence, key: str, regions: Sequence[str]) -> dict:
    values: dict[str, dict[str, list[float]]] = {region: {m: [] for m in PAIRED_METRICS} for region in regions}
    for item, path in zip(real, paths):
        real_image, fake_image = unit_scaled_image(Path(item[key])), unit_scaled_image(Path(path))
        if real_image.shape != fake_image.shape:
            raise InputError(f"{path}: shape {fake_image.shape} differs from the real {item[key]} {real_image.shape}")
        for region in regions:
            mask = read_image(item[region]).array > 0
            if mask.shape != real_image.shape:
                raise InputError(f"{item[region]}: mask shape {mask.shape} differs from the image {real_image.shape}")
            if not mask.any():
                continue  # the region is absent from this case (e.g. a healthy breast has no lesion)
            for metric, value in paired_metrics(fake_image, real_image, data_range=1.0, mask=mask).items():
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
    lines.append("SAMe (0 = best of these candidates): " + ", ".join(f"{n} {s:.3f}" for n, s in report["same"]))
    return "\n".join(lines)
