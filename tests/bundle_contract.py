"""The bundle contract: what every folder of ``bundles/`` must pass (run by tests/test_bundle_contract.py).

Each ``check_*`` function takes a bundle folder, the repository's or any copy of it, and raises AssertionError
saying what is wrong; so the same checks run on a deliberately broken copy, to show that they fail. They are the
MONAI Model Zoo's own (``ci/verify_bundle.py``: required files, version in the changelog, metadata against its
schema, ``verify_net_in_out``, TorchScript export; pre-commit's ``pretty-format-json``; the model card template's
sections; MONAI's inference properties as ``monai.bundle.load`` and ``create_workflow`` use them) and SynthMR's
(CPU weights of at most 16 MB that load into ``network_def``, the tool description, one ``network_def`` in
every config, the installed versions pinned, inference out of the box, one tiny training epoch, two-process DDP).

:class:`BundleFolder` runs a bundle's configs; the per-bundle test modules use it for their method's own claims.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from contextlib import contextmanager
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow

REPO = Path(__file__).resolve().parents[1]
BUNDLES = REPO / "bundles"
SCHEMA = REPO.parent / "shared" / "monai-bundle" / "meta_schema_20240725.json"
MAX_WEIGHTS_BYTES = 16 * 1024 * 1024
REQUIRED_FILES = (
    "LICENSE",
    "configs/metadata.json",
    "configs/logging.conf",
    "models/model.pt",
    "docs/README.md",
    "docs/data_license.txt",
)
# Configs by name (.yaml, .yml or .json). tiny_train is merged over train (and multi_gpu_train) for a run of seconds.
REQUIRED_CONFIGS = ("inference", "train", "evaluate", "multi_gpu_train", "tiny_train")
CONFIGS_WITH_NETWORK = ("inference", "train", "evaluate")
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
# Ids the tiny training is pointed into a temporary folder with.
TRAIN_IDS = ("output_dir", "dataset_dir", "best_model", "device")
# The MONAI Model Zoo's model card template (docs/readme_template.md), its level-2 sections in this order.
MODEL_CARD_SECTIONS = (
    "Model Description",
    "Data",
    "Performance",
    "System Configuration",
    "Limitations",
    "Citation Info",
    "References",
)
# Left out of a copy of a bundle: what runs write, and caches.
NOT_COPIED = shutil.ignore_patterns("output", "data", "eval", "__pycache__", ".*")
CPU = "$torch.device('cpu')"


def bundle_folders() -> list[Path]:
    """Every bundle of the repository: the folders of ``bundles/`` holding ``configs/metadata.json``."""
    return sorted(path for path in BUNDLES.iterdir() if (path / "configs" / "metadata.json").is_file())


def config_file(bundle: Path, name: str) -> Path:
    """``configs/<name>.yaml`` (or ``.yml``, ``.json``) of ``bundle``; exactly one of them must exist. ``name`` may
    carry its suffix (``"evaluate.yaml"``)."""
    if Path(name).suffix in CONFIG_SUFFIXES:
        name = Path(name).stem
    found = [bundle / "configs" / f"{name}{suffix}" for suffix in CONFIG_SUFFIXES]
    found = [path for path in found if path.is_file()]
    assert found, f"{bundle.name}: no configs/{name}.yaml (or .yml, .json)"
    assert len(found) == 1, f"{bundle.name}: more than one configs/{name} file: {[p.name for p in found]}"
    return found[0]


def metadata(bundle: Path) -> dict:
    return json.loads((bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))


def copy_bundle(bundle: Path, destination: Path) -> Path:
    """A copy of ``bundle`` at ``destination`` (named like the bundle), without outputs, data or caches."""
    shutil.copytree(bundle, destination, ignore=NOT_COPIED)
    return destination


@contextmanager
def working_directory(folder: Path):
    previous = Path.cwd()
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(previous)


class BundleFolder:
    """A bundle folder and ways to run its configs, with every output under a folder of the caller's choosing."""

    def __init__(self, root: Path | str) -> None:
        root = Path(root)
        self.root = root if root.is_absolute() else BUNDLES / root
        self.configs = self.root / "configs"
        self.meta_file = self.configs / "metadata.json"
        self.logging_file = self.configs / "logging.conf"

    @property
    def inference(self) -> Path:
        return config_file(self.root, "inference")

    def config(self, name: str) -> Path:
        return config_file(self.root, name)

    def metadata(self) -> dict:
        return metadata(self.root)

    def parser(self, config: str = "inference", **overrides) -> ConfigParser:
        """The parsed ``config`` (a name, or several merged in order, e.g. ``["train", "tiny_train"]``)."""
        names = [config] if isinstance(config, str) else list(config)
        parser = ConfigParser()
        parser.read_config([str(self.config(name)) for name in names])
        parser.read_meta(str(self.meta_file))
        parser.update({"bundle_root": str(self.root), **overrides})
        return parser

    def network(self, weights: str | None = "model.pt") -> torch.nn.Module:
        """``network_def`` of the inference config, with ``models/<weights>`` loaded (None: as initialised)."""
        network = self.parser().get_parsed_content("network_def")
        if weights is not None:
            network.load_state_dict(torch.load(self.root / "models" / weights, weights_only=True))
        return network.eval()

    def workflow(self, config, workflow_type: str, **overrides) -> ConfigWorkflow:
        names = [config] if isinstance(config, str) else list(config)
        return ConfigWorkflow(
            config_file=[str(self.config(name)) for name in names],
            meta_file=str(self.meta_file),
            logging_file=str(self.logging_file),
            workflow_type=workflow_type,
            bundle_root=str(self.root),
            **overrides,
        )

    def inference_runs(self, tmp_path: Path, **overrides) -> dict[str, Path]:
        """Run the inference config on the CPU into ``tmp_path/output`` (with ``overrides``); for an image bundle,
        check every declared output of every case and return output role -> file (of the last case)."""
        workflow = self.workflow(
            "inference", "inference", output_dir=str(tmp_path / "output"), device=CPU, **overrides
        )
        workflow.initialize()
        workflow.run()
        workflow.finalize()
        return check_inference_outputs(self.root, workflow)

    def training_runs_one_epoch(
        self, tmp_path: Path, *configs: str, dataset_dir: Path | None = None, **overrides
    ) -> ConfigWorkflow:
        """Run ``train`` merged with ``configs`` (default: ``tiny_train``) for its epochs on the CPU, every output
        under ``tmp_path`` (``train/``, ``data/`` unless ``dataset_dir`` is given, ``model.pt``); checks that it ran
        them all and that the best model it saved loads into ``network_def``."""
        workflow = self.workflow(
            ["train", *(configs or ("tiny_train",))],
            "train",
            output_dir=str(tmp_path / "train"),
            dataset_dir=str(dataset_dir or tmp_path / "data"),
            best_model=str(tmp_path / "model.pt"),
            device=CPU,
            **overrides,
        )
        workflow.initialize()
        workflow.run()
        workflow.finalize()
        trainer = workflow.parser.get_parsed_content("trainer")
        assert trainer.state.epoch == trainer.state.max_epochs >= 1, (trainer.state.epoch, trainer.state.max_epochs)
        generator = workflow.parser.get_parsed_content("network_def")
        generator.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
        assert (tmp_path / "train" / "checkpoints" / "last.pt").is_file(), "no final checkpoint to resume from"
        return workflow

    def multi_gpu_training_runs_on_two_cpu_processes(self, tmp_path: Path, *overrides: str) -> dict:
        """``train`` + ``multi_gpu_train`` + ``tiny_train`` under torchrun: 2 gloo processes on the CPU.

        ``overrides`` are further command-line arguments. Asserts that it succeeds and writes the best model and the
        final checkpoint; returns the trainer's saved state (``iteration``, ``max_epochs``, ...).
        """
        configs = [str(self.config(name)) for name in ("train", "multi_gpu_train", "tiny_train")]
        result = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "monai.bundle",
             "run", "--bundle_root", str(self.root), "--config_file", repr(configs),
             "--meta_file", str(self.meta_file), "--logging_file", str(self.logging_file),
             "--dist_backend", "gloo", "--device", CPU, "--dataset_dir", str(tmp_path / "data"),
             "--output_dir", str(tmp_path / "train"), "--best_model", str(tmp_path / "model.pt"), *overrides],
            capture_output=True, text=True, timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert (tmp_path / "model.pt").is_file() and (tmp_path / "train" / "checkpoints" / "last.pt").is_file()
        return torch.load(tmp_path / "train" / "checkpoints" / "last.pt", weights_only=True)["trainer"]


# ---------------------------------------------------------------------------------------------- files and metadata


def check_required_files(bundle: Path) -> None:
    missing = [name for name in REQUIRED_FILES if not (bundle / name).is_file()]
    assert not missing, f"{bundle.name}: lacks {', '.join(missing)}"
    for name in REQUIRED_CONFIGS:
        config_file(bundle, name)


def check_metadata_schema(bundle: Path) -> None:
    """``configs/metadata.json`` is valid against the Zoo's schema 20240725, read offline from ../shared."""
    from monai.bundle import verify_metadata

    if not SCHEMA.is_file():
        pytest.skip(f"the offline schema copy {SCHEMA} is absent (it lives in ../shared beside the repository)")
    assert metadata(bundle).get("schema", "").endswith("/meta_schema_20240725.json"), "schema must be 20240725"
    # verify_metadata downloads the schema only when `filepath` does not exist: give it the local copy.
    verify_metadata(meta_file=str(bundle / "configs" / "metadata.json"), filepath=str(SCHEMA))


def check_version_in_changelog(bundle: Path) -> None:
    meta = metadata(bundle)
    assert re.fullmatch(r"\d+\.\d+\.\d+", str(meta.get("version"))), f"version {meta.get('version')!r} is not x.y.z"
    assert meta["version"] in meta.get("changelog", {}), f"{bundle.name}: version {meta['version']} has no changelog entry"


def check_pins_are_installed(bundle: Path) -> None:
    """The metadata pins exactly the versions installed here (the Zoo's CI pip-installs these pins)."""
    meta = metadata(bundle)
    assert meta["monai_version"] == installed_version("monai")
    assert meta["pytorch_version"] == installed_version("torch").split("+")[0]
    assert meta["numpy_version"] == installed_version("numpy")
    for package, pinned in meta["required_packages_version"].items():
        assert installed_version(package) == pinned, f"{package}: metadata pins {pinned}, installed {installed_version(package)}"


def check_metadata_is_pretty_json(bundle: Path) -> None:
    """The form of pre-commit's ``pretty-format-json --indent=4 --no-sort-keys``, which the Zoo runs."""
    path = bundle / "configs" / "metadata.json"
    text = path.read_text(encoding="utf-8")
    pretty = json.dumps(json.loads(text), indent=4) + "\n"
    assert text == pretty, (
        f"{path} is not in pretty JSON form (4-space indents, one item per line, keys in their order); rewrite it "
        "with json.dumps(json.load(f), indent=4) plus a final newline"
    )


def model_card_sections(bundle: Path) -> list[str]:
    """The level-2 headings of ``docs/README.md``, bold markers removed."""
    text = (bundle / "docs" / "README.md").read_text(encoding="utf-8")
    return [line[3:].strip().strip("*").strip() for line in text.splitlines() if line.startswith("## ")]


def check_model_card(bundle: Path) -> None:
    sections = model_card_sections(bundle)
    present = [name for name in sections if name in MODEL_CARD_SECTIONS]
    missing = [name for name in MODEL_CARD_SECTIONS if name not in sections]
    assert not missing, f"{bundle.name}: docs/README.md lacks the section(s) {missing} (## headings)"
    assert present == list(MODEL_CARD_SECTIONS), f"{bundle.name}: docs/README.md sections out of order: {present}"


def check_tool_description(bundle: Path) -> None:
    from synthmr.bundle import read_tool_description

    description = read_tool_description(bundle)
    # A generator bundle (noise in, images out) declares no inputs; every other bundle needs some.
    assert description.outputs and (description.inputs or description.is_generator)


def check_network_def_is_the_same_everywhere(bundle: Path) -> None:
    definitions = {
        name: ConfigParser.load_config_file(str(config_file(bundle, name)))["network_def"]
        for name in CONFIGS_WITH_NETWORK
    }
    for name, definition in definitions.items():
        assert definition == definitions["inference"], f"{bundle.name}: {name}'s network_def differs from inference's"


# ---------------------------------------------------------------------------------------------- weights and export


def check_weights(bundle: Path) -> None:
    """Every ``models/*.pt`` is a state dict of CPU tensors of at most 16 MB that loads into ``network_def``."""
    folder = BundleFolder(bundle)
    for path in sorted((bundle / "models").glob("*.pt")):
        assert path.stat().st_size <= MAX_WEIGHTS_BYTES, f"models/{path.name} exceeds 16 MB"
        stored = torch.load(path, weights_only=True)
        assert {tensor.device.type for tensor in stored.values()} == {"cpu"}, f"{path.name}: save the weights from the CPU"
        folder.parser().get_parsed_content("network_def").load_state_dict(stored, strict=True)


def check_net_in_out(bundle: Path) -> None:
    """MONAI's ``verify_net_in_out`` (the Zoo's full check) on ``network_data_format``'s inputs.image/outputs.pred."""
    from monai.bundle import verify_net_in_out

    verify_net_in_out(
        net_id="network_def",
        meta_file=str(bundle / "configs" / "metadata.json"),
        config_file=str(config_file(bundle, "inference")),
        device="cpu",
        n=1,
        bundle_root=str(bundle),
    )


def fake_input(bundle: Path) -> torch.Tensor:
    """A batch of one input of ``network_data_format``'s ``inputs.image`` (n = p = 1), uniform in [-1, 1]."""
    from monai.bundle.scripts import _get_fake_input_shape

    shape = _get_fake_input_shape(BundleFolder(bundle).parser())
    return torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 2 - 1


def check_torchscript_equals_eager(bundle: Path, tmp_path: Path) -> None:
    """MONAI's ``ckpt_export`` (the Zoo's full check) writes a TorchScript file whose output equals the eager
    network's on an input of the declared shape."""
    from monai.bundle import ckpt_export

    exported = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(exported),
        ckpt_file=str(bundle / "models" / "model.pt"),
        meta_file=str(bundle / "configs" / "metadata.json"),
        config_file=str(config_file(bundle, "inference")),
        bundle_root=str(bundle),
    )
    scripted = torch.jit.load(str(exported), map_location="cpu")
    eager = BundleFolder(bundle).network()
    x = fake_input(bundle)
    with torch.no_grad():
        scripted_out, eager_out = scripted(x), eager(x)
    assert scripted_out.shape == eager_out.shape, f"TorchScript gives {scripted_out.shape}, eager {eager_out.shape}"
    difference = (scripted_out - eager_out).abs().max().item()
    assert torch.allclose(scripted_out, eager_out, rtol=1e-4, atol=1e-5), (
        f"{bundle.name}: the TorchScript export differs from the eager network by up to {difference:.3g}"
    )


# ---------------------------------------------------------------------------------------------- running it


def check_inference_outputs(bundle: Path, workflow: ConfigWorkflow) -> dict[str, Path]:
    """After an inference run: an image bundle wrote ``<output_dir>/<case_id>/<role>.nii.gz`` for every output role
    of every case of its ``dataset``, on the grid of the case's reference input; a generator bundle wrote some
    ``<output_dir>/*/<role>.nii.gz`` of every output role. Returns output role -> file (of the last case)."""
    from synthmr.bundle import read_tool_description
    from synthmr.io import read_image

    description = read_tool_description(bundle)
    output_dir = Path(workflow.parser.get_parsed_content("output_dir")).absolute()
    written: dict[str, Path] = {}
    if description.is_generator:
        for role in description.outputs:
            files = sorted(output_dir.glob(f"*/{role}.nii.gz"))
            assert files, f"{bundle.name}: no output {role!r} under {output_dir}"
            written[role] = files[-1]
        return written
    dataset = workflow.dataset
    for index in range(len(dataset)):
        item = dataset[index]
        reference = read_image(item[description.reference])
        case_id = item.get("case_id") or Path(item[description.reference]).name.split(".")[0]
        for role in description.outputs:
            path = output_dir / str(case_id) / f"{role}.nii.gz"
            assert path.is_file(), f"{path} was not written"
            assert read_image(path).same_grid(reference), f"{path} is not on the grid of its input"
            written[role] = path
    return written


def check_inference_out_of_the_box(bundle: Path, tmp_path: Path) -> dict[str, Path]:
    """Copy the bundle to ``tmp_path`` and run its inference config there as ``python -m monai.bundle run
    --config_file configs/inference.yaml`` does from the bundle folder: no override at all."""
    copy = copy_bundle(bundle, tmp_path / bundle.name)
    with working_directory(copy):
        workflow = ConfigWorkflow(config_file=str(config_file(copy, "inference").relative_to(copy)),
                                  workflow_type="inference")
        workflow.initialize()
        workflow.run()
        workflow.finalize()
        return check_inference_outputs(copy, workflow)


def check_inference_properties(config: Path) -> None:
    """``create_workflow(config_file=config, workflow_type="inference")`` initializes from another folder than the
    bundle's and has every property MONAI requires of an inference workflow, with the right ids."""
    from monai.bundle import create_workflow

    elsewhere = Path(__file__).resolve().parent
    assert not elsewhere.is_relative_to(config.parent.parent)
    with working_directory(elsewhere):
        workflow = create_workflow(config_file=str(config), workflow_type="inference")
        problems = workflow.check_properties()
    assert problems == [], f"{config}: missing or wrongly referenced inference properties {problems}"


def check_load_gives_the_network(parent: Path, name: str) -> None:
    """``monai.bundle.load(name, bundle_dir=parent, workflow_type="inference")`` returns ``network_def`` holding the
    shipped ``models/model.pt``."""
    import monai.bundle

    with working_directory(Path(__file__).resolve().parent):
        network = monai.bundle.load(name, bundle_dir=str(parent), workflow_type="inference", device="cpu")
    assert isinstance(network, torch.nn.Module), f"monai.bundle.load gave a {type(network).__name__}, not a network"
    stored = torch.load(parent / name / "models" / "model.pt", weights_only=True)
    loaded = network.state_dict()
    assert stored.keys() == loaded.keys()
    for key, tensor in stored.items():
        assert torch.equal(loaded[key].cpu(), tensor), f"{key} differs from models/model.pt"


def check_export(zip_path: Path, bundle: Path) -> Path:
    """The zip of ``synthmr bundle export``: one folder named like the bundle, the Zoo layout, JSON configs whose
    content is the YAML's, ``large_files.yml`` with the SHA-256 and size of every weights file. Returns the folder
    it unpacks to (beside the zip)."""
    import hashlib

    import yaml

    name = bundle.name
    with zipfile.ZipFile(zip_path) as archive:
        members = set(archive.namelist())
        assert all(member.startswith(f"{name}/") for member in members), sorted(members)
        unpacked = zip_path.parent / "unpacked"
        archive.extractall(unpacked)
    root = unpacked / name
    shipped = {member[len(name) + 1 :] for member in members}
    for required in (*REQUIRED_FILES, "large_files.yml"):
        assert required in shipped, f"the export lacks {required}"
    for config in sorted((bundle / "configs").iterdir()):
        if config.suffix in (".yaml", ".yml"):
            exported = root / "configs" / f"{config.stem}.json"
            assert json.loads(exported.read_text()) == ConfigParser.load_config_file(str(config)), exported
    assert not any(part in ("output", "data", "eval", "__pycache__") for member in shipped for part in member.split("/"))
    for folder in ("docs", "sample"):
        expected = {p.relative_to(bundle).as_posix() for p in (bundle / folder).rglob("*") if p.is_file()}
        assert expected <= shipped, expected - shipped
    entries = yaml.safe_load((root / "large_files.yml").read_text())["large_files"]
    weights = sorted(
        p.relative_to(bundle).as_posix() for p in (bundle / "models").rglob("*") if p.is_file() and p.suffix != ".ts"
    )
    assert sorted(entry["path"] for entry in entries) == weights
    for entry in entries:
        content = (bundle / entry["path"]).read_bytes()
        assert entry["hash_type"] == "sha256" and entry["hash_val"] == hashlib.sha256(content).hexdigest()
        assert entry["size"] == len(content) == (root / entry["path"]).stat().st_size
    return root
