"""`synthmr benefit BUNDLE`: the experiment a bundle declares, end to end on breast_dce_pre2post at CI size, the
negative control, and one clear line for what cannot run (synthmr.bundle.benefit, synthmr.evaluation.synthesizers).

Sizes: 4 real phantom slices in the pool, 8 test cases per domain, 25 segmentation iterations on 64 x 64 crops;
each command takes about half a minute on one CPU thread.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from synthmr.errors import InputError
from synthmr.evaluation.synthesizers import ImageTranslation, NoiseControl
from synthmr.io import Volume, read_image, write_image

BUNDLE = "breast_dce_pre2post"


def benefit_cli(work_dir, data_dir, *extra):
    command = [
        sys.executable, "-m", "synthmr", "benefit", BUNDLE, "--work_dir", work_dir, "--device", "cpu",
        "--benefit_data_dir", data_dir, "--n_pool", 4, "--n_test", 8, "--n_real", "[2,4]", "--shares", "[0,1]",
        "--seeds", "[0]", "--segmentation#iterations", 25, "--segmentation#filters", "[8,16,32]", *extra,
    ]
    return subprocess.run(list(map(str, command)), capture_output=True, text=True,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("benefit_phantom")


def test_pre2post_benefit_runs_end_to_end(tmp_path, data_dir):
    result = benefit_cli(tmp_path / "work", data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "work" / "report.json").read_text())
    assert (tmp_path / "work" / "benefit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(report["domains"]) == {"pre", "post"}
    assert report["settings"]["labels"] == {"lesion": [1, 2, 3]}
    for result_of_domain in report["domains"].values():
        assert result_of_domain["n_cases"] == 8
        arms = [(arm["n_real"], arm["share"], arm["n_synthetic"]) for arm in result_of_domain["arms"]]
        assert arms == [(2, 0.0, 0), (2, 1.0, 2), (4, 0.0, 0), (4, 1.0, 4)]
        for arm in result_of_domain["arms"]:
            dice = arm["labels"]["lesion"]["dice"]
            assert 0 <= dice["low"] <= dice["mean"] <= dice["high"] <= 1
        for comparison in result_of_domain["comparisons"]:
            difference = comparison["labels"]["lesion"]["dice_difference"]
            assert difference["low"] <= difference["mean"] <= difference["high"]
    # The synthetic items are the generator's post-contrast images of the chosen real cases, on their grids.
    synthetic = sorted((tmp_path / "work" / "synthetic" / "4_1_0").rglob("image.nii.gz"))
    assert len(synthetic) == 4
    real_pre = {item.name: item for item in (data_dir / "benefit_pool_4").iterdir() if item.is_dir()}
    for path in synthetic:
        case = path.parent.name.removesuffix("_synthetic")
        assert read_image(path).same_grid(read_image(real_pre[case] / "t1_pre.nii.gz"))
    # Printed: both domains, the arms and the verdict of every comparison.
    assert "lesion on pre (8 test cases)" in result.stdout and "lesion on post (8 test cases)" in result.stdout
    assert sum(result.stdout.count(verdict) for verdict in
               ("significant gain", "significant loss", "no significant difference")) == 4
    # Run again: every run is read back, nothing is trained.
    again = benefit_cli(tmp_path / "work", data_dir)
    assert again.returncode == 0 and again.stdout.count("finished earlier") == 4, again.stderr[-2000:]


def test_noise_control_shows_no_significant_gain(tmp_path, data_dir):
    result = benefit_cli(tmp_path / "work", data_dir, "--seeds", "[0,1]",
                         "--synthesize", "$synthmr.evaluation.synthesizers.NoiseControl()")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "work" / "report.json").read_text())
    comparisons = [c["labels"]["lesion"] for domain in report["domains"].values() for c in domain["comparisons"]]
    assert len(comparisons) == 4
    assert not any(c["significant_gain"] for c in comparisons)


@pytest.mark.parametrize("arguments, words", [
    (["breast_dce_patch_cgan"], ["breast_dce_patch_cgan", "no configs/benefit.yaml"]),
    (["no_such_bundle"], ["no_such_bundle"]),
    ([BUNDLE, "--no_such_id", 3], ["no config id 'no_such_id'"]),
    ([BUNDLE, "--device", "tpu"], ["device 'tpu'"]),
    ([BUNDLE, "--work_dir", "bundles/breast_dce_pre2post/output/benefit"], ["lies inside bundle breast_dce_pre2post"]),
])
def test_what_cannot_run_is_one_clear_line(tmp_path, arguments, words):
    if "--work_dir" not in arguments:
        arguments = [*arguments, "--work_dir", tmp_path / "work"]
    result = subprocess.run([sys.executable, "-m", "synthmr", "benefit", *map(str, arguments)], capture_output=True,
                            text=True, cwd=Path(__file__).parents[1])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("synthmr: error:"), result.stderr
    for word in words:
        assert word in lines[0]
    assert not (tmp_path / "work").exists()


# ------------------------------------------------------------------------------------------------- synthesizers
class Brighter(torch.nn.Module):
    """A stand-in generator: doubles its input (in the generator's [-1, 1] range, clamped)."""

    def forward(self, x):
        return (2 * x + 1).clamp(-1, 1)


@pytest.fixture()
def pool(tmp_path):
    rng = np.random.default_rng(0)
    grid = {"spacing": (1.5, 1.5), "origin": (10.0, -4.0), "direction": np.eye(2)}
    items = []
    for i in range(3):
        image = write_image(Volume(rng.uniform(1, 2, (16, 16)).astype(np.float32), **grid), tmp_path / f"pre{i}.nii.gz")
        label = write_image(Volume((rng.random((16, 16)) < 0.2).astype(np.uint8), **grid), tmp_path / f"l{i}.nii.gz")
        items.append({"case_id": f"case{i}", "image": str(image), "label": str(label), "t1_pre": str(image)})
    return items


def test_image_translation_keeps_labels_and_grids_and_chooses_by_seed(pool, tmp_path):
    synthesize = ImageTranslation(Brighter(), source="t1_pre", roi_size=(16, 16))
    items = synthesize(pool, 2, tmp_path / "a", seed=3)
    chosen = [item["case_id"].removesuffix("_synthetic") for item in items]
    assert len(set(chosen)) == 2
    assert chosen == [item["case_id"].removesuffix("_synthetic") for item in
                      ImageTranslation(Brighter(), source="t1_pre", roi_size=(16, 16))(pool, 2, tmp_path / "b", 3)]
    by_id = {item["case_id"]: item for item in pool}
    for item, case in zip(items, chosen):
        assert item["label"] == by_id[case]["label"]
        synthetic, real = read_image(item["image"]), read_image(by_id[case]["t1_pre"])
        assert synthetic.same_grid(real)
        assert synthetic.array.mean() > real.array.mean()  # the generator's output, not a copy
    with pytest.raises(InputError, match="asked for 4 synthetic items from 3 real ones"):
        synthesize(pool, 4, tmp_path / "c", 0)
    with pytest.raises(InputError, match="no 't2' image"):
        ImageTranslation(Brighter(), source="t2")(pool, 1, tmp_path / "d", 0)


def test_noise_control_is_noise_on_the_real_grid(pool, tmp_path):
    items = NoiseControl()(pool, 3, tmp_path, seed=0)
    for item, real_item in zip(items, pool):
        noise, real = read_image(item["image"]), read_image(real_item["image"])
        assert noise.same_grid(real) and item["label"] == real_item["label"]
        assert abs(np.corrcoef(noise.array.ravel(), real.array.ravel())[0, 1]) < 0.3
