"""Finding bundles and reading what they need from the user, with the standard library only.

**Where bundles come from**, in this order; the first bundle of a name wins (as in ``synthmr``'s own search, so a
user's retrained bundle stands in for a shipped one of the same name):

1. the bundles the user pointed to: a bundle folder, or a ``.zip`` of one, which is unpacked into a cache folder
   (once per zip content: the cache entry is named after the zip's SHA-256);
2. the subfolders of the user's bundle folder that hold ``configs/metadata.json``;
3. the shipped bundles: the repository's ``bundles/`` folder when the module runs from a SynthMR checkout
   (``<repository>/slicer_extension/SynthMR``), else the bundles packaged with the extension
   (``<module folder>/Resources/Bundles``, :data:`PACKAGED_BUNDLES`), as installed from Slicer's Extensions catalog.

Nothing is downloaded.

**The tool description** is the ``"synthmr"`` block of ``configs/metadata.json``, defined once by synthmr's JSON
Schema and read by synthmr's own reader, ``synthmr.bundle.description``, which needs only the standard library.
:func:`read_tool_description` imports it when synthmr is installed; before that (a fresh Slicer, where the module
shows what a bundle needs before it offers to install anything) it loads that same file from where synthmr's source
is: the checkout the module runs from, or the synthmr wheel packaged with the extension. Every reading is the full
check, and the command line and the module share one set of names (``ToolDescription``, ``InputRole``,
``OutputRole``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import types
import uuid
import zipfile
import zipimport
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from SynthMRLib.errors import SynthMRError

# The most a bundle zip may unpack to: more is not a bundle (weights are <= 16 MB per file) but a mistake or a bomb.
MAX_UNPACKED_BYTES = 4 * 1024**3
_ZIP_HASH_CHARS = 16
# Where the packaged extension keeps the shipped bundles, relative to the module folder (the folder holding
# SynthMR.py and SynthMRLib/; the module's CMakeLists.txt installs them there).
PACKAGED_BUNDLES = ("Resources", "Bundles")


@dataclass(frozen=True)
class BundleEntry:
    """A bundle found by :func:`discover_bundles`.

    Args:
        name: the bundle's name.
        path: its folder (for a zip: where it was unpacked).
        source: where it was found: ``"added"``, ``"user folder"``, ``"repository"`` (the checkout's) or
            ``"shipped"`` (packaged with the extension).
        tool_description: its ``ToolDescription``, or None when it cannot be used.
        problem: why it cannot be used (one message), or None.
        title: the metadata's ``name`` (the bundle's name when it has none).
        version: the metadata's ``version``, or ``""``.
        description: the metadata's ``description``, or ``""``.
    """

    name: str
    path: Path
    source: str
    tool_description: Any = None
    problem: str | None = None
    title: str = ""
    version: str = ""
    description: str = ""


def repository_root() -> Path | None:
    """The SynthMR checkout this module runs from (``<root>/slicer_extension/SynthMR/SynthMRLib``), or None when
    it was installed elsewhere (e.g. from the Slicer extension catalog)."""
    root = Path(__file__).resolve().parents[3]
    is_checkout = (root / "training" / "synthmr").is_dir() and (root / "pyproject.toml").is_file()
    return root if is_checkout else None


def repository_bundles() -> Path | None:
    """The checkout's ``bundles/`` folder, or None."""
    root = repository_root()
    return root / "bundles" if root is not None and (root / "bundles").is_dir() else None


def module_dir() -> Path:
    """The module folder: the one holding ``SynthMR.py`` and ``SynthMRLib/`` (and ``Resources/`` once packaged)."""
    return Path(__file__).resolve().parents[1]


def packaged_bundles() -> Path | None:
    """The bundles packaged with the extension (``<module folder>/Resources/Bundles``), or None."""
    folder = module_dir().joinpath(*PACKAGED_BUNDLES)
    return folder if folder.is_dir() else None


def shipped_bundles() -> tuple[Path, str] | None:
    """The bundles that came with the module and their source name: the checkout's ``bundles/``
    (``"repository"``) when it runs from a checkout, else the packaged ones (``"shipped"``); None when neither is
    there."""
    repository = repository_bundles()
    if repository is not None:
        return repository, "repository"
    packaged = packaged_bundles()
    return (packaged, "shipped") if packaged is not None else None


def bundle_summary(bundle_dir: str | os.PathLike) -> tuple[str, str, str]:
    """``(title, version, description)`` of a bundle for a user, from its ``configs/metadata.json`` (MONAI's
    ``name``, ``version`` and ``description`` fields). Never raises: a missing or unreadable field gives the folder
    name as title and ``""`` for the others (the tool-description reading reports what is wrong with the metadata)."""
    bundle_dir = Path(bundle_dir)
    try:
        metadata = json.loads(metadata_path(bundle_dir).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        metadata = None
    if not isinstance(metadata, dict):
        metadata = {}

    def text(key: str) -> str:
        value = metadata.get(key)
        return " ".join(value.split()) if isinstance(value, str) else ""

    return text("name") or bundle_dir.name, text("version"), text("description")


def metadata_path(bundle_dir: str | os.PathLike) -> Path:
    """Where a bundle keeps its metadata and tool description."""
    return Path(bundle_dir) / "configs" / "metadata.json"


def read_tool_description(bundle_dir: str | os.PathLike) -> Any:
    """The ``synthmr.bundle.description.ToolDescription`` of the bundle in ``bundle_dir`` (see the module docstring).

    Raises:
        SynthMRError: the folder is not a bundle, its metadata or tool description is invalid (the message names
            the metadata file and the field), or synthmr's reader is nowhere to be found.
    """
    try:
        return tool_description_module().read_tool_description(bundle_dir)
    except ValueError as error:  # synthmr's InputError, or ValueError when its reader was loaded alone
        raise SynthMRError(str(error)) from None


def tool_description_module() -> Any:
    """synthmr's tool-description reader (``synthmr.bundle.description``): imported when synthmr is installed, else
    loaded from the checkout's source file or from the packaged synthmr wheel (loaded once, then kept).

    Raises:
        SynthMRError: neither synthmr nor its source is here.
    """
    global _tool_description_module
    if _tool_description_module is None:
        _tool_description_module = _load_tool_description_module()
    return _tool_description_module


_tool_description_module: Any = None
_READER = ("synthmr", "bundle", "description.py")
# The name synthmr's reader is loaded under when synthmr itself is not installed.
READER_MODULE = "synthmr_tool_description"


def _load_tool_description_module() -> Any:
    try:
        import synthmr.bundle.description as module
    except ImportError:
        pass
    else:
        return module
    root = repository_root()
    if root is not None:
        spec = importlib.util.spec_from_file_location(READER_MODULE, root.joinpath("training", *_READER))
        module = importlib.util.module_from_spec(spec)
        sys.modules[READER_MODULE] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    from SynthMRLib.dependencies import packaged_wheel  # imported here: dependencies imports this module

    wheel = packaged_wheel()
    if wheel is None:
        raise SynthMRError(
            "synthmr's bundle reader is missing: synthmr is not installed, and neither a SynthMR checkout nor the "
            "synthmr wheel packaged with the extension is here; reinstall the SynthMR extension"
        )
    # A pure-Python wheel is a zip, and the reader needs no other synthmr module: it is run alone from the wheel, with
    # the zip importer as its loader so that it reads its schema from the wheel too.
    importer = zipimport.zipimporter(str(wheel.joinpath(*_READER[:-1])))
    name = _READER[-1].removesuffix(".py")
    module = types.ModuleType(READER_MODULE)
    module.__file__, module.__loader__ = importer.get_filename(name), importer
    sys.modules[READER_MODULE] = module
    exec(importer.get_code(name), module.__dict__)  # noqa: S102 (the extension's own wheel, as an import would)
    return module


def discover_bundles(
    added: Sequence[str | os.PathLike] = (),
    user_folder: str | os.PathLike | None = None,
    cache_folder: str | os.PathLike | None = None,
    repository: str | os.PathLike | None = None,
) -> list[BundleEntry]:
    """Every bundle of the three sources (module docstring), first of each name only, in search order.

    A bundle that cannot be used (damaged metadata, a zip that is no bundle) is listed with its ``problem``, so the
    user sees why it is missing instead of not seeing it at all.

    Args:
        added: bundle folders or zips the user pointed to.
        user_folder: the user's bundle folder, or None.
        cache_folder: where zips are unpacked; needed when ``added`` holds a zip.
        repository: a folder of shipped bundles (listed as source ``"repository"``); default
            :func:`shipped_bundles`: the checkout's, else those packaged with the extension.
    """
    found: dict[str, BundleEntry] = {}

    def add(entry: BundleEntry) -> None:
        found.setdefault(entry.name, entry)

    for path in added:
        path = Path(path)
        try:
            add(_entry(resolve_bundle(path, cache_folder), "added"))
        except SynthMRError as error:
            add(BundleEntry(_bundle_name(path), path, "added", problem=str(error)))
    shipped = shipped_bundles() if repository is None else (Path(repository), "repository")
    shipped_folder, shipped_source = shipped if shipped is not None else (None, "repository")
    for folder, source in ((user_folder, "user folder"), (shipped_folder, shipped_source)):
        if folder is None or not Path(folder).is_dir():
            continue
        for candidate in sorted(Path(folder).iterdir()):
            if metadata_path(candidate).is_file():
                add(_entry(candidate.resolve(), source))
    return list(found.values())


def resolve_bundle(path: str | os.PathLike, cache_folder: str | os.PathLike | None = None) -> Path:
    """The bundle folder of ``path``: the folder itself, or a zip unpacked with :func:`unpack_bundle_zip`.

    Raises:
        SynthMRError: ``path`` does not exist, is neither a bundle folder nor a zip, or the zip is no bundle.
    """
    path = Path(path)
    if path.is_dir():
        if not metadata_path(path).is_file():
            raise SynthMRError(f"{path}: not a bundle folder (no configs/metadata.json)")
        return path.resolve()
    if path.is_file():
        if cache_folder is None:
            raise SynthMRError(f"{path}: a zipped bundle needs a cache folder to be unpacked into")
        return unpack_bundle_zip(path, cache_folder)
    raise SynthMRError(f"{path}: no such bundle folder or zip")


def unpack_bundle_zip(zip_path: str | os.PathLike, cache_folder: str | os.PathLike) -> Path:
    """Unpack a zipped bundle into ``cache_folder`` (once per zip content) and return the bundle folder.

    The zip holds either one top folder that is the bundle (``<name>/configs/metadata.json``; the bundle keeps that
    name) or the bundle's content itself (``configs/metadata.json``; the bundle is named after the zip). It is
    unpacked into a hidden folder first and renamed into place, so an interrupted unpack leaves no half bundle.

    Raises:
        SynthMRError: not a zip, no bundle in it, a member that would land outside the bundle (an absolute path or
            ``..``), or more than :data:`MAX_UNPACKED_BYTES` once unpacked.
    """
    zip_path = Path(zip_path)
    if not zipfile.is_zipfile(zip_path):
        raise SynthMRError(f"{zip_path}: not a zip file")
    cache_folder = Path(cache_folder)
    target = cache_folder / file_sha256(zip_path)[:_ZIP_HASH_CHARS]
    with zipfile.ZipFile(zip_path) as archive:
        members = archive.infolist()
        name, prefix = _zip_layout(zip_path, members)
        bundle_dir = target / name
        if metadata_path(bundle_dir).is_file():  # unpacked before
            return bundle_dir.resolve()
        size = sum(member.file_size for member in members)
        if size > MAX_UNPACKED_BYTES:
            limit = MAX_UNPACKED_BYTES / 1024**3
            raise SynthMRError(f"{zip_path}: unpacks to {size / 1024**3:.1f} GB, more than a bundle's {limit:g} GB")
        cache_folder.mkdir(parents=True, exist_ok=True)
        staging = cache_folder / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            # With configs/ at the zip's top, unpack under the bundle's name so that the folder is named after it.
            archive.extractall(staging if prefix else staging / name)
            if target.exists():  # a stale, incomplete entry
                shutil.rmtree(target)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if not metadata_path(bundle_dir).is_file():
        raise SynthMRError(f"{zip_path}: unpacked, but {bundle_dir} holds no configs/metadata.json")
    return bundle_dir.resolve()


def clear_cache(cache_folder: str | os.PathLike) -> None:
    """Remove every unpacked zip from ``cache_folder`` (they are unpacked again when next used)."""
    cache_folder = Path(cache_folder)
    if cache_folder.is_dir():
        shutil.rmtree(cache_folder)


def _entry(bundle_dir: Path, source: str) -> BundleEntry:
    title, version, description = bundle_summary(bundle_dir)
    summary = {"title": title, "version": version, "description": description}
    try:
        return BundleEntry(bundle_dir.name, bundle_dir, source, tool_description=read_tool_description(bundle_dir), **summary)
    except SynthMRError as error:
        return BundleEntry(bundle_dir.name, bundle_dir, source, problem=str(error), **summary)


def _bundle_name(path: Path) -> str:
    return path.stem if path.suffix.lower() == ".zip" else path.name


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _zip_layout(zip_path: Path, members: list[zipfile.ZipInfo]) -> tuple[str, str]:
    """``(bundle name, member prefix)``: prefix ``"<name>/"`` for a zip of the bundle folder, ``""`` for a zip of
    its content."""
    for member in members:
        parts = Path(member.filename).parts
        if member.filename.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise SynthMRError(f"{zip_path}: member {member.filename!r} would be unpacked outside the bundle folder")
    names = {member.filename.rstrip("/") for member in members}
    if "configs/metadata.json" in names:
        return zip_path.stem, ""
    tops = {Path(name).parts[0] for name in names if name}
    candidates = [top for top in tops if f"{top}/configs/metadata.json" in names]
    if len(tops) == 1 and candidates:
        return candidates[0], candidates[0] + "/"
    raise SynthMRError(
        f"{zip_path}: holds no bundle (expected configs/metadata.json at its top, or in its one top folder)"
    )
