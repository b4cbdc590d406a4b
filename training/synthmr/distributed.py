"""One process at a time where processes of a ``torch.distributed`` group share files on disk."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def rank_zero_first(make: Callable[[], T]) -> T:
    """``make()`` in every process, rank 0 first: the others wait at a barrier until it has finished.

    For work that writes a cache the others then read (simulated data, registered atlases): under DDP (``torchrun``)
    the ranks would otherwise race to write the same files. Without an initialised process group (one process),
    just ``make()``. Every rank of the group must call this.
    """
    # Only a process that imported torch.distributed can be part of a process group.
    distributed = sys.modules.get("torch.distributed")
    if distributed is None or not distributed.is_initialized():
        return make()
    if distributed.get_rank() == 0:
        result = make()
        distributed.barrier()
        return result
    distributed.barrier()
    return make()
