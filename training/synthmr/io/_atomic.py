"""All-or-nothing writes: outputs appear complete or not at all, and an existing output is never half-replaced.

Writers produce their output under a hidden temporary name next to the destination (same folder, hence the
same file system, so the final rename is atomic) and rename it into place only once it is complete.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from synthmr.errors import InputError


def check_destination(path: Path, overwrite: bool, what: str = "file") -> None:
    """Raise :class:`InputError` when ``path`` exists and ``overwrite`` is false.

    An existing empty folder is not in the way of a folder output: it holds nothing that could be lost.
    A folder is never replaced by a file or a file by a folder, even with ``overwrite``.
    """
    if path.exists() and path.is_dir() != (what == "folder"):
        raise InputError(f"{path}: exists and is not a {what}")
    if not path.exists() or overwrite:
        return
    if what == "folder" and path.is_dir() and not any(path.iterdir()):
        return
    raise InputError(f"{path}: {what} already exists; pass overwrite=True to replace it")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def atomic_output(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on failure delete it.

    Args:
        path: the final file or folder.
        suffix: ending of the temporary name; writers that choose the format from the extension need it.

    A folder that already holds ``path`` is moved aside first and deleted after the new one is in place,
    because a non-empty folder cannot be renamed over.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    temporary = path.with_name(f".{path.name}.{token}.tmp{suffix}")
    try:
        yield temporary
        if path.is_dir() and not path.is_symlink():
            old = path.with_name(f".{path.name}.{token}.old")
            os.replace(path, old)
            try:
                os.replace(temporary, path)
            except OSError:
                os.replace(old, path)
                raise
            shutil.rmtree(old)
        else:
            os.replace(temporary, path)
    finally:
        _remove(temporary)
