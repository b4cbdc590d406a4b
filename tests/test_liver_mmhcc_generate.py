"""`synthmr generate` with bundle liver_mmhcc_mask2mri: new cases with augmented tumours, their masks and datalist,
reproducible from a seed, written all at once or not at all."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from synthmr.bundle.generate import run_bundle_generate
from synthmr.errors import InputError
from synthmr.io import load_datalist, read_image
from synthmr.methods import liver_mmhcc_mask2mri as method
from synthmr.phantom.dataset import phantom_datalist

PHANTOM = {"dims": 2, "size": 128, "spacing": 3.0, "subtype": "mmhcc"}
KEYS = [*method.SEQUENCES, "liver", "tumor"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sources")
    phantom_datalist("liver", folder / "cases", n=2, seed=210600, **PHANTOM)
    return folder / "cases" / "datalist.json"


def synthmr(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synthmr", *map(str, args)], capture_output=True, text=True)


def test_generate_writes_new_cases_with_their_masks_and_a_datalist(sources, tmp_path):
    result = synthmr("generate", "liver_mmhcc_mask2mri", "--n", 5, "--from", sources, "--out", tmp_path / "set",
                     "--seed", 7, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert f"wrote 5 cases to {tmp_path / 'set'}" in result.stdout
    datalist = json.loads((tmp_path / "set" / "datalist.json").read_text())
    assert datalist["seed"] == 7 and [item["case_id"] for item in datalist["training"]] == [
        f"case_{i:05d}" for i in range(5)]
    assert datalist["training"][0]["t1fs_arterial"] == "case_00000/t1fs_arterial.nii.gz"  # the set can move
    real = {item["case_id"]: item for item in load_datalist(sources)}
    for item in load_datalist(tmp_path / "set" / "datalist.json"):
        source = real[item["source_case"]]
        assert item["source_case"] == f"case_{int(item['case_id'][-5:]) % 2:04d}"  # round robin
        grid = read_image(source["t1fs_arterial"])
        images = {key: read_image(item[key]) for key in KEYS}
        assert all(image.same_grid(grid) for image in images.values())
        tumour, liver = images["tumor"].array != 0, images["liver"].array != 0
        assert tumour.any() and not (tumour & ~liver).any()  # the augmented tumour stays in the liver
        assert not np.array_equal(tumour, read_image(source["tumor"]).array != 0)  # and is a new one
        np.testing.assert_array_equal(images["liver"].array, read_image(source["liver"]).array)
        for sequence in method.SEQUENCES:
            assert np.isfinite(images[sequence].array).all() and images[sequence].array.std() > 0


def test_a_set_is_reproducible_from_its_seed_and_its_first_cases_do_not_depend_on_n(sources, tmp_path):
    torch.manual_seed(0)
    network = method_network()
    cases = load_datalist(sources)
    first = method.NewTumourCases(network, batch_size=2).generate(cases, 3, tmp_path / "a", seed=11)
    again = method.NewTumourCases(network, batch_size=3).generate(cases, 2, tmp_path / "b", seed=11)
    other = method.NewTumourCases(network).generate(cases, 1, tmp_path / "c", seed=12)
    for one, two in zip(first, again):
        for key in KEYS:
            np.testing.assert_array_equal(read_image(one[key]).array, read_image(two[key]).array)
    assert not np.array_equal(read_image(first[0]["tumor"]).array, read_image(other[0]["tumor"]).array)


def method_network():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(Path(method.__file__).parents[3] / "bundles" / "liver_mmhcc_mask2mri" / "configs" /
                           "inference.yaml"))
    return parser.get_parsed_content("network_def")


def test_a_bad_source_leaves_no_output_and_an_existing_folder_is_kept(sources, tmp_path):
    cases = load_datalist(sources)
    broken = [cases[0], {key: value for key, value in cases[1].items() if key != "liver"}]
    with pytest.raises(InputError, match=r"source case 'case_0001': lacks \['liver'\]"):
        method.NewTumourCases(method_network()).generate(broken, 4, tmp_path / "set", seed=0)
    assert not (tmp_path / "set").exists() and list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "mine.txt").write_text("x")
    with pytest.raises(InputError, match="already exists; pass --overwrite"):
        run_bundle_generate("liver_mmhcc_mask2mri", 2, sources, tmp_path / "kept", device="cpu")
    assert [path.name for path in (tmp_path / "kept").iterdir()] == ["mine.txt"]


@pytest.mark.parametrize("args, message", [
    (["liver_mmhcc_mask2mri", "--n", 0], "--n must be a positive integer"),
    (["liver_mmhcc_mask2mri", "--n", 2.5], "--n must be a whole number"),
    (["liver_mmhcc_mask2mri", "--n", 2, "--seed", -1], r"--seed must be an integer in \[0, 2\*\*32\)"),
    (["liver_mmhcc_mask2mri", "--n", 2, "--no_such_id", 3], "no config id 'no_such_id'"),
    (["liver_mmhcc_mask2mri", "--n", 2, "--from", "missing.json"], "missing.json"),
])
def test_mistakes_are_one_line_and_write_nothing(tmp_path, args, message):
    result = synthmr("generate", *args, "--out", tmp_path / "set", "--device", "cpu")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert not (tmp_path / "set").exists()


def test_the_benefit_experiment_trains_on_new_cases_with_their_new_tumours(tmp_path):
    """configs/benefit.yaml, tiny: 2 real arterial slices, with 0 or 2 synthetic cases each (shares above 1: new
    tumours make new cases from the same real one)."""
    result = synthmr(
        "benefit", "liver_mmhcc_mask2mri", "--work_dir", tmp_path / "work", "--device", "cpu",
        "--benefit_data_dir", tmp_path / "data", "--n_pool", 2, "--n_test", 3, "--n_real", "[2]", "--shares", "[2]",
        "--seeds", "[0]", "--segmentation#iterations", 5, "--segmentation#filters", "[8,16,32]",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "work" / "report.json").read_text())
    arms = [(arm["n_real"], arm["share"], arm["n_synthetic"]) for arm in report["domains"]["arterial"]["arms"]]
    assert arms == [(2, 0.0, 0), (2, 2.0, 4)]
    synthesizer = report["settings"]["synthesizer"]
    assert synthesizer["kind"] == "NewTumourCases" and synthesizer["image"] == "t1fs_arterial"
    synthetic = load_datalist(next((tmp_path / "work" / "synthetic").rglob("datalist.json")))
    assert len(synthetic) == 4 and {item["source_case"] for item in synthetic} == {"case_0000", "case_0001"}
    for item in synthetic:
        tumour, liver = read_image(item["tumor"]).array != 0, read_image(item["liver"]).array != 0
        assert tumour.any() and not (tumour & ~liver).any()
