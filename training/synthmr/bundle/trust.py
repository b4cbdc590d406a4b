"""Which bundles may run: a bundle's configs are code, so a bundle from elsewhere runs only once the user trusts it.

A MONAI bundle config resolves any ``_target_`` to an importable callable and passes every ``$`` expression to
``eval()``; ``logging.conf`` and ``scripts/`` are code too. Running a bundle therefore means running whatever its
author wrote, with the user's rights. The policy (docs/design.md, *Safety: outputs and trust*):

- bundles shipped with synthmr (the repository's ``bundles/`` folder, the bundles packaged with the 3D Slicer
  extension) are trusted;
- any other bundle runs only after the user confirms it once (``synthmr run --trust-bundle``, the module's
  confirmation dialog). The confirmation is recorded by the SHA-256 of the bundle's code (:func:`code_digest`: its
  configs, scripts and Python files), so a changed config needs a new confirmation while new weights do not (they
  are loaded with ``weights_only``);
- the environment variable ``SYNTHMR_TRUST_BUNDLES=1`` trusts every bundle without recording anything (batch jobs).

Records live in ``trusted_bundles.json`` under the folder of ``SYNTHMR_CONFIG_DIR``, else
``$XDG_CONFIG_HOME/synthmr``, else ``~/.config/synthmr``. This module needs only the standard library: the 3D Slicer
module loads it before synthmr is installed (as it does ``synthmr.bundle.description``).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

TRUST_VARIABLE = "SYNTHMR_TRUST_BUNDLES"
CONFIG_DIR_VARIABLE = "SYNTHMR_CONFIG_DIR"
TRUST_FILE = "trusted_bundles.json"
# Folders of a bundle whose every file is code or steers code; elsewhere only Python files are.
CODE_FOLDERS = ("configs", "scripts")
CODE_SUFFIXES = (".py", ".pyc", ".so", ".pyd")


def code_files(bundle_dir: str | os.PathLike) -> list[Path]:
    """The files of a bundle that decide what code runs, relative to the bundle folder and sorted.

    Symbolic links are followed (a linked ``configs/`` is the bundle's configs), each real folder once, and
    ``__pycache__`` counts: Python may run a cached ``.pyc`` without looking at its source.
    """
    bundle_dir = Path(bundle_dir)
    found, seen = [], set()
    for folder, subfolders, files in os.walk(bundle_dir, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link back up the tree
            subfolders[:] = []
            continue
        seen.add(real)
        relative_folder = Path(folder).relative_to(bundle_dir)
        for name in files:
            relative = relative_folder / name
            if relative.parts[0] in CODE_FOLDERS or Path(name).suffix in CODE_SUFFIXES:
                found.append(relative)
    return sorted(found)


def code_digest(bundle_dir: str | os.PathLike) -> str:
    """SHA-256 over the names and contents of :func:`code_files`: what a confirmation is recorded by."""
    bundle_dir = Path(bundle_dir)
    digest = hashlib.sha256()
    for relative in code_files(bundle_dir):
        digest.update(relative.as_posix().encode("utf-8") + b"\0")
        digest.update(hashlib.sha256((bundle_dir / relative).read_bytes()).digest())
    return digest.hexdigest()


def config_dir() -> Path:
    """Where synthmr keeps the user's settings (see the module docstring)."""
    if os.environ.get(CONFIG_DIR_VARIABLE):
        return Path(os.environ[CONFIG_DIR_VARIABLE])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "synthmr"


def trust_store() -> Path:
    """The file the confirmations are recorded in."""
    return config_dir() / TRUST_FILE


def is_shipped(bundle_dir: str | os.PathLike, shipped_folders: Iterable[str | os.PathLike]) -> bool:
    """Whether the bundle folder lies in one of the folders of shipped bundles."""
    folder = Path(bundle_dir).resolve()
    return any(folder.is_relative_to(Path(root).resolve()) for root in shipped_folders)


def trust_from_environment() -> bool:
    """Whether ``SYNTHMR_TRUST_BUNDLES`` trusts every bundle."""
    return os.environ.get(TRUST_VARIABLE, "").strip().lower() in ("1", "true", "yes")


def is_trusted(bundle_dir: str | os.PathLike, shipped_folders: Iterable[str | os.PathLike] = ()) -> bool:
    """Whether the bundle may run without asking: shipped, trusted by the environment, or its code confirmed."""
    if is_shipped(bundle_dir, shipped_folders) or trust_from_environment():
        return True
    return code_digest(bundle_dir) in _records()


def record_trust(bundle_dir: str | os.PathLike) -> str:
    """Record that the user trusts the bundle's current code; returns the digest recorded."""
    bundle_dir = Path(bundle_dir).resolve()
    digest = code_digest(bundle_dir)
    records = _records()
    records[digest] = {"name": bundle_dir.name, "path": str(bundle_dir),
                       "trusted_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    store = trust_store()
    store.parent.mkdir(parents=True, exist_ok=True)
    temporary = store.with_name(f".{store.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        temporary.write_text(json.dumps({"bundles": records}, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, store)  # a reader sees the old records or the new ones, never half a file
    finally:
        temporary.unlink(missing_ok=True)
    return digest


def untrusted_summary(bundle_dir: str | os.PathLike) -> str:
    """One line saying what running the bundle means: where it is and which of its files are code."""
    bundle_dir = Path(bundle_dir)
    files = [path.as_posix() for path in code_files(bundle_dir)]
    shown = ", ".join(files[:6]) + (f" and {len(files) - 6} more" if len(files) > 6 else "")
    return (f"bundle {bundle_dir.name} ({bundle_dir}) is not shipped with synthmr, and its configs run code on this "
            f"machine with your rights ({shown})")


def _records() -> dict[str, dict]:
    """The recorded confirmations, digest -> details; a missing or damaged store counts as empty (so nothing is
    trusted that was not confirmed)."""
    try:
        loaded = json.loads(trust_store().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    records = loaded.get("bundles") if isinstance(loaded, dict) else None
    return {key: value for key, value in records.items() if isinstance(value, dict)} if isinstance(records, dict) else {}
