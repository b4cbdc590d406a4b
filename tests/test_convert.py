"""`synthmr convert`: BraTS and per-case folder layouts to a datalist with patient-level splits; what cannot be
identified is named, not guessed."""

import json
import subprocess
import sys

import numpy as np
import pytest

from synthmr.errors import InputError
from synthmr.io import Volume, load_datalist, read_image, write_image
from synthmr.io.convert import convert, split_patients

GRID = {"spacing": (1.0, 1.0, 1.0), "origin": (0.0, 0.0, 0.0), "direction": np.eye(3)}


def volume(path, array):
    return write_image(Volume(np.asarray(array), **GRID), path)


def liver_folders(root):
    """Five cases; case_3 lacks its tumour mask and case_4 has two arterial files."""
    for i in range(5):
        case = root / f"case_{i}"
        volume(case / "scan_art.nii.gz", np.full((4, 4, 4), i, np.float32))
        volume(case / "scan_portal.nii.gz", np.ones((4, 4, 4), np.float32))
        if i != 3:
            volume(case / "masks" / "tumor_seg.nii.gz", np.ones((4, 4, 4), np.uint8))
        if i == 4:
            volume(case / "old_art.nii.gz", np.ones((4, 4, 4), np.float32))
    return {"arterial": "*art*.nii.gz", "portal": "*portal*", "tumor": "*seg*"}


def test_folders_names_incomplete_and_ambiguous_cases_and_writes_nothing(tmp_path):
    mapping = liver_folders(tmp_path / "src")
    with pytest.raises(InputError, match=r"2 case\(s\) could not be identified: case_3: no file matches "
                                         r"tumor=\*seg\*; case_4: arterial=\*art\*.nii.gz matches 2 files"):
        convert("folders", tmp_path / "src", tmp_path / "out", mapping)
    assert not (tmp_path / "out").exists()


def test_folders_with_skip_incomplete_splits_the_complete_cases(tmp_path):
    mapping = liver_folders(tmp_path / "src")
    datalist, skipped = convert("folders", tmp_path / "src", tmp_path / "out", mapping, (0.4, 0.3, 0.3),
                                skip_incomplete=True)
    assert [s.split(":")[0] for s in skipped] == ["case_3", "case_4"]
    ids = sorted(item["case_id"] for items in datalist.values() for item in items)
    assert ids == ["case_0", "case_1", "case_2"] and all(len(items) == 1 for items in datalist.values())
    for name in datalist:
        for item in load_datalist(tmp_path / "out" / "datalist.json", name):
            assert read_image(item["arterial"]).array[0, 0, 0] == int(item["case_id"][-1])
            assert item["tumor"].endswith("masks/tumor_seg.nii.gz")
    report = json.loads((tmp_path / "out" / "conversion.json").read_text())
    assert report["skipped"] == skipped and report["cases"] == {"training": 1, "validation": 1, "test": 1}


def brats_case(root, name, naming, labels):
    suffixes = {"2023": ("t1n", "t1c", "t2w", "t2f"), "2021": ("t1", "t1ce", "t2", "flair")}[naming]
    separator = "-" if naming == "2023" else "_"
    for suffix in suffixes:
        volume(root / name / f"{name}{separator}{suffix}.nii.gz", np.ones((4, 4, 4), np.float32))
    volume(root / name / f"{name}{separator}seg.nii.gz", np.asarray(labels, np.uint8).reshape(4, 4, 4))


def test_brats_2021_labels_become_the_2023_convention_and_timepoints_share_a_split(tmp_path):
    labels = np.repeat([0, 1, 2, 4], 16)
    for i in range(3):
        brats_case(tmp_path / "src21", f"BraTS2021_0000{i}", "2021", labels)
    datalist, _ = convert("brats", tmp_path / "src21", tmp_path / "out21", fractions=(1 / 3, 1 / 3, 1 / 3))
    items = [item for split in datalist.values() for item in split]
    assert len(items) == 3
    for item in items:
        assert set(np.unique(read_image(item["label"]).array)) == {0, 1, 2, 3}
        assert item["label"].startswith(str(tmp_path / "out21" / "labels"))
        assert item["t2f"].endswith("_flair.nii.gz")
    for patient in range(4):
        for timepoint in range(2):
            brats_case(tmp_path / "src23", f"BraTS-GLI-0000{patient}-00{timepoint}", "2023", np.ones(64))
    datalist, _ = convert("brats", tmp_path / "src23", tmp_path / "out23", seed=3)
    split_of = {item["case_id"]: name for name, split in datalist.items() for item in split}
    assert len(split_of) == 8
    assert all(split_of[f"BraTS-GLI-0000{p}-000"] == split_of[f"BraTS-GLI-0000{p}-001"] for p in range(4))


def test_split_fractions_are_checked_and_every_split_gets_a_patient():
    assert sorted(split_patients([f"p{i}" for i in range(10)], (0.8, 0.1, 0.1)).values()).count("test") == 1
    with pytest.raises(InputError, match="three non-negative fractions summing to 1"):
        split_patients(["a"], (0.5, 0.5, 0.5))


def test_the_command_folds_repeated_maps(tmp_path):
    mapping = liver_folders(tmp_path / "src")
    result = subprocess.run(
        [sys.executable, "-m", "synthmr", "convert", "folders", str(tmp_path / "src"), "--out", str(tmp_path / "out"),
         *(f"--map={key}={pattern}" for key, pattern in mapping.items()), "--skip_incomplete"],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "skipped case_3: no file matches tumor=*seg*" in result.stdout
    assert "datalist.json: " in result.stdout and (tmp_path / "out" / "datalist.json").is_file()
