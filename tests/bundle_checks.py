"""Checks every SynthMR bundle must pass (docs/design.md, *The bundle contract*); each bundle's test module calls them.

Usage in ``tests/test_bundle_<name>.py``::

    from bundle_checks import BundleChecks
    checks = BundleChecks("breast_dce_pre2post")
    def test_metadata_validates(): checks.metadata_validates()
    ...

The checks are those of the MONAI model-zoo CI (metadata schema, ``verify_net_in_out``, ``ckpt_export``) and of
this project's contract (layout, CPU weights under 16 MB, the tool-description block, identical ``network_def``
in every config, the version in the changelog, inference and training running on tiny data).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export, verify_metadata, verify_net_in_out

from synthmr.io import read_image

REPO = Path(__file__).resolve().parents[1]
BUNDLES = REPO / "bundles"
SCHEMA = REPO.parent / "shared" / "monai-bundle" / "meta_schema_20240725.json"
MAX_WEIGHTS_BYTES = 16 * 1024 * 1024
REQUIRED_FILES = (
    "LICENSE",
    "configs/metadata.json",
    "configs/inference.yaml",
    "configs/train.yaml",
    "configs/evaluate.yaml",
    "configs/multi_gpu_train.yaml",
    "configs/logging.conf",
    "models/model.pt",
    "docs/README.md",
    "docs/data_license.txt",
)
CONFIGS_WITH_NETWORK = ("inference.yaml", "train.yaml", "evaluate.yaml")


class BundleChecks:
    """The contract checks for ``bundles/<name>``."""

    def __init__(self, name: str) -> None:
        self.root = BUNDLES / name
        self.configs = self.root / "configs"
        self.meta_file = self.configs / "metadata.json"
        self.inference = self.configs / "inference.yaml"

    def metadata(self) -> dict:
        return json.loads(self.meta_file.read_text(encoding="utf-8"))

    def parser(self, config: str = "inference.yaml", **overrides) -> ConfigParser:
        parser = ConfigParser()
        parser.read_config(str(self.configs / config))
        parser.read_meta(str(self.meta_file))
        parser.update({"bundle_root": str(self.root), **overrides})
        return parser

    # ------------------------------------------------------------------------------------------ layout and metadata

    def layout_is_complete(self) -> None:
        missing = [f for f in REQUIRED_FILES if not (self.root / f).is_file()]
        assert not missing, f"{self.root.name} lacks {missing}"
        size = (self.root / "models" / "model.pt").stat().st_size
        assert size <= MAX_WEIGHTS_BYTES, f"models/model.pt is {size / 2**20:.1f} MB; the limit is 16 MB"

    def metadata_validates(self) -> None:
        if not SCHEMA.is_file():
            pytest.skip(f"the offline schema copy {SCHEMA} is absent (it lives in ../shared beside the repository)")
        # verify_metadata downloads the schema only when `filepath` does not exist: give it the local copy.
        verify_metadata(meta_file=str(self.meta_file), filepath=str(SCHEMA))

    def version_is_in_changelog(self) -> None:
        meta = self.metadata()
        assert meta["version"] in meta["changelog"], f"version {meta['version']} has no changelog entry"

    def required_packages_are_installed_versions(self) -> None:
        from importlib.metadata import version

        meta = self.metadata()
        assert meta["monai_version"] == version("monai")
        assert meta["pytorch_version"] == version("torch").split("+")[0]
        assert meta["numpy_version"] == version("numpy")
        for package, pinned in meta["required_packages_version"].items():
            assert version(package) == pinned, f"{package}: metadata pins {pinned}, installed {version(package)}"

    def tool_description_parses(self) -> None:
        from synthmr.bundle import read_tool_description

        description = read_tool_description(self.root)
        # A generator bundle (noise in, images out) declares no inputs; every other bundle needs some.
        assert description.outputs and (description.inputs or description.is_generator)

    def network_def_is_the_same_everywhere(self) -> None:
        definitions = {
            name: yaml.safe_load((self.configs / name).read_text(encoding="utf-8"))["network_def"]
            for name in CONFIGS_WITH_NETWORK
        }
        reference = definitions["inference.yaml"]
        for name, definition in definitions.items():
            assert definition == reference, f"{name} network_def differs from inference.yaml's"

    # ------------------------------------------------------------------------------------------ weights and export

    def weights_are_cpu_state_dict_of_network_def(self, weights: str = "model.pt") -> None:
        """``models/<weights>`` (default the bundle's model.pt; others for bundles shipping alternatives) is a CPU
        state dict under 16 MB that loads into ``network_def``."""
        path = self.root / "models" / weights
        assert path.stat().st_size <= MAX_WEIGHTS_BYTES, f"models/{weights} exceeds 16 MB"
        stored = torch.load(path, weights_only=True)
        assert {tensor.device.type for tensor in stored.values()} == {"cpu"}, "weights must be saved from the CPU"
        network = self.parser().get_parsed_content("network_def")
        network.load_state_dict(stored, strict=True)

    def net_in_out_matches_metadata(self, n: int = 1) -> None:
        verify_net_in_out(
            net_id="network_def",
            meta_file=str(self.meta_file),
            config_file=str(self.inference),
            device="cpu",
            n=n,
            bundle_root=str(self.root),
        )

    def torchscript_export_equals_eager(self, tmp_path: Path, input_shape: tuple[int, ...]) -> None:
        exported = tmp_path / "model.ts"
        ckpt_export(
            net_id="network_def",
            filepath=str(exported),
            ckpt_file=str(self.root / "models" / "model.pt"),
            meta_file=str(self.meta_file),
            config_file=str(self.inference),
            bundle_root=str(self.root),
        )
        scripted = torch.jit.load(str(exported), map_location="cpu")
        eager = self.parser().get_parsed_content("network_def")
        eager.load_state_dict(torch.load(self.root / "models" / "model.pt", weights_only=True))
        eager.eval()
        # Uniform in [-1, 1]: an image in the networks' range, or for a generator a latent input of that spread.
        x = torch.rand(input_shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
        with torch.no_grad():
            torch.testing.assert_close(scripted(x), eager(x), rtol=1e-4, atol=1e-5)

    # ------------------------------------------------------------------------------------------ running the configs

    def inference_runs(self, tmp_path: Path, **overrides) -> dict[str, Path]:
        """Run inference.yaml (with ``overrides``) into ``tmp_path``; returns output key -> file of each case's outputs.

        Asserts that every declared output of every case is written on its reference input's grid.
        """
        description = self.metadata()["synthmr"]
        output_dir = tmp_path / "output"
        workflow = ConfigWorkflow(
            config_file=str(self.inference),
            meta_file=str(self.meta_file),
            logging_file=str(self.configs / "logging.conf"),
            workflow_type="inference",
            bundle_root=str(self.root),
            output_dir=str(output_dir),
            device="$torch.device('cpu')",
            **overrides,
        )
        workflow.initialize()
        workflow.run()
        workflow.finalize()
        datalist = workflow.parser.get_parsed_content("datalist")
        written = {}
        for item in datalist:
            case_id = item.get("case_id") or Path(item[description["reference"]]).name.split(".")[0]
            reference = read_image(item[description["reference"]])
            for key in description["outputs"]:
                path = output_dir / str(case_id) / f"{key}.nii.gz"
                assert path.is_file(), f"{path} was not written"
                assert read_image(path).same_grid(reference), f"{path} is not on the grid of its input"
                written[key] = path
        return written

    def training_runs_one_epoch(self, tmp_path: Path, **overrides) -> ConfigWorkflow:
        """Run train.yaml for one tiny epoch (``overrides`` make it tiny) with outputs under ``tmp_path``."""
        workflow = ConfigWorkflow(
            config_file=str(self.configs / "train.yaml"),
            meta_file=str(self.meta_file),
            logging_file=str(self.configs / "logging.conf"),
            workflow_type="train",
            bundle_root=str(self.root),
            output_dir=str(tmp_path / "train"),
            device="$torch.device('cpu')",
            **overrides,
        )
        workflow.initialize()
        workflow.run()
        workflow.finalize()
        trainer = workflow.parser.get_parsed_content("trainer")
        assert trainer.state.epoch == trainer.state.max_epochs >= 1
        return workflow

    def multi_gpu_training_runs_on_two_cpu_processes(self, tmp_path: Path, *overrides: str) -> dict:
        """Run train.yaml merged with multi_gpu_train.yaml under torchrun: 2 gloo processes on the CPU.

        ``overrides`` are further command-line arguments that make the run tiny. Asserts that it succeeds and writes
        the best model and the final checkpoint; returns the trainer's saved state (``iteration``, ``max_epochs``).
        """
        import subprocess
        import sys

        result = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "monai.bundle",
             "run", "--bundle_root", str(self.root),
             "--config_file", f"['{self.configs / 'train.yaml'}','{self.configs / 'multi_gpu_train.yaml'}']",
             "--dist_backend", "gloo", "--device", "$torch.device('cpu')", "--dataset_dir", str(tmp_path / "data"),
             "--output_dir", str(tmp_path / "train"), "--best_model", str(tmp_path / "model.pt"), *overrides],
            capture_output=True, text=True, timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert (tmp_path / "model.pt").is_file() and (tmp_path / "train" / "checkpoints" / "last.pt").is_file()
        return torch.load(tmp_path / "train" / "checkpoints" / "last.pt", weights_only=True)["trainer"]
