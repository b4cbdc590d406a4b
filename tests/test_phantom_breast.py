"""Breast DCE phantom: one grid per case, reproducible, labels match meta, the layout of a prone breast exam
(breasts in front, chest wall, heart, the posterior edge cutting the thorax), and the physics shows the clinical
contrasts (fat suppression, dark lungs, enhancing heart, each lesion's drawn kinetic curve type, lesions visible
before contrast, mass effect)."""

from __future__ import annotations

import math
from dataclasses import replace
import numpy as np
import pytest
from scipy import ndimage

from synthmr.errors import InputError
from synthmr.phantom import phantom_class, physics
from synthmr.phantom import breast
from synthmr.phantom.breast import (
    CURVE_TYPE_SHARES,
    CURVE_TYPES,
    LESION_RELAXATION,
    BreastPhantom,
    _displaced,
    _draw_lesion_shape,
    _Grid,
    classify_curve,
    draw_curve_type,
    draw_kinetics,
    validation_figures,
)

SIZE = 128  # 2.8 mm pixels over the default 358 mm field of view
MM = 358.4 / SIZE
T1_SERIES = ("t1_pre", "t1_post1", "t1_post2", "t1_post3", "t1_post4")


@pytest.fixture(scope="module")
def phantom() -> BreastPhantom:
    return BreastPhantom(size=SIZE, n_lesions=(1, 2))


@pytest.fixture(scope="module")
def cases(phantom):
    return {seed: phantom(seed) for seed in range(4)}


@pytest.fixture(scope="module")
def forced_lesion_cases():
    """Six cases with two lesions each: three all-malignant, three all-benign."""
    out = []
    for malignant_fraction in (1.0, 0.0):
        phantom = BreastPhantom(size=SIZE, n_lesions=(2, 2), malignant_fraction=malignant_fraction)
        out += [phantom(seed) for seed in range(3)]
    return out


@pytest.fixture(scope="module")
def case_with_anatomy(phantom):
    return phantom(7), phantom.anatomy(7)


@pytest.fixture(scope="module")
def bilateral():
    """Twelve healthy bilateral cases at the default field of view, each with its anatomy."""
    phantom = BreastPhantom(size=SIZE, n_lesions=(0, 0), bilateral_probability=1.0)
    return [(phantom(seed), phantom.anatomy(seed)) for seed in range(12)]


def test_contract_one_grid_dtypes_and_meta(cases):
    assert phantom_class("breast") is BreastPhantom
    for case in cases.values():
        assert tuple(case.images) == BreastPhantom.sequences
        assert tuple(case.masks) == BreastPhantom.masks
        for image in case.images.values():
            assert image.shape == (SIZE, SIZE) and image.dtype == np.float32 and np.isfinite(image).all()
        for mask in case.masks.values():
            assert mask.shape == (SIZE, SIZE) and mask.dtype == np.uint8
        assert case.spacing == pytest.approx((358.4 / SIZE,) * 2)
        assert np.array_equal(case.direction, np.eye(2))
        # The grid is centred on the patient axis.
        assert case.origin == pytest.approx((-(SIZE - 1) / 2 * case.spacing[0],) * 2)
        assert case.meta["organ"] == "breast" and case.meta["post_times_min"] == [1.5, 3.0, 4.5, 6.0]
        assert case.meta["laterality"] in ("bilateral", "left", "right")
        assert case.meta["density"] in "abcd"


def test_same_seed_same_case_other_seed_other_case(phantom, cases):
    again = phantom(0)
    for key in BreastPhantom.sequences:
        assert np.array_equal(again.images[key], cases[0].images[key])
    for key in BreastPhantom.masks:
        assert np.array_equal(again.masks[key], cases[0].masks[key])
    assert again.meta == cases[0].meta
    assert not np.array_equal(cases[1].images["t1_pre"], cases[0].images["t1_pre"])
    assert not np.array_equal(cases[1].masks["breast"], cases[0].masks["breast"])


def test_lesion_labels_match_meta(cases, forced_lesion_cases):
    for case in [*cases.values(), *forced_lesion_cases]:
        classes = case.meta["lesion_classes"]
        labels = case.masks["lesion"]
        # Every lesion of a 2D case cuts the slice: labels 1..k all present.
        assert sorted(np.unique(labels[labels > 0])) == list(range(1, len(classes) + 1))
        assert len(case.meta["kinetics"]) == len(classes) == len(case.meta["lesion_sides"])
        expected = "malignant" if "malignant" in classes else "benign" if classes else "healthy"
        assert case.meta["class"] == expected
        assert np.all(case.masks["breast"][labels > 0] == 1), "lesions lie inside the breast mask"


def test_lesions_clear_of_skin_and_chest(case_with_anatomy):
    case, anatomy = case_with_anatomy
    near_lesion = ndimage.binary_dilation(case.masks["lesion"] > 0, iterations=1)
    for tissue in ("skin", "muscle", "marrow", "lung"):
        assert anatomy.fractions[tissue][near_lesion].max() == 0, tissue


def test_tissue_fractions_partition_the_voxel(case_with_anatomy):
    _, anatomy = case_with_anatomy
    total = np.add.reduce(list(anatomy.fractions.values()))
    assert min(f.min() for f in anatomy.fractions.values()) >= 0
    assert total.max() <= 1 + 1e-5
    assert total[~anatomy.body].max() < 0.5 and total[anatomy.body].min() > 0.5


def test_fgt_mask_is_mostly_fgt_inside_the_breast_and_outside_lesions(case_with_anatomy):
    case, anatomy = case_with_anatomy
    fgt = case.masks["fgt"] > 0
    assert fgt.sum() > 50
    assert not (fgt & (case.masks["lesion"] > 0)).any()
    assert (case.masks["breast"][fgt] > 0).all()
    assert anatomy.fractions["fgt"][fgt].min() >= 0.5
    # On the fat-saturated T1, fibroglandular tissue is brighter than the suppressed fat.
    fat = (anatomy.fractions["fat"] > 0.9) & (case.masks["breast"] > 0)
    assert case.images["t1_pre"][fgt].mean() > case.images["t1_pre"][fat].mean()


def lesion_means(case) -> list[tuple[str, np.ndarray]]:
    labels = case.masks["lesion"]
    return [
        (kind, np.array([case.images[key][labels == value].mean() for key in T1_SERIES]))
        for value, kind in enumerate(case.meta["lesion_classes"], start=1)
    ]


def test_lesion_roi_shows_its_drawn_curve_type(forced_lesion_cases):
    """The lesion ROI's time course on the images has the curve type recorded in meta (Kuhl's +-10 % of the
    first post-contrast phase), and every lesion enhances early."""
    seen = set()
    for case in forced_lesion_cases:
        types = case.meta["curve_types"]
        assert len(types) == len(case.meta["lesion_classes"]) and set(types) <= set(CURVE_TYPES)
        for (kind, (pre, post1, *_, post4)), curve_type in zip(lesion_means(case), types):
            assert post1 > 1.5 * pre, "strong early enhancement"
            assert classify_curve(post1, post4) == curve_type, (kind, post4 / post1, curve_type)
            seen.add((kind, curve_type))
    assert {kind for kind, _ in seen} == {"benign", "malignant"}


def test_curve_type_thresholds():
    assert classify_curve(100.0, 110.0) == "I" and classify_curve(100.0, 109.0) == "II"
    assert classify_curve(100.0, 91.0) == "II" and classify_curve(100.0, 89.0) == "III"


def test_curve_types_overlap_between_classes_with_kuhls_shares():
    """Curve type is drawn per lesion: both classes show all types, in about Kuhl's shares (not one per class)."""
    rng = np.random.default_rng(1)
    for kind in ("benign", "malignant"):
        types = [draw_curve_type(rng, kind) for _ in range(2000)]
        for curve_type, share in zip(CURVE_TYPES, CURVE_TYPE_SHARES[kind]):
            observed = types.count(curve_type) / len(types)
            assert observed > 0 and abs(observed - share) < 2.58 * math.sqrt(share * (1 - share) / 2000) + 0.01


def test_kinetic_draws_show_their_type_in_signal():
    """draw_kinetics gives parameters whose fat-suppressed T1w signal has the requested type, with margin."""
    rng = np.random.default_rng(0)
    times = (1.5, 3.0, 4.5, 6.0)
    for kind, relaxation in LESION_RELAXATION.items():
        for curve_type in CURVE_TYPES:
            for _ in range(10):
                tissue = relaxation.draw(rng)
                kinetics = draw_kinetics(rng, kind, curve_type, tissue, times)
                curve = physics.extended_tofts(**kinetics)
                concentration = np.array([0.0, physics.sample(curve, 1.5), physics.sample(curve, 6.0)])
                pre, early, late = breast._phase_signals(tissue, concentration)
                assert early > 1.6 * pre and classify_curve(early, late) == curve_type
                assert abs(late / early - 1) > 0.14 if curve_type != "II" else abs(late / early - 1) < 0.06


def test_lesion_relaxation_drawn_per_lesion_within_literature_spread():
    rng = np.random.default_rng(0)
    for kind, relaxation in LESION_RELAXATION.items():
        draws = [relaxation.draw(rng) for _ in range(300)]
        t1, t2 = np.array([d.t1 for d in draws]), np.array([d.t2 for d in draws])
        assert relaxation.t1_bounds[0] <= t1.min() and t1.max() <= relaxation.t1_bounds[1]
        assert relaxation.t2_bounds[0] <= t2.min() and t2.max() <= relaxation.t2_bounds[1]
        assert t1.std() > 100 and t2.std() > 4, "lesions differ"
    # Benign masses are never darker than FGT on T2 (T2 >= FGT's 71 ms); cancers lie around 81 ms.
    assert LESION_RELAXATION["benign"].t2_bounds[0] >= breast.TISSUES["fgt"].t2
    assert LESION_RELAXATION["malignant"].t2[0] == 81.0


def test_lesions_visible_before_contrast(forced_lesion_cases):
    """On T2w benign lesions are brighter than FGT and cancers close to it; in fat both show on T2w and T1w."""
    ratios = {"benign": [], "malignant": []}
    for case in forced_lesion_cases:
        labels = case.masks["lesion"]
        fgt = case.masks["fgt"] > 0
        for value, kind in enumerate(case.meta["lesion_classes"], start=1):
            core = ndimage.binary_erosion(labels == value)
            if core.sum() >= 3 and fgt.sum() > 20:
                ratios[kind].append(case.images["t2"][core].mean() / case.images["t2"][fgt].mean())
    assert np.median(ratios["benign"]) > 1.15
    assert 0.95 < np.median(ratios["malignant"]) < 1.5
    assert np.median(ratios["benign"]) > np.median(ratios["malignant"])


def test_lesion_relaxation_recorded_and_rendered(case_with_anatomy):
    case, anatomy = case_with_anatomy
    assert len(case.meta["lesion_relaxation"]) == len(anatomy.lesions) > 0
    for lesion, recorded in zip(anatomy.lesions, case.meta["lesion_relaxation"]):
        assert recorded == {"pd": lesion.tissue.pd, "t1_ms": lesion.tissue.t1, "t2_ms": lesion.tissue.t2}
    # The class maps still sum the lesions' fractions.
    for kind in ("benign", "malignant"):
        mine = [lesion.fraction for lesion in anatomy.lesions if lesion.kind == kind]
        if mine:
            assert np.allclose(anatomy.fractions[kind], np.add.reduce(mine))


def test_mass_effect_pushes_tissue_into_a_rim():
    """Tissue that filled a benign lesion's place is pushed into a rim around it, not deleted."""
    grid = _Grid((96, 96, 1), (1.0, 1.0, 1.0), (-47.5, -47.5, 0.0), True)
    x, y, _ = grid.axes()
    radius = 10.0
    no_bumps = breast._Bumps(np.zeros((0, 3)), np.zeros(0), 1.0)
    shape = breast._LesionShape("benign", (radius, radius, radius), np.eye(3), no_bumps, ())
    disc = (np.hypot(x, y) < radius).astype(np.float32) * np.ones(grid.shape, np.float32)
    r = np.hypot(x, y) * np.ones(grid.shape)
    outside = r >= radius
    assert disc[outside].sum() == 0
    moved = _displaced(disc, grid, [(shape, np.zeros(3), 0)])
    # What filled the lesion's place now lies around it (in 2D in the ring out to sqrt(2) radii), conserved.
    assert moved[outside].sum() == pytest.approx(disc.sum(), rel=0.1)
    assert moved[outside & (r < 1.3 * radius)].mean() > 0.9 and moved[r > 1.6 * radius].max() < 0.05
    # A malignant lesion pushes aside half the tissue in its place (and replaces the rest).
    half = _displaced(disc, grid, [(replace(shape, kind="malignant"), np.zeros(3), 0)])
    assert half[outside].sum() == pytest.approx(0.5 * disc.sum(), rel=0.15)
    # Beyond MASS_EFFECT_REACH radii nothing moves.
    ring = ((r > 31) & (r < 40)).astype(np.float32)
    assert np.array_equal(_displaced(ring, grid, [(shape, np.zeros(3), 0)]), ring)


def test_validation_figures_are_named_and_finite():
    figures = validation_figures(3, 123)
    assert len(figures) >= 20 and len({f.name for f in figures}) == len(figures)
    for figure in figures:
        assert figure.name and figure.source and math.isfinite(figure.value), figure
        assert figure.low <= figure.high


def test_fat_suppressed_on_t1_bright_on_t2(case_with_anatomy):
    case, anatomy = case_with_anatomy
    breast = case.masks["breast"] > 0
    fat = breast & (anatomy.fractions["fat"] > 0.99)
    fgt = breast & (anatomy.fractions["fgt"] > 0.99)
    assert fat.sum() > 50 and fgt.sum() > 50
    assert case.images["t1_pre"][fat].mean() < 0.6 * case.images["t1_pre"][fgt].mean()
    assert case.images["t2"][fat].mean() > 1.5 * case.images["t2"][fgt].mean()


def test_lungs_dark_and_heart_enhances(case_with_anatomy):
    case, anatomy = case_with_anatomy
    lung = anatomy.fractions["lung"] > 0.99
    blood = anatomy.fractions["blood"] > 0.99
    for key in ("t2", "t1_pre", "t1_post1"):
        assert case.images[key][lung].mean() < 0.1 * np.percentile(case.images[key][anatomy.body], 99), key
    pre, post1, post4 = (case.images[key][blood].mean() for key in ("t1_pre", "t1_post1", "t1_post4"))
    assert post1 > 3 * pre and pre < post4 < post1  # first-pass peak is over: blood slowly clears
    # The dynamic series shares one intensity scale, so enhancement raises values above the pre-contrast range.
    assert case.images["t1_post1"].max() > 1.5 * case.images["t1_pre"].max()


def test_breasts_anterior_and_laterality_respected():
    for seed in range(4):
        phantom = BreastPhantom(size=64, bilateral_probability=0.0, n_lesions=(0, 0))
        case, anatomy = phantom(seed), phantom.anatomy(seed)
        breast_x, breast_y = np.argwhere(case.masks["breast"]).mean(axis=0)
        heart_y = np.argwhere(anatomy.fractions["myocardium"] > 0.5)[:, 1].mean()
        assert breast_y < heart_y, "breasts hang in front of the heart (smaller y = anterior)"
        # +x is the patient's left.
        assert (breast_x > 32) == (case.meta["laterality"] == "left")
    both = BreastPhantom(size=64, bilateral_probability=1.0, n_lesions=(0, 0))(0)
    breast_x = np.argwhere(both.masks["breast"])[:, 0]
    assert both.meta["laterality"] == "bilateral" and breast_x.min() < 24 and breast_x.max() > 40


def test_layout_of_a_prone_breast_exam(bilateral):
    """An axial slice of a prone exam in a breast coil: two breasts 7-17 cm wide fill the front of the image, the
    pectoral muscle and ribs lie behind them, then the heart; the posterior edge cuts through the thorax."""
    for case, anatomy in bilateral:
        breast = case.masks["breast"] > 0
        rows = np.argwhere(breast)[:, 1] / SIZE  # 0 at the anterior edge of the image, 1 at the posterior edge
        assert rows.min() < 0.35 and rows.mean() < 0.5, "the breasts lie in the front of the image"
        assert rows.max() > 0.45, "and fill it back to about the middle, where the chest wall is"
        for side in (breast[: SIZE // 2], breast[SIZE // 2 :]):
            columns = np.flatnonzero(side.any(axis=1))
            assert 70 <= (columns.max() - columns.min() + 1) * MM <= 170, "a breast is 7-17 cm wide"
        heart = np.argwhere(anatomy.fractions["myocardium"] > 0.5)[:, 1]
        assert rows.mean() < heart.min() / SIZE, "the heart lies behind the breasts"
        assert (SIZE - 1 - heart.max()) * MM < 120, "the posterior edge lies shortly behind the heart"
        # Straight back from the middle of each breast: breast, then muscle (or rib), then lung.
        for side in (breast[: SIZE // 2], breast[SIZE // 2 :]):
            x = int(np.median(np.argwhere(side)[:, 0])) + (0 if side is breast[: SIZE // 2] else SIZE // 2)
            profile = {name: anatomy.fractions[name][x] for name in ("muscle", "marrow", "lung")}
            last_breast = np.flatnonzero(breast[x]).max()
            first_lung = np.flatnonzero(profile["lung"] > 0.5).min()
            wall = (profile["muscle"] + profile["marrow"])[last_breast:first_lung]
            assert last_breast < first_lung and wall.max() > 0.9, "the chest wall separates breast and lung"
        # The posterior edge crosses the thorax: body across most of it, lung in it, and no skin in its middle
        # (the back is not imaged).
        assert anatomy.body[:, -1].mean() > 0.7
        assert (anatomy.fractions["lung"][:, -1] > 0.5).sum() * MM > 60
        assert not anatomy.fractions["skin"][SIZE // 4 : 3 * SIZE // 4, -1].any()


def test_chest_wall_has_ribs_and_sternum(bilateral):
    """Rib and sternal marrow lie in the chest wall; the sternum in the midline in front of the heart."""
    for _, anatomy in bilateral:
        marrow = anatomy.fractions["marrow"] > 0.3
        assert marrow.sum() * MM**2 > 500  # several ribs and the sternum, > 5 cm2
        heart_front = np.argwhere(anatomy.fractions["myocardium"] > 0.5)[:, 1].min()
        assert marrow[SIZE // 2 - 3 : SIZE // 2 + 3, :heart_front].any(), "the sternum lies in front of the heart"


def test_spicules_short_and_thin():
    """Spicules end 3-10 mm beyond the lesion's margin and are ~1 mm thick where they leave it."""
    rng = np.random.default_rng(0)
    for planar in (True, False):
        for _ in range(30):
            shape = _draw_lesion_shape(rng, "malignant", planar)
            assert 4 <= len(shape.spicules) <= 8
            for spicule in shape.spicules:
                inside = shape.reach(spicule.direction)
                assert 3.0 - 1e-6 <= spicule.length - inside <= 10.0 + 1e-6
                t = inside / spicule.length
                assert spicule.radius_start + (spicule.radius_end - spicule.radius_start) * t <= 0.7 + 1e-6


def test_breast_vessels_dimmer_than_the_heart():
    """Breast vessels are thinner than a voxel at the default resolution: dimmer than the heart's blood pool."""
    phantom = BreastPhantom(n_lesions=(0, 0), bilateral_probability=1.0)
    seen = 0
    for seed in range(3):
        case, anatomy = phantom(seed), phantom.anatomy(seed)
        breast = case.masks["breast"] > 0
        vessel = breast & (anatomy.fractions["blood"] > 0.2)
        pool = ~breast & (anatomy.fractions["blood"] > 0.99)
        post = case.images["t1_post1"]
        if vessel.any():
            seen += 1
            assert np.percentile(post[vessel], 99) < post[pool].mean()
    assert seen


def test_no_lesions_means_healthy():
    case = BreastPhantom(size=64, n_lesions=(0, 0))(3)
    assert not case.masks["lesion"].any()
    assert case.meta["class"] == "healthy" and case.meta["lesion_classes"] == [] and case.meta["kinetics"] == []


def test_density_spans_categories():
    phantom = BreastPhantom(size=64, n_lesions=(0, 0))
    anatomies = [phantom.anatomy(seed) for seed in range(16)]
    assert len({a.density for a in anatomies}) >= 3
    for a in anatomies:
        assert "abcd"[int(np.searchsorted([0.25, 0.5, 0.75], a.fgt_fraction, side="right"))] == a.density


def test_volume_shape_and_visible_lesions():
    phantom = BreastPhantom(dims=3, size=80, slices=16, slice_spacing=4.0, n_lesions=(2, 2))
    case = phantom(1)
    for array in [*case.images.values(), *case.masks.values()]:
        assert array.shape == (80, 80, 16)
    assert case.spacing == pytest.approx((4.48, 4.48, 4.0)) and np.array_equal(case.direction, np.eye(3))
    labels = case.masks["lesion"]
    assert sorted(np.unique(labels[labels > 0])) == [1, 2]
    for value in (1, 2):
        lesion = labels == value
        assert lesion.any(axis=(0, 1)).sum() >= 2, "a lesion spans several slices"
        assert case.images["t1_post1"][lesion].mean() > 1.5 * case.images["t1_pre"][lesion].mean()
    # Every slice has the layout of the 2D cases: breasts in front, the posterior edge cutting the thorax.
    anatomy = phantom.anatomy(1)
    assert np.argwhere(case.masks["breast"])[:, 1].mean() < 40
    assert anatomy.body[:, -1, :].mean(axis=0).min() > 0.6, "body across the posterior edge of every slice"
    assert (anatomy.fractions["lung"][:, -1, :] > 0.5).any(axis=0).all(), "and lung in it"


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"dims": 4}, "dims"),
        ({"size": 8}, "size"),
        ({"size": 100000}, "size must be an integer in [16, 1024]"),  # would need 37 GiB per array
        ({"dims": 3, "size": 1024, "slices": 64}, "size x size x slices = 1024 x 1024 x 64"),
        ({"slice_spacing": float("inf")}, "slice_spacing must be a finite number"),
        ({"size": 64, "spacing": 2.0}, "size * spacing"),
        ({"spacing": -1.0}, "spacing"),
        ({"slices": 0}, "slices"),
        ({"slice_spacing": 0.0}, "slice_spacing"),
        ({"n_lesions": (2, 1)}, "n_lesions[1]"),
        ({"n_lesions": 2}, "n_lesions"),
        ({"malignant_fraction": 1.5}, "malignant_fraction"),
        ({"bilateral_probability": -0.1}, "bilateral_probability"),
        ({"post_times_min": (1.0, 2.0, 3.0)}, "post_times_min"),
        ({"post_times_min": (1.0, 3.0, 2.0, 4.0)}, "post_times_min"),
        ({"post_times_min": (1.5, 3.0, 4.5, 20.0)}, "post_times_min"),
        ({"post_times_min": (0.2, 0.3, 0.4, 0.5)}, "post_times_min"),  # too early to see washout
        ({"snr": 0.0}, "snr"),
    ],
)
def test_bad_arguments_are_named(kwargs, name):
    with pytest.raises(InputError, match=name.replace("*", r"\*").replace("[", r"\[")):
        BreastPhantom(**kwargs)


def test_bad_seed_is_named():
    with pytest.raises(InputError, match="seed"):
        BreastPhantom(size=64)(-1)
