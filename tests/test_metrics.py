"""Evaluation metrics: SAMe, 1-NN two-sample accuracy, MS-SSIM diversity, paired and segmentation metrics, and
the evaluate -> report -> checkpoint selection path on tiny NIfTI folders."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from synthmr.errors import InputError
from synthmr.io import Volume, write_image
from synthmr.metrics import (
    ms_ssim_diversity,
    ms_ssim_settings,
    nn_accuracy,
    paired_metrics,
    rank_candidates,
    same_scores,
    scaled_metrics,
    segmentation_metrics,
)



@pytest.fixture(autouse=True)
def one_thread():
    """The images here are tiny: one thread avoids thread start-up and contention costs on shared CPUs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------------------- SAMe


def random_table(seed=0, n=6):
    rng = np.random.default_rng(seed)
    return {
        f"epoch_{10 * (i + 1)}": {
            "ssim": float(rng.uniform(0.5, 0.9)),
            "mse": float(rng.uniform(0.001, 0.02)),
            "mae": float(rng.uniform(0.02, 0.1)),
            "fid": float(rng.uniform(5, 50)),
        }
        for i in range(n)
    }


def test_same_puts_clearly_better_checkpoint_first():
    table = {
        "epoch_10": {"ssim": 0.60, "mse": 0.020, "fid": 40.0, "nn_accuracy": 0.95},
        "epoch_20": {"ssim": 0.85, "mse": 0.004, "fid": 8.0, "nn_accuracy": 0.52},
        "epoch_30": {"ssim": 0.70, "mse": 0.010, "fid": 20.0, "nn_accuracy": 0.30},
    }
    ranking = rank_candidates(table)
    assert [name for name, _ in ranking] == ["epoch_20", "epoch_30", "epoch_10"]
    scores = dict(ranking)
    assert scores["epoch_20"] == pytest.approx(0.0)  # best on every metric
    # nn_accuracy is best at 0.5: 0.95 is the farthest (|0.45|) and scales to 1, 0.30 (|0.20|) lies in between.
    assert scaled_metrics(table)["epoch_30"]["nn_accuracy"] == pytest.approx((0.20 - 0.02) / (0.45 - 0.02))
    assert scores["epoch_10"] == pytest.approx(1.0)  # worst on every metric


def test_same_ranking_does_not_depend_on_reporting_direction():
    table = random_table()
    flipped = {name: {**row, "ssim": 1.0 - row["ssim"], "fid": -row["fid"]} for name, row in table.items()}
    ranking = rank_candidates(table)
    flipped_ranking = rank_candidates(flipped, directions={"ssim": "min", "fid": "max"})
    assert [name for name, _ in flipped_ranking] == [name for name, _ in ranking]
    assert [score for _, score in flipped_ranking] == pytest.approx([score for _, score in ranking])
    # Giving a metric the wrong direction must change the result (the test can fail).
    assert rank_candidates(table, directions={"ssim": "min"}) != ranking


def test_same_constant_metric_contributes_zero():
    table = random_table(seed=1, n=4)
    with_constant = {name: {**row, "psnr": 30.0} for name, row in table.items()}
    scaled = scaled_metrics(with_constant)
    assert all(row["psnr"] == 0.0 for row in scaled.values())
    without, with_ = same_scores(table), same_scores(with_constant)
    # The constant metric still counts in the mean: 4 informative metrics out of 5.
    for name in table:
        assert with_[name] == pytest.approx(without[name] * 4 / 5)
    assert same_scores({"only": {"ssim": 0.7, "mse": 0.01}}) == {"only": 0.0}


def test_same_weights_and_groups_change_the_result_as_documented():
    # A is worst on ssim and mse, best on mae and fid; B the opposite. Scaled values are 0 or 1.
    table = {
        "A": {"ssim": 0.6, "mse": 0.02, "mae": 0.05, "fid": 10.0, "psnr": 20.0},
        "B": {"ssim": 0.8, "mse": 0.01, "mae": 0.08, "fid": 30.0, "psnr": 25.0},
    }
    plain = {name: {m: v for m, v in row.items() if m != "psnr"} for name, row in table.items()}
    assert same_scores(plain) == pytest.approx({"A": 0.5, "B": 0.5})
    # Weights: ssim counts 3 times -> A = (3 + 1) / 6, B = (1 + 1) / 6.
    assert same_scores(plain, weights={"ssim": 3}) == pytest.approx({"A": 4 / 6, "B": 2 / 6})
    assert rank_candidates(plain, weights={"ssim": 3})[0][0] == "B"
    # Groups: each group weighs 1/2; analytical A = 2/3, B = 1/3; features A = 0, B = 1. psnr is in no group.
    groups = {"analytical": ["ssim", "mse", "mae"], "features": ["fid"]}
    assert same_scores(table, groups=groups) == pytest.approx({"A": 1 / 3, "B": 2 / 3})
    assert rank_candidates(table, groups=groups)[0][0] == "A"
    # Weights inside a group share that group's weight: mae weight 0 leaves ssim and mse.
    assert same_scores(table, weights={"mae": 0}, groups=groups) == pytest.approx({"A": 0.5, "B": 0.5})


def test_same_rejects_bad_input():
    table = random_table(n=3)
    del table["epoch_20"]["fid"]
    with pytest.raises(InputError, match="'fid'.*'epoch_20'"):
        same_scores(table)
    with pytest.raises(InputError, match="no default direction"):
        same_scores({"a": {"sharpness": 1.0}, "b": {"sharpness": 2.0}})
    with pytest.raises(InputError, match="'ssmi'"):
        same_scores(random_table(n=3), weights={"ssmi": 2})
    with pytest.raises(InputError, match="not a finite number"):
        same_scores({"a": {"psnr": math.inf}, "b": {"psnr": 30.0}})


# ------------------------------------------------------------------------------------------------------ 1-NN test


def test_nn_accuracy_near_half_for_one_distribution_and_one_for_separated_sets():
    rng = np.random.default_rng(0)
    same = nn_accuracy(rng.normal(size=(200, 5)), rng.normal(size=(200, 5)))
    assert abs(same["accuracy"] - 0.5) < 0.1
    assert same["n_real"] == 200 and same["n_fake"] == 200
    assert same["accuracy"] == pytest.approx((same["accuracy_real"] + same["accuracy_fake"]) / 2)
    apart = nn_accuracy(torch.randn(200, 5), torch.randn(200, 5) + 10.0)
    assert apart["accuracy"] > 0.99 and apart["accuracy_real"] > 0.99 and apart["accuracy_fake"] > 0.99


def test_nn_accuracy_is_leave_one_out():
    # A fake set that copies the real one: every point's nearest other point is its copy from the other set.
    # Were the point itself not excluded, every point would find itself and score 1.
    points = np.random.default_rng(1).normal(size=(50, 3))
    assert nn_accuracy(points, points.copy())["accuracy"] == 0.0


def test_nn_accuracy_on_pixels_and_in_chunks():
    rng = np.random.default_rng(2)
    real, fake = rng.random((30, 1, 8, 8)), rng.random((25, 1, 8, 8)) * 0.5
    whole = nn_accuracy(real, fake)
    assert nn_accuracy(real, fake, chunk_size=7) == whole
    assert whole["n_real"] == 30 and whole["n_fake"] == 25
    with pytest.raises(InputError, match="differ in size"):
        nn_accuracy(real, fake[:, :, :4])
    with pytest.raises(InputError, match="unknown metric"):
        nn_accuracy(real, fake, metric="manhattan")


# -------------------------------------------------------------------------------------------- MS-SSIM diversity


def smooth_images(n, size, seed):
    """Random smooth images: sums of a few Gaussian blobs, intensities in [0, 1]."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="ij"))
    images = np.zeros((n, 1, size, size), dtype=np.float32)
    for image in images:
        for _ in range(4):
            centre = rng.uniform(0, size, size=(2, 1, 1))
            image[0] += np.exp(-((grid - centre) ** 2).sum(0) / (2 * (size / 8) ** 2))
    return images / images.max()


def test_ms_ssim_diversity_identical_is_one_and_noise_is_low():
    one = smooth_images(1, 64, seed=0)
    assert ms_ssim_diversity(np.repeat(one, 5, axis=0)) == pytest.approx(1.0, abs=1e-4)
    noise = np.random.default_rng(0).random((6, 1, 64, 64), dtype=np.float32)
    assert ms_ssim_diversity(noise) < 0.1
    # Distinct smooth images are in between: similar structure, not the same.
    assert 0.1 < ms_ssim_diversity(smooth_images(6, 64, seed=1)) < 0.99


def test_ms_ssim_settings_fit_small_images():
    assert len(ms_ssim_settings((176, 200))["weights"]) == 5
    assert len(ms_ssim_settings((64, 64))["weights"]) == 3
    assert len(ms_ssim_settings((32, 32))["weights"]) == 2
    tiny = ms_ssim_settings((8, 8))
    assert tiny["weights"] == (1.0,) and tiny["kernel_size"] == (7, 7)
    for settings in (ms_ssim_settings((64, 64)), ms_ssim_settings((32, 32))):
        assert sum(settings["weights"]) == pytest.approx(1.0)
    images = np.random.default_rng(3).random((12, 1, 32, 32), dtype=np.float32)
    exact = ms_ssim_diversity(images, n_pairs=1000)  # 66 distinct pairs: all used
    sampled = ms_ssim_diversity(images, n_pairs=20, seed=5)
    assert sampled == ms_ssim_diversity(images, n_pairs=20, seed=5)
    assert abs(sampled - exact) < 0.05
    with pytest.raises(InputError, match="at least 2"):
        ms_ssim_diversity(images[:1])


# --------------------------------------------------------------------------------------------- paired / segmentation


def test_paired_metrics_identical_known_offset_and_mask():
    image = smooth_images(1, 32, seed=4)[0, 0]
    same = paired_metrics(image, image)
    assert same["ssim"] == pytest.approx(1.0) and same["mse"] == 0.0 and same["mae"] == 0.0
    assert same["psnr"] == math.inf
    volume = np.random.default_rng(0).random((16, 16, 12), dtype=np.float32)
    assert paired_metrics(volume, volume)["ssim"] == pytest.approx(1.0)
    # A one-slice volume (a 2D image stored as 3D) scores as the 2D image: no window along the thin axis.
    other = volume[:, :, 1]
    thin = paired_metrics(volume[:, :, :1], other[:, :, None])
    assert thin == pytest.approx(paired_metrics(volume[:, :, 0], other), rel=1e-5)
    shifted = paired_metrics(image + 0.1, image)
    assert shifted["mse"] == pytest.approx(0.01, rel=1e-4) and shifted["mae"] == pytest.approx(0.1, rel=1e-4)
    assert shifted["psnr"] == pytest.approx(20.0, abs=1e-3)
    assert shifted["ssim"] < 1.0
    # Differences outside the mask do not count.
    mask = np.zeros_like(image, dtype=bool)
    mask[8:24, 8:24] = True
    damaged = image.copy()
    damaged[~mask] = 0.0
    inside = paired_metrics(damaged, image, mask=mask)
    assert inside["mse"] == 0.0 and inside["mae"] == 0.0
    assert inside["ssim"] < 1.0  # windows centred near the mask edge reach into the damage
    assert paired_metrics(damaged, image)["mse"] > 0.0
    with pytest.raises(InputError, match="differ in shape"):
        paired_metrics(image, image[:-1])


def test_segmentation_metrics_known_overlap_and_empty_labels():
    pred = np.zeros((10, 10), dtype=int)
    true = np.zeros((10, 10), dtype=int)
    pred[2:5, 2:5] = 1
    true[3:6, 2:5] = 1  # same 3x3 square shifted by one row: 6 of 9 voxels overlap
    true[7:9, 7:9] = 2  # missed by the prediction
    pred[0:2, 8:10] = 3  # predicted where the reference has nothing
    result = segmentation_metrics(pred, true, labels=[1, 2, 3, 4], spacing=(2.0, 1.0))
    assert result[1]["dice"] == pytest.approx(2 * 6 / 18)
    assert result[1]["sensitivity"] == pytest.approx(6 / 9)
    assert result[1]["specificity"] == pytest.approx(88 / 91)  # 3 false positives among 91 negatives
    assert result[1]["hd95"] == pytest.approx(2.0)  # one row at 2 mm spacing
    diagonal = math.hypot(9 * 2.0, 9 * 1.0)
    assert result[2] == pytest.approx({"dice": 0.0, "hd95": diagonal, "sensitivity": 0.0, "specificity": 1.0})
    assert result[3] == pytest.approx({"dice": 0.0, "hd95": diagonal, "sensitivity": 1.0, "specificity": 0.96})
    assert result[4] == {"dice": 1.0, "hd95": 0.0, "sensitivity": 1.0, "specificity": 1.0}
    assert not any(math.isnan(v) for row in result.values() for v in row.values())


# ------------------------------------------------------------------------------------------ evaluate and reports


class TinyExtractor(nn.Module):
    """A fixed random convolutional feature map: stands in for the shipped extractors (no weights needed)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 8, kernel_size=3, stride=2)

    def forward(self, images):
        return torch.nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(images)), 2).flatten(1)


@pytest.fixture
def tiny_extractor(monkeypatch):
    """Replace get_extractor by one that records its arguments and returns TinyExtractor."""
    calls = []

    def get_extractor(name="domain", weights=None):
        calls.append((name, weights))
        return TinyExtractor()

    monkeypatch.setattr("synthmr.metrics.extractors.get_extractor", get_extractor)
    return calls


def blob_volume(seed, shape=(24, 24, 4)):
    """A smooth non-negative volume: a few Gaussian blobs on a dark background."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"))
    volume = np.zeros(shape, dtype=np.float32)
    for _ in range(3):
        centre = rng.uniform([4, 4, 0.5], [20, 20, 2.5]).reshape(3, 1, 1, 1)
        volume += 100 * np.exp(-((grid - centre) ** 2 / np.reshape([18.0, 18.0, 4.0], (3, 1, 1, 1))).sum(0))
    return volume


def write_set(folder, volumes):
    for name, array in volumes.items():
        write_image(Volume(array, (1.0, 1.0, 3.0), (0.0, 0.0, 0.0), np.eye(3)), folder / name)
    return folder


@pytest.fixture
def real_folder(tmp_path):
    return write_set(tmp_path / "real", {f"case{i}.nii.gz": blob_volume(i) for i in range(3)})


def noisy_copy(real_folder, folder, noise, extra=False):
    rng = np.random.default_rng(10)
    volumes = {
        f"case{i}.nii.gz": blob_volume(i) + rng.normal(0, noise, (24, 24, 4)).astype(np.float32) for i in range(3)
    }
    if extra:  # an unpaired synthetic volume: counts for the distribution metrics only
        volumes["extra.nii.gz"] = blob_volume(99)
    return write_set(folder, volumes)


def test_evaluate_folders_writes_report_and_table(tmp_path, real_folder, tiny_extractor):
    from synthmr.metrics import METRICS, format_table
    from synthmr.metrics.evaluate import evaluate

    fake = noisy_copy(real_folder, tmp_path / "fake", noise=5.0, extra=True)
    out = tmp_path / "reports" / "epoch_10.json"
    report = evaluate(real_folder, fake, extractor="inception", extractor_weights="/weights/w.pth", out=out)
    assert tiny_extractor == [("inception", "/weights/w.pth")]
    assert (report["n_real"], report["n_fake"], report["n_pairs"]) == (3, 4, 3)
    assert report["n_real_slices"] > 3 and report["n_fake_slices"] > report["n_real_slices"]
    # A handful of slices against 32 features: FID would be biased, so the defaults report KID instead.
    assert set(report["metrics"]) == set(METRICS) - {"fid"} and "see kid" in report["details"]["fid_left_out"]
    assert set(report["metrics"]["ssim"]) == {"mean", "std"} and 0.0 < report["metrics"]["ssim"]["mean"] < 1.0
    assert report["details"]["kid"]["interval"] is not None and 0.0 <= report["metrics"]["nn_accuracy"] <= 1.0
    assert "TinyExtractor" in report["extractor"]
    assert json.loads(out.read_text()) == report
    table = format_table(report)
    for name in report["metrics"]:
        assert name in table
    assert report["extractor"] in table

    before = out.read_text()
    with pytest.raises(InputError, match="already exists"):
        evaluate(real_folder, fake, metrics=["mae"], out=out)
    assert out.read_text() == before
    assert evaluate(real_folder, fake, metrics=["mae"], out=out, overwrite=True)["metrics"].keys() == {"mae"}
    assert json.loads(out.read_text())["metrics"].keys() == {"mae"}


def test_evaluate_identical_sets_score_perfectly(tmp_path, real_folder, tiny_extractor):
    from synthmr.metrics.evaluate import evaluate

    copy = write_set(tmp_path / "copy", {f"case{i}.nii.gz": blob_volume(i) for i in range(3)})
    report = evaluate(real_folder, copy, out=tmp_path / "report.json")
    metrics = report["metrics"]
    assert metrics["ssim"]["mean"] == pytest.approx(1.0) and metrics["mse"]["mean"] == 0.0
    assert metrics["psnr"]["mean"] is None  # infinite for identical images: null in strict JSON
    # Unbiased KID of a set against itself is <= 0: the cross term includes each slice's pairing with itself.
    assert metrics["kid"] <= 0.0 and "fid" not in metrics
    assert metrics["nn_accuracy"] == 0.0  # every slice's nearest other slice is its copy
    assert metrics["ms_ssim_diversity"] == pytest.approx(report["details"]["ms_ssim_diversity_real"])
    assert "Infinity" not in (tmp_path / "report.json").read_text()


def test_evaluate_pairs_datalists_by_case_id_and_key(tmp_path, real_folder):
    from synthmr.io import save_datalist
    from synthmr.metrics.evaluate import evaluate

    fake = noisy_copy(real_folder, tmp_path / "fake", noise=5.0)
    real_items = [{"case_id": f"c{i}", "t1c": str(real_folder / f"case{i}.nii.gz"), "grade": "high"} for i in range(3)]
    fake_items = [{"case_id": f"c{i}", "t1c": str(fake / f"case{i}.nii.gz")} for i in (0, 2)]
    fake_items.append({"t1c": str(fake / "case1.nii.gz")})  # no case_id: unpaired
    save_datalist({"training": real_items}, tmp_path / "real.json")
    save_datalist({"training": fake_items}, tmp_path / "fake.json")
    report = evaluate(tmp_path / "real.json", tmp_path / "fake.json", metrics=["ssim", "mae"])
    assert (report["n_real"], report["n_fake"], report["n_pairs"]) == (3, 3, 2)
    assert report["extractor"] is None and set(report["metrics"]) == {"ssim", "mae"}
    with pytest.raises(InputError, match="two folders of images or two datalist"):
        evaluate(real_folder, tmp_path / "fake.json", metrics=["ssim"])


def test_evaluate_rejects_bad_input(tmp_path, real_folder):
    from synthmr.metrics.evaluate import evaluate

    with pytest.raises(InputError, match="unknown metric.*'ssmi'.*ms_ssim_diversity"):
        evaluate(real_folder, real_folder, metrics=["ssim", "ssmi"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=f"{empty}.*no NIfTI"):
        evaluate(real_folder, empty)
    other = write_set(tmp_path / "other", {"unrelated.nii.gz": blob_volume(5), "more.nii.gz": blob_volume(6)})
    with pytest.raises(InputError, match="ssim compare paired images"):
        evaluate(real_folder, other, metrics=["ssim"])
    # The real extractor registry refuses to run without the weights file and names it.
    with pytest.raises(InputError, match="pt_inception-2015-12-05-6726825d.pth"):
        evaluate(real_folder, other, metrics=["fid"], extractor="inception")


def test_select_checkpoint_ranks_reports_by_same(tmp_path, real_folder, tiny_extractor):
    from synthmr.metrics import select_checkpoint
    from synthmr.metrics.evaluate import evaluate

    good = noisy_copy(real_folder, tmp_path / "epoch_20", noise=2.0)
    bad = noisy_copy(real_folder, tmp_path / "epoch_10", noise=30.0)
    paths = []
    for folder in (bad, good):
        paths.append(tmp_path / f"{folder.name}.json")
        evaluate(real_folder, folder, out=paths[-1])
    ranking = select_checkpoint(paths)
    assert [name for name, _ in ranking] == [str(paths[1]), str(paths[0])]
    reports = [json.loads(path.read_text()) for path in paths]
    named = select_checkpoint(reports, names=["epoch_10", "epoch_20"], groups={"pixels": ["mse", "mae"]})
    assert named[0][0] == "epoch_20" and named[0][1] == 0.0 and named[1][1] == 1.0
    reports[0]["extractor"] = "inception (pt_inception-2015-12-05-6726825d.pth, sha256 6726825d)"
    with pytest.raises(InputError, match="different feature extractors"):
        select_checkpoint(reports, names=["epoch_10", "epoch_20"])
