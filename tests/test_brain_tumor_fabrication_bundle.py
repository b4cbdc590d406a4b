"""brain_tumor_fabrication's configs run: the extractor F, TF-GAN and the Pix2Pix baseline train (tiny runs on 6 mm
phantom subjects) and inference.yaml turns a healthy scan and a tumour case into the tumour-bearing case with the
trained weights."""

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow

from synthmr.io import read_image

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "brain_tumor_fabrication"
CPU = "$torch.device('cpu')"


def _run(configs, workflow_type="train", **overrides):
    workflow = ConfigWorkflow(
        config_file=[str(BUNDLE / "configs" / f"{name}.yaml") for name in configs],
        workflow_type=workflow_type,
        bundle_root=str(BUNDLE),
        device=CPU,
        **overrides,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return workflow


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tf_bundle") / "data"


def test_extractor_trains_and_loads(data_dir, tmp_path):
    from synthmr.methods.brain_tumor_fabrication import load_feature_extractor

    weights = tmp_path / "extractor" / "feature_extractor.pt"
    _run(["train", "train_extractor", "tiny_train"], output_dir=str(tmp_path), dataset_dir=str(data_dir),
         extractor_weights=str(weights))
    features = load_feature_extractor(weights)(torch.zeros(1, 4, 16, 16, 16))
    assert len(features) == 4


@pytest.fixture(scope="module")
def tiny_model(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("tf_train")
    workflow = _run(["train", "tiny_train"], output_dir=str(out / "train"), dataset_dir=str(data_dir),
                    best_model=str(out / "model.pt"))
    trainer = workflow.parser.get_parsed_content("trainer")
    assert trainer.state.epoch == trainer.state.max_epochs == 1
    assert (out / "train" / "checkpoints" / "last.pt").is_file()
    return out / "model.pt"


def test_tf_gan_trains_into_the_inference_network(tiny_model):
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.yaml"))
    parser.get_parsed_content("network_def").load_state_dict(torch.load(tiny_model, weights_only=True))


def test_pix2pix_baseline_trains(data_dir, tmp_path):
    workflow = _run(["train", "train_pix2pix", "tiny_train"], output_dir=str(tmp_path / "train"),
                    dataset_dir=str(data_dir), best_model=str(tmp_path / "pix2pix.pt"))
    network = workflow.parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(tmp_path / "pix2pix.pt", weights_only=True))


def test_inference_writes_the_fabricated_case_on_the_healthy_grid(data_dir, tiny_model, tmp_path):
    from synthmr.methods.brain_tumor_fabrication import REGION_MARGIN_MM, SEQUENCES, _signed_distance
    from synthmr.phantom.dataset import phantom_datalist

    healthy = phantom_datalist("brain", data_dir / "healthy", n=2, seed=0, tumor_probability=0.0, dims=3, spacing=6.0)
    tumours = phantom_datalist("brain", data_dir / "annotated", n=2, seed=50000, cavity_probability=0.0, dims=3,
                               spacing=6.0)
    item = {"case_id": "c1", **{s: healthy[0][s] for s in (*SEQUENCES, "brain")},
            **{f"tumor_{s}": tumours[0][s] for s in (*SEQUENCES, "label", "brain")}}
    _run(["inference"], "inference", input=item, output_dir=str(tmp_path / "out"), checkpoint=str(tiny_model),
         model_spacing=[6.0, 6.0, 6.0])
    label = read_image(tmp_path / "out" / "c1" / "label.nii.gz")
    reference = read_image(healthy[0]["t1n"])
    assert label.same_grid(reference) and np.count_nonzero(label.array) > 0
    far = _signed_distance(label.array > 0, label.spacing) > REGION_MARGIN_MM + 6.0
    for sequence in SEQUENCES:
        image = read_image(tmp_path / "out" / "c1" / f"{sequence}.nii.gz")
        assert image.same_grid(reference)
        assert np.array_equal(image.array[far], read_image(healthy[0][sequence]).array[far])


def test_evaluate_compares_the_candidates_on_held_out_subjects(tiny_model, tmp_path, monkeypatch):
    """evaluate.yaml end to end on two 6 mm held-out pairs: TF with the tiny weights, TF-Aug alone, CarveMix."""
    import json

    from feature_stubs import MomentFeatures

    import synthmr.metrics.extractors as extractors

    monkeypatch.setattr(extractors, "get_extractor", lambda name, weights=None: MomentFeatures())
    monkeypatch.setattr(extractors, "describe_extractor", lambda module: "moments")
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "evaluate.yaml"))
    parser.update({"bundle_root": str(BUNDLE), "device": CPU, "output_dir": str(tmp_path / "out"),
                   "dataset_dir": str(tmp_path / "data"), "phantom_options": {"dims": 3, "spacing": 6.0},
                   "model_spacing": [6.0, 6.0, 6.0], "n_test_cases": 2, "n_bootstrap": 20,
                   "candidates": ["tf", "tf_aug", "carvemix"], "checkpoints#tf": str(tiny_model)})
    report = parser.get_parsed_content("report")
    assert set(report["candidates"]) == {"tf", "tf_aug", "carvemix"}
    for result in report["candidates"].values():
        assert result["n_cases"] == 2 and result["kid"]["pooled"]["interval"] is not None
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["n_real_cases"] == 2
    fabricated = sorted((tmp_path / "out" / "fabricated" / "tf").glob("case_*/label.nii.gz"))
    assert len(fabricated) == 2


def test_benefit_runs_tf_enrichment_and_scores_brats_regions(data_dir, tiny_model, tmp_path):
    """benefit.yaml end to end, tiny: 2 real 6 mm subjects with and without 2 TF-fabricated ones, scored on the
    whole tumour, tumour core and enhancing tumour of 2 test subjects."""
    from synthmr.methods.brain_tumor_fabrication import FabricatedCases

    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / "inference.yaml"), str(BUNDLE / "configs" / "benefit.yaml")])
    parser.update({
        "bundle_root": str(BUNDLE), "device": CPU, "benefit_dir": str(tmp_path / "work"),
        "benefit_data_dir": str(data_dir), "phantom_options": {"dims": 3, "spacing": 6.0},
        "model_spacing": [6.0, 6.0, 6.0], "n_pool": 2, "n_test": 2, "n_healthy": 2, "checkpoint": str(tiny_model),
        "n_real": [2], "shares": [0, 1], "seeds": [0],
        "segmentation#iterations": 2, "segmentation#roi_size": 16, "segmentation#filters": [4, 8, 16, 32],
    })
    assert isinstance(parser.get_parsed_content("synthesize"), FabricatedCases)
    parser.get_parsed_content("run")
    report = parser.get_parsed_content("benefit")  # finished runs are read back, not trained again
    arms = report["domains"]["brain"]["arms"]
    assert [(arm["n_real"], arm["n_synthetic"]) for arm in arms] == [(2, 0), (2, 2)]
    assert set(arms[0]["labels"]) == {"whole tumor", "tumor core", "enhancing tumor"}
    assert report["settings"]["synthesizer"]["mode"] == "tf"
    assert len(list((tmp_path / "work" / "synthetic" / "2_1_0").glob("case_*/label.nii.gz"))) == 2


def test_generate_writes_a_fabricated_set(data_dir, tiny_model, tmp_path, capsys):
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / "inference.yaml"), str(BUNDLE / "configs" / "generate.yaml")])
    healthy = str(data_dir / "healthy")
    parser.update({
        "bundle_root": str(BUNDLE), "device": CPU, "checkpoint": str(tiny_model), "model_spacing": [6.0, 6.0, 6.0],
        "generate_sources": f"$synthmr.phantom.dataset.phantom_datalist('brain', '{data_dir / 'annotated'}', n=2, "
                            "seed=50000, cavity_probability=0.0, dims=3, spacing=6.0)",
        "generate_healthy": f"$synthmr.phantom.dataset.phantom_datalist('brain', '{healthy}', n=2, seed=0, "
                            "tumor_probability=0.0, dims=3, spacing=6.0)",
        "generate_n": 3, "generate_dir": str(tmp_path / "set"),
    })
    parser.get_parsed_content("run")
    labels = sorted((tmp_path / "set").glob("case_*/label.nii.gz"))
    assert len(labels) == 3 and (tmp_path / "set" / "datalist.json").is_file()
    assert "generated: 3/3 cases" in capsys.readouterr().out


def test_demo_puts_the_source_cases_tumour_into_the_healthy_case(tmp_path):
    """`synthmr demo` with the shipped weights: the tool description's demo is two phantom subjects (a healthy one
    and, through ``demo.source``, the annotated one whose roles carry the prefix ``tumor_``)."""
    from synthmr.demo import run_demo
    from synthmr.methods.brain_tumor_fabrication import REGION_MARGIN_MM, SEQUENCES, _signed_distance

    png = run_demo("brain_tumor_fabrication", tmp_path / "demo")
    assert png.is_file()
    inputs, synthetic = tmp_path / "demo" / "inputs", tmp_path / "demo" / "synthetic"
    donor = read_image(inputs / "tumor_label.nii.gz")
    label = read_image(synthetic / "label.nii.gz")
    healthy = read_image(inputs / "t1n.nii.gz")
    assert label.same_grid(healthy)
    assert set(np.unique(label.array)) == set(np.unique(donor.array)) == {0, 1, 2, 3}
    assert np.mean(read_image(inputs / "brain.nii.gz").array[label.array > 0] > 0) >= 0.95  # placed in the brain
    far = _signed_distance(label.array > 0, label.spacing) > REGION_MARGIN_MM + 2.0
    for sequence in SEQUENCES:
        made, given = read_image(synthetic / f"{sequence}.nii.gz"), read_image(inputs / f"{sequence}.nii.gz")
        assert made.same_grid(healthy)
        assert np.array_equal(made.array[far], given.array[far])
        assert not np.allclose(made.array[label.array > 0], given.array[label.array > 0])
