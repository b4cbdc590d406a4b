"""`synthmr benefit BUNDLE`: run the downstream-benefit experiment a bundle declares.

A bundle takes part by shipping ``configs/benefit.yaml``, an overlay on its inference config (so the generator,
its weights and its inferer are the inference config's own) that defines the ids the harness needs: ``real`` and
``test`` (items ``{"case_id", "image", "label"}``), ``labels``, ``synthesize`` (see
:mod:`synthmr.evaluation.synthesizers`), ``n_real``, ``shares``, ``seeds``, ``segmentation``
(:class:`~synthmr.evaluation.benefit.SegmentationSettings`), ``benefit_dir`` (the work folder), ``benefit_progress``
and ``benefit`` (the :func:`~synthmr.evaluation.benefit.run_benefit` call), and whose ``run`` loads the weights and
prints :func:`~synthmr.evaluation.benefit.format_report` of ``@benefit``. The same overlay runs with
``python -m monai.bundle run --config_file "['.../inference.yaml', '.../benefit.yaml']"``.

This module only finds the configs, applies the checks every bundle run gets (synthmr version, trust) and the
user's overrides, and runs the workflow; it knows nothing about any method.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from synthmr.bundle.description import metadata_path, read_tool_description
from synthmr.bundle.discovery import find_bundle
from synthmr.bundle.runner import check_synthmr_version, check_trust, overlay_config, run_overlay
from synthmr.io import read_json
from synthmr.io._atomic import check_output_location


def benefit_config(bundle_dir: Path) -> Path:
    """The bundle's benefit overlay, or an :class:`InputError` saying the bundle declares none."""
    return overlay_config(
        bundle_dir, "benefit", "declares no downstream-benefit experiment: it does not say how it makes labelled "
        "synthetic training data"
    )


def default_work_dir(bundle_dir: Path) -> Path:
    """``benefit/<name>_v<version>``: runs of another version of the bundle go to another folder."""
    version = read_json(metadata_path(bundle_dir), "bundle metadata").get("version", "unknown")
    return Path("benefit") / f"{bundle_dir.name}_v{version}"


def run_bundle_benefit(
    bundle: str | os.PathLike,
    work_dir: str | os.PathLike | None = None,
    device: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    trust_bundle: bool = False,
) -> dict:
    """Run ``bundle``'s benefit experiment (module docstring) and return its report.

    Args:
        bundle: bundle name or folder.
        work_dir: the harness's work folder (runs, synthetic items, ``report.json``, ``benefit.png``); reusing it
            resumes. Default: :func:`default_work_dir`.
        device: ``"cpu"`` or ``"cuda"``; default: the config's (CUDA when available).
        overrides: config ids -> values, e.g. ``{"n_real": [2], "seeds": [0]}``; a string starting with ``$`` is
            an expression, as on ``python -m monai.bundle run``.
        trust_bundle: confirm that a bundle not shipped with synthmr may run (see :func:`check_trust`).

    Raises:
        InputError: unknown bundle, no benefit overlay, synthmr version or trust refused, bad device, a work folder
            that is (or holds) the working directory or lies in a bundle, an override naming no id of the configs,
            and every user mistake the harness or the bundle reports.
    """
    description = read_tool_description(find_bundle(bundle))
    bundle_dir = description.bundle_dir
    check_synthmr_version(description)
    check_trust(bundle_dir, trust_bundle)
    overlay = benefit_config(bundle_dir)
    work_dir = Path(work_dir) if work_dir is not None else default_work_dir(bundle_dir)
    check_output_location(work_dir, {f"bundle {description.name}": bundle_dir})
    run_overlay(description, overlay, {"benefit_dir": str(work_dir.absolute())}, overrides, device)
    return read_json(work_dir / "report.json", "benefit report")
