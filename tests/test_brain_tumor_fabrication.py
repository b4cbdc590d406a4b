"""brain_tumor_fabrication method module: tumour regions, TF-Aug (augment and place) and the CarveMix baseline."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from synthmr.errors import InputError
from synthmr.methods.brain_tumor_fabrication import (
    SEQUENCES,
    RandTumorAugment,
    TFAugd,
    carvemix,
    place_tumor,
    tumor_region,
)

SHAPE = (40, 44, 36)


def _ball(centre, radius, shape=SHAPE):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius**2


def _healthy(scale=1.0):
    """A 'brain' (ball) with sequence-specific tissue values; scale multiplies every intensity."""
    brain = _ball((20, 22, 18), 16)
    rng = np.random.default_rng(1)
    images = [np.where(brain, scale * (100.0 * (i + 1) + rng.normal(0, 1, SHAPE)), 0.0).astype(np.float32) for i in range(4)]
    return images, brain.astype(np.uint8)


def _tumour_case(scale=2.0):
    """A brain at ``scale`` times the healthy one's intensity with a three-label tumour of its own contrasts."""
    images, brain = _healthy(scale)
    label = np.zeros(SHAPE, np.uint8)
    label[_ball((14, 22, 18), 6)] = 2
    label[_ball((14, 22, 18), 4)] = 3
    label[_ball((14, 22, 18), 2)] = 1
    images = [np.where(label > 0, a * (1.5 + 0.2 * i), a).astype(np.float32) for i, a in enumerate(images)]
    return images, label, brain


def test_region_is_the_tumour_box_with_the_margin():
    images, label, brain = _tumour_case()
    region = tumor_region(images, label, brain, (2.0, 2.0, 2.0), margin_mm=4.0, case_id="src")
    # tumour spans 8..20 on x (radius 6 about 14): box grown by 2 voxels (4 mm) each side
    assert region.label.shape == (17, 17, 17)
    assert region.images.shape == (4, 17, 17, 17)
    assert np.count_nonzero(region.label) == np.count_nonzero(label)
    assert np.allclose(region.brain_median, [np.median(a[brain > 0]) for a in images])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda i, l, b: (i, np.zeros_like(l), b), "no tumour voxel"),
        (lambda i, l, b: (i, np.where(l == 3, 4, l).astype(np.uint8), b), "label holds [4]"),
        (lambda i, l, b: (i, l[:-1], b), "differ in shape"),
        (lambda i, l, b: (i[:3], l, b), "expected 4 3D sequences"),
        (lambda i, l, b: ([np.where(l > 0, np.nan, a) for a in i], l, b), "NaN"),
        (lambda i, l, b: (i, l, np.zeros_like(b)), "brain mask is empty"),
    ],
)
def test_region_refuses_bad_cases_by_name(change, message):
    images, label, brain = change(*_tumour_case())
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")) as raised:
        tumor_region(images, label, brain, (1, 1, 1), case_id="BraTS-001")
    assert "BraTS-001" in str(raised.value)


def test_placement_changes_only_the_roi_and_keeps_the_label_exact():
    images, label, brain = _tumour_case()
    region = tumor_region(images, label, brain, (1, 1, 1))
    healthy, healthy_brain = _healthy()
    placed = place_tumor(region, healthy, healthy_brain, (1, 1, 1), np.random.default_rng(0))
    outside = placed.roi == 0
    for before, after in zip(healthy, placed.images):
        assert np.array_equal(before[outside], after[outside])  # bit-identical outside m_roi
    assert placed.inside >= 0.95
    assert set(np.unique(placed.label)) <= {0, 1, 2, 3}
    assert not np.any(placed.label[healthy_brain == 0])
    # placed whole (a shift only): the same number of voxels of each label
    if placed.inside == 1.0:
        for value in (1, 2, 3):
            assert np.count_nonzero(placed.label == value) == np.count_nonzero(label == value)
    assert np.all(placed.roi[placed.label > 0])


def test_placement_harmonises_the_donor_to_the_recipient():
    # The donor's brain is twice as bright: its tumour/brain contrast must survive, its scale must not.
    images, label, brain = _tumour_case(scale=2.0)
    region = tumor_region(images, label, brain, (1, 1, 1))
    healthy, healthy_brain = _healthy(scale=1.0)
    placed = place_tumor(region, healthy, healthy_brain, (1, 1, 1), np.random.default_rng(3))
    core = placed.label == 3
    for i in range(4):
        ratio = np.median(placed.images[i][core]) / np.median(healthy[i][healthy_brain > 0])
        assert ratio == pytest.approx(1.5 + 0.2 * i, rel=0.02)


def test_placement_follows_the_centre_mask_and_the_seed():
    images, label, brain = _tumour_case()
    region = tumor_region(images, label, brain, (1, 1, 1))
    healthy, healthy_brain = _healthy()
    centre = np.zeros(SHAPE, np.uint8)
    centre[26, 22, 18] = 1
    placed = place_tumor(region, healthy, healthy_brain, (1, 1, 1), np.random.default_rng(0), centre_mask=centre)
    assert placed.centre == (26, 22, 18)
    again = [place_tumor(region, healthy, healthy_brain, (1, 1, 1), np.random.default_rng(7)) for _ in range(2)]
    assert again[0].centre == again[1].centre and np.array_equal(again[0].images, again[1].images)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"spacing": (2, 2, 2)}, "differs from tumour case"),
        ({"brain": np.zeros(SHAPE, np.uint8)}, "brain mask is empty"),
        ({"centre_mask": np.zeros(SHAPE, np.uint8)}, "centre mask has no voxel"),
    ],
)
def test_placement_refuses_what_does_not_fit(kwargs, message):
    images, label, brain = _tumour_case()
    region = tumor_region(images, label, brain, (1, 1, 1), case_id="src")
    healthy, healthy_brain = _healthy()
    arguments = {"images": healthy, "brain": healthy_brain, "spacing": (1, 1, 1), "name": "IXI-002", **kwargs}
    with pytest.raises(InputError, match=message) as raised:
        place_tumor(region, rng=np.random.default_rng(0), **arguments)
    assert "IXI-002" in str(raised.value)


def test_augmentation_is_seeded_and_keeps_brats_labels():
    images, label, brain = _tumour_case()
    region = tumor_region(images, label, brain, (1, 1, 1))
    outputs = []
    for seed in (0, 0, 1):
        augment = RandTumorAugment()
        augment.set_random_state(seed)
        outputs.append(augment(region))
    assert np.array_equal(outputs[0].label, outputs[1].label)
    assert np.array_equal(outputs[0].images, outputs[1].images)
    assert not np.array_equal(outputs[0].label, outputs[2].label)
    for out in outputs:
        assert set(np.unique(out.label)) == {0, 1, 2, 3}
        assert out.images.shape[1:] == out.label.shape == out.brain.shape


def test_augmentation_without_randomness_is_an_exact_flip():
    images, label, brain = _tumour_case()
    region = tumor_region(images, label, brain, (1, 1, 1))
    augment = RandTumorAugment(
        flip_prob=1.0, rotate_deg=0.0, scale_range=(1.0, 1.0), elastic_magnitude=(0.0, 0.0), gain_range=(1.0, 1.0)
    )
    augment.set_random_state(0)
    out = augment(region)
    pad = (out.label.shape[0] - region.label.shape[0]) // 2
    inner = tuple(slice(pad, -pad) for _ in range(3))
    assert np.array_equal(out.label[inner], region.label[::-1])
    assert np.allclose(out.images[(slice(None),) + inner], region.images[:, ::-1], atol=1e-3)


def test_tfaugd_writes_the_coarse_case_on_the_input_grid():
    images, label, brain = _tumour_case()
    bank = [tumor_region(images, label, brain, (1, 1, 1), case_id="src")]
    healthy, healthy_brain = _healthy()
    affine = torch.diag(torch.tensor([-1.0, -1.0, 1.0, 1.0]))
    data = {s: MetaTensor(torch.from_numpy(a[None]), affine=affine) for s, a in zip(SEQUENCES, healthy)}
    data["brain"] = MetaTensor(torch.from_numpy(healthy_brain[None]), affine=affine)
    transform = TFAugd(bank, (1, 1, 1), augment=RandTumorAugment()).set_random_state(5)
    out = transform(data)
    again = TFAugd(bank, (1, 1, 1), augment=RandTumorAugment()).set_random_state(5)(data)
    assert out["tf_aug"]["tumor_case"] == "src"
    for key in (*SEQUENCES, "label", "roi"):
        assert isinstance(out[key], MetaTensor) and out[key].shape == (1, *SHAPE)
        assert torch.equal(out[key].affine, affine)
        assert torch.equal(out[key].as_tensor(), again[key].as_tensor())
    assert out["label"].max() == 3
    with pytest.raises(InputError, match="tumour bank is empty"):
        TFAugd([], (1, 1, 1))


class _Fixed:
    """A generator whose uniform draw is a chosen lambda."""

    def __init__(self, value):
        self.value = value

    def uniform(self, low, high):
        assert low < 0 < high
        return self.value


def test_carvemix_carves_by_the_signed_distance():
    images_b, label_b, _ = _tumour_case()
    healthy, _ = _healthy()
    tumour = label_b > 0
    # lambda 0.5 mm: the tumour and the first shell outside it (distance 0 in the reference code's convention)
    mixed, label, lam = carvemix(healthy, np.zeros(SHAPE, np.uint8), images_b, label_b, (1, 1, 1), _Fixed(0.5))
    shell = _ball((14, 22, 18), 7) & ~tumour
    assert np.array_equal(label, label_b)  # labels copied voxelwise, nothing outside the tumour
    carved = np.any(mixed != np.stack(healthy), axis=0)
    assert np.all(carved[tumour]) and carved[shell].mean() > 0.5
    assert not np.any(carved[~_ball((14, 22, 18), 8)])
    # lambda -0.5 mm: the tumour without its boundary layer
    mixed, label, _ = carvemix(healthy, np.zeros(SHAPE, np.uint8), images_b, label_b, (1, 1, 1), _Fixed(-0.5))
    assert 0 < np.count_nonzero(label) < np.count_nonzero(label_b)
    assert np.array_equal(label[label > 0], label_b[label > 0])
    with pytest.raises(InputError, match="case B: label has no tumour voxel"):
        carvemix(healthy, np.zeros(SHAPE, np.uint8), images_b, np.zeros(SHAPE, np.uint8), (1, 1, 1), _Fixed(0.0))


def test_carvemix_draws_lambda_in_the_papers_range():
    images_b, label_b, _ = _tumour_case()
    healthy, _ = _healthy()
    rng = np.random.default_rng(0)
    draws = [carvemix(healthy, np.zeros(SHAPE, np.uint8), images_b, label_b, (1, 1, 1), rng)[2] for _ in range(20)]
    depth = 6.0  # deepest voxel of a radius-6 ball: 6 voxels from the background, 5 in the reference convention
    assert min(draws) >= -depth / 2 and max(draws) <= depth and min(draws) < 0 < max(draws)


# --- TF-GAN pieces -------------------------------------------------------------------------------------------


def _coarse_case(seed=0):
    images, label, brain = _tumour_case()
    bank = [tumor_region(images, label, brain, (1, 1, 1), case_id="src")]
    healthy, healthy_brain = _healthy()
    data = {s: a[None] for s, a in zip(SEQUENCES, healthy)}
    data["brain"] = healthy_brain[None]
    return TFAugd(bank, (1, 1, 1)).set_random_state(seed)(data), (np.stack(images), label)


def test_patches_hold_the_refiner_input_and_an_unpaired_real_tumour():
    from synthmr.methods.brain_tumor_fabrication import CONDITION_CHANNELS, TumorPatchesd

    coarse, real = _coarse_case()
    out = TumorPatchesd([real], (1, 1, 1), size=(24, 24, 24), jitter=2).set_random_state(0)(coarse)
    condition, label, roi = out["image"], out["label"], out["roi"]
    assert condition.shape == (CONDITION_CHANNELS, 24, 24, 24)
    assert out["real"].shape == (4, 24, 24, 24) and out["real_label"].shape == (1, 24, 24, 24)
    for channel, value in enumerate((1, 2, 3)):  # the label one-hot after the four sequences
        assert torch.equal(condition[4 + channel], (label[0] == value).float())
    assert torch.equal(condition[-1], roi[0])
    assert np.count_nonzero(out["label"]) > 0 and np.count_nonzero(out["real_label"]) > 0
    # scaled by the tissue outside the ROI (decision 6): background -1; this tumour, 2.1x a flat brain, above 1
    assert condition[:4].min() == -1.0 and 1.0 < condition[:4].max() < 1.5
    with pytest.raises(InputError, match="needs at least one annotated tumour case"):
        TumorPatchesd([], (1, 1, 1))


def test_patch_padding_where_the_box_leaves_the_volume():
    from synthmr.methods.brain_tumor_fabrication import _patch

    array = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    (patch,) = _patch([array], [-1.0], np.array([0, 0, 0]), (2, 2, 2))
    assert patch[0, 0, 0] == -1.0 and patch[1, 1, 1] == array[0, 0, 0]


def test_feature_extractor_refuses_missing_or_foreign_weights(tmp_path):
    from synthmr.methods.brain_tumor_fabrication import feature_segmenter, load_feature_extractor

    with pytest.raises(InputError, match="no such file.*train_extractor.yaml"):
        load_feature_extractor(tmp_path / "missing.pt")
    with pytest.raises(InputError, match="no such file"):
        load_feature_extractor(None)
    torch.save({"weight": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(InputError, match="feature extractor weights: .*train_extractor.yaml"):
        load_feature_extractor(tmp_path / "foreign.pt")
    network = feature_segmenter()
    torch.save(network.state_dict(), tmp_path / "f.pt")
    features = load_feature_extractor(tmp_path / "f.pt")(torch.zeros(1, 4, 16, 16, 16))
    assert [f.shape[1] for f in features] == [8, 16, 32, 64]


def test_subregion_loss_prefers_the_right_classes():
    from synthmr.methods.brain_tumor_fabrication import subregion_loss

    label = torch.zeros(1, 1, 8, 8, 8, dtype=torch.uint8)
    label[..., 4:, :, :] = 3
    right = torch.full((1, 4, 2, 2, 2), -10.0)
    right[:, 0, 0] = 10.0
    right[:, 3, 1] = 10.0
    wrong = right.flip(1)
    assert subregion_loss(right, label) < 0.01 < subregion_loss(wrong, label)


def test_non_tumour_hinge_covers_the_roi_outside_the_tumour_only():
    from synthmr.engines import GanStep
    from synthmr.methods.brain_tumor_fabrication import non_tumor_hinge

    coarse = torch.zeros(1, 4, 4, 4, 4)
    label = torch.zeros(1, 1, 4, 4, 4, dtype=torch.uint8)
    label[..., 0, :, :] = 2
    roi = torch.zeros(1, 1, 4, 4, 4)
    roi[..., :2, :, :] = 1.0
    condition = torch.cat([coarse, torch.zeros(1, 3, 4, 4, 4), roi], dim=1)
    fake = coarse.clone()
    fake[:, :, 0] = 5.0  # inside the tumour: free
    fake[:, :, 3] = 5.0  # outside the ROI: not this term's business
    step = GanStep(condition, fake, None, {"label": label, "roi": roi})
    assert non_tumor_hinge(0.1)(step) == 0
    fake[:, :, 1] = 0.6  # the ROI ring outside the tumour: 0.5 beyond the margin
    assert non_tumor_hinge(0.1)(step) == pytest.approx(0.5)


def _refiner(seed=0):
    from monai.networks.nets import UNet

    from synthmr.methods.brain_tumor_fabrication import CONDITION_CHANNELS
    from synthmr.nets import ROIRefiner

    torch.manual_seed(seed)
    refiner = ROIRefiner(UNet(3, CONDITION_CHANNELS, 8, channels=(8, 8, 8, 8), strides=(2, 2, 2), num_res_units=0), 8, 4)
    torch.nn.init.normal_(refiner.head.weight, std=0.5)
    return refiner


@pytest.mark.parametrize("spacing, model_spacing", [((1, 1, 1), None), ((1, 1, 1), (2, 2, 2)), ((2, 2, 2), (1, 1, 1))])
def test_refinement_changes_the_roi_and_nothing_else(spacing, model_spacing):
    from synthmr.methods.brain_tumor_fabrication import refine_roi

    coarse, _ = _coarse_case()
    images = np.stack([coarse[s][0] for s in SEQUENCES])
    roi = coarse["roi"][0]
    refined = refine_roi(_refiner(), images, coarse["label"][0], roi, spacing, model_spacing)
    assert refined.shape == images.shape and refined.dtype == np.float32
    outside = roi == 0
    assert np.array_equal(refined[:, outside], images[:, outside])  # bit for bit
    assert np.abs(refined[:, roi > 0.5] - images[:, roi > 0.5]).mean() > 1.0  # the refiner did act inside


def test_refinement_with_an_untrained_refiner_is_the_identity():
    from synthmr.methods.brain_tumor_fabrication import refine_roi

    coarse, _ = _coarse_case()
    images = np.stack([coarse[s][0] for s in SEQUENCES])
    refiner = _refiner()
    torch.nn.init.zeros_(refiner.head.weight)
    refined = refine_roi(refiner, images, coarse["label"][0], coarse["roi"][0], (1, 1, 1))
    assert np.allclose(refined, images, rtol=1e-5, atol=1e-3)


# --- New cases ------------------------------------------------------------------------------------------------


def _write_case(folder, images, masks, spacing=(1.0, 1.0, 1.0), origin=(3.0, -2.0, 5.0)):
    from synthmr.io import Volume, write_image

    item = {"case_id": folder.name}
    for key, array in {**dict(zip(SEQUENCES, images)), **masks}.items():
        write_image(Volume(array, spacing, origin, np.eye(3)), folder / f"{key}.nii.gz")
        item[key] = str(folder / f"{key}.nii.gz")
    return item


@pytest.fixture(scope="module")
def case_lists(tmp_path_factory):
    root = tmp_path_factory.mktemp("fabrication")
    images, brain = _healthy()
    healthy = [_write_case(root / f"healthy{i}", images, {"brain": brain}) for i in range(2)]
    t_images, label, t_brain = _tumour_case()
    tumours = [_write_case(root / "tumour0", t_images, {"label": label, "brain": t_brain})]
    return healthy, tumours


@pytest.mark.parametrize("mode", ["tf", "tf_aug", "carvemix", "pix2pix"])
def test_new_cases_are_written_on_the_healthy_grid_with_exact_labels(case_lists, tmp_path, mode):
    from synthmr.io import read_image
    from synthmr.methods.brain_tumor_fabrication import FabricatedCases

    healthy, tumours = case_lists
    maker = FabricatedCases(healthy, mode=mode, refiner=_refiner() if mode in ("tf", "pix2pix") else None)
    items = maker.generate(tumours, 3, tmp_path / "set", seed=4)
    again = maker.generate(tumours, 3, tmp_path / "again", seed=4)
    assert [i["case_id"] for i in items] == ["case_00000", "case_00001", "case_00002"]
    assert items[1]["healthy_case"] == "healthy1" and items[0]["tumor_case"] == "tumour0"
    reference = read_image(healthy[0]["t1n"])
    for item, other in zip(items, again):
        label = read_image(item["label"])
        assert label.same_grid(reference) and set(np.unique(label.array)) <= {0, 1, 2, 3}
        assert np.count_nonzero(label.array) > 0
        for key in SEQUENCES:
            image = read_image(item[key])
            assert image.same_grid(reference)
            assert np.array_equal(image.array, read_image(other[key]).array)  # the seed fixes the set
    assert (tmp_path / "set" / "datalist.json").is_file()
    synthetic = maker(tumours, 1, tmp_path / "harness", seed=0)
    assert set(synthetic[0]) == {"case_id", "image", "label"} and len(synthetic[0]["image"]) == 4


def test_new_cases_refuse_bad_inputs_and_leave_nothing(case_lists, tmp_path):
    from synthmr.methods.brain_tumor_fabrication import FabricatedCases

    healthy, tumours = case_lists
    for mode in ("tf", "pix2pix"):
        with pytest.raises(InputError, match="give it as the refiner"):
            FabricatedCases(healthy, mode=mode)
    with pytest.raises(InputError, match="mode must be one of"):
        FabricatedCases(healthy, mode="pix2pixhd")
    with pytest.raises(InputError, match="healthy datalist is empty"):
        FabricatedCases([], mode="tf_aug")
    maker = FabricatedCases([{k: v for k, v in healthy[0].items() if k != "t2f"}], mode="tf_aug")
    with pytest.raises(InputError, match="healthy case 'healthy0': lacks 't2f'"):
        maker.generate(tumours, 1, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # No brain mask (BraTS ships none): the voxels where a sequence is not 0 stand in for it.
    without_brains = FabricatedCases([{k: v for k, v in healthy[0].items() if k != "brain"}], mode="tf_aug")
    items = without_brains.generate([{k: v for k, v in t.items() if k != "brain"} for t in tumours], 1, tmp_path / "ok")
    assert len(items) == 1 and (tmp_path / "ok" / items[0]["label"]).is_file()
    with pytest.raises(InputError, match="source datalist is empty"):
        FabricatedCases(healthy, mode="tf_aug").generate([], 1, tmp_path / "out")


def test_annotated_cases_are_read_as_regions_and_real_arrays(case_lists):
    from synthmr.methods.brain_tumor_fabrication import load_annotated

    healthy, tumours = case_lists
    regions, reals = load_annotated(tumours)
    assert len(regions) == len(reals) == 1 and regions[0].case_id == "tumour0"
    assert reals[0][0].shape == (4, *SHAPE) and np.count_nonzero(reals[0][1]) == np.count_nonzero(regions[0].label)
    with pytest.raises(InputError, match="tumour case 'healthy0': lacks 'label'"):
        load_annotated(healthy)
    with pytest.raises(InputError, match="datalist is empty"):
        load_annotated([])


def test_tfaugd_centres_the_tumour_on_the_chosen_tissue():
    images, label, brain = _tumour_case()
    bank = [tumor_region(images, label, brain, (1, 1, 1))]
    healthy, healthy_brain = _healthy()
    tissue = np.where(healthy_brain > 0, 2, 0).astype(np.uint8)
    tissue[24:30, 20:25, 15:20] = 3
    data = {**{s: a for s, a in zip(SEQUENCES, healthy)}, "brain": healthy_brain, "tissue": tissue}
    for seed in range(3):
        out = TFAugd(bank, (1, 1, 1), centre_key="tissue", centre_values=(3,)).set_random_state(seed)(data)
        assert tissue[tuple(out["tf_aug"]["centre_voxel"])] == 3


def _inference_item(case_lists, **extra):
    healthy, tumours = case_lists
    item = {key: healthy[0][key] for key in (*SEQUENCES, "brain")}
    item.update({f"tumor_{key}": tumours[0][key] for key in (*SEQUENCES, "label", "brain")})
    return {"case_id": "case7", **item, **extra}


def test_fabricator_writes_the_case_on_the_healthy_grid_and_keeps_the_rest(case_lists, tmp_path):
    from synthmr.io import read_image
    from synthmr.methods.brain_tumor_fabrication import TumorFabricator

    item = _inference_item(case_lists)
    written = TumorFabricator(_refiner(), [item], tmp_path / "out", seed=3).run()[0]
    assert set(written) == {*SEQUENCES, "label"}
    label = read_image(written["label"])
    healthy = read_image(item["t1n"])
    assert label.same_grid(healthy) and label.array.dtype == np.uint8
    assert set(np.unique(label.array)) == {0, 1, 2, 3}
    # Far from the tumour (beyond the ROI margin) every voxel is the healthy scan's, bit for bit.
    from synthmr.methods.brain_tumor_fabrication import REGION_MARGIN_MM, _signed_distance

    far = _signed_distance(label.array > 0, label.spacing) > REGION_MARGIN_MM + 1
    for key in SEQUENCES:
        image = read_image(written[key])
        assert image.same_grid(healthy)
        assert np.array_equal(image.array[far], read_image(item[key]).array[far])
    with pytest.raises(InputError, match="exists"):
        TumorFabricator(_refiner(), [item], tmp_path / "out").run()


def test_fabricator_in_bf16_refines_in_bf16_and_keeps_the_rest_bit_for_bit(case_lists, tmp_path):
    from synthmr.io import read_image
    from synthmr.methods.brain_tumor_fabrication import TumorFabricator

    item = _inference_item(case_lists)
    refiner, dtypes = _refiner(), set()
    refiner.head.register_forward_hook(lambda module, args, output: dtypes.add(output.dtype))
    outputs = {}
    for precision in ("fp32", "bf16"):
        dtypes.clear()
        written = TumorFabricator(refiner, [item], tmp_path / precision, seed=3, precision=precision).run()[0]
        assert dtypes == {torch.float32 if precision == "fp32" else torch.bfloat16}
        outputs[precision] = {key: read_image(path).array for key, path in written.items()}
    from synthmr.methods.brain_tumor_fabrication import REGION_MARGIN_MM, _signed_distance

    label = outputs["fp32"]["label"]
    assert np.array_equal(label, outputs["bf16"]["label"])  # the same draws: augmentation stays in fp32
    far = _signed_distance(label > 0, read_image(written["label"]).spacing) > REGION_MARGIN_MM + 1
    for key in SEQUENCES:
        fp32, bf16 = outputs["fp32"][key], outputs["bf16"][key]
        assert (fp32 != bf16).any() and np.array_equal(fp32[far], bf16[far])
        assert np.abs(bf16 - fp32).max() <= 0.05 * (fp32.max() - fp32.min())


def test_refine_false_from_the_command_line_writes_the_coarse_case(case_lists, tmp_path):
    """`--refine false` arrives as the string "false": it must turn the refiner off, not on."""
    from synthmr.io import read_image
    from synthmr.methods.brain_tumor_fabrication import TumorFabricator

    item = _inference_item(case_lists)
    written = {refine: TumorFabricator(_refiner(), [item], tmp_path / refine, seed=3, refine=refine).run()[0]
               for refine in ("true", "false")}
    assert TumorFabricator(_refiner(), [item], tmp_path / "x", refine="false").refine is False
    differ = [not np.array_equal(read_image(written["true"][k]).array, read_image(written["false"][k]).array)
              for k in SEQUENCES]
    assert all(differ)


def test_fabricator_follows_the_placement_and_refuses_a_foreign_grid(case_lists, tmp_path):
    from synthmr.io import Volume, read_image, write_image
    from synthmr.methods.brain_tumor_fabrication import TumorFabricator

    placement = np.zeros(SHAPE, np.uint8)
    placement[26, 22, 18] = 1
    write_image(Volume(placement, (1, 1, 1), (3.0, -2.0, 5.0), np.eye(3)), tmp_path / "placement.nii.gz")
    item = _inference_item(case_lists, placement=str(tmp_path / "placement.nii.gz"))
    written = TumorFabricator(_refiner(), [item], tmp_path / "out", augment=None).run()[0]
    label = read_image(written["label"]).array
    assert np.allclose(np.argwhere(label > 0).mean(axis=0), (26, 22, 18), atol=1.0)
    write_image(Volume(placement, (2, 2, 2), (3.0, -2.0, 5.0), np.eye(3)), tmp_path / "coarse.nii.gz")
    with pytest.raises(InputError, match="placement .* is not on the grid of t1n"):
        TumorFabricator(_refiner(), [_inference_item(case_lists, placement=str(tmp_path / "coarse.nii.gz"))],
                        tmp_path / "other").run()
    assert not (tmp_path / "other").exists()


def test_pix2pix_pairs_hide_the_tumour_they_ask_for():
    from synthmr.methods.brain_tumor_fabrication import CONDITION_CHANNELS, PairedTumorPatchesd

    images, label, _ = _tumour_case()
    pairs = PairedTumorPatchesd([(np.stack(images), label)], (1, 1, 1), size=(24, 24, 24), jitter=0)
    out = pairs.set_random_state(0)({})
    condition, target, weight = out["image"], out["target"], out["roi"][0]
    assert condition.shape == (CONDITION_CHANNELS, 24, 24, 24) and target.shape == (4, 24, 24, 24)
    core = weight >= 1.0
    assert core[out["label"][0] > 0].all()  # the whole tumour is hidden
    assert torch.all(condition[:4][:, core] == 0)
    assert torch.equal(condition[:4][:, ~core], target[:, ~core])  # the surroundings are shown as they are
    assert torch.equal(condition[-1], weight)


def test_inpainting_refinement_does_not_see_the_coarse_tumour():
    from synthmr.methods.brain_tumor_fabrication import refine_roi

    coarse, _ = _coarse_case()
    images = np.stack([coarse[s][0] for s in SEQUENCES])
    roi = coarse["roi"][0]
    other = images.copy()
    other[:, roi >= 1.0] *= 3.0  # another tumour inside the core: the in-painting input is the same
    refiner = _refiner()
    a = refine_roi(refiner, images, coarse["label"][0], roi, (1, 1, 1), inpaint=True)
    b = refine_roi(refiner, other, coarse["label"][0], roi, (1, 1, 1), inpaint=True)
    core = roi >= 1.0
    assert np.abs(a[:, core] - b[:, core]).max() < 0.05 * np.abs(images[:, core]).max()
    assert np.array_equal(a[:, roi == 0], images[:, roi == 0])


def test_patch_report_tells_real_tumours_from_noise(case_lists, tmp_path, monkeypatch):
    from feature_stubs import MomentFeatures

    import synthmr.metrics.extractors as extractors
    from synthmr.io import Volume, write_image
    from synthmr.methods.brain_tumor_fabrication import format_patch_report, patch_quality_report

    monkeypatch.setattr(extractors, "get_extractor", lambda name, weights=None: MomentFeatures())
    monkeypatch.setattr(extractors, "describe_extractor", lambda module: "moments")
    _, tumours = case_lists
    noisy = dict(tumours[0])
    rng = np.random.default_rng(0)
    for key in SEQUENCES:
        path = tmp_path / f"{key}.nii.gz"
        write_image(Volume(rng.uniform(0, 1000, SHAPE).astype(np.float32), (1, 1, 1), (3.0, -2.0, 5.0), np.eye(3)), path)
        noisy[key] = str(path)
    report = patch_quality_report(tumours, {"same": tumours, "noise": [noisy]}, n_bootstrap=50,
                                  out=tmp_path / "report.json")
    same, noise = report["candidates"]["same"], report["candidates"]["noise"]
    assert same["kid"]["pooled"]["kid"] < noise["kid"]["pooled"]["kid"]
    assert all(v["error"] == 0.0 for v in same["contrast"].values() if v is not None)
    for result in (same, noise):  # each interval is that of the signed difference it is reported with
        for v in result["contrast"].values():
            if v is not None and v["interval"] is not None:
                assert v["interval"][0] <= v["difference"] <= v["interval"][1] and v["error"] == abs(v["difference"])
    assert same["contrast"]["t1c enhancing tumor / brain"]["mean"] == pytest.approx(1.5 + 0.2, rel=0.05)
    assert max(v["error"] for v in noise["contrast"].values() if v is not None) > 0.3
    assert (tmp_path / "report.json").is_file() and "noise" in format_patch_report(report)
    with pytest.raises(InputError, match="exists"):
        patch_quality_report(tumours, {"same": tumours}, out=tmp_path / "report.json")
