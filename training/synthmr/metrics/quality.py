"""The held-out comparison of synthetic sequences from several generators (candidates) against the real ones:
distribution, pairs and a method's contrast checks, in one report.

- **Distribution**, per sequence and pooled (all sequences' slices in one set), in the features of one extractor,
  each set's features extracted once: FID (Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge
  to a Local Nash Equilibrium", arXiv 1706.08500; :func:`synthmr.metrics.fid.frechet_distance_with_interval`) and
  KID (Bińkowski et al., "Demystifying MMD GANs", arXiv 1801.01401; :func:`synthmr.metrics.kid.kernel_distance`),
  each with its 95 % bootstrap interval, and the leave-one-out 1-NN accuracy (Lopez-Paz and Oquab, "Revisiting
  Classifier Two-Sample Tests", arXiv 1610.06545; 0.5 = the sets cannot be told apart). FID is always given,
  marked ``reliable`` only where both sets hold at least 2 images per feature
  (:func:`synthmr.metrics.kid.fid_is_reliable`; docs/design.md, *Reported numbers*). Volumes contribute up to
  :data:`QUALITY_MAX_SLICES` slices per sequence and side.
- **Pairs**: SSIM, PSNR and MAE of each synthetic image against its real one, both scaled to [0, 1] by their own
  0.5th and 99.5th percentiles (:func:`synthmr.metrics.evaluate.unit_scaled_image`).
- **Contrasts**: what the method says its images must show (a tumour's enhancement against the liver, an edema's
  brightness against normal brain...), given as ``contrasts(item)``: for the real case ``item`` (its masks read
  once), a function of one side's images (in their own units) returning the named values. Each value is measured
  in the real and
  in the synthetic images; the report gives the mean ``|synthetic - real|`` over the cases where the check applies
  (a case without a cavity has no cavity contrast) with its 95 % bootstrap interval over cases.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from synthmr.errors import InputError

POOLED = "pooled"  # the set of all sequences' slices together
QUALITY_MAX_SLICES = 2048  # most slices per sequence and side for the distribution metrics (3D volumes)
PAIRED_METRICS = ("ssim", "psnr", "mae")

# contrasts(real case) -> measure(images of one side, sequence -> array) -> check name -> value or None
Contrasts = Callable[[Mapping], Callable[[Mapping[str, np.ndarray]], Mapping[str, "float | None"]]]


def quality_report(
    real: Sequence[Mapping],
    candidates: Mapping[str, Sequence[Mapping[str, str | os.PathLike]]],
    sequences: Sequence[str],
    contrasts: Contrasts | None = None,
    contrast_description: Mapping | None = None,
    extractor: str | torch.nn.Module = "domain",
    extractor_weights: str | os.PathLike | None = None,
    n_bootstrap: int = 1000,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    weights: Mapping[str, str | os.PathLike] | None = None,
    seed: int = 0,
    batch_size: int = 32,
    what: str = "held-out quality of synthetic sequences",
    required: Sequence[str] = (),
) -> dict:
    """The comparison of the candidates against the real cases (module docstring).

    Args:
        real: the held-out cases, each with ``case_id``, the ``sequences`` and the ``required`` keys (masks the
            contrasts read); a ``seed`` (phantom cases) is recorded.
        candidates: name -> one dict per real case, in the same order, sequence -> synthetic image file on the
            real case's grid: what :meth:`synthmr.inference.Synthesizer.run` returns.
        sequences: the sequences to judge.
        contrasts: ``contrasts(item)`` -> ``measure``, for the real case ``item`` (reading its masks once);
            ``measure(images)`` -> check name -> value (or None where it does not apply), for one side's
            ``images`` of that case (sequence -> array in its own units). Their InputErrors (an empty region, say)
            are reported naming the case and side.
        contrast_description: recorded as the report's ``"contrast"`` (definition of the checks, their features);
            ``{"features": {name: what it shows}}`` labels each check's result.
        extractor, extractor_weights: the feature extractor of FID, KID and 1-NN accuracy: a name for
            :func:`synthmr.metrics.extractors.get_extractor` with its local weights file, or a module.
        n_bootstrap: resamples of every interval.
        out: JSON file the report is written to (atomically); nothing is written when None.
        overwrite: replace an existing ``out``.
        weights: candidate name -> its generator's weights file, recorded with its SHA-256.
        seed: seed of the resampling and of 1-NN accuracy's balancing subsample.
        batch_size: images per forward pass of the extractor.
        what: the report's description.
        required: keys every real case must have besides ``case_id`` and the sequences.

    Returns:
        ``{"what", "sequences", "n_cases", "case_ids", "seeds", "extractor", "feature_dim", "n_bootstrap",
        "seed", "confidence", "intensity_scaling", "contrast", "candidates": {name: {"weights", "distribution":
        {set: {"n_real", "n_fake", "feature_dim", "fid": {"value", "interval", "percentile_interval",
        "bootstrap_bias", "reliable"}, "kid": {"value", "interval"}, "nn_accuracy": {...}}}, "paired": {set:
        {"n_pairs", "ssim", "psnr", "mae": {"mean", "std"}}}, "contrast": {check: {"feature", "n_cases", "real",
        "fake", "errors", "real_mean", "fake_mean", "mean_error", "interval", "n_bootstrap"}}}}}`` where ``set``
        is each sequence and ``"pooled"``; a check's lists hold None for cases where it does not apply.

    Raises:
        InputError: ``out`` exists without ``overwrite``; no candidate; fewer than 2 cases; a case or a candidate's
            entry lacking a key; a candidate with another number of cases; a weights file that is missing or names
            no candidate; images of different shapes; the contrasts' errors; and the errors of reading images and
            of the extractor.
    """
    from synthmr.io import read_image
    from synthmr.io._atomic import check_destination, finite_or_none, write_json
    from synthmr.metrics import extractors
    from synthmr.metrics.evaluate import _balanced_nn_accuracy, _slices, unit_scaled_image
    from synthmr.metrics.fid import extract_features, frechet_distance_with_interval
    from synthmr.metrics.image import paired_metrics
    from synthmr.metrics.kid import CONFIDENCE, fid_is_reliable, kernel_distance

    if out is not None:
        check_destination(Path(out), overwrite)
    sequences = list(sequences)
    real = [dict(item) for item in real]
    check_quality_inputs(real, candidates, sequences, weights, required)
    digests = {name: {"path": str(path), "sha256": file_sha256(Path(path))} for name, path in (weights or {}).items()}
    module = extractor if isinstance(extractor, torch.nn.Module) else extractors.get_extractor(
        extractor, weights=None if extractor_weights is None else str(extractor_weights)
    )
    cap = max(1, QUALITY_MAX_SLICES // len(real))
    features_of = contrast_description.get("features", {}) if contrast_description else {}

    def features(images: dict[str, list[np.ndarray]]) -> dict[str, torch.Tensor]:
        """Per sequence and pooled: features of the slices of one side's [0, 1] images."""
        found = {
            s: extract_features([piece for image in images[s] for piece in _slices(image, cap)], module, batch_size)
            for s in sequences
        }
        found[POOLED] = torch.cat([found[s] for s in sequences])
        return found

    measures = []
    for item in real if contrasts is not None else []:
        try:
            measures.append(contrasts(item))
        except InputError as error:
            raise InputError(f"real case {item['case_id']!r}: {error}") from None

    def case_contrasts(images: dict[str, list[np.ndarray]], side: str) -> list[Mapping[str, float | None]]:
        values = []
        for index, (item, measure) in enumerate(zip(real, measures)):
            try:
                values.append(dict(measure({s: images[s][index] for s in sequences})))
            except InputError as error:
                raise InputError(f"{side}, case {item['case_id']!r}: {error}") from None
        return values

    # The real side, read and extracted once for every candidate.
    real_raw = {s: [read_image(item[s]).array for item in real] for s in sequences}
    real_unit = {s: [unit_scaled_image(Path(item[s])) for item in real] for s in sequences}
    real_features = features(real_unit)
    real_contrasts = case_contrasts(real_raw, "real") if contrasts is not None else None

    results = {}
    for name, cases in candidates.items():
        fake_unit = {s: [unit_scaled_image(Path(case[s])) for case in cases] for s in sequences}
        paired: dict[str, dict[str, list[float]]] = {s: {m: [] for m in PAIRED_METRICS} for s in sequences}
        for s in sequences:
            for index, (real_image, fake_image) in enumerate(zip(real_unit[s], fake_unit[s])):
                if real_image.shape != fake_image.shape:
                    raise InputError(
                        f"{name}, case {real[index]['case_id']!r}, {s}: synthetic image {cases[index][s]} has shape "
                        f"{fake_image.shape}, the real {real[index][s]} {real_image.shape}"
                    )
                values = paired_metrics(fake_image, real_image, data_range=1.0)
                for metric in PAIRED_METRICS:
                    paired[s][metric].append(float(values[metric]))
        paired[POOLED] = {m: [v for s in sequences for v in paired[s][m]] for m in PAIRED_METRICS}
        fake_features = features(fake_unit)
        distribution = {}
        for which in [POOLED, *sequences]:
            a, b = real_features[which], fake_features[which]
            fid = frechet_distance_with_interval(a, b, n_bootstrap=n_bootstrap, seed=seed)
            kid = kernel_distance(a, b, n_bootstrap=n_bootstrap, seed=seed)
            distribution[which] = {
                "n_real": int(len(a)),
                "n_fake": int(len(b)),
                "feature_dim": int(a.shape[1]),
                "fid": {
                    "value": fid["fid"],
                    "interval": fid["interval"],
                    "percentile_interval": fid["percentile_interval"],
                    "bootstrap_bias": fid["bootstrap_bias"],
                    "reliable": fid_is_reliable(len(a), len(b), int(a.shape[1])),
                },
                "kid": {"value": kid["kid"], "interval": kid["interval"]},
                "nn_accuracy": _balanced_nn_accuracy(a, b, seed),
            }
        contrast = {}
        if contrasts is not None:
            fake_raw = {s: [read_image(case[s]).array for case in cases] for s in sequences}
            fake_contrasts = case_contrasts(fake_raw, f"candidate {name!r}")
            for check in real_contrasts[0] if real_contrasts else []:
                contrast[check] = {
                    "feature": features_of.get(check, check),
                    **contrast_summary(
                        [values.get(check) for values in real_contrasts],
                        [values.get(check) for values in fake_contrasts],
                        n_bootstrap,
                        seed,
                    ),
                }
        results[name] = {
            "weights": digests.get(name),
            "distribution": distribution,
            "paired": {
                which: {
                    "n_pairs": len(paired[which]["ssim"]),
                    **{m: {"mean": float(np.mean(v)), "std": float(np.std(v))} for m, v in paired[which].items()},
                }
                for which in [POOLED, *sequences]
            },
            "contrast": contrast,
        }

    seeds = [item.get("seed") for item in real]
    report = {
        "what": what,
        "sequences": sequences,
        "n_cases": len(real),
        "case_ids": [str(item["case_id"]) for item in real],
        "seeds": seeds if any(value is not None for value in seeds) else None,
        "extractor": extractors.describe_extractor(module),
        "feature_dim": int(real_features[POOLED].shape[1]),
        "n_bootstrap": int(n_bootstrap),
        "seed": int(seed),
        "confidence": CONFIDENCE,
        "intensity_scaling": "SSIM, PSNR, MAE and features: each image by its own 0.5/99.5 percentiles to [0, 1], "
        "clipped; contrasts: the images' own units",
        "contrast": dict(contrast_description or {}),
        "candidates": results,
    }
    report = finite_or_none(report)
    if out is not None:
        write_json(Path(out), report, overwrite)
    return report


def contrast_summary(real: Sequence[float | None], fake: Sequence[float | None], n_bootstrap: int, seed: int) -> dict:
    """Per case ``|fake - real|`` where both are defined, and the mean error with its bootstrap interval over those
    cases (:func:`synthmr.metrics.regions.contrast_errors`'s fields; its lists keep None for the other cases)."""
    from synthmr.metrics.regions import _mean_interval

    both = [i for i, (a, b) in enumerate(zip(real, fake)) if a is not None and b is not None]
    errors = [abs(fake[i] - real[i]) if i in both else None for i in range(len(real))]
    defined = np.asarray([errors[i] for i in both], dtype=float)
    return {
        "n_cases": len(both),
        "real": list(real),
        "fake": list(fake),
        "errors": errors,
        "real_mean": float(np.mean([real[i] for i in both])) if both else None,
        "fake_mean": float(np.mean([fake[i] for i in both])) if both else None,
        "mean_error": float(defined.mean()) if both else None,
        "interval": _mean_interval(defined, int(n_bootstrap), int(seed)) if both else None,
        "n_bootstrap": int(n_bootstrap),
    }


def check_quality_inputs(
    real: list[dict], candidates: Mapping, sequences: list[str], weights: Mapping | None, required: Sequence[str] = ()
) -> None:
    """One clear message for every malformed input of :func:`quality_report`, before any image is read."""
    if not sequences or len(set(sequences)) != len(sequences):
        raise InputError(f"sequences must be distinct image keys, at least one; got {sequences}")
    if not isinstance(candidates, Mapping) or not candidates:
        raise InputError("no candidate to evaluate: give candidates as {name: [per-case {sequence: file}]}")
    if len(real) < 2:
        raise InputError(f"the held-out evaluation needs at least 2 real cases (KID and FID); got {len(real)}")
    needed = ["case_id", *sequences, *required]
    for index, item in enumerate(real):
        missing = [key for key in needed if key not in item]
        if missing:
            raise InputError(f"real case {index} lacks {missing} (needs {needed})")
    for name, cases in candidates.items():
        if isinstance(cases, (str, os.PathLike, Mapping)) or not isinstance(cases, Sequence):
            raise InputError(f"candidate {name!r}: give one {{sequence: file}} per real case, as a list")
        if len(cases) != len(real):
            raise InputError(f"candidate {name!r} has {len(cases)} cases for {len(real)} real cases")
        for index, case in enumerate(cases):
            missing = [s for s in sequences if not isinstance(case, Mapping) or s not in case]
            if missing:
                raise InputError(f"candidate {name!r}, case {real[index]['case_id']!r}: no synthetic {missing}")
    unknown = [name for name in (weights or {}) if name not in candidates]
    if unknown:
        raise InputError(f"weights are given for {unknown}, which are not among the candidates {list(candidates)}")
    for name, path in (weights or {}).items():
        if not Path(path).is_file():
            raise InputError(f"{path}: no such weights file (candidate {name!r})")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def format_quality_table(report: Mapping, contrast_name: str = "contrast") -> str:
    """A :func:`quality_report` as a plain-text table: one column per candidate, one row per metric (pooled and
    per-sequence FID, KID, 1-NN accuracy, SSIM, MAE; the error and the mean of each contrast check, named
    ``contrast_name``), intervals in brackets; an FID from fewer than 2 images per feature is marked ``*``."""
    names = list(report["candidates"])
    sequences = list(report["sequences"])
    sets = [POOLED, *sequences]
    checks = list(next(iter(report["candidates"].values()))["contrast"])

    def interval(value, bounds, digits: str) -> str:
        if value is None:
            return "n/a"
        text = format(value, digits)
        if bounds:
            text += f" [{format(bounds[0], digits)}, {format(bounds[1], digits)}]"
        return text

    def fid_cell(result: Mapping, which: str) -> str:
        fid = result["distribution"][which]["fid"]
        return interval(fid["value"], fid["interval"], ".4g") + ("" if fid["reliable"] else " *")

    def kid_cell(result: Mapping, which: str) -> str:
        kid = result["distribution"][which]["kid"]
        return interval(kid["value"], kid["interval"], ".3g")

    def nn_cell(result: Mapping, which: str) -> str:
        return interval(result["distribution"][which]["nn_accuracy"]["accuracy"], None, ".3f")

    def paired_cell(metric: str, digits: str):
        def cell(result: Mapping, which: str) -> str:
            value = result["paired"][which][metric]
            return f"{interval(value['mean'], None, digits)} ± {interval(value['std'], None, digits)}"

        return cell

    def contrast_error_cell(result: Mapping, which: str) -> str:
        contrast = result["contrast"][which]
        return interval(contrast["mean_error"], contrast["interval"], ".3f")

    def contrast_cell(result: Mapping, which: str) -> str:
        contrast = result["contrast"][which]
        if contrast["fake_mean"] is None:
            return "n/a"
        return f"{contrast['fake_mean']:.3f} (real {contrast['real_mean']:.3f})"

    features = report.get("contrast", {}).get("features", {})
    rows = [["metric", *names]]
    for label, cell, which_sets in (
        ("FID", fid_cell, sets),
        ("KID", kid_cell, sets),
        ("1-NN accuracy", nn_cell, sets),
        ("SSIM", paired_cell("ssim", ".3f"), sets),
        ("MAE", paired_cell("mae", ".4f"), sets),
        (f"{contrast_name} error", contrast_error_cell, checks),
        (contrast_name, contrast_cell, checks),
    ):
        for which in which_sets:
            feature = f" ({features[which]})" if which in checks and which in features else ""
            rows.append([f"{label} {which}{feature}", *(cell(report["candidates"][n], which) for n in names)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        f"{report['n_cases']} held-out cases, sequences {', '.join(sequences)}; extractor {report['extractor']}",
        f"[..]: {100 * report['confidence']:.0f} % bootstrap interval ({report['n_bootstrap']} resamples); "
        "SSIM, MAE: mean ± std over pairs",
        "",
    ]
    lines += ["  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip() for row in rows]
    lines.append("")
    lines.append(
        f"* FID from fewer than 2 images per feature ({report['feature_dim']}) per set: biased upward by an amount "
        "that depends on n; compare KID"
    )
    definition = report.get("contrast", {}).get("definition")
    if checks and definition:
        lines.append(f"{contrast_name}: synthetic (real); {definition}")
    weights = {n: r["weights"]["sha256"][:12] for n, r in report["candidates"].items() if r.get("weights")}
    if weights:
        lines.append("weights sha256: " + ", ".join(f"{n} {digest}" for n, digest in weights.items()))
    return "\n".join(lines)
