"""breast_dce_pre2post's quality_report: candidates against real images, globally and inside region masks (the
shared region_metrics), ranked by SAMe."""

import json

import numpy as np
import pytest

from synthmr.errors import InputError
from synthmr.io import Volume, write_image
from synthmr.methods.breast_dce_pre2post import format_quality_table, quality_report


def write(path, array):
    return str(write_image(Volume(array.astype(np.float32), (1.0, 1.0), (0.0, 0.0), np.eye(2)), path))


@pytest.fixture
def cases(tmp_path):
    rng = np.random.default_rng(0)
    real, exact, noisy = [], [], []
    for i in range(3):
        image = rng.uniform(10, 100, (32, 32))
        region = np.zeros((32, 32), np.uint8)
        if i < 2:  # the third case has no lesion: it must not count for the region
            region[10:20, 10:20] = 1
        real.append({"case_id": f"c{i}", "img": write(tmp_path / f"real{i}.nii.gz", image),
                     "lesion": write(tmp_path / f"lesion{i}.nii.gz", region)})
        exact.append(write(tmp_path / f"exact{i}.nii.gz", image))
        damaged = image.copy()
        damaged[region > 0] = rng.uniform(10, 100, int(region.sum()))  # wrong only inside the lesion
        noisy.append(write(tmp_path / f"noisy{i}.nii.gz", damaged))
    return real, exact, noisy


def test_regions_separate_a_candidate_wrong_only_inside_them(cases, tmp_path):
    real, exact, noisy = cases
    out = tmp_path / "report.json"
    report = quality_report(real, {"noisy": noisy, "exact": exact}, "img", regions=["lesion"],
                            metrics=["ssim", "mae", "mse"], out=out)
    assert json.loads(out.read_text()) == report
    exact_lesion = report["candidates"]["exact"]["regions"]["lesion"]
    noisy_lesion = report["candidates"]["noisy"]["regions"]["lesion"]
    assert exact_lesion["n_cases"] == noisy_lesion["n_cases"] == 2
    assert exact_lesion["mae"]["mean"] == 0 and exact_lesion["ssim"]["mean"] == pytest.approx(1)
    assert noisy_lesion["mae"]["mean"] > 0.1
    assert report["same"][0] == ["exact", 0.0] and report["same"][1][0] == "noisy"
    table = format_quality_table(report)
    assert "lesion" in table and "SAMe" in table


def test_bad_candidates_are_refused(cases, tmp_path):
    real, exact, _ = cases
    with pytest.raises(InputError, match="2 images for 3 real cases"):
        quality_report(real, {"short": exact[:2]}, "img", metrics=["mae"])
    with pytest.raises(InputError, match="lacks"):
        quality_report(real, {"exact": exact}, "img", regions=["fgt"], metrics=["mae"])
    with pytest.raises(InputError, match="no candidate"):
        quality_report(real, {}, "img")


def test_shared_scale_sees_missing_enhancement_that_per_image_scaling_hides(tmp_path):
    rng = np.random.default_rng(1)
    real, identity = [], []
    for i in range(2):
        pre = rng.uniform(50, 100, (32, 32))
        pre[:4] = 400.0  # a bright structure that does not enhance sets the pre-contrast range...
        post = pre.copy()
        post[:4] = 1000.0  # ...and enhances strongly: it alone sets the post-contrast range
        post[10:20, 10:20] *= 2.0  # an enhancing lesion
        lesion = np.zeros((32, 32), np.uint8)
        lesion[10:20, 10:20] = 1
        real.append({"case_id": f"c{i}", "post": write(tmp_path / f"post{i}.nii.gz", post),
                     "pre": write(tmp_path / f"pre{i}.nii.gz", pre),
                     "lesion": write(tmp_path / f"lesion{i}.nii.gz", lesion)})
        identity.append(real[-1]["pre"])
    report = quality_report(real, {"identity": identity, "exact": [r["post"] for r in real]}, "post",
                            regions=["lesion"], metrics=["mae"], shared_scale="pre")
    shared = report["candidates"]["identity"]["regions_shared_scale"]
    # On the pre-contrast scale the identity misses the lesion's doubling: MAE = mean(pre)/range, about 0.2.
    assert shared["lesion"]["mae"]["mean"] > 0.15
    assert report["candidates"]["exact"]["regions_shared_scale"]["lesion"]["mae"]["mean"] == 0
    assert set(shared) == {"image", "lesion"}
    with pytest.raises(InputError, match="lacks"):
        quality_report(real, {"identity": identity}, "post", metrics=["mae"], shared_scale="t2")
