"""Export a bundle as one shareable zip in the MONAI Model Zoo's layout (``synthmr bundle export``).

The zip ``<out>/<name>_v<version>.zip`` holds one folder, ``<name>/``, the bundle folder's name:

- ``configs/``: every YAML config converted to the JSON form the Zoo ships and ``monai.bundle.load`` looks for
  (``inference.yaml`` -> ``inference.json``; read with MONAI's own reader, written with 4-space indents, so the
  content is what MONAI reads from the YAML); ``metadata.json``, ``logging.conf`` and any other file as they are;
- ``models/``: the weights files and the model data in its subfolders (an atlas, say; TorchScript ``*.ts`` files
  are build outputs of ``ckpt_export`` here, ignored by git, and are left out);
- ``docs/``: the model card ``README.md``, ``data_license.txt`` and the card's images;
- ``LICENSE``; ``sample/`` and ``scripts/`` when the bundle has them;
- ``large_files.yml``: every file of ``models/`` with its SHA-256 (``hash_val``, ``hash_type: sha256``) and its size in
  bytes (``size``).

Left out: ``output/``, ``data/``, ``eval/`` and anything else at the top of the bundle, ``__pycache__`` folders
and hidden files. The Zoo's ``large_files.yml`` entries also carry a download ``url``; these have none, since the
weights travel inside the zip and are hosted nowhere, so the file records and verifies them but MONAI's
``download_large_files`` (which needs a url) cannot use it.

The zip is reproducible: members in sorted order with a fixed timestamp, so the same bundle gives the same bytes.
It is written under a temporary name beside its destination and renamed into place when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

from synthmr.bundle.description import metadata_path
from synthmr.bundle.discovery import find_bundle
from synthmr.errors import InputError
from synthmr.io._atomic import atomic_output, check_destination, check_output_location
from synthmr.io.datalist import read_json

YAML_SUFFIXES = (".yaml", ".yml")
# Folders shipped besides configs/ and models/ (each when present); everything else at the top is left out.
SHIPPED_FOLDERS = ("docs", "sample", "scripts")
REQUIRED = ("LICENSE", "docs/README.md")
LARGE_FILES = "large_files.yml"
_TIMESTAMP = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can store: the same bundle gives the same bytes


def export_bundle(bundle: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``bundle`` as ``<out>/<name>_v<version>.zip`` (see the module docstring) and return the zip's path.

    Args:
        bundle: bundle name (found with :func:`~synthmr.bundle.discovery.find_bundle`) or bundle folder.
        out: folder to write the zip to (created if needed).
        overwrite: replace an existing zip of the same name.

    Raises:
        InputError: an unknown bundle, a bundle without a version, LICENSE, model card or weights, a config that
            cannot be converted, or an existing zip without ``overwrite``.
    """
    bundle_dir = find_bundle(bundle)
    name = bundle_dir.name
    version = _version(bundle_dir)
    destination = Path(out) / f"{name}_v{version}.zip"
    check_output_location(destination, {f"bundle {name}": bundle_dir})
    check_destination(destination, overwrite, what="file")
    members = _members(bundle_dir)
    with atomic_output(destination, suffix=".zip", overwrite=overwrite) as temporary:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for arcname in sorted(members):
                info = zipfile.ZipInfo(f"{name}/{arcname}", date_time=_TIMESTAMP)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, members[arcname])
    return destination.resolve()


def _version(bundle_dir: Path) -> str:
    path = metadata_path(bundle_dir)
    metadata = read_json(path, "bundle metadata")
    version = metadata.get("version") if isinstance(metadata, dict) else None
    if not isinstance(version, str) or not version or any(c in version for c in "/\\:") or version.startswith("."):
        raise InputError(f"{path}: needs a \"version\" (e.g. \"0.1.0\") to name the zip, got {version!r}")
    return version


def _members(bundle_dir: Path) -> dict[str, bytes]:
    """Path inside the bundle folder -> content, for everything the zip holds."""
    missing = [name for name in REQUIRED if not (bundle_dir / name).is_file()]
    if missing:
        raise InputError(f"bundle {bundle_dir.name}: lacks {', '.join(missing)}, which a shared bundle needs")
    members: dict[str, bytes] = {"LICENSE": (bundle_dir / "LICENSE").read_bytes()}
    members.update(_configs(bundle_dir))
    weights = {
        path.relative_to(bundle_dir).as_posix(): path.read_bytes()
        for path in _files(bundle_dir / "models", recursive=True)
        if path.suffix != ".ts"
    }
    if not weights:
        raise InputError(f"bundle {bundle_dir.name}: models/ holds no weights file")
    members.update(weights)
    for folder in SHIPPED_FOLDERS:
        for path in _files(bundle_dir / folder, recursive=True):
            members[path.relative_to(bundle_dir).as_posix()] = path.read_bytes()
    members[LARGE_FILES] = _large_files(weights).encode("utf-8")
    return members


def _files(folder: Path, recursive: bool) -> list[Path]:
    """The regular files of ``folder`` (its subfolders too when ``recursive``), without hidden files and caches."""
    if not folder.is_dir():
        return []
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    found = []
    for path in candidates:
        parts = path.relative_to(folder).parts
        if any(part.startswith(".") or part == "__pycache__" for part in parts) or not path.is_file():
            continue
        found.append(path)
    return sorted(found)


def _configs(bundle_dir: Path) -> dict[str, bytes]:
    """``configs/``: YAML configs as JSON, every other file as it is."""
    from monai.bundle import ConfigParser  # slow to import: only when exporting

    files = _files(bundle_dir / "configs", recursive=False)
    members = {f"configs/{path.name}": path.read_bytes() for path in files if path.suffix.lower() not in YAML_SUFFIXES}
    for path in files:
        if path.suffix.lower() not in YAML_SUFFIXES:
            continue
        target = f"configs/{path.stem}.json"
        if target in members:
            raise InputError(f"{path}: the bundle has both {path.name} and {path.stem}.json; keep one of them")
        try:
            config = ConfigParser.load_config_file(str(path))
            text = json.dumps(config, indent=4, ensure_ascii=False)
        except Exception as error:  # a YAML syntax error or a value JSON cannot hold: the file is the problem
            raise InputError(f"{path}: cannot be converted to JSON ({error})") from None
        members[target] = (text + "\n").encode("utf-8")
    return members


def _large_files(weights: dict[str, bytes]) -> str:
    """``large_files.yml``: each weights file with its SHA-256 and size (no url: see the module docstring)."""
    lines = [
        "# The weights files in this zip, with their SHA-256 and size in bytes. They travel inside the zip and are",
        "# hosted nowhere, so there is no url (MONAI's download_large_files cannot use this file).",
        "large_files:",
    ]
    for path, content in sorted(weights.items()):
        lines += [
            f'  - path: "{path}"',
            f'    hash_val: "{hashlib.sha256(content).hexdigest()}"',
            '    hash_type: "sha256"',
            f"    size: {len(content)}",
        ]
    return "\n".join(lines) + "\n"
