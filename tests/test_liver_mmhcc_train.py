"""Bundle liver_mmhcc_mask2mri, stage 2 training: the training pairs, the KID checkpoint selection and
configs/train.yaml + tiny_train.yaml end to end (with resume)."""

import json
import re

import numpy as np
import pytest
import torch
from bundle_contract import BundleFolder
from monai.data import Dataset

from synthmr.errors import InputError
from synthmr.io import read_image
from synthmr.methods import liver_mmhcc_mask2mri as method
from synthmr.phantom.dataset import phantom_datalist
from synthmr.transforms import IntensityScaling, RobustScaled

PHANTOM = {"dims": 2, "size": 128, "spacing": 3.0, "subtype": "mmhcc"}


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return phantom_datalist("liver", tmp_path_factory.mktemp("liver") / "cases", n=2, seed=210000, **PHANTOM)


def test_pairs_stack_conditions_and_targets_in_sequence_order(cases):
    pair = Dataset(cases, method.pair_transforms(fixed_canny=True))[0]
    image, target = pair["image"], pair["target"]
    assert set(pair) == {"image", "target"}
    assert image.shape == target.shape == (3, 128, 128) and target.dtype == torch.float32
    case = method._load_case(cases[0], [*method.SEQUENCES, "tumor"])
    scaled = RobustScaled(method.SEQUENCES, **method.INTENSITY_SCALING)(case)
    tumour = np.asarray(case["tumor"])[0] != 0
    assert tumour.any()
    for i, sequence in enumerate(method.SEQUENCES):
        assert np.allclose(target[i].numpy(), np.asarray(scaled[sequence])[0], atol=1e-5), sequence
        values = set(np.unique(image[i].numpy()).tolist())
        assert values <= {-1.0, 0.0, 1.0} and 0.0 in values  # background, edges, tumour
        assert (image[i].numpy()[tumour] == 1.0).all()
    assert target.min() >= -1 and target.max() <= 1
    # Fixed Canny parameters: the validation pairs are the same every time.
    again = Dataset(cases, method.pair_transforms(fixed_canny=True))[0]
    assert torch.equal(again["image"], image)


def test_the_training_scale_keeps_all_but_the_extreme_pixels_of_every_sequence(cases):
    # Decision 6: a generator can only write what the scale does not clip. The foreground's range clipped a third
    # of each fat-suppressed image (air and the dark body alike); the method's range keeps all but the extremes.
    def clipped_share(image, **options):
        scaling = IntensityScaling.fit(image, **options)
        back = scaling.inverse(np.clip(scaling.forward(image), -1.0, 1.0))
        return float((np.abs(back - image) > 1e-3 * image.max()).mean())

    for case in cases:
        for sequence in method.SEQUENCES:
            image = read_image(case[sequence]).array
            assert clipped_share(image, **method.INTENSITY_SCALING) <= 0.01, sequence
            assert clipped_share(image) > 0.2, sequence  # the foreground's range: why the method does not use it


def test_a_case_without_its_tumour_mask_is_one_clear_line(cases):
    item = {k: v for k, v in cases[0].items() if k != "tumor"}
    with pytest.raises(RuntimeError) as raised:  # MONAI's Compose wraps what a transform raises
        method.pair_transforms()(item)
    cause = raised.value.__cause__
    assert isinstance(cause, InputError)
    assert re.fullmatch(r"case 'case_\d+': datalist item lacks \['tumor'\] \(needs \[.*\]\)", str(cause)), str(cause)


def test_selection_needs_two_validation_cases(cases, tmp_path):
    with pytest.raises(InputError, match="at least 2 validation cases"):
        method.PooledKidSelection(torch.nn.Identity(), cases[:1], tmp_path, tmp_path / "model.pt")


def run_training(tmp_path, **overrides):
    return BundleFolder("liver_mmhcc_mask2mri").training_runs_one_epoch(tmp_path, **overrides)


def test_tiny_train_runs_selects_by_pooled_kid_and_resumes(tmp_path):
    workflow = run_training(tmp_path)
    trainer = workflow.parser.get_parsed_content("trainer")
    assert trainer.state.epoch == trainer.state.max_epochs == 1
    # The best model is the generator's state dict and loads into the config's ChannelwiseGenerators.
    network = workflow.parser.get_parsed_content("network_def", instantiate=True, lazy=False)
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    network.load_state_dict(state)
    trained = workflow.parser.get_parsed_content("generator").state_dict()
    assert all(torch.equal(state[k], trained[k].cpu()) for k in state)
    assert network.eval()(torch.zeros(1, 3, 128, 128)).shape == (1, 3, 128, 128)
    validation = tmp_path / "train" / "validation"
    selection = json.loads((validation / "selection.json").read_text())
    assert selection["best"] == "epoch_0001" and [r["epoch"] for r in selection["ranking"]] == ["epoch_0001"]
    report = json.loads((validation / "epoch_0001" / "report.json").read_text())
    assert report["extractor"].startswith("domain") and report["n_cases"] == 2
    assert report["n_images_per_set"] == 6  # 2 cases x 3 sequences, pooled
    assert set(report["sequences"]) == set(method.SEQUENCES)
    assert np.isfinite(report["kid"]) and 0 < report["l1"] <= 2
    last = tmp_path / "train" / "checkpoints" / "last.pt"
    assert last.is_file()

    # Resume for a second epoch: the trainer goes on from epoch 1, and epoch 1 stays in the ranking.
    workflow = run_training(tmp_path, resume_from=str(last), max_epochs=2)
    assert workflow.parser.get_parsed_content("trainer").state.epoch == 2
    selection = json.loads((validation / "selection.json").read_text())
    ranking = selection["ranking"]
    assert sorted(r["epoch"] for r in ranking) == ["epoch_0001", "epoch_0002"]
    assert [r["kid"] for r in ranking] == sorted(r["kid"] for r in ranking)  # lowest KID first
    assert selection["best"] == ranking[0]["epoch"]
    best = torch.load(validation / selection["best"] / "generator.pt", weights_only=True)
    assert all(torch.equal(best[k], v) for k, v in torch.load(tmp_path / "model.pt", weights_only=True).items())
