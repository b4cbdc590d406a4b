"""Where outputs may go and how they get there: all or nothing, and never over something unasked.

The output policy (docs/design.md, *Safety: outputs and trust*), shared by every command that writes:

- :func:`check_output_location` refuses an output that is a symbolic link, that is or contains the working
  directory or the home folder, that is, contains or lies inside one of the command's inputs, a bundle, or a
  staging folder, or whose parent cannot be created;
- :func:`check_destination` refuses to replace anything unless asked (``--overwrite``);
- :func:`atomic_output` writes under a hidden staging name beside the destination (same folder, hence the same file
  system, so the final rename is atomic) and moves it into place only once complete. Without ``overwrite`` the move
  never replaces what appeared meanwhile (another run to the same destination); with it, the old output is moved
  aside and removed only after the new one is in place. On any failure, an interrupt included, the staging and
  the parent folders it created are removed.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import signal
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from synthmr.errors import InputError

# The hidden names atomic_output writes under: .<name>.<token>.tmp<suffix> (staging) and .<name>.<token>.old (an
# output being replaced).
_STAGING_NAME = re.compile(r"^\..+\.[0-9a-f]{12}\.(tmp|old)")
# How deep below an output folder check_output_location looks for bundles it would delete (a bundle, a folder of
# bundles).
_BUNDLE_DEPTH = 2
# The staging paths of this process's own atomic_output blocks, each with the parent folders created for it: a
# command may write into its own staging (the demo runs a bundle into it), never into another's; and a process that
# a signal ends at once removes them (remove_own_staging).
_OWN_STAGING: dict[Path, list[Path]] = {}


def check_destination(path: Path, overwrite: bool, what: str = "file") -> None:
    """Raise :class:`InputError` when ``path`` exists and ``overwrite`` is false.

    An existing empty folder is not in the way of a folder output: it holds nothing that could be lost.
    A folder is never replaced by a file or a file by a folder, even with ``overwrite``, and a symbolic link is
    never replaced (the link, not what it points to, would go).
    """
    path = Path(path)
    if path.is_symlink():
        raise InputError(f"{path}: is a symbolic link; give the real {what} it should be written to")
    if path.exists() and path.is_dir() != (what == "folder"):
        raise InputError(f"{path}: exists and is not a {what}")
    if not path.exists() or overwrite:
        return
    if what == "folder" and path.is_dir() and not any(path.iterdir()):
        return
    raise InputError(f"{path}: {what} already exists; pass --overwrite to replace it")


def check_output_location(path: str | os.PathLike, protected: Mapping[str, str | os.PathLike] = ()) -> None:
    """Refuse an output location that writing (or replacing) would make destroy something (module docstring).

    Args:
        path: the output file or folder, as the user gave it.
        protected: what the command reads, name -> path (e.g. ``{"input 't1_pre'": ..., "bundle x": ...}``): the
            output may not be, contain or lie inside any of them.
    """
    given = Path(path)
    if given.is_symlink():
        problem = "a dangling symbolic link" if not given.exists() else "a symbolic link"
        raise InputError(f"{given}: is {problem}; give the real folder or file to write to")
    target = given.resolve()
    for name, folder in (("the working directory", Path.cwd()), ("your home folder", Path.home())):
        if folder.resolve().is_relative_to(target):
            raise InputError(f"{given}: is or contains {name} ({folder}); writing there would replace it")
    for name, item in dict(protected).items():
        item = Path(item).resolve()
        if item.is_relative_to(target) or target.is_relative_to(item):
            relation = "is" if item == target else "contains" if item.is_relative_to(target) else "lies inside"
            raise InputError(f"{given}: {relation} {name} ({item}); choose another output")
    for folder in (target, *target.parents):
        if _STAGING_NAME.match(folder.name) and folder not in _OWN_STAGING:
            raise InputError(f"{given}: lies inside a synthmr staging folder ({folder}); choose another output")
        if (folder / "configs" / "metadata.json").is_file():
            raise InputError(f"{given}: lies inside bundle {folder.name} ({folder}); choose another output")
    bundle = _bundle_below(target)
    if bundle is not None:
        raise InputError(f"{given}: contains bundle {bundle.name} ({bundle}); choose another output")
    existing = next(folder for folder in (target, *target.parents) if folder.exists())
    if existing != target:
        if not existing.is_dir():
            raise InputError(f"{given}: cannot be created, {existing} is a file")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise InputError(f"{given}: cannot be created, {existing} is not writable")


def _bundle_below(folder: Path) -> Path | None:
    """A bundle at most :data:`_BUNDLE_DEPTH` levels into ``folder``, or None."""
    level = [folder] if folder.is_dir() else []
    for _ in range(_BUNDLE_DEPTH + 1):  # the folder itself, then each level below
        for candidate in level:
            if (candidate / "configs" / "metadata.json").is_file():
                return candidate
        level = [child for parent in level for child in _subfolders(parent)]
    return None


def _subfolders(folder: Path) -> list[Path]:
    try:
        return [child for child in folder.iterdir() if child.is_dir() and not child.is_symlink()]
    except OSError:  # unreadable: nothing of ours can be in it
        return []


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = "", overwrite: bool = False) -> Iterator[Path]:
    """Yield a staging path beside ``path``; on success move it to ``path``, on failure delete it.

    Args:
        path: the final file or folder.
        suffix: ending of the staging name; writers that choose the format from the extension need it.
        overwrite: replace an existing ``path``. Without it an existing empty folder may be replaced, nothing else:
            an output that appeared since the caller checked (another run) makes the move fail with
            :class:`InputError`, and stays as it is.

    Parent folders are created as needed and removed again (when still empty) if the output is not written.
    """
    path = Path(path)
    created = [folder for folder in path.parents if not folder.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    temporary = path.with_name(f".{path.name}.{token}.tmp{suffix}")
    _OWN_STAGING[temporary.resolve()] = created
    try:
        yield temporary
        move_into_place(temporary, path, overwrite)
        created = []
    finally:
        _OWN_STAGING.pop(temporary.resolve(), None)
        _remove(temporary)
        _remove_created(created)


def move_into_place(staging: Path, path: Path, overwrite: bool = False) -> None:
    """Rename a complete ``staging`` file or folder (beside ``path``) to ``path``: never over what appeared meanwhile
    unless ``overwrite`` (an existing empty folder aside); with it, the old output is moved aside and removed only
    once the new one is in place."""
    if overwrite and path.exists() and not path.is_symlink():
        with _signals_deferred():  # an interrupt between the renames would leave no output in place
            _replace_aside(staging, path, path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.old"))
    else:
        _move_without_replacing(staging, path)


def _remove_created(created: list[Path]) -> None:
    """Remove the parent folders an output's write created, deepest first (as ``path.parents`` lists them), while
    they are empty."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:  # not empty (the output is in place, or someone else wrote there) or already gone
            break


def remove_own_staging() -> None:
    """Remove every staging path of this process's open :func:`atomic_output` blocks and the parent folders made
    for them: what a signal handler that ends the process at once, skipping those blocks' cleanup, does first."""
    for staging, created in list(_OWN_STAGING.items()):
        _remove(staging)
        _remove_created(created)


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back within the block (POSIX); they arrive, as usual, once it is over."""
    held = {signal.SIGINT, signal.SIGTERM}
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _replace_aside(new: Path, path: Path, old: Path) -> None:
    """Replace ``path`` by ``new``: the old one is renamed to ``old`` first and removed once ``new`` is in place."""
    os.replace(path, old)
    try:
        os.replace(new, path)
    except OSError:
        try:
            os.replace(old, path)
        except OSError:  # another run put its output there in between: keep ours aside, never delete it
            raise InputError(f"{path}: was replaced by another run meanwhile; the previous output is kept as {old}") from None
        raise
    _remove(old)


def _move_without_replacing(source: Path, destination: Path) -> None:
    """Rename ``source`` to ``destination`` unless something other than an empty folder is there by now."""
    appeared = InputError(
        f"{destination}: appeared while this was being written (another run?); it was left as it is and nothing "
        "was written; pass --overwrite to replace it"
    )
    if source.is_dir():
        try:
            os.rename(source, destination)  # POSIX replaces only an empty folder
        except OSError as error:
            if error.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise appeared from None
            raise
        return
    try:
        os.link(source, destination)  # fails if the name exists, unlike a rename
    except FileExistsError:
        raise appeared from None
    except OSError:  # a file system without hard links: check, then rename (a short window remains)
        if destination.exists() or destination.is_symlink():
            raise appeared from None
        os.replace(source, destination)


def finite_or_none(value):
    """``value`` with non-finite floats as None and tuples as lists, so that it is strict JSON."""
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, content: Mapping, overwrite: bool = False, compact: bool = False) -> None:
    """Write ``content`` to ``path`` as strict JSON (:func:`finite_or_none`) all at once (:func:`atomic_output`): the
    file is either complete or absent. Indented, or with ``compact`` on one line (a file of mostly numbers)."""
    layout = {"separators": (",", ":")} if compact else {"indent": 2}
    with atomic_output(path, suffix=".json", overwrite=overwrite) as temporary:
        temporary.write_text(json.dumps(finite_or_none(content), allow_nan=False, **layout) + "\n", encoding="utf-8")
