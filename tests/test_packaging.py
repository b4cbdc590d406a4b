"""Packaging rules that need no build: the bundles' pinned packages, the core/extra split and its error message.

tests/test_wheel.py builds and installs the wheel itself."""

import json
import re
from pathlib import Path

import pytest

import synthmr.phantom.dataset
from synthmr.cli import main
from synthmr.errors import TRAIN_EXTRA_MODULES, missing_extra

REPO = Path(__file__).resolve().parents[1]
BUNDLES = sorted(path for path in (REPO / "bundles").iterdir() if (path / "configs" / "metadata.json").is_file())


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda path: path.name)
def test_required_packages_are_constraints_pins_without_synthmr(bundle: Path):
    # The Model Zoo CI pins every entry with == and pip-installs them: synthmr is on no index (the tool description
    # says which synthmr a bundle requires), torch, monai and numpy have their own fields.
    required = json.loads((bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))[
        "required_packages_version"
    ]
    pins = _constraints()
    names = {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in required.items()}
    assert not {"synthmr", "torch", "monai", "numpy"} & set(names)
    assert {name: pins.get(name) for name in names} == names, "required_packages_version differs from constraints.txt"


def test_core_dependencies_leave_the_train_extra_out():
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    core = re.search(r"^dependencies = \[(.*?)^\]", text, re.M | re.S)[1]
    core_names = {re.match(r"[A-Za-z0-9_.-]+", item)[0].lower() for item in re.findall(r'"([^"]+)"', core)}
    assert not core_names & {name.lower() for name in TRAIN_EXTRA_MODULES.values()}


def test_missing_extra_names_the_extra_only_for_its_modules():
    error = missing_extra(ModuleNotFoundError("No module named 'ignite'", name="ignite.engine"))
    assert "pytorch-ignite" in str(error) and 'pip install "synthmr[train]"' in str(error)
    assert missing_extra(ModuleNotFoundError("No module named 'torch'", name="torch")) is None
    assert missing_extra(ModuleNotFoundError("no name")) is None


def test_cli_says_which_extra_a_command_needs(monkeypatch, capsys, tmp_path):
    def without_scipy(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'scipy'", name="scipy")

    monkeypatch.setattr(synthmr.phantom.dataset, "write_phantom_dataset", without_scipy)
    assert main(["phantom", "breast", "--out", str(tmp_path / "cases")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("synthmr: error: this needs scipy") and err.count("\n") == 1
    assert 'pip install "synthmr[train]"' in err
