"""Bundle liver_mmhcc_mask2mri at inference: stage 1 on whole cases (InferenceConditions) and the issue's lesion
edit: a tumour moved with `synthmr lesion` and synthesised with `synthmr run` moves in the synthetic images."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from synthmr.errors import InputError
from synthmr.io import read_image
from synthmr.methods import liver_mmhcc_mask2mri as method
from synthmr.phantom.dataset import phantom_datalist

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "liver_mmhcc_mask2mri"
PHANTOM = {"dims": 2, "size": 128, "spacing": 3.0, "subtype": "mmhcc"}


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    (item,) = phantom_datalist("liver", tmp_path_factory.mktemp("liver") / "cases", n=1, seed=210503, **PHANTOM)
    return item


def arrays_of(item, keys):
    return {key: read_image(item[key]).array for key in keys}


def test_conditions_of_a_2d_case_and_of_a_volume_slice_by_slice(case):
    arrays = arrays_of(case, [*method.SEQUENCES, "liver", "tumor"])
    conditions = method.InferenceConditions()(arrays)
    tumour = arrays["tumor"] != 0
    assert conditions.shape == (3, *tumour.shape) and conditions.dtype == np.float32
    for channel in conditions:
        assert set(np.unique(channel)) == {-1.0, 0.0, 1.0}
        assert (channel[tumour] == 1).all() and (channel[~tumour] < 1).all()
    volume = {key: np.stack([array, np.flip(array, 0)], axis=-1) for key, array in arrays.items()}
    stacked = method.InferenceConditions()(volume)
    assert stacked.shape == (3, *tumour.shape, 2)
    np.testing.assert_array_equal(stacked[..., 0], conditions)
    assert (stacked[..., 1][:, np.flip(tumour, 0)] == 1).all()


def test_the_source_tumour_loses_its_outline_and_the_tumour_is_clipped_to_the_liver(case):
    arrays = arrays_of(case, [*method.SEQUENCES, "liver", "tumor"])
    source, liver = arrays["tumor"] != 0, arrays["liver"] != 0
    moved = np.roll(source, 15, axis=0)  # 45 mm to the patient's left: partly out of the liver
    assert (moved & ~liver).any()
    conditions = method.InferenceConditions()({**arrays, "tumor": moved, "source_tumor": source})
    drawn = moved & liver
    old_only = source & ~method._dilate(drawn, method.EDGE_MARGIN)
    for channel in conditions:
        np.testing.assert_array_equal(channel == 1, drawn)  # clipped to the liver
        assert (channel[old_only] == -1).all()  # no edge and no tumour where the tumour was
    # Without the source tumour the old tumour's outline stays (the images are taken to show the given tumour).
    kept = method.InferenceConditions()({**arrays, "tumor": moved})
    assert any((channel[old_only] == 0).any() for channel in kept)


def test_a_tumour_outside_the_liver_and_a_missing_mask_are_refused(case):
    arrays = arrays_of(case, [*method.SEQUENCES, "liver", "tumor"])
    outside = (arrays["liver"] == 0) & (np.arange(arrays["liver"].shape[0])[:, None] < 10)
    with pytest.raises(InputError, match="lies entirely outside the liver mask 'liver'"):
        method.InferenceConditions()({**arrays, "tumor": outside})
    with pytest.raises(InputError, match=r"the case lacks \['liver'\]"):
        method.InferenceConditions()({key: value for key, value in arrays.items() if key != "liver"})
    with pytest.raises(InputError, match=r"'tumor' has shape \(64, 64\)"):
        method.InferenceConditions()({**arrays, "tumor": arrays["tumor"][:64, :64]})


def test_without_edge_guidance_the_conditions_are_the_tumour_mask_alone(case):
    arrays = arrays_of(case, [*method.SEQUENCES, "liver", "tumor"])
    conditions = method.InferenceConditions(edge_guidance=False)(arrays)
    expected = np.where(arrays["tumor"] != 0, 1.0, -1.0)
    for channel in conditions:
        np.testing.assert_array_equal(channel, expected)


def synthmr(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synthmr", *map(str, args)], capture_output=True, text=True)


def test_moving_the_tumour_moves_the_hyperenhancing_region_of_the_synthetic_arterial_image(case, tmp_path):
    moved_path = tmp_path / "moved_tumor.nii.gz"
    edit = synthmr("lesion", "--lesion", case["tumor"], "--organ", case["liver"], "--translate=45,0",
                   "--unit", "mm", "--out", moved_path)
    assert edit.returncode == 0, edit.stderr
    inputs = [f"{key}={case[key]}" for key in (*method.SEQUENCES, "liver")]
    inputs += [f"tumor={moved_path}", f"source_tumor={case['tumor']}"]
    run = synthmr("run", BUNDLE, *(word for value in inputs for word in ("--input", value)), "--out",
                  tmp_path / "out", "--device", "cpu")
    assert run.returncode == 0, run.stderr
    arterial = read_image(tmp_path / "out" / "t1fs_arterial.nii.gz")
    reference = read_image(case["t1fs_arterial"])
    assert arterial.same_grid(reference)
    for sequence in method.SEQUENCES[1:]:
        assert read_image(tmp_path / "out" / f"{sequence}.nii.gz").same_grid(reference)

    liver = read_image(case["liver"]).array
    old, moved = read_image(case["tumor"]).array != 0, read_image(moved_path).array != 0
    assert moved.sum() > 200 and (old & ~moved).sum() > 200  # the edit really moved most of the tumour
    overlap = method.moved_tumour_overlap(arterial.array, liver, old, moved)
    print(f"moved tumour: {overlap}")
    assert overlap["dice_moved"] > 0.3 and overlap["dice_moved"] > 2.5 * overlap["dice_old_place"]
    # Where the tumour was (and no longer is) the synthetic liver is parenchyma: mostly not hyperenhancing.
    assert overlap["old_place_hyperenhancing"] < 0.25


def test_the_overlap_measure_on_known_images():
    liver = np.zeros((20, 20), bool)
    liver[2:18, 2:18] = True
    old, moved = np.zeros_like(liver), np.zeros_like(liver)
    old[4:8, 4:8], moved[10:14, 10:14] = True, True
    arterial = np.where(moved, 2.0, 1.0)
    assert method.moved_tumour_overlap(arterial, liver, old, moved) == {
        "dice_moved": 1.0, "dice_old_place": 0.0, "old_place_hyperenhancing": 0.0}
    arterial[old] = 2.0  # the old place still bright: half of the bright region is in the wrong place
    overlap = method.moved_tumour_overlap(arterial, liver, old, moved)
    assert overlap["dice_moved"] == pytest.approx(2 / 3) and overlap["old_place_hyperenhancing"] == 1.0
    with pytest.raises(InputError, match="needs liver parenchyma, a moved tumour"):
        method.moved_tumour_overlap(arterial, liver, old, old)


def test_inference_scales_each_sequence_as_training_did(tmp_path):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.yaml"))
    parser.update({"bundle_root": str(BUNDLE), "output_dir": str(tmp_path), "device": "$torch.device('cpu')",
                   "dataset": []})
    synthesizer = parser.get_parsed_content("evaluator")
    assert {"headroom": synthesizer.headroom, "low_over": synthesizer.low_over} == method.INTENSITY_SCALING
