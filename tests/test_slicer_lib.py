"""SynthMRLib, the Slicer module's Slicer-free library: it imports with neither Slicer nor synthmr, finds bundles
(repository, user folder, added folders and zips, damaged ones listed with their problem), reads their tool
description with synthmr's reader, installed or not, runs only trusted bundles, checks inputs, writes files on the
right grid, and runs a bundle through the real runner with progress and cancel."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import struct
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

EXTENSION = Path(__file__).resolve().parents[1] / "slicer_extension" / "SynthMR"
sys.path.insert(0, str(EXTENSION))

from SynthMRLib import (  # noqa: E402 (the module folder is not a package on the path by itself)
    JobState,
    LesionEditRequest,
    SceneInput,
    SynthesisJob,
    SynthMRError,
    check_inputs,
    combine_segments,
    confirm_trust,
    discover_bundles,
    lps_grid,
    ras_point_to_ijk,
    ras_vector_to_ijk,
    read_tool_description,
    resolve_bundle,
    segment_label_values,
    trust_bundle,
    unpack_bundle_zip,
    write_nrrd,
)
import SynthMRLib.bundles  # noqa: E402
from SynthMRLib.bundles import SHADOWING_PROBLEM, repository_bundles, repository_root, saved_paths  # noqa: E402
from SynthMRLib.geometry import on_reference_grid  # noqa: E402
from SynthMRLib.testing import INTERFACE, LESION_CONTRAST, write_test_bundle  # noqa: E402

from synthmr.io import read_image  # noqa: E402

# IJK -> RAS of an oblique, anisotropic, off-origin grid with a flipped slice axis: catches any RAS/LPS, axis-order
# or sign mistake.
ANGLE = np.deg2rad(30)
IJK_TO_RAS = np.array(
    [
        [0.7 * np.cos(ANGLE), -0.9 * np.sin(ANGLE), 0.0, 10.0],
        [0.7 * np.sin(ANGLE), 0.9 * np.cos(ANGLE), 0.0, -20.0],
        [0.0, 0.0, -3.0, 5.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
SHAPE = (3, 6, 8)  # (K, J, I), as slicer.util.arrayFromVolume gives


def case_arrays():
    """t1_pre, liver and tumour arrays of one small case, (K, J, I)."""
    t1 = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    liver = np.zeros(SHAPE, np.uint8)
    liver[:, 1:5, 1:7] = 1
    tumor = np.zeros(SHAPE, np.uint8)
    tumor[1, 2:4, 2:4] = 1
    return {"t1_pre": t1, "liver": liver, "tumor": tumor}


def scene_inputs(arrays=None, **changes):
    arrays = arrays or case_arrays()
    inputs = {role: SceneInput(f"{role} node", array, IJK_TO_RAS) for role, array in arrays.items()}
    inputs.update(changes)
    return inputs


@pytest.fixture(autouse=True)
def private_synthmr_config(tmp_path, monkeypatch):
    """Each test its own trust records (synthmr.bundle.trust), never the user's: every test bundle has the same
    code, so one test's confirmation would otherwise trust another test's bundle."""
    monkeypatch.setenv("SYNTHMR_CONFIG_DIR", str(tmp_path / "synthmr_config"))
    monkeypatch.delenv("SYNTHMR_TRUST_BUNDLES", raising=False)
    return tmp_path / "synthmr_config"


@pytest.fixture
def bundle(tmp_path):
    return write_test_bundle(tmp_path / "bundles")


@pytest.fixture
def interface(bundle):
    """The test bundle's tool description, the bundle trusted: a job runs only a trusted bundle."""
    trust_bundle(bundle)
    return read_tool_description(bundle)


def write_case(folder, arrays=None):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = arrays or case_arrays()
    return {role: write_nrrd(folder / f"{role}.nrrd", array, IJK_TO_RAS) for role, array in arrays.items()}


# Importing


def test_imports_without_slicer_or_synthmr(bundle):
    """In a fresh Slicer synthmr is not installed; SynthMRLib must still list bundles and show their tool description,
    read by synthmr's own reader loaded from the checkout's source file."""
    code = f"""
import sys, json
for name in ("slicer", "qt", "ctk", "vtk", "synthmr", "torch", "monai", "SimpleITK"):
    sys.modules[name] = None  # any import of these raises ImportError
sys.path.insert(0, {str(EXTENSION)!r})
import SynthMRLib
from SynthMRLib import discover_bundles
entry, = [e for e in discover_bundles(user_folder={str(bundle.parent)!r}) if e.name == {bundle.name!r}]
d = entry.tool_description
print(json.dumps([type(d).__name__, type(d).__module__, list(d.inputs), d.inputs["liver"].labels, d.lesion_edits,
                  entry.source, entry.trusted, SynthMRLib.bundles.trust_module().__name__]))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        "ToolDescription", "synthmr_tool_description", ["t1_pre", "liver", "tumor"], {"1": "liver"},
        list(INTERFACE["lesion_edits"]), "user folder", False, "synthmr_trust",
    ]


def test_without_synthmr_or_checkout_the_reader_comes_from_the_packaged_wheel(bundle, tmp_path):
    """Installed from the Extensions catalog: no checkout above the module, synthmr not installed, only the wheel the
    extension carries (here a zip with the reader's two files, as the wheel holds them)."""
    module = tmp_path / "install" / "SynthMR"
    shutil.copytree(EXTENSION / "SynthMRLib", module / "SynthMRLib", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = module / "Resources" / "Wheels"
    wheels.mkdir(parents=True)
    source = Path(__file__).resolve().parents[1] / "training" / "synthmr" / "bundle"
    with zipfile.ZipFile(wheels / "synthmr-0.0.1-py3-none-any.whl", "w") as wheel:
        for name in ("description.py", "tool_description.schema.json", "trust.py"):
            wheel.write(source / name, f"synthmr/bundle/{name}")
    code = f"""
import sys, json
for name in ("slicer", "qt", "synthmr", "torch", "monai"):
    sys.modules[name] = None
sys.path.insert(0, {str(module)!r})
from SynthMRLib import read_tool_description, trust_bundle, SynthMRError
from SynthMRLib.bundles import bundle_is_trusted, repository_root, trust_module
d = read_tool_description({str(bundle)!r})
try:
    read_tool_description({str(bundle.parent / 'nowhere')!r})
except SynthMRError as error:
    problem = str(error)
before = bundle_is_trusted({str(bundle)!r})
trust_bundle({str(bundle)!r})
print(json.dumps([repository_root(), type(d).__module__, d.reference, problem, trust_module().__name__,
                  trust_module().__file__, before, bundle_is_trusted({str(bundle)!r})]))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    root, module_name, reference, problem, trust_name, trust_file, before, after = json.loads(result.stdout)
    assert root is None and module_name == "synthmr_tool_description" and reference == "t1_pre"
    assert "not a bundle folder" in problem
    assert trust_name == "synthmr_trust" and trust_file.startswith(str(wheels)) and (before, after) == (False, True)


@pytest.fixture
def without_synthmr(monkeypatch):
    """synthmr uninstalled for SynthMRLib: its reader is loaded again, from the checkout's source file."""
    for name in ("synthmr", "synthmr.bundle", "synthmr.bundle.description", "synthmr.bundle.trust"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(SynthMRLib.bundles, "_synthmr_modules", {})
    for name in (SynthMRLib.bundles.READER_MODULE, SynthMRLib.bundles.TRUST_MODULE):
        monkeypatch.delitem(sys.modules, name, raising=False)


def test_the_same_reader_with_and_without_synthmr(bundle, request):
    assert SynthMRLib.bundles.trust_module().__name__ == "synthmr.bundle.trust"
    installed = read_tool_description(bundle)
    assert type(installed).__module__ == "synthmr.bundle.description" and installed.name == "synthmr_test"
    assert list(installed.inputs) == ["t1_pre", "liver", "tumor"]
    assert list(installed.outputs) == ["t1_post1", "tumor_shown"]
    assert installed.inputs["tumor"].required is False and installed.inputs["liver"].labels == {1: "liver"}
    assert (installed.reference, installed.organ_mask, installed.lesion) == ("t1_pre", "liver", "tumor")
    request.getfixturevalue("without_synthmr")
    alone = read_tool_description(bundle)
    assert type(alone).__module__ == "synthmr_tool_description"
    assert dataclasses.asdict(alone) == dataclasses.asdict(installed)
    assert SynthMRLib.bundles.trust_module().__name__ == "synthmr_trust"  # the trust rules too, from the checkout


def rewrite_block(bundle, change):
    path = bundle / "configs" / "metadata.json"
    metadata = json.loads(path.read_text())
    change(metadata["synthmr"])
    path.write_text(json.dumps(metadata))


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda b: b["inputs"]["liver"].update(kind="mask"), "synthmr.inputs.liver.kind"),
        (lambda b: b.update(reference="t2"), "synthmr.reference"),
        (lambda b: b.update(reference="tumor"), "synthmr.reference"),
        (lambda b: b.update(organ_mask="t1_pre"), "synthmr.organ_mask"),
        (lambda b: b.update(lesion_edits=["rotate"]), "synthmr.lesion_edits"),
        (lambda b: b.update(lesion=None), "synthmr.lesion"),
        (lambda b: b["inputs"]["liver"].update(labels={"0": "bg"}), "synthmr.inputs.liver.labels"),
        (lambda b: b["inputs"]["t1_pre"].update(labels={"1": "x"}), "synthmr.inputs.t1_pre.labels"),
        (lambda b: b.update(spatial_dims=4), "synthmr.spatial_dims"),
        (lambda b: b.pop("outputs"), "field synthmr: missing field(s) outputs"),
        (lambda b: b["inputs"].update(case_id=b["inputs"]["t1_pre"]), "synthmr.inputs.case_id"),
    ],
)
def test_a_bad_block_is_rejected_naming_the_field_with_and_without_synthmr(bundle, request, change, field):
    rewrite_block(bundle, change)
    with pytest.raises(SynthMRError) as installed:
        read_tool_description(bundle)
    request.getfixturevalue("without_synthmr")
    with pytest.raises(SynthMRError) as alone:
        read_tool_description(bundle)
    assert str(alone.value) == str(installed.value)
    assert str(installed.value).startswith(f"{bundle / 'configs' / 'metadata.json'}: ") and field in str(installed.value)


# Discovery


def test_discovery_order_user_folder_repository_and_problems(tmp_path):
    repository, user, added = tmp_path / "repository", tmp_path / "user", tmp_path / "added"
    write_test_bundle(repository, "shipped")
    write_test_bundle(repository, "only_repository")
    write_test_bundle(user, "mine")
    broken = write_test_bundle(user, "broken")
    (broken / "configs" / "metadata.json").write_text("{not json")
    mine = write_test_bundle(added, "mine")
    (user / "not_a_bundle").mkdir()
    entries = discover_bundles(added=[mine, tmp_path / "gone"], user_folder=user, repository=repository)
    found = {entry.name: entry for entry in entries}
    assert [entry.name for entry in entries] == ["mine", "gone", "broken", "only_repository", "shipped"]
    assert found["mine"].path == mine.resolve() and found["mine"].source == "added"  # first source wins
    assert found["only_repository"].source == "repository" and found["only_repository"].tool_description is not None
    assert found["broken"].tool_description is None and "not valid JSON" in found["broken"].problem
    assert found["gone"].problem == f"{tmp_path / 'gone'}: no such bundle folder or zip"
    # Shipped bundles are trusted; the others wait for the user's confirmation.
    assert [entry.trusted for entry in entries] == [False, False, False, True, True]


def test_a_bundle_with_a_shipped_name_is_refused_and_the_shipped_one_stays(tmp_path):
    repository, user, added = tmp_path / "repository", tmp_path / "user", tmp_path / "added"
    shipped = write_test_bundle(repository, "shipped")
    in_user_folder = write_test_bundle(user, "shipped")
    in_added = write_test_bundle(added, "shipped")
    entries = discover_bundles(added=[in_added, shipped], user_folder=user, repository=repository)
    assert [(entry.source, entry.path) for entry in entries] == [
        ("added", in_added.resolve()), ("user folder", in_user_folder.resolve()), ("repository", shipped.resolve())
    ]  # the shipped folder itself, added again, is listed once: as shipped
    for entry in entries[:2]:
        assert entry.problem == f"{entry.path}: {SHADOWING_PROBLEM}" and entry.tool_description is None
        assert not entry.trusted
    assert entries[2].problem is None and entries[2].trusted and entries[2].tool_description.name == "shipped"


def test_repository_bundles_are_found_from_the_checkout():
    root = repository_root()
    assert root == EXTENSION.parents[1] and repository_bundles() == root / "bundles"
    expected = sorted(p.name for p in (root / "bundles").iterdir() if (p / "configs" / "metadata.json").is_file())
    found = [entry for entry in discover_bundles() if entry.source == "repository"]
    assert sorted(entry.name for entry in found) == expected


def zip_folder(folder, zip_path, inside=""):
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, inside + path.relative_to(folder).as_posix())
    return zip_path


def test_zipped_bundle_is_unpacked_once_into_the_cache(tmp_path):
    bundle = write_test_bundle(tmp_path / "src", "zipped")
    cache = tmp_path / "cache"
    of_folder = zip_folder(bundle, tmp_path / "whatever.zip", inside="zipped/")  # a zip of the bundle folder
    of_content = zip_folder(bundle, tmp_path / "named_by_zip.zip")  # a zip of its content
    unpacked = unpack_bundle_zip(of_folder, cache)
    assert unpacked.name == "zipped" and unpacked.parent.parent == cache.resolve()
    assert read_tool_description(unpacked).inputs.keys() == {"t1_pre", "liver", "tumor"}
    stamp = (unpacked / "configs" / "metadata.json").stat().st_mtime_ns
    assert unpack_bundle_zip(of_folder, cache) == unpacked  # same content: the same folder, not unpacked again
    assert (unpacked / "configs" / "metadata.json").stat().st_mtime_ns == stamp
    assert resolve_bundle(of_content, cache).name == "named_by_zip"
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no staging folder left
    entries = discover_bundles(added=[of_folder], cache_folder=cache, repository=tmp_path / "none")
    assert [(entry.name, entry.source, entry.path) for entry in entries] == [("zipped", "added", unpacked)]


def test_bad_zips_are_refused_with_one_message(tmp_path):
    cache = tmp_path / "cache"
    not_zip = tmp_path / "bundle.zip"
    not_zip.write_text("plain text")
    with pytest.raises(SynthMRError, match="not a zip file"):
        unpack_bundle_zip(not_zip, cache)
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("README.txt", "no bundle here")
    with pytest.raises(SynthMRError, match="holds no bundle"):
        unpack_bundle_zip(empty, cache)
    escaping = tmp_path / "escaping.zip"
    with zipfile.ZipFile(escaping, "w") as archive:
        archive.writestr("configs/metadata.json", "{}")
        archive.writestr("../outside.txt", "x")
    with pytest.raises(SynthMRError, match="outside the bundle folder"):
        unpack_bundle_zip(escaping, cache)
    assert not (tmp_path / "outside.txt").exists() and not cache.exists()


def damage(zip_path, name, change):
    """Rewrite the central-directory header of member ``name``: ``change(header)`` edits its bytes in place."""
    data = bytearray(zip_path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at != -1:
        length = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + length] == name.encode():
            change(memoryview(data)[at:])
        at = data.find(b"PK\x01\x02", at + 4)
    zip_path.write_bytes(bytes(data))
    return zip_path


def flip_data_byte(zip_path, name):
    """Flip one byte of a stored member's data: its checksum no longer fits."""
    with zipfile.ZipFile(zip_path) as archive:
        info = archive.getinfo(name)
    data = bytearray(zip_path.read_bytes())
    data[info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 3] ^= 0xFF
    zip_path.write_bytes(bytes(data))
    return zip_path


def assert_refused(zip_path, cache, words):
    with pytest.raises(SynthMRError) as raised:
        unpack_bundle_zip(zip_path, cache)
    message = str(raised.value)
    assert message.startswith(f"{zip_path}: ") and "\n" not in message and words in message, message
    assert not cache.exists() or list(cache.iterdir()) == []  # no staging folder, no half entry


def test_damaged_zips_are_one_message_and_leave_nothing_in_the_cache(tmp_path):
    bundle = write_test_bundle(tmp_path / "src", "zipped")
    cache = tmp_path / "cache"
    metadata = "zipped/configs/metadata.json"
    bad_crc = flip_data_byte(zip_folder(bundle, tmp_path / "crc.zip", inside="zipped/"), metadata)
    assert_refused(bad_crc, cache, f"member {metadata!r} is damaged")
    # Headers that declare more than the member holds: zipfile itself would accept the deflated member.
    deflated = tmp_path / "deflated.zip"
    shutil.make_archive(str(deflated.with_suffix("")), "zip", bundle.parent, bundle.name)
    bigger = damage(deflated, metadata, lambda header: struct.pack_into("<I", header, 24, 100_000))
    assert_refused(bigger, cache, "its header declares 100000 bytes")
    truncated = tmp_path / "truncated.zip"
    whole = zip_folder(bundle, tmp_path / "whole.zip", inside="zipped/").read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2] + whole[-22:])  # the end record points at nothing
    assert_refused(truncated, cache, "cannot be unpacked, it is damaged (")
    unknown = damage(zip_folder(bundle, tmp_path / "method.zip", inside="zipped/"), metadata,
                     lambda header: struct.pack_into("<H", header, 10, 99))  # compression method 99 (AES)
    assert_refused(unknown, cache, "cannot be unpacked, it is damaged (")
    encrypted = damage(zip_folder(bundle, tmp_path / "encrypted.zip", inside="zipped/"), metadata,
                       lambda header: struct.pack_into("<H", header, 8, 1))
    assert_refused(encrypted, cache, "is encrypted")


def test_a_zip_bomb_with_lying_headers_is_stopped_by_what_really_comes_out(tmp_path, monkeypatch):
    bundle = write_test_bundle(tmp_path / "src", "zipped")
    (bundle / "models").mkdir()
    (bundle / "models" / "weights.pt").write_bytes(bytes(3 * 1024 * 1024))  # deflates to a few kB
    bomb = tmp_path / "bomb.zip"
    shutil.make_archive(str(bomb.with_suffix("")), "zip", bundle.parent, bundle.name)
    monkeypatch.setattr(SynthMRLib.bundles, "MAX_UNPACKED_BYTES", 2 * 1024 * 1024)
    assert_refused(bomb, tmp_path / "cache", "unpacks to 0.0")  # honest headers: refused before unpacking
    # The headers now declare 10 bytes of the checksum of their first 10: zipfile alone would write 10 bytes and
    # call the member sound.
    damage(bomb, "zipped/models/weights.pt", lambda header: struct.pack_into("<I", header, 24, 10))
    damage(bomb, "zipped/models/weights.pt", lambda header: struct.pack_into("<I", header, 16, zlib.crc32(bytes(10))))
    with zipfile.ZipFile(bomb) as archive:
        assert archive.read("zipped/models/weights.pt") == bytes(10)
    assert_refused(bomb, tmp_path / "cache", "unpacks to more than a bundle's")


def test_a_broken_saved_bundle_does_not_stop_the_listing(tmp_path, bundle):
    """The added bundles are saved in Slicer's settings and listed at every start: whatever they became, the
    others are still listed, and each broken one says why."""
    bad_crc = flip_data_byte(zip_folder(bundle, tmp_path / "crc.zip", inside="x/"), "x/configs/metadata.json")
    too_long = str(tmp_path / ("x" * 300))  # stat fails with an error other than "not found"
    listed = discover_bundles(added=saved_paths([str(bad_crc), too_long, 7, "", None, str(bundle)]),
                              cache_folder=tmp_path / "cache", repository=tmp_path / "none")
    assert [(entry.name, entry.problem is None) for entry in listed] == [("crc", False), ("x" * 300, False),
                                                                       (bundle.name, True)]
    assert "is damaged" in listed[0].problem and "cannot be read (File name too long)" in listed[1].problem
    assert saved_paths("/one/bundle") == ["/one/bundle"] and saved_paths(None) == saved_paths(3) == []
    assert discover_bundles(added=[3, None], repository=tmp_path / "none") == []  # as saved: no path, nothing


# Trust: a bundle's configs run code


def job_for(bundle, tmp_path):
    return SynthesisJob(read_tool_description(bundle), write_case(tmp_path / "case"), tmp_path / "out")


def test_an_untrusted_bundle_is_not_run_until_the_user_confirms_it(tmp_path, bundle, private_synthmr_config):
    (entry,) = discover_bundles(added=[bundle], repository=tmp_path / "none")
    assert entry.problem is None and not entry.trusted
    with pytest.raises(SynthMRError) as refused:
        job_for(bundle, tmp_path)
    message = str(refused.value)
    assert message.startswith(f"bundle {bundle.name} ({bundle}): is not trusted") and "confirm" in message
    assert "\n" not in message
    questions = []
    declined = confirm_trust(entry, lambda question: questions.append(question) or False)
    assert not declined.trusted and not (private_synthmr_config / "trusted_bundles.json").exists()
    assert questions[0].startswith(f"The bundle {bundle.name} ({bundle}) is not shipped with synthmr")
    assert "configs/inference.yaml" in questions[0] and "Run it only if you trust its author." in questions[0]
    accepted = confirm_trust(entry, lambda question: True)
    assert accepted.trusted and len(questions) == 1
    records = json.loads((private_synthmr_config / "trusted_bundles.json").read_text())["bundles"]
    assert list(records) == [SynthMRLib.bundles.trust_module().code_digest(bundle)]
    assert confirm_trust(accepted, lambda question: pytest.fail("asked again")).trusted
    assert discover_bundles(added=[bundle], repository=tmp_path / "none")[0].trusted
    job = job_for(bundle, tmp_path)
    # No --trust-bundle: synthmr run finds the record by the code's digest, so code edited since is refused there.
    assert "--trust-bundle" not in job.commands()[-1]


def test_a_changed_config_needs_trust_again_new_weights_do_not(tmp_path, bundle):
    trust_bundle(bundle)
    (bundle / "models").mkdir()
    (bundle / "models" / "model.pt").write_bytes(b"new weights")
    assert discover_bundles(added=[bundle], repository=tmp_path / "none")[0].trusted
    config = bundle / "configs" / "inference.yaml"
    config.write_text(config.read_text() + "\nextra: $__import__('os').getcwd()\n")
    (entry,) = discover_bundles(added=[bundle], repository=tmp_path / "none")
    assert not entry.trusted
    with pytest.raises(SynthMRError, match="is not trusted"):
        job_for(bundle, tmp_path)
    assert not confirm_trust(entry, lambda question: False).trusted  # checked again, so asked again


def test_shipped_bundles_are_trusted_and_the_environment_can_trust_all(tmp_path, bundle, monkeypatch):
    shipped = [entry for entry in discover_bundles() if entry.problem is None]
    assert shipped and all(entry.trusted for entry in shipped)
    assert confirm_trust(shipped[0], lambda question: pytest.fail("a shipped bundle asked")).trusted
    job = SynthesisJob(shipped[0].tool_description, {}, tmp_path / "out")  # not refused
    assert job.commands()[-1][-1] == "--trust-bundle"
    monkeypatch.setenv("SYNTHMR_TRUST_BUNDLES", "1")
    assert discover_bundles(added=[bundle], repository=tmp_path / "none")[0].trusted
    job_for(bundle, tmp_path)


# Geometry: what the module writes is read on the same grid by SimpleITK (synthmr)


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint8, bool, np.float64])
def test_nrrd_keeps_the_grid_in_lps(tmp_path, dtype):
    array = (np.random.default_rng(1).random(SHAPE) * 50).astype(dtype)
    path = write_nrrd(tmp_path / "volume.nrrd", array, IJK_TO_RAS)
    volume = read_image(path)
    np.testing.assert_allclose(volume.affine, IJK_TO_RAS, atol=1e-9)  # Volume.affine is index -> RAS
    np.testing.assert_array_equal(volume.array, np.transpose(array, (2, 1, 0)))  # (K, J, I) -> ITK (I, J, K)
    spacing, origin, direction = lps_grid(IJK_TO_RAS)
    np.testing.assert_allclose(volume.spacing, spacing)
    np.testing.assert_allclose(volume.origin, origin)
    np.testing.assert_allclose(volume.direction, direction, atol=1e-12)
    assert origin.tolist() == [-10.0, 20.0, 5.0]  # LPS: x and y negated
    assert [p.name for p in tmp_path.iterdir()] == ["volume.nrrd"]


def test_ras_to_ijk_conversions():
    np.testing.assert_allclose(ras_point_to_ijk((IJK_TO_RAS @ [2, 3, 1, 1])[:3], IJK_TO_RAS), [2, 3, 1])
    step = IJK_TO_RAS[:3, :3] @ [1, -2, 1]
    np.testing.assert_allclose(ras_vector_to_ijk(step, IJK_TO_RAS), [1, -2, 1])


def test_equivalent_grids_are_mapped_back_exactly():
    array = np.random.default_rng(2).random(SHAPE)
    flipped = IJK_TO_RAS.copy()  # the slice axis reversed, as Slicer reads a left-handed grid
    flipped[:3, 2] *= -1
    flipped[:3, 3] += IJK_TO_RAS[:3, 2] * (SHAPE[0] - 1)
    np.testing.assert_array_equal(on_reference_grid(array[::-1], flipped, IJK_TO_RAS), array)
    swapped = IJK_TO_RAS[:, [1, 0, 2, 3]]  # I and J exchanged
    np.testing.assert_array_equal(on_reference_grid(np.swapaxes(array, 1, 2), swapped, IJK_TO_RAS), array)
    assert on_reference_grid(array, IJK_TO_RAS, IJK_TO_RAS) is array
    shifted = IJK_TO_RAS.copy()
    shifted[:3, 3] += IJK_TO_RAS[:3, 0]  # one voxel along I: other positions, not the same grid
    half = IJK_TO_RAS.copy()
    half[:3, 0] /= 2
    for matrix in (shifted, half):
        with pytest.raises(SynthMRError, match="not at the positions"):
            on_reference_grid(array, matrix, IJK_TO_RAS)


# Validation


def test_valid_inputs_pass(interface):
    check_inputs(interface, scene_inputs())
    arrays = case_arrays()
    del arrays["tumor"]  # optional
    check_inputs(interface, scene_inputs(arrays))


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda a: a.pop("liver"), ["choose the required input(s) 'liver'", "tumor (tumour mask, optional)"]),
        (lambda a: a.update(t2=a["t1_pre"]), ["has no input role(s) 't2'"]),
        (lambda a: a["liver"].__setitem__((0, 0, 0), 2), ["input 'liver' (liver node)", "value(s) 2", "1 (liver)"]),
        (lambda a: a["liver"].fill(0), ["input 'liver' (liver node): is empty"]),
        (lambda a: a.update(liver=a["liver"] * 0.5), ["non-integer"]),
        (lambda a: a["t1_pre"].__setitem__((0, 0, 0), np.nan), ["input 't1_pre' (t1_pre node): 1 voxels are NaN"]),
        (lambda a: a.update(t1_pre=np.stack([a["t1_pre"]] * 3, -1)), ["has 3 components per voxel"]),
        (
            lambda a: a.update(liver=a["liver"][:, :, :4]),
            ["input 'liver' (liver node): is not on the grid", "size 4x6x3 vs 8x6x3"],
        ),
    ],
)
def test_bad_inputs_are_refused_naming_the_node(interface, change, words):
    arrays = case_arrays()
    change(arrays)
    with pytest.raises(SynthMRError) as raised:
        check_inputs(interface, scene_inputs(arrays))
    assert all(word in str(raised.value) for word in words), raised.value


@pytest.mark.parametrize(
    "matrix_change, words",
    [
        (lambda m: m.__setitem__((0, 3), 11.0), ["origin 11x-20x5 vs 10x-20x5 mm (RAS)"]),
        (lambda m: m.__setitem__((slice(0, 3), 2), [0, 0, -3.5]), ["spacing 0.7x0.9x3.5 vs 0.7x0.9x3 mm"]),
        (lambda m: m.__setitem__((slice(0, 3), 2), [0, 0, 3.0]), ["the axis directions differ"]),
    ],
)
def test_grid_mismatch_says_how(interface, matrix_change, words):
    matrix = IJK_TO_RAS.copy()
    matrix_change(matrix)
    inputs = scene_inputs(liver=SceneInput("liver node", case_arrays()["liver"], matrix))
    with pytest.raises(SynthMRError) as raised:
        check_inputs(interface, inputs)
    assert "is not on the grid of the reference input 't1_pre' (t1_pre node)" in str(raised.value)
    assert all(word in str(raised.value) for word in words), raised.value
    noisy = IJK_TO_RAS.copy()
    noisy[:3] += 1e-5  # what positions stored as 32-bit floats differ by
    inputs["liver"] = SceneInput("liver node", case_arrays()["liver"], noisy)
    check_inputs(interface, inputs)


def test_segment_labels_by_name_order_or_single(interface):
    role = interface.inputs["liver"]
    assert segment_label_values(role, "Seg", ["Segment_1"]) == [1]  # one segment, one label: its name is irrelevant
    multi = type(role)("lesion", "labelmap", "BraTS labels", labels={1: "necrotic core", 2: "edema", 3: "enhancing"})
    assert segment_label_values(multi, "Seg", [" Edema", "ENHANCING", "necrotic core"]) == [2, 3, 1]
    with pytest.raises(SynthMRError, match=r"segment\(s\) 'tumour' match no label.*1 \(necrotic core\), 2 \(edema\)"):
        segment_label_values(multi, "Seg", ["edema", "tumour"])
    with pytest.raises(SynthMRError, match="repeat another segment's label"):
        segment_label_values(multi, "Seg", ["edema", "Edema"])
    anything = type(role)("mask", "labelmap", "any labels")
    assert segment_label_values(anything, "Seg", ["a", "b", "c"]) == [1, 2, 3]


def test_combine_segments_refuses_overlap(interface):
    role = interface.inputs["liver"]
    first, second = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    first[0, 0, :2], second[0, 0, 1:3] = 1, 1
    combined = combine_segments(role, "Seg", [("a", first), ("b", second * 0)], [1, 2])
    assert combined.dtype == np.uint8 and np.array_equal(combined, first)
    with pytest.raises(SynthMRError, match="segment 'b' overlaps another segment in 1 voxels"):
        combine_segments(role, "Seg", [("a", first), ("b", second)], [1, 2])


# Lesion edit requests


def test_edit_request_arguments_and_checks(interface):
    request = LesionEditRequest(translate=(-1.0, 2.0, 0.5), scale=1.5, mirror=True, transplant=Path("/d.nrrd"),
                                centre=(3.0, 4.0, 1.0))
    assert request.requested == ("translate", "scale", "mirror", "transplant")
    assert request.arguments() == ["--unit", "voxel", "--transplant=/d.nrrd", "--centre=3.0,4.0,1.0", "--mirror",
                                   "--scale=1.5", "--translate=-1.0,2.0,0.5"]
    request.check(interface, has_lesion=False)  # a transplant needs no lesion of the case's own
    with pytest.raises(SynthMRError, match="choose the lesion input 'tumor'"):
        LesionEditRequest(mirror=True).check(interface, has_lesion=False)
    with pytest.raises(SynthMRError, match="scale factor -1: must be a positive number"):
        LesionEditRequest(scale=-1).check(interface, has_lesion=True)
    narrow = dataclasses.replace(interface, lesion_edits=("translate",))
    with pytest.raises(SynthMRError, match=r"does not support the lesion edit\(s\) mirror \(it supports: translate\)"):
        LesionEditRequest(mirror=True).check(narrow, has_lesion=True)
    assert not LesionEditRequest().requested


def test_an_edited_lesion_goes_to_the_lesion_role_and_the_unedited_one_to_the_source_role(interface, tmp_path):
    """A bundle that declares source_lesion (it erases the traces of the lesion the images show) gets the
    unedited lesion there and the edited one as its lesion; a bundle without it gets only the edited one."""
    paths = write_case(tmp_path / "case")
    edits = LesionEditRequest(mirror=True)

    def run_inputs(description):
        job = SynthesisJob(description, paths, tmp_path / f"out_{description.source_lesion}", edits=edits)
        edit, run = job.commands()
        assert edit[edit.index("--lesion") + 1] == str(Path(paths["tumor"]).absolute())
        return dict(run[i + 1].split("=", 1) for i, word in enumerate(run) if word == "--input"), job

    inputs, job = run_inputs(dataclasses.replace(interface, source_lesion="tumor_before"))
    assert inputs["tumor"] == str(job.edited_lesion) and inputs["tumor_before"] == str(Path(paths["tumor"]).absolute())
    inputs, job = run_inputs(interface)
    assert inputs["tumor"] == str(job.edited_lesion) and "tumor_before" not in inputs


def test_a_map_of_organ_and_lesion_is_edited_with_its_organ_labels(interface, tmp_path):
    """A bundle whose lesion input holds the organ's tissue too (SAMR's lesion map) names its organ labels, and
    the edit step passes them to synthmr lesion; other bundles' edit steps do not."""
    paths = write_case(tmp_path / "case")
    edits = LesionEditRequest(scale=0.5)
    edit, _ = SynthesisJob(dataclasses.replace(interface, organ_labels=(1, 5)), paths, tmp_path / "a", edits=edits).commands()
    assert "--organ_labels=1,5" in edit
    edit, _ = SynthesisJob(interface, paths, tmp_path / "b", edits=edits).commands()
    assert not any(word.startswith("--organ_labels") for word in edit)


# Running through the real runner


def test_job_runs_the_bundle_with_progress(interface, tmp_path):
    paths = write_case(tmp_path / "work")
    job = SynthesisJob(interface, paths, tmp_path / "work" / "out")
    events = []
    job.start()
    assert job.wait(timeout=120, progress=events.append) is JobState.SUCCEEDED, job.error
    fractions = [event.fraction for event in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert [events[0].stage, events[-1].stage] == ["validate", "done"]
    assert job.outputs == {role: (tmp_path / "work" / "out" / f"{role}.nii.gz").resolve()
                           for role in ("t1_post1", "tumor_shown")}
    output = read_image(job.outputs["t1_post1"])
    arrays = case_arrays()
    expected = 2 * arrays["t1_pre"] + LESION_CONTRAST * arrays["tumor"]
    np.testing.assert_allclose(output.array, np.transpose(expected, (2, 1, 0)))
    shown = read_image(job.outputs["tumor_shown"])
    np.testing.assert_array_equal(shown.array, np.transpose(arrays["tumor"] > 0, (2, 1, 0)))
    np.testing.assert_allclose(output.affine, IJK_TO_RAS, atol=1e-5)


def test_job_failure_is_one_message_naming_the_node(interface, tmp_path):
    arrays = case_arrays()
    arrays["liver"][0, 0, 0] = 7  # not checked here on purpose: the runner refuses it
    paths = write_case(tmp_path / "work", arrays)
    job = SynthesisJob(interface, paths, tmp_path / "work" / "out", input_names={"liver": "scene node 'Liver'"})
    job.start()
    assert job.wait(timeout=120) is JobState.FAILED
    assert job.error.startswith("input 'liver' (scene node 'Liver'): holds label value(s) 7"), job.error
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == sorted(f"{role}.nrrd" for role in arrays)


def alive(pid):
    """Whether process ``pid`` still runs (a zombie waiting for its parent to reap it does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:  # no /proc (macOS): os.kill's answer is all there is
        return True
    return state not in ("Z", "X")


def wait_for_pid(path, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if text.endswith("\n"):
            return int(text)
        time.sleep(0.05)
    raise AssertionError(f"{path} was never written")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups; Windows uses taskkill /T")
def test_cancel_ends_the_process_tree_and_leaves_nothing(tmp_path):
    runner_pid, child_pid = tmp_path / "runner.pid", tmp_path / "child.pid"
    # The bundle starts a child that ignores SIGTERM (only killing the whole group ends it), then hangs. Each
    # process writes its pid once it is ready.
    child = (
        "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"open({str(child_pid)!r}, 'w').write(f'{{os.getpid()}}\\n'); time.sleep(120)"
    )
    run = [
        "$@progress(0, 2) if @progress is not None else None",
        f"$__import__('subprocess').Popen([{sys.executable!r}, '-c', {child!r}])",
        f"$open({str(runner_pid)!r}, 'w').write(str(__import__('os').getpid()) + '\\n')",
        "$__import__('time').sleep(120)",
    ]
    slow = write_test_bundle(tmp_path / "bundles", "slow", run=run)
    trust_bundle(slow)
    interface = read_tool_description(slow)
    work = tmp_path / "work"
    paths = write_case(work)
    job = SynthesisJob(interface, paths, work / "out")
    job.start()
    runner, child = wait_for_pid(runner_pid), wait_for_pid(child_pid)
    assert alive(runner) and alive(child) and any(p.name.startswith(".out.") for p in work.iterdir())
    started = time.monotonic()
    job.cancel()
    elapsed = time.monotonic() - started
    assert job.state is JobState.CANCELLED and elapsed < 2.0, elapsed
    assert not alive(runner) and not alive(child)
    assert sorted(p.name for p in work.iterdir()) == sorted(path.name for path in paths.values())  # no output left
