"""`synthmr convert`: public-data layouts to a datalist with patient-level splits, reporting what it cannot identify.

- ``brats``: BraTS releases 2021-2024, one folder per case. 2023/2024 name files ``<case>-{t1n,t1c,t2w,t2f,seg}``;
  2021/2022 ``<case>_{t1,t1ce,t2,flair,seg}``, whose enhancing tumour is label 4: it is rewritten as 3 (the 2023
  convention every SynthMR brain bundle uses) into ``OUT/labels/``. The patient is the case id without its
  timepoint (``BraTS-GLI-00000`` of ``BraTS-GLI-00000-000``), so a patient's timepoints share a split.
- ``folders``: any one-folder-per-case layout, with ``KEY=GLOB`` mappings (``arterial=*art*.nii.gz``) matched
  inside each case folder (and below it); each key must match exactly one file.

A case that lacks a file or matches one key twice is named in the report, never guessed; the datalist
(``OUT/datalist.json``: ``training``, ``validation``, ``test``) holds the complete cases, split by patient with a
seeded shuffle. ``OUT/conversion.json`` records the source, the mappings, the split and every skipped case.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from synthmr.errors import InputError
from synthmr.io._atomic import check_destination, check_output_location, write_json
from synthmr.io.datalist import save_datalist

SPLITS = ("training", "validation", "test")
BRATS_2023 = {"t1n": "t1n", "t1c": "t1c", "t2w": "t2w", "t2f": "t2f", "label": "seg"}
BRATS_2021 = {"t1n": "t1", "t1c": "t1ce", "t2w": "t2", "t2f": "flair", "label": "seg"}
_TIMEPOINT = re.compile(r"^(BraTS-[A-Z]+-\d{5})-\d{3}$")


def split_patients(patients: Sequence[str], fractions: Sequence[float], seed: int = 0) -> dict[str, str]:
    """patient -> split name, the shuffled patients cut by ``fractions`` (training, validation, test; rounded so
    that every split with a positive fraction gets at least one patient when there are enough)."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise InputError(f"--splits must be three non-negative fractions summing to 1; got {tuple(fractions)}")
    unique = sorted(set(patients))
    order = [unique[i] for i in np.random.default_rng(seed).permutation(len(unique))]
    counts = [int(round(f * len(unique))) for f in fractions[1:]]
    counts = [max(c, 1) if f > 0 and len(unique) >= 3 else c for c, f in zip(counts, fractions[1:])]
    n_validation, n_test = counts
    n_training = len(unique) - n_validation - n_test
    names = ["training"] * n_training + ["validation"] * n_validation + ["test"] * n_test
    return dict(zip(order, names))


def folders_cases(src: Path, mapping: Mapping[str, str]) -> tuple[list[dict], list[str]]:
    """One item per case folder of ``src`` with every key's single match; and the problems of the others."""
    if not mapping:
        raise InputError("--map: give at least one KEY=GLOB, e.g. --map 't1=*t1*.nii.gz'")
    items, problems = [], []
    for case in sorted(p for p in src.iterdir() if p.is_dir()):
        files = sorted(str(f.relative_to(case)) for f in case.rglob("*") if f.is_file())
        item, missing = {"case_id": case.name}, []
        for key, pattern in mapping.items():
            matches = [f for f in files if fnmatch.fnmatch(Path(f).name, pattern) or fnmatch.fnmatch(f, pattern)]
            if len(matches) == 1:
                item[key] = str((case / matches[0]).absolute())
            elif not matches:
                missing.append(f"no file matches {key}={pattern}")
            else:
                missing.append(f"{key}={pattern} matches {len(matches)} files ({', '.join(matches[:3])})")
        if missing:
            problems.append(f"{case.name}: " + "; ".join(missing))
        else:
            items.append(item)
    return items, problems


def brats_cases(src: Path) -> tuple[list[dict], list[str]]:
    """One item per BraTS case folder (2021-2024 naming); 2021/2022 labels are marked for rewriting."""
    from synthmr.io import read_image

    items, problems = [], []
    for case in sorted(p for p in src.iterdir() if p.is_dir()):
        for naming, separator in ((BRATS_2023, "-"), (BRATS_2021, "_")):
            found = {key: case / f"{case.name}{separator}{suffix}.nii.gz" for key, suffix in naming.items()}
            found = {key: path for key, path in found.items() if path.is_file()}
            if found:
                break
        if not found:
            continue  # not a case folder (a README folder, a listing)
        missing = [key for key in BRATS_2023 if key != "label" and key not in found]
        if missing:
            problems.append(f"{case.name}: lacks {', '.join(naming[key] for key in missing)}")
            continue
        item = {"case_id": case.name, **{key: str(path.absolute()) for key, path in found.items()}}
        if naming is BRATS_2021 and "label" in found:
            label = read_image(found["label"])
            values = set(np.unique(label.array).tolist())
            if not values <= {0, 1, 2, 4}:
                problems.append(f"{case.name}: seg holds {sorted(values - {0, 1, 2, 4})}, not BraTS 2021 labels")
                continue
            item["relabel_2021"] = True  # written by convert() once every case is known to be complete
        items.append(item)
    labelled = [item for item in items if "label" in item]
    if 0 < len(labelled) < len(items):
        problems += [f"{item['case_id']}: lacks seg while other cases have it" for item in items if "label" not in item]
        items = labelled
    return items, problems


def patient_of(case_id: str) -> str:
    """A BraTS 2023 case's patient (its id without the timepoint); any other case is its own patient."""
    match = _TIMEPOINT.match(case_id)
    return match.group(1) if match else case_id


def convert(kind: str, src: str | os.PathLike, out: str | os.PathLike, mapping: Mapping[str, str] | None = None,
            fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0, overwrite: bool = False,
            skip_incomplete: bool = False) -> tuple[dict[str, list[dict]], list[str]]:
    """Write ``out/datalist.json`` and ``out/conversion.json`` for the ``kind`` layout under ``src`` (module
    docstring); returns the datalist and the problems. Incomplete cases make it an error unless
    ``skip_incomplete`` (then they are left out and listed)."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise InputError(f"{src}: no such folder")
    check_output_location(out, {"the source folder": src})
    check_destination(out / "datalist.json", overwrite)
    if kind == "folders":
        items, problems = folders_cases(src, dict(mapping or {}))
    elif kind == "brats":
        if mapping:
            raise InputError("--map is for `convert folders`; BraTS files are found by their names")
        items, problems = brats_cases(src)
    else:
        raise InputError(f"unknown layout {kind!r}; synthmr convert knows: brats, folders")
    if problems and not skip_incomplete:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise InputError(f"{src}: {len(problems)} case(s) could not be identified: {shown} (nothing was written; "
                         "--skip_incomplete leaves them out)")
    if not items:
        raise InputError(f"{src}: no complete case found")
    for item in items:
        if item.pop("relabel_2021", False):  # BraTS 2021's enhancing tumour 4 is the 2023 convention's 3
            from synthmr.io import read_image, write_image

            label = read_image(item["label"])
            array = np.where(label.array == 4, 3, label.array).astype(np.uint8)
            item["label"] = str(write_image(label.with_array(array), out / "labels" / f"{item['case_id']}.nii.gz",
                                            overwrite=overwrite))
    splits = split_patients([patient_of(item["case_id"]) for item in items], fractions, seed)
    datalist = {name: [item for item in items if splits[patient_of(item["case_id"])] == name] for name in SPLITS}
    save_datalist(datalist, out / "datalist.json", overwrite=overwrite)
    write_json(out / "conversion.json", {"kind": kind, "source": str(src.absolute()), "mapping": dict(mapping or {}),
                                         "fractions": list(fractions), "seed": seed,
                                         "cases": {name: len(items) for name, items in datalist.items()},
                                         "skipped": problems}, overwrite=True)
    return datalist, problems
