"""Synthetic case sets written case by case: reproducible per case, shared out over processes, resumable, and
moved into place only once complete.

A method supplies ``make(indices, folder) -> items``: it writes cases ``indices`` as ``folder/case_NNNNN/...`` and
returns their datalist items (paths relative to ``folder``), drawing case ``i`` from :func:`case_seed` ``(seed, i)``
alone. :func:`write_case_set` does the rest, knowing nothing about any method:

- **Sharding.** The indices ``0..n-1`` are cut into blocks of ``block`` consecutive cases (one ``make`` call, e.g.
  one batched forward pass) and block ``b`` goes to rank ``b % world_size`` of the ``torch.distributed`` group
  (``torchrun --nproc_per_node K``, with ``--nnodes`` unchanged on a shared file system); without a group, one
  process does every block. Blocks are the same whatever the number of processes, so a case's bytes are too.
- **Resuming.** Cases go to ``.<out>.partial`` beside the output, each folder completed by a ``.item.json`` marker
  written last; ``plan.json`` there records the set (size, seed, block, and the caller's ``identity``: bundle,
  version, weights, a digest of the sources). A run killed mid-way and started again with the same set skips the
  blocks whose cases all have markers and remakes the rest from scratch; a leftover of another set is refused by
  name. A user mistake (:class:`InputError`, a bad source found mid-way) removes the partial set: no rerun could
  resume past it.
- **All or nothing.** When every case is done, rank 0 writes ``datalist.json`` (the items) and ``manifest.json``
  (the plan and every case's seed) and renames the folder to the output, never over an existing one unless
  ``overwrite``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from synthmr.distributed import barrier, rank_and_world
from synthmr.errors import InputError, config_bool
from synthmr.io._atomic import check_destination, move_into_place, write_json

MakeCases = Callable[[Sequence[int], Path], list[dict]]
_MARKER = ".item.json"


def case_seed(seed: int, index: int) -> int:
    """The seed of case ``index`` of a set of seed ``seed``: independent of the set's size and of the other cases."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def digest(content) -> str:
    """SHA-256 of ``content`` as JSON: what a plan records of the source datalist instead of the whole of it."""
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def case_id(index: int) -> str:
    return f"case_{index:05d}"


def check_set_size_and_seed(n: object, seed: object, flags: str = "") -> None:
    """The checks every synthetic set makes of its size and seed before any work (``flags``: "--" to name them as
    command-line flags)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"{flags}n must be a positive integer (the number of cases); got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise InputError(f"{flags}seed must be an integer in [0, 2**32); got {seed!r}")


def progress_bar(done: int, total: int) -> None:
    """The command line's progress of a set: a bar on rank 0 (every rank counts the cases of all)."""
    if rank_and_world()[0] == 0:
        width = 20
        filled = round(width * done / total) if total else width
        print(f"generate [{'#' * filled}{'.' * (width - filled)}] {done}/{total} cases", flush=True)


def write_case_set(
    make: MakeCases,
    n: int,
    out_dir: str | os.PathLike,
    seed: int,
    *,
    block: int = 1,
    overwrite: bool = False,
    description: str = "",
    identity: Mapping | None = None,
    file_keys: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> list[dict]:
    """Write ``n`` cases made by ``make`` to ``out_dir`` with its ``datalist.json`` and ``manifest.json``; return the
    items, ``file_keys`` as absolute paths (module docstring). Every rank of a group must call it alike.

    Args:
        make: writes cases ``indices`` under a folder, returns their items (``case_id`` = :func:`case_id`).
        n, seed: the set's size and seed.
        out_dir: a new or empty folder (or any folder with ``overwrite``).
        block: consecutive cases per ``make`` call, the unit of sharding and of resuming.
        description: the datalist's description.
        identity: what makes the set this set besides n and seed (bundle, version, weights digest, mode): recorded
            in the manifest, and a leftover partial set with another identity is refused.
        file_keys: the item keys that are paths relative to the set's folder.
        progress: ``progress(done, n)`` after each block, ``done`` counting the cases of every rank.
    """
    check_set_size_and_seed(n, seed)
    overwrite = config_bool(overwrite, "overwrite")
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise InputError(f"block must be a positive integer; got {block!r}")
    out_dir = Path(out_dir).absolute()
    check_destination(out_dir, overwrite, "folder")
    partial = out_dir.with_name(f".{out_dir.name}.partial")
    plan = json.loads(json.dumps({"n": int(n), "seed": int(seed), "block": int(block), **dict(identity or {})}))
    rank, world = rank_and_world()
    if rank == 0:
        _open_partial(partial, plan)
    barrier()
    blocks = [list(range(start, min(n, start + block))) for start in range(0, n, block)]
    if progress is not None and (done := _count_done(partial)):
        progress(done, n)  # resuming: what is done already
    try:
        for indices in blocks[rank::world]:
            if all((partial / case_id(i) / _MARKER).is_file() for i in indices):
                continue  # made by a run that was stopped later
            for i in indices:  # a case without its marker was cut short: make it again from scratch
                shutil.rmtree(partial / case_id(i), ignore_errors=True)
            items = make(indices, partial)
            made = {str(item.get("case_id")): item for item in items}
            if sorted(made) != sorted(case_id(i) for i in indices):
                raise InputError(f"make returned cases {sorted(made)}; expected {[case_id(i) for i in indices]}")
            for i in indices:
                write_json(partial / case_id(i) / _MARKER, made[case_id(i)])
            if progress is not None:
                progress(_count_done(partial), n)
    except InputError:
        # A bad source or setting: running again cannot resume past it, so nothing of the set is kept. (A kill or
        # a crash keeps the partial set for the next run.)
        shutil.rmtree(partial, ignore_errors=True)
        raise
    barrier()
    if rank == 0:
        _finish(partial, out_dir, plan, n, seed, description, overwrite)
    barrier()
    items = json.loads((out_dir / "datalist.json").read_text(encoding="utf-8"))["training"]
    return [{key: str(out_dir / value) if key in file_keys else value for key, value in item.items()}
            for item in items]


def _count_done(partial: Path) -> int:
    """Cases of every rank finished so far: those with their marker."""
    return sum(1 for _ in partial.glob(f"case_*/{_MARKER}"))


def _open_partial(partial: Path, plan: dict) -> None:
    """Create the partial set's folder with its plan, or check that a leftover one is of this set."""
    plan_file = partial / "plan.json"
    if partial.is_symlink() or (partial.exists() and not plan_file.is_file()):
        raise InputError(f"{partial}: is in the way of this set's partial folder and is not one; remove it")
    if partial.exists():
        found = json.loads(plan_file.read_text(encoding="utf-8"))
        if found != plan:
            differences = ", ".join(f"{key}: {found.get(key)!r} -> {plan.get(key)!r}"
                                    for key in sorted({*found, *plan}) if found.get(key) != plan.get(key))
            raise InputError(
                f"{partial}: holds part of another set ({differences}); finish it with that command or remove it"
            )
        return
    partial.mkdir(parents=True)
    write_json(plan_file, plan)


def _finish(partial: Path, out_dir: Path, plan: dict, n: int, seed: int, description: str, overwrite: bool) -> None:
    """Gather the markers into the datalist and manifest and move the complete set into place."""
    items = []
    for i in range(n):
        marker = partial / case_id(i) / _MARKER
        if not marker.is_file():
            raise InputError(f"{marker}: missing after every rank finished; run the same command again to resume")
        items.append(json.loads(marker.read_text(encoding="utf-8")))
    write_json(partial / "datalist.json", {"description": description, "seed": int(seed), "training": items})
    write_json(partial / "manifest.json", {
        **plan, "description": description,
        "cases": {item["case_id"]: case_seed(seed, i) for i, item in enumerate(items)},
    })
    for i in range(n):
        (partial / case_id(i) / _MARKER).unlink()
    (partial / "plan.json").unlink()
    move_into_place(partial, out_dir, overwrite)
