"""The bundle contract, for every folder of bundles/ (a new bundle gets all of it by existing): the checks of
tests/bundle_contract.py, ``synthmr bundle export`` and MONAI's own ``load`` and ``create_workflow`` on the export.
The last tests break a copy of a bundle in three ways and show that the checks then fail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import bundle_contract as contract
from bundle_contract import BundleFolder

BUNDLES = contract.bundle_folders()


@pytest.fixture(scope="module", params=BUNDLES, ids=[path.name for path in BUNDLES])
def bundle(request):
    return request.param


@pytest.fixture(scope="module")
def exported(bundle, tmp_path_factory):
    """The bundle exported (``synthmr bundle export``) and unpacked beside the zip: (zip, unpacked bundle folder)."""
    from synthmr.bundle.export import export_bundle

    zip_path = export_bundle(bundle.name, tmp_path_factory.mktemp(f"export_{bundle.name}"))
    assert zip_path.name == f"{bundle.name}_v{contract.metadata(bundle)['version']}.zip"
    return zip_path, contract.check_export(zip_path, bundle)


@pytest.fixture(scope="module")
def tiny_training(bundle, tmp_path_factory):
    """train + tiny_train run once per bundle: its workflow."""
    return BundleFolder(bundle).training_runs_one_epoch(tmp_path_factory.mktemp(f"train_{bundle.name}"))


def test_there_are_bundles():
    assert {path.name for path in BUNDLES} >= {"breast_dce_pre2post", "breast_dce_patch_cgan"}


# ---------------------------------------------------------------------------------------------- files and metadata


def test_required_files(bundle):
    contract.check_required_files(bundle)


def test_metadata_is_valid_offline_against_the_zoo_schema(bundle):
    contract.check_metadata_schema(bundle)


def test_version_is_in_the_changelog(bundle):
    contract.check_version_in_changelog(bundle)


def test_metadata_pins_the_installed_versions(bundle):
    contract.check_pins_are_installed(bundle)


def test_metadata_is_pretty_json(bundle):
    contract.check_metadata_is_pretty_json(bundle)


def test_model_card_has_the_zoo_template_sections(bundle):
    contract.check_model_card(bundle)


def test_tool_description_reads(bundle):
    contract.check_tool_description(bundle)


def test_network_def_is_the_same_in_every_config(bundle):
    contract.check_network_def_is_the_same_everywhere(bundle)


# ---------------------------------------------------------------------------------------------- weights and network


def test_weights_are_small_cpu_state_dicts_of_network_def(bundle):
    contract.check_weights(bundle)


def test_verify_net_in_out(bundle):
    contract.check_net_in_out(bundle)


def test_torchscript_export_equals_eager(bundle, tmp_path):
    contract.check_torchscript_equals_eager(bundle, tmp_path)


# ---------------------------------------------------------------------------------------------- running it


def test_inference_runs_out_of_the_box_on_a_copy(bundle, tmp_path):
    contract.check_inference_out_of_the_box(bundle, tmp_path)


def test_inference_config_has_monais_inference_properties(bundle):
    contract.check_inference_properties(contract.config_file(bundle, "inference"))


def test_training_runs_one_tiny_epoch(tiny_training):
    # The fixture ran train + tiny_train: every epoch, the best model saved and loading into network_def, last.pt.
    assert tiny_training.parser.get_parsed_content("trainer").state.epoch >= 1


def test_multi_gpu_training_runs_ddp_on_two_cpu_processes(bundle, tiny_training, tmp_path):
    trainer = BundleFolder(bundle).multi_gpu_training_runs_on_two_cpu_processes(tmp_path)
    single = tiny_training.parser.get_parsed_content("trainer").state
    assert trainer["max_epochs"] == single.max_epochs
    # Each rank trains on its share of the data: fewer iterations than the single process.
    assert 0 < trainer["iteration"] < single.iteration, (trainer["iteration"], single.iteration)


# ---------------------------------------------------------------------------------------------- export


def test_export_is_the_zoo_layout_with_large_files(exported):
    zip_path, root = exported
    assert zip_path.stat().st_size < 64 * 1024 * 1024


def test_monai_bundle_load_gives_the_network_with_the_shipped_weights(exported, bundle):
    contract.check_load_gives_the_network(exported[1].parent, bundle.name)


def test_monai_create_workflow_initializes_the_exported_inference_json(exported):
    contract.check_inference_properties(exported[1] / "configs" / "inference.json")


def test_export_refuses_an_existing_zip_and_an_unknown_bundle(bundle, exported, tmp_path):
    zip_path, _ = exported
    before = zip_path.read_bytes()
    for name, out in ((bundle.name, zip_path.parent), ("no_such_bundle", tmp_path)):
        result = subprocess.run(
            [sys.executable, "-m", "synthmr", "bundle", "export", name, "--out", str(out)], capture_output=True, text=True
        )
        assert result.returncode == 2 and "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("synthmr: error:"), result.stderr
    assert zip_path.read_bytes() == before and list(tmp_path.iterdir()) == []


def test_export_is_reproducible_and_overwrites_only_when_asked(tmp_path):
    from synthmr.bundle.export import export_bundle
    from synthmr.errors import InputError

    result = subprocess.run(  # the command line prints the zip's path
        [sys.executable, "-m", "synthmr", "bundle", "export", BUNDLES[0].name, "--out", str(tmp_path / "a")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    first = Path(result.stdout.strip().splitlines()[-1])
    assert first.parent == (tmp_path / "a").resolve() and first.suffix == ".zip"
    second = export_bundle(BUNDLES[0], tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        export_bundle(BUNDLES[0], tmp_path / "a")
    assert export_bundle(BUNDLES[0], tmp_path / "a", overwrite=True) == first
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [first.name]  # no temporary file left


# ---------------------------------------------------------------------------------------------- the checks fail


class ScriptedFormDiffers(torch.nn.Module):
    """A network whose TorchScript form computes something else than its eager form (``torch.jit.is_scripting()``
    is true only in the scripted form): what a faulty export looks like."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return x * self.scale + 1.0
        return x * self.scale


@pytest.fixture
def broken(tmp_path):
    """A copy of the first bundle, to break."""
    return contract.copy_bundle(BUNDLES[0], tmp_path / BUNDLES[0].name)


def test_the_contract_fails_when_a_required_file_is_missing(broken):
    contract.check_required_files(broken)
    (broken / "docs" / "data_license.txt").unlink()
    with pytest.raises(AssertionError, match="lacks docs/data_license.txt"):
        contract.check_required_files(broken)


def test_the_contract_fails_when_the_version_is_not_in_the_changelog(broken):
    contract.check_version_in_changelog(broken)
    path = broken / "configs" / "metadata.json"
    meta = json.loads(path.read_text())
    meta["version"] = "9.9.9"  # a new version without its changelog entry
    path.write_text(json.dumps(meta, indent=4) + "\n")
    with pytest.raises(AssertionError, match="version 9.9.9 has no changelog entry"):
        contract.check_version_in_changelog(broken)


def test_the_contract_fails_when_torchscript_differs_from_eager(broken, tmp_path):
    contract.check_torchscript_equals_eager(broken, tmp_path)  # the intact copy passes
    config = contract.config_file(broken, "inference")
    content = yaml.safe_load(config.read_text())
    content["network_def"] = {"_target_": f"{__name__}.ScriptedFormDiffers"}
    config.write_text(json.dumps(content) if config.suffix == ".json" else yaml.safe_dump(content, sort_keys=False))
    torch.save(ScriptedFormDiffers().state_dict(), broken / "models" / "model.pt")
    with pytest.raises(AssertionError, match="TorchScript export differs from the eager network by up to 1"):
        contract.check_torchscript_equals_eager(broken, tmp_path)
