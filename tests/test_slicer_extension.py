"""The 3D Slicer extension's build and catalog files: what the Extensions Index and Slicer's packaging rely on."""

import json
import re
import shlex
import struct
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import jsonschema

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
