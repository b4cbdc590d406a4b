"""The input check (synthmr.bundle.input_check): a summary of a bundle's training inputs, a threshold chosen on
validation cases, and what `synthmr run` does with a case that is unlike them (warn, record, --strict refuses).

Small 2D "scans" stand in for a bundle's data: a bright ellipse (the body) towards one side of the field of view
with a brighter disc inside, sizes and positions jittered per case. Unlike them: noise, the same scan flipped, or
with twice the spacing in its header."""

import json
import subprocess
import sys
from pathlib import Path

import monai.bundle  # noqa: F401  (MONAI's logger keeps the stdout it first sees; capsys closes its own)
import numpy as np
import pytest

from synthmr.bundle import read_tool_description, run_bundle
from synthmr.bundle.input_check import (
    SUMMARY_FILE,
    build_input_summary,
    joined,
    load_summary,
    renamed,
    score_case,
    scored_roles,
    write_input_summary,
)
from synthmr.errors import InputError
from synthmr.io import Volume, read_image, write_image
from synthmr.provenance import describe
from test_runner import make_bundle, progress_events, run_main
from test_runner import trust_test_bundles  # noqa: F401 (autouse: the bundles made here are trusted)

SHAPE = (48, 48)
SPACING = (2.0, 2.0)


def scan(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.arange(SHAPE[0]), np.arange(SHAPE[1]), indexing="ij")
    centre = np.array([24.0, 30.0]) + rng.uniform(-2, 2, 2)
    radii = rng.uniform(11, 14, 2)
    body = ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 <= 1
    disc = (x - centre[0]) ** 2 + (y - centre[1] + 4) ** 2 <= rng.uniform(9, 25)
    image = 100.0 * body + 80.0 * disc + rng.normal(0, 3, SHAPE)
    return np.clip(image, 0, None).astype(np.float32)


def volume(array, spacing=SPACING) -> Volume:
    return Volume(array, spacing, (0.0, 0.0), np.eye(2))


def write_case(folder, seed, array=None, spacing=SPACING) -> dict:
    liver = np.zeros(SHAPE, np.uint8)
    liver[20:30, 25:35] = 1
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "t1_pre": write_image(volume(scan(seed) if array is None else array, spacing),
                              folder / f"t1_pre_{seed}.nii.gz"),
        "liver": write_image(volume(liver, spacing), folder / f"liver_{seed}.nii.gz"),
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A bundle (2D, input t1_pre and a liver mask) with a summary of 24 training and 20 validation scans."""
    folder = tmp_path_factory.mktemp("input_check")
    bundle = make_bundle(folder / "bundles")
    training = [write_case(folder / "train", seed) for seed in range(24)]
    validation = [write_case(folder / "validation", seed) for seed in range(100, 120)]
    write_input_summary(bundle, training, validation, pass_rate=0.9)
    return bundle


def check(bundle, array, spacing=SPACING):
    description = read_tool_description(bundle)
    return score_case(description, {"t1_pre": volume(array, spacing)})


def test_the_summary_is_small_and_passes_the_stated_share_of_validation_cases(trained):
    summary = load_summary(trained)
    assert summary["bundle"] == "fake_bundle" and summary["extractor"].startswith("domain (domain_extractor.pt")
    assert set(summary["appearance"]) == {"t1_pre"}  # the labelmap is not scored: its bundle has an intensity input
    assert summary["validation"]["n"] == 20 and summary["validation"]["passed"] >= 18
    assert summary["geometry"]["features"][0] == "log spacing x (mm)"
    low, high = summary["intensity"]["t1_pre"]["high"]
    assert 150 < low <= high < 250  # the 99.5th percentile: the disc, about 180
    assert (trained / SUMMARY_FILE).stat().st_size < 60_000  # compact: two 256-d subspaces of 10 components


def test_new_scans_like_the_training_ones_pass_and_unlike_ones_warn(trained):
    new = [check(trained, scan(seed)) for seed in range(200, 210)]
    assert sum(result.passed for result in new) >= 8
    noise = check(trained, np.random.default_rng(0).uniform(0, 180, SHAPE).astype(np.float32))
    flipped = check(trained, np.flip(scan(200), axis=1).copy())
    header = check(trained, scan(200), spacing=(4.0, 4.0))
    for result, part in ((noise, "appearance"), (flipped, "orientation"), (header, "geometry")):
        assert not result.passed and result.furthest == part, (part, result)
    message = header.message("fake_bundle")
    assert f"score {header.score:.2f} > threshold {header.threshold:.2f}" in message and "90%" in message
    assert "geometry (spacing, size)" in message


def test_too_few_cases_and_a_stale_summary_are_refused(trained, tmp_path):
    description = read_tool_description(trained)
    cases = [write_case(tmp_path, seed) for seed in range(3)]
    with pytest.raises(InputError, match="2 training case"):
        build_input_summary(description, cases[:2], cases)
    with pytest.raises(InputError, match="3 validation case.*at least 10"):
        build_input_summary(description, cases, cases)
    with pytest.raises(InputError, match=r"validation case 0 lacks 't1_pre'"):
        build_input_summary(description, cases, [{"liver": cases[0]["liver"]}] * 10)
    stale = {**load_summary(trained), "extractor": "domain (domain_extractor.pt, sha256 000000000000)"}
    with pytest.raises(InputError, match="rebuild the summary with the bundle's configs/input_summary.yaml"):
        score_case(description, {"t1_pre": volume(scan(1))}, stale)
    with pytest.raises(InputError, match="already exists"):
        write_input_summary(trained, cases, cases)  # an existing summary is kept unless asked


def test_cases_from_two_datalists():
    healthy = [{"t1n": "h0.nii.gz", "label": "x"}, {"t1n": "h1.nii.gz"}]
    tumour = [{"t1n": "t0.nii.gz"}]
    assert renamed(tumour, {"tumor_t1n": "t1n"}) == [{"tumor_t1n": "t0.nii.gz"}]
    assert joined(renamed(healthy, {"t1n": "t1n"}), renamed(tumour, {"tumor_t1n": "t1n"})) == [
        {"t1n": "h0.nii.gz", "tumor_t1n": "t0.nii.gz"}]


def test_run_records_the_check_warns_in_one_line_and_strict_refuses(trained, tmp_path, capfd):
    like = write_case(tmp_path / "like", 300)
    outputs = run_bundle(trained, like, tmp_path / "out_like")
    record = json.loads(outputs["t1_post1"].with_name("t1_post1.json").read_text())["input_check"]
    assert record["passed"] is True and record["summary"] == SUMMARY_FILE
    assert not [e for e in progress_events(capfd.readouterr().out) if e["type"] == "warning"]

    noise = np.random.default_rng(1).uniform(0, 180, SHAPE).astype(np.float32)
    unlike = write_case(tmp_path / "unlike", 301, array=noise)
    outputs = run_bundle(trained, unlike, tmp_path / "out_unlike")
    warnings = [e for e in progress_events(capfd.readouterr().out) if e["type"] == "warning"]
    assert len(warnings) == 1 and "unlike bundle fake_bundle's training data" in warnings[0]["message"]
    record = json.loads(outputs["t1_post1"].with_name("t1_post1.json").read_text())["input_check"]
    assert record == warnings[0]["input_check"] and record["passed"] is False
    assert record["score"] > record["threshold"] and record["parts"]["appearance"] == max(record["parts"].values())
    assert set(record["parts"]) == {"appearance", "layout", "orientation", "geometry"}
    assert set(record["roles"]) == {"t1_pre"}
    assert "furthest: appearance, most of all 't1_pre'" in warnings[0]["message"]
    # intensities are reported, not scored: noise up to 180 has about the scans' 99.5th percentile
    assert set(record["intensity"]) == {"t1_pre"} and record["intensity"]["t1_pre"]["input"][1] > 170
    assert "input check WARNED: the inputs were unlike the training data" in describe(outputs["t1_post1"])

    out = tmp_path / "out_strict"
    args = ["run", trained, "--input", f"t1_pre={unlike['t1_pre']}", "--input", f"liver={unlike['liver']}",
            "--out", out, "--strict"]
    status, errors = run_main(capfd, *args)
    assert status == 2 and len(errors) == 1 and errors[0].endswith("refused (--strict)")
    assert "unlike bundle fake_bundle's training data" in errors[0]
    assert not out.exists()


def test_strict_refuses_a_bundle_without_a_summary(tmp_path, capfd):
    bundle = make_bundle(tmp_path / "bundles")
    case = write_case(tmp_path / "case", 0)
    outputs = run_bundle(bundle, case, tmp_path / "out")  # without --strict it runs, and records no check
    assert json.loads(outputs["t1_post1"].with_name("t1_post1.json").read_text())["input_check"] is None
    status, errors = run_main(capfd, "run", bundle, "--input", f"t1_pre={case['t1_pre']}", "--input",
                              f"liver={case['liver']}", "--out", tmp_path / "strict", "--strict")
    assert status == 2 and f"ships no {SUMMARY_FILE}, so --strict cannot check" in errors[-1]
    assert not (tmp_path / "strict").exists()


# The shipped bundles

ROOT = Path(__file__).resolve().parents[1]
CHECKED_BUNDLES = ("liver_mmhcc_mask2mri", "breast_dce_pre2post", "brain_lesion2mpmri", "brain_tumor_fabrication")


def test_every_bundle_with_inputs_ships_a_summary_config():
    for folder in sorted((ROOT / "bundles").iterdir()):
        description = read_tool_description(folder)
        has_config = (folder / "configs" / "input_summary.yaml").is_file()
        assert has_config is (not description.is_generator), folder.name
        assert has_config is (folder.name in CHECKED_BUNDLES)


@pytest.mark.parametrize("name", CHECKED_BUNDLES)
def test_a_shipped_summary_is_current_and_judges_the_bundles_sample(name):
    """The sample passes, except pre2post's: a 3D volume whose slices show one breast, where every training slice
    shows two (its card says so); noise on the sample's grid warns."""
    folder = ROOT / "bundles" / name
    description = read_tool_description(folder)
    summary = load_summary(folder)
    assert set(summary["appearance"]) == set(scored_roles(description)) and summary["pass_rate"] == 0.95
    sample = {role: read_image(folder / "sample" / f"{role}.nii.gz") for role in description.inputs
              if (folder / "sample" / f"{role}.nii.gz").is_file()}
    result = score_case(description, sample, summary)  # a stale summary would raise
    assert result.passed is (name != "breast_dce_pre2post"), result
    rng = np.random.default_rng(0)
    noise = {role: Volume(rng.integers(0, 2, v.array.shape).astype(np.float32) if description.inputs[role].kind ==
                          "labelmap" else rng.uniform(0, 1000, v.array.shape).astype(np.float32),
                          v.spacing, v.origin, v.direction) for role, v in sample.items()}
    assert not score_case(description, noise, summary).passed


@pytest.mark.parametrize("name", CHECKED_BUNDLES)
def test_the_summary_config_writes_a_summary_from_the_training_datalists(name, tmp_path):
    """configs/input_summary.yaml over train.yaml and tiny_train.yaml: the phantom's tiny training set, 10
    validation cases."""
    folder = ROOT / "bundles" / name
    configs = [str(folder / "configs" / f"{stem}.yaml") for stem in ("train", "tiny_train", "input_summary")]
    overrides = {"dataset_dir": tmp_path / "data", "n_input_check_cases": 10, "summary_file": tmp_path / "summary.json"}
    if name == "brain_tumor_fabrication":
        overrides.update(n_healthy=3, n_annotated=3)
    command = [sys.executable, "-m", "monai.bundle", "run", "--bundle_root", str(folder), "--config_file",
               str(configs)] + [word for key, value in overrides.items() for word in (f"--{key}", str(value))]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    description = read_tool_description(folder)
    assert set(summary["appearance"]) == set(scored_roles(description))
    # the 95 % quantile of 10 cases is the highest: all pass
    assert summary["validation"]["n"] == 10 and summary["validation"]["passed"] == 10
    assert not (folder / "data" / "tiny_phantom" / "input_check_100000").exists()  # the data went where it was told
