"""Each bundle's sample case, as the Sample Data module wants it (standard library only; no synthmr, no torch).

A bundle may ship one sample case in ``sample/``: image files named after the input roles they fit
(``sample/t1_pre.nii.gz`` for the role ``t1_pre``), and optionally ``sample/thumbnail.png``. The module registers
each case with Slicer's Sample Data module at startup (category :data:`CATEGORY`, one button per bundle), with
``file://`` URIs of the files where they lie and their SHA-256, so nothing is downloaded and a stale copy in Slicer's
cache is replaced. Files of labelmap roles load as segmentations (which labelmap roles accept); a role with several
labels needs them as ``.seg.nrrd`` with segments named after the labels.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from SynthMRLib.bundles import file_sha256, metadata_path

CATEGORY = "SynthMR"
THUMBNAIL = "thumbnail.png"
# Single-file image formats only (a header with a separate data file would need both registered).
IMAGE_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".mha")


@dataclass(frozen=True)
class SampleCase:
    """One bundle's sample case, in the terms of ``SampleDataLogic.registerCustomSampleDataSource``.

    Args:
        bundle: the bundle's name (its folder name).
        name: the sample's name, shown on its button (the bundle's name).
        category: the Sample Data section.
        paths: the files, reference role first, then the other roles in the bundle's order, then the rest.
        node_names: the node each file becomes (the file's role, or its name without extension).
        file_types: Slicer's reader for each file: ``"VolumeFile"``, or ``"SegmentationFile"`` for labelmap roles.
        checksums: ``"SHA256:<hex>"`` of each file.
        thumbnail: ``sample/thumbnail.png``, or None.
    """

    bundle: str
    name: str
    category: str
    paths: tuple[Path, ...]
    node_names: tuple[str, ...]
    file_types: tuple[str, ...]
    checksums: tuple[str, ...]
    thumbnail: Path | None = None

    @property
    def uris(self) -> list[str]:
        """``file://`` URIs of :attr:`paths`."""
        return [path.as_uri() for path in self.paths]

    @property
    def file_names(self) -> list[str]:
        """The names the files get in Slicer's cache: prefixed with the bundle's name, so two bundles' samples of the
        same name do not collide."""
        return [f"{CATEGORY}-{self.bundle}-{path.name}" for path in self.paths]


def sample_case(bundle_dir: str | os.PathLike) -> SampleCase | None:
    """The sample case of the bundle in ``bundle_dir``, or None when it has no ``sample/`` image."""
    bundle_dir = Path(bundle_dir)
    folder = bundle_dir / "sample"
    if not folder.is_dir():
        return None
    files = [path for path in folder.iterdir() if path.is_file() and _stem(path) is not None]
    if not files:
        return None
    roles = _input_kinds(bundle_dir)
    order = list(roles)
    files.sort(key=lambda path: (order.index(_stem(path)) if _stem(path) in roles else len(order), path.name))
    thumbnail = folder / THUMBNAIL
    return SampleCase(
        bundle=bundle_dir.name,
        name=bundle_dir.name,
        category=CATEGORY,
        paths=tuple(path.resolve() for path in files),
        node_names=tuple(_stem(path) for path in files),
        file_types=tuple(
            "SegmentationFile" if roles.get(_stem(path)) == "labelmap" or path.name.endswith(".seg.nrrd")
            else "VolumeFile"
            for path in files
        ),
        checksums=tuple(f"SHA256:{file_sha256(path)}" for path in files),
        thumbnail=thumbnail.resolve() if thumbnail.is_file() else None,
    )


def sample_cases(bundle_dirs: Iterable[str | os.PathLike]) -> list[SampleCase]:
    """The sample cases of ``bundle_dirs`` (first of each bundle name only, as in discovery)."""
    cases: dict[str, SampleCase] = {}
    for bundle_dir in bundle_dirs:
        if Path(bundle_dir).name in cases:
            continue
        case = sample_case(bundle_dir)
        if case is not None:
            cases[case.bundle] = case
    return list(cases.values())


def bundle_folders(folders: Iterable[str | os.PathLike | None]) -> list[Path]:
    """The bundle folders (subfolders with ``configs/metadata.json``) of ``folders``, in order; None and missing
    folders are skipped. Reads no interface, so it is cheap enough for Slicer's startup."""
    found = []
    for folder in folders:
        if folder is None or not Path(folder).is_dir():
            continue
        found.extend(path for path in sorted(Path(folder).iterdir()) if metadata_path(path).is_file())
    return found


def _stem(path: Path) -> str | None:
    """The file's name without its image extension, or None when it is no image file."""
    name = path.name
    lowered = name.lower()
    for suffix in IMAGE_SUFFIXES:
        if lowered.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def _input_kinds(bundle_dir: Path) -> dict[str, str]:
    """Input role -> kind from the bundle's ``"synthmr"`` block, reference first; empty when it cannot be read (the
    sample then loads as plain volumes; discovery reports what is wrong with the metadata)."""
    try:
        block = json.loads(metadata_path(bundle_dir).read_text(encoding="utf-8")).get("synthmr", {})
        inputs = block.get("inputs", {})
        kinds = {str(name): str(role.get("kind", "volume")) for name, role in inputs.items()}
        reference = block.get("reference")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, TypeError):
        return {}
    if reference in kinds:
        kinds = {reference: kinds[reference], **kinds}
    return kinds
