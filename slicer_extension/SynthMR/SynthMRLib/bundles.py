"""Finding bundles and reading what they need from the user, with the standard library only.

**Where bundles come from**, in this order; the first bundle of a name wins, except that nothing stands in for a
shipped bundle: a bundle of another source with a shipped bundle's name is listed with a problem (rename its folder)
and the shipped one stays usable, so a folder dropped somewhere can never swap the code behind a shipped name:

1. the bundles the user pointed to: a bundle folder, or a ``.zip`` of one, which is unpacked into a cache folder
   (once per zip content: the cache entry is named after the zip's SHA-256);
2. the subfolders of the user's bundle folder that hold ``configs/metadata.json``;
3. the shipped bundles: the repository's ``bundles/`` folder when the module runs from a SynthMR checkout
   (``<repository>/slicer_extension/SynthMR``), else the bundles packaged with the extension
   (``<module folder>/Resources/Bundles``, :data:`PACKAGED_BUNDLES`), as installed from Slicer's Extensions catalog.

Nothing is downloaded.

**Trust.** A bundle's configs are code (MONAI evaluates ``$`` expressions and imports any ``_target_``). The shipped
bundles are trusted; any other runs only once the user has confirmed it, recorded by the SHA-256 of its code.
The rules and the records are synthmr's own, ``synthmr.bundle.trust`` (standard library only, loaded like the reader
below): :func:`discover_bundles` marks each entry ``trusted``, :func:`confirm_trust` asks and records,
and :class:`~SynthMRLib.process.SynthesisJob` refuses to run an untrusted bundle.

**The tool description** is the ``"synthmr"`` block of ``configs/metadata.json``, defined once by synthmr's JSON
Schema and read by synthmr's own reader, ``synthmr.bundle.description``, which needs only the standard library.
:func:`read_tool_description` imports it when synthmr is installed; before that (a fresh Slicer, where the module
shows what a bundle needs before it offers to install anything) it loads that same file from where synthmr's source
is: the checkout the module runs from, or the synthmr wheel packaged with the extension (:func:`synthmr_module`).
Every reading is the full check, and the command line and the module share one set of names (``ToolDescription``,
``InputRole``, ``OutputRole``).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import sys
import types
import uuid
import zipfile
import zipimport
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from SynthMRLib.errors import SynthMRError

# The most a bundle zip may unpack to: more is not a bundle (weights are <= 16 MB per file) but a mistake or a bomb.
MAX_UNPACKED_BYTES = 4 * 1024**3
_ZIP_HASH_CHARS = 16
try:
    from lzma import LZMAError
except ImportError:  # a Python without lzma cannot read an LZMA member either (NotImplementedError)
    LZMAError = zlib.error
# What reading a damaged or hostile zip raises besides OSError (an unknown compression: NotImplementedError).
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, LZMAError, EOFError, NotImplementedError)
SHADOWING_PROBLEM = "has the name of a shipped bundle; rename its folder to use it"
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
        trusted: whether it may run without asking the user (shipped, or its code confirmed; module docstring).
    """

    name: str
    path: Path
    source: str
    tool_description: Any = None
    problem: str | None = None
    title: str = ""
    version: str = ""
    description: str = ""
    trusted: bool = False


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
    """synthmr's tool-description reader, ``synthmr.bundle.description`` (see :func:`synthmr_module`)."""
    return synthmr_module("description")


def trust_module() -> Any:
    """synthmr's rules and records of which bundles may run, ``synthmr.bundle.trust`` (see :func:`synthmr_module`)."""
    return synthmr_module("trust")


# synthmr's standard-library-only modules SynthMRLib uses, and the name each is loaded under without synthmr.
READER_MODULE = "synthmr_tool_description"
TRUST_MODULE = "synthmr_trust"
_ALONE_NAMES = {"description": READER_MODULE, "trust": TRUST_MODULE}
_synthmr_modules: dict[str, Any] = {}


def synthmr_module(name: str) -> Any:
    """``synthmr.bundle.<name>``: imported when synthmr is installed, else loaded alone from the checkout's source
    file or from the packaged synthmr wheel (loaded once, then kept). ``name`` is ``"description"`` or ``"trust"``.

    Raises:
        SynthMRError: neither synthmr nor its source is here.
    """
    if name not in _synthmr_modules:
        _synthmr_modules[name] = _load_synthmr_module(name)
    return _synthmr_modules[name]


def _load_synthmr_module(name: str) -> Any:
    try:
        return importlib.import_module(f"synthmr.bundle.{name}")
    except ImportError:  # not installed, or a synthmr too old to have the module
        pass
    alone = _ALONE_NAMES[name]
    root = repository_root()
    if root is not None:
        spec = importlib.util.spec_from_file_location(alone, root / "training" / "synthmr" / "bundle" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[alone] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    from SynthMRLib.dependencies import packaged_wheel  # imported here: dependencies imports this module

    wheel = packaged_wheel()
    if wheel is None:
        raise SynthMRError(
            f"synthmr.bundle.{name} is missing: synthmr is not installed, and neither a SynthMR checkout nor the "
            "synthmr wheel packaged with the extension is here; reinstall the SynthMR extension"
        )
    # A pure-Python wheel is a zip, and these modules need no other synthmr module: each is run alone from the wheel,
    # with the zip importer as its loader so that the reader reads its schema from the wheel too.
    importer = zipimport.zipimporter(str(wheel / "synthmr" / "bundle"))
    module = types.ModuleType(alone)
    module.__file__, module.__loader__ = importer.get_filename(name), importer
    sys.modules[alone] = module
    exec(importer.get_code(name), module.__dict__)  # noqa: S102 (the extension's own wheel, as an import would)
    return module


def discover_bundles(
    added: Sequence[str | os.PathLike] = (),
    user_folder: str | os.PathLike | None = None,
    cache_folder: str | os.PathLike | None = None,
    repository: str | os.PathLike | None = None,
) -> list[BundleEntry]:
    """Every bundle of the three sources (module docstring), first of each name only, in search order.

    A bundle that cannot be used (damaged metadata, a zip that is no bundle, a shipped bundle's name) is listed with
    its ``problem``, so the user sees why it is missing instead of not seeing it at all. Never raises for one bad
    bundle: the list is what the module shows at every start, and ``added`` comes from saved settings.

    Args:
        added: bundle folders or zips the user pointed to (as saved: an item that is no path is left out).
        user_folder: the user's bundle folder, or None.
        cache_folder: where zips are unpacked; needed when ``added`` holds a zip.
        repository: a folder of shipped bundles (listed as source ``"repository"``); default
            :func:`shipped_bundles`: the checkout's, else those packaged with the extension.
    """
    shipped = shipped_bundles() if repository is None else (Path(repository), "repository")
    shipped_folder, shipped_source = shipped if shipped is not None else (None, "repository")
    shipped_entries = [_entry(folder, shipped_source, shipped=True) for folder in _bundle_folders(shipped_folder)]
    shipped_paths = {entry.name: entry.path for entry in shipped_entries}
    others: list[BundleEntry] = []
    for path in saved_paths(added):
        try:
            others.append(_entry(resolve_bundle(path, cache_folder), "added"))
        except SynthMRError as error:
            others.append(BundleEntry(_bundle_name(Path(path)), Path(path), "added", problem=str(error)))
    others += [_entry(folder, "user folder") for folder in _bundle_folders(user_folder)]
    found: dict[str, BundleEntry] = {}
    shadowing = []
    for entry in others:
        if entry.name not in shipped_paths:
            found.setdefault(entry.name, entry)
        elif entry.path != shipped_paths[entry.name]:  # the shipped folder itself, added again, is listed once
            shadowing.append(dataclasses.replace(entry, problem=f"{entry.path}: {SHADOWING_PROBLEM}",
                                                 tool_description=None, trusted=False))
    return [*found.values(), *shadowing, *shipped_entries]


def confirm_trust(entry: BundleEntry, ask: Callable[[str], bool]) -> BundleEntry:
    """The entry, trusted once the user said so: a usable bundle that is neither shipped nor trusted already (checked
    again: its code may have changed since it was listed) is trusted when ``ask(question)`` answers yes.

    Raises:
        SynthMRError: the bundle's code cannot be read, or the confirmation cannot be recorded.
    """
    if entry.tool_description is None:
        return entry
    entry = dataclasses.replace(entry, trusted=_is_trusted(entry.path, entry.source in ("repository", "shipped")))
    if entry.trusted or not ask(f"The {trust_module().untrusted_summary(entry.path)}.\n\nRun it only if you trust "
                                "its author. Trust it?"):
        return entry
    trust_bundle(entry.path)
    return dataclasses.replace(entry, trusted=True)


def trust_bundle(bundle_dir: str | os.PathLike) -> None:
    """Record that the user trusts the bundle in ``bundle_dir`` as its code is now (synthmr's trust records).

    Raises:
        SynthMRError: the bundle's code cannot be read, or the record cannot be written.
    """
    trust = trust_module()
    try:
        trust.record_trust(bundle_dir)
    except OSError as error:
        raise SynthMRError(f"{trust.trust_store()}: cannot record that you trust {bundle_dir} ({error})") from None


def bundle_is_trusted(bundle_dir: str | os.PathLike) -> bool:
    """Whether the bundle may run without asking: shipped with the module, or trusted by synthmr's rules.

    Raises:
        SynthMRError: the bundle's code files cannot be read.
    """
    return _is_trusted(Path(bundle_dir), bundle_is_shipped(bundle_dir))


def bundle_is_shipped(bundle_dir: str | os.PathLike) -> bool:
    """Whether the bundle came with the module (the checkout's ``bundles/`` or the extension's packaged bundles)."""
    shipped = shipped_bundles()
    return trust_module().is_shipped(bundle_dir, [shipped[0]] if shipped else [])


def _is_trusted(bundle_dir: Path, shipped: bool) -> bool:
    try:
        return shipped or trust_module().is_trusted(bundle_dir)
    except OSError as error:
        raise SynthMRError(f"{bundle_dir}: its code cannot be read to check it ({error})") from None


def saved_paths(value: Any) -> list[str | os.PathLike]:
    """The bundle paths of a saved setting: Qt gives a list, a string for a list of one, or None; anything else (a
    damaged or foreign setting, an empty string that would mean the current folder) holds no path."""
    values = [value] if isinstance(value, str) else value if isinstance(value, (list, tuple)) else []
    return [item for item in values if isinstance(item, os.PathLike) or isinstance(item, str) and item]


def _bundle_folders(folder: str | os.PathLike | None) -> list[Path]:
    """The bundle folders (those holding ``configs/metadata.json``) in ``folder``; none when it cannot be read."""
    try:
        return [path.resolve() for path in sorted(Path(folder).iterdir()) if metadata_path(path).is_file()]
    except (OSError, TypeError):  # no folder (None), gone, or not readable
        return []


def resolve_bundle(path: str | os.PathLike, cache_folder: str | os.PathLike | None = None) -> Path:
    """The bundle folder of ``path``: the folder itself, or a zip unpacked with :func:`unpack_bundle_zip`.

    Raises:
        SynthMRError: ``path`` does not exist or cannot be read, is neither a bundle folder nor a zip, or the zip is
            no bundle.
    """
    path = Path(path)
    try:
        if path.is_dir():
            if not metadata_path(path).is_file():
                raise SynthMRError(f"{path}: not a bundle folder (no configs/metadata.json)")
            return path.resolve()
        is_file = path.is_file()
    except (OSError, ValueError) as error:  # a path that cannot be looked at: not allowed, too long, a NUL in it
        raise SynthMRError(f"{path}: cannot be read ({getattr(error, 'strerror', None) or error})") from None
    if is_file:
        if cache_folder is None:
            raise SynthMRError(f"{path}: a zipped bundle needs a cache folder to be unpacked into")
        return unpack_bundle_zip(path, cache_folder)
    raise SynthMRError(f"{path}: no such bundle folder or zip")


def unpack_bundle_zip(zip_path: str | os.PathLike, cache_folder: str | os.PathLike) -> Path:
    """Unpack a zipped bundle into ``cache_folder`` (once per zip content) and return the bundle folder.

    The zip holds either one top folder that is the bundle (``<name>/configs/metadata.json``; the bundle keeps that
    name) or the bundle's content itself (``configs/metadata.json``; the bundle is named after the zip). It is
    unpacked into a hidden folder first and renamed into place, so a failed or interrupted unpack leaves nothing in
    the cache.

    Raises:
        SynthMRError: not a zip, damaged (a bad checksum, a member whose size is not the one its header declares,
            an unsupported compression or encryption), unreadable, no bundle in it, a member that would land outside
            the bundle (an absolute path or ``..``), or more than :data:`MAX_UNPACKED_BYTES` once unpacked.
    """
    zip_path = Path(zip_path)
    if not zipfile.is_zipfile(zip_path):
        raise SynthMRError(f"{zip_path}: not a zip file")
    try:
        return _unpack(zip_path, Path(cache_folder))
    except _ZIP_ERRORS as error:
        raise SynthMRError(f"{zip_path}: cannot be unpacked, it is damaged ({error})") from None
    except OSError as error:  # reading the zip or writing the cache (a damaged bzip2 member says so too)
        raise SynthMRError(f"{zip_path}: cannot be unpacked ({error})") from None


def _unpack(zip_path: Path, cache_folder: Path) -> Path:
    target = cache_folder / file_sha256(zip_path)[:_ZIP_HASH_CHARS]
    with zipfile.ZipFile(zip_path) as archive:
        members = archive.infolist()
        name, prefix = _zip_layout(zip_path, members)
        bundle_dir = target / name
        if metadata_path(bundle_dir).is_file():  # unpacked before
            return bundle_dir.resolve()
        size = sum(member.file_size for member in members)
        if size > MAX_UNPACKED_BYTES:  # refused before anything is written; _extract counts what really comes out
            raise SynthMRError(f"{zip_path}: unpacks to {size / 1024**3:.1f} GB, more than a bundle's "
                               f"{MAX_UNPACKED_BYTES / 1024**3:g} GB")
        cache_folder.mkdir(parents=True, exist_ok=True)
        staging = cache_folder / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            # With configs/ at the zip's top, unpack under the bundle's name so that the folder is named after it.
            _extract(zip_path, archive, members, staging if prefix else staging / name)
            if not metadata_path(staging / name).is_file():
                raise SynthMRError(f"{zip_path}: unpacked, but {name}/configs/metadata.json is no file")
            if target.exists():  # a stale, incomplete entry
                shutil.rmtree(target)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return bundle_dir.resolve()


def _extract(zip_path: Path, archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], folder: Path) -> None:
    """Write the members under ``folder`` (their names were checked by :func:`_zip_layout`), counting the bytes that
    really come out and checking them against each member's header."""
    left = MAX_UNPACKED_BYTES
    for member in members:
        path = folder / member.filename
        if member.is_dir():
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        # zipfile would cut a member at its declared size and check the checksum of what it cut: a header that lies
        # would pass. Read the member's real data instead (up to just past the limit) and check it here.
        unbounded = copy.copy(member)
        unbounded.file_size, unbounded.CRC = left + 1, None
        written = crc = 0
        with archive.open(unbounded) as source, open(path, "wb") as target:
            while chunk := source.read(1 << 20):
                written += len(chunk)
                if written > left:
                    raise SynthMRError(f"{zip_path}: unpacks to more than a bundle's "
                                       f"{MAX_UNPACKED_BYTES / 1024**3:g} GB")
                crc = zlib.crc32(chunk, crc)
                target.write(chunk)
        if (written, crc) != (member.file_size, member.CRC):
            raise SynthMRError(f"{zip_path}: member {member.filename!r} is damaged: {written} bytes of checksum "
                               f"{crc:08x}, but its header declares {member.file_size} bytes of checksum "
                               f"{member.CRC:08x}")
        left -= written


def clear_cache(cache_folder: str | os.PathLike) -> None:
    """Remove every unpacked zip from ``cache_folder`` (they are unpacked again when next used)."""
    cache_folder = Path(cache_folder)
    if cache_folder.is_dir():
        shutil.rmtree(cache_folder)


def _entry(bundle_dir: Path, source: str, shipped: bool = False) -> BundleEntry:
    title, version, description = bundle_summary(bundle_dir)
    summary = {"title": title, "version": version, "description": description}
    try:
        tool_description = read_tool_description(bundle_dir)
        trusted = _is_trusted(bundle_dir, shipped)
    except (SynthMRError, OSError) as error:  # OSError: a folder that cannot be looked into
        return BundleEntry(bundle_dir.name, bundle_dir, source, problem=str(error), **summary)
    return BundleEntry(bundle_dir.name, bundle_dir, source, tool_description, trusted=trusted, **summary)


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
        if member.flag_bits & 0x1:  # zipfile would raise a bare RuntimeError asking for a password
            raise SynthMRError(f"{zip_path}: member {member.filename!r} is encrypted; zip the bundle without a "
                               "password")
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
