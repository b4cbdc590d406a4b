"""Write phantom cases to disk as NIfTI files plus a datalist: what `synthmr phantom` does."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from synthmr.errors import InputError
from synthmr.io import save_datalist, write_image
from synthmr.io._atomic import atomic_output, check_destination
from synthmr.phantom import phantom_class
from synthmr.phantom._arguments import integer


def _make_phantom(organ: str, options: dict):
    cls = phantom_class(organ)
    accepted = [p for p in inspect.signature(cls).parameters if p != "self"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InputError(
            f"unknown option(s) for the {organ} phantom: {', '.join(unknown)}; it accepts {', '.join(accepted)}"
        )
    return cls(**options)


def _recipe(organ: str, n: int, seed: int, options: dict) -> dict:
    """What a dataset was simulated from: enough to tell whether a folder already holds it. It records
    :data:`synthmr.phantom.PHANTOM_RELEASE`, because a release may change what the phantom draws from the same seed."""
    from synthmr.phantom import PHANTOM_RELEASE

    options = json.loads(json.dumps(options, default=list))
    return {"organ": organ, "n": n, "seed": seed, "options": options, "synthmr": PHANTOM_RELEASE}


def phantom_datalist(organ: str, out: str | Path, n: int, seed: int = 0, **options) -> list[dict]:
    """The datalist items of a phantom dataset in ``out``, simulating it first unless ``out`` already holds it.

    Bundles use this as their default data: the first run simulates the cases, later runs with the same
    ``organ``, ``n``, ``seed`` and ``options`` reuse them. A folder holding anything else is refused rather
    than replaced. Under ``torch.distributed`` (DDP training), rank 0 simulates while the other ranks wait at a
    barrier, so that they do not race for the folder; every rank must call this.

    Returns:
        the ``"training"`` items of ``out/datalist.json`` with absolute paths.
    """
    from synthmr.io import load_datalist

    from synthmr.distributed import rank_zero_first

    out = Path(out).absolute()  # datalist paths are made relative from absolute ones
    datalist = out / "datalist.json"
    wanted = _recipe(organ, n, seed, options)
    rank_zero_first(lambda: datalist.is_file() or write_phantom_dataset(organ, n, out, seed=seed, **options))
    found = json.loads(datalist.read_text(encoding="utf-8")).get("phantom")
    if found != wanted:
        raise InputError(
            f"{out}: holds another phantom dataset ({found}); expected {wanted}. Remove it or choose another folder"
        )
    return load_datalist(datalist)


def write_phantom_dataset(
    organ: str,
    n: int,
    out: str | Path,
    seed: int = 0,
    preview: bool = False,
    overwrite: bool = False,
    format: str = "nifti",
    **options,
) -> Path:
    """Simulate ``n`` cases of ``organ`` into folder ``out`` with a ``datalist.json``.

    Case ``i`` is drawn from seed ``seed + i``, so any case can be regenerated alone. Files go to
    ``out/case_XXXX/<key>.nii.gz``; ``datalist.json`` lists them (paths relative to it) under ``"training"``
    together with each case's ``meta``. Everything is written to a staging folder first and moved into place
    at the end, so a failure leaves nothing behind and an existing ``out`` is only replaced when
    ``overwrite`` is set.

    Args:
        organ: ``brain``, ``breast`` or ``liver``.
        n: number of cases.
        out: output folder (must not exist or be empty, unless ``overwrite``).
        seed: seed of the first case.
        preview: also write ``preview.png``, a montage of the sequences with lesion outlines.
        overwrite: replace an existing non-empty ``out``.
        format: ``nifti`` (the layout above), or a public dataset's layout (:mod:`synthmr.phantom.export`):
            ``dicom`` (breast, Duke-Breast-Cancer-MRI) or ``brats`` (brain, BraTS 2023); these write
            ``phantom.json`` (what was simulated) in place of ``datalist.json``: the converters make the datalist.
        options: passed to the phantom's constructor (e.g. ``dims=2``, ``spacing=3.0``).
    """
    if format != "nifti":
        options.setdefault("dims", 3)  # the public layouts hold volumes
    phantom = _make_phantom(organ, options)
    n, seed = integer(n, "--n", 1), integer(seed, "--seed", 0)
    out = Path(out).absolute()  # datalist paths are made relative from absolute ones
    check_destination(out, overwrite, what="folder")
    if format != "nifti":
        return _write_public_layout(phantom, organ, n, out, seed, overwrite, format, options)

    with atomic_output(out, overwrite=overwrite) as staging:
        items, cases = [], []
        for i in range(n):
            case = phantom(seed + i)
            case_id = f"case_{i:04d}"
            item = {"case_id": case_id}
            for key in (*case.images, *case.masks):
                item[key] = str(write_image(case.volume(key), staging / case_id / f"{key}.nii.gz"))
            items.append({**item, **case.meta})
            if preview and len(cases) < 4:
                cases.append(case)
        save_datalist(
            {"training": items},
            staging / "datalist.json",
            extra={
                "description": f"SynthMR simulated {organ} phantom",
                "organ": organ,
                "seed": seed,
                "phantom": _recipe(organ, n, seed, options),
            },
        )
        if preview:
            from synthmr.phantom.preview import write_preview  # matplotlib only when asked for

            write_preview(cases, staging / "preview.png", lesion_mask=phantom.lesion_mask)
    return out


def _write_public_layout(phantom, organ: str, n: int, out: Path, seed: int, overwrite: bool, format: str,
                         options: dict) -> Path:
    """The cases in a public dataset's layout (:mod:`synthmr.phantom.export`), with ``phantom.json``."""
    from synthmr.io._atomic import write_json
    from synthmr.phantom.export import check_format, write_boxes, write_brats_case, write_duke_study

    check_format(organ, format, phantom.dims)
    with atomic_output(out, overwrite=overwrite) as staging:
        staging.mkdir()
        boxes = []
        for i in range(n):
            case = phantom(seed + i)
            if format == "dicom":
                boxes.append(write_duke_study(case, staging, f"Breast_MRI_{i + 1:03d}"))
            else:
                write_brats_case(case, staging, f"BraTS-GLI-{i:05d}-000")
        if format == "dicom":
            write_boxes([row for row in boxes if row is not None], staging / "Annotation_Boxes.csv")
        write_json(staging / "phantom.json", {
            "description": f"SynthMR simulated {organ} phantom in the {format} layout; not acquired images",
            "format": format, **_recipe(organ, n, seed, options)})
    return out
