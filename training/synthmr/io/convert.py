"""`synthmr convert`: public-data layouts to a datalist with patient-level splits, reporting what it cannot identify.

- ``brats``: BraTS releases 2021-2024, one folder per case. 2023/2024 name files ``<case>-{t1n,t1c,t2w,t2f,seg}``;
  2021/2022 ``<case>_{t1,t1ce,t2,flair,seg}``, whose enhancing tumour is label 4: it is rewritten as 3 (the 2023
  convention every SynthMR brain bundle uses) into ``OUT/labels/``. The patient is the case id without its
  timepoint (``BraTS-GLI-00000`` of ``BraTS-GLI-00000-000``), so a patient's timepoints share a split.
- ``duke``: Duke-Breast-Cancer-MRI style DICOM studies (:mod:`synthmr.io.duke`): the pre- and post-contrast phases
  found from their tags and written as NIfTI on one grid into ``OUT/<patient>/``, with ``fat_saturated`` and the
  series descriptions used in each item. With ``boxes`` (the dataset's Annotation_Boxes table saved as CSV), a
  patient's box becomes ``OUT/<patient>/lesion.nii.gz`` (label 1 inside the box) with ``lesion_classes:
  ["malignant"]``: the dataset's boxes mark its patients' cancers. Box indices are read as 1-based and inclusive,
  rows and columns of the pixel matrix, slices in the order of the converted volume (check one case in a viewer: a
  box that misses its lesion means the dataset's slice order is the reverse). Masks published separately (breast
  segmentations) join the items through ``KEY=PATH`` mappings, ``PATH`` relative to ``SRC`` with ``{patient}``.
- ``folders``: any one-folder-per-case layout, with ``KEY=GLOB`` mappings (``arterial=*art*.nii.gz``) matched
  inside each case folder (and below it); each key must match exactly one file.

A case that lacks a file or matches one key twice is named in the report, never guessed; the datalist
(``OUT/datalist.json``: ``training``, ``validation``, ``test``) holds the complete cases, split by patient with a
seeded shuffle. ``OUT/conversion.json`` records the source, the mappings, the split and every skipped case. The
folder ``OUT`` appears whole or not at all.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from synthmr.errors import InputError
from synthmr.io._atomic import atomic_output, check_destination, check_output_location, write_json
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


def duke_cases(src: Path, staging: Path | None, boxes: Mapping[str, tuple[int, ...]] | None = None,
               mapping: Mapping[str, str] | None = None) -> tuple[list[dict], list[str]]:
    """One item per DICOM study (:mod:`synthmr.io.duke`), with its ``mapping`` files; its phases (and its box as a
    lesion mask) written under ``staging/<patient>/`` when ``staging`` is given (after the caller has seen the
    problems)."""
    from synthmr.io.duke import identify, scan

    items, problems = [], []
    for study in sorted(scan(src).values(), key=lambda s: s.patient):
        phases, found = identify(study)
        for key, pattern in (mapping or {}).items():
            path = src / pattern.replace("{patient}", study.patient)
            if not path.is_file():
                found.append(f"no file {path} for {key}")
        if found:
            problems.append(f"{study.patient}: " + "; ".join(found))
            continue
        item = {"case_id": study.patient, "fat_saturated": phases["t1_pre"].fat_saturated,
                "series": {key: series.description for key, series in phases.items()},
                **{key: str((src / pattern.replace("{patient}", study.patient)).absolute())
                   for key, pattern in (mapping or {}).items()}}
        if staging is not None:
            from synthmr.io.duke import write_phases

            item.update(write_phases(phases, staging / study.patient))
            if boxes and study.patient in boxes:
                try:
                    item["lesion"] = _write_box(boxes[study.patient], item["t1_pre"], staging / study.patient)
                except InputError as error:
                    problems.append(f"{study.patient}: {error}")
                    continue
                item["lesion_classes"] = ["malignant"]
        items.append(item)
    return items, problems


def read_boxes(path: Path) -> dict[str, tuple[int, ...]]:
    """Patient -> (start row, end row, start column, end column, start slice, end slice) of a Duke
    Annotation_Boxes table saved as CSV."""
    import csv

    from synthmr.io.duke import BOX_COLUMNS

    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file)
            rows, columns = list(reader), reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"--boxes {path}: cannot be read ({error})") from None
    missing = [c for c in BOX_COLUMNS if c not in columns]
    if missing:
        raise InputError(f"--boxes {path}: lacks {', '.join(missing)}; expected the columns "
                         f"{', '.join(BOX_COLUMNS)} (Annotation_Boxes saved as CSV)")
    boxes = {}
    for number, row in enumerate(rows, start=2):
        try:
            boxes[row["Patient ID"].strip()] = tuple(int(float(row[c])) for c in BOX_COLUMNS[1:])
        except ValueError:
            raise InputError(f"--boxes {path}: line {number} holds a non-number in a box column") from None
    return boxes


def _write_box(box: tuple[int, ...], reference: str, folder: Path) -> str:
    """The box as a label-1 mask on the grid of ``reference``."""
    from synthmr.io import read_image, write_image

    image = read_image(reference)
    row0, row1, column0, column1, slice0, slice1 = box
    shape = image.array.shape
    if not (1 <= row0 <= row1 <= shape[1] and 1 <= column0 <= column1 <= shape[0] and 1 <= slice0 <= slice1 <= shape[2]):
        raise InputError(f"box rows {row0}-{row1}, columns {column0}-{column1}, slices {slice0}-{slice1} do not "
                         f"fit its {shape[1]} rows, {shape[0]} columns and {shape[2]} slices")
    mask = np.zeros(shape[:3], np.uint8)
    mask[column0 - 1:column1, row0 - 1:row1, slice0 - 1:slice1] = 1
    return str(write_image(image.with_array(mask), folder / "lesion.nii.gz"))


def convert(kind: str, src: str | os.PathLike, out: str | os.PathLike, mapping: Mapping[str, str] | None = None,
            fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0, overwrite: bool = False,
            skip_incomplete: bool = False, boxes: str | os.PathLike | None = None,
            ) -> tuple[dict[str, list[dict]], list[str]]:
    """Write the folder ``out`` (``datalist.json``, ``conversion.json`` and any converted images) for the ``kind``
    layout under ``src`` (module docstring), all at once; returns the datalist and the problems. Incomplete cases
    make it an error unless ``skip_incomplete`` (then they are left out and listed)."""
    src, out = Path(src), Path(out).absolute()  # item paths are made relative to out from absolute ones
    if not src.is_dir():
        raise InputError(f"{src}: no such folder")
    check_output_location(out, {"the source folder": src})
    check_destination(out, overwrite, "folder")
    if kind not in ("brats", "folders", "duke"):
        raise InputError(f"unknown layout {kind!r}; synthmr convert knows: brats, duke, folders")
    if mapping and kind == "brats":
        raise InputError("--map is for `convert folders` and `convert duke`; BraTS files are found by their names")
    if boxes is not None and kind != "duke":
        raise InputError("--boxes is for `convert duke` (the Annotation_Boxes table)")
    box_table = None if boxes is None else read_boxes(Path(boxes))
    if kind == "folders":
        items, problems = folders_cases(src, dict(mapping or {}))
    elif kind == "brats":
        items, problems = brats_cases(src)
    else:
        items, problems = duke_cases(src, None, mapping=mapping)  # identify every study before writing any
    if problems and not skip_incomplete:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise InputError(f"{src}: {len(problems)} case(s) could not be identified: {shown} (nothing was written; "
                         "--skip_incomplete leaves them out)")
    if not items:
        raise InputError(f"{src}: no complete case found")
    with atomic_output(out, overwrite=overwrite) as staging:
        staging.mkdir()
        if kind == "duke":
            items, found = duke_cases(src, staging, box_table, mapping)
            box_problems = [problem for problem in found if problem not in problems]  # boxes that do not fit
            if box_problems and not skip_incomplete:
                raise InputError(f"{src}: " + "; ".join(box_problems) + " (nothing was written; --skip_incomplete "
                                 "leaves them out)")
            problems += box_problems
        for item in items:
            if item.pop("relabel_2021", False):  # BraTS 2021's enhancing tumour 4 is the 2023 convention's 3
                from synthmr.io import read_image, write_image

                label = read_image(item["label"])
                array = np.where(label.array == 4, 3, label.array).astype(np.uint8)
                item["label"] = str(write_image(label.with_array(array), staging / "labels" / f"{item['case_id']}.nii.gz"))
        splits = split_patients([patient_of(item["case_id"]) for item in items], fractions, seed)
        datalist = {name: [item for item in items if splits[patient_of(item["case_id"])] == name] for name in SPLITS}
        save_datalist(datalist, staging / "datalist.json")
        write_json(staging / "conversion.json", {
            "kind": kind, "source": str(src.absolute()), "mapping": dict(mapping or {}),
            "boxes": None if boxes is None else str(Path(boxes).absolute()), "fractions": list(fractions),
            "seed": seed, "cases": {name: len(split) for name, split in datalist.items()}, "skipped": problems})
    from synthmr.io import load_datalist

    return {name: load_datalist(out / "datalist.json", name) for name in SPLITS}, problems
