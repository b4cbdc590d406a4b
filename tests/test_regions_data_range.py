"""region_metrics on a shared scale: SSIM and PSNR use the real image's actual range, not the clipping bound."""

from __future__ import annotations

import numpy as np
import pytest

from synthmr.io import Volume, write_image
from synthmr.metrics import regions
from synthmr.metrics.image import paired_metrics


def write(path, array):
    return str(write_image(Volume(array.astype(np.float32), (1.0, 1.0), (0.0, 0.0), np.eye(2)), path))


@pytest.fixture
def case(tmp_path):
    """A real image, its slightly noisy copy, and a reference image that puts the real one on [0, ~1]."""
    rng = np.random.default_rng(0)
    real = 100 + 50 * np.sin(np.arange(32)[:, None] / 4.0) * np.cos(np.arange(32)[None, :] / 5.0)
    noisy = real + rng.normal(0, 5.0, real.shape)
    item = {"case_id": "c0", "post": write(tmp_path / "post.nii.gz", real), "pre": write(tmp_path / "pre.nii.gz", real)}
    return item, write(tmp_path / "noisy.nii.gz", noisy)


def shared(item, path):
    return regions.region_metrics([item], [path], "post", ["image"], shared_scale="pre")["image"]


def test_ssim_on_the_shared_scale_uses_the_real_images_range(case):
    item, noisy = case
    result = shared(item, noisy)
    low, high = np.percentile(regions.read_image(item["pre"]).array, (0.5, 99.5))
    real_scaled, fake_scaled = regions._shared_scaled(item["post"], low, high), regions._shared_scaled(noisy, low, high)
    actual_range = float(real_scaled.max() - real_scaled.min())
    assert 0.9 < actual_range < 1.2  # the reference's robust range, plus its 1 % tails
    expected = paired_metrics(fake_scaled, real_scaled, data_range=actual_range)
    headroom = paired_metrics(fake_scaled, real_scaled, data_range=regions.SHARED_SCALE_HEADROOM)
    assert result["ssim"]["mean"] == pytest.approx(expected["ssim"])
    assert result["psnr"]["mean"] == pytest.approx(expected["psnr"])
    # The clipping bound as data range made SSIM's constants 9x too large and the value too high.
    assert result["ssim"]["mean"] < headroom["ssim"] - 0.02


def test_the_value_does_not_depend_on_the_headroom_constant(case, monkeypatch):
    item, noisy = case
    before = shared(item, noisy)
    monkeypatch.setattr(regions, "SHARED_SCALE_HEADROOM", 6.0)  # nothing here is clipped by either bound
    after = shared(item, noisy)
    assert after["ssim"]["mean"] == pytest.approx(before["ssim"]["mean"])
    assert after["psnr"]["mean"] == pytest.approx(before["psnr"]["mean"])


def test_a_real_image_constant_on_the_shared_scale_is_compared_on_the_references_range():
    assert regions.shared_data_range(np.full((4, 4), 0.7)) == 1.0
    assert regions.shared_data_range(np.array([[0.2, 1.7]])) == pytest.approx(1.5)
