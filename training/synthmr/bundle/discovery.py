"""Finding bundles by name or path.

A bundle is a folder holding ``configs/metadata.json``. By name, bundles are looked up in:

1. the repository's ``bundles/`` folder (three levels above this package: ``<repo>/bundles/<name>``), the shipped
   bundles (:func:`shipped_folders`), which synthmr trusts (synthmr.bundle.trust);
2. each folder of the environment variable ``SYNTHMR_BUNDLE_PATH`` (folders separated by :data:`os.pathsep`,
   like ``PATH``; absolute only; folders that do not exist are skipped), for a user's own or retrained bundles. A bundle there
   with the name of a shipped bundle is refused, never run in its place: a name must mean one bundle.

A bare name is always a name: a folder of that name in the working directory is never picked up (write
``./name`` to run it), and a bare name that a bundle folder of the working directory shares with a found bundle is
refused as ambiguous rather than guessed. The first of the ``SYNTHMR_BUNDLE_PATH`` folders holding a name wins.
"""

from __future__ import annotations

import os
from pathlib import Path

from synthmr.bundle.description import metadata_path
from synthmr.errors import InputError

BUNDLE_PATH_VARIABLE = "SYNTHMR_BUNDLE_PATH"
# training/synthmr/bundle/discovery.py -> the repository root holds training/ and bundles/ side by side.
REPOSITORY_BUNDLES = Path(__file__).resolve().parents[3] / "bundles"


def shipped_folders() -> list[Path]:
    """The folders of the bundles shipped with synthmr (none for an installed wheel, which carries no bundles)."""
    return [REPOSITORY_BUNDLES] if REPOSITORY_BUNDLES.is_dir() else []


def user_folders() -> list[Path]:
    """The existing folders of ``SYNTHMR_BUNDLE_PATH``, in order."""
    entries = [Path(entry) for entry in os.environ.get(BUNDLE_PATH_VARIABLE, "").split(os.pathsep) if entry]
    relative = [str(entry) for entry in entries if not entry.is_absolute()]
    if relative:  # it would make bare names mean folders of whatever the working directory is
        raise InputError(f"{BUNDLE_PATH_VARIABLE}: holds relative folder(s) {', '.join(relative)}; give absolute ones")
    return [entry for entry in entries if entry.is_dir()]


def bundle_folders() -> list[Path]:
    """The folders searched for bundles by name, in search order."""
    return [*shipped_folders(), *user_folders()]


def _bundles_in(folder: Path) -> dict[str, Path]:
    return {candidate.name: candidate.resolve() for candidate in sorted(folder.iterdir())
            if metadata_path(candidate).is_file()}


def shadowing_bundles() -> dict[Path, Path]:
    """User bundles that carry a shipped bundle's name: user bundle folder -> the shipped bundle it would hide."""
    shipped = {name: path for folder in shipped_folders() for name, path in _bundles_in(folder).items()}
    return {path: shipped[name] for folder in user_folders() for name, path in _bundles_in(folder).items()
            if name in shipped and path != shipped[name]}


def list_bundles() -> dict[str, Path]:
    """Bundle name -> bundle folder, for every bundle found by name (the first of each name; sorted by name)."""
    found: dict[str, Path] = {}
    for folder in bundle_folders():
        for name, path in _bundles_in(folder).items():
            found.setdefault(name, path)
    return dict(sorted(found.items()))


def _shadowing_message(user: Path, shipped: Path) -> str:
    return (f"bundle {user.name}: {user} (in {BUNDLE_PATH_VARIABLE}) has the name of a bundle shipped with synthmr "
            f"({shipped}); rename its folder to use it, a shipped bundle's name always means the shipped bundle")


def find_bundle(name_or_path: str | os.PathLike) -> Path:
    """The folder of a bundle given by its folder or by its name (see the module docstring for the search).

    Raises:
        InputError: a path (anything with a path separator) that is not a bundle folder, a name no searched
            folder holds (the message lists the bundles that are available and where they were looked for), or a
            name that a user bundle shares with a shipped one.
    """
    path = Path(name_or_path)
    text = str(name_or_path)
    if os.sep in text or (os.altsep and os.altsep in text) or text in ("", ".", ".."):
        if metadata_path(path).is_file():
            return path.resolve()
        problem = "not a bundle folder (no configs/metadata.json)" if path.is_dir() else "no such bundle folder"
        raise InputError(f"{path}: {problem}")
    for user, shipped in shadowing_bundles().items():
        if user.name == text:
            raise InputError(_shadowing_message(user, shipped))
    available = list_bundles()
    if text in available:
        if metadata_path(path).is_file() and path.resolve() != available[text]:
            raise InputError(
                f"bundle {text!r}: names {available[text]}, but the working directory holds another bundle folder "
                f"{text}; a bare name never runs a folder of the working directory, so say which: write ./{text} "
                "for that folder, or run from another directory"
            )
        return available[text]
    searched = ", ".join(str(folder) for folder in bundle_folders()) or "no bundle folder exists"
    here = f"; to run the folder {text} here, write ./{text}" if metadata_path(path).is_file() else ""
    raise InputError(
        f"bundle {text!r}: not found; available: {', '.join(available) or 'none'} (searched: {searched}; "
        f"add folders with {BUNDLE_PATH_VARIABLE}){here}"
    )
