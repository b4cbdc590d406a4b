"""SynthMRLib: everything the 3D Slicer module does that needs no Slicer (docs/design.md, *The 3D Slicer extension*).

Finding bundles, reading their tool description and whether they are trusted to run (:mod:`~SynthMRLib.bundles`),
RAS/LPS grids and NRRD files (:mod:`~SynthMRLib.geometry`), checking the user's inputs
(:mod:`~SynthMRLib.validation`), lesion edit requests (:mod:`~SynthMRLib.edits`), running a synthesis in separate
processes with progress and cancel (:mod:`~SynthMRLib.process`) and the dependencies to install
(:mod:`~SynthMRLib.dependencies`).

It imports the standard library and NumPy only (Slicer's Python has both), never ``slicer`` or ``qt``, so it is
tested with plain pytest. ``synthmr`` is imported only where a function needs it, and only once the user has
installed it: discovery, the tool-description reading and the trust checks work without it (they load synthmr's
reader and trust rules alone).
"""

from SynthMRLib.bundles import (
    BundleEntry,
    clear_cache,
    confirm_trust,
    discover_bundles,
    read_tool_description,
    repository_bundles,
    resolve_bundle,
    trust_bundle,
    unpack_bundle_zip,
)
from SynthMRLib.edits import LesionEditRequest
from SynthMRLib.errors import SynthMRError
from SynthMRLib.geometry import lps_grid, ras_point_to_ijk, ras_vector_to_ijk, write_nrrd
from SynthMRLib.process import DEVICES, JobState, Progress, SynthesisJob, read_sidecar_text
from SynthMRLib.validation import SceneInput, check_inputs, combine_segments, segment_label_values

__all__ = [
    "DEVICES",
    "BundleEntry",
    "JobState",
    "LesionEditRequest",
    "Progress",
    "SceneInput",
    "SynthMRError",
    "SynthesisJob",
    "check_inputs",
    "clear_cache",
    "combine_segments",
    "confirm_trust",
    "discover_bundles",
    "lps_grid",
    "ras_point_to_ijk",
    "ras_vector_to_ijk",
    "read_tool_description",
    "repository_bundles",
    "resolve_bundle",
    "segment_label_values",
    "trust_bundle",
    "unpack_bundle_zip",
    "read_sidecar_text",
    "write_nrrd",
]
