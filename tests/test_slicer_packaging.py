"""The Slicer extension installed from the Extensions catalog, where there is no SynthMR checkout: it finds the
bundles packaged with it, installs the synthmr wheel packaged with it (never a registry name) after a preflight that
names what no install can fix, shows each bundle's title, version and description, and registers each bundle's
sample case with Slicer's Sample Data module.

The packaged layout is the one the module's CMakeLists.txt installs (tests/test_slicer_extension.py builds it with
CMake): ``<module folder>/Resources/Bundles/<bundle>/`` and ``<module folder>/Resources/Wheels/synthmr-<version>-
py3-none-any.whl``, the module folder holding ``SynthMR.py`` and ``SynthMRLib/``.
"""

import hashlib
import importlib.metadata
import json
import shutil
import subprocess
import sys
import types
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from test_slicer_lib import EXTENSION
from test_slicer_lib import private_synthmr_config  # noqa: F401 (autouse: each test its own trust records)
from test_slicer_module import import_synthmr, qt_side_fakes, slicer_fakes

from SynthMRLib import SynthMRError, dependencies
from SynthMRLib.bundles import bundle_summary, discover_bundles, shipped_bundles
from SynthMRLib.samples import CATEGORY, bundle_folders, sample_case, sample_cases
from SynthMRLib.testing import write_test_bundle

ROOT = EXTENSION.parents[1]
SHIPPED = ROOT / "bundles" / "breast_dce_pre2post"
try:
    import tomllib
except ImportError:  # Python 3.10: the module's own reader (checked against tomllib on 3.11+)
    tomllib = None
PYPROJECT = (tomllib.loads((ROOT / "pyproject.toml").read_text())["project"] if tomllib
             else dependencies._read_project_table((ROOT / "pyproject.toml").read_text()))


def write_wheel(folder, version="0.2.0", requires_python=">=3.10", requires=None):
    """A synthmr wheel as ``pip wheel`` makes it: synthmr's modules (sources only) and ``*.dist-info/METADATA``,
    whose ``Requires-Dist`` lines are pyproject's dependencies unless ``requires`` is given."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"synthmr-{version}-py3-none-any.whl"
    requires = PYPROJECT["dependencies"] if requires is None else requires
    metadata = "\n".join(
        ["Metadata-Version: 2.4", "Name: synthmr", f"Version: {version}", f"Requires-Python: {requires_python}"]
        + [f"Requires-Dist: {requirement}" for requirement in requires]
    )
    package = ROOT / "training" / "synthmr"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path in sorted(package.rglob("*")):
            if path.suffix in (".py", ".json") and "__pycache__" not in path.parts:
                archive.write(path, "synthmr/" + path.relative_to(package).as_posix())
        archive.writestr(f"synthmr-{version}.dist-info/METADATA", metadata + "\n\n")
    return wheel


def install_layout(tmp_path, wheel=True):
    """The module as the Extensions Manager installs it, with no checkout above it: SynthMRLib, a shipped bundle
    and (optionally) the wheel under the module folder's Resources. Returns the module folder."""
    modules = tmp_path / "SynthMR" / "lib" / "Slicer-5.10" / "qt-scripted-modules"
    shutil.copytree(EXTENSION / "SynthMRLib", modules / "SynthMRLib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(EXTENSION / "SynthMR.py", modules / "SynthMR.py")
    shutil.copytree(SHIPPED, modules / "Resources" / "Bundles" / SHIPPED.name,
                    ignore=shutil.ignore_patterns("output", "data", "__pycache__"))
    if wheel:
        write_wheel(modules / "Resources" / "Wheels")
    return modules


def run_in(modules, code):
    """``code`` in a fresh Python that has the installed module folder on its path and no synthmr, PyTorch, MONAI
    or Slicer; its printed JSON."""
    prelude = (
        "import json, sys\n"
        "for name in ('slicer', 'qt', 'ctk', 'vtk', 'synthmr', 'torch', 'monai', 'SimpleITK'):\n"
        "    sys.modules[name] = None\n"
        f"sys.path.insert(0, {str(modules)!r})\n"
    )
    result = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=120,
                            cwd=modules.parents[3])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# Discovery in the installed layout


def test_packaged_bundles_are_found_where_no_checkout_is(tmp_path):
    modules = install_layout(tmp_path)
    found = run_in(modules, """
from SynthMRLib.bundles import discover_bundles, repository_root, shipped_bundles
from SynthMRLib.samples import bundle_folders, sample_cases
entries = discover_bundles()
folder, source = shipped_bundles()
print(json.dumps({
    "root": repository_root() is None,
    "shipped": [str(folder), source],
    "entries": [[e.name, e.source, str(e.path), e.problem, e.tool_description is not None, e.title, e.version]
                for e in entries],
    "samples": [[case.name, case.node_names] for case in sample_cases(bundle_folders([folder]))],
}))
""")
    packaged = modules / "Resources" / "Bundles"
    metadata = json.loads((SHIPPED / "configs" / "metadata.json").read_text())
    assert found["root"] and found["shipped"] == [str(packaged), "shipped"]
    assert found["entries"] == [[SHIPPED.name, "shipped", str(packaged / SHIPPED.name), None, True,
                                 metadata["name"], metadata["version"]]]
    assert found["samples"] == [[SHIPPED.name, ["t1_pre"]]]


def test_trust_works_from_the_packaged_wheel(tmp_path):
    """Installed from the catalog, before synthmr is installed: the trust rules are synthmr's own module, run from the
    wheel the extension carries; the packaged bundles are trusted, a user's bundle only once confirmed."""
    modules = install_layout(tmp_path)
    user = write_test_bundle(tmp_path / "user", "mine")
    write_test_bundle(tmp_path / "user", SHIPPED.name)  # a shipped bundle's name: refused, the shipped one stays
    found = run_in(modules, f"""
from SynthMRLib import SynthesisJob, SynthMRError, confirm_trust, discover_bundles
from SynthMRLib.bundles import trust_module
entries = discover_bundles(user_folder={str(user.parent)!r})
listed = [[e.name, e.source, e.trusted, e.problem] for e in entries]
mine = entries[0]
try:
    SynthesisJob(mine.tool_description, {{}}, {str(tmp_path / "out")!r})
except SynthMRError as error:
    refused = str(error)
trusted = confirm_trust(mine, lambda question: True).trusted
job = SynthesisJob(mine.tool_description, {{}}, {str(tmp_path / "out")!r})
print(json.dumps({{"module": [trust_module().__name__, trust_module().__file__], "listed": listed,
                  "refused": refused, "trusted": trusted, "store": str(trust_module().trust_store())}}))
""")
    wheel = next((modules / "Resources" / "Wheels").glob("synthmr-*.whl"))
    assert found["module"] == ["synthmr_trust", str(wheel / "synthmr" / "bundle" / "trust.py")]
    shadow = tmp_path / "user" / SHIPPED.name
    assert found["listed"] == [["mine", "user folder", False, None],
                               [SHIPPED.name, "user folder", False,
                                f"{shadow}: has the name of a shipped bundle; rename its folder to use it"],
                               [SHIPPED.name, "shipped", True, None]]
    assert found["refused"].startswith(f"bundle mine ({user}): is not trusted") and found["trusted"]
    assert found["store"].startswith(str(tmp_path))  # the test's own records, never the user's


def test_from_the_checkout_the_repository_bundles_are_the_shipped_ones():
    assert shipped_bundles() == (ROOT / "bundles", "repository")
    assert {entry.source for entry in discover_bundles()} == {"repository"}


# The install plan


def test_install_plan_names_the_packaged_wheel(tmp_path):
    modules = install_layout(tmp_path)
    found = run_in(modules, """
from SynthMRLib import dependencies
plan = dependencies.install_plan()
print(json.dumps({"kind": plan.source.kind, "path": str(plan.source.path), "version": plan.source.version,
                  "torch": plan.source.torch_requirement, "arguments": plan.pip_arguments("c.txt"),
                  "describe": plan.describe()}))
""")
    wheel = modules / "Resources" / "Wheels" / "synthmr-0.2.0-py3-none-any.whl"
    assert found["kind"] == "packaged wheel" and found["path"] == str(wheel) and found["version"] == "0.2.0"
    assert found["arguments"] == [str(wheel), "--constraint", "c.txt"]
    assert f"pip install {wheel}" in found["describe"] and "packaged with the extension" in found["describe"]
    # The torch range comes from the wheel's own metadata, which pyproject.toml's dependencies become.
    assert found["torch"] == dependencies.requirement_specifier(PYPROJECT["dependencies"], "torch") != ""


def test_install_plan_from_a_checkout_installs_the_checkout():
    plan = dependencies.install_plan()
    assert plan.source.kind == "checkout" and plan.source.path == ROOT
    assert plan.source.version == PYPROJECT["version"]
    assert plan.pip_arguments("c.txt") == [str(ROOT), "--constraint", "c.txt"]
    assert "the SynthMR checkout" in plan.describe()
    # Slicer's own packages are kept: the constraints pin what is installed.
    for line in plan.constraints.splitlines():
        name, version = line.split("==")
        assert name in dependencies.PROTECTED_DISTRIBUTIONS and importlib.metadata.version(name) == version


def test_without_wheel_or_checkout_nothing_is_installed_by_name(tmp_path):
    modules = install_layout(tmp_path, wheel=False)
    found = run_in(modules, """
from SynthMRLib import SynthMRError, dependencies
try:
    dependencies.install_plan()
except SynthMRError as error:
    print(json.dumps([str(error), dependencies.preflight()]))
""")
    message, problems = found
    assert "synthmr wheel is missing" in message and "Reinstall the SynthMR extension" in message
    assert str(modules / "Resources" / "Wheels") in message
    assert problems == [message]


def test_the_newest_packaged_wheel_wins(tmp_path, monkeypatch):
    modules = tmp_path / "modules"
    for version in ("0.2.0", "0.10.1", "0.9.0"):
        write_wheel(modules / "Resources" / "Wheels", version)
    monkeypatch.setattr(dependencies, "module_dir", lambda: modules)
    assert dependencies.packaged_wheel().name == "synthmr-0.10.1-py3-none-any.whl"


# The preflight


@pytest.fixture
def source(tmp_path):
    """synthmr's requirements as a packaged wheel declares them (torch from pyproject.toml's range)."""
    return dependencies._wheel_source(write_wheel(tmp_path / "Wheels", requires_python=">=3.10"))


def fake_environment(monkeypatch, python=(3, 12, 10), torch="2.5.1", pytorch_utils=True):
    """This Python's version, the installed torch (None: not installed) and whether PyTorchUtils is importable."""
    monkeypatch.setattr(dependencies, "sys", SimpleNamespace(version_info=python))
    real_version, real_find_spec = importlib.metadata.version, importlib.util.find_spec

    def version(name):
        if name == "torch":
            if torch is None:
                raise importlib.metadata.PackageNotFoundError(name)
            return torch
        return real_version(name)

    def find_spec(name, *args):
        if name == "PyTorchUtils":
            return object() if pytorch_utils else None
        return real_find_spec(name, *args)

    monkeypatch.setattr(dependencies.importlib.metadata, "version", version)
    monkeypatch.setattr(dependencies.importlib.util, "find_spec", find_spec)


def test_preflight_passes_in_a_fitting_slicer(source, monkeypatch):
    fake_environment(monkeypatch)
    assert dependencies.preflight(source) == []
    fake_environment(monkeypatch, torch=None, pytorch_utils=True)  # the PyTorch extension will install it
    assert dependencies.preflight(source) == []


def test_preflight_names_an_old_python(source, monkeypatch):
    fake_environment(monkeypatch, python=(3, 9, 10))  # Slicer 5.8
    (problem,) = dependencies.preflight(source)
    assert "Slicer's Python is 3.9.10" in problem and "needs Python >=3.10" in problem and "5.10" in problem


def test_preflight_names_a_torch_outside_the_range(source, monkeypatch):
    fake_environment(monkeypatch, torch="2.3.1+cu121")
    (problem,) = dependencies.preflight(source)
    assert "the installed PyTorch is 2.3.1+cu121" in problem and source.torch_requirement in problem
    assert "PyTorch Utils" in problem
    fake_environment(monkeypatch, torch="3.0.0")
    assert len(dependencies.preflight(source)) == 1


def test_preflight_asks_for_the_pytorch_extension_when_there_is_no_torch(source, monkeypatch):
    fake_environment(monkeypatch, torch=None, pytorch_utils=False)
    (problem,) = dependencies.preflight(source)
    assert "PyTorch is not installed" in problem and "install the PyTorch extension" in problem


def test_preflight_reads_the_checkouts_ranges(monkeypatch):
    fake_environment(monkeypatch, python=(3, 9, 0), torch="1.13.1")
    problems = dependencies.preflight()  # from the checkout: pyproject.toml's requires-python and torch range
    assert len(problems) == 2
    assert PYPROJECT["requires-python"] in problems[0] and "1.13.1" in problems[1]


@pytest.mark.parametrize("version, specifier, expected", [
    ("2.5.1", ">=2.4,<3", True),
    ("2.13.0+cpu", "<3,>=2.4", True),
    ("2.3.1", ">=2.4", False),
    ("3.0", ">=2.4,<3", False),
    ("3.0.0rc1", "<3", False),  # counted as its release
    ("3.9.10", ">=3.10", False),
    ("3.12.10", ">=3.10", True),
    ("2.4.1", "~=2.4", True),
    ("3.1", "~=2.4", False),
    ("2.5.1", "==2.5.*", True),
    ("2.6.0", "!=2.5.*", True),
    ("2.5", "==2.5.0", True),
    ("", "", True),
])
def test_version_specifiers(version, specifier, expected):
    assert dependencies.version_satisfies(version, specifier) is expected


def test_requirement_specifier_reads_pep508_and_skips_extras():
    requirements = ["torchvision>=0.19", "torch (>=2.4,<3)", "torch>=9; extra == 'train'", "monai[all]>=1.4"]
    assert dependencies.requirement_specifier(requirements, "torch") == ">=2.4,<3"
    assert dependencies.requirement_specifier(requirements, "MONAI") == ">=1.4"
    assert dependencies.requirement_specifier(["torch>=9; extra == 'train'"], "torch") == ""
    with pytest.raises(SynthMRError, match="cannot read"):
        dependencies.version_satisfies("1.0", "=>1")


@pytest.mark.skipif(tomllib is None, reason="needs tomllib (Python 3.11+) to compare with")
def test_pyproject_reader_without_tomllib_agrees():
    text = (ROOT / "pyproject.toml").read_text()
    assert dependencies._read_project_table(text) == {
        key: PYPROJECT[key] for key in ("version", "requires-python", "dependencies")
    }
    table = '[project]\nversion = "1.0"\ndependencies = [\n  "monai[nibabel]>=1.4",  # MONAI\n  "torch>=2.4,<3",\n]\n'
    assert dependencies._read_project_table(table + "[tool.x]\nversion = \"9\"\n") == {
        "version": "1.0", "dependencies": ["monai[nibabel]>=1.4", "torch>=2.4,<3"]
    }


def test_an_outdated_synthmr_is_offered_the_packaged_version(tmp_path, monkeypatch):
    modules = tmp_path / "modules"
    write_wheel(modules / "Resources" / "Wheels", "0.3.0")
    monkeypatch.setattr(dependencies, "module_dir", lambda: modules)
    fake_environment(monkeypatch)
    monkeypatch.setattr(dependencies.importlib.metadata, "version",
                        lambda name: {"synthmr": "0.2.0"}[name])
    assert dependencies.synthmr_update() == ("0.2.0", "0.3.0")
    monkeypatch.setattr(dependencies.importlib.metadata, "version", lambda name: "0.3.0")
    assert dependencies.synthmr_update() is None


# Title, version and description


def test_bundle_summary_reads_the_metadata_and_falls_back_to_the_folder(tmp_path):
    metadata = json.loads((SHIPPED / "configs" / "metadata.json").read_text())
    title, version, description = bundle_summary(SHIPPED)
    assert (title, version) == (metadata["name"], metadata["version"])
    assert description == " ".join(metadata["description"].split())
    bare = tmp_path / "bare_bundle"
    (bare / "configs").mkdir(parents=True)
    (bare / "configs" / "metadata.json").write_text(json.dumps({"name": 3, "description": ["not", "text"]}))
    assert bundle_summary(bare) == ("bare_bundle", "", "")
    (bare / "configs" / "metadata.json").write_text("{broken")
    assert bundle_summary(bare) == ("bare_bundle", "", "")
    assert bundle_summary(tmp_path / "nothing") == ("nothing", "", "")
    entry = {entry.name: entry for entry in discover_bundles()}[SHIPPED.name]
    assert (entry.title, entry.version, entry.description) == (title, version, description)


def test_selector_shows_title_and_version_with_the_description_as_tooltip(monkeypatch):
    module = import_synthmr(monkeypatch, {**slicer_fakes(), **qt_side_fakes()})
    entry = {entry.name: entry for entry in discover_bundles()}[SHIPPED.name]
    assert module.bundleItemText(entry) == f"{entry.title} v{entry.version}"
    tooltip = module.bundleItemToolTip(entry)
    assert tooltip.startswith(entry.description) and str(entry.path) in tooltip
    broken = entry.__class__("broken", Path("/x/broken"), "user folder", problem="/x/broken: not valid JSON")
    assert module.bundleItemText(broken) == "broken (cannot be used)"
    assert module.bundleItemToolTip(broken).startswith("/x/broken: not valid JSON")


# Sample Data


def test_sample_case_of_a_shipped_bundle():
    cases = {case.bundle: case for case in sample_cases(bundle_folders([ROOT / "bundles"]))}
    case = cases[SHIPPED.name]
    sample = SHIPPED / "sample" / "t1_pre.nii.gz"
    assert (case.bundle, case.name, case.category) == (SHIPPED.name, SHIPPED.name, CATEGORY)
    assert case.paths == (sample.resolve(),) and case.uris == [sample.resolve().as_uri()]
    assert case.node_names == ("t1_pre",) and case.file_types == ("VolumeFile",)
    assert case.checksums == (f"SHA256:{hashlib.sha256(sample.read_bytes()).hexdigest()}",)
    assert case.file_names == [f"SynthMR-{SHIPPED.name}-t1_pre.nii.gz"] and case.thumbnail is None
    # A bundle with label-map roles: its masks load as segmentations, in role order.
    liver = cases["liver_mmhcc_mask2mri"]
    assert liver.node_names == ("t1fs_arterial", "t1fs_portal", "t2", "liver", "tumor")
    assert liver.file_types == ("VolumeFile",) * 3 + ("SegmentationFile",) * 2


def test_sample_files_follow_the_roles_labelmaps_load_as_segmentations(tmp_path):
    bundle = write_test_bundle(tmp_path / "bundles")  # inputs t1_pre (reference), liver and tumor (labelmaps)
    sample = bundle / "sample"
    sample.mkdir()
    for name in ("tumor.nii.gz", "extra.nrrd", "t1_pre.nii.gz", "liver.seg.nrrd", "notes.txt", "thumbnail.png"):
        (sample / name).write_bytes(name.encode())
    case = sample_case(bundle)
    assert case.node_names == ("t1_pre", "liver", "tumor", "extra")
    assert case.file_types == ("VolumeFile", "SegmentationFile", "SegmentationFile", "VolumeFile")
    assert case.thumbnail == (sample / "thumbnail.png").resolve()
    other = write_test_bundle(tmp_path / "other", bundle.name)  # a second bundle of the same name: first one wins
    (other / "sample").mkdir()
    (other / "sample" / "t1_pre.nii.gz").write_bytes(b"x")
    assert [case.paths[0].parent for case in sample_cases([bundle, other])] == [sample.resolve()]
    assert sample_case(write_test_bundle(tmp_path / "none", "no_sample")) is None
    assert bundle_folders([None, tmp_path / "missing", tmp_path / "bundles"]) == [bundle]


def test_startup_registers_each_sample_with_the_sample_data_module(tmp_path, monkeypatch):
    fakes = {**slicer_fakes(), **qt_side_fakes()}
    user = tmp_path / "user"
    mine = write_test_bundle(user, "mine")
    (mine / "sample").mkdir()
    (mine / "sample" / "t1_pre.nii.gz").write_bytes(b"mine")
    fakes["qt"].QSettings = lambda: SimpleNamespace(value=lambda key: str(user) if key.endswith("UserBundleFolder")
                                                    else None)
    registered = []
    sample_data = types.ModuleType("SampleData")
    sample_data.SampleDataLogic = SimpleNamespace(registerCustomSampleDataSource=lambda **kw: registered.append(kw))
    fakes["SampleData"] = sample_data
    absent = dict.fromkeys(("torch", "monai", "synthmr", "PyTorchUtils"))
    module = import_synthmr(monkeypatch, {**fakes, **absent})
    module.SynthMR(SimpleNamespace())
    (signal, slot), = fakes["slicer"].app.connections
    assert signal == "startupCompleted()" and slot is module.registerSampleData
    slot()
    shipped = sorted(path.name for path in (ROOT / "bundles").iterdir() if (path / "sample").is_dir())
    assert SHIPPED.name in shipped
    assert [call["sampleName"] for call in registered] == ["mine", *shipped]  # user folder, then shipped
    call = registered[1 + shipped.index(SHIPPED.name)]
    assert call["category"] == "SynthMR" and call["nodeNames"] == ["t1_pre"]
    assert call["uris"] == [(SHIPPED / "sample" / "t1_pre.nii.gz").resolve().as_uri()]
    assert call["loadFileType"] == ["VolumeFile"] and call["checksums"][0].startswith("SHA256:")
    assert call["fileNames"] == [f"SynthMR-{SHIPPED.name}-t1_pre.nii.gz"]


# The module's Install dependencies flow (SynthMRLogic.installDependencies), with Slicer's dialogs and pip faked


@pytest.fixture
def install_flow(tmp_path, monkeypatch):
    """SynthMR.py under fakes; the dependency state is what the test sets in ``state``; ``calls`` records the
    confirmation dialog, pip and the PyTorch extension."""
    fakes = {**slicer_fakes(), **qt_side_fakes()}
    calls = []
    state = {"missing": ["monai", "synthmr"], "problems": [], "torch_declined": False}
    util = fakes["slicer.util"]
    util.confirmOkCancelDisplay = lambda text, detailedText="": calls.append(("confirm", text, detailedText)) or True

    def pip_install(arguments):
        calls.append(("pip", arguments, Path(arguments[2]).read_text()))
        state["missing"] = []

    util.pip_install = pip_install
    pytorch_utils = types.ModuleType("PyTorchUtils")

    class PyTorchUtilsLogic:
        def installTorch(self, askConfirmation, torchVersionRequirement):
            calls.append(("torch", torchVersionRequirement))
            if state["torch_declined"]:
                return None
            state["missing"] = [name for name in state["missing"] if name != "torch"]
            return object()

    pytorch_utils.PyTorchUtilsLogic = PyTorchUtilsLogic
    module = import_synthmr(monkeypatch, {**fakes, "PyTorchUtils": pytorch_utils})
    wheel = write_wheel(tmp_path / "Wheels")
    source = dependencies._wheel_source(wheel)
    monkeypatch.setattr(dependencies, "missing_modules", lambda: list(state["missing"]))
    monkeypatch.setattr(dependencies, "synthmr_update", lambda: None)
    monkeypatch.setattr(dependencies, "synthmr_source", lambda: source)
    monkeypatch.setattr(dependencies, "preflight", lambda source=None: list(state["problems"]))
    monkeypatch.setattr(dependencies, "protected_constraints", lambda: "numpy==2.4.6\n")
    return SimpleNamespace(logic=module.SynthMRLogic(), calls=calls, state=state, wheel=wheel, source=source)


def test_install_dependencies_shows_the_plan_then_installs_the_packaged_wheel(install_flow):
    assert install_flow.logic.installDependencies(askConfirmation=True) is True
    (confirm, question, detail), (pip, arguments, constraints) = install_flow.calls
    assert confirm == "confirm" and "monai, synthmr" in question
    assert f"pip install {install_flow.wheel}" in detail and "numpy 2.4.6" in detail
    assert pip == "pip" and arguments[0] == str(install_flow.wheel) and arguments[1] == "--constraint"
    assert constraints == "numpy==2.4.6\n"
    assert install_flow.logic.installDependencies() is True and len(install_flow.calls) == 2  # nothing missing now


def test_install_dependencies_stops_at_a_preflight_problem(install_flow):
    install_flow.state["problems"] = ["Slicer's Python is 3.9.10, but synthmr 0.2.0 needs Python >=3.10"]
    with pytest.raises(SynthMRError, match="nothing was installed: Slicer's Python is 3.9.10"):
        install_flow.logic.installDependencies()
    assert install_flow.calls == []


def test_install_dependencies_gets_torch_from_the_pytorch_extension_in_synthmrs_range(install_flow):
    install_flow.state["missing"] = ["torch", "monai", "synthmr"]
    install_flow.state["torch_declined"] = True
    assert install_flow.logic.installDependencies() is False
    assert install_flow.calls == [("torch", install_flow.source.torch_requirement)]
    install_flow.state["torch_declined"] = False
    assert install_flow.logic.installDependencies() is True
    assert [call[0] for call in install_flow.calls] == ["torch", "torch", "confirm", "pip"]
