"""Phantom cases in the layouts of the public datasets the methods were published on, for `synthmr convert`.

`synthmr phantom ORGAN --format FORMAT` writes these so that the path from a public dataset to a trained bundle
(convert, check-data, train) runs end to end on simulated data before anyone holds the real data:

- ``dicom`` (breast): one Duke-Breast-Cancer-MRI style DICOM study per case (:mod:`synthmr.io.duke` describes the
  dataset): the dynamic phases as series named only by description ("ax dyn pre", "ax dyn 1st pass", ...), told
  apart by acquisition time and contrast agent, fat-saturated, a T2 series, and ``Annotation_Boxes.csv`` with the
  dataset's columns: one box per patient around its first malignant lesion (1-based, inclusive; rows and columns of
  the pixel matrix, slices in the series' order). The breast masks go to ``masks/<patient>_breast.nii.gz`` (the
  dataset publishes breast segmentations for a subset of its patients, separately).
- ``brats`` (brain): BraTS 2023 folders, ``<case>/<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz``, skull-stripped as BraTS
  distributes them (every voxel outside the brain is 0).
- ``nifti`` (every organ): the phantom's own layout, ``case_XXXX/<key>.nii.gz`` plus ``datalist.json``: a
  one-folder-per-case layout for ``convert folders``.

Every exported file comes from the simulated phantom, and DICOM files say so: Image Type ``DERIVED\\SECONDARY``
(DICOM PS3.3, C.7.6.1.1.2: pixel values derived from other data) and the manufacturer ``SynthMR``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from synthmr.errors import InputError
from synthmr.io import write_image
from synthmr.io.convert import BRATS_2023
from synthmr.io.duke import BOX_COLUMNS

FORMATS = {"nifti": ("brain", "breast", "liver"), "dicom": ("breast",), "brats": ("brain",)}
# Duke's series descriptions for the pre-contrast phase and the post-contrast passes, and for the T2 series.
DUKE_DESCRIPTIONS = ("ax dyn pre", "ax dyn 1st pass", "ax dyn 2nd pass", "ax dyn 3rd pass", "ax dyn 4th pass")
DUKE_T2_DESCRIPTION = "ax t2 fs"
STUDY_START_S = 10 * 3600  # the pre-contrast phase at 10:00:00
INJECTION_DELAY_S = 60  # contrast injected one minute after the pre-contrast phase


def check_format(organ: str, format: str, dims: int) -> None:
    """Refuse a format the organ has no layout for, or a 2D dataset in a volumetric layout."""
    if format not in FORMATS:
        raise InputError(f"--format {format}: unknown; synthmr phantom writes {', '.join(FORMATS)}")
    if organ not in FORMATS[format]:
        formats = ", ".join(name for name, organs in FORMATS.items() if organ in organs)
        raise InputError(f"--format {format}: no {organ} dataset is published in that layout; for {organ}: {formats}")
    if format != "nifti" and dims != 3:
        raise InputError(f"--format {format}: its studies are volumes; use --dims 3 (or leave --dims out)")


def write_duke_study(case, folder: Path, patient: str) -> list | None:
    """``case`` as ``folder/<patient>/<series>/NNNN.dcm`` and its breast mask; returns its box row, or None when
    it has no malignant lesion (Duke's boxes mark the cancer)."""
    from pydicom.uid import generate_uid

    from synthmr.io import write_dicom_series

    study = {"PatientID": patient, "PatientName": patient, "StudyInstanceUID": generate_uid(),
             "FrameOfReferenceUID": generate_uid(), "Manufacturer": "SynthMR", "ScanOptions": "FS"}
    phases = ("t1_pre", *(f"t1_post{k}" for k in range(1, 5)))
    times = [STUDY_START_S] + [STUDY_START_S + INJECTION_DELAY_S + 60 * m for m in case.meta["post_times_min"]]
    series = [(key, description, time, "" if key == "t1_pre" else "Gadavist")
              for key, description, time in zip(phases, DUKE_DESCRIPTIONS, times)]
    series.append(("t2", DUKE_T2_DESCRIPTION, STUDY_START_S - 300, ""))
    for number, (key, description, time, contrast) in enumerate(series, start=1):
        clock = _clock(time)
        write_dicom_series(case.volume(key), folder / patient / f"{number:02d}_{description.replace(' ', '_')}",
                           series_description=description,
                           attributes={**study, "SeriesNumber": number, "AcquisitionTime": clock, "SeriesTime": clock,
                                       "ContentTime": clock, "ContrastBolusAgent": contrast})
    write_image(case.volume("breast"), folder / "masks" / f"{patient}_breast.nii.gz")
    malignant = [label for label, kind in enumerate(case.meta.get("lesion_classes", []), start=1)
                 if kind == "malignant" and (case.masks["lesion"] == label).any()]
    if not malignant:
        return None
    x, y, z = (np.flatnonzero(np.any(case.masks["lesion"] == malignant[0], axis=axes)) for axes in
               ((1, 2), (0, 2), (0, 1)))
    return [patient, y[0] + 1, y[-1] + 1, x[0] + 1, x[-1] + 1, z[0] + 1, z[-1] + 1]


def write_boxes(rows: list[list], path: Path) -> None:
    """Duke's Annotation_Boxes table (as CSV) of the rows :func:`write_duke_study` returned."""
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(BOX_COLUMNS)
        writer.writerows([[str(value) for value in row] for row in rows])


def write_brats_case(case, folder: Path, name: str) -> None:
    """``case`` as a BraTS 2023 folder ``folder/<name>/<name>-<suffix>.nii.gz``, skull-stripped."""
    brain = case.masks["brain"] > 0
    for key, suffix in BRATS_2023.items():
        volume = case.volume(key)
        array = volume.array if key == "label" else np.where(brain, volume.array, 0).astype(volume.array.dtype)
        write_image(volume.with_array(array), folder / name / f"{name}-{suffix}.nii.gz")


def _clock(seconds: float) -> str:
    """Seconds since midnight as a DICOM time, HHMMSS.FFFFFF."""
    hours, rest = divmod(seconds, 3600)
    minutes, rest = divmod(rest, 60)
    return f"{int(hours):02d}{int(minutes):02d}{rest:09.6f}"
