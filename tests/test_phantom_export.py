"""`synthmr phantom --format dicom|brats`: phantom cases in a public dataset's layout convert back to themselves."""

import numpy as np
import pytest

from synthmr.errors import InputError
from synthmr.io import read_image
from synthmr.io.convert import convert
from synthmr.phantom import phantom_class
from synthmr.phantom.dataset import write_phantom_dataset

BREAST = {"size": 32, "slices": 16, "slice_spacing": 5.0, "n_lesions": (1, 1), "malignant_fraction": 1.0}


def test_a_duke_style_export_converts_back_to_the_phantom_images_grid_and_lesion_box(tmp_path):
    write_phantom_dataset("breast", 2, tmp_path / "raw", seed=5, format="dicom", **BREAST)
    datalist, skipped = convert("duke", tmp_path / "raw", tmp_path / "data", {"breast": "masks/{patient}_breast.nii.gz"},
                                fractions=(1.0, 0.0, 0.0), boxes=tmp_path / "raw" / "Annotation_Boxes.csv")
    assert skipped == [] and [item["case_id"] for item in datalist["training"]] == ["Breast_MRI_001", "Breast_MRI_002"]
    item = datalist["training"][0]
    case = phantom_class("breast")(dims=3, **BREAST)(5)
    assert item["series"]["t1_pre"] == "ax dyn pre" and item["series"]["t1_post4"] == "ax dyn 4th pass"
    assert item["fat_saturated"] is True and item["lesion_classes"] == ["malignant"]
    highest = max(float(array.max()) for array in case.images.values())
    for key in ("t1_pre", "t1_post1", "t1_post4", "t2"):
        converted, truth = read_image(item[key]), case.volume(key)
        assert converted.same_grid(truth), key  # the DICOM geometry round trip puts every voxel back
        assert np.abs(converted.array - truth.array).max() <= highest / 60000  # 16-bit storage, one slope
    lesion = read_image(item["lesion"]).array > 0
    truth = case.masks["lesion"] == 1
    assert lesion[truth].all()  # the box holds the lesion ...
    for axis in range(3):  # ... and is its bounding box
        other = tuple(a for a in range(3) if a != axis)
        assert np.array_equal(lesion.any(axis=other), truth.any(axis=other))
    assert read_image(item["breast"]).same_grid(read_image(item["t1_pre"]))


def test_a_brats_export_converts_to_skull_stripped_cases_with_their_labels(tmp_path):
    write_phantom_dataset("brain", 1, tmp_path / "raw", seed=3, format="brats", spacing=4.0)
    datalist, _ = convert("brats", tmp_path / "raw", tmp_path / "data", fractions=(1.0, 0.0, 0.0))
    (item,) = datalist["training"]
    case = phantom_class("brain")(spacing=4.0)(3)
    brain = case.masks["brain"] > 0
    t1n = read_image(item["t1n"])
    assert item["case_id"] == "BraTS-GLI-00000-000" and t1n.same_grid(case.volume("t1n"))
    assert np.array_equal(t1n.array[brain], case.images["t1n"][brain]) and not t1n.array[~brain].any()
    assert np.array_equal(read_image(item["label"]).array, case.masks["label"])


@pytest.mark.parametrize("organ, format, options, expected", [
    ("liver", "dicom", {}, "no liver dataset is published in that layout; for liver: nifti"),
    ("breast", "brats", {}, "for breast: nifti, dicom"),
    ("breast", "dicom", {"dims": 2}, "use --dims 3"),
    ("brain", "png", {}, "--format png: unknown"),
])
def test_a_format_without_a_layout_for_the_organ_is_refused_before_anything_is_written(tmp_path, organ, format,
                                                                                       options, expected):
    with pytest.raises(InputError, match=expected):
        write_phantom_dataset(organ, 1, tmp_path / "raw", format=format, **options)
    assert not (tmp_path / "raw").exists()


def test_boxes_that_do_not_fit_or_lack_a_column_are_named(tmp_path):
    write_phantom_dataset("breast", 1, tmp_path / "raw", format="dicom", **BREAST)
    table = tmp_path / "boxes.csv"
    table.write_text("Patient ID,Start Row,End Row,Start Column,End Column,Start Slice,End Slice\n"
                     "Breast_MRI_001,1,40,1,2,1,2\n")
    with pytest.raises(InputError, match="Breast_MRI_001: box rows 1-40.*do not fit its 32 rows"):
        convert("duke", tmp_path / "raw", tmp_path / "data", boxes=table)
    assert not (tmp_path / "data").exists()
    table.write_text("Patient ID,Start Row,End Row\nBreast_MRI_001,1,2\n")
    with pytest.raises(InputError, match="lacks Start Column, End Column, Start Slice, End Slice"):
        convert("duke", tmp_path / "raw", tmp_path / "data", boxes=table)
