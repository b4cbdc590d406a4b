"""Finding bundles by name or path.

A bundle is a folder holding ``configs/metadata.json``. By name, bundles are looked up in, in this order:

1. each folder of the environment variable ``SYNTHMR_BUNDLE_PATH`` (folders separated by :data:`os.pathsep`,
   like ``PATH``; folders that do not exist are skipped), so a user's own or retrained bundle can stand in for a
   shipped one of the same name;
2. the repository's ``bundles/`` folder (three levels above this package: ``<repo>/bundles/<name>``).

The first folder holding ``<name>/configs/metadata.json`` wins.
"""

from __future__ import annotations

import os
from pathlib import Path

from synthmr.bundle.description import metadata_path
from synthmr.errors import InputError

BUNDLE_PATH_VARIABLE = "SYNTHMR_BUNDLE_PATH"
# training/synthmr/bundle/discovery.py -> the repository root holds training/ and bundles/ side by side.
REPOSITORY_BUNDLES = Path(__file__).resolve().parents[3] / "bundles"


def bundle_folders() -> list[Path]:
    """The folders searched for bundles by name, in search order."""
    extra = [Path(entry) for entry in os.environ.get(BUNDLE_PATH_VARIABLE, "").split(os.pathsep) if entry]
    return [folder for folder in (*extra, REPOSITORY_BUNDLES) if folder.is_dir()]


def list_bundles() -> dict[str, Path]:
    """Bundle name -> bundle folder, for every bundle found by name (the first of each name; sorted by name)."""
    found: dict[str, Path] = {}
    for folder in bundle_folders():
        for candidate in sorted(folder.iterdir()):
            if candidate.name not in found and metadata_path(candidate).is_file():
                found[candidate.name] = candidate.resolve()
    return dict(sorted(found.items()))


def find_bundle(name_or_path: str | os.PathLike) -> Path:
    """The folder of a bundle given by its folder or by its name (see the module docstring for the search).

    Raises:
        InputError: a path (anything with a path separator) that is not a bundle folder, or a name no searched
            folder holds (the message lists the bundles that are available and where they were looked for).
    """
    path = Path(name_or_path)
    if metadata_path(path).is_file():
        return path.resolve()
    text = str(name_or_path)
    if os.sep in text or (os.altsep and os.altsep in text) or text in ("", ".", ".."):
        problem = "not a bundle folder (no configs/metadata.json)" if path.is_dir() else "no such bundle folder"
        raise InputError(f"{path}: {problem}")
    # A bare name is a name even when a folder of that name (an output folder, say) happens to be here.
    available = list_bundles()
    if text in available:
        return available[text]
    searched = ", ".join(str(folder) for folder in bundle_folders()) or "no bundle folder exists"
    raise InputError(
        f"bundle {text!r}: not found; available: {', '.join(available) or 'none'} (searched: {searched}; "
        f"add folders with {BUNDLE_PATH_VARIABLE})"
    )
