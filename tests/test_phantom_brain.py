"""The brain phantom: contents, grid, labels, reproducibility, MR contrast, lesions, 2D planes, bad input."""

import json
import math

import numpy as np
import pytest

from synthmr.errors import InputError
from synthmr.phantom import phantom_class
from synthmr.phantom.brain import (
    FLAIR_SEQUENCE,
    TISSUES,
    BrainPhantom,
    _undo_mass_effect,
    brain_template,
    flair_inversion_time,
)

SPACING = 4.0
SEED = 4


@pytest.fixture(scope="module")
def phantom():
    return BrainPhantom(spacing=SPACING)


@pytest.fixture(scope="module")
def case(phantom):
    return phantom(SEED)


@pytest.fixture(scope="module")
def anatomy(phantom):
    return phantom.anatomy(SEED)


@pytest.fixture(scope="module")
def pure(anatomy):
    """Voxels that are almost pure white matter, grey matter and CSF."""
    return {name: anatomy.fractions[name] > 0.9 for name in ("wm", "gm", "csf")}


def median(image, where):
    assert where.sum() >= 5, "too few voxels to compare"
    return float(np.median(image[where]))


def test_registered_under_its_organ():
    assert phantom_class("brain") is BrainPhantom
    assert BrainPhantom.lesion_mask in BrainPhantom.masks


def test_all_sequences_and_masks_on_one_3d_grid(case):
    assert set(case.images) == set(BrainPhantom.sequences)
    assert set(case.masks) == set(BrainPhantom.masks)
    shapes = {a.shape for a in [*case.images.values(), *case.masks.values()]}
    assert len(shapes) == 1 and len(shapes.pop()) == 3
    assert all(a.dtype == np.float32 for a in case.images.values())
    assert all(a.dtype == np.uint8 for a in case.masks.values())
    assert all(np.isfinite(a).all() for a in case.images.values())
    assert case.spacing == (SPACING,) * 3


def test_grid_is_the_resampled_mni_template(case):
    template = brain_template(SPACING)
    assert case.images["t1n"].shape == template.shape
    np.testing.assert_allclose(case.volume("t1n").affine, template.affine, atol=1e-9)
    # MNI space: the tumour centre (LPS in meta) lies inside the grid, and the grid covers the brain with room.
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    centre_ras = lps_to_ras @ case.meta["tumor_center_mm"]
    centre_index = np.linalg.solve(template.affine[:3, :3], centre_ras - template.affine[:3, 3])
    assert np.all(centre_index >= 0) and np.all(centre_index <= np.array(template.shape) - 1)
    assert case.masks["label"][tuple(np.round(centre_index).astype(int))] in (1, 3)


def test_meta_describes_the_draw(case):
    meta = case.meta
    json.dumps(meta)
    assert meta["seed"] == SEED and meta["organ"] == "brain"
    assert meta["tumor"] is True and meta["cavity"] is False
    assert len(meta["tumor_center_mm"]) == 3
    assert all(15.0 * 0.8 <= r <= 30.0 * 1.2 for r in meta["tumor_radii_mm"])
    assert all(0.95 <= s <= 1.05 for s in meta["scale"])


def test_labels_are_brats_and_lesion_map_is_consistent(case):
    label, lesion_map, brain = case.masks["label"], case.masks["lesion_map"], case.masks["brain"]
    assert set(np.unique(label)) == {0, 1, 2, 3}
    assert set(np.unique(lesion_map)) <= {0, 1, 2, 3, 4}
    assert set(np.unique(brain)) == {0, 1}
    assert np.all(lesion_map[(label == 1) | (label == 3)] == 4)
    assert np.all(lesion_map[label == 2] == 2)
    assert np.all((lesion_map >= 1) == (brain == 1))
    assert np.all(label[brain == 0] == 0)
    assert not np.any(lesion_map == 3)  # no cavity unless asked for


def test_labels_follow_the_dominant_tissue_fraction(anatomy):
    fractions = anatomy.fractions
    np.testing.assert_allclose(sum(fractions.values()), anatomy.intracranial, atol=1e-5)
    normal = fractions["wm"] + fractions["gm"] + fractions["csf"]
    label = anatomy.masks["label"]
    for value, tissue in ((1, "necrosis"), (2, "edema"), (3, "enhancing")):
        inside = label == value
        others = [f for name, f in fractions.items() if name not in ("wm", "gm", "csf", tissue)] + [normal]
        assert np.all(fractions[tissue][inside] >= np.max(others, axis=0)[inside])
    # Soft edges: some voxels hold a partial lesion fraction, but the labels stay hard.
    assert np.any((fractions["edema"] > 0.1) & (fractions["edema"] < 0.5))


def test_images_are_skull_stripped(case):
    outside = case.masks["brain"] == 0
    for key, image in case.images.items():
        assert np.all(image[outside] == 0), key
        assert np.percentile(image[~outside], 50) != 0, key


def test_same_seed_same_case_different_seed_different_case(phantom, case):
    again = phantom(SEED)
    for key in case.images:
        np.testing.assert_array_equal(again.images[key], case.images[key])
    for key in case.masks:
        np.testing.assert_array_equal(again.masks[key], case.masks[key])
    assert again.meta == case.meta
    other = phantom(SEED + 1)
    assert not np.array_equal(other.masks["label"], case.masks["label"])
    assert not np.array_equal(other.masks["brain"], case.masks["brain"])  # subject deformation and scaling
    assert not np.allclose(other.images["t2w"], case.images["t2w"])


def test_anatomy_is_the_subject_of_the_case(anatomy, case):
    for key in case.masks:
        np.testing.assert_array_equal(anatomy.masks[key], case.masks[key])
    assert anatomy.meta == case.meta


def test_mass_effect_conserves_volume_and_decays(anatomy):
    tumor = anatomy.tumor
    push = tumor.push_radius
    direction = np.array([0.6, 0.0, 0.8])
    radii = np.array([0.5, 1.5, 2.0, 4.0]) * push
    points = tumor.centre[:, None] + direction[:, None] * radii
    offsets = _undo_mass_effect(points, tumor) - tumor.centre[:, None]
    before = np.linalg.norm(offsets, axis=0)
    assert before[0] == pytest.approx(0.0, abs=1e-9)  # inside the added sphere: all from the centre
    # Outside it, the shell between the old and the new radius holds exactly the added sphere's volume ...
    np.testing.assert_allclose(radii[1:] ** 3 - before[1:] ** 3, push**3, rtol=1e-6)
    np.testing.assert_allclose(offsets[:, 1:] / before[1:], direction[:, None] * np.ones(3), atol=1e-9)  # radial
    # ... so the push shrinks with distance and is small two tumour-core radii away.
    shift = radii[1:] - before[1:]
    assert np.all(np.diff(shift) < 0) and shift[-1] < 0.05 * push


def test_t1_white_matter_brighter_than_grey_and_csf_darkest(case, pure):
    t1n = case.images["t1n"]
    assert median(t1n, pure["wm"]) > 1.1 * median(t1n, pure["gm"])
    assert median(t1n, pure["csf"]) < 0.8 * median(t1n, pure["gm"])


def test_csf_brightest_on_t2w_and_suppressed_on_flair(case, pure):
    t2w, t2f = case.images["t2w"], case.images["t2f"]
    assert median(t2w, pure["csf"]) > 1.3 * max(median(t2w, pure["gm"]), median(t2w, pure["wm"]))
    assert median(t2f, pure["csf"]) < 0.5 * min(median(t2f, pure["gm"]), median(t2f, pure["wm"]))


def test_flair_inversion_time_nulls_csf():
    csf = TISSUES["csf"]
    assert FLAIR_SEQUENCE.ti == pytest.approx(flair_inversion_time(FLAIR_SEQUENCE.tr, csf.t1))
    assert 2000 <= FLAIR_SEQUENCE.ti <= 2500  # the clinical range
    assert FLAIR_SEQUENCE.signal(csf.pd, csf.t1, csf.t2) == pytest.approx(0.0, abs=1e-9)
    wm = TISSUES["wm"]
    assert FLAIR_SEQUENCE.signal(wm.pd, wm.t1, wm.t2) > 0.05


def test_enhancing_tumor_takes_up_gadolinium(case, pure):
    t1n, t1c = case.images["t1n"], case.images["t1c"]
    enhancing = case.masks["label"] == 3
    ratio_pre = median(t1n, enhancing) / median(t1n, pure["wm"])
    ratio_post = median(t1c, enhancing) / median(t1c, pure["wm"])
    assert ratio_post > 1.5 * ratio_pre
    # Necrosis has no perfusion: it does not enhance.
    necrosis = case.masks["label"] == 1
    assert median(t1c, necrosis) / median(t1c, pure["wm"]) < 1.2 * median(t1n, necrosis) / median(t1n, pure["wm"])


def test_edema_bright_on_flair(case, pure):
    t2f = case.images["t2f"]
    edema = case.masks["label"] == 2
    assert median(t2f, edema) > 1.1 * max(median(t2f, pure["wm"]), median(t2f, pure["gm"]))


def test_aptw_is_a_percent_map_high_in_tumor(case):
    aptw = case.images["aptw"]
    tumor = np.isin(case.masks["label"], (1, 3))
    normal = case.masks["lesion_map"] == 1
    assert np.mean(aptw[tumor]) > np.mean(aptw[normal]) + 1.5
    assert -1.0 < np.median(aptw[normal]) < 1.5
    assert np.all(np.abs(aptw) < 10)
    assert np.any(aptw[normal] < 0)  # additive noise on a difference image, not Rician magnitude


def test_healthy_case_has_no_lesion_and_no_enhancement():
    case = BrainPhantom(spacing=SPACING, tumor_probability=0.0, snr=30.0)(2)
    assert case.meta["tumor"] is False and case.meta["tumor_center_mm"] is None
    assert not case.masks["label"].any()
    assert set(np.unique(case.masks["lesion_map"])) == {0, 1}
    brain = case.masks["brain"] > 0
    difference = case.images["t1c"][brain] - case.images["t1n"][brain]
    noise = 1000.0 / 30.0  # Acquisition: noise sigma is the 99th percentile (scaled to 1000) / snr
    assert abs(difference.mean()) < 0.1 * noise
    assert difference.std() < 1.2 * math.sqrt(2.0) * noise
    assert np.percentile(difference, 99.9) < 5 * noise  # nothing enhances


def test_cavity_is_fluid_without_a_brats_label():
    phantom = BrainPhantom(spacing=SPACING, cavity_probability=1.0)
    case, anatomy = phantom(1), phantom.anatomy(1)
    assert case.meta["cavity"] is True and case.meta["cavity_fraction"] > 0
    lesion_map, label = case.masks["lesion_map"], case.masks["label"]
    cavity = lesion_map == 3
    assert cavity.sum() >= 5
    assert np.all(label[cavity] == 0)
    assert not np.any(label == 1)  # the necrotic core was resected
    assert np.any(label == 3) and np.any(label == 2)  # residual rim and edema keep their labels
    fractions = anatomy.fractions
    normal = fractions["wm"] + fractions["gm"] + fractions["csf"]
    others = np.max([normal, fractions["enhancing"], fractions["edema"]], axis=0)
    assert np.all(fractions["cavity"][cavity] >= others[cavity])
    wm_gm = (anatomy.fractions["wm"] + anatomy.fractions["gm"]) > 0.9
    t2w, t2f = case.images["t2w"], case.images["t2f"]
    assert median(t2f, cavity) < 0.5 * median(t2f, wm_gm)
    assert median(t2w, cavity) > 1.5 * median(t2w, wm_gm)


def test_no_cavity_without_tumor():
    case = BrainPhantom(spacing=SPACING, tumor_probability=0.0, cavity_probability=1.0)(0)
    assert case.meta["cavity"] is False
    assert not np.any(case.masks["lesion_map"] >= 2)


def test_2d_case_is_one_axial_plane_through_the_tumor():
    case = BrainPhantom(dims=2, spacing=2.0)(SEED)
    template = brain_template(2.0)
    assert all(a.ndim == 2 for a in [*case.images.values(), *case.masks.values()])
    assert case.images["t1n"].shape == template.shape[:2]
    assert len(case.spacing) == 2 and case.direction.shape == (2, 2)
    np.testing.assert_allclose(case.volume("t2w").affine[:2], template.affine[:2], atol=1e-9)
    assert case.meta["slice_z_mm"] == pytest.approx(case.meta["tumor_center_mm"][2])
    label = case.masks["label"]
    assert {1, 3} <= set(np.unique(label))
    enhancing = label == 3
    assert median(case.images["t1c"], enhancing) > 1.3 * median(case.images["t1c"], label == 0)


def test_2d_healthy_case_is_mid_brain():
    case = BrainPhantom(dims=2, spacing=SPACING, tumor_probability=0.0)(0)
    template = brain_template(SPACING)
    z_range = template.affine[2, 3] + SPACING * np.array([0, template.shape[2] - 1])
    assert z_range[0] < case.meta["slice_z_mm"] < z_range[1]
    assert case.masks["brain"].mean() > 0.3


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"dims": 1}, "dims"),
        ({"dims": 2.5}, "dims"),
        ({"dims": True}, "dims"),
        ({"spacing": 0}, "spacing"),
        ({"spacing": -2.0}, "spacing"),
        ({"spacing": 0.1}, r"spacing must be in \[1, 10\]"),  # a 6 G voxel grid
        ({"spacing": float("nan")}, "spacing"),
        ({"spacing": "2"}, "spacing"),
        ({"tumor_probability": -0.1}, "tumor_probability"),
        ({"tumor_probability": 1.5}, "tumor_probability"),
        ({"cavity_probability": 2}, "cavity_probability"),
        ({"deformation_mm": -1.0}, "deformation_mm"),
        ({"snr": 0}, "snr"),
    ],
)
def test_bad_arguments_raise_input_error(kwargs, name):
    with pytest.raises(InputError, match=name):
        BrainPhantom(**kwargs)


@pytest.mark.parametrize("seed", [-1, 1.5, "3"])
def test_bad_seed_raises_input_error(phantom, seed):
    with pytest.raises(InputError, match="seed"):
        phantom(seed)
