"""brain_lesion2mpmri (SAMR) method module: the atlas (build, register to a subject, 15-channel slices), labels."""

import json
from pathlib import Path

import numpy as np
import pytest

from synthmr.errors import InputError
from synthmr.io import Volume, read_image
from synthmr.methods.brain_lesion2mpmri import (
    ATLAS_CHANNELS,
    LESION,
    SEQUENCES,
    AtlasToSubject,
    SAMRSliced,
    atlas_channels,
    atlas_file,
    atlas_key,
    build_atlas,
    load_atlas,
    one_hot_labels,
    pair_transforms,
    prepare_subjects,
)
from synthmr.phantom.dataset import phantom_datalist


@pytest.fixture(scope="module")
def subjects(tmp_path_factory):
    # 6 mm voxels (31 x 37 x 32): a few seconds for four subjects.
    return phantom_datalist("brain", tmp_path_factory.mktemp("brain") / "data", n=4, seed=210700, spacing=6.0)


@pytest.fixture(scope="module")
def atlas_dir(subjects, tmp_path_factory):
    folder = tmp_path_factory.mktemp("atlas") / "atlas"
    build_atlas(subjects[:3], folder, iterations=1)
    return folder


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def test_atlas_files_on_the_first_subjects_grid(subjects, atlas_dir):
    first = read_image(subjects[0]["t1n"])
    atlas = load_atlas(atlas_dir)
    assert set(atlas) == {*SEQUENCES, "brain"}
    for volume in atlas.values():
        assert volume.same_grid(first)
    assert 0.0 <= atlas["brain"].array.min() and atlas["brain"].array.max() <= 1.0
    description = json.loads((atlas_dir / "atlas.json").read_text())
    assert description["subjects"] == [s["case_id"] for s in subjects[:3]]
    assert description["drive"] == "t1n"


def test_atlas_is_not_overwritten_unless_asked(subjects, atlas_dir):
    before = atlas_file(atlas_dir, "t1n").read_bytes()
    with pytest.raises(InputError, match="exists"):
        build_atlas(subjects[:2], atlas_dir)
    assert atlas_file(atlas_dir, "t1n").read_bytes() == before


def test_atlas_registered_to_a_new_subject_matches_its_anatomy(subjects, atlas_dir):
    subject = subjects[3]
    lesion_map = read_image(subject["lesion_map"])
    registered = AtlasToSubject(load_atlas(atlas_dir))(lesion_map)
    assert list(registered) == list(SEQUENCES)
    real = read_image(subject["t1n"]).array
    for volume in registered.values():
        assert volume.same_grid(lesion_map)
    brain = lesion_map.array > 0
    atlas_t1 = registered["t1n"].array
    assert dice(atlas_t1 > 0.3 * atlas_t1.max(), brain) > 0.9
    assert np.corrcoef(atlas_t1.ravel(), real.ravel())[0, 1] > 0.9
    # Unregistered, the same atlas fits this subject worse.
    unregistered = load_atlas(atlas_dir)["t1n"].array
    assert np.corrcoef(unregistered.ravel(), real.ravel())[0, 1] < np.corrcoef(atlas_t1.ravel(), real.ravel())[0, 1]


def test_an_edited_lesion_map_reuses_its_brains_registration(subjects, atlas_dir, monkeypatch):
    from synthmr.methods import brain_lesion2mpmri as method

    calls = []
    register = method.register
    monkeypatch.setattr(method, "register", lambda *a, **k: calls.append(1) or register(*a, **k))
    lesion_map = read_image(subjects[3]["lesion_map"])
    to_subject = AtlasToSubject(load_atlas(atlas_dir))
    first = to_subject(lesion_map)
    relabelled = np.where(np.isin(lesion_map.array, LESION), 1, lesion_map.array)  # the lesion gone, same brain
    again = to_subject(lesion_map.with_array(relabelled))
    assert len(calls) == 1
    for name in SEQUENCES:
        np.testing.assert_array_equal(again[name].array, first[name].array)
    smaller = np.where(lesion_map.array > 0, lesion_map.array, 0)
    smaller[..., : smaller.shape[-1] // 2] = 0  # another brain: registered anew
    to_subject(lesion_map.with_array(smaller))
    assert len(calls) == 2


def test_atlas_to_subject_refuses_an_empty_brain(atlas_dir, subjects):
    lesion_map = read_image(subjects[3]["lesion_map"])
    with pytest.raises(InputError, match="brain mask is empty"):
        AtlasToSubject(load_atlas(atlas_dir))(lesion_map.with_array(np.zeros_like(lesion_map.array)))


def test_atlas_channels_stack_each_sequence_with_its_axial_neighbours():
    depth = 4
    atlas = {
        name: Volume(np.stack([np.full((2, 3), 10 * s + z, np.float32) for z in range(depth)], -1), (1, 1, 1), (0, 0, 0), np.eye(3))
        for s, name in enumerate(SEQUENCES)
    }
    middle = atlas_channels(atlas, 2)
    assert middle.shape == (ATLAS_CHANNELS, 2, 3) == (15, 2, 3)
    assert middle[:, 0, 0].tolist() == [10 * s + z for s in range(5) for z in (1, 2, 3)]
    first, last = atlas_channels(atlas, 0), atlas_channels(atlas, depth - 1)
    assert first[:3, 0, 0].tolist() == [0, 0, 1]
    assert last[:3, 0, 0].tolist() == [2, 3, 3]
    with pytest.raises(InputError, match="outside"):
        atlas_channels(atlas, depth)


def test_one_hot_labels():
    labels = np.array([[0, 1], [2, 4]])
    onehot = one_hot_labels(labels)
    assert onehot.shape == (5, 2, 2)
    assert np.array_equal(onehot.argmax(0), labels) and np.all(onehot.sum(0) == 1)
    assert one_hot_labels(np.zeros((2, 2))).sum() == 4  # a slice without brain is fine
    with pytest.raises(InputError, match=r"labels \[7\]"):
        one_hot_labels(np.array([[0, 7]]))


def test_build_atlas_names_bad_input(subjects, tmp_path):
    with pytest.raises(InputError, match="lacks \\['lesion_map'\\]"):
        build_atlas([{k: v for k, v in s.items() if k != "lesion_map"} for s in subjects[:2]], tmp_path / "a")
    with pytest.raises(InputError, match="registered by 'flair'"):
        build_atlas(subjects[:2], tmp_path / "b", drive="flair")
    with pytest.raises(InputError, match="at least 2"):
        build_atlas(subjects[:1], tmp_path / "c")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.fixture(scope="module")
def prepared(subjects, atlas_dir, tmp_path_factory):
    return prepare_subjects(subjects, atlas_dir, tmp_path_factory.mktemp("prepared") / "atlases")


def test_prepare_subjects_registers_the_atlas_once_per_subject(subjects, atlas_dir, prepared):
    for item, original in zip(prepared, subjects):
        grid = read_image(original["lesion_map"])
        for name in SEQUENCES:
            assert read_image(item[atlas_key(name)]).same_grid(grid)
        assert item["t1n"] == original["t1n"]
    stamp = {name: Path(prepared[0][atlas_key(name)]).stat().st_mtime_ns for name in SEQUENCES}
    again = prepare_subjects(subjects[:1], atlas_dir, Path(prepared[0][atlas_key("t1n")]).parent.parent)
    assert again[0] == prepared[0]
    assert {name: Path(again[0][atlas_key(name)]).stat().st_mtime_ns for name in SEQUENCES} == stamp


def test_pairs_are_lesion_slices_with_one_hot_labels_atlas_and_targets(prepared):
    item = prepared[0]
    labels = read_image(item["lesion_map"]).array
    lesion_slices = set(np.flatnonzero(np.isin(labels, LESION).any(axis=(0, 1))).tolist())
    transform = pair_transforms()
    transform.set_random_state(0)
    for _ in range(5):
        pair = transform(item)
        image, target = pair["image"].numpy(), pair["target"].numpy()
        assert image.shape[0] == 5 + ATLAS_CHANNELS and target.shape[0] == len(SEQUENCES)
        assert image.shape[1:] == target.shape[1:] and all(size % 8 == 0 for size in image.shape[1:])
        assert np.isin(image[:5], (0, 1)).all() and np.isin(image[:5].sum(0), (0, 1)).all()
        # One-hot on the subject's grid, nothing in the padding (no ROI there); padded targets are air.
        inside = image[:5].sum(0) == 1
        assert inside.sum() == np.prod(read_image(item["lesion_map"]).array.shape[:2])
        assert np.all(image[5:][:, ~inside] == 0) and np.all(target[:, ~inside] == -1)
        assert target.min() >= -1 and target.max() <= 1
    sliced = SAMRSliced(random=True)
    loaded = pair_transforms().transforms[:-2]  # load, type and scale: the volumes SAMRSliced receives
    data = item
    for step in loaded:
        data = step(data)
    draws = set()
    for seed in range(8):
        sliced.set_random_state(seed)
        draws.add(sliced(data)["slice_z"])
    assert draws <= lesion_slices and len(draws) > 1
    fixed = SAMRSliced(random=False)(data)["slice_z"]
    assert fixed == int(np.argmax(np.isin(labels, LESION).sum(axis=(0, 1))))


def test_aptw_is_scaled_by_its_fixed_percent_range(prepared):
    item = prepared[1]
    data = item
    for step in pair_transforms().transforms[:-2]:
        data = step(data)
    z = SAMRSliced(random=False)(data)["slice_z"]
    pair = pair_transforms(random=False)(item)
    raw = read_image(item["aptw"]).array[..., z]
    target = pair["target"].numpy()[SEQUENCES.index("aptw")]
    x0 = (target.shape[0] - raw.shape[0]) // 2
    y0 = (target.shape[1] - raw.shape[1]) // 2
    inner = target[x0 : x0 + raw.shape[0], y0 : y0 + raw.shape[1]]
    assert np.allclose(inner, np.clip(raw / 5.0, -1, 1), atol=1e-5)


def test_one_samr_training_epoch_with_every_loss_term(prepared):
    """The method's pieces train together: label-wise discriminators on 25 channels, squared-error feature
    matching over six discriminators, and the consistency term through a frozen segmenter."""
    import torch
    from monai.data import DataLoader, Dataset

    from synthmr.engines import PairedGanTrainer, on_features
    from synthmr.losses import AdversarialLoss, FeatureMatchingLoss
    from synthmr.methods.brain_lesion2mpmri import ROIS, consistency_term
    from synthmr.nets import LabelwiseDiscriminator, SAMRGenerator

    torch.manual_seed(0)
    generator = SAMRGenerator(channels=2, n_downsampling=3, n_blocks=1)
    discriminator = LabelwiseDiscriminator(25, rois=ROIS, channels=4)
    segmenter = torch.nn.Conv2d(5, 5, 3, padding=1)
    segmenter_before = segmenter.weight.detach().clone()
    loader = DataLoader(Dataset(prepared[:2], pair_transforms()), batch_size=2)
    terms = {
        "feature_matching": (5.0, on_features(FeatureMatchingLoss(6, 3, weight=1.0, distance="l2", pix2pixhd_weights=False))),
        "consistency": (1.0, consistency_term(segmenter)),
    }
    before = [p.detach().clone() for p in generator.parameters()]
    trainer = PairedGanTrainer(
        "cpu", 1, loader, generator, discriminator,
        torch.optim.Adam(generator.parameters(), 2e-4), torch.optim.Adam(discriminator.parameters(), 2e-4),
        AdversarialLoss("vanilla"), loss_terms=terms,
    )
    trainer.run()
    output = trainer.state.output
    assert all(np.isfinite(output[key]) for key in ("g_loss", "d_loss", "feature_matching", "consistency"))
    assert 0 < output["consistency"] <= 1  # a Dice loss
    assert any(not torch.equal(a, b) for a, b in zip(before, generator.parameters()))
    assert torch.equal(segmenter.weight, segmenter_before)  # frozen


def test_inference_conditions_match_the_training_pairs(prepared, atlas_dir):
    """The same atlas registration, scaling and channel layout at inference as in training (unpadded region)."""
    from synthmr.methods.brain_lesion2mpmri import InferenceConditions

    item = prepared[2]
    lesion_map = read_image(item["lesion_map"])
    conditions, scalings = InferenceConditions(atlas_dir)({"lesion_map": lesion_map})
    assert conditions.shape == (5 + ATLAS_CHANNELS, *lesion_map.array.shape)
    assert set(scalings) == set(SEQUENCES)
    data = item
    for step in pair_transforms(random=False).transforms[:-2]:
        data = step(data)
    pair = SAMRSliced(random=False)(data)
    z, image = pair["slice_z"], pair["image"].numpy()
    x, y = lesion_map.array.shape[:2]
    x0, y0 = (image.shape[1] - x) // 2, (image.shape[2] - y) // 2
    np.testing.assert_allclose(image[:, x0 : x0 + x, y0 : y0 + y], conditions[..., z], atol=1e-4)
    # Training targets map back to the real sequence through the scalings inference returns.
    t1n = read_image(item["t1n"]).array[..., z]
    back = scalings["t1n"].inverse(pair["target"].numpy()[0, x0 : x0 + x, y0 : y0 + y])
    inside = np.abs(pair["target"].numpy()[0, x0 : x0 + x, y0 : y0 + y]) < 1  # not clipped
    np.testing.assert_allclose(back[inside], t1n[inside], rtol=1e-3, atol=1e-2)


def test_a_lesion_map_alone_gives_five_sequences_on_its_grid(prepared, atlas_dir, tmp_path):
    from synthmr.inference import Synthesizer
    from synthmr.methods.brain_lesion2mpmri import InferenceConditions
    from synthmr.nets import SAMRGenerator

    item = {"lesion_map": prepared[3]["lesion_map"], "case_id": "subject"}
    network = SAMRGenerator(channels=2, n_downsampling=3, n_blocks=1)
    written = Synthesizer(network, [item], ["lesion_map"], list(SEQUENCES), tmp_path / "out", labelmaps=["lesion_map"],
                          conditions=InferenceConditions(atlas_dir), roi_size=(64, 64))()[0]
    grid = read_image(item["lesion_map"])
    assert set(written) == set(SEQUENCES)
    for path in written.values():
        image = read_image(path)
        assert image.same_grid(grid) and np.isfinite(image.array).all()


def test_segmenter_pairs_turn_a_slice_around(prepared, tmp_path):
    import torch

    from synthmr.engines.base import export_network_weights
    from synthmr.methods.brain_lesion2mpmri import SegmentationPairsd, consistency_term

    pair = pair_transforms(random=False)(prepared[0])
    turned = SegmentationPairsd()(pair)
    assert set(turned) == {"image", "label"}
    assert torch.equal(turned["image"], pair["target"])
    assert turned["label"].shape == (1, *pair["image"].shape[1:])
    assert torch.equal(turned["label"][0], pair["image"][:5].argmax(0))
    network = torch.nn.Conv2d(5, 5, 1)
    torch.save({"segmenter": network.state_dict()}, tmp_path / "best.pt")
    exported = export_network_weights(tmp_path / "best.pt", tmp_path / "segmenter.pt", "segmenter")
    saved = torch.load(exported, weights_only=True)
    assert torch.equal(saved["weight"], network.weight)
    with pytest.raises(InputError, match="no segmenter checkpoint"):
        export_network_weights(tmp_path / "missing.pt", tmp_path / "x.pt", "segmenter")
    with pytest.raises(InputError, match="train_segmenter.yaml.*--segmenter_weights null"):
        consistency_term(network, tmp_path / "missing.pt")


def test_without_atlas_input_the_generator_sees_the_lesion_map_alone(prepared, atlas_dir):
    from synthmr.methods.brain_lesion2mpmri import InferenceConditions

    pair = pair_transforms(random=False, atlas_input=False)(prepared[0])
    with_atlas = pair_transforms(random=False)(prepared[0])
    assert pair["image"].shape[0] == 5 and np.array_equal(pair["image"].numpy(), with_atlas["image"].numpy()[:5])
    assert np.array_equal(pair["target"].numpy(), with_atlas["target"].numpy())  # the atlas still sets the scale
    conditions, _ = InferenceConditions(atlas_dir, atlas_input=False)({"lesion_map": read_image(prepared[0]["lesion_map"])})
    assert conditions.shape[0] == 5


BUNDLE_CONFIGS = Path(__file__).resolve().parents[1] / "bundles" / "brain_lesion2mpmri" / "configs"
VARIANTS = ["", "no_atlas", "no_labelwise", "no_stretch_out", "no_consistency", "pix2pix", "pix2pixhd"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_training_variant_wires_generator_and_discriminator(variant):
    """The method, its four ablations and the two baselines: the generator takes the variant's input, and the
    discriminator its [input, images] (a wrong channel count or size multiple would fail here)."""
    import torch
    from monai.bundle import ConfigParser

    files = [BUNDLE_CONFIGS / "train.yaml"] + ([BUNDLE_CONFIGS / f"train_{variant}.yaml"] if variant else [])
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    channels, multiple = parser.get_parsed_content("input_channels"), parser.get_parsed_content("size_multiple")
    generator, discriminator = parser.get_parsed_content("network_def"), parser.get_parsed_content("discriminator_def")
    x = torch.zeros(1, channels, 6 * multiple, 7 * multiple)
    with torch.no_grad():
        images = generator.eval()(x)
        assert images.shape == (1, 5, *x.shape[2:])
        outputs = discriminator.eval()(torch.cat([x, images], dim=1))
    assert outputs
    if variant in ("no_atlas", "pix2pix", "pix2pixhd"):
        assert channels == 5
    assert parser.get_parsed_content("best_model").endswith(".pt")


def test_manipulations_keep_the_lesion_in_the_brain_and_follow_the_seed(subjects):
    from synthmr.methods.brain_lesion2mpmri import LESION, manipulate_lesion

    maps = [read_image(s["lesion_map"]) for s in subjects]
    brain = maps[0].array > 0
    seen = set()
    for seed in range(12):
        edited, drawn = manipulate_lesion(maps[0], maps[1:], np.random.default_rng(seed))
        again, _ = manipulate_lesion(maps[0], maps[1:], np.random.default_rng(seed))
        assert np.array_equal(edited.array, again.array)
        assert np.array_equal(edited.array > 0, brain)  # the brain stays, the lesion stays inside it
        assert np.isin(edited.array, LESION).any()
        seen.add(drawn["edit"])
        if drawn["edit"] == "scale":
            assert 0.5 <= drawn["factor"] <= 2.0
    assert seen == {"mirror", "scale", "transplant"}
    _, drawn = manipulate_lesion(maps[0], [], np.random.default_rng(0))
    assert drawn["edit"] != "transplant"


def test_new_lesion_cases_are_written_whole_and_reproducibly(prepared, atlas_dir, tmp_path):
    import torch

    from synthmr.methods.brain_lesion2mpmri import NewLesionCases
    from synthmr.nets import SAMRGenerator

    torch.manual_seed(0)
    generation = NewLesionCases(SAMRGenerator(channels=2, n_downsampling=3, n_blocks=1), atlas_dir)
    items = generation.generate(prepared[:2], 3, tmp_path / "set", seed=7)
    assert [item["case_id"] for item in items] == ["case_00000", "case_00001", "case_00002"]
    assert [item["source_case"] for item in items] == [prepared[0]["case_id"], prepared[1]["case_id"], prepared[0]["case_id"]]
    listed = json.loads((tmp_path / "set" / "datalist.json").read_text())["training"]
    assert [item["seed"] for item in listed] == [item["seed"] for item in items]
    for item, source in zip(items, [prepared[0], prepared[1], prepared[0]]):
        grid = read_image(source["lesion_map"])
        for key in ["lesion_map", *SEQUENCES]:
            assert read_image(item[key]).same_grid(grid)
    again = generation.generate(prepared[:2], 2, tmp_path / "again", seed=7)
    for first, second in zip(items, again):
        assert np.array_equal(read_image(first["lesion_map"]).array, read_image(second["lesion_map"]).array)
    with pytest.raises(InputError, match="exists"):
        generation.generate(prepared[:2], 1, tmp_path / "set", seed=7)
    with pytest.raises(InputError, match="source datalist is empty"):
        generation.generate([], 1, tmp_path / "none")
    assert not (tmp_path / "none").exists()
    # The downstream-benefit harness's view: the five sequences as one multi-channel image, the map as its labels.
    (tmp_path / "benefit").mkdir()
    benefit_items = generation(prepared[:2], 2, tmp_path / "benefit", 7)
    assert [item["image"] for item in benefit_items] == [
        [str(tmp_path / "benefit" / f"case_0000{i}" / f"{s}.nii.gz") for s in SEQUENCES] for i in range(2)]
    assert [Path(item["label"]).name for item in benefit_items] == ["lesion_map.nii.gz"] * 2
    assert generation.describe()["images"] == list(SEQUENCES)


def test_benefit_config_gives_the_harness_five_channel_subjects(subjects, tmp_path):
    from monai.bundle import ConfigParser

    from synthmr.methods.brain_lesion2mpmri import NewLesionCases

    bundle = Path(__file__).resolve().parents[1] / "bundles" / "brain_lesion2mpmri"
    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / "inference.yaml"), str(bundle / "configs" / "benefit.yaml")])
    parser.update({"bundle_root": str(bundle), "device": "$torch.device('cpu')", "pool_cases": list(subjects[:2]),
                   "test_cases": list(subjects[2:])})
    real, test = parser.get_parsed_content("real"), parser.get_parsed_content("test")
    assert [item["image"] for item in real] == [[item[s] for s in SEQUENCES] for item in subjects[:2]]
    assert [item["label"] for item in test["brain"]] == [item["lesion_map"] for item in subjects[2:]]
    assert parser.get_parsed_content("labels") == {"edema": 2, "cavity": 3, "tumor": 4}
    assert parser.get_parsed_content("background") == [1]  # normal brain: lesion crops, not brain crops
    assert parser.get("benefit#background") == "@background"
    assert isinstance(parser.get_parsed_content("synthesize"), NewLesionCases)
    assert parser.get_parsed_content("shares") == [0, 0.25, 0.5, 1]


def test_inference_config_builds_the_trained_network():
    """inference.yaml's network_def is train.yaml's (the weights must load), and its inferer pads with 0."""
    from monai.bundle import ConfigParser

    parsers = {}
    for name in ("train", "inference"):
        parsers[name] = ConfigParser()
        parsers[name].read_config(str(BUNDLE_CONFIGS / f"{name}.yaml"))
    trained = parsers["train"].get_parsed_content("network_def")
    inferred = parsers["inference"].get_parsed_content("network_def")
    assert trained.state_dict().keys() == inferred.state_dict().keys()
    assert all(a.shape == b.shape for a, b in zip(trained.state_dict().values(), inferred.state_dict().values()))
    assert parsers["inference"].get_parsed_content("inferer").cval == 0.0


def test_roi_contrasts_of_real_phantom_subjects_show_each_lesion_class(subjects):
    from synthmr.methods.brain_lesion2mpmri import ROI_CONTRASTS, roi_contrasts

    found = []
    for subject in subjects:
        labels = read_image(subject["lesion_map"]).array
        values = roi_contrasts({s: read_image(subject[s]).array for s in SEQUENCES}, labels)
        assert set(values) == set(ROI_CONTRASTS)
        assert values["Gd-T1w tumour / normal brain"] > 1.1  # enhancing tumour
        assert values["FLAIR edema / normal brain"] > 1.1 and values["T2w edema / normal brain"] > 1.1
        assert values["APTw tumour - normal brain (% points)"] > 1.0  # 3-4 % against 0-1 %
        assert (values["FLAIR cavity / normal brain"] is None) == (not np.any(labels == 3))
        found.append(values)
    # A missing sequence or region is None, not an error; a wrong shape is.
    labels = read_image(subjects[0]["lesion_map"]).array
    assert roi_contrasts({}, labels)["Gd-T1w tumour / normal brain"] is None
    with pytest.raises(InputError, match="shape"):
        roi_contrasts({"t1c": np.ones((2, 2, 2))}, labels)


def test_quality_report_scores_real_copies_perfectly_and_sees_a_missing_enhancement(subjects, tmp_path):
    from feature_stubs import MomentFeatures

    from synthmr.io import write_image
    from synthmr.methods.brain_lesion2mpmri import quality_report
    from synthmr.metrics.quality import format_quality_table

    real = subjects[:3]
    copies = [{s: item[s] for s in SEQUENCES} for item in real]
    flattened = []
    for item in real:
        case = {}
        for s in SEQUENCES:
            volume = read_image(item[s])
            array = volume.array.copy()
            if s == "t1c":  # the tumour drawn like normal brain: no enhancement
                labels = read_image(item["lesion_map"]).array
                array[labels == 4] = array[labels == 1].mean()
            case[s] = str(write_image(volume.with_array(array), tmp_path / item["case_id"] / f"{s}.nii.gz"))
        flattened.append(case)
    report = quality_report(real, {"copies": copies, "no_enhancement": flattened}, extractor=MomentFeatures(),
                            n_bootstrap=20, out=tmp_path / "report.json")
    copies_result, flat_result = report["candidates"]["copies"], report["candidates"]["no_enhancement"]
    for check, result in copies_result["contrast"].items():
        assert result["mean_error"] in (0.0, None), check
    assert copies_result["paired"]["pooled"]["ssim"]["mean"] == pytest.approx(1.0)
    enhancement = flat_result["contrast"]["Gd-T1w tumour / normal brain"]
    assert enhancement["n_cases"] == 3 and enhancement["mean_error"] > 0.5
    assert flat_result["contrast"]["FLAIR edema / normal brain"]["mean_error"] == pytest.approx(0.0)
    assert json.loads((tmp_path / "report.json").read_text())["contrast"]["features"]
    table = format_quality_table(report).splitlines()  # what evaluate.yaml prints
    assert next(line for line in table if line.startswith("metric")).split() == ["metric", "copies", "no_enhancement"]
    row = next(line for line in table if line.startswith("contrast error Gd-T1w tumour / normal brain (t1c ratio)"))
    assert row.split()[-3:-1] == [f"{enhancement['mean_error']:.3f}", f"[{enhancement['interval'][0]:.3f},"]


def test_selection_leaves_the_untrained_padding_out(prepared, monkeypatch, tmp_path):
    """Pairs mark their padding (valid 0); the selection gives the synthetic images the real values there, so a
    generator's arbitrary padding changes neither KID nor L1."""
    import types

    import torch
    from feature_stubs import MomentFeatures

    import synthmr.metrics.extractors as extractors
    from synthmr.engines.selection import PooledKidSelection

    pair = pair_transforms(random=False)(prepared[0])
    valid = pair["valid"].numpy()[0]
    x, y = read_image(prepared[0]["lesion_map"]).array.shape[:2]
    assert valid.sum() == x * y and valid.shape == pair["image"].shape[1:]
    monkeypatch.setattr(extractors, "get_extractor", lambda name, weights=None: MomentFeatures())
    monkeypatch.setattr(extractors, "describe_extractor", lambda module: "moments")

    class CopyWithNoisyPadding(torch.nn.Module):
        def __init__(self, targets):
            super().__init__()
            self.targets = targets

        def forward(self, x):
            noise = torch.rand_like(self.targets) * 2 - 1
            return torch.where(self.valid, self.targets, noise)

    scores = {}
    for valid_key in (None, "valid"):
        selection = PooledKidSelection(torch.nn.Identity(), prepared[:3], pair_transforms(random=False),
                                       tmp_path / str(valid_key), tmp_path / f"{valid_key}.pt", channels=SEQUENCES,
                                       n_bootstrap=0, valid_key=valid_key)
        selection._prepare()
        generator = CopyWithNoisyPadding(selection._pairs[1])
        generator.valid = torch.stack([pair_transforms(random=False)(s)["valid"] for s in prepared[:3]]).bool()
        engine = types.SimpleNamespace(state=types.SimpleNamespace(epoch=1, device="cpu"))
        scores[valid_key] = selection.evaluate(engine, generator, tmp_path / f"epoch_{valid_key}")
    assert scores["valid"]["l1"] == 0.0
    assert scores[None]["l1"] > 0.05


def test_evaluate_config_compares_the_candidates_on_held_out_subjects(subjects, atlas_dir, tmp_path, monkeypatch):
    """evaluate.yaml end to end on three 6 mm subjects: SAMR and pix2pix (untrained weights), each subject's atlas
    registered once for both, the report with every ROI contrast check per candidate."""
    import torch
    from feature_stubs import MomentFeatures
    from monai.bundle import ConfigParser

    from synthmr.methods import brain_lesion2mpmri as method

    calls = []
    register = method.register
    monkeypatch.setattr(method, "register", lambda *a, **k: calls.append(1) or register(*a, **k))
    bundle = Path(__file__).resolve().parents[1] / "bundles" / "brain_lesion2mpmri"
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "evaluate.yaml"))
    parser.update({"bundle_root": str(bundle), "device": "$torch.device('cpu')", "output_dir": str(tmp_path / "out"),
                   "test_datalist": list(subjects[:3]), "atlas_dir": str(atlas_dir), "candidates": ["samr", "pix2pix"],
                   "fid_extractor": MomentFeatures(), "n_bootstrap": 10})
    torch.manual_seed(0)
    for name in ("samr", "pix2pix"):
        torch.save(parser.get_parsed_content(f"networks#{name}").state_dict(), tmp_path / f"{name}.pt")
        parser[f"checkpoints#{name}"] = str(tmp_path / f"{name}.pt")
    report = parser.get_parsed_content("report")
    assert list(report["candidates"]) == ["samr", "pix2pix"] and report["n_cases"] == 3
    assert len(calls) == 3  # one registration per subject, not per subject and candidate
    for result in report["candidates"].values():
        assert set(result["contrast"]) == set(method.ROI_CONTRASTS)
    for name in ("samr", "pix2pix"):
        for item in subjects[:3]:
            out = tmp_path / "out" / "synthetic" / name / item["case_id"]
            assert read_image(out / "t1c.nii.gz").same_grid(read_image(item["lesion_map"]))
    assert (tmp_path / "out" / "report.json").is_file()
