"""Bundle breast_dce_pre2post: what the method itself promises. The bundle contract, which every bundle passes, is
tests/test_bundle_contract.py."""

import json

import numpy as np
import pytest

from bundle_contract import BundleFolder
from grids import oblique_volume
from synthmr.errors import InputError
from synthmr.io import read_image, write_image

BUNDLE = BundleFolder("breast_dce_pre2post")


def test_the_sample_output_is_in_the_input_units(tmp_path):
    written = BUNDLE.inference_runs(tmp_path)
    sample = read_image(BUNDLE.root / "sample" / "t1_pre.nii.gz")
    synthetic = read_image(written["t1_post1"])
    assert synthetic.array.dtype == np.float32 and np.isfinite(synthetic.array).all()
    # The output is in the input's units: its bright end is of the order of the pre-contrast image's.
    assert 0.3 < np.percentile(synthetic.array, 99.5) / np.percentile(sample.array, 99.5) < 5


def test_inference_keeps_an_oblique_anisotropic_grid(tmp_path):
    pre = read_image(BUNDLE.root / "sample" / "t1_pre.nii.gz").array[30:94, 30:94, 4:7]
    volume = oblique_volume(np.ascontiguousarray(pre))
    path = write_image(volume, tmp_path / "case7_pre.nii.gz")
    written = BUNDLE.inference_runs(tmp_path, input={"t1_pre": str(path), "case_id": "case7"})
    assert read_image(written["t1_post1"]).same_grid(volume)


def test_existing_output_is_kept_unless_overwrite(tmp_path):
    BUNDLE.inference_runs(tmp_path)
    output = tmp_path / "output" / "sample" / "t1_post1.nii.gz"
    output.write_bytes(b"mine")
    with pytest.raises(RuntimeError) as raised:  # MONAI wraps what a config expression raises
        BUNDLE.inference_runs(tmp_path)
    cause = raised.value.__cause__
    assert isinstance(cause, InputError) and "already exists" in str(cause)
    assert output.read_bytes() == b"mine"
    BUNDLE.inference_runs(tmp_path, overwrite=True)
    assert read_image(output).array.shape == (128, 128, 12)


def test_training_runs_one_tiny_epoch_and_selects_by_same(tmp_path):
    BUNDLE.training_runs_one_epoch(tmp_path)  # tiny_train.yaml's run; the SAMe-best weights load as network_def
    selection = json.loads((tmp_path / "train" / "validation" / "selection.json").read_text())
    assert selection["best"] == "epoch_0001"
    assert set(selection["metrics"]) == {"ssim", "mse", "mae", "psnr", "fid"}
    report = json.loads((tmp_path / "train" / "validation" / "epoch_0001" / "report.json").read_text())
    assert report["extractor"].startswith("domain")


# ---------------------------------------------------------------------------------------------- synthmr run / demo


def run_cli(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "synthmr", *map(str, args)], capture_output=True, text=True)


def test_synthmr_run_writes_the_output_on_the_input_grid_with_progress(tmp_path):
    from synthmr.bundle.runner import parse_progress_line

    sample = BUNDLE.root / "sample" / "t1_pre.nii.gz"
    result = run_cli("run", "breast_dce_pre2post", "--input", f"t1_pre={sample}", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    events = [parse_progress_line(line) for line in result.stdout.splitlines()]
    events = [event for event in events if event]
    assert events[-1] == {"type": "result", "outputs": {"t1_post1": str(tmp_path / "out" / "t1_post1.nii.gz")}}
    fractions = [event["fraction"] for event in events if event["type"] == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert len([f for f in fractions if 0.2 < f < 0.9]) >= 1  # the bundle reports its slice batches
    assert read_image(tmp_path / "out" / "t1_post1.nii.gz").same_grid(read_image(sample))


@pytest.mark.parametrize(
    "args, words",
    [
        (["run", "breast_dce_pre2post"], ["t1_pre"]),  # the required input is missing
        (["run", "breast_dce_pre2post", "--input", "t2=x.nii.gz"], ["t2"]),
        (["run", "no_such_bundle", "--input", "t1_pre=x.nii.gz"], ["no_such_bundle", "breast_dce_pre2post"]),
    ],
)
def test_synthmr_run_bad_input_is_one_line_and_writes_nothing(tmp_path, args, words):
    result = run_cli(*args, "--out", tmp_path / "out")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("synthmr: error:") and "Traceback" not in result.stderr
    assert all(word in lines[0] for word in words), lines[0]
    assert list(tmp_path.iterdir()) == []


def test_synthmr_demo_writes_inputs_outputs_and_a_png(tmp_path):
    from synthmr.demo import run_demo

    png = run_demo("breast_dce_pre2post", tmp_path / "demo")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pre = read_image(tmp_path / "demo" / "inputs" / "t1_pre.nii.gz")
    assert read_image(tmp_path / "demo" / "synthetic" / "t1_post1.nii.gz").same_grid(pre)
    with pytest.raises(Exception, match="already exists"):
        run_demo("breast_dce_pre2post", tmp_path / "demo")


def test_shipped_weights_beat_the_identity_baseline_inside_lesions_and_fgt(tmp_path):
    """The bundle's acceptance, on held-out phantom cases other than the model card's: on each case's pre-contrast
    scale (where DCE enhancement is read) the synthetic first post-contrast phase is closer to the real one than the
    pre-contrast image itself, by MAE and by SSIM, inside the lesions and inside the fibroglandular tissue."""
    from synthmr.phantom.dataset import phantom_datalist

    cases = phantom_datalist("breast", tmp_path / "cases", n=12, seed=210000, dims=2, size=128, n_lesions=[1, 3])
    parser = BUNDLE.parser(
        "evaluate.yaml", output_dir=str(tmp_path / "evaluate"), test_datalist=cases, metrics=["mae"], same_weights=None
    )
    parser.get_parsed_content("initialize")  # the config's own step: the shipped weights into the network
    report = parser.get_parsed_content("report")
    for region in ("lesion", "fgt"):
        model, identity = (report["candidates"][c]["regions_shared_scale"][region] for c in ("model", "identity"))
        assert model["n_cases"] == identity["n_cases"] == 12
        assert model["mae"]["mean"] < identity["mae"]["mean"], (region, model["mae"], identity["mae"])
        assert model["ssim"]["mean"] > identity["ssim"]["mean"], (region, model["ssim"], identity["ssim"])


def test_generate_pairs_each_source_with_its_synthetic_post_contrast_phase(tmp_path):
    from synthmr.bundle.generate import run_bundle_generate
    from synthmr.errors import InputError
    from synthmr.io import load_datalist, read_image, save_datalist
    from synthmr.phantom.dataset import phantom_datalist

    sources = phantom_datalist("breast", tmp_path / "sources", n=2, seed=210710, dims=2, size=64, n_lesions=[1, 2])
    datalist = tmp_path / "sources.json"
    save_datalist({"training": sources}, datalist)
    items = run_bundle_generate("breast_dce_pre2post", 2, datalist, tmp_path / "set", device="cpu")
    for item, source in zip(items, load_datalist(datalist)):
        assert item["source_case"] == source["case_id"]
        pre = read_image(source["t1_pre"])
        assert read_image(item["t1_pre"]).array.tobytes() == pre.array.tobytes()
        post = read_image(item["t1_post1"])
        assert post.same_grid(pre) and post.array.std() > 0
        assert read_image(item["lesion"]).array.any()
    with pytest.raises(InputError, match="--n 3 is more than the 2 source cases"):
        run_bundle_generate("breast_dce_pre2post", 3, datalist, tmp_path / "more", device="cpu")
    assert not (tmp_path / "more").exists()
