"""Liver multiphase phantom: contract, reproducibility, anatomy, and the MMHCC enhancement pattern."""

import itertools
import json

import numpy as np
import pytest
from scipy import ndimage

from synthmr.errors import InputError
from synthmr.phantom import PhantomCase, physics
from synthmr.phantom import liver as liver_module
from synthmr.phantom.liver import LiverPhantom

SEEDS = range(6)


@pytest.fixture(scope="module")
def phantom():
    # 96 x 4 mm keeps the 384 mm field of view of the default at a fraction of the cost.
    return LiverPhantom(size=96, spacing=4.0)


@pytest.fixture(scope="module")
def cases(phantom):
    return [phantom(seed) for seed in SEEDS]


@pytest.fixture(scope="module")
def fractions(phantom):
    return [phantom.tissue_fractions(seed) for seed in SEEDS]


def _region_mean(image, region):
    assert region.sum() >= 5, "region too small to measure"
    return float(image[region].mean())


def test_every_series_and_mask_on_one_grid(cases):
    for seed, case in zip(SEEDS, cases):
        assert isinstance(case, PhantomCase)
        assert set(case.images) == set(LiverPhantom.sequences)
        assert set(case.masks) == set(LiverPhantom.masks) | set(LiverPhantom.extra_masks)
        for image in case.images.values():
            assert image.shape == (96, 96) and image.dtype == np.float32 and np.isfinite(image).all()
        for mask in case.masks.values():
            assert mask.shape == (96, 96) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
        assert case.spacing == (4.0, 4.0)
        np.testing.assert_allclose(case.origin, (-190.0, -190.0))
        np.testing.assert_array_equal(case.direction, np.eye(2))
        liver, tumor, necrosis = (case.masks[k].astype(bool) for k in ("liver", "tumor", "necrosis"))
        assert liver.sum() > 200
        assert not (tumor & ~liver).any(), "tumour must lie inside the liver"
        assert not (necrosis & ~tumor).any(), "necrosis must lie inside the tumour"
        assert case.meta["n_tumors"] in (1, 2) and tumor.sum() > 0
        assert case.meta["seed"] == seed and case.meta["organ"] == "liver"
        assert len(case.meta["tumors"]) == case.meta["n_tumors"]
        assert set(case.meta["phase_times_min"]) == {"t1fs_arterial", "t1fs_portal"}
        json.dumps(case.meta)


def test_same_seed_same_case_and_different_seeds_differ(phantom, cases):
    again = phantom(SEEDS[2])
    for key in LiverPhantom.sequences:
        np.testing.assert_array_equal(again.images[key], cases[2].images[key])
    for key in again.masks:
        np.testing.assert_array_equal(again.masks[key], cases[2].masks[key])
    assert again.meta == cases[2].meta
    assert not np.array_equal(cases[2].images["t2"], cases[3].images["t2"])
    assert not np.array_equal(cases[2].masks["liver"], cases[3].masks["liver"])


def test_axial_anatomy_is_oriented_in_lps(fractions):
    """Liver on the patient's right (small x), spleen on the left, spine posterior and central."""
    for tissue in fractions:
        assert all(f.shape == (96, 96) and f.dtype == np.float32 for f in tissue.values())
        liver_x, liver_y = ndimage.center_of_mass(tissue["liver"])
        spleen_x, _ = ndimage.center_of_mass(tissue["spleen"])
        spine_x, spine_y = ndimage.center_of_mass(tissue["marrow_fat"])
        aorta_x, aorta_y = ndimage.center_of_mass(tissue["aorta"])
        body = np.flatnonzero(sum(tissue.values())[int(round(spine_x))] > 0.5)  # the column through the spine
        assert liver_x < 48 < spleen_x
        assert abs(spine_x - 47.5) < 3, "spine in the midline"
        assert spine_y > (body[0] + body[-1]) / 2, "spine in the posterior half of the body"
        assert aorta_x > spine_x and aorta_y < spine_y, "aorta lies anterior-left of the spine"
        assert tissue["kidney_cortex"][:48].sum() > 0 and tissue["kidney_cortex"][48:].sum() > 0
        total = sum(tissue.values())
        assert total.max() <= 1.0 + 1e-5 and total[0, 0] == 0.0, "fractions of a voxel sum to <= 1; air outside"


def test_mmhcc_hyperenhances_on_arterial_and_washes_out_on_portal(cases):
    for case in cases:
        tumor, necrosis, liver = (case.masks[k].astype(bool) for k in ("tumor", "necrosis", "liver"))
        # One pixel away from every border, so partial volume does not decide the comparison.
        viable = ndimage.binary_erosion(tumor & ~necrosis)
        normal = ndimage.binary_erosion(liver & ~ndimage.binary_dilation(tumor))
        arterial, portal = case.images["t1fs_arterial"], case.images["t1fs_portal"]
        assert _region_mean(arterial, viable) > 1.05 * _region_mean(arterial, normal)
        assert _region_mean(portal, viable) < 0.95 * _region_mean(portal, normal)


def test_necrosis_does_not_enhance_and_is_bright_on_t2(cases):
    checked = 0
    for case in cases:
        necrosis = ndimage.binary_erosion(case.masks["necrosis"].astype(bool))
        viable = ndimage.binary_erosion(case.masks["tumor"].astype(bool) & ~case.masks["necrosis"].astype(bool))
        if necrosis.sum() < 5 or viable.sum() < 5:
            continue
        checked += 1
        for key in ("t1fs_arterial", "t1fs_portal"):
            assert _region_mean(case.images[key], necrosis) < _region_mean(case.images[key], viable)
        assert _region_mean(case.images["t2"], necrosis) > _region_mean(case.images["t2"], viable)
    assert checked >= 3


def test_tissue_contrasts(cases, fractions):
    for case, tissue in zip(cases, fractions):
        liver = tissue["liver"] > 0.9
        fat = tissue["subcutaneous_fat"] > 0.9
        for key in ("t1fs_arterial", "t1fs_portal"):
            # Unsuppressed fat would be ~2x brighter than liver on this gradient echo.
            assert _region_mean(case.images[key], fat) < 0.5 * _region_mean(case.images[key], liver)
        assert _region_mean(case.images["t1fs_arterial"], tissue["aorta"] > 0.9) > 1.3 * _region_mean(
            case.images["t1fs_arterial"], liver
        )
        assert _region_mean(case.images["t2"], tissue["spleen"] > 0.9) > 1.5 * _region_mean(case.images["t2"], liver)
        # Flow void: the aorta is dark on the spin echo although blood has a long T2.
        t2 = case.images["t2"]
        assert _region_mean(t2, tissue["aorta"] > 0.9) < _region_mean(t2, tissue["spleen"] > 0.9)


def test_hcc_ranges_keep_the_pattern_for_every_draw():
    """Noiseless signal at every corner of the drawn parameter ranges: viable HCC vs normal liver."""

    def signal(key, tissue, concentration):
        sequence = liver_module.SEQUENCES[key]
        return float(physics.render(sequence, {"x": np.ones(1)}, {"x": tissue}, {"x": concentration})[0])

    ranges = liver_module.KINETIC_RANGES
    times = {"t1fs_arterial": liver_module.ARTERIAL_TIME_MIN, "t1fs_portal": liver_module.PORTAL_TIME_MIN}
    liver_signals = {key: [] for key in times}
    for delay, dispersion, fraction, flow, volume in itertools.product(
        ranges["portal_delay_min"],
        ranges["portal_dispersion_min"],
        ranges["liver_arterial_fraction"],
        ranges["liver_flow_per_min"],
        ranges["liver_distribution_volume"],
    ):
        curve = liver_module.liver_concentration(
            liver_module.portal_venous_input(delay, dispersion), fraction, flow, volume
        )
        for key, t in times.items():
            liver_signals[key].append(signal(key, liver_module.TISSUES["liver"], physics.sample(curve, t)))
    relaxation = liver_module.HCC_RELAXATION
    for flow, volume in itertools.product(ranges["hcc_arterial_flow_per_min"], ranges["hcc_distribution_volume"]):
        curve = liver_module.hcc_concentration(flow, volume)
        for pd, t1, t2 in itertools.product(relaxation["pd"], relaxation["t1"], relaxation["t2"]):
            hcc = physics.Tissue(pd, t1, t2)
            arterial = signal("t1fs_arterial", hcc, physics.sample(curve, times["t1fs_arterial"]))
            portal = signal("t1fs_portal", hcc, physics.sample(curve, times["t1fs_portal"]))
            assert arterial > 1.05 * max(liver_signals["t1fs_arterial"])
            assert portal < 0.95 * min(liver_signals["t1fs_portal"])


def test_healthy_livers_have_no_tumour_and_keep_the_anatomy():
    healthy = LiverPhantom(size=64, spacing=6.0, tumor_probability=0.0)
    diseased = LiverPhantom(size=64, spacing=6.0, tumor_probability=1.0)
    for seed in (0, 1):
        case = healthy(seed)
        assert case.masks["tumor"].sum() == 0 and case.masks["necrosis"].sum() == 0
        assert case.meta["n_tumors"] == 0 and case.meta["tumors"] == []
        np.testing.assert_array_equal(case.masks["liver"], diseased(seed).masks["liver"])


def test_n_tumors_is_respected():
    phantom = LiverPhantom(size=64, spacing=6.0, n_tumors=(2, 2))
    assert all(phantom(seed).meta["n_tumors"] == 2 for seed in (0, 1))


def test_three_dimensional_stack_changes_along_z():
    phantom = LiverPhantom(dims=3, size=48, spacing=8.0, slices=10, slice_spacing=15.0)
    case = phantom(0)
    for array in (*case.images.values(), *case.masks.values()):
        assert array.shape == (48, 48, 10)
    assert case.spacing == (8.0, 8.0, 15.0)
    np.testing.assert_array_equal(case.direction, np.eye(3))
    liver, tumor = case.masks["liver"].astype(bool), case.masks["tumor"].astype(bool)
    assert not (tumor & ~liver).any() and tumor.any()
    area = liver.sum(axis=(0, 1))
    assert area.max() > 1.5 * area.min(), "liver cross-section should change from slice to slice"
    assert len(case.meta["tumors"][0]["centre_mm"]) == 3


@pytest.mark.parametrize(
    "arguments, name",
    [
        ({"dims": 4}, "dims"),
        ({"size": 0}, "size"),
        ({"size": 64.5}, "size"),
        ({"size": 100000}, r"size must be an integer in \[16, 1024\]"),
        ({"dims": 3, "size": 1024, "slices": 64}, "size x size x slices = 1024 x 1024 x 64"),
        ({"spacing": float("inf")}, "spacing must be a finite number"),
        ({"spacing": -1.0}, "spacing"),
        ({"slices": 1}, "slices"),
        ({"slice_spacing": 0.0}, "slice_spacing"),
        ({"tumor_probability": 1.5}, "tumor_probability"),
        ({"n_tumors": (2, 1)}, "n_tumors"),
        ({"n_tumors": (0, 1)}, "n_tumors"),
        ({"n_tumors": 2}, "n_tumors"),
        ({"arterial_time_min": 1.5}, "arterial_time_min"),
        ({"portal_time_min": 20.0}, "portal_time_min"),
        ({"snr": 0.0}, "snr"),
    ],
)
def test_bad_arguments_are_named(arguments, name):
    with pytest.raises(InputError, match=name):
        LiverPhantom(**arguments)


@pytest.mark.parametrize("seed", [-1, 1.5, "3"])
def test_bad_seed_is_named(seed):
    with pytest.raises(InputError, match="seed"):
        LiverPhantom(size=32, spacing=12.0)(seed)
