"""Processes of a ``torch.distributed`` group (``torchrun``): who they are, waiting for each other, and one at a
time where they share files on disk. Without an initialised group, one process: rank 0 of 1, nothing to wait for."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def _group():
    """``torch.distributed`` when this process is part of an initialised group, else None. Only a process that
    imported torch.distributed can be part of one, so nothing is imported here."""
    distributed = sys.modules.get("torch.distributed")
    return distributed if distributed is not None and distributed.is_initialized() else None


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the group's size; (0, 1) without an initialised group."""
    distributed = _group()
    return (0, 1) if distributed is None else (distributed.get_rank(), distributed.get_world_size())


def barrier() -> None:
    """Wait for every rank of the group (nothing to wait for without one)."""
    distributed = _group()
    if distributed is not None:
        distributed.barrier()


def rank_zero_first(make: Callable[[], T]) -> T:
    """``make()`` in every process, rank 0 first: the others wait at a barrier until it has finished.

    For work that writes a cache the others then read (simulated data, registered atlases): under DDP (``torchrun``)
    the ranks would otherwise race to write the same files. Without an initialised process group (one process),
    just ``make()``. Every rank of the group must call this.
    """
    distributed = _group()
    if distributed is None:
        return make()
    if distributed.get_rank() == 0:
        result = make()
        distributed.barrier()
        return result
    distributed.barrier()
    return make()
