"""SAMe, the Scaled Aggregate Measure: one number per candidate (checkpoint) from several image-quality metrics.

Osuala et al., "Pre- to Post-Contrast Breast MRI Synthesis for Enhanced Tumour Segmentation", SPIE Medical
Imaging 2024, arXiv 2311.10879, combine SSIM, MSE, MAE, FID (ImageNet features) and FID (RadImageNet features),
each scaled across the candidates being compared, into SAMe and pick the checkpoint with the best SAMe.

The paper does not publish its exact formula (and its code release has none), so this module implements the
reconstruction below and makes the unverifiable choices configurable:

1. Each metric ``m`` is min-max scaled across the candidates, with its direction aligned so that 0 is the best
   candidate and 1 the worst: ``s = (v - min) / (max - min)`` for metrics where lower is better ("min"),
   ``s = (max - v) / (max - min)`` for metrics where higher is better ("max"), and for metrics that are best at a
   target value ``t`` (1-NN accuracy is best at 0.5) the distance ``|v - t|`` is scaled as a "min" metric.
2. A metric that has the same value for every candidate (``max == min``) carries no information for ranking:
   it contributes 0 to every candidate (rather than NaN from dividing by zero).
3. SAMe is the weighted mean of the scaled values, so it lies in [0, 1] and **lower is better**.
   Without ``groups`` every metric weighs ``weights.get(m, 1)``; with ``groups`` every group weighs the same and
   the metrics inside a group share their group's weight in proportion to ``weights.get(m, 1)`` (e.g. the paper's
   analytical group {ssim, mse, mae} and feature group {fid_imagenet, fid_radimagenet}).
4. Min and max are taken over the candidates only (no reference bounds such as a real-vs-real FID).

Because of (1) the ranking does not depend on the direction a metric is reported in: SSIM given as ``1 - SSIM``
with direction "min" scales to exactly the same values as SSIM with direction "max". SAMe values are relative
to the candidate set: adding or removing a candidate changes everyone's score, so compare rankings, not SAMe
values across different candidate sets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from synthmr.errors import InputError

Direction = str | float
""""min" (lower is better), "max" (higher is better) or a number (best at that value)."""

_MAX_IS_BETTER = ("ssim", "ms_ssim", "psnr", "dice")
_MIN_IS_BETTER = ("mse", "mae", "rmse", "lpips", "hd95", "ms_ssim_diversity")
_NN_ACCURACY_CHANCE = 0.5


def default_direction(metric: str) -> Direction | None:
    """The usual direction of a metric name, or None when there is none.

    "ssim", "ms_ssim", "psnr", "dice" -> "max"; "mse", "mae", "rmse", "lpips", "hd95" and "ms_ssim_diversity" (lower
    means a more diverse fake set, the usual GAN reading; give the real set's value as a target to prefer
    realistic diversity) -> "min"; names starting with "fid" (fid, fid_imagenet, fid_radimagenet, ...) or "kid" -> "min";
    names starting with "nn_accuracy" -> 0.5 (the 1-NN two-sample accuracy of indistinguishable sets).
    """
    if metric in _MAX_IS_BETTER:
        return "max"
    if metric in _MIN_IS_BETTER or metric.startswith(("fid", "kid")):
        return "min"
    if metric.startswith("nn_accuracy"):
        return _NN_ACCURACY_CHANCE
    return None


def _direction_of(metric: str, directions: Mapping[str, Direction] | None) -> Direction:
    direction = (directions or {}).get(metric, default_direction(metric))
    if direction is None:
        raise InputError(f"metric {metric!r} has no default direction: give directions={{{metric!r}: 'min' or 'max'}}")
    if isinstance(direction, str):
        if direction not in ("min", "max"):
            raise InputError(f"direction of {metric!r} is {direction!r}: use 'min', 'max' or a target number")
        return direction
    if isinstance(direction, bool) or not isinstance(direction, (int, float)) or not math.isfinite(direction):
        raise InputError(f"direction of {metric!r} is {direction!r}: use 'min', 'max' or a finite target number")
    return float(direction)


def _metric_weights(
    metrics: list[str], weights: Mapping[str, float] | None, groups: Mapping[str, Sequence[str]] | None
) -> dict[str, float]:
    """Final weight of every metric, summing to 1 (see the module docstring, point 3)."""
    weights = dict(weights or {})
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise InputError(f"weight of {name!r} is {weight!r}: weights must be finite numbers >= 0")
    if groups is None:
        unknown = sorted(set(weights) - set(metrics))
        if unknown:
            raise InputError(f"weights name metric(s) {unknown} that are not in the table; metrics: {metrics}")
        raw = {m: float(weights.get(m, 1.0)) for m in metrics}
        total = sum(raw.values())
        if total <= 0:
            raise InputError(f"all metric weights are 0: {raw}")
        return {m: w / total for m, w in raw.items()}

    if not groups:
        raise InputError("groups is empty: give at least one group of metrics, or groups=None")
    grouped = [m for members in groups.values() for m in members]
    repeated = sorted({m for m in grouped if grouped.count(m) > 1})
    if repeated:
        raise InputError(f"metric(s) {repeated} appear in more than one group")
    unknown = sorted(set(weights) - set(grouped))
    if unknown:
        raise InputError(f"weights name metric(s) {unknown} that are in no group; groups: {dict(groups)}")
    final: dict[str, float] = {}
    for group, members in groups.items():
        raw = {m: float(weights.get(m, 1.0)) for m in members}
        total = sum(raw.values())
        if not members or total <= 0:
            raise InputError(f"group {group!r} has no metric with a weight above 0: {list(members)}")
        final.update({m: w / total / len(groups) for m, w in raw.items()})
    return final


def scaled_metrics(
    table: Mapping[str, Mapping[str, float]],
    directions: Mapping[str, Direction] | None = None,
    metrics: Sequence[str] | None = None,
) -> dict[str, dict[str, float]]:
    """Every metric min-max scaled across the candidates, 0 = best candidate, 1 = worst.

    Args:
        table: ``{candidate: {metric: value}}``.
        directions: per-metric "min", "max" or a target number; metrics not listed use :func:`default_direction`.
        metrics: the metrics to scale; default: every metric in the table.

    Returns:
        ``{candidate: {metric: scaled value}}``; a metric constant across candidates scales to 0 everywhere.

    Raises:
        InputError: empty table, a metric missing or not a finite number for some candidate, or a metric without
            a direction.
    """
    if not table:
        raise InputError("the table of candidates is empty")
    if metrics is None:
        metrics = list(dict.fromkeys(m for row in table.values() for m in row))
    scaled: dict[str, dict[str, float]] = {candidate: {} for candidate in table}
    for metric in metrics:
        direction = _direction_of(metric, directions)
        values = {}
        for candidate, row in table.items():
            if metric not in row:
                raise InputError(f"metric {metric!r} is missing for candidate {candidate!r}")
            value = row[metric]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"metric {metric!r} of candidate {candidate!r} is {value!r}, not a finite number")
            values[candidate] = abs(value - direction) if isinstance(direction, float) else float(value)
        low, high = min(values.values()), max(values.values())
        for candidate, value in values.items():
            if high == low:
                scaled[candidate][metric] = 0.0
            elif direction == "max":
                scaled[candidate][metric] = (high - value) / (high - low)
            else:
                scaled[candidate][metric] = (value - low) / (high - low)
    return scaled


def same_scores(
    table: Mapping[str, Mapping[str, float]],
    directions: Mapping[str, Direction] | None = None,
    weights: Mapping[str, float] | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, float]:
    """SAMe of every candidate: weighted mean of direction-aligned min-max scaled metrics (0 = best, 1 = worst).

    Args:
        table: ``{candidate: {metric: value}}``, e.g. one row per checkpoint.
        directions: per-metric "min" (lower is better), "max" (higher is better) or a target number (best at that
            value, e.g. 0.5 for 1-NN accuracy); metrics not listed use :func:`default_direction`.
        weights: per-metric weight (>= 0, default 1 for every metric not listed). Without ``groups`` the metrics
            of the table are averaged with these weights; with ``groups`` they set the share of a metric inside
            its group.
        groups: ``{group: [metric, ...]}``; every group gets the same total weight. Only the metrics named in
            groups are used: metrics of the table that are in no group are left out.

    Returns:
        ``{candidate: SAMe}`` in the order of ``table``.

    Raises:
        InputError: see :func:`scaled_metrics`; also a weight naming an unused metric, negative weights, all
            weights 0, a metric in two groups, an empty group.
    """
    metrics = None if groups is None else [m for members in groups.values() for m in members]
    scaled = scaled_metrics(table, directions, metrics)
    used = list(next(iter(scaled.values())))
    metric_weights = _metric_weights(used, weights, groups)
    return {candidate: sum(metric_weights[m] * s for m, s in row.items()) for candidate, row in scaled.items()}


def rank_candidates(
    table: Mapping[str, Mapping[str, float]],
    directions: Mapping[str, Direction] | None = None,
    weights: Mapping[str, float] | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
) -> list[tuple[str, float]]:
    """Candidates sorted by SAMe, best (lowest) first; ties keep the order of ``table``.

    Arguments as :func:`same_scores`.
    """
    scores = same_scores(table, directions, weights, groups)
    return sorted(scores.items(), key=lambda item: item[1])
