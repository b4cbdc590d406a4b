"""Acceptance test of the packaging: the wheel that ``python -m build`` makes runs every bundle on its own.

The wheel is built from a copy of the sources (pyproject.toml, README.md, LICENSE, training/) and installed, without
extras, in a fresh virtual environment (no system site-packages) with the pins of constraints.txt; pip's cache is
reused. Everything then runs in that environment from a temporary folder, with PYTHONPATH unset and ``python -I``,
so the checkout is never on ``sys.path``: each bundle is exported with ``synthmr bundle export`` (found by name
through SYNTHMR_BUNDLE_PATH, the only thing taken from the checkout besides constraints.txt), unzipped, run with
``python -m monai.bundle run`` (inference config, default arguments) and loaded with
``monai.bundle.load(..., workflow_type="inference")``.

Needs the package index (or pip's cache) for the build back end and the dependencies; about a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import re
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUNDLES = sorted(path.name for path in (REPO / "bundles").iterdir() if (path / "configs" / "metadata.json").is_file())
# Modules of the "train" extra that plain `pip install synthmr` must not bring (see synthmr.errors).
TRAIN_ONLY_MODULES = ("nilearn", "scipy", "ignite", "tensorboard")

pytestmark = pytest.mark.wheel


def _run(command: list[str | os.PathLike], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    """Run ``command`` and return its stdout; a failure shows the command and everything it printed."""
    result = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, command))} exited with {result.returncode}\n"
            f"--- stdout\n{result.stdout[-5000:]}\n--- stderr\n{result.stderr[-5000:]}",
            pytrace=False,
        )
    return result.stdout


class Installed:
    """The fresh virtual environment with the wheel in it, and a working folder outside the checkout."""

    def __init__(self, root: Path, wheel: Path) -> None:
        self.root = root
        self.wheel = wheel
        self.venv = root / "venv"
        self.bin = self.venv / ("Scripts" if os.name == "nt" else "bin")
        self.python = self.bin / ("python.exe" if os.name == "nt" else "python")
        self.work = root / "work"
        self.work.mkdir(exist_ok=True)
        # No variable that could put the checkout (or the test's own environment) on sys.path.
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")
        }
        self.env.update(PYTHONNOUSERSITE="1", PATH=f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}")

    def python_code(self, code: str, timeout: float = 600) -> str:
        return _run([self.python, "-I", "-c", code], self.work, self.env, timeout)

    def run(self, *args: str | os.PathLike, env: dict[str, str] | None = None) -> str:
        return _run(list(args), self.work, {**self.env, **(env or {})})


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    # A copy of what a fresh clone holds for the build: a build in the checkout would leave build/ behind, whose
    # stale files (modules since moved or deleted) setuptools would pack into the next wheel.
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(
        REPO / "training", source / "training", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", root / "dist", source], root, env)
    (wheel,) = (root / "dist").glob("synthmr-*.whl")
    result = Installed(root, wheel)
    _run([sys.executable, "-m", "venv", result.venv], root, env)
    result.run(result.python, "-m", "pip", "install", "--quiet", "-c", REPO / "constraints.txt", wheel)
    return result


def test_wheel_installs_only_the_core(installed: Installed):
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(encoding="utf-8"), re.M)[1]
    assert installed.wheel.name.startswith(f"synthmr-{version}-")
    code = f"""
import importlib.util, json, sys, synthmr
print(json.dumps({{
    "file": synthmr.__file__,
    "version": synthmr.__version__,
    "path": sys.path,
    "present": [name for name in {TRAIN_ONLY_MODULES!r} if importlib.util.find_spec(name) is not None],
}}))
"""
    facts = json.loads(installed.python_code(code).splitlines()[-1])
    assert Path(facts["file"]).resolve().is_relative_to(installed.venv.resolve()), facts["file"]
    assert facts["version"] == version
    assert not [entry for entry in facts["path"] if entry and Path(entry).resolve().is_relative_to(REPO)]
    assert facts["present"] == [], f"plain `pip install synthmr` brought {facts['present']} (extra modules)"
    # A feature of the "train" extra says which extra to install, in one line, instead of a traceback.
    result = subprocess.run(
        [installed.bin / "synthmr", "phantom", "breast", "--out", installed.work / "phantom"],
        cwd=installed.work, env=installed.env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert 'pip install "synthmr[train]"' in result.stderr and "Traceback" not in result.stderr, result.stderr


def _pre2post_outputs(output: Path) -> list[Path]:
    return [output / "sample" / "t1_post1.nii.gz"]


def _patch_cgan_outputs(output: Path) -> list[Path]:
    datalist = output / "datalist.json"
    assert datalist.is_file(), f"{datalist} was not written"
    items = json.loads(datalist.read_text(encoding="utf-8"))["testing"]
    assert items, f"{datalist} lists no patch"
    paths = [value for item in items for key, value in item.items() if key not in ("case_id", "class")]
    return [datalist] + [output / path for path in paths]


def _liver_mmhcc_outputs(output: Path) -> list[Path]:
    return [output / "sample" / f"{sequence}.nii.gz" for sequence in ("t1fs_arterial", "t1fs_portal", "t2")]


def _brain_lesion2mpmri_outputs(output: Path) -> list[Path]:
    return [output / "sample" / f"{sequence}.nii.gz" for sequence in ("t1n", "t1c", "t2w", "t2f", "aptw")]


def _brain_tumor_fabrication_outputs(output: Path) -> list[Path]:
    return [output / "sample" / f"{role}.nii.gz" for role in ("t1n", "t1c", "t2w", "t2f", "label")]


# What each bundle's inference config writes with its default arguments, under the bundle folder.
DEFAULT_OUTPUTS = {"breast_dce_pre2post": _pre2post_outputs, "breast_dce_patch_cgan": _patch_cgan_outputs,
                   "liver_mmhcc_mask2mri": _liver_mmhcc_outputs, "brain_lesion2mpmri": _brain_lesion2mpmri_outputs,
                   "brain_tumor_fabrication": _brain_tumor_fabrication_outputs}


@pytest.mark.parametrize("name", BUNDLES)
def test_exported_bundle_runs_and_loads_from_the_wheel(installed: Installed, name: str):
    assert name in DEFAULT_OUTPUTS, f"tests/test_wheel.py: add what bundle {name}'s inference writes by default"
    exported = installed.work / "exported"
    printed = installed.run(
        installed.bin / "synthmr", "bundle", "export", name, "--out", exported, "--overwrite",
        env={"SYNTHMR_BUNDLE_PATH": str(REPO / "bundles")},
    )
    archive = Path(printed.strip().splitlines()[-1])
    assert archive.is_file() and archive.parent.resolve() == exported.resolve(), printed
    zoo = installed.work / "zoo"
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(zoo)
    bundle = zoo / name
    config = bundle / "configs" / "inference.json"
    assert config.is_file(), f"{archive.name} holds no {config.relative_to(zoo)}"

    installed.run(
        installed.python, "-I", "-m", "monai.bundle", "run", "--bundle_root", bundle, "--config_file", config
    )
    missing = [path for path in DEFAULT_OUTPUTS[name](bundle / "output") if not path.is_file()]
    assert not missing, f"python -m monai.bundle run did not write {missing}"

    # The runner, on the unzipped bundle and its sample case (generator bundles take no input and are not for it).
    roles = json.loads((bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))["synthmr"]["inputs"]
    samples = {role: bundle / "sample" / f"{role}.nii.gz" for role, spec in roles.items() if spec.get("required", True)}
    if samples and all(path.is_file() for path in samples.values()):
        out = installed.work / f"run_{name}"
        inputs = [argument for role, path in samples.items() for argument in ("--input", f"{role}={path}")]
        printed = installed.run(
            installed.bin / "synthmr", "run", name, *inputs, "--out", out, "--overwrite", "--trust-bundle",
            env={"SYNTHMR_BUNDLE_PATH": str(zoo)},  # an unzipped bundle is not a shipped one: trusted explicitly
        )
        result = json.loads(printed.strip().splitlines()[-1].partition(" ")[2])
        assert result["outputs"] and all(Path(path).is_file() for path in result["outputs"].values()), printed

    code = f"""
import monai.bundle, torch
net = monai.bundle.load({name!r}, bundle_dir={str(zoo)!r}, workflow_type="inference", device="cpu")
assert isinstance(net, torch.nn.Module), f"monai.bundle.load returned {{type(net).__name__}}, not the network"
weights = torch.load({str(bundle / "models" / "model.pt")!r}, map_location="cpu", weights_only=True)
loaded = net.state_dict()
assert loaded.keys() == weights.keys(), sorted(set(loaded) ^ set(weights))
assert all(torch.equal(loaded[key], weights[key]) for key in weights), "the network does not hold models/model.pt"
print(type(net).__name__)
"""
    installed.python_code(code)
