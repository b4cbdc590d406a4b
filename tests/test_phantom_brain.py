"""The brain phantom: contents, grid, labels, reproducibility, MR contrast, lesions, 2D planes, bad input."""

import json
import math

import numpy as np
import pytest

from synthmr.errors import InputError
from synthmr.phantom import phantom_class
from synthmr.phantom import brain
from synthmr.phantom.brain import (
    BRATS_SHAPE,
    FLAIR_SEQUENCE,
    TISSUES,
    BrainPhantom,
    _undo_mass_effect,
    brain_template,
    flair_inversion_time,
    validation_figures,
)

SPACING = 4.0
SEED = 4


@pytest.fixture(scope="module")
def phantom():
    # No cavity here (the default draws one in 30 % of tumours): these tests look at the necrotic core.
    return BrainPhantom(spacing=SPACING, cavity_probability=0.0)


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
    # Head size (2.5 std of 3 %) times head shape (2.5 std of 2 % per axis).
    assert all(math.exp(-0.125) <= s <= math.exp(0.125) for s in meta["scale"])
    assert len(meta["rotation_deg"]) == 3 and all(abs(a) <= 7.5 for a in meta["rotation_deg"])


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
    # BraTS label 1 (NCR) holds necrosis and non-enhancing tumour: whichever of them dominates the voxel.
    for value, tissues in ((1, ("necrosis", "nonenhancing")), (2, ("edema",)), (3, ("enhancing",))):
        inside = label == value
        assert inside.any()
        own = np.max([fractions[t] for t in tissues], axis=0)
        others = [f for name, f in fractions.items() if name not in ("wm", "gm", "csf", *tissues)] + [normal]
        assert np.all(own[inside] >= np.max(others, axis=0)[inside])
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


def test_cavity_is_fluid_without_a_brats_label(monkeypatch):
    monkeypatch.setattr(brain, "CAVITY_PROTEIN_PROBABILITY", 0.0)  # CSF-like fluid, nulled by FLAIR
    phantom = BrainPhantom(spacing=SPACING, cavity_probability=1.0)
    case, anatomy = phantom(1), phantom.anatomy(1)
    assert case.meta["cavity"] is True and case.meta["cavity_fraction"] > 0
    assert case.meta["cavity_fluid"] == "csf-like"
    lesion_map, label = case.masks["lesion_map"], case.masks["label"]
    cavity = lesion_map == 3
    assert cavity.sum() >= 5
    assert np.all(label[cavity] == 0)
    # The necrotic core was resected; label 1 can only be residual non-enhancing tumour.
    assert "necrosis" not in anatomy.fractions
    ncr = label == 1
    assert np.all(anatomy.fractions["nonenhancing"][ncr] > 0)
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
    # The plane is the grid plane nearest the (moved) tumour centre.
    assert case.meta["slice_z_mm"] == pytest.approx(case.meta["tumor_center_mm"][2], abs=1.0)
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


# ----------------------------------------------------------------------------------------------------------
# Subjects that differ, tissue map, ventricles
# ----------------------------------------------------------------------------------------------------------


def test_defaults_draw_cavities_and_deformations():
    phantom = BrainPhantom()
    assert phantom.cavity_probability == pytest.approx(0.3)
    assert phantom.deformation_mm == pytest.approx(5.0)
    assert phantom.spacing == 2.0 and phantom.grid == "template"


def test_tissue_map_follows_the_dominant_tissue(anatomy, case):
    tissue, label, lesion_map = case.masks["tissue"], case.masks["label"], case.masks["lesion_map"]
    assert set(np.unique(tissue)) == {0, 1, 2, 3, 4}
    assert np.all((tissue > 0) == (case.masks["brain"] > 0))
    assert np.all(tissue[(label > 0) | (lesion_map == 3)] == 4)  # a lesion voxel gets the lesion value
    f = anatomy.fractions
    normal = tissue == 2
    assert np.all(f["gm"][normal] >= np.maximum(f["wm"], f["csf"])[normal])
    white = tissue == 3
    assert np.all(f["wm"][white] >= np.maximum(f["gm"], f["csf"])[white])


def jacobian_determinant(transform, spacing_mm=4.0):
    """det of the Jacobian of the subject -> template map on a grid covering the head."""
    axes = [np.arange(lo, hi, spacing_mm) for lo, hi in zip((-90, -125, -80), (90, 95, 100))]
    points = np.stack(np.meshgrid(*axes, indexing="ij"))
    mapped = transform.to_template(points)
    gradient = np.stack([np.stack(np.gradient(c, spacing_mm)) for c in mapped])  # (3 out, 3 in, ...)
    return np.linalg.det(np.moveaxis(gradient, (0, 1), (-2, -1))), np.abs(mapped - points).max()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_subject_transform_is_a_large_diffeomorphism(seed):
    anatomy = BrainPhantom(spacing=SPACING, tumor_probability=0.0).anatomy(seed)
    det, largest_move = jacobian_determinant(anatomy.transform)
    assert np.all(det > 0)  # nowhere folded or torn
    assert det.min() < 0.9 and det.max() > 1.1  # but it does compress and expand tissue
    assert largest_move > 8.0  # mm: more than the old +-5 % scaling and 4 mm jitter
    # The inverse (exp(-v) and the inverse pose) brings template points back.
    points = np.array([[-30.0, 0.0, 20.0], [10.0, -40.0, 40.0], [35.0, 20.0, -5.0]]).T
    np.testing.assert_allclose(anatomy.transform.to_template(anatomy.transform.to_subject(points)), points, atol=1.0)


def test_subjects_differ_in_size_ventricles_and_gyri():
    phantom = BrainPhantom(spacing=3.0, tumor_probability=0.0)
    anatomies = [phantom.anatomy(seed) for seed in range(6)]
    volume = [np.isin(a.masks["tissue"], (2, 3)).sum() * 27 / 1000 for a in anatomies]
    ventricles = [a.ventricles.sum() * 27 / 1000 for a in anatomies]
    assert np.std(volume) / np.mean(volume) > 0.04
    assert np.std(ventricles) / np.mean(ventricles) > 0.15
    # Larger drawn ventricles give larger ventricle masks.
    factors = [a.meta["ventricle_volume_factor"] for a in anatomies]
    assert np.corrcoef(factors, ventricles)[0, 1] > 0.5
    for a in anatomies:
        assert np.all(a.masks["tissue"][a.ventricles > 0] == 1)  # ventricles are CSF ...
        centre = np.argwhere(a.ventricles).mean(axis=0)
        assert np.all(np.abs(centre - np.array(a.ventricles.shape) / 2) < 0.25 * np.array(a.ventricles.shape))
    grey = [a.masks["tissue"] == 2 for a in anatomies]
    dice = [2 * np.sum(x & y) / (x.sum() + y.sum()) for i, x in enumerate(grey) for y in grey[i + 1 :]]
    assert np.mean(dice) < 0.8


def test_tumour_sits_in_white_matter_of_this_subject():
    phantom = BrainPhantom(spacing=SPACING, cavity_probability=0.0)
    for seed in range(4):
        anatomy = phantom.anatomy(seed)
        tumor = anatomy.tumor
        template = brain_template(SPACING)
        site = brain._to_index(template.affine, anatomy.transform.to_template(tumor.centre[:, None]))[:, 0]
        assert template.wm[tuple(np.round(site).astype(int))] >= 0.4  # a white-matter site of the template ...
        index = np.round(brain._to_index(template.affine, tumor.centre)).astype(int)
        assert anatomy.masks["label"][tuple(index)] in (1, 3)  # ... and the tumour core of the subject


# ----------------------------------------------------------------------------------------------------------
# Lesions
# ----------------------------------------------------------------------------------------------------------


def test_lesion_parts_are_not_concentric(anatomy):
    tumor = anatomy.tumor
    f = anatomy.fractions
    assert f["nonenhancing"].max() > 0.5 and f["necrosis"].max() > 0.5
    grid = np.indices(f["wm"].shape).reshape(3, -1)

    def centroid(weights):
        weights = weights.ravel()
        return (grid * weights).sum(axis=1) / weights.sum() * SPACING

    core = centroid(f["necrosis"])
    solid = centroid(f["enhancing"] + f["necrosis"])
    nonenhancing = centroid(f["nonenhancing"])
    assert np.linalg.norm(nonenhancing - solid) > 0.3 * tumor.radii.mean()
    assert np.linalg.norm(core - solid) > 0.5  # mm: the necrotic core is off-centre, the rim uneven
    # The enhancing rim's thickness varies: distance from rim voxels to the core spans a wide range.
    label = anatomy.masks["label"]
    depth = ndimage_distance(anatomy.fractions["necrosis"] < 0.5)
    rim = (label == 3) & (depth > 0)
    assert np.percentile(depth[rim], 90) > 2 * np.percentile(depth[rim], 10)


def ndimage_distance(mask):
    from scipy import ndimage

    return ndimage.distance_transform_edt(mask, sampling=SPACING)


def test_edema_is_t1_hypointense_and_nonenhancing_tumour_does_not_enhance(case, anatomy, pure):
    t1n, t1c = case.images["t1n"], case.images["t1c"]
    edema = anatomy.fractions["edema"] > 0.9
    assert median(t1n, edema) < 0.95 * median(t1n, pure["wm"])
    assert median(case.images["t2w"], edema) > 1.2 * median(case.images["t2w"], pure["wm"])
    nonenhancing = anatomy.fractions["nonenhancing"] > 0.8
    enhancing = anatomy.fractions["enhancing"] > 0.8
    assert median(t1c, nonenhancing) < 0.7 * median(t1c, enhancing)
    assert np.all(case.masks["label"][nonenhancing & (anatomy.masks["tissue"] == 4)] != 3)
    # In the relaxation model: T1 rises more than PD, so the MPRAGE-like T1 sequence shows edema darker than WM.
    wm, ed = TISSUES["wm"], TISSUES["edema"]
    assert brain.T1_SEQUENCE.signal(ed.pd, ed.t1, ed.t2) < 0.9 * brain.T1_SEQUENCE.signal(wm.pd, wm.t1, wm.t2)


def test_satellite_focus_is_a_second_tumour(monkeypatch):
    from scipy import ndimage

    monkeypatch.setattr(brain, "SATELLITE_PROBABILITY", 1.0)
    phantom = BrainPhantom(spacing=3.0, cavity_probability=0.0)
    found = 0
    for seed in range(3):
        case = phantom(seed)
        if not case.meta["multifocal"]:
            continue  # no white-matter site at the right distance
        found += 1
        tumour = case.masks["lesion_map"] == 4
        components, count = ndimage.label(tumour)
        sizes = ndimage.sum(tumour, components, range(1, count + 1)) * 27
        assert np.sum(sizes >= 200) >= 2
        centre = brain._RAS_TO_LPS @ case.meta["satellite_center_mm"]
        index = np.round(brain._to_index(phantom.grid_geometry()[0], centre)).astype(int)
        assert case.masks["lesion_map"][tuple(index)] == 4
    assert found >= 2


def test_proteinaceous_cavity_fluid_is_not_nulled_by_flair(monkeypatch):
    results = {}
    for share in (0.0, 1.0):
        monkeypatch.setattr(brain, "CAVITY_PROTEIN_PROBABILITY", share)
        phantom = BrainPhantom(spacing=3.0, cavity_probability=1.0)
        anatomy, case = phantom._simulate(5)
        cavity = anatomy.fractions["cavity"] > 0.9
        csf = (anatomy.fractions["csf"] > 0.9) & (anatomy.ventricles > 0)
        results[share] = median(case.images["t2f"], cavity) / median(case.images["t2f"], csf)
        assert case.meta["cavity_fluid"] == ("proteinaceous" if share else "csf-like")
        assert median(case.images["t2w"], cavity) > 1.5 * median(case.images["t2w"], anatomy.fractions["wm"] > 0.9)
    assert results[0.0] < 1.5  # suppressed like ventricular CSF
    assert results[1.0] > 3.0  # protein shortens T1: FLAIR no longer nulls it


def test_cavity_probability_gives_all_five_samr_labels():
    phantom = BrainPhantom(spacing=SPACING, cavity_probability=1.0)
    case = phantom(3)
    assert set(np.unique(case.masks["lesion_map"])) == {0, 1, 2, 3, 4}
    assert {2, 3} <= set(np.unique(case.masks["label"]))


# ----------------------------------------------------------------------------------------------------------
# BraTS grid
# ----------------------------------------------------------------------------------------------------------


def test_brats_grid_is_1mm_240_240_155_with_identity_lps_direction():
    phantom = BrainPhantom(dims=2, grid="brats")
    assert phantom.spacing == 1.0 and phantom.grid_geometry()[1] == BRATS_SHAPE
    case = phantom(SEED)
    assert case.images["t1n"].shape == BRATS_SHAPE[:2]
    assert case.spacing == (1.0, 1.0)
    np.testing.assert_array_equal(case.direction, np.eye(2))
    brain_mask = case.masks["brain"] > 0
    assert 0.2 < brain_mask.mean() < 0.6  # a head in the middle, not cut at the edges
    assert not brain_mask[[0, -1], :].any() and not brain_mask[:, [0, -1]].any()
    assert {1, 2, 3} <= set(np.unique(case.masks["label"]))
    affine, shape = phantom.grid_geometry()
    top = affine[2, 3] + shape[2] - 1  # RAS z of the top slice: the vertex lies below it
    assert top > 80.0


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"grid": "mni"}, "grid"),
        ({"grid": 3}, "grid"),
        ({"grid": "brats", "spacing": 2.0}, "spacing must be 1"),
        ({"deformation_mm": 20.0}, "deformation_mm"),
    ],
)
def test_bad_grid_arguments_raise_input_error(kwargs, name):
    with pytest.raises(InputError, match=name):
        BrainPhantom(**kwargs)


def test_grid_option_reaches_the_dataset_writer():
    from synthmr.phantom.dataset import _make_phantom

    phantom = _make_phantom("brain", {"grid": "brats", "spacing": 1})
    assert phantom.grid == "brats" and "grid='brats'" in repr(phantom)


def test_validation_figures_are_finite_and_named():
    figures = validation_figures(3, 123)
    assert len(figures) >= 15
    names = [f.name for f in figures]
    assert len(set(names)) == len(names) and all(names)
    for f in figures:
        assert math.isfinite(f.value), f.name
        assert f.low <= f.high and f.source
