"""The tool description of a bundle: what its inputs and outputs are, so that tools need no bundle-specific code.

A SynthMR bundle's ``configs/metadata.json`` carries, next to the MONAI fields, one block under the top-level key
``"synthmr"``. The command line (``synthmr run``, ``synthmr bundles``) and the 3D Slicer module build their
interface and their input checks from it alone (docs/design.md, *The bundle contract*). Example::

    "synthmr": {
      "spatial_dims": 2,
      "inputs": {
        "t1_pre": {"kind": "volume", "sequence": "t1_pre", "description": "pre-contrast T1w fat-saturated"},
        "liver": {"kind": "labelmap", "labels": {"1": "liver"}, "description": "liver mask", "required": true}
      },
      "outputs": {
        "t1_post1": {"kind": "volume", "sequence": "t1_post1", "description": "synthetic first post-contrast phase"}
      },
      "reference": "t1_pre",
      "organ_mask": null,
      "lesion": null,
      "lesion_edits": [],
      "demo": {"organ": "breast", "seed": 300000, "phantom": {"dims": 2, "size": 128, "n_lesions": [1, 2]}}
    }

Fields (all but ``organ_mask``, ``lesion`` and ``lesion_edits`` are required; no other fields are allowed, so a
misspelt one is reported instead of silently ignored):

``spatial_dims``
    2: the network works on 2D slices and is applied slice-wise to volumes; 3: it works on volumes. A
    3D bundle refuses 2D images.
``inputs``
    Role name -> input role, in the order a user interface shows them. Role names are identifiers (a letter,
    then letters, digits or ``_``) because bundles refer to them in expressions (``@input#t1_pre``);
    ``case_id`` is reserved for the case name the runner passes along with the inputs. Each role has:

    - ``kind``: ``"volume"`` (an intensity image) or ``"labelmap"`` (integer labels).
    - ``description``: what the input is, in words a user understands (shown as its label in a UI).
    - ``required``: optional, default ``true``; an optional input may be left out of a run.
    - ``sequence`` (volumes only, optional): the canonical sequence key (docs/design.md, *Data conventions*) (``t1_pre``, ``t1n``, ...).
    - ``labels`` (labelmaps only, optional): label value (a positive integer written as a string) -> name.
      When given, the labelmap may hold only 0 (background) and these values. A required labelmap must not be
      empty (all zero) in any case: an all-zero mask is almost always the wrong file or an unfinished
      segmentation.
``outputs``
    Role name -> output role, with ``kind``, ``description`` and the optional ``sequence``/``labels`` as for
    inputs (no ``required``: every output is always written). The bundle writes output role ``r`` as
    ``<output_dir>/<case_id>/r.nii.gz``.
``reference``
    The required input whose grid (shape, spacing, origin, direction) every input must share and every output
    lands on; ``null`` only for a generator bundle (below).
``organ_mask``
    Role of a labelmap input that lesion edits are clipped to (edited lesions stay inside the organ), or
    ``null``.
``lesion``
    Role of the labelmap input that holds the lesion, or ``null``. Lesion edits need one.
``lesion_edits``
    The lesion edits the bundle supports, a subset of ``["translate", "scale", "mirror", "transplant"]``
    (default: none).
``demo``
    Optional: the simulated phantom case ``synthmr demo`` runs the bundle on. ``organ`` (a phantom of
    :mod:`synthmr.phantom`), ``seed`` (default 0) and ``phantom`` (constructor options, default none). Each input
    role is filled from the case's image or mask of the role's ``sequence`` (or, without one, of the role's
    name); each output is shown beside the case's real image of the same ``sequence``, when it has one.

Generator bundles (de novo synthesis from noise, e.g. ``breast_dce_patch_cgan``) take no image: they declare
``"inputs": {}`` and ``"reference": null``, and nothing else changes (their outputs are described as above and the
grid is the network's own). An empty ``inputs`` is allowed only with a null ``reference``, and a null ``reference``
only with an empty ``inputs``. :func:`~synthmr.bundle.runner.run_bundle` (``synthmr run``, the Slicer module) runs
bundles on a user's case, so it refuses generator bundles with a message that says to run them with
``python -m monai.bundle run``.

:func:`read_tool_description` reads and checks the block; every problem raises
:class:`~synthmr.errors.InputError` naming the metadata file and the field.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthmr.errors import InputError
from synthmr.io.datalist import read_json

BLOCK_KEY = "synthmr"
KINDS = ("volume", "labelmap")
LESION_EDITS = ("translate", "scale", "mirror", "transplant")
# The runner sends the case name inside the same ``input`` dict as the images (docs/design.md, *The bundle contract*).
RESERVED_INPUT_ROLES = ("case_id",)

_ROLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_BLOCK_FIELDS = ("spatial_dims", "inputs", "outputs", "reference", "organ_mask", "lesion", "lesion_edits", "demo")
_DEMO_FIELDS = ("organ", "seed", "phantom")
_REQUIRED_BLOCK_FIELDS = ("spatial_dims", "inputs", "outputs", "reference")
_INPUT_FIELDS = ("kind", "description", "required", "sequence", "labels")
_OUTPUT_FIELDS = ("kind", "description", "sequence", "labels")


@dataclass(frozen=True)
class InputRole:
    """One input of a bundle.

    Args:
        name: the role name, the key the bundle reads the input under.
        kind: ``"volume"`` or ``"labelmap"``.
        description: what the input is, for a user.
        required: whether a run needs it.
        sequence: canonical sequence key of a volume, or None.
        labels: label value -> name of a labelmap; when not None, the only values besides 0 it may hold.
    """

    name: str
    kind: str
    description: str
    required: bool = True
    sequence: str | None = None
    labels: dict[int, str] | None = None


@dataclass(frozen=True)
class OutputRole:
    """One output of a bundle, written as ``<role name>.nii.gz``.

    Args:
        name: the role name.
        kind: ``"volume"`` or ``"labelmap"``.
        description: what the output is, for a user.
        sequence: canonical sequence key of a volume, or None.
        labels: label value -> name of a labelmap, or None.
    """

    name: str
    kind: str
    description: str
    sequence: str | None = None
    labels: dict[int, str] | None = None


@dataclass(frozen=True)
class ToolDescription:
    """The ``"synthmr"`` block of a bundle's metadata (see the module docstring for each field).

    Args:
        bundle_dir: the bundle folder.
        spatial_dims: 2 (slice-wise) or 3 (volumetric).
        inputs: role name -> input role, in display order.
        outputs: role name -> output role, in display order.
        reference: the input role whose grid all inputs share and all outputs land on; None for a generator
            bundle (no inputs).
        organ_mask: labelmap input role lesion edits are clipped to, or None.
        lesion: labelmap input role holding the lesion, or None.
        lesion_edits: the supported lesion edits, from :data:`LESION_EDITS`.
        demo: ``{"organ", "seed", "phantom"}`` of the demo case, or None.
    """

    bundle_dir: Path
    spatial_dims: int
    inputs: dict[str, InputRole]
    outputs: dict[str, OutputRole]
    reference: str | None
    organ_mask: str | None = None
    lesion: str | None = None
    lesion_edits: tuple[str, ...] = field(default_factory=tuple)
    demo: dict | None = None

    @property
    def name(self) -> str:
        """The bundle's name: its folder name."""
        return self.bundle_dir.name

    @property
    def is_generator(self) -> bool:
        """Whether the bundle generates images from noise and takes no input (``"inputs": {}``)."""
        return self.reference is None

    @property
    def required_inputs(self) -> tuple[str, ...]:
        """Names of the input roles a run needs."""
        return tuple(name for name, role in self.inputs.items() if role.required)


def metadata_path(bundle_dir: str | os.PathLike) -> Path:
    """Where a bundle keeps its MONAI metadata (and the tool description)."""
    return Path(bundle_dir) / "configs" / "metadata.json"


def read_tool_description(bundle_dir: str | os.PathLike) -> ToolDescription:
    """Read and check the ``"synthmr"`` block of ``<bundle_dir>/configs/metadata.json``.

    Raises:
        InputError: the metadata file is missing or not JSON, has no ``"synthmr"`` block, or a field of the
            block is missing or invalid; the message names the file and the field.
    """
    bundle_dir = Path(bundle_dir)
    path = metadata_path(bundle_dir)
    if not path.is_file():
        raise InputError(f"{bundle_dir}: not a bundle folder (no configs/metadata.json)")
    return _Parser(path).description(bundle_dir, read_json(path, "bundle metadata"))


class _Parser:
    """Checks one metadata file's block; every error names the file and the dotted field."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, field_name: str, problem: str) -> InputError:
        return InputError(f"{self.path}: field {field_name}: {problem}")

    def description(self, bundle_dir: Path, metadata: Any) -> ToolDescription:
        if not isinstance(metadata, dict) or BLOCK_KEY not in metadata:
            raise InputError(
                f"{self.path}: no {BLOCK_KEY!r} block; it describes the bundle's inputs and outputs to SynthMR tools "
                "(see synthmr.bundle.description)"
            )
        block = self.mapping(BLOCK_KEY, metadata[BLOCK_KEY], _BLOCK_FIELDS, _REQUIRED_BLOCK_FIELDS)
        spatial_dims = block["spatial_dims"]
        if isinstance(spatial_dims, bool) or spatial_dims not in (2, 3):
            raise self.error(f"{BLOCK_KEY}.spatial_dims", f"must be 2 or 3, got {spatial_dims!r}")
        reference = block["reference"]
        generator = reference is None and block["inputs"] == {}
        inputs = {}
        if not generator:
            roles = self.roles("inputs", block["inputs"])
            inputs = {name: self.input_role(name, role) for name, role in roles.items()}
        outputs = {name: self.output_role(name, role) for name, role in self.roles("outputs", block["outputs"]).items()}

        # A generator bundle has no input, hence no reference grid; every other bundle needs one.
        if reference is None and not generator:
            raise self.error(f"{BLOCK_KEY}.reference", "null is only for generator bundles, whose inputs are {}")
        if not generator and reference not in inputs:
            raise self.error(f"{BLOCK_KEY}.reference", f"{reference!r} is not an input role ({', '.join(inputs)})")
        if not generator and not inputs[reference].required:
            raise self.error(f"{BLOCK_KEY}.reference", f"input {reference!r} is optional; it must be required")
        organ_mask = self.labelmap_role("organ_mask", block.get("organ_mask"), inputs)
        lesion = self.labelmap_role("lesion", block.get("lesion"), inputs)
        lesion_edits = self.lesion_edits(block.get("lesion_edits", []), lesion)
        demo = self.demo(block.get("demo"))
        return ToolDescription(
            bundle_dir, spatial_dims, inputs, outputs, reference, organ_mask, lesion, lesion_edits, demo
        )

    def demo(self, value: Any) -> dict | None:
        if value is None:
            return None
        field_name = f"{BLOCK_KEY}.demo"
        demo = self.mapping(field_name, value, _DEMO_FIELDS, ("organ",))
        seed = demo.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise self.error(f"{field_name}.seed", f"must be a non-negative integer, got {json.dumps(seed)}")
        if not isinstance(demo.get("phantom", {}), dict):
            raise self.error(f"{field_name}.phantom", "must be a JSON object of phantom options")
        return {"organ": demo["organ"], "seed": seed, "phantom": dict(demo.get("phantom", {}))}

    def mapping(
        self, field_name: str, value: Any, allowed: tuple[str, ...], required: tuple[str, ...]
    ) -> Mapping[str, Any]:
        """``value`` as a JSON object with only ``allowed`` keys and every ``required`` one."""
        if not isinstance(value, dict):
            raise self.error(field_name, f"must be a JSON object, got {json.dumps(value)}")
        unknown = [key for key in value if key not in allowed]
        if unknown:
            raise self.error(field_name, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
        missing = [key for key in required if key not in value]
        if missing:
            raise self.error(field_name, f"missing field(s) {', '.join(missing)}")
        return value

    def roles(self, group: str, value: Any) -> Mapping[str, Any]:
        field_name = f"{BLOCK_KEY}.{group}"
        if not isinstance(value, dict) or not value:
            raise self.error(field_name, f"must be a non-empty JSON object of roles, got {json.dumps(value)}")
        for name in value:
            if not _ROLE_NAME.fullmatch(name):
                raise self.error(
                    f"{field_name}.{name}", "role names start with a letter and hold only letters, digits and _"
                )
            if group == "inputs" and name in RESERVED_INPUT_ROLES:
                raise self.error(f"{field_name}.{name}", "this name is reserved for the case name the runner passes")
        return value

    def input_role(self, name: str, value: Any) -> InputRole:
        field_name = f"{BLOCK_KEY}.inputs.{name}"
        role = self.mapping(field_name, value, _INPUT_FIELDS, ("kind", "description"))
        required = role.get("required", True)
        if not isinstance(required, bool):
            raise self.error(f"{field_name}.required", f"must be true or false, got {json.dumps(required)}")
        kind, description, sequence, labels = self.common(field_name, role)
        return InputRole(name, kind, description, required, sequence, labels)

    def output_role(self, name: str, value: Any) -> OutputRole:
        field_name = f"{BLOCK_KEY}.outputs.{name}"
        role = self.mapping(field_name, value, _OUTPUT_FIELDS, ("kind", "description"))
        return OutputRole(name, *self.common(field_name, role))

    def common(self, field_name: str, role: Mapping[str, Any]) -> tuple[str, str, str | None, dict[int, str] | None]:
        """``kind``, ``description``, ``sequence`` and ``labels``, shared by input and output roles."""
        kind = role["kind"]
        if kind not in KINDS:
            raise self.error(f"{field_name}.kind", f"must be one of {', '.join(KINDS)}, got {json.dumps(kind)}")
        description = role["description"]
        if not isinstance(description, str) or not description.strip():
            raise self.error(f"{field_name}.description", "must be a non-empty string")
        sequence = role.get("sequence")
        if sequence is not None:
            if kind != "volume":
                raise self.error(f"{field_name}.sequence", "only volumes have a sequence")
            if not isinstance(sequence, str) or not sequence:
                raise self.error(f"{field_name}.sequence", f"must be a sequence key, got {json.dumps(sequence)}")
        labels = role.get("labels")
        if labels is not None:
            if kind != "labelmap":
                raise self.error(f"{field_name}.labels", "only labelmaps have labels")
            labels = self.labels(f"{field_name}.labels", labels)
        return kind, description, sequence, labels

    def labels(self, field_name: str, value: Any) -> dict[int, str]:
        if not isinstance(value, dict) or not value:
            raise self.error(field_name, f"must be a non-empty JSON object of value -> name, got {json.dumps(value)}")
        labels = {}
        for key, name in value.items():
            # Only the canonical spelling: "01" or " 1" would be a second key for the same value.
            if not (key.isdigit() and str(int(key)) == key and int(key) > 0):
                raise self.error(field_name, f"label value {key!r} is not a positive integer (0 is the background)")
            if not isinstance(name, str) or not name:
                raise self.error(f"{field_name}.{key}", f"must be the label's name, got {json.dumps(name)}")
            labels[int(key)] = name
        return labels

    def labelmap_role(self, field_name: str, value: Any, inputs: Mapping[str, InputRole]) -> str | None:
        if value is None:
            return None
        if value not in inputs or inputs[value].kind != "labelmap":
            labelmaps = [name for name, role in inputs.items() if role.kind == "labelmap"]
            raise self.error(
                f"{BLOCK_KEY}.{field_name}",
                f"{json.dumps(value)} is not a labelmap input role (labelmap inputs: {', '.join(labelmaps) or 'none'})",
            )
        return value

    def lesion_edits(self, value: Any, lesion: str | None) -> tuple[str, ...]:
        field_name = f"{BLOCK_KEY}.lesion_edits"
        if not isinstance(value, list) or any(edit not in LESION_EDITS for edit in value):
            allowed = ", ".join(LESION_EDITS)
            raise self.error(field_name, f"must be a list drawn from {allowed}, not {json.dumps(value)}")
        if len(set(value)) != len(value):
            raise self.error(field_name, f"lists an edit twice: {json.dumps(value)}")
        if value and lesion is None:
            raise self.error(field_name, "lesion edits need a lesion input; set the lesion field")
        return tuple(value)
