"""Duke-Breast-Cancer-MRI style DICOM studies to NIfTI: the pre- and post-contrast phases told apart by their tags.

The dataset (Saha et al., "A machine learning approach to radiogenomics of breast cancer", Br J Cancer 2018;
TCIA collection Duke-Breast-Cancer-MRI) ships one study per patient with several series; the dynamic phases are
named only in free-text series descriptions ("ax dyn pre", "ax dyn 1st pass", "Ax Vibrant MultiPhase" ...) and told
apart by their acquisition times. Per study (all series under ``SRC`` sharing a StudyInstanceUID):

- a series is **dynamic T1** when its description says so (dyn, vibrant, multiphase, pre, pass, ph<k>, post, +c)
  and not T2 (a plain "ax t1", the non-fat-saturated anatomical T1, is not a phase); a **T2** series when it says t2 (used when there is exactly one);
- the **pre-contrast** phase is the dynamic series whose description says pre, or, failing that, the one without a
  contrast agent (ContrastBolusAgent) acquired first; the **post-contrast** phases are the other dynamic series in
  acquisition-time order (AcquisitionTime, else SeriesTime, else ContentTime), at most four (``t1_post1..4``);
- **fat saturation** is noted from ScanOptions (FS) or the description (fs, fat sat, vibrant);
- a study with no dynamic series, two "pre" series, no pre-contrast candidate, two phases at one time or more than
  four post-contrast phases is **reported by name** and not converted: a guess would mislabel the phases.

Every phase is written as NIfTI on the pre-contrast phase's grid (resampled, linear, when a series' grid differs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_DYNAMIC = re.compile(r"dyn|vibrant|multi ?phase|\bpre\b|pass|\bph ?\d|post|\+ ?c\b", re.IGNORECASE)
_T2 = re.compile(r"\bt2", re.IGNORECASE)
_PRE = re.compile(r"\bpre\b", re.IGNORECASE)
_FAT_SAT = re.compile(r"\bfs\b|fat ?sat|vibrant", re.IGNORECASE)
MAX_POST_PHASES = 4
# The columns of the dataset's Annotation_Boxes table (one box around each patient's cancer).
BOX_COLUMNS = ("Patient ID", "Start Row", "End Row", "Start Column", "End Column", "Start Slice", "End Slice")


@dataclass
class Series:
    uid: str
    description: str
    time: str  # HHMMSS.frac as DICOM writes it; compared as a number
    contrast: bool
    fat_saturated: bool
    files: list[Path] = field(default_factory=list)


@dataclass
class Study:
    patient: str
    uid: str
    series: dict[str, Series] = field(default_factory=dict)


def scan(src: Path) -> dict[str, Study]:
    """Every DICOM file under ``src`` (by header, whatever its name), grouped into studies and series."""
    import pydicom

    studies: dict[str, Study] = {}
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, OSError, ValueError):
            continue  # not DICOM (a README, a spreadsheet)
        study_uid = str(header.get("StudyInstanceUID", ""))
        series_uid = str(header.get("SeriesInstanceUID", ""))
        if not study_uid or not series_uid:
            continue
        study = studies.setdefault(study_uid, Study(str(header.get("PatientID", study_uid)), study_uid))
        if series_uid not in study.series:
            description = str(header.get("SeriesDescription", ""))
            times = (str(header.get(tag)) for tag in ("AcquisitionTime", "SeriesTime", "ContentTime") if header.get(tag))
            options = header.get("ScanOptions", "")
            options = [str(o) for o in options] if isinstance(options, pydicom.multival.MultiValue) else [str(options)]
            study.series[series_uid] = Series(
                series_uid, description, next(times, ""), bool(str(header.get("ContrastBolusAgent", "")).strip()),
                "FS" in (o.upper() for o in options) or bool(_FAT_SAT.search(description)),
            )
        study.series[series_uid].files.append(path)
    return studies


def identify(study: Study) -> tuple[dict[str, Series], list[str]]:
    """The study's phases (``t1_pre``, ``t1_post1``.., ``t2``) and, when they cannot be told apart, the problems."""
    dynamic = [s for s in study.series.values() if _DYNAMIC.search(s.description) and not _T2.search(s.description)]
    t2 = [s for s in study.series.values() if _T2.search(s.description)]
    if not dynamic:
        return {}, ["no dynamic T1 series (descriptions: " + ", ".join(repr(s.description) for s in
                                                                         study.series.values()) + ")"]
    said_pre = [s for s in dynamic if _PRE.search(s.description)]
    if len(said_pre) > 1:
        return {}, ["several series say pre-contrast: " + ", ".join(repr(s.description) for s in said_pre)]
    ordered = sorted(dynamic, key=lambda s: (_seconds(s.time) is None, _seconds(s.time) or 0.0))
    pre = said_pre[0] if said_pre else next((s for s in ordered if not s.contrast), None)
    if pre is None:
        return {}, ["no pre-contrast series: none says pre and every dynamic series names a contrast agent"]
    posts = [s for s in ordered if s is not pre]
    problems = []
    times = [_seconds(s.time) for s in ordered]
    if any(t is None for t in times) or len(set(times)) < len(times):
        problems.append("two dynamic series share an acquisition time (or have none): their order is unknown")
    if len(posts) > MAX_POST_PHASES:
        problems.append(f"{len(posts)} post-contrast series; at most {MAX_POST_PHASES} are expected: "
                        + ", ".join(repr(s.description) for s in posts))
    if not posts:
        problems.append("no post-contrast series")
    if posts and _seconds(pre.time) is not None and _seconds(posts[0].time) is not None and \
            _seconds(pre.time) > _seconds(posts[0].time):
        problems.append(f"the pre-contrast series {pre.description!r} was acquired after {posts[0].description!r}")
    if problems:
        return {}, problems
    phases = {"t1_pre": pre, **{f"t1_post{k}": s for k, s in enumerate(posts, start=1)}}
    if len(t2) == 1:
        phases["t2"] = t2[0]
    return phases, []


def _seconds(time: str) -> float | None:
    match = re.match(r"^(\d{2})(\d{2})(\d{2}(?:\.\d+)?)$", time.strip())
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def write_phases(phases: dict[str, Series], folder: Path, overwrite: bool = False) -> dict[str, str]:
    """Each phase read as one volume (SimpleITK's DICOM series reader) and written on the pre-contrast grid."""
    import SimpleITK as sitk

    from synthmr.io import Volume, write_image

    written = {}
    reference = None
    for key, series in phases.items():
        reader = sitk.ImageSeriesReader()
        names = reader.GetGDCMSeriesFileNames(str(series.files[0].parent), series.uid)
        reader.SetFileNames(list(names) if names else [str(p) for p in series.files])
        image = reader.Execute()
        if reference is None:
            reference = image
        elif (image.GetSize() != reference.GetSize() or image.GetSpacing() != reference.GetSpacing()
              or image.GetOrigin() != reference.GetOrigin() or image.GetDirection() != reference.GetDirection()):
            image = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0, image.GetPixelID())
        written[key] = str(write_image(Volume.from_sitk(image), folder / f"{key}.nii.gz", overwrite=overwrite))
    return written
