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


def dicom_series(folder, study, patient, description, time, contrast="", values=0.0, spacing=0.8, slices=3,
                 options=""):
    """A small MR DICOM series as Duke ships them: one file per slice, the phase only in the description and time."""
    from pydicom.dataset import FileMetaDataset, Dataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    series_uid = generate_uid()
    for index in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = patient, study, series_uid
        ds.Modality, ds.SeriesDescription, ds.AcquisitionTime, ds.SeriesTime = "MR", description, time, time
        ds.ContrastBolusAgent, ds.ScanOptions = contrast, options
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [0.0, 0.0, 2.0 * index]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing, ds.SliceThickness = [spacing, spacing], 2.0
        ds.Rows = ds.Columns = 8
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.full((8, 8), values + index, np.uint16).tobytes()
        path = folder / patient / series_uid[-8:] / f"{index:03d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)


def duke_study(root, patient, phases, **extra):
    from pydicom.uid import generate_uid

    study = generate_uid()
    for description, time, contrast, value, spacing in phases:
        dicom_series(root, study, patient, description, time, contrast, value, spacing, **extra)


def test_duke_phases_are_found_in_time_order_on_one_grid_and_ambiguity_is_reported(tmp_path):
    src = tmp_path / "duke"
    # Shuffled on disk and in description wording; the order comes from the acquisition times.
    duke_study(src, "Breast_MRI_001", [("ax dyn 3rd pass", "101500", "Gadavist", 300, 0.8),
                                       ("ax dyn pre", "100000", "", 100, 0.8),
                                       ("ax t1", "095500", "", 900, 0.8),  # the anatomical T1: not a phase
                                       ("ax dyn 1st pass", "100500", "Gadavist", 200, 0.8),
                                       ("ax dyn 2nd pass", "101000", "Gadavist", 250, 0.7)], options="FS")
    duke_study(src, "Breast_MRI_002", [("Ax Vibrant MultiPhase", "090000", "", 100, 0.8),
                                       ("Ax Vibrant MultiPhase", "090000", "Gadavist", 200, 0.8)])  # one time
    duke_study(src, "Breast_MRI_003", [("ax dyn pre", "080000", "", 100, 0.8),
                                       ("ax dyn pre", "080500", "", 110, 0.8)])  # two pre phases
    with pytest.raises(InputError) as refused:
        convert("duke", src, tmp_path / "out")
    message = str(refused.value)
    assert "Breast_MRI_002: two dynamic series share an acquisition time" in message
    assert "Breast_MRI_003: several series say pre-contrast" in message and "Breast_MRI_001" not in message
    assert not (tmp_path / "out").exists()
    datalist, skipped = convert("duke", src, tmp_path / "out", fractions=(1.0, 0.0, 0.0), skip_incomplete=True)
    (item,) = datalist["training"]
    assert [s.split(":")[0] for s in skipped] == ["Breast_MRI_002", "Breast_MRI_003"]
    assert item["series"] == {"t1_pre": "ax dyn pre", "t1_post1": "ax dyn 1st pass", "t1_post2": "ax dyn 2nd pass",
                              "t1_post3": "ax dyn 3rd pass"}
    assert item["fat_saturated"] is True
    pre = read_image(item["t1_pre"])
    assert pre.array.shape == (8, 8, 3) and pre.spacing == pytest.approx((0.8, 0.8, 2.0))
    assert pre.array.mean() == pytest.approx(101)  # 100 + slice index 0..2
    for key, value in (("t1_post1", 201), ("t1_post3", 301)):
        image = read_image(item[key])
        assert image.same_grid(pre) and image.array.mean() == pytest.approx(value)
    assert read_image(item["t1_post2"]).same_grid(pre)  # resampled from its 0.7 mm grid
