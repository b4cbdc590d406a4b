"""Datalist from the BraTS 2023 folder layout.

BraTS 2023 (glioma GLI, meningioma MEN, metastases MET, paediatric PED, sub-Saharan Africa SSA ...) ships one
folder per case, ``BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz``; the validation
and test releases have no ``seg``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from synthmr.errors import InputError
from synthmr.io.datalist import save_datalist

SEQUENCES = ("t1n", "t1c", "t2w", "t2f")
_FILE_SUFFIXES = {**{sequence: sequence for sequence in SEQUENCES}, "label": "seg"}  # datalist key -> file suffix
# Case ids are BraTS-<challenge>-<5-digit patient>-<3-digit timepoint>.
CASE_ID = re.compile(r"^BraTS-[A-Z]+-\d{5}-\d{3}$")
_SHOWN_CASES = 10  # incomplete cases named in one error message; the rest are counted


def brats2023_datalist(
    root: str | os.PathLike, out: str | os.PathLike | None = None, overwrite: bool = False
) -> dict[str, list[dict]]:
    """Scan a BraTS 2023 release folder into a datalist.

    Args:
        root: folder whose subfolders are the cases (``BraTS-GLI-00000-000`` ...); other entries are ignored.
        out: when given, also write the datalist JSON there (paths relative to it).
        overwrite: replace an existing ``out``.

    Returns:
        ``{"training": [{"t1n", "t1c", "t2w", "t2f", "label", "case_id"}, ...]}`` with absolute paths,
        sorted by case id; ``"label"`` (the ``seg`` file) only when the release has segmentations.

    Raises:
        InputError: ``root`` is not a folder or holds no case; a case lacks a sequence; some cases have a
            segmentation and others do not (a mixed or partly extracted release would otherwise train on
            a subset of labels or fail late in a data loader).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: BraTS root folder not found")
    cases = sorted(p for p in root.iterdir() if p.is_dir() and CASE_ID.match(p.name))
    if not cases:
        raise InputError(f"{root}: no BraTS 2023 case folders (named like BraTS-GLI-00000-000) found")
    items = [_case_item(case) for case in cases]
    _check_complete(root, items)
    datalist = {"training": items}
    if out is not None:
        save_datalist(datalist, out, overwrite=overwrite)
    return datalist


def _case_item(case: Path) -> dict:
    """Every file of the case that exists, by key; missing sequences are found by the caller."""
    item = {"case_id": case.name}
    for key, suffix in _FILE_SUFFIXES.items():
        file = case / f"{case.name}-{suffix}.nii.gz"
        if file.is_file():
            item[key] = str(file.absolute())
    return item


def _check_complete(root: Path, items: list[dict]) -> None:
    problems = [
        f"{item['case_id']} lacks {', '.join(missing)}"
        for item in items
        if (missing := [s for s in SEQUENCES if s not in item])
    ]
    unlabelled = [item["case_id"] for item in items if "label" not in item]
    if 0 < len(unlabelled) < len(items):
        problems += [f"{case_id} lacks seg while other cases have it" for case_id in unlabelled]
    if problems:
        shown = "; ".join(problems[:_SHOWN_CASES])
        more = f"; and {len(problems) - _SHOWN_CASES} more" if len(problems) > _SHOWN_CASES else ""
        raise InputError(f"{root}: incomplete BraTS cases: {shown}{more}")
