"""`synthmr generate BUNDLE`: a synthetic data set from real cases, made the way the bundle declares.

A conditional bundle (one whose generator needs a real case, e.g. a mask-guided one) takes part by shipping
``configs/generate.yaml``, an overlay on its inference config (so the generator and its weights are the inference
config's own) that defines ``generate_sources`` (default source cases), ``generate_n``, ``generate_seed``,
``generate_dir``, ``generate_progress`` and ``overwrite``, and whose ``run`` writes ``generate_dir`` (the cases and
their ``datalist.json``). The same overlay runs with
``python -m monai.bundle run --config_file "['.../inference.yaml', '.../generate.yaml']"``.

This module only reads the user's datalist, applies the checks every bundle run gets (synthmr version, trust, an
output folder outside bundles) and runs the overlay; it knows nothing about any method.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from synthmr.bundle.description import read_tool_description
from synthmr.bundle.discovery import find_bundle
from synthmr.bundle.runner import check_synthmr_version, check_trust, overlay_config, run_overlay
from synthmr.errors import InputError
from synthmr.generation import check_set_size_and_seed
from synthmr.io import load_datalist, read_json
from synthmr.io._atomic import check_destination, check_output_location


def run_bundle_generate(
    bundle: str | os.PathLike,
    n: int,
    source: str | os.PathLike | None,
    out: str | os.PathLike,
    seed: int = 0,
    section: str = "training",
    device: str | None = None,
    overwrite: bool = False,
    trust_bundle: bool = False,
    overrides: Mapping[str, Any] | None = None,
) -> list[dict]:
    """Write ``n`` synthetic cases made from the cases of ``source`` to ``out``; return the items of
    ``out/datalist.json``.

    Args:
        bundle: bundle name or folder.
        n: how many cases.
        source: datalist JSON of the real cases (keys as the bundle's input roles); None: the bundle's default.
        out: a new (or empty) folder; with ``overwrite`` an existing one is replaced once the new set is complete.
        seed: the set's seed: the same bundle, sources, ``n`` and seed give the same set.
        section: the datalist's list to read (``"training"``, ``"validation"``...).
        device: ``"cpu"`` or ``"cuda"``; default: the config's (CUDA when available).
        overwrite: replace an existing ``out``.
        trust_bundle: confirm that a bundle not shipped with synthmr may run.
        overrides: further config ids -> values (e.g. augmentation settings the bundle exposes).

    Raises:
        InputError: unknown bundle, no generate overlay, version or trust refused, bad ``n`` or seed, an unreadable
            datalist, an output folder that exists (without ``overwrite``) or lies in a bundle, and every user
            mistake the bundle reports.
    """
    description = read_tool_description(find_bundle(bundle))
    bundle_dir = description.bundle_dir
    check_synthmr_version(description)
    check_trust(bundle_dir, trust_bundle)
    overlay = overlay_config(bundle_dir, "generate", "declares no synthetic data set")
    check_set_size_and_seed(n, seed, flags="--")
    out = Path(out).absolute()
    check_output_location(out, {f"bundle {description.name}": bundle_dir})
    check_destination(out, overwrite, "folder")
    settings: dict[str, Any] = {"generate_n": n, "generate_seed": seed, "generate_dir": str(out),
                                "overwrite": overwrite, "generate_progress": "$synthmr.generation.progress_bar"}
    if source is not None and description.is_generator:
        raise InputError(f"bundle {description.name} generates from noise and class: it reads no real cases (no --from)")
    if source is not None:
        sources = load_datalist(source, section)
        if not sources:
            raise InputError(f"{source}: its {section!r} list is empty: no real case to build new cases on")
        settings["generate_sources"] = sources
    with _process_group() as local_rank:
        if local_rank is not None and _wants_cuda(device):
            device = f"cuda:{local_rank}"  # one GPU per process under torchrun
        run_overlay(description, overlay, settings, overrides, device)
    return load_datalist(out / "datalist.json", "training") if (out / "datalist.json").is_file() else []


def _wants_cuda(device: str | None) -> bool:
    if device is not None:
        return device.startswith("cuda")
    import torch

    return torch.cuda.is_available()  # the bundles' default device


@contextmanager
def _process_group():
    """Under ``torchrun`` (WORLD_SIZE > 1 in the environment) a gloo group for the run, whose ranks share the cases
    out (synthmr.generation): yields the local rank; otherwise None. Only barriers pass through the group."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield None
        return
    import torch.distributed as distributed

    distributed.init_process_group("gloo")
    try:
        yield int(os.environ.get("LOCAL_RANK", "0"))
    finally:
        distributed.destroy_process_group()


def describe_set(out: str | os.PathLike) -> str:
    """One line on a written set: how many cases, and where its datalist is."""
    datalist = Path(out) / "datalist.json"
    count = len(read_json(datalist, "datalist file").get("training", []))
    return f"wrote {count} cases to {Path(out)} (datalist: {datalist})"
