"""Reading a feature extractor's weights from a local file: never a download, never a silent substitution.

Every failure (file missing, unreadable, keys that do not fit the network) raises :class:`InputError` with one line
that names the file, what it should be and where to get it. The loaded file is identified by its SHA-256 so that
every FID report can say exactly which weights produced it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from synthmr.errors import InputError
from synthmr.io.weights import load_state, read_weights

# Keys in a state dict that only count training steps; a file written before they existed (or without them) loses
# nothing by taking the network's own value, because evaluation never reads them.
_BOOKKEEPING_SUFFIX = "num_batches_tracked"


@dataclass(frozen=True)
class WeightsSpec:
    """What an extractor's weights file is and where a user gets it (all of it goes into error messages).

    Args:
        what: the weights in words, e.g. "pytorch-fid Inception-v3 FID weights".
        file_name: the released file name, e.g. "pt_inception-2015-12-05-6726825d.pth".
        source: where to download it (a URL or a project page).
        expected_sha256_prefix: the leading hex digits of the released file's SHA-256 when the release names them
            (torch.hub file names end in the first 8); a mismatch means a corrupt or different file.
    """

    what: str
    file_name: str
    source: str
    expected_sha256_prefix: str | None = None

    def missing_message(self, extractor: str) -> str:
        return (
            f"the {extractor!r} feature extractor needs the {self.what} file {self.file_name}: download it from "
            f"{self.source} and pass its local path (weights=... in Python, --extractor_weights on the command line); "
            "nothing is downloaded automatically"
        )


def sha256_of(path: Path) -> str:
    """The hex SHA-256 of the file at ``path``, read in chunks so large weight files stay out of memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: str | Path, spec: WeightsSpec, extractor: str) -> tuple[dict[str, torch.Tensor], str]:
    """Load a state dict from the local file ``path`` (CPU tensors, ``weights_only``) and its SHA-256.

    Accepts a plain state dict or a checkpoint that wraps it under ``"state_dict"``, and strips the ``"module."``
    prefix that ``DataParallel``/``DistributedDataParallel`` add, so a user's own re-saved copy loads too.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{path}: file not found; {spec.missing_message(extractor)}")
    try:
        state = read_weights(path)
    except InputError:
        raise InputError(
            f"{path}: cannot read it as a PyTorch state dict of tensors (truncated, damaged, or pickled objects, "
            f"which are refused for safety); expected the {spec.what} file {spec.file_name} from {spec.source}"
        ) from None
    return state, sha256_of(path)


def load_into(module: nn.Module, state: dict[str, torch.Tensor], path: str | Path, spec: WeightsSpec) -> None:
    """Load ``state`` into ``module`` strictly; only missing step counters (``num_batches_tracked``) are tolerated.

    A key or shape that does not fit raises :class:`InputError` naming the file and the first offending keys, so a
    wrong file (e.g. torchvision's Inception instead of the FID port) is never half-loaded.
    """
    own = module.state_dict()
    counters = {key: value for key, value in own.items() if key.endswith(_BOOKKEEPING_SUFFIX) and key not in state}
    hint = f"; expected the {spec.what} file {spec.file_name} from {spec.source}"
    load_state(module, {**counters, **state}, Path(path), hint=hint)
