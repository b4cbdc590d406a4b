"""`synthmr phantom` end to end: files, datalist, reproducibility, and one clear line for bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from synthmr.io import load_datalist, read_image


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "synthmr", *map(str, args)], capture_output=True, text=True)


def assert_clean_failure(result, *words):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("synthmr: error:"), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


@pytest.fixture(scope="module")
def brain_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "brain"
    result = run_cli("phantom", "brain", "--n", 3, "--dims", 3, "--spacing", 6, "--out", out, "--seed", 7)
    assert result.returncode == 0, result.stderr
    return out


def test_brain_cases_share_one_grid(brain_dataset):
    items = load_datalist(brain_dataset / "datalist.json")
    assert [item["case_id"] for item in items] == ["case_0000", "case_0001", "case_0002"]
    for item in items:
        volumes = {key: read_image(item[key]) for key in ("t1n", "t1c", "t2w", "t2f", "aptw", "label")}
        reference = volumes["label"]
        assert reference.ndim == 3
        assert all(v.same_grid(reference) for v in volumes.values())
        assert set(np.unique(reference.array)) <= {0, 1, 2, 3}


def test_same_seed_same_arrays_other_seed_differs(brain_dataset, tmp_path):
    # Case i is drawn from seed + i: regenerating case 1 alone from seed 8 must reproduce it exactly.
    result = run_cli("phantom", "brain", "--n", 1, "--dims", 3, "--spacing", 6, "--out", tmp_path / "b", "--seed", 8)
    assert result.returncode == 0, result.stderr
    again = load_datalist(tmp_path / "b" / "datalist.json")[0]
    first = load_datalist(brain_dataset / "datalist.json")
    np.testing.assert_array_equal(read_image(again["t1n"]).array, read_image(first[1]["t1n"]).array)
    assert not np.array_equal(read_image(first[0]["t1n"]).array, read_image(first[1]["t1n"]).array)


def test_datalist_paths_are_relative(brain_dataset):
    raw = json.loads((brain_dataset / "datalist.json").read_text())
    assert raw["organ"] == "brain"
    assert raw["training"][0]["t1n"] == "case_0000/t1n.nii.gz"


def test_preview_is_written(tmp_path):
    out = tmp_path / "liver"
    result = run_cli("phantom", "liver", "--n", 2, "--out", out, "--preview", "--size", 64)
    assert result.returncode == 0, result.stderr
    assert (out / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args, words",
    [
        (["phantom", "kidney", "--n", 1], ["kidney", "brain, breast, liver"]),
        (["phantom", "brain", "--n", -2], ["--n", "-2"]),
        (["phantom", "brain", "--n", 0], ["--n"]),
        (["phantom", "brain", "--n", 1, "--dims", 4], ["dims"]),
        (["phantom", "brain", "--n", 1, "--colour", "red"], ["colour"]),
    ],
)
def test_bad_arguments_fail_cleanly_and_write_nothing(tmp_path, args, words):
    out = tmp_path / "out"
    assert_clean_failure(run_cli(*args, "--out", out), *words)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_out_fails_cleanly(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert_clean_failure(run_cli("phantom", "brain", "--n", 1, "--out", blocker / "sub"), str(blocker / "sub"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_existing_output_is_kept_unless_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert_clean_failure(run_cli("phantom", "liver", "--n", 1, "--size", 64, "--out", out), "--overwrite")
    assert (out / "mine.txt").read_text() == "keep me"
    result = run_cli("phantom", "liver", "--n", 1, "--size", 64, "--out", out, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert not (out / "mine.txt").exists() and (out / "datalist.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left behind


@pytest.fixture(scope="module")
def liver_folders(tmp_path_factory):
    """Two phantom liver datasets of 2D cases that pair by file name (case_XXXX/<sequence>.nii.gz)."""
    root = tmp_path_factory.mktemp("evaluate")
    for name, seed in (("real", 0), ("fake", 50)):
        result = run_cli("phantom", "liver", "--n", 3, "--size", 64, "--out", root / name, "--seed", seed)
        assert result.returncode == 0, result.stderr
        for path in (root / name).glob("case_*/*.nii.gz"):  # masks are not images to compare
            if path.name.split(".")[0] not in ("t1fs_arterial", "t1fs_portal", "t2"):
                path.unlink()
    return root / "real", root / "fake"


def test_evaluate_on_phantom_folders_prints_table_and_writes_json(liver_folders, tmp_path):
    real, fake = liver_folders
    out = tmp_path / "report.json"
    result = run_cli("evaluate", "--real", real, "--fake", fake, "--out", out)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["n_pairs"] == 9 and report["n_real"] == report["n_fake"] == 9
    # 9 slices against 256 features: FID would be biased, so the defaults report KID with its interval instead.
    assert set(report["metrics"]) == {"ssim", "psnr", "mse", "mae", "kid", "nn_accuracy", "ms_ssim_diversity"}
    assert report["extractor"].startswith("domain (domain_extractor.pt")
    for name in ("ssim", "kid", "95 % interval", "nn_accuracy", "domain"):
        assert name in result.stdout
    # Different cases are not the same images: SSIM is clearly below 1.
    assert report["metrics"]["ssim"]["mean"] < 0.9


def test_select_checkpoint_ranks_phantom_reports(liver_folders, tmp_path):
    real, fake = liver_folders
    reports = []
    for name, folder in (("self", real), ("other", fake)):
        reports.append(tmp_path / f"{name}.json")
        result = run_cli("evaluate", "--real", real, "--fake", folder, "--metrics", "ssim,mae,fid", "--out", reports[-1])
        assert result.returncode == 0, result.stderr
    result = run_cli("select-checkpoint", *reports)
    assert result.returncode == 0, result.stderr
    rows = result.stdout.strip().splitlines()[1:]
    assert rows[0].split()[1] == str(reports[0]) and rows[1].split()[1] == str(reports[1])


def test_inception_fid_without_weights_names_the_file(liver_folders, tmp_path):
    real, fake = liver_folders
    out = tmp_path / "report.json"
    result = run_cli("evaluate", "--real", real, "--fake", fake, "--extractor", "inception", "--out", out)
    assert_clean_failure(result, "pt_inception-2015-12-05-6726825d.pth", "--extractor_weights")
    assert not out.exists()


def test_relative_out_gives_a_datalist_that_resolves(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "synthmr", "phantom", "breast", "--n", "1", "--size", "64", "--out", "sub/data"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    item = load_datalist(tmp_path / "sub" / "data" / "datalist.json")[0]
    assert read_image(item["t1_pre"]).array.shape == (64, 64)


def test_an_unknown_option_or_command_is_one_line_before_anything_runs(tmp_path):
    lesion_map = tmp_path / "lesion.nii.gz"
    from synthmr.io import Volume, write_image

    labels = np.pad(np.pad(np.full((4, 4, 4), 2, np.uint8), 2, constant_values=1), 2)  # lesion 2 in organ 1
    write_image(Volume(labels, (1.0,) * 3, (0.0,) * 3, np.eye(3)), lesion_map)
    # A typo in a flag: fire would edit and write the file first, then fail on what it could not consume.
    result = run_cli("lesion", "--lesion", lesion_map, "--mirror", "--out", tmp_path / "out.nii.gz", "--mirrror")
    assert_clean_failure(result, "synthmr lesion: unknown option --mirrror", "--mirror", "--organ_labels")
    assert not (tmp_path / "out.nii.gz").exists()
    assert_clean_failure(run_cli("frobnicate"), "unknown command 'frobnicate'", "lesion", "run")
    assert_clean_failure(run_cli("bundle", "exprt", "x"), "unknown command 'bundle exprt'", "export")
    assert_clean_failure(run_cli("bundle", "export", "x", "--outt", tmp_path), "unknown option --outt", "--out")
    help_text = run_cli("lesion", "--help")
    assert help_text.returncode == 0 and "--organ_labels" in help_text.stdout + help_text.stderr
    # Hyphens are fire's spelling of underscores; the edit runs.
    ok = run_cli("lesion", "--lesion", lesion_map, "--scale", "0.5", "--out", tmp_path / "ok.nii.gz", "--organ-labels", 1)
    assert ok.returncode == 0, ok.stderr
