"""synthmr.evaluation.benefit: does synthetic data raise Dice? Arms, pairing, statistics, resuming, bad input.

The data are 32x32 images of one bright disc (label 1) on noise; a helpful synthesizer writes more such discs, a
useless one pure noise with random label maps. Networks are tiny and train for a few dozen steps, so every run
takes about a second on one CPU thread.
"""

import json
import shutil
import math
from dataclasses import replace

import numpy as np
import pytest

from synthmr.errors import InputError
from synthmr.evaluation import SegmentationSettings, bootstrap_interval, real_subset, run_benefit, synthetic_count
from synthmr.evaluation import benefit
from synthmr.io import Volume, read_image, write_image

LABELS = {"disc": 1}
TINY = SegmentationSettings(iterations=30, batch_size=4, roi_size=32, filters=(8, 16, 32), learning_rate=0.01)
GRID = {"spacing": (1.0, 1.0), "origin": (0.0, 0.0), "direction": np.eye(2)}


def write_case(folder, name, image, label) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "case_id": name,
        "image": str(write_image(Volume(image.astype(np.float32), **GRID), folder / f"{name}.nii.gz")),
        "label": str(write_image(Volume(label.astype(np.uint8), **GRID), folder / f"{name}_label.nii.gz")),
    }


def disc_case(rng, folder, name, size=32, noise=0.5, mislabelled=False) -> dict:
    """A disc of random centre, radius and contrast on Gaussian noise, and its label map (if ``mislabelled``,
    everything but the disc)."""
    rows, columns = np.mgrid[:size, :size]
    centre_row, centre_column = rng.uniform(9, size - 9, 2)
    radius = rng.uniform(4, 8)
    label = (rows - centre_row) ** 2 + (columns - centre_column) ** 2 <= radius**2
    image = label * rng.uniform(0.6, 1.4) + rng.normal(0, noise, (size, size))
    return write_case(folder, name, image, ~label if mislabelled else label)


def helpful(subset, n, out_dir, seed):
    """More correct training data: new disc images."""
    rng = np.random.default_rng(1000 + seed)
    return [disc_case(rng, out_dir, f"helpful{i}") for i in range(n)]


def useless(subset, n, out_dir, seed):
    """Pure noise with label maps unrelated to it."""
    rng = np.random.default_rng(2000 + seed)
    return [write_case(out_dir, f"noise{i}", rng.normal(0, 1, (32, 32)), rng.random((32, 32)) < 0.2)
            for i in range(n)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("benefit_data")
    rng = np.random.default_rng(0)
    real = [disc_case(rng, root / "real", f"real{i}") for i in range(6)]
    test = {"site_a": [disc_case(rng, root / "test_a", f"a{i}") for i in range(8)],
            "site_b": [disc_case(rng, root / "test_b", f"b{i}", noise=0.3) for i in range(6)]}
    return real, test


def read_run(work_dir, name):
    return json.loads((work_dir / "runs" / f"{name}.json").read_text())


def test_end_to_end_report_plot_and_progress(data, tmp_path):
    real, test = data
    calls = []
    report = run_benefit(real, test, helpful, LABELS, tmp_path, n_real=(2, 4), shares=(0, 1), seeds=(0, 1),
                         settings=TINY, device="cpu", progress=lambda *call: calls.append(call))
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert (tmp_path / "benefit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [call[:2] for call in calls] == [(i, 8) for i in range(1, 9)]
    assert sorted(path.stem for path in (tmp_path / "runs").glob("*.json")) == sorted(
        f"{n}_{share}_{seed}" for n in (2, 4) for share in (0, 1) for seed in (0, 1))
    assert report["settings"]["segmentation"]["iterations"] == 30 and report["settings"]["shares"] == [0.0, 1.0]

    for domain, items in test.items():
        result = report["domains"][domain]
        assert result["n_cases"] == len(items)
        assert [(arm["n_real"], arm["share"], arm["n_synthetic"]) for arm in result["arms"]] == [
            (2, 0.0, 0), (2, 1.0, 2), (4, 0.0, 0), (4, 1.0, 4)]
        for arm in result["arms"]:
            dice, hd95 = arm["labels"]["disc"]["dice"], arm["labels"]["disc"]["hd95_mm"]
            assert 0 <= dice["low"] <= dice["mean"] <= dice["high"] <= 1 and dice["n_cases"] == len(items)
            assert hd95["low"] <= hd95["mean"] <= hd95["high"]
            assert hd95["n_cases"] + hd95["n_excluded"] == len(items)
            assert dice["mean"] > 0.5  # the discs are easy: even two real images teach them
        assert [(c["n_real"], c["share"]) for c in result["comparisons"]] == [(2, 1.0), (4, 1.0)]
        for comparison in result["comparisons"]:
            score = comparison["labels"]["disc"]
            difference = score["dice_difference"]
            assert difference["low"] <= difference["mean"] <= difference["high"]
            assert 0 < score["p_value"] <= 1 and isinstance(score["significant_gain"], bool)
            assert score["significant_gain"] == (difference["low"] > 0 and score["p_value"] < 0.05)
            assert score["significant_loss"] == (difference["high"] < 0 and score["p_value"] < 0.05)
            # Per seed: the mean over cases of that seed's two runs' difference; their mean is the per-case mean.
            dice_of = {(share, seed): read_run(tmp_path, f"{comparison['n_real']}_{share}_{seed}")["cases"][domain]
                       for share in (0, 1) for seed in (0, 1)}
            per_seed = [np.mean([dice_of[1, seed][item["case_id"]]["disc"]["dice"]
                                 - dice_of[0, seed][item["case_id"]]["disc"]["dice"] for item in items])
                        for seed in (0, 1)]
            assert score["per_seed_difference"] == pytest.approx(per_seed)
            assert np.mean(per_seed) == pytest.approx(difference["mean"])
            assert score["seeds_agreeing"] == sum(np.sign(d) == np.sign(difference["mean"]) for d in per_seed)

    # The reported means are the per-case seed averages of the run files.
    arm = report["domains"]["site_a"]["arms"][0]
    runs = [read_run(tmp_path, f"2_0_{seed}")["cases"]["site_a"] for seed in (0, 1)]
    expected = np.mean([[run[case["case_id"]]["disc"]["dice"] for run in runs] for case in test["site_a"]])
    assert arm["labels"]["disc"]["dice"]["mean"] == pytest.approx(expected)


def test_useless_synthesizer_shows_no_significant_gain(data, tmp_path):
    real, test = data
    report = run_benefit(real, test, useless, LABELS, tmp_path, n_real=(2, 4), shares=(0, 1), seeds=(0, 1),
                         settings=TINY, device="cpu")
    comparisons = [c for result in report["domains"].values() for c in result["comparisons"]]
    assert len(comparisons) == 4
    assert not any(c["labels"]["disc"]["significant_gain"] for c in comparisons)
    assert all(c["labels"]["disc"]["dice_difference"]["mean"] < 0.02 for c in comparisons)


def harmful(subset, n, out_dir, seed):
    """New disc images labelled everywhere but the disc."""
    rng = np.random.default_rng(3000 + seed)
    return [disc_case(rng, out_dir, f"harmful{i}", mislabelled=True) for i in range(n)]


def test_harmful_synthesizer_shows_a_significant_loss(data, tmp_path):
    real, test = data
    report = run_benefit(real, test, harmful, LABELS, tmp_path, n_real=(2,), shares=(0, 2), seeds=(0,),
                         settings=TINY, device="cpu")
    for result in report["domains"].values():
        (comparison,) = result["comparisons"]
        score = comparison["labels"]["disc"]
        assert score["significant_loss"] and not score["significant_gain"]
        assert score["dice_difference"]["high"] < 0
    assert "significant loss" in benefit.format_report(report)


def test_helpful_synthesizer_raises_dice_of_a_data_starved_model(data, tmp_path):
    real, test = data
    report = run_benefit(real, test, helpful, LABELS, tmp_path, n_real=(1,), shares=(3,), seeds=(0, 1, 2),
                         settings=TINY, device="cpu")
    for result in report["domains"].values():
        (comparison,) = result["comparisons"]
        assert comparison["n_synthetic"] == 3
        assert comparison["labels"]["disc"]["dice_difference"]["mean"] > 0


def test_resume_skips_finished_runs_and_refuses_another_recipe(data, tmp_path, monkeypatch):
    real, test = data
    arguments = dict(n_real=(2,), shares=(0, 0.5), seeds=(0, 1), settings=TINY, device="cpu")
    first = run_benefit(real, test, helpful, LABELS, tmp_path, **arguments)

    trained = []
    original = benefit.train_segmenter

    def counting(*args, **kwargs):
        trained.append(args[4])  # the seed
        return original(*args, **kwargs)

    monkeypatch.setattr(benefit, "train_segmenter", counting)
    assert run_benefit(real, test, helpful, LABELS, tmp_path, **arguments) == first
    assert trained == []

    # An interrupted run (no run file, a half-written synthetic folder) is the only one trained again.
    (tmp_path / "runs" / "2_0.5_1.json").unlink()
    (tmp_path / "synthetic" / "2_0.5_1" / "partial.nii.gz").write_bytes(b"half")
    assert run_benefit(real, test, helpful, LABELS, tmp_path, **arguments) == first
    assert trained == [1]
    assert not (tmp_path / "synthetic" / "2_0.5_1" / "partial.nii.gz").exists()

    other = replace(TINY, iterations=31)
    with pytest.raises(InputError, match=r"runs/2_0_0\.json.*settings\.iterations: 30 then, 31 now"):
        run_benefit(real, test, helpful, LABELS, tmp_path, **{**arguments, "settings": other})
    fewer_cases = {"site_a": test["site_a"][:4], "site_b": test["site_b"]}
    with pytest.raises(InputError, match=r"runs/2_0_0\.json.*test_case_ids"):
        run_benefit(real, fewer_cases, helpful, LABELS, tmp_path, **arguments)


def test_runs_are_reproducible(data, tmp_path):
    real, test = data
    for folder in ("one", "two"):
        run_benefit(real, test, None, LABELS, tmp_path / folder, n_real=(2,), shares=(0,), seeds=(3,),
                    settings=TINY, device="cpu")
    assert read_run(tmp_path / "one", "2_0_3")["cases"] == read_run(tmp_path / "two", "2_0_3")["cases"]


def test_arms_are_paired_and_subsets_nested(data, tmp_path):
    real, test = data
    seen = {}

    def recording(subset, n, out_dir, seed):
        seen[out_dir.name] = [item["case_id"] for item in subset]
        return helpful(subset, n, out_dir, seed)

    run_benefit(real, test, recording, LABELS, tmp_path, n_real=(2, 4), shares=(0, 0.5, 1), seeds=(0, 1),
                settings=replace(TINY, iterations=2), device="cpu")
    for seed in (0, 1):
        for n in (2, 4):
            ids = [read_run(tmp_path, f"{n}_{share}_{seed}")["recipe"]["real_case_ids"] for share in (0, 0.5, 1)]
            assert ids[0] == ids[1] == ids[2] == seen[f"{n}_0.5_{seed}"] == seen[f"{n}_1_{seed}"]
            assert len(ids[0]) == n
            synthetic = read_run(tmp_path, f"{n}_1_{seed}")["synthetic_case_ids"]
            assert len(synthetic) == n and read_run(tmp_path, f"{n}_0_{seed}")["synthetic_case_ids"] == []
        small, large = (read_run(tmp_path, f"{n}_0_{seed}")["recipe"]["real_case_ids"] for n in (2, 4))
        assert set(small) <= set(large)
    assert seen["4_1_0"] != seen["4_1_1"]  # each seed draws its own subset
    # The draw does not depend on the order the pool is given in.
    assert real_subset(real[::-1], 4, 1) == real_subset(real, 4, 1)


def test_share_counts_round_half_up():
    assert [synthetic_count(n, share) for n, share in [(4, 0), (4, 0.5), (3, 0.5), (1, 0.5), (5, 1), (2, 2.5)]] == [
        0, 2, 2, 1, 5, 5]


def test_bootstrap_interval_brackets_the_mean_and_is_fixed():
    values = np.random.default_rng(0).normal(0.7, 0.1, 30)
    low, high = bootstrap_interval(values, 2000, seed=0)
    assert low < values.mean() < high and high - low == pytest.approx(2 * 1.96 * values.std() / math.sqrt(30), rel=0.2)
    assert bootstrap_interval(values, 2000, seed=0) == (low, high)
    assert bootstrap_interval([0.5], 2000) is None


def test_case_metrics_edge_cases_and_millimetres():
    empty = np.zeros((1, 20, 20), np.int16)
    square = empty.copy()
    square[0, 5:10, 5:10] = 1
    shifted = empty.copy()
    shifted[0, 8:13, 5:10] = 1
    names = ["disc"]
    assert benefit.case_metrics(empty, empty, names, (1.0, 1.0))["disc"]["dice"] == 1
    assert math.isnan(benefit.case_metrics(empty, empty, names, (1.0, 1.0))["disc"]["hd95"])
    for predicted, truth in ((square, empty), (empty, square)):
        scores = benefit.case_metrics(predicted, truth, names, (1.0, 1.0))["disc"]
        assert scores["dice"] == 0 and math.isnan(scores["hd95"])
    one_mm, two_mm = (benefit.case_metrics(shifted, square, names, (step, 1.0))["disc"] for step in (1.0, 2.0))
    assert one_mm["dice"] == pytest.approx(2 * 10 / 50) and one_mm["hd95"] == pytest.approx(3)
    assert two_mm["hd95"] == pytest.approx(6)  # shifted 3 voxels along an axis of 2 mm voxels


def test_case_metrics_score_regions_as_unions_of_classes():
    """BraTS regions: the network's classes necrosis (1), edema (2), enhancing (3) scored as whole tumour, tumour
    core and enhancing tumour; a prediction that swaps necrosis and enhancing is perfect on the whole tumour and
    the core, wrong on the enhancing tumour."""
    truth = np.zeros((1, 12, 12), np.int16)
    truth[0, 2:10, 2:10] = 2
    truth[0, 4:8, 4:8] = 3
    truth[0, 5:7, 5:7] = 1
    swapped = np.where(truth == 1, 3, np.where(truth == 3, 1, truth))
    regions = {"whole tumour": ["necrosis", "edema", "enhancing"], "tumour core": ["necrosis", "enhancing"],
               "enhancing tumour": ["enhancing"]}
    scores = benefit.case_metrics(swapped, truth, ["necrosis", "edema", "enhancing"], (1.0, 1.0), regions)
    assert set(scores) == set(regions)
    assert scores["whole tumour"]["dice"] == 1 and scores["tumour core"]["dice"] == 1
    assert scores["enhancing tumour"]["dice"] == pytest.approx(2 * 0 / (16 - 4 + 4))
    with pytest.raises(InputError, match="regions: 'core' unites"):
        benefit._check_regions({"core": ["necrosis", "cavity"]}, {"necrosis": [1], "edema": [2]})


@pytest.fixture
def wrong_label_case(tmp_path):
    label = np.zeros((32, 32))
    label[10:20, 10:20] = 2
    return write_case(tmp_path / "bad", "bad", np.random.default_rng(0).normal(size=(32, 32)), label)


def short_synthesizer(subset, n, out_dir, seed):
    return helpful(subset, n, out_dir, seed)[:-1]


def keyless_synthesizer(subset, n, out_dir, seed):
    return [{"case_id": item["case_id"], "image": item["image"]} for item in helpful(subset, n, out_dir, seed)]


@pytest.mark.parametrize("change, message", [
    (lambda real, test, bad: {"real": []}, r"^real: the pool of real training items is empty"),
    (lambda real, test, bad: {"n_real": (7,)}, r"^n_real: 7 is larger than the pool of real items \(6\)"),
    (lambda real, test, bad: {"n_real": (0,)}, r"^n_real: 0 is not a positive integer"),
    (lambda real, test, bad: {"shares": (0, -0.5)}, r"^shares: -0.5 is negative"),
    (lambda real, test, bad: {"synthesize": None}, r"^synthesize: none given, but shares \[1.0\]"),
    (lambda real, test, bad: {"test": {}}, r"^test: no test domain given"),
    (lambda real, test, bad: {"test": {**test, "site_c": []}}, r"^test\['site_c'\]: the test domain has no items"),
    (lambda real, test, bad: {"real": [*real, {"case_id": "x", "image": real[0]["image"]}]},
     r"^real\[6\]: lacks 'label'"),
    (lambda real, test, bad: {"real": [*real, dict(real[0])]}, r"^real: case_id 'real0' appears more than once"),
    (lambda real, test, bad: {"test": {"site_a": [*test["site_a"], bad]}},
     r"bad_label\.nii\.gz: label map holds value\(s\) \[2\] that labels \(\{'disc': \[1\]\}\) does not name"),
    (lambda real, test, bad: {"labels": {"disc": 0}}, r"^labels: 'disc' has value 0"),
    (lambda real, test, bad: {"synthesize": short_synthesizer},
     r"^synthesize \(run 1_1_0\): returned 0 items; asked for 1"),
    (lambda real, test, bad: {"synthesize": keyless_synthesizer}, r"^synthesize \(run 1_1_0\)\[0\]: lacks 'label'"),
    (lambda real, test, bad: {"settings": SegmentationSettings(roi_size=30)}, r"^settings\.roi_size must give 2 sides"),
    (lambda real, test, bad: {"spatial_dims": 3},
     r"real\d\.nii\.gz: the image is 2D, shape \(32, 32\); spatial_dims is 3"),
])
def test_bad_input_is_named(data, tmp_path, wrong_label_case, change, message):
    real, test = data
    arguments = dict(real=real, test=test, synthesize=helpful, labels=LABELS, work_dir=tmp_path / "work",
                     n_real=(1,), shares=(0, 1), seeds=(0,), device="cpu",
                     settings=replace(TINY, iterations=1))
    arguments.update(change(real, test, wrong_label_case))
    with pytest.raises(InputError, match=message):
        run_benefit(**arguments)


def test_a_label_may_cover_several_values(data, tmp_path):
    """A map that numbers its lesions 1..k trains one "disc" class when the label lists every value."""
    real, test = data
    numbered = []
    for item in real[:2]:
        label = read_image(item["label"])
        values = label.array.astype(np.uint8) * 2  # the disc is lesion number 2
        numbered.append({**item, "case_id": item["case_id"] + "_2",
                         "label": str(write_image(label.with_array(values), tmp_path / f"{item['case_id']}_2.nii.gz"))})
    report = run_benefit(numbered, {"site_a": test["site_a"]}, None, {"disc": [1, 2]}, tmp_path / "work", n_real=(2,),
                         shares=(0,), seeds=(0,), settings=TINY, device="cpu")
    assert report["settings"]["labels"] == {"disc": [1, 2]}
    assert report["domains"]["site_a"]["arms"][0]["labels"]["disc"]["dice"]["mean"] > 0.5
    with pytest.raises(InputError, match=r"labels: two names share one value"):
        run_benefit(numbered, test, None, {"disc": [1, 2], "other": 2}, tmp_path / "w2", n_real=(2,), shares=(0,),
                    seeds=(0,), settings=TINY, device="cpu")
    with pytest.raises(InputError, match=r"labels: 'disc' has value \[\]"):
        run_benefit(numbered, test, None, {"disc": []}, tmp_path / "w3", n_real=(2,), shares=(0,), seeds=(0,),
                    settings=TINY, device="cpu")


def test_background_values_are_neither_a_class_nor_an_error(data, tmp_path):
    """A lesion map's normal-tissue label (1 here, the whole image but the disc) listed as background: the disc
    (2) is the only class, scored and learnt; the run files record the background; a value cannot be both."""
    real, test = data

    def with_tissue(items, folder):
        mapped = []
        for item in items:
            label = read_image(item["label"])
            values = np.where(label.array > 0, 2, 1).astype(np.uint8)
            path = write_image(label.with_array(values), folder / f"{item['case_id']}_tissue.nii.gz")
            mapped.append({**item, "label": str(path)})
        return mapped

    tissue_real, tissue_test = with_tissue(real[:2], tmp_path), with_tissue(test["site_a"], tmp_path)
    report = run_benefit(tissue_real, {"site_a": tissue_test}, None, {"disc": 2}, tmp_path / "work", n_real=(2,),
                         shares=(0,), seeds=(0,), settings=TINY, device="cpu", background=[1])
    assert set(report["domains"]["site_a"]["arms"][0]["labels"]) == {"disc"}
    assert report["domains"]["site_a"]["arms"][0]["labels"]["disc"]["dice"]["mean"] > 0.5
    assert read_run(tmp_path / "work", "2_0_0")["recipe"]["background"] == [1]
    assert "background" not in read_run(tmp_path / "work", "2_0_0")["recipe"]["settings"]
    with pytest.raises(InputError, match=r"label map holds value\(s\) \[1\] that labels"):
        run_benefit(tissue_real, test, None, {"disc": 2}, tmp_path / "w1", n_real=(2,), shares=(0,), seeds=(0,),
                    settings=TINY, device="cpu")
    with pytest.raises(InputError, match=r"background: value\(s\) \[2\] are also label values"):
        run_benefit(real, test, None, {"disc": 2}, tmp_path / "w2", n_real=(2,), shares=(0,), seeds=(0,),
                    settings=TINY, device="cpu", background=[1, 2])


def test_regions_are_what_the_report_scores(data, tmp_path):
    """With regions, run files, report, table and plot are keyed by region; the recipe records them."""
    real, test = data
    regions = {"anything": ["disc"]}
    report = run_benefit(real, {"site_a": test["site_a"]}, None, LABELS, tmp_path, n_real=(2,), shares=(0,),
                         seeds=(0,), settings=TINY, device="cpu", regions=regions)
    assert report["settings"]["regions"] == regions
    assert set(report["domains"]["site_a"]["arms"][0]["labels"]) == {"anything"}
    assert read_run(tmp_path, "2_0_0")["recipe"]["regions"] == regions
    assert "anything on site_a" in benefit.format_report(report)
    with pytest.raises(InputError, match="regions: 'x' unites"):
        run_benefit(real, test, None, LABELS, tmp_path / "w", n_real=(2,), shares=(0,), seeds=(0,), settings=TINY,
                    device="cpu", regions={"x": ["nothing"]})


def test_format_report_names_every_arm_and_verdict(data, tmp_path):
    real, test = data
    report = run_benefit(real, {"site_b": test["site_b"]}, helpful, LABELS, tmp_path, n_real=(2,), shares=(0, 1),
                         seeds=(0,), settings=TINY, device="cpu")
    text = benefit.format_report(report)
    assert "disc on site_b (6 test cases)" in text
    assert len([line for line in text.splitlines() if line.startswith("2 ")]) == 3  # two arms, one comparison
    comparison = report["domains"]["site_b"]["comparisons"][0]["labels"]["disc"]
    verdict = ("significant gain" if comparison["significant_gain"] else
               "significant loss" if comparison["significant_loss"] else "no significant difference")
    assert text.rstrip().splitlines()[-1].endswith(f"{verdict}; {comparison['seeds_agreeing']}/1 seeds agree")


def test_resuming_refuses_another_synthesizer_or_other_images_but_shares_real_only_runs(data, tmp_path):
    real, test = data
    arguments = dict(test={"site_a": test["site_a"]}, labels=LABELS, work_dir=tmp_path, n_real=(2,), shares=(0, 1),
                     seeds=(0,), settings=replace(TINY, iterations=2), device="cpu")
    run_benefit(real, synthesize=helpful, **arguments)
    assert read_run(tmp_path, "2_1_0")["recipe"]["synthesizer"] == {"callable": f"{__name__}.helpful"}
    assert read_run(tmp_path, "2_0_0")["recipe"]["synthesizer"] is None
    with pytest.raises(InputError, match=r"2_1_0\.json: this finished run was made with another recipe \(synthesizer"):
        run_benefit(real, synthesize=useless, **arguments)
    # The same cases with other image files (another image key of the same cases) are another experiment.
    renamed = [{**item, "image": item["image"].replace(".nii.gz", "_copy.nii.gz")} for item in real]
    for item, original in zip(renamed, real):
        shutil.copy(original["image"], item["image"])
    with pytest.raises(InputError, match=r"2_0_0\.json: .*real_images"):
        run_benefit(renamed, synthesize=helpful, **arguments)


def test_an_image_of_several_channels_is_one_multi_channel_input(data, tmp_path):
    """An item's image may be a list of sequences: here noise first and the disc second; the network sees both."""
    real, test = data
    rng = np.random.default_rng(5)

    def two_channels(items, folder):
        stacked = []
        for item in items:
            noise = str(write_image(Volume(rng.normal(0, 1, (32, 32)).astype(np.float32), **GRID),
                                    folder / f"{item['case_id']}_noise.nii.gz"))
            stacked.append({**item, "image": [noise, item["image"]]})
        return stacked

    (tmp_path / "channels").mkdir()
    real2, test2 = two_channels(real, tmp_path / "channels"), two_channels(test["site_a"], tmp_path / "channels")
    report = run_benefit(real2, {"site_a": test2}, None, LABELS, tmp_path / "work", n_real=(4,), shares=(0,),
                         seeds=(0,), settings=TINY, device="cpu")
    assert report["domains"]["site_a"]["arms"][0]["labels"]["disc"]["dice"]["mean"] > 0.5
    recorded = read_run(tmp_path / "work", "4_0_0")["recipe"]["real_images"][0]
    assert recorded.count("+") == 1 and recorded.endswith(".nii.gz") and "_noise" in recorded.split("+")[0]

    with pytest.raises(InputError,
                       match=r"case 'a0' \(site_a\): its image has 1 channel\(s\); the first training case has 2"):
        run_benefit(real2, {"site_a": test["site_a"]}, None, LABELS, tmp_path / "w2", n_real=(2,), shares=(0,),
                    seeds=(0,), settings=replace(TINY, iterations=1), device="cpu")
    small = write_image(Volume(np.zeros((16, 16), np.float32), **GRID), tmp_path / "small.nii.gz")
    wrong = {**real2[0], "case_id": "wrong", "image": [str(small), real2[0]["image"][1]]}
    with pytest.raises(InputError,
                       match=r"small\.nii\.gz: image shape \(16, 16\) differs from its label map's \(32, 32\)"):
        run_benefit([wrong, *real2[1:]], {"site_a": test2}, None, LABELS, tmp_path / "w3", n_real=(5,), shares=(0,),
                    seeds=(0,), settings=replace(TINY, iterations=1), device="cpu")


def test_two_synthesizers_compared_head_to_head_case_by_case(data, tmp_path):
    real, test = data
    arguments = dict(test=test, labels=LABELS, n_real=(1,), shares=(3,), seeds=(0, 1, 2), settings=TINY,
                     device="cpu")
    run_benefit(real, synthesize=helpful, work_dir=tmp_path / "helpful", **arguments)
    shutil.copytree(tmp_path / "helpful" / "runs", tmp_path / "useless" / "runs",
                    ignore=lambda folder, names: [name for name in names if "_3_" in name])  # real-only runs shared
    run_benefit(real, synthesize=useless, work_dir=tmp_path / "useless", **arguments)

    comparison = benefit.compare_synthesizers(tmp_path / "helpful", tmp_path / "useless", (1,), (0, 3), (0, 1, 2))
    reverse = benefit.compare_synthesizers(tmp_path / "useless", tmp_path / "helpful", (1,), (3,), (0, 1, 2))
    assert comparison["synthesizers"]["a"] == {"callable": f"{__name__}.helpful"}
    for domain, items in test.items():
        (arm,) = comparison["domains"][domain]["arms"]  # share 0 is each synthesizer's twin, not compared
        assert (arm["n_real"], arm["share"], arm["n_synthetic"]) == (1, 3.0, 3)
        score = arm["labels"]["disc"]
        difference = score["dice_difference"]
        # Case by case, seed-averaged: the difference of the two runs' files.
        per_case = [
            np.mean([read_run(tmp_path / side, f"1_3_{seed}")["cases"][domain][case["case_id"]]["disc"]["dice"]
                     for seed in (0, 1, 2)])
            for case in items for side in ("helpful", "useless")
        ]
        assert difference["mean"] == pytest.approx(np.mean(per_case[0::2]) - np.mean(per_case[1::2]))
        assert difference["n_cases"] == len(items) and difference["mean"] > 0  # new discs beat noise
        assert score["better"] == ("a" if difference["low"] > 0 and score["p_value"] < 0.05 else None)
        mirrored = reverse["domains"][domain]["arms"][0]["labels"]["disc"]
        assert mirrored["dice_difference"]["mean"] == pytest.approx(-difference["mean"])
        assert mirrored["p_value"] == pytest.approx(score["p_value"])
        assert mirrored["better"] == {"a": "b", None: None}[score["better"]]
        assert np.mean(score["per_seed_difference"]) == pytest.approx(difference["mean"])
        assert mirrored["per_seed_difference"] == pytest.approx([-d for d in score["per_seed_difference"]])
        assert mirrored["seeds_agreeing"] == score["seeds_agreeing"]

    with pytest.raises(InputError, match=r"helpful/runs/2_3_0\.json: no finished run 2_3_0 to compare"):
        benefit.compare_synthesizers(tmp_path / "helpful", tmp_path / "useless", (2,), (3,), (0,))
    # Runs on other real subsets are not paired: refused, naming both files and what differs.
    path = tmp_path / "useless" / "runs" / "1_3_1.json"
    record = json.loads(path.read_text())
    record["recipe"]["real_case_ids"] = ["another"]
    path.write_text(json.dumps(record))
    with pytest.raises(InputError, match=r"1_3_1\.json and .*1_3_1\.json are not paired runs: real_case_ids"):
        benefit.compare_synthesizers(tmp_path / "helpful", tmp_path / "useless", (1,), (3,), (0, 1, 2))
