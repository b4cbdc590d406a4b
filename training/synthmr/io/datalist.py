"""MONAI-style datalist JSON files: ``{"training": [{"t1n": "case0/t1n.nii.gz", "label": ...}, ...], ...}``.

Paths inside a datalist are relative to the JSON file, so a dataset folder can be moved or shared as a
whole. :func:`load_datalist` turns them into absolute paths; :func:`save_datalist` turns them back.

Which strings are paths: a string ending with an image extension (:data:`~synthmr.io.image.IMAGE_EXTENSIONS`)
always is, and must exist. Any other string is a path only when it contains a ``/`` and names something
that exists next to the JSON (e.g. a DICOM series folder ``dicom/case0``). Bare words such as class names or
case ids stay as they are even when a folder of that name sits beside the JSON;
:func:`save_datalist` therefore writes a bare relative folder name as ``./name``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

from synthmr.errors import InputError
from synthmr.io._atomic import atomic_output, check_destination
from synthmr.io.image import image_extension


def read_json(path: str | os.PathLike, what: str) -> object:
    """The content of the JSON file ``path``; ``what`` names the file in the error of a missing one.

    Raises:
        InputError: the file is missing, unreadable, or not valid JSON (the message gives the line).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot be read ({error})") from None


def load_datalist(path: str | os.PathLike, key: str = "training") -> list[dict]:
    """Read the items under ``key`` of a datalist JSON, with paths made absolute.

    Args:
        path: the datalist JSON file.
        key: which list to return (``"training"``, ``"validation"``, ``"test"`` ...). As in MONAI's
            ``load_decathlon_datalist``, a list item that is a plain string becomes ``{"image": string}``.

    Returns:
        One dict per item; path values (also inside lists of strings) are absolute, normalised strings.

    Raises:
        InputError: the file is missing or not valid JSON, ``key`` is absent or not a list of items, or an
            item names an image file that does not exist.
    """
    path = Path(path)
    content = read_json(path, "datalist file")
    if not isinstance(content, dict):
        raise InputError(f"{path}: a datalist is a JSON object of lists, found {type(content).__name__}")
    if key not in content:
        raise InputError(f"{path}: no key {key!r}; keys present: {', '.join(map(repr, content)) or 'none'}")
    items = content[key]
    if not isinstance(items, list):
        raise InputError(f"{path}: {key!r} must be a list of items, found {type(items).__name__}")
    base = path.absolute().parent
    return [_resolve_item(item, base, path, key, index) for index, item in enumerate(items)]


def check_case_id(case_id: object, where: str) -> str:
    """``case_id`` as a string, once it is a plain name: outputs go to ``<output_dir>/<case_id>/``, so a path
    (``../../x``, ``/tmp/x``) would put them anywhere.

    Args:
        case_id: the value of an item's ``case_id``.
        where: the item, for the message (e.g. ``"data.json: testing[3]"``).
    """
    text = str(case_id)
    if not text or text in (".", "..") or any(mark in text for mark in ("/", "\\", "\0")) or Path(text).is_absolute():
        raise InputError(
            f"{where}: case_id {text!r} is not a plain name (no path separators, not . or ..); outputs are written "
            "to <output_dir>/<case_id>/"
        )
    return text


def _resolve_item(item: object, base: Path, path: Path, key: str, index: int) -> dict:
    if isinstance(item, str):
        item = {"image": item}
    if not isinstance(item, dict):
        raise InputError(f"{path}: {key}[{index}] must be an object, found {type(item).__name__}")
    if "case_id" in item:
        check_case_id(item["case_id"], f"{path}: {key}[{index}]")
    resolved = {}
    for field, value in item.items():
        if field == "case_id":  # a name, never a path, even when a folder of that name is near
            resolved[field] = item[field]
            continue
        if isinstance(value, list):
            resolved[field] = [_resolve_value(v, base, path, f"{key}[{index}].{field}") for v in value]
        else:
            resolved[field] = _resolve_value(value, base, path, f"{key}[{index}].{field}")
    return resolved


def _resolve_value(value: object, base: Path, path: Path, where: str) -> object:
    if not isinstance(value, str) or not value:
        return value
    joined = Path(os.path.normpath(base / value))
    if image_extension(value) is not None:
        if not joined.exists():
            raise InputError(f"{path}: {where} names {joined}, which does not exist")
        return str(joined)
    if "/" in value and joined.exists():
        return str(joined)
    return value


def save_datalist(
    items_by_key: dict[str, list[dict]],
    path: str | os.PathLike,
    overwrite: bool = False,
    extra: dict | None = None,
) -> Path:
    """Write a datalist JSON whose paths are relative to the JSON's folder.

    Args:
        items_by_key: e.g. ``{"training": [...], "validation": [...]}``.
        path: the JSON file to write (parent folders are created).
        overwrite: replace an existing file.
        extra: further top-level entries (``"name"``, ``"labels"`` ...); they must not reuse a list's key.

    Absolute paths inside the JSON's folder become relative (``/`` separated); absolute paths elsewhere
    stay absolute; relative strings and non-path values are written unchanged. The file is written under
    a temporary name and renamed into place.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        InputError: ``path`` exists and ``overwrite`` is false, ``extra`` reuses a key, or a value cannot
            be written as JSON.
    """
    path = Path(path)
    extra = extra or {}
    clash = sorted(set(extra) & set(items_by_key))
    if clash:
        raise InputError(f"{path}: extra entries reuse datalist keys {clash}")
    check_destination(path, overwrite)
    base = path.absolute().parent
    content = {**extra}
    for key, items in items_by_key.items():
        content[key] = [{field: _relative(value, base) for field, value in item.items()} for item in items]
    try:
        text = json.dumps(content, indent=2) + "\n"
    except TypeError as error:
        raise InputError(f"{path}: the datalist cannot be written as JSON ({error})") from None
    with atomic_output(path, suffix=".json", overwrite=overwrite) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path


def _relative(value: object, base: Path) -> object:
    if isinstance(value, list):
        return [_relative(v, base) for v in value]
    if not isinstance(value, str) or not os.path.isabs(value):
        return value
    target = Path(os.path.normpath(value))
    if not target.is_relative_to(base):
        return value
    relative = PurePosixPath(*target.relative_to(base).parts)
    # A bare name without an image extension would read back as a plain word (see module docstring).
    if len(relative.parts) == 1 and image_extension(relative.name) is None:
        return f"./{relative}"
    return str(relative)
