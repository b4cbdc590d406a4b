"""`synthmr check-data`: every problem of a datalist for a bundle, one line each naming the case and the file."""

import json
import subprocess
import sys

import numpy as np
import pytest

from synthmr.bundle.check_data import check_datalist, format_problems
from synthmr.errors import InputError
from synthmr.io import Volume, write_image

BUNDLE = "liver_mmhcc_mask2mri"  # three sequences and two required masks, labels {1}


def liver_case(folder, name, spacing=(1.5, 1.5), tumor_value=1, empty_liver=False, nan=False):
    """A 32x32 liver case: three noisy sequences, a liver disc and a tumour inside it."""
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    rows, columns = np.mgrid[:32, :32]
    liver = ((rows - 16) ** 2 + (columns - 16) ** 2 < 100).astype(np.uint8)
    tumor = ((rows - 16) ** 2 + (columns - 18) ** 2 < 9).astype(np.uint8) * tumor_value
    item = {"case_id": name}
    for key in ("t1fs_arterial", "t1fs_portal", "t2"):
        image = (100 + 50 * liver + rng.normal(0, 5, (32, 32))).astype(np.float32)
        if nan and key == "t2":
            image[3, 3] = np.nan
        grid = {"spacing": spacing if key == "t1fs_portal" else (1.5, 1.5), "origin": (0.0, 0.0),
                "direction": np.eye(2)}
        item[key] = str(write_image(Volume(image, **grid), folder / name / f"{key}.nii.gz"))
    grid = {"spacing": (1.5, 1.5), "origin": (0.0, 0.0), "direction": np.eye(2)}
    item["liver"] = str(write_image(Volume(liver * (not empty_liver), **grid), folder / name / "liver.nii.gz"))
    item["tumor"] = str(write_image(Volume(tumor.astype(np.uint8), **grid), folder / name / "tumor.nii.gz"))
    return item


@pytest.fixture
def datalist(tmp_path):
    items = [
        liver_case(tmp_path, "good"),
        liver_case(tmp_path, "off_grid", spacing=(2.0, 2.0)),
        liver_case(tmp_path, "label_5", tumor_value=5),
        liver_case(tmp_path, "no_liver", empty_liver=True),
        liver_case(tmp_path, "nan", nan=True),
    ]
    missing = dict(liver_case(tmp_path, "no_t2"))
    del missing["t2"]
    items.append(missing)
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": items}))
    return path


def test_each_problem_is_one_line_naming_the_case_and_the_file(datalist):
    problems, n_items = check_datalist(BUNDLE, datalist)
    assert n_items == 6
    by_case = {}
    for problem in problems:
        by_case.setdefault(problem.case, []).append(problem)
    assert set(by_case) == {"off_grid", "label_5", "no_liver", "nan", "no_t2"}  # "good" has none
    assert all(len(found) == 1 for found in by_case.values())
    (grid,), (label,), (empty,), (nan,), (missing,) = (by_case[c] for c in ("off_grid", "label_5", "no_liver",
                                                                             "nan", "no_t2"))
    assert grid.file.endswith("off_grid/t1fs_portal.nii.gz") and "not on the grid of 't1fs_arterial'" in grid.problem
    assert "spacing 2x2 vs 1.5x1.5 mm" in grid.problem
    assert label.file.endswith("label_5/tumor.nii.gz") and "label value(s) 5" in label.problem
    assert empty.file.endswith("no_liver/liver.nii.gz") and "is empty" in empty.problem
    assert nan.file.endswith("nan/t2.nii.gz") and "NaN" in nan.problem
    assert missing.file == "-" and "lacks 't2'" in missing.problem
    table = format_problems(problems, n_items).splitlines()
    assert table[-1] == "5 problem(s) in 5 of 6 cases" and len(table) == 7


def test_the_command_exits_1_on_problems_and_0_on_a_clean_datalist(datalist, tmp_path):
    def check(path):
        return subprocess.run([sys.executable, "-m", "synthmr", "check-data", str(path), "--bundle", BUNDLE],
                              capture_output=True, text=True)

    result = check(datalist)
    assert result.returncode == 1 and "off_grid" in result.stdout and "5 problem(s)" in result.stdout
    clean = tmp_path / "clean.json"
    good = json.loads(datalist.read_text())["training"][:1]
    clean.write_text(json.dumps({"training": [{**good[0], "case_id": "a"}]}))
    result = check(clean)
    assert result.returncode == 0 and result.stdout.strip() == "no problems in 1 cases"


def test_duplicates_and_a_missing_list_or_file(tmp_path, datalist):
    items = json.loads(datalist.read_text())["training"][:1]
    gone = dict(items[0], case_id="gone", t2=str(tmp_path / "nowhere.nii.gz"))
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"training": [items[0], items[0], gone]}))
    problems, _ = check_datalist(BUNDLE, path)
    assert [(p.case, p.problem) for p in problems] == [
        ("good", "case_id used by an earlier item too"), ("gone", "role 't2': no such file")]
    with pytest.raises(InputError, match=r"no list 'validation'"):
        check_datalist(BUNDLE, path, section="validation")


def test_a_bundle_training_on_several_datalists_is_checked_against_the_one_named(tmp_path):
    """brain_tumor_fabrication reads healthy scans and annotated tumour cases: each list has its own roles."""
    grid = {"spacing": (2.0, 2.0, 2.0), "origin": (0.0, 0.0, 0.0), "direction": np.eye(3)}
    rng = np.random.default_rng(0)
    item = {"case_id": "a"}
    for key in ("t1n", "t1c", "t2w", "t2f"):
        item[key] = str(write_image(Volume(rng.random((8, 8, 8)).astype(np.float32), **grid), tmp_path / f"{key}.nii.gz"))
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": [item]}))
    bundle = "brain_tumor_fabrication"
    with pytest.raises(InputError, match="trains on several datalists; say which one.*healthy_datalist, annotated_datalist"):
        check_datalist(bundle, path)
    assert check_datalist(bundle, path, setting="healthy_datalist") == ([], 1)
    problems, _ = check_datalist(bundle, path, setting="annotated_datalist")
    assert [(p.case, p.problem) for p in problems] == [("a", "lacks 'label' (a labelmap)")]
    with pytest.raises(InputError, match="reads no such datalist; it reads healthy_datalist, annotated_datalist"):
        check_datalist(bundle, path, setting="train_datalist")
    with pytest.raises(InputError, match="leave --setting out"):
        check_datalist(BUNDLE, path, setting="train_datalist")
