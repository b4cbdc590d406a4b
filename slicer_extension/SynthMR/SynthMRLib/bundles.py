"""Finding bundles and reading what they need from the user, with the standard library only.

**Where bundles come from**, in this order; the first bundle of a name wins (as in ``synthmr``'s own search, so a
user's retrained bundle stands in for a shipped one of the same name):

1. the bundles the user pointed to: a bundle folder, or a ``.zip`` of one, which is unpacked into a cache folder
   (once per zip content: the cache entry is named after the zip's SHA-256);
2. the subfolders of the user's bundle folder that hold ``configs/metadata.json``;
3. the repository's ``bundles/`` folder, when the module runs from a SynthMR checkout
   (``<repository>/slicer_extension/SynthMR``).

Nothing is downloaded.

**The interface description** is the ``"synthmr"`` block of ``configs/metadata.json``, documented in
``synthmr.bundle.description``. When synthmr is importable, :func:`read_interface` uses synthmr's own reader and all
of its checks. Before synthmr is installed (a fresh Slicer, where the module must show what a bundle needs before it
offers to install anything) the block is read with :mod:`json`: the fields the interface is built from are
checked for presence, type and cross-references (the reference, organ and lesion roles exist and have the right
kind, the edits are known ones), and the description is marked ``checked=False``. What that reader does not check
(misspelt extra fields, label keys spelt ``"01"``, the demo block) is checked by synthmr again before every run, so
a bundle that passes the light reading and fails synthmr's fails with synthmr's message, before anything is written.
Nothing of synthmr is vendored; the tests read the same blocks with both readers and require the same result.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from SynthMRLib.errors import SynthMRError

BLOCK_KEY = "synthmr"
KINDS = ("volume", "labelmap")
LESION_EDITS = ("translate", "scale", "mirror", "transplant")
RESERVED_INPUT_ROLES = ("case_id",)
# The most a bundle zip may unpack to: more is not a bundle (weights are <= 16 MB per file) but a mistake or a bomb.
MAX_UNPACKED_BYTES = 4 * 1024**3
_ROLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_ZIP_HASH_CHARS = 16


@dataclass(frozen=True)
class Role:
    """One input or output of a bundle (outputs are always ``required``).

    Args:
        name: the role name the bundle reads or writes it under.
        kind: ``"volume"`` or ``"labelmap"``.
        description: what it is, for a user; the module's label for it.
        required: whether a run needs it (inputs only).
        sequence: canonical sequence key of a volume, or None.
        labels: label value -> name of a labelmap; when given, the only values besides 0 it may hold.
    """

    name: str
    kind: str
    description: str
    required: bool = True
    sequence: str | None = None
    labels: dict[int, str] | None = None


@dataclass(frozen=True)
class BundleInterface:
    """What a bundle needs and makes: the ``"synthmr"`` block of its metadata.

    Args:
        bundle_dir: the bundle folder (its name is the bundle's name).
        spatial_dims: 2 (slice-wise) or 3.
        inputs: role name -> input role, in display order.
        outputs: role name -> output role, in display order.
        reference: the input whose grid every input shares and the outputs land on.
        organ_mask: labelmap input lesion edits are clipped to, or None.
        lesion: labelmap input holding the lesion, or None.
        lesion_edits: the lesion edits the bundle supports.
        checked: True when synthmr's reader checked the whole block; False for the standard-library reading.
    """

    bundle_dir: Path
    spatial_dims: int
    inputs: dict[str, Role]
    outputs: dict[str, Role]
    reference: str
    organ_mask: str | None = None
    lesion: str | None = None
    lesion_edits: tuple[str, ...] = field(default_factory=tuple)
    checked: bool = False

    @property
    def name(self) -> str:
        """The bundle's name: its folder name."""
        return self.bundle_dir.name


@dataclass(frozen=True)
class BundleEntry:
    """A bundle found by :func:`discover_bundles`.

    Args:
        name: the bundle's name.
        path: its folder (for a zip: where it was unpacked).
        source: where it was found: ``"added"``, ``"user folder"`` or ``"repository"``.
        interface: its interface, or None when it cannot be used.
        problem: why it cannot be used (one message), or None.
    """

    name: str
    path: Path
    source: str
    interface: BundleInterface | None = None
    problem: str | None = None


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


def metadata_path(bundle_dir: str | os.PathLike) -> Path:
    """Where a bundle keeps its metadata and interface description."""
    return Path(bundle_dir) / "configs" / "metadata.json"


def read_interface(bundle_dir: str | os.PathLike) -> BundleInterface:
    """The interface of the bundle in ``bundle_dir`` (see the module docstring for the two readers).

    Raises:
        SynthMRError: the folder is not a bundle, or its metadata or interface block is invalid; the message names
            the metadata file and the field.
    """
    bundle_dir = Path(bundle_dir)
    try:
        from synthmr.bundle.description import read_tool_description
        from synthmr.errors import InputError
    except ImportError:  # synthmr is not installed yet: the light reading below
        return _read_interface_json(bundle_dir)
    try:
        description = read_tool_description(bundle_dir)
    except InputError as error:
        raise SynthMRError(str(error)) from None

    def role(value: Any) -> Role:  # synthmr's InputRole or OutputRole (which has no `required`: always written)
        required = getattr(value, "required", True)
        return Role(value.name, value.kind, value.description, required, value.sequence, value.labels)

    return BundleInterface(
        bundle_dir=description.bundle_dir,
        spatial_dims=description.spatial_dims,
        inputs={name: role(value) for name, value in description.inputs.items()},
        outputs={name: role(value) for name, value in description.outputs.items()},
        reference=description.reference,
        organ_mask=description.organ_mask,
        lesion=description.lesion,
        lesion_edits=tuple(description.lesion_edits),
        checked=True,
    )


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
        repository: the repository's bundle folder; default :func:`repository_bundles`.
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
    repository = repository_bundles() if repository is None else Path(repository)
    for folder, source in ((user_folder, "user folder"), (repository, "repository")):
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
    target = cache_folder / _file_hash(zip_path)
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
    try:
        return BundleEntry(bundle_dir.name, bundle_dir, source, interface=read_interface(bundle_dir))
    except SynthMRError as error:
        return BundleEntry(bundle_dir.name, bundle_dir, source, problem=str(error))


def _bundle_name(path: Path) -> str:
    return path.stem if path.suffix.lower() == ".zip" else path.name


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:_ZIP_HASH_CHARS]


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


def _read_interface_json(bundle_dir: Path) -> BundleInterface:
    """The light, standard-library reading of the interface block (module docstring)."""
    path = metadata_path(bundle_dir)
    if not path.is_file():
        raise SynthMRError(f"{bundle_dir}: not a bundle folder (no configs/metadata.json)")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise SynthMRError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SynthMRError(f"{path}: cannot be read ({error})") from None
    return _JsonReader(path).interface(bundle_dir, metadata)


class _JsonReader:
    """Reads one metadata file's block; every error names the file and the dotted field, as synthmr's reader does."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, field_name: str, problem: str) -> SynthMRError:
        return SynthMRError(f"{self.path}: field {field_name}: {problem}")

    def interface(self, bundle_dir: Path, metadata: Any) -> BundleInterface:
        if not isinstance(metadata, dict) or BLOCK_KEY not in metadata:
            raise SynthMRError(
                f"{self.path}: no {BLOCK_KEY!r} block; it describes the bundle's inputs and outputs to SynthMR tools"
            )
        block = metadata[BLOCK_KEY]
        if not isinstance(block, dict):
            raise self.error(BLOCK_KEY, f"must be a JSON object, got {json.dumps(block)}")
        missing = [key for key in ("spatial_dims", "inputs", "outputs", "reference") if key not in block]
        if missing:
            raise self.error(BLOCK_KEY, f"missing field(s) {', '.join(missing)}")
        spatial_dims = block["spatial_dims"]
        if isinstance(spatial_dims, bool) or spatial_dims not in (2, 3):
            raise self.error(f"{BLOCK_KEY}.spatial_dims", f"must be 2 or 3, got {spatial_dims!r}")
        inputs = {name: self.role("inputs", name, value) for name, value in self.group("inputs", block).items()}
        outputs = {name: self.role("outputs", name, value) for name, value in self.group("outputs", block).items()}
        reference = block["reference"]
        if not isinstance(reference, str) or reference not in inputs:
            raise self.error(f"{BLOCK_KEY}.reference", f"{reference!r} is not an input role ({', '.join(inputs)})")
        if not inputs[reference].required:
            raise self.error(f"{BLOCK_KEY}.reference", f"input {reference!r} is optional; it must be required")
        organ_mask = self.labelmap_role("organ_mask", block.get("organ_mask"), inputs)
        lesion = self.labelmap_role("lesion", block.get("lesion"), inputs)
        edits = block.get("lesion_edits", [])
        if not isinstance(edits, list) or any(edit not in LESION_EDITS for edit in edits):
            allowed = ", ".join(LESION_EDITS)
            problem = f"must be a list drawn from {allowed}, not {json.dumps(edits)}"
            raise self.error(f"{BLOCK_KEY}.lesion_edits", problem)
        if edits and lesion is None:
            raise self.error(f"{BLOCK_KEY}.lesion_edits", "lesion edits need a lesion input; set the lesion field")
        return BundleInterface(bundle_dir, spatial_dims, inputs, outputs, reference, organ_mask, lesion, tuple(edits))

    def group(self, group: str, block: Mapping[str, Any]) -> Mapping[str, Any]:
        value = block[group]
        field_name = f"{BLOCK_KEY}.{group}"
        if not isinstance(value, dict) or not value:
            raise self.error(field_name, f"must be a non-empty JSON object of roles, got {json.dumps(value)}")
        for name in value:
            if not _ROLE_NAME.fullmatch(name):
                raise self.error(
                    f"{field_name}.{name}", "role names start with a letter and hold only letters, digits and _"
                )
            if group == "inputs" and name in RESERVED_INPUT_ROLES:
                raise self.error(f"{field_name}.{name}", "this name is reserved for the case name the runner passes")
        return value

    def role(self, group: str, name: str, value: Any) -> Role:
        field_name = f"{BLOCK_KEY}.{group}.{name}"
        if not isinstance(value, dict):
            raise self.error(field_name, f"must be a JSON object, got {json.dumps(value)}")
        missing = [key for key in ("kind", "description") if key not in value]
        if missing:
            raise self.error(field_name, f"missing field(s) {', '.join(missing)}")
        kind, description = value["kind"], value["description"]
        if kind not in KINDS:
            raise self.error(f"{field_name}.kind", f"must be one of {', '.join(KINDS)}, got {json.dumps(kind)}")
        if not isinstance(description, str) or not description.strip():
            raise self.error(f"{field_name}.description", "must be a non-empty string")
        required = value.get("required", True) if group == "inputs" else True
        if not isinstance(required, bool):
            raise self.error(f"{field_name}.required", f"must be true or false, got {json.dumps(required)}")
        sequence = value.get("sequence")
        if sequence is not None and (kind != "volume" or not isinstance(sequence, str) or not sequence):
            raise self.error(f"{field_name}.sequence", "only volumes have a sequence, a sequence key string")
        labels = value.get("labels")
        if labels is not None:
            if kind != "labelmap":
                raise self.error(f"{field_name}.labels", "only labelmaps have labels")
            labels = self.labels(f"{field_name}.labels", labels)
        return Role(name, kind, description, required, sequence, labels)

    def labels(self, field_name: str, value: Any) -> dict[int, str]:
        if not isinstance(value, dict) or not value:
            raise self.error(field_name, f"must be a non-empty JSON object of value -> name, got {json.dumps(value)}")
        labels = {}
        for key, name in value.items():
            if not (key.isdigit() and int(key) > 0):
                raise self.error(field_name, f"label value {key!r} is not a positive integer (0 is the background)")
            if not isinstance(name, str) or not name:
                raise self.error(f"{field_name}.{key}", f"must be the label's name, got {json.dumps(name)}")
            labels[int(key)] = name
        return labels

    def labelmap_role(self, field_name: str, value: Any, inputs: Mapping[str, Role]) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or value not in inputs or inputs[value].kind != "labelmap":
            labelmaps = [name for name, role in inputs.items() if role.kind == "labelmap"]
            raise self.error(
                f"{BLOCK_KEY}.{field_name}",
                f"{json.dumps(value)} is not a labelmap input role (labelmap inputs: {', '.join(labelmaps) or 'none'})",
            )
        return value
