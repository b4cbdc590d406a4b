"""The held-out evaluation of bundle liver_mmhcc_mask2mri: FID with its bootstrap interval, tumour contrast per
phase, the quality report of the method against its baselines and the bundle's evaluate.yaml.

Tiny on purpose: three phantom cases (seeds in the tests' range 210000-400000), the shipped domain extractor (fast on
the CPU), few bootstrap resamples; untrained generators are not needed (the candidates are files)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from monai.bundle import ConfigParser

from synthmr.errors import InputError
from synthmr.io import Volume, read_image, write_image
from synthmr.metrics.fid import frechet_distance, frechet_distance_with_interval
from synthmr.methods import liver_mmhcc_mask2mri as method
from synthmr.metrics.regions import contrast_errors, region_contrast

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "liver_mmhcc_mask2mri"
SEQUENCES = ("t1fs_arterial", "t1fs_portal", "t2")


# ---------------------------------------------------------------------------------------------- FID's interval


def test_fid_interval_contains_the_point_value_and_narrows_with_more_samples():
    rng = np.random.default_rng(0)
    widths = []
    for n in (60, 600):
        a = rng.normal(size=(n, 4))
        b = rng.normal(size=(n, 4)) + 0.5
        result = frechet_distance_with_interval(a, b, n_bootstrap=200, seed=1)
        low, high = result["interval"]
        assert np.isfinite([low, high]).all()
        assert low <= result["fid"] <= high
        assert result["fid"] == pytest.approx(frechet_distance(a, b), rel=1e-12)
        assert (result["n_a"], result["n_b"], result["n_bootstrap"]) == (n, n, 200)
        # the raw percentile interval sits higher by the resampling's own bias, which is reported
        assert result["percentile_interval"][0] - low == pytest.approx(result["bootstrap_bias"], abs=1e-9)
        widths.append(high - low)
    assert widths[1] < widths[0]


def test_fid_of_identical_sets_is_zero_with_an_interval_near_zero():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(400, 4))
    same = frechet_distance_with_interval(a, a.copy(), n_bootstrap=300, seed=0)
    shifted = frechet_distance_with_interval(a, rng.normal(size=(400, 4)) + 1.0, n_bootstrap=300, seed=0)
    assert same["fid"] == pytest.approx(0.0, abs=1e-9)
    assert same["interval"][0] == 0.0
    assert same["interval"][1] < 0.05 * shifted["fid"]
    assert shifted["interval"][0] > same["interval"][1]  # the intervals tell the two apart


def test_fid_interval_in_the_joint_span_equals_the_full_space_and_checks_its_arguments():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(10, 64)), rng.normal(size=(12, 64)) + 0.2  # 22 rows < 64 features: projected
    result = frechet_distance_with_interval(a, b, n_bootstrap=20, seed=5)
    draws = []
    generator = np.random.default_rng(5)
    for _ in range(20):
        draws.append(frechet_distance(a[generator.integers(0, 10, 10)], b[generator.integers(0, 12, 12)]))
    assert result["percentile_interval"] == pytest.approx(list(np.percentile(draws, [2.5, 97.5])), rel=1e-8)
    none = frechet_distance_with_interval(a, b, n_bootstrap=0)
    assert none["interval"] is None and none["fid"] == result["fid"]
    with pytest.raises(InputError, match="n_bootstrap"):
        frechet_distance_with_interval(a, b, n_bootstrap=-1)
    with pytest.raises(InputError, match="feature sizes differ"):
        frechet_distance_with_interval(a, b[:, :8])


def test_evaluate_reports_fids_interval_and_its_table_shows_it(tmp_path):
    from feature_stubs import MomentFeatures

    from synthmr.metrics.evaluate import evaluate, format_table

    rng = np.random.default_rng(4)
    for name, contrast in (("real", 1.0), ("fake", 0.2)):
        (tmp_path / name).mkdir()
        for index in range(6):
            image = (rng.uniform(0, 1, (16, 16)) * contrast).astype(np.float32)
            image[rng.integers(0, 16, 3), rng.integers(0, 16, 3)] = 5.0
            write_image(Volume(image, (1.0, 1.0), (0.0, 0.0), np.eye(2)), tmp_path / name / f"c{index}.nii.gz")
    report = evaluate(tmp_path / "real", tmp_path / "fake", metrics=["fid"], extractor=MomentFeatures())
    detail = report["details"]["fid"]
    low, high = detail["interval"]
    assert low <= report["metrics"]["fid"] == detail["fid"] <= high
    assert detail["n_bootstrap"] == 1000 and detail["reliable"] is False
    row = next(line for line in format_table(report).splitlines() if line.startswith("fid"))
    assert f"95 % interval [{low:.4g}, {high:.4g}]" in row and row.endswith("biased; see kid)")


# ---------------------------------------------------------------------------------------------- tumour contrast


def _disc_case(tumour_value: float, liver_value: float = 100.0):
    image = np.full((32, 32), 10.0)
    yy, xx = np.mgrid[:32, :32]
    liver = (yy - 16) ** 2 + (xx - 16) ** 2 < 14**2
    tumour = (yy - 14) ** 2 + (xx - 18) ** 2 < 5**2
    image[liver] = liver_value
    image[tumour] = tumour_value
    return image, tumour, liver & ~tumour


def test_region_contrast_is_the_ratio_of_means_and_ignores_the_scale():
    image, tumour, reference = _disc_case(200.0)
    assert region_contrast(image, tumour, reference) == pytest.approx(2.0)
    assert region_contrast(7.5 * image, tumour, reference) == pytest.approx(2.0)
    washout, _, _ = _disc_case(40.0)
    assert region_contrast(washout, tumour, reference) == pytest.approx(0.4)


def test_region_contrast_names_an_empty_region():
    image, tumour, reference = _disc_case(200.0)
    with pytest.raises(InputError, match="tumour mask is empty"):
        region_contrast(image, np.zeros_like(tumour), reference, "tumour", "liver")
    with pytest.raises(InputError, match="liver mask is empty"):
        region_contrast(image, tumour, np.zeros_like(reference), "tumour", "liver")
    with pytest.raises(InputError, match="case 1, real image: region mask is empty"):
        contrast_errors([image] * 2, [image] * 2, [tumour, np.zeros_like(tumour)], [reference] * 2, n_bootstrap=0)


def test_contrast_errors_are_zero_for_identical_images_and_measure_a_known_change():
    cases = [_disc_case(value) for value in (150.0, 200.0, 250.0, 300.0)]
    images = [image for image, _, _ in cases]
    regions = [tumour for _, tumour, _ in cases]
    references = [reference for _, _, reference in cases]
    same = contrast_errors(images, [image.copy() for image in images], regions, references, n_bootstrap=100)
    assert same["errors"] == [0.0] * 4 and same["mean_error"] == 0.0 and same["interval"] == [0.0, 0.0]
    assert same["real"] == pytest.approx([1.5, 2.0, 2.5, 3.0])
    # the synthetic tumours enhance 50 more units than the real ones: contrast 0.5 higher in every case, except
    # the last, drawn with the liver's intensity (contrast 1 instead of 3)
    changed = [_disc_case(value + 50.0)[0] for value in (150.0, 200.0, 250.0)] + [_disc_case(100.0)[0]]
    result = contrast_errors(images, changed, regions, references, n_bootstrap=500, seed=3)
    assert result["errors"] == pytest.approx([0.5, 0.5, 0.5, 2.0])
    assert result["mean_error"] == pytest.approx(0.875)
    assert result["fake_mean"] == pytest.approx((2.0 + 2.5 + 3.0 + 1.0) / 4)
    low, high = result["interval"]
    assert 0.5 <= low < result["mean_error"] < high <= 2.0


def test_contrast_errors_needs_one_of_everything_per_case():
    image, tumour, reference = _disc_case(200.0)
    with pytest.raises(InputError, match="one real image, synthetic image"):
        contrast_errors([image, image], [image], [tumour] * 2, [reference] * 2)


# ---------------------------------------------------------------------------------------------- quality report


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    """Three phantom cases and candidates written from them: the real files themselves, the cases shuffled
    (every case gets another case's images: same distribution, wrong pairs and tumours) and noise."""
    from synthmr.phantom.dataset import phantom_datalist

    root = tmp_path_factory.mktemp("liver_heldout")
    real = phantom_datalist("liver", root / "cases", n=3, seed=210100, dims=2, size=128, spacing=3.0, subtype="mmhcc")
    rng = np.random.default_rng(0)
    noise = []
    for item in real:
        written = {}
        for sequence in SEQUENCES:
            volume = read_image(item[sequence])
            array = rng.uniform(1.0, 2.0, volume.array.shape).astype(np.float32) * float(volume.array.mean())
            path = root / "noise" / item["case_id"] / f"{sequence}.nii.gz"
            written[sequence] = write_image(volume.with_array(array), path)
        noise.append(written)
    candidates = {
        "real_copies": [{s: item[s] for s in SEQUENCES} for item in real],
        "shuffled": [{s: real[(index + 1) % 3][s] for s in SEQUENCES} for index in range(3)],
        "noise": noise,
    }
    return root, real, candidates


@pytest.fixture(scope="module")
def report(heldout):
    from synthmr.methods.liver_mmhcc_mask2mri import quality_report

    root, real, candidates = heldout
    weights = root / "weights.pt"
    weights.write_bytes(b"not really weights")
    return quality_report(
        real, candidates, n_bootstrap=50, out=root / "report.json", weights={"real_copies": weights}
    )


def test_real_copies_score_perfectly_and_beat_shuffled_and_noise(report):
    copies, shuffled, noise = (report["candidates"][name] for name in ("real_copies", "shuffled", "noise"))
    for sequence in SEQUENCES:
        contrast = copies["contrast"][sequence]
        assert contrast["mean_error"] == 0.0 and contrast["errors"] == [0.0] * 3
        assert contrast["real"] == contrast["fake"]
        for other in (shuffled, noise):
            assert other["contrast"][sequence]["mean_error"] > 0.05
            assert other["contrast"][sequence]["real_mean"] == pytest.approx(contrast["real_mean"])
    for which in ("pooled", *SEQUENCES):
        assert copies["paired"][which]["ssim"]["mean"] == pytest.approx(1.0, abs=1e-6)
        assert copies["paired"][which]["mae"]["mean"] == pytest.approx(0.0, abs=1e-9)
        assert copies["distribution"][which]["fid"]["value"] == pytest.approx(0.0, abs=1e-6)
        for other in (shuffled, noise):
            assert other["paired"][which]["ssim"]["mean"] < 0.9
            assert other["paired"][which]["mae"]["mean"] > 0.01
        assert noise["distribution"][which]["fid"]["value"] > copies["distribution"][which]["fid"]["interval"][1]
        assert noise["distribution"][which]["kid"]["value"] > copies["distribution"][which]["kid"]["interval"][1]
    # the arterial tumours of these cases enhance (or not) as the phantom drew them: the real contrasts are kept
    assert copies["contrast"]["t1fs_portal"]["real_mean"] < 1.0 < copies["contrast"]["t2"]["real_mean"]


def test_report_records_its_setting_and_marks_the_fid_of_small_sets(report, heldout):
    root, real, _ = heldout
    assert report["n_cases"] == 3 and report["case_ids"] == [item["case_id"] for item in real]
    assert report["seeds"] == [210100, 210101, 210102]
    assert report["extractor"].startswith("domain") and report["feature_dim"] == 256
    assert report["candidates"]["real_copies"]["weights"] == {
        "path": str(root / "weights.pt"),
        "sha256": hashlib.sha256(b"not really weights").hexdigest(),
    }
    assert report["candidates"]["noise"]["weights"] is None
    pooled = report["candidates"]["noise"]["distribution"]["pooled"]
    assert (pooled["n_real"], pooled["n_fake"]) == (9, 9) and pooled["fid"]["reliable"] is False
    assert report["candidates"]["noise"]["contrast"]["t1fs_arterial"]["feature"] == "arterial hyperenhancement"
    assert json.loads((root / "report.json").read_text(encoding="utf-8")) == report


def test_report_refuses_to_overwrite_and_checks_its_candidates(report, heldout):
    from synthmr.methods.liver_mmhcc_mask2mri import quality_report

    root, real, candidates = heldout
    before = (root / "report.json").read_bytes()
    with pytest.raises(InputError, match="already exists"):
        quality_report(real, candidates, n_bootstrap=5, out=root / "report.json")
    assert (root / "report.json").read_bytes() == before
    with pytest.raises(InputError, match="'shuffled' has 2 cases for 3 real cases"):
        quality_report(real, {"shuffled": candidates["shuffled"][:2]}, n_bootstrap=5)
    with pytest.raises(InputError, match="no synthetic \\['t2'\\]"):
        quality_report(real, {"partial": [{"t1fs_arterial": "a", "t1fs_portal": "p"}] * 3}, n_bootstrap=5)


def test_quality_table_shows_every_candidate_and_metric(report):
    from synthmr.methods.liver_mmhcc_mask2mri import format_quality_table

    table = format_quality_table(report)
    header = next(line for line in table.splitlines() if line.startswith("metric"))
    assert header.split() == ["metric", "real_copies", "shuffled", "noise"]
    for label in ("FID pooled", "KID pooled", "KID t2", "1-NN accuracy pooled", "SSIM t1fs_portal", "MAE pooled",
                  "tumour contrast error t1fs_arterial (arterial hyperenhancement)",
                  "tumour contrast error t1fs_portal (portal washout)"):
        assert any(line.startswith(label) for line in table.splitlines()), label
    fid = report["candidates"]["noise"]["distribution"]["pooled"]["fid"]
    assert f"{fid['value']:.4g} [{fid['interval'][0]:.4g}, {fid['interval'][1]:.4g}] *" in table


# ---------------------------------------------------------------------------------------------- evaluate.yaml


def test_evaluate_config_shares_network_def_and_uses_the_heldout_seeds():
    configs = BUNDLE / "configs"
    evaluate = ConfigParser.load_config_file(str(configs / "evaluate.yaml"))
    inference = ConfigParser.load_config_file(str(configs / "inference.yaml"))
    assert evaluate["network_def"] == inference["network_def"]
    # 200000-200199 judged release 0.1.0, whose intensity scale was changed after it: 0.2.0 gets fresh seeds.
    assert "seed=200200" in evaluate["test_datalist"] and "'/heldout_200200'" in evaluate["test_datalist"]
    assert "n=@n_test_cases" in evaluate["test_datalist"] and evaluate["n_test_cases"] == 200
    assert evaluate["candidates"] == ["mask_guided", "pix2pix_mask_only", "cyclegan"]


def test_evaluate_config_builds_one_network_per_candidate_and_baselines_without_edges(tmp_path):
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "evaluate.yaml"))
    # no held-out case: the default would simulate 200 phantom cases into the bundle's data folder
    parser.update(
        {"bundle_root": str(BUNDLE), "output_dir": str(tmp_path), "device": "$torch.device('cpu')", "test_datalist": []}
    )
    networks = [parser.get_parsed_content(key) for key in ("network", "mask_only_network", "cyclegan_network")]
    assert len({id(network) for network in networks}) == 3
    synthesizers = parser.get_parsed_content("synthesizers")
    assert list(synthesizers) == ["mask_guided", "pix2pix_mask_only", "cyclegan"]
    edges = {name: type(s.conditions.transforms.transforms[0]).__name__ for name, s in synthesizers.items()}
    assert edges == {"mask_guided": "CannyEdgesd", "pix2pix_mask_only": "NoEdgesd", "cyclegan": "NoEdgesd"}
    assert [s.network for s in synthesizers.values()] == networks
    assert {Path(s.output_dir).name for s in synthesizers.values()} == set(synthesizers)
    scaling = method.INTENSITY_SCALING
    assert all((s.headroom, s.low_over) == (scaling["headroom"], scaling["low_over"]) for s in synthesizers.values())
