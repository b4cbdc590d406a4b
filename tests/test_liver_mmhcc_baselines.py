"""Bundle liver_mmhcc_mask2mri, the baselines: configs/train_mask_only.yaml (Pix2Pix without edge guidance) and
configs/train_cyclegan.yaml (CycleGAN) run end to end with tiny_train.yaml, and their best models load into the
inference network."""

import json
from pathlib import Path

import pytest
import torch
from bundle_contract import BundleFolder
from monai.bundle import ConfigParser

CONFIGS = Path(__file__).resolve().parents[1] / "bundles" / "liver_mmhcc_mask2mri" / "configs"


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    """One tiny phantom dataset for both baselines (simulated by the first run, reused by the others)."""
    return tmp_path_factory.mktemp("liver_baselines") / "data"


def run_training(overlay, tmp_path, dataset_dir, **overrides):
    folder = BundleFolder("liver_mmhcc_mask2mri")
    return folder.training_runs_one_epoch(tmp_path, overlay, "tiny_train", dataset_dir=dataset_dir, **overrides)


def inference_network():
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.yaml"))
    return parser.get_parsed_content("network_def", instantiate=True, lazy=False)


def assert_best_model_is_the_trained_generator(workflow, path):
    state = torch.load(path, weights_only=True)
    network = inference_network()
    network.load_state_dict(state)  # strict: the same architecture as the method's
    trained = workflow.parser.get_parsed_content("generator").state_dict()
    assert all(torch.equal(state[k], trained[k].cpu()) for k in state)
    assert network.eval()(torch.zeros(1, 3, 128, 128)).shape == (1, 3, 128, 128)


def test_mask_only_baseline_trains_on_masks_and_says_so(tmp_path, dataset_dir):
    workflow = run_training("train_mask_only", tmp_path, dataset_dir)
    assert workflow.parser.get_parsed_content("trainer").state.epoch == 1
    assert_best_model_is_the_trained_generator(workflow, tmp_path / "model.pt")
    selection = json.loads((tmp_path / "train" / "validation" / "selection.json").read_text())
    assert selection["edge_guidance"] is False and selection["best"] == "epoch_0001"
    # The training inputs are the tumour masks alone: no edge value (0) anywhere.
    batch = next(iter(workflow.parser.get_parsed_content("train_loader")))
    assert set(torch.unique(batch["image"]).tolist()) <= {-1.0, 1.0}


def test_cyclegan_baseline_trains_selects_and_resumes(tmp_path, dataset_dir):
    workflow = run_training("train_cyclegan", tmp_path, dataset_dir)
    parser = workflow.parser
    trainer = parser.get_parsed_content("trainer")
    assert type(trainer).__name__ == "CycleGanTrainer" and trainer.state.epoch == 1
    assert set(trainer.state.output) == {"loss", "g_loss", "d_loss", "g_adv", "cycle"}
    assert trainer.pool_b.size == 50 and trainer.unpair and trainer.identity_weight == 0
    # G and F: the same architecture, separate weights, both optimised by g_optimizer.
    g, f = parser.get_parsed_content("generator"), parser.get_parsed_content("inverse_generator")
    assert g is not f and g.state_dict().keys() == f.state_dict().keys()
    g_params = {id(p) for group in parser.get_parsed_content("g_optimizer").param_groups for p in group["params"]}
    assert g_params == {id(p) for p in [*g.parameters(), *f.parameters()]}
    # The discriminators are unconditional: each sees its one image, and each learnt (the last D step's gradients).
    for name in ("discriminator", "inverse_discriminator"):
        channelwise = parser.get_parsed_content(name)
        assert not channelwise.conditional
        for d in channelwise.discriminators:
            first = next(m for m in d.modules() if isinstance(m, torch.nn.Conv2d))
            assert first.in_channels == 1 and torch.count_nonzero(first.weight.grad)
    assert_best_model_is_the_trained_generator(workflow, tmp_path / "model.pt")
    selection = json.loads((tmp_path / "train" / "validation" / "selection.json").read_text())
    assert selection["edge_guidance"] is False and selection["best"] == "epoch_0001"
    last = tmp_path / "train" / "checkpoints" / "last.pt"
    saved = torch.load(last, weights_only=False)
    assert set(saved) == {
        "generator", "inverse_generator", "discriminator", "inverse_discriminator",
        "g_optimizer", "d_optimizer", "g_scheduler", "d_scheduler", "trainer",
    }
    assert saved["g_scheduler"]["last_epoch"] == 1

    # Resume for a second epoch: the epoch, the networks and the schedulers go on from the checkpoint.
    workflow = run_training("train_cyclegan", tmp_path, dataset_dir, resume_from=str(last), max_epochs=2)
    parser = workflow.parser
    assert parser.get_parsed_content("trainer").state.epoch == 2
    assert parser.get_parsed_content("g_scheduler").last_epoch == 2
    ranking = json.loads((tmp_path / "train" / "validation" / "selection.json").read_text())["ranking"]
    assert sorted(r["epoch"] for r in ranking) == ["epoch_0001", "epoch_0002"]
