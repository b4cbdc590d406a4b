"""What the module needs inside Slicer beyond what Slicer ships, and how to install it without breaking Slicer.

- PyTorch comes from the PyTorch extension only: its ``PyTorchUtils`` picks the build that matches the GPU driver.
  It is never pip-installed here.
- ``synthmr`` (which brings MONAI, nibabel, pydicom and the rest) is pip-installed only after the user confirms:
  from the SynthMR checkout the module runs from, or else from the package index under the name ``synthmr``.
- The install is constrained to the versions of PyTorch, NumPy and SimpleITK already installed, so pip either
  keeps them or fails with a message: it cannot replace Slicer's own builds or the PyTorch extension's (a
  pip-installed SimpleITK breaks Slicer's image IO).

Nothing here installs anything or imports the packages it asks about; the module calls it on the user's request.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

from SynthMRLib.bundles import repository_root

# Modules a run needs in Slicer's Python: PyTorch (from the PyTorch extension), MONAI, which runs the bundles, and
# the runner's package.
REQUIRED_MODULES = ("torch", "monai", "synthmr")
# Distributions Slicer or the PyTorch extension installed, which pip must keep as they are.
PROTECTED_DISTRIBUTIONS = ("torch", "numpy", "SimpleITK")
PYTORCH_REQUIREMENT = ">=2.4"  # synthmr's own floor (pyproject.toml)


def missing_modules() -> list[str]:
    """The :data:`REQUIRED_MODULES` this Python cannot import (found without importing them)."""
    return [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]


def synthmr_requirement() -> str:
    """What pip installs synthmr from: the checkout this module runs from, else the package name."""
    root = repository_root()
    return str(root) if root is not None else "synthmr"


def protected_constraints() -> str:
    """pip constraints (``name==version`` lines) that keep the installed :data:`PROTECTED_DISTRIBUTIONS`."""
    lines = []
    for name in PROTECTED_DISTRIBUTIONS:
        try:
            lines.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:  # not installed: pip may bring it
            continue
    return "".join(line + "\n" for line in lines)


def pip_arguments(constraints_file: str) -> list[str]:
    """The arguments after ``pip install`` that install synthmr under the constraints in ``constraints_file``."""
    return [synthmr_requirement(), "--constraint", constraints_file]
