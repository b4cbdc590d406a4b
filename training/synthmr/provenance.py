"""Every synthetic image says it is synthetic, in its header and in a JSON sidecar, written by one writer.

A synthetic ``t1_post1.nii.gz`` that leaves its output folder must not pass for an acquired one. Every bundle
output goes through :func:`write_synthetic`, which marks the file itself and writes a sidecar beside it:

- the header: NIfTI's ``descrip`` (80 characters) reads ``SYNTHETIC: SynthMR <bundle> <version>``; NRRD and
  MetaImage files carry the same text plus ``synthmr_*`` key-value fields (bundle, version, weights SHA-256).
  NIfTI's ``intent_name`` stays empty: the intent fields say what voxel values mean (a statistic, labels), not
  where an image came from, and ITK does not write them;
- the sidecar ``<name>.json`` (the file name without ``.nii.gz``/``.nrrd``/...; BIDS's convention):
  ``{"synthetic": true, "made_by", "bundle", "version", "weights": {"path", "sha256"}, "inputs": {role:
  {"path", "relative" (to the sidecar's folder), "sha256"[, "provenance"]}}, "seed", "precision", "lesion_edits",
  "output", "file"}``: no clock time, so that a set made twice (or by several processes) is the same bytes. An input that SynthMR
  wrote (a lesion map edited by ``synthmr lesion``, whose sidecar lists its edits) brings its own record along, and
  its edits become the output's ``lesion_edits``.

:func:`read_provenance` reads it back (``synthmr inspect FILE``): from the sidecar, or from the header alone
when the sidecar was lost.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from synthmr.errors import InputError

MARK = "SYNTHETIC"
EDITED = "EDITED"  # a labelmap SynthMR changed on a user's request (synthmr lesion): not acquired, not synthesised


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (what ``sha256sum`` prints); of a folder (a DICOM series), of its files' relative
    names and bytes in name order. A file is hashed once per content: generated sets record the same sources for
    many cases, so the digest is kept by path, size and modification time."""
    path = Path(path)
    if not path.is_dir():
        status = path.stat()
        return _file_sha256(str(path.resolve()), status.st_size, status.st_mtime_ns)
    digest = hashlib.sha256()
    for file_path in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file_path.relative_to(path)).encode() + b"\0")
        _update(digest, file_path)
    return digest.hexdigest()


@functools.lru_cache(maxsize=4096)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    _update(digest, Path(path))
    return digest.hexdigest()


def _update(digest, path: Path) -> None:
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)


def bundle_identity(bundle_root: str | os.PathLike, checkpoint: str | os.PathLike | None = None) -> dict:
    """What every output of a bundle records about its maker: the bundle's name and version (its
    ``configs/metadata.json``) and the weights file with its SHA-256. Inference configs pass it to their writer."""
    root = Path(bundle_root).resolve()
    try:
        version = json.loads((root / "configs" / "metadata.json").read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError):
        version = None
    identity: dict = {"bundle": root.name, "version": version, "weights": None}
    if checkpoint is not None and Path(checkpoint).is_file():
        identity["weights"] = {"path": str(Path(checkpoint).resolve()), "sha256": file_sha256(checkpoint)}
    return identity


def sidecar_path(image: str | os.PathLike) -> Path:
    """``case/t1_post1.nii.gz`` -> ``case/t1_post1.json``."""
    from synthmr.io.image import image_extension

    image = Path(image)
    extension = image_extension(image)
    return image.with_name((image.name[: -len(extension)] if extension else image.stem) + ".json")


def record(identity: Mapping, inputs: Mapping[str, str | os.PathLike] | None = None, seed: int | None = None,
           precision: str | None = None, lesion_edits: Sequence[Mapping] | None = None, **extra) -> dict:
    """The sidecar content of one output (module docstring); ``inputs`` role -> file."""
    from synthmr import __version__

    described, edits = {}, list(lesion_edits or [])
    for role, path in (inputs or {}).items():
        entry: dict = {"path": str(Path(path).resolve()), "sha256": file_sha256(path)}
        previous = read_sidecar(path)
        if previous is not None:
            entry["provenance"] = previous
            edits += previous.get("lesion_edits", [])
        described[role] = entry
    return {"synthetic": True, "made_by": f"SynthMR {__version__}", **dict(identity), "inputs": described,
            "seed": seed, "precision": precision, "lesion_edits": edits, **extra}


def header_text(content: Mapping) -> str:
    """The header's one line, at most 80 characters (NIfTI's descrip)."""
    maker = " ".join(str(part) for part in (content.get("bundle"), content.get("version")) if part)
    mark = MARK if content.get("synthetic", True) else EDITED
    return f"{mark}: SynthMR {maker}".strip()[:80]


def write_synthetic(volume, path: str | os.PathLike, content: Mapping, overwrite: bool = False) -> Path:
    """Write ``volume`` to ``path`` marked as synthetic (header) with its sidecar (``content``, from :func:`record`).

    The sidecar is written first and removed again if the image cannot be written, so an image never lands
    without it (and a failed run leaves neither)."""
    from synthmr.io import write_image
    from synthmr.io._atomic import check_destination, write_json

    path, sidecar = Path(path), sidecar_path(path)
    check_destination(path, overwrite)
    check_destination(sidecar, overwrite)
    fields = {"synthmr_synthetic": "true" if content.get("synthetic", True) else "edited",
              "synthmr_bundle": str(content.get("bundle")),
              "synthmr_bundle_version": str(content.get("version")),
              "synthmr_weights_sha256": str((content.get("weights") or {}).get("sha256"))}
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    # Relative paths too: an output folder moved together with its inputs (synthmr demo's) still finds them.
    inputs = {role: {**entry, "relative": os.path.relpath(entry["path"], path.absolute().parent)}
              for role, entry in (content.get("inputs") or {}).items()}
    write_json(sidecar, {**dict(content), "inputs": inputs, "file": path.name}, overwrite=overwrite)
    try:
        return write_image(volume, path, overwrite=overwrite, notes=header_text(content), fields=fields)
    except BaseException:
        sidecar.unlink(missing_ok=True)
        raise


def move_synthetic(image: str | os.PathLike, destination: str | os.PathLike, extra: Mapping | None = None) -> Path:
    """Move a written output and its sidecar to ``destination`` (same file system), re-basing the sidecar's
    relative input paths on the new folder and adding ``extra`` entries to it (the runner's input check)."""
    from synthmr.io._atomic import write_json

    image, destination = Path(image), Path(destination)
    content = read_sidecar(image)
    os.replace(image, destination)
    if content is not None:
        for entry in (content.get("inputs") or {}).values():
            entry["relative"] = os.path.relpath(entry["path"], destination.absolute().parent)
        write_json(sidecar_path(destination), {**content, **(extra or {}), "file": destination.name})
        sidecar_path(image).unlink()
    return destination


def read_sidecar(image: str | os.PathLike) -> dict | None:
    """The sidecar of ``image`` when there is one that SynthMR wrote, else None."""
    sidecar = sidecar_path(image)
    if not sidecar.is_file():
        return None
    try:
        content = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) and "made_by" in content else None


def read_provenance(image: str | os.PathLike) -> dict:
    """What SynthMR knows of ``image``: ``{"synthetic": bool, "source": "sidecar"|"header"|None, ...record}``.

    Raises:
        InputError: ``image`` is not a readable image.
    """
    import SimpleITK as sitk

    image = Path(image)
    if not image.is_file():
        raise InputError(f"{image}: no such file")
    content = read_sidecar(image)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(image))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise InputError(f"{image}: not an image SimpleITK can read") from None
    keys = set(reader.GetMetaDataKeys())
    notes = next((reader.GetMetaData(k) for k in ("descrip", "ITK_FileNotes") if k in keys and reader.GetMetaData(k)), "")
    marked = notes.startswith((MARK, EDITED)) or (reader.GetMetaData("synthmr_synthetic") in ("true", "edited")
                                                  if "synthmr_synthetic" in keys else False)
    if content is not None:
        return {"source": "sidecar", "header_marked": marked, **content}
    return {"synthetic": notes.startswith(MARK) or None, "source": "header" if marked else None, "header": notes}


def describe(image: str | os.PathLike) -> str:
    """``synthmr inspect``'s text for one file."""
    info = read_provenance(image)
    if info.get("source") is None:
        return f"{image}: no SynthMR mark (no sidecar, header says {info.get('header')!r}): not made by SynthMR, " \
               "or its marks were removed"
    if info["source"] == "header":
        return f"{image}: made by SynthMR ({info['header']}); its sidecar is missing, so its inputs are unknown"
    lines = [f"{image}: {'SYNTHETIC' if info['synthetic'] else 'edited'}, made by {info.get('made_by')}"
             + (f", bundle {info['bundle']} {info.get('version')}" if info.get("bundle") else ""),
             f"  output {info.get('output')}" + (f", seed {info['seed']}" if info.get("seed") is not None else "")
             + (f", precision {info['precision']}" if info.get("precision") else "")]
    weights = info.get("weights") or {}
    if weights:
        lines.append(f"  weights {weights.get('path')} (sha256 {weights.get('sha256')})")
    for role, entry in (info.get("inputs") or {}).items():
        path = entry.get("path")
        if path and not Path(path).exists() and entry.get("relative"):
            path = os.path.normpath(Path(image).absolute().parent / entry["relative"])
        lines.append(f"  input {role}: {path} (sha256 {entry.get('sha256')})")
    for edit in info.get("lesion_edits") or []:
        lines.append(f"  lesion edit: {json.dumps(edit, sort_keys=True)}")
    check = info.get("input_check")
    if check:
        verdict = "passed" if check.get("passed") else "WARNED: the inputs were unlike the training data"
        lines.append(f"  input check {verdict} (score {check.get('score')}, threshold {check.get('threshold')})")
    if not info.get("header_marked", True):
        lines.append("  warning: the image's header lacks the SYNTHETIC mark (re-saved by another tool?)")
    return "\n".join(lines)
