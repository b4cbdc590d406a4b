"""Simulated multiparametric MRI: the default data of SynthMR (docs/design.md, *The phantom*).

Each organ phantom is a small callable object: configuration in the constructor, one case per seed::

    from synthmr.phantom import phantom_class
    case = phantom_class("brain")(dims=3)(seed=0)   # PhantomCase
"""

from __future__ import annotations

import importlib

from synthmr.errors import InputError
from synthmr.phantom.case import PhantomCase

# The synthmr release that last changed what any phantom draws from a seed. Cached datasets record it, and a folder
# simulated under another phantom release is refused; bump it (to the new synthmr version) with every such change,
# and only then, so that releases that leave the phantom alone keep their users' cached data valid.
PHANTOM_RELEASE = "0.4.0"

# organ -> "module:Class"; imported on demand so `import synthmr.phantom` stays cheap.
PHANTOMS = {
    "brain": "synthmr.phantom.brain:BrainPhantom",
    "breast": "synthmr.phantom.breast:BreastPhantom",
    "liver": "synthmr.phantom.liver:LiverPhantom",
}


def phantom_class(organ: str) -> type:
    """The phantom class for ``organ`` (one of :data:`PHANTOMS`)."""
    if organ not in PHANTOMS:
        raise InputError(f"unknown organ {organ!r}: choose one of {', '.join(PHANTOMS)}")
    module, name = PHANTOMS[organ].split(":")
    return getattr(importlib.import_module(module), name)


__all__ = ["PHANTOMS", "PHANTOM_RELEASE", "PhantomCase", "phantom_class"]
