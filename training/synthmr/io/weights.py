"""Loading network weights from a file: tensors only, never pickled Python objects, and every failure one line.

``torch.load(..., weights_only=True)`` refuses pickled objects (which could run code), but it says so, like a
truncated file, in a long traceback; here every way the file can be wrong is an :class:`InputError` naming it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from synthmr.errors import InputError

if TYPE_CHECKING:  # torch is imported where it is used: reading images with synthmr.io needs no torch
    import torch
    import torch.nn as nn

_NOT_WEIGHTS = (
    "not a weights file this bundle can load (truncated or damaged, or it holds pickled Python objects, which are "
    "refused for safety)"
)


def load_weights(network: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load the weights file ``path`` into ``network``, strictly, and return ``network``.

    Bundle configs call it as ``$synthmr.io.load_weights(@network, @checkpoint)``. The file holds a state dict,
    plain or under ``"state_dict"``; ``"module."`` prefixes (saved from ``DataParallel``) are stripped.

    Raises:
        InputError: the file is missing, cannot be loaded with ``weights_only=True`` or holds no state dict of
            tensors, or its keys or shapes do not fit ``network``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    return load_state(network, read_weights(path), path)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in the file ``path``, on the CPU, unwrapped from ``"state_dict"`` and without ``"module."``."""
    import torch

    try:
        with warnings.catch_warnings():  # e.g. on a plain pickle file, a warning about its protocol before refusing it
            warnings.simplefilter("ignore")
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises many types for a truncated, damaged or pickled-object file
        raise InputError(f"{path}: {_NOT_WEIGHTS}") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in loaded.items()
    ):
        raise InputError(f"{path}: {_NOT_WEIGHTS}")
    return {key.removeprefix("module."): value for key, value in loaded.items()}


def load_state(network: nn.Module, state: dict[str, torch.Tensor], path: Path, hint: str = "") -> nn.Module:
    """Load ``state`` (read from ``path``) into ``network`` strictly, or raise an :class:`InputError` naming the
    first missing, unexpected and wrongly shaped keys, followed by ``hint``: a wrong file is never half-loaded."""
    own = network.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(key for key in set(own) & set(state) if own[key].shape != state[key].shape)
    problems = [
        f"{len(keys)} {label} key(s) e.g. {', '.join(keys[:3])}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
        if keys
    ]
    if problems:
        raise InputError(f"{path}: does not fit the network ({'; '.join(problems)}){hint}")
    network.load_state_dict(state, strict=True)
    return network
