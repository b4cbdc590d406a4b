"""The 3D Slicer extension's build and catalog files: what the Extensions Index and Slicer's packaging rely on."""

import json
import re
import shlex
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
import zipfile
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "slicer_extension" / "SynthMR"
CATALOG_ENTRY = ROOT / "slicer_extension" / "SynthMR.json"
# The fields of Slicer's catalog entry schema v1.0.2 (Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json),
# written out here because the tests run offline.
CATALOG_SCHEMA = {
    "type": "object",
    "required": ["$schema", "category", "scm_url"],
    "additionalProperties": False,
    "properties": {
        "$schema": {"type": "string"},
        "category": {"type": "string"},
        "scm_url": {"type": "string"},
        "scm_revision": {"type": "string"},
        "scm_type": {"type": "string", "enum": ["git", "local"]},
        "build_dependencies": {"type": "array", "items": {"type": "string"}},
        "dicom_support_rule": {"type": "string"},
        "build_subdirectory": {"type": "string"},
        "enabled": {"type": "boolean"},
        "tier": {"type": "integer", "minimum": 1, "maximum": 5},
    },
}


def cmake_sets(path):
    """``set(NAME values...)`` of a CMake file as NAME -> list of values (quotes removed, comments dropped)."""
    text = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
    return {name: shlex.split(values) for name, values in re.findall(r"\bset\(\s*(\w+)\s+(.*?)\)", text, re.DOTALL)}


def test_every_module_file_is_listed_in_its_cmakelists_and_every_listed_file_exists():
    sets = cmake_sets(MODULE / "CMakeLists.txt")
    assert sets["MODULE_NAME"] == ["SynthMR"]
    listed = [value.replace("${MODULE_NAME}", "SynthMR") for key in ("MODULE_PYTHON_SCRIPTS", "MODULE_PYTHON_RESOURCES")
              for value in sets[key]]
    assert len(listed) == len(set(listed))
    missing = [path for path in listed if not (MODULE / path).is_file()]
    assert not missing, f"listed in CMakeLists.txt but not there: {missing}"
    # Build files are not packaged; caches are not sources.
    shipped = sorted(
        path.relative_to(MODULE).as_posix() for path in MODULE.rglob("*")
        if path.is_file() and path.name != "CMakeLists.txt" and "__pycache__" not in path.parts
    )
    assert sorted(listed) == shipped, f"not listed in CMakeLists.txt: {sorted(set(shipped) - set(listed))}"
    module_cmake = (MODULE / "CMakeLists.txt").read_text()
    assert re.search(r"slicerMacroBuildScriptedModule\(\s*NAME \$\{MODULE_NAME\}\s+SCRIPTS \$\{MODULE_PYTHON_SCRIPTS\}"
                     r"\s+RESOURCES \$\{MODULE_PYTHON_RESOURCES\}", module_cmake)
    assert "add_subdirectory(Testing)" in module_cmake
    assert "add_subdirectory(Python)" in (MODULE / "Testing" / "CMakeLists.txt").read_text()
    assert "slicer_add_python_unittest(SCRIPT" in (MODULE / "Testing" / "Python" / "CMakeLists.txt").read_text()


def test_top_level_cmakelists_follows_the_extension_conventions():
    text = (ROOT / "CMakeLists.txt").read_text()
    for line in (
        "project(SynthMR)",
        "find_package(Slicer REQUIRED)",
        "include(${Slicer_USE_FILE})",
        "add_subdirectory(slicer_extension/SynthMR)",
        "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
        "include(${Slicer_EXTENSION_CPACK})",
    ):
        assert line in text, line
    assert text.index("include(${Slicer_USE_FILE})") < text.index("add_subdirectory(slicer_extension/SynthMR)")
    sets = cmake_sets(ROOT / "CMakeLists.txt")
    assert sets["EXTENSION_CATEGORY"] == ["Image Synthesis"] and sets["EXTENSION_DEPENDS"] == ["PyTorch"]
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL",
                "EXTENSION_SCREENSHOTURLS"):
        assert sets.get(key) and all(sets[key]), key
    # The index wants raw image URLs: the icon URL must name this repository's icon file.
    icon_url = sets["EXTENSION_ICONURL"][0]
    assert icon_url.startswith("https://raw.githubusercontent.com/")
    assert icon_url.endswith("/main/slicer_extension/SynthMR/Resources/Icons/SynthMR.png")
    assert all(url.startswith("https://") and url.endswith((".png", ".jpg", ".gif"))
               for url in " ".join(sets["EXTENSION_SCREENSHOTURLS"]).split())


def test_catalog_entry_parses_and_matches_the_cmake_variables():
    raw = CATALOG_ENTRY.read_bytes()
    assert b"\r" not in raw  # the index refuses CRLF
    entry = json.loads(raw)
    jsonschema.validate(entry, CATALOG_SCHEMA)
    sets = cmake_sets(ROOT / "CMakeLists.txt")
    project = re.search(r"project\((\w+)\)", (ROOT / "CMakeLists.txt").read_text()).group(1)
    assert CATALOG_ENTRY.stem == project == "SynthMR" and not project.startswith("Slicer")
    assert entry["category"] == sets["EXTENSION_CATEGORY"][0]
    assert entry["build_dependencies"] == sets["EXTENSION_DEPENDS"]
    assert entry["scm_url"] == sets["EXTENSION_HOMEPAGE"][0]
    repository = entry["scm_url"].removeprefix("https://github.com/")
    assert repository.split("/")[1].startswith("Slicer")
    assert f"/{repository}/{entry['scm_revision']}/" in sets["EXTENSION_ICONURL"][0]
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.2.json#")


def test_icon_is_a_128_pixel_png():
    data = (MODULE / "Resources" / "Icons" / "SynthMR.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (128, 128)


def test_ui_file_is_a_qt_designer_form_of_the_module():
    root = ElementTree.parse(MODULE / "Resources" / "UI" / "SynthMR.ui").getroot()
    assert root.tag == "ui" and root.findtext("class") == "SynthMR"
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == "SynthMR"
    names = [widget.get("name") for widget in root.iter("widget")]
    assert len(names) == len(set(names))  # childWidgetVariables needs unique object names


# Packaging: what the extension installs besides the module's files, so that it works without a checkout


def test_module_cmakelists_installs_the_bundles_and_the_wheel_where_synthmrlib_looks():
    text = "\n".join(line.split("#", 1)[0] for line in (MODULE / "CMakeLists.txt").read_text().splitlines())
    sys_path = str(MODULE)
    code = (
        "import sys, json; sys.path.insert(0, sys.argv[1]); "
        "from SynthMRLib.bundles import PACKAGED_BUNDLES; from SynthMRLib.dependencies import PACKAGED_WHEELS, "
        "WHEEL_PATTERN; print(json.dumps([PACKAGED_BUNDLES, PACKAGED_WHEELS, WHEEL_PATTERN]))"
    )
    bundles, wheels, pattern = json.loads(subprocess.run(
        [sys.executable, "-c", code, sys_path], capture_output=True, text=True, check=True
    ).stdout)
    resources = '${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/Resources'
    assert 'set(SynthMR_PACKAGED_RESOURCES_DIR "' + resources + '")' in text
    assert bundles[0] == wheels[0] == "Resources"
    # Every bundle's shipped parts (and its LICENSE) go to Resources/Bundles/<name>; nothing else of the bundle.
    assert sets_in(text)["SynthMR_BUNDLE_PARTS"] == ["configs", "models", "docs", "sample"]
    glob = r'"\$\{SynthMR_REPOSITORY_DIR\}/bundles/\*/configs/metadata\.json"'
    assert re.search(r"file\(GLOB SynthMR_BUNDLE_METADATA .*" + glob, text, re.DOTALL)
    bundle_destination = f'DESTINATION "${{SynthMR_PACKAGED_RESOURCES_DIR}}/{bundles[1]}/${{bundle_name}}"'
    assert re.search(r'install\(DIRECTORY "\$\{bundle_dir\}/\$\{part\}"\s+' + re.escape(bundle_destination), text)
    assert re.search(r'install\(FILES "\$\{bundle_dir\}/LICENSE"\s+' + re.escape(bundle_destination), text)
    # The wheel: named after pyproject's version, built by pip with Slicer's Python, installed to Resources/Wheels.
    assert pattern == "synthmr-*-py3-none-any.whl"
    assert 'set(SynthMR_WHEEL_NAME "synthmr-${SynthMR_PACKAGE_VERSION}-py3-none-any.whl")' in text
    assert re.search(r'"\$\{PYTHON_EXECUTABLE\}" -m pip wheel --no-deps', text)
    wheel_destination = f'DESTINATION "${{SynthMR_PACKAGED_RESOURCES_DIR}}/{wheels[1]}"'
    assert re.search(r'install\(FILES "\$\{SynthMR_PACKAGED_WHEEL\}"\s+' + re.escape(wheel_destination), text)
    assert "COMPONENT RuntimeLibraries" in text


def sets_in(text):
    return {name: shlex.split(values) for name, values in re.findall(r"\bset\(\s*(\w+)\s+(.*?)\)", text, re.DOTALL)}


# A stand-in for Slicer's CMake package: just what the extension's CMakeLists use, with the scripted module's files
# installed the way Slicer's ctkMacroCompilePythonScript installs them (relative paths kept, under the
# qt-scripted-modules folder).
STUB_SLICER_CONFIG = """
set(Slicer_USE_FILE "${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake")
set(Slicer_EXTENSION_GENERATE_CONFIG "${CMAKE_CURRENT_LIST_DIR}/Nothing.cmake")
set(Slicer_EXTENSION_CPACK "${CMAKE_CURRENT_LIST_DIR}/Nothing.cmake")
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR "lib/Slicer-5.10/qt-scripted-modules")
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR "lib/Slicer-5.10/qt-scripted-modules")
"""
STUB_USE_SLICER = """
macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY_SLICER "WITH_GENERIC_TESTS" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  foreach(file IN LISTS MY_SLICER_SCRIPTS MY_SLICER_RESOURCES)
    get_filename_component(folder "${file}" DIRECTORY)
    install(FILES "${CMAKE_CURRENT_SOURCE_DIR}/${file}"
      DESTINATION "${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/${folder}" COMPONENT RuntimeLibraries)
  endforeach()
endmacro()
"""


@pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake")
def test_extension_builds_and_installs_a_layout_that_works_without_a_checkout(tmp_path):
    """Configure, build and install the extension against a stand-in for Slicer, then use the installed module where
    no checkout is above it: it finds the packaged bundles, and its install plan names the packaged wheel."""
    source = tmp_path / "SlicerSynthMR"  # a copy: the wheel build and the build tree stay out of the checkout
    source.mkdir()
    for name in ("CMakeLists.txt", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "output", "data", ".pytest_cache")
    for name in ("training", "bundles", "slicer_extension"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    (source / "bundles" / "breast_dce_pre2post" / "output").mkdir()  # what a run leaves: must not be packaged
    (source / "bundles" / "breast_dce_pre2post" / "output" / "run.log").write_text("x")
    stub = tmp_path / "Slicer"
    stub.mkdir()
    (stub / "SlicerConfig.cmake").write_text(STUB_SLICER_CONFIG)
    (stub / "UseSlicer.cmake").write_text(STUB_USE_SLICER)
    (stub / "Nothing.cmake").write_text("")
    build, install = tmp_path / "build", tmp_path / "install"

    def run(*command):
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        shown = " ".join(map(str, command))
        assert result.returncode == 0, f"{shown}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"

    run("cmake", "-S", source, "-B", build, f"-DSlicer_DIR={stub}", "-DBUILD_TESTING=OFF",
        f"-DPYTHON_EXECUTABLE={sys.executable}", "-DSynthMR_WHEEL_BUILD_ISOLATION=OFF")
    run("cmake", "--build", build)
    run("cmake", "--install", build, "--prefix", install)

    modules = install / "lib" / "Slicer-5.10" / "qt-scripted-modules"
    assert (modules / "SynthMR.py").is_file() and (modules / "SynthMRLib" / "bundles.py").is_file()
    shipped = sorted(path.parent.parent.name for path in (ROOT / "bundles").glob("*/configs/metadata.json"))
    packaged = modules / "Resources" / "Bundles"
    assert sorted(path.name for path in packaged.iterdir()) == shipped
    pre2post = packaged / "breast_dce_pre2post"
    assert sorted(path.name for path in pre2post.iterdir()) == ["LICENSE", "configs", "docs", "models", "sample"]
    model = "models/model.pt"
    assert (pre2post / model).read_bytes() == (ROOT / "bundles" / "breast_dce_pre2post" / model).read_bytes()
    version = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE).group(1)
    wheels = list((modules / "Resources" / "Wheels").iterdir())
    assert [wheel.name for wheel in wheels] == [f"synthmr-{version}-py3-none-any.whl"]
    with zipfile.ZipFile(wheels[0]) as archive:
        names = archive.namelist()
    assert "synthmr/cli.py" in names and f"synthmr-{version}.dist-info/METADATA" in names
    assert not [name for name in names if name.startswith("synthmr/") and "__pycache__" in name]

    code = """
import json, sys
for name in ("slicer", "qt", "ctk", "vtk", "synthmr", "torch", "monai"):
    sys.modules[name] = None
sys.path.insert(0, sys.argv[1])
from SynthMRLib import dependencies
from SynthMRLib.bundles import discover_bundles, repository_root
entries = discover_bundles()
plan = dependencies.install_plan()
print(json.dumps({
    "root": str(repository_root()),
    "bundles": [[entry.name, entry.source, str(entry.path), entry.title, entry.version] for entry in entries],
    "source": [plan.source.kind, str(plan.source.path), plan.source.version, plan.source.torch_requirement],
    "arguments": plan.pip_arguments("constraints.txt"),
}))
"""
    result = subprocess.run([sys.executable, "-c", code, str(modules)], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["root"] == "None"
    assert [(name, source) for name, source, *_ in found["bundles"]] == [(name, "shipped") for name in shipped]
    assert all(Path(path).parent == packaged.resolve() for _, _, path, _, _ in found["bundles"])
    metadata = json.loads((ROOT / "bundles/breast_dce_pre2post/configs/metadata.json").read_text())
    assert [metadata["name"], metadata["version"]] in [bundle[3:] for bundle in found["bundles"]]
    assert found["source"][:3] == ["packaged wheel", str(wheels[0].resolve()), version]
    assert found["source"][3]  # the torch range, read from the wheel's metadata
    assert found["arguments"] == [str(wheels[0].resolve()), "--constraint", "constraints.txt"]
    assert "synthmr" not in found["arguments"]
