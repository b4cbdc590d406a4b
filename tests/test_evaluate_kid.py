"""evaluate() reports KID with its interval and FID only where both sets are large enough for it; one feature
extraction per set serves FID, KID and 1-NN accuracy; tables show KID's interval and mark a biased FID."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from synthmr.errors import InputError
from synthmr.io import Volume, write_image
from synthmr.metrics.evaluate import evaluate, format_table, select_checkpoint


class CountingFeatures(nn.Module):
    """Mean and spread of each image (2 features, or more with repeats); counts the images it sees."""

    def __init__(self, repeats: int = 1):
        super().__init__()
        self.repeats = repeats
        self.images_seen = 0
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, images):
        self.images_seen += len(images)
        flat = images.flatten(1) * self.scale
        columns = [flat.mean(1, keepdim=True), flat.std(1, keepdim=True)]
        return torch.cat(columns * self.repeats, 1)


def write_folder(folder, images):
    folder.mkdir()
    for index, image in enumerate(images):
        write_image(Volume(image.astype(np.float32), (1.0, 1.0), (0.0, 0.0), np.eye(2)), folder / f"c{index}.nii.gz")
    return folder


def textured(rng, n, contrast):
    """2D images whose spread after per-image scaling depends on ``contrast`` (few bright spots vs texture)."""
    images = []
    for _ in range(n):
        image = rng.uniform(0, 1, (24, 24)) * contrast
        image[rng.integers(0, 24, 3), rng.integers(0, 24, 3)] = 10.0
        images.append(image)
    return images


@pytest.fixture
def sets(tmp_path):
    rng = np.random.default_rng(0)
    real = write_folder(tmp_path / "real", textured(rng, 8, 1.0))
    alike = write_folder(tmp_path / "alike", textured(rng, 8, 1.0))
    unlike = write_folder(tmp_path / "unlike", textured(rng, 8, 0.05))
    return real, alike, unlike


def test_default_metrics_report_kid_and_leave_out_fid_of_too_few_slices(sets):
    real, alike, unlike = sets
    features = CountingFeatures(repeats=4)  # 8 features: 8 slices per set are fewer than 2 x 8
    report = evaluate(real, unlike, extractor=features)
    assert "kid" in report["metrics"] and "fid" not in report["metrics"]
    assert "8 slices < 2 x 8 features" in report["details"]["fid_left_out"]
    kid = report["details"]["kid"]
    assert kid["kid"] == report["metrics"]["kid"] and kid["feature_dim"] == 8
    assert (kid["n_real"], kid["n_fake"], kid["n_bootstrap"]) == (8, 8, 1000)
    low, high = kid["interval"]
    assert 0 < low <= report["metrics"]["kid"] <= high
    table = format_table(report)
    assert f"95 % interval [{low:.4g}, {high:.4g}]" in table
    # every set went through the extractor once, although KID and 1-NN accuracy both use its features
    assert features.images_seen == 16
    assert report["metrics"]["nn_accuracy"] > 0.9
    alike_report = evaluate(real, alike, extractor=CountingFeatures(repeats=4))
    assert alike_report["details"]["kid"]["interval"][0] < 0 < alike_report["details"]["kid"]["interval"][1]


def test_fid_asked_for_by_name_is_computed_at_any_size_and_marked(sets):
    real, _, unlike = sets
    report = evaluate(real, unlike, metrics=["fid", "kid"], extractor=CountingFeatures(repeats=4))
    assert report["metrics"]["fid"] > 0
    assert report["details"]["fid"]["reliable"] is False and report["details"]["fid"]["feature_dim"] == 8
    assert "fid_left_out" not in report["details"]
    row = next(line for line in format_table(report).splitlines() if line.startswith("fid"))
    assert row.endswith("(n = 8 < 2 x 8 features: biased; see kid)")


def test_default_metrics_report_fid_where_both_sets_are_large_enough(sets):
    real, _, unlike = sets
    report = evaluate(real, unlike, extractor=CountingFeatures(repeats=2))  # 4 features: 8 slices = 2 x 4
    assert report["details"]["fid"]["reliable"] is True and report["metrics"]["fid"] > 0
    assert "fid_left_out" not in report["details"]
    row = next(line for line in format_table(report).splitlines() if line.startswith("fid"))
    assert "biased" not in row


def test_feature_metrics_need_two_slices_per_set(tmp_path):
    rng = np.random.default_rng(1)
    one = write_folder(tmp_path / "one", textured(rng, 1, 1.0))
    two = write_folder(tmp_path / "two", textured(rng, 2, 1.0))
    with pytest.raises(InputError, match="at least 2 slices per set; the real images gave 1"):
        evaluate(one, two, metrics=["kid"], extractor=CountingFeatures())


def test_select_checkpoint_ranks_by_kid_lower_is_better(sets):
    real, alike, unlike = sets
    reports = [evaluate(real, folder, metrics=["kid"], extractor=CountingFeatures()) for folder in (unlike, alike)]
    ranking = select_checkpoint(reports, names=["unlike", "alike"])
    assert ranking == [("alike", 0.0), ("unlike", 1.0)]


def test_quality_table_carries_kid_with_its_interval(tmp_path):
    from synthmr.methods.breast_dce_pre2post import format_quality_table, quality_report

    rng = np.random.default_rng(2)
    real_images, alike, unlike = textured(rng, 6, 1.0), textured(rng, 6, 1.0), textured(rng, 6, 0.05)
    real = []
    for index, image in enumerate(real_images):
        path = write_folder(tmp_path / f"real{index}", [image]) / "c0.nii.gz"
        real.append({"case_id": f"c{index}", "img": str(path)})
    candidates = {
        name: [str(write_folder(tmp_path / f"{name}{i}", [image]) / "c0.nii.gz") for i, image in enumerate(images)]
        for name, images in (("unlike", unlike), ("alike", alike))
    }
    report = quality_report(real, candidates, "img", metrics=["mae", "kid"], extractor=CountingFeatures())
    kid = report["candidates"]["unlike"]["global"]["details"]["kid"]
    low, high = kid["interval"]
    table = format_quality_table(report)
    assert f"{kid['kid']:.4f} [{low:.4f}, {high:.4f}]" in table
    assert [name for name, _ in report["same"]] == ["alike", "unlike"]
