"""The tool description of a bundle: what its inputs and outputs are, so that tools need no bundle-specific code.

The block is defined once, by the JSON Schema ``tool_description.schema.json`` beside this file; docs/design.md
(*The tool description*) explains each field. :func:`read_tool_description` validates a bundle's block against
that schema, then checks what a schema cannot say (the ``reference``, ``organ_mask`` and ``lesion`` fields name
input roles of the right kind), and returns a :class:`ToolDescription`.

This module imports only the standard library, so that the 3D Slicer module can load this very file (from the
installed package, the checkout or the wheel the extension carries) and show a bundle's interface before synthmr
and its dependencies are installed: one reader, one schema, one set of names for the command line and Slicer.
It therefore carries its own validator of the JSON Schema keywords the schema uses (:class:`SchemaValidator`);
a test checks it against the ``jsonschema`` package on the same blocks.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    from synthmr.errors import InputError
except ImportError:  # loaded alone from its file by the Slicer module, before synthmr is installed
    InputError = ValueError  # type: ignore[misc,assignment]

BLOCK_KEY = "synthmr"
SCHEMA_FILE = "tool_description.schema.json"


def load_schema() -> dict:
    """The tool-description JSON Schema, read through this module's loader (a file, or a member of a wheel)."""
    folder = os.path.dirname(__file__)
    return json.loads(__loader__.get_data(os.path.join(folder, SCHEMA_FILE)).decode("utf-8"))


SCHEMA = load_schema()
LESION_EDITS = tuple(SCHEMA["properties"]["lesion_edits"]["items"]["enum"])


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
    """One output of a bundle, written as ``<role name>.nii.gz``; arguments as for :class:`InputRole`."""

    name: str
    kind: str
    description: str
    sequence: str | None = None
    labels: dict[int, str] | None = None


@dataclass(frozen=True)
class ToolDescription:
    """The ``"synthmr"`` block of a bundle's metadata (docs/design.md, *The tool description*).

    Args:
        bundle_dir: the bundle folder.
        spatial_dims: 2 (slice-wise) or 3 (volumetric).
        inputs: role name -> input role, in display order.
        outputs: role name -> output role, in display order.
        reference: the input role whose grid all inputs share and all outputs land on; None for a generator
            bundle (no inputs).
        organ_mask: labelmap input role lesion edits are clipped to, or None.
        lesion: labelmap input role holding the lesion, or None.
        source_lesion: optional labelmap input role for the unedited lesion (what the input images show) when
            the lesion input is an edited one, or None.
        lesion_edits: the supported lesion edits, from :data:`LESION_EDITS`.
        organ_labels: labels of the lesion input that are the organ's normal tissue (a map holding organ and
            lesion together); empty when every non-zero label is lesion.
        demo: ``{"organ", "seed", "phantom"}`` of the demo case (and ``"source"``: ``{"seed", "phantom",
            "prefix"}`` of a second case filling the roles named with that prefix), or None.
        requires: the synthmr versions the bundle works with (a PEP 440 specifier), or None.
        training: train.yaml setting -> datalist key -> role of the datalists training reads (a referenced
            output role becomes a required one); by default one ``train_datalist`` of the inputs and outputs.
    """

    bundle_dir: Path
    spatial_dims: int
    inputs: dict[str, InputRole]
    outputs: dict[str, OutputRole]
    reference: str | None
    organ_mask: str | None = None
    lesion: str | None = None
    source_lesion: str | None = None
    lesion_edits: tuple[str, ...] = field(default_factory=tuple)
    organ_labels: tuple[int, ...] = field(default_factory=tuple)
    demo: dict | None = None
    requires: str | None = None
    training: dict[str, dict[str, InputRole]] = field(default_factory=dict)

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
        InputError: the metadata file is missing, unreadable or not JSON, has no ``"synthmr"`` block, or the block
            breaks the schema or names a role that is not there; the message names the file and the field.
    """
    bundle_dir = Path(bundle_dir)
    path = metadata_path(bundle_dir)
    if not path.is_file():
        raise InputError(f"{bundle_dir}: not a bundle folder (no configs/metadata.json)")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot be read ({error})") from None
    if not isinstance(metadata, dict) or BLOCK_KEY not in metadata:
        raise InputError(
            f"{path}: no {BLOCK_KEY!r} block; it describes the bundle's inputs and outputs to SynthMR tools "
            "(docs/design.md, *The tool description*)"
        )
    block = metadata[BLOCK_KEY]
    problem = SchemaValidator(SCHEMA).first_error(block, [BLOCK_KEY])
    if problem is None:
        problem = _role_reference_error(block)
    if problem is not None:
        where, message = problem
        raise InputError(f"{path}: field {'.'.join(where)}: {message}")
    return _description(bundle_dir, block)


def _role_reference_error(block: Mapping[str, Any]) -> tuple[list[str], str] | None:
    """The first field naming an input role that is not there or has the wrong kind (what the schema cannot say)."""
    inputs = block["inputs"]
    reference = block["reference"]
    if reference is not None:
        if reference not in inputs:
            return [BLOCK_KEY, "reference"], f"{reference!r} is not an input role ({', '.join(inputs)})"
        if not inputs[reference].get("required", True):
            return [BLOCK_KEY, "reference"], f"input {reference!r} is optional; it must be required"
    labelmaps = [name for name, role in inputs.items() if role["kind"] == "labelmap"]
    for field_name in ("organ_mask", "lesion"):
        value = block.get(field_name)
        if value is not None and value not in labelmaps:
            listed = ", ".join(labelmaps) or "none"
            return [BLOCK_KEY, field_name], f"{value!r} is not a labelmap input role (labelmap inputs: {listed})"
    organ_labels = block.get("organ_labels")
    if organ_labels is not None:
        lesion = block.get("lesion")
        if lesion is None:
            return [BLOCK_KEY, "organ_labels"], "needs the lesion field: they are labels of the lesion input"
        declared = inputs[lesion].get("labels")
        unknown = [value for value in organ_labels if declared is not None and str(value) not in declared]
        if unknown:
            return [BLOCK_KEY, "organ_labels"], f"{unknown} are not labels of the lesion input {lesion!r} ({', '.join(declared)})"
    roles = {**block["outputs"], **inputs}
    for setting, keys in block.get("training", {}).items():
        for key, role in keys.items():
            if isinstance(role, str) and role not in roles:
                return [BLOCK_KEY, "training", setting, key], f"{role!r} is not an input or output role ({', '.join(roles)})"
    source = block.get("source_lesion")
    if source is not None:
        optional = [name for name in labelmaps if not inputs[name].get("required", True)]
        if block.get("lesion") is None:
            return [BLOCK_KEY, "source_lesion"], "needs the lesion field: it holds the lesion before lesion's edits"
        if source not in optional or source == block["lesion"]:
            listed = ", ".join(name for name in optional if name != block["lesion"]) or "none"
            return [BLOCK_KEY, "source_lesion"], (
                f"{source!r} is not an optional labelmap input role other than the lesion (candidates: {listed})"
            )
    return None


def _description(bundle_dir: Path, block: Mapping[str, Any]) -> ToolDescription:
    """The dataclasses of a block that passed :func:`read_tool_description`'s checks."""

    def labels(role: Mapping[str, Any]) -> dict[int, str] | None:
        return {int(value): name for value, name in role["labels"].items()} if "labels" in role else None

    inputs = {
        name: InputRole(
            name, role["kind"], role["description"], role.get("required", True), role.get("sequence"), labels(role)
        )
        for name, role in block["inputs"].items()
    }
    outputs = {
        name: OutputRole(name, role["kind"], role["description"], role.get("sequence"), labels(role))
        for name, role in block["outputs"].items()
    }
    def training_role(key: str, role: str | Mapping[str, Any]) -> InputRole:
        if isinstance(role, str):
            named = inputs.get(role) or outputs[role]
            return InputRole(key, named.kind, named.description, getattr(named, "required", True), named.sequence,
                             named.labels)
        return InputRole(key, role["kind"], role["description"], role.get("required", True), role.get("sequence"),
                         labels(role))

    training = {setting: {key: training_role(key, role) for key, role in keys.items()}
                for setting, keys in block.get("training", {}).items()}
    demo = block.get("demo")
    if demo is not None:
        source = demo.get("source")
        demo = {"organ": demo["organ"], "seed": demo.get("seed", 0), "phantom": dict(demo.get("phantom", {}))}
        if source is not None:
            demo["source"] = {"seed": source["seed"], "prefix": source["prefix"],
                              "phantom": dict(source.get("phantom", demo["phantom"]))}
    return ToolDescription(
        bundle_dir=bundle_dir,
        spatial_dims=int(block["spatial_dims"]),
        inputs=inputs,
        outputs=outputs,
        reference=block["reference"],
        organ_mask=block.get("organ_mask"),
        lesion=block.get("lesion"),
        source_lesion=block.get("source_lesion"),
        lesion_edits=tuple(block.get("lesion_edits", [])),
        organ_labels=tuple(int(value) for value in block.get("organ_labels", [])),
        demo=demo,
        requires=block.get("requires"),
        training=training,
    )


_TYPE_WORDS = {
    "object": "a JSON object",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


class SchemaValidator:
    """Validates JSON values against a JSON Schema (draft 2020-12), limited to the keywords the tool-description
    schema uses (:data:`KEYWORDS`); an unknown keyword is an error, so the schema cannot outgrow this validator.

    Errors are ``(path, message)``: the dotted field path and, in words, what is wrong. A schema's ``description``
    words the message: the described subschema nearest to the failing keyword says what was expected, and the
    description of an ``if``/``then`` rule is the message for a broken rule.
    """

    KEYWORDS = frozenset(
        {
            "$schema", "title", "description", "$defs", "$ref", "type", "enum", "const", "properties", "required",
            "additionalProperties", "propertyNames", "pattern", "minLength", "minimum", "minProperties",
            "maxProperties", "items", "minItems", "uniqueItems", "allOf", "not", "if", "then", "else",
        }
    )  # fmt: skip

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.root = schema

    def first_error(self, value: Any, path: list[str]) -> tuple[list[str], str] | None:
        """The first error of ``value`` (at ``path``) in document order, or None when it is valid."""
        return next(self.errors(value, self.root, path, None), None)

    def errors(self, value: Any, schema: Any, path: list[str], described: Any) -> Iterator[tuple[list[str], str]]:
        """Every error of ``value`` against ``schema``; ``described`` is the nearest enclosing described schema."""
        if schema is True:
            return
        if schema is False:
            yield path, self.worded(described, "is not allowed here")
            return
        unknown = set(schema) - self.KEYWORDS
        if unknown:
            raise ValueError(f"tool-description schema: keyword(s) {', '.join(sorted(unknown))} are not supported")
        if "description" in schema:
            described = schema
        if "$ref" in schema:
            yield from self.errors(value, self.resolve(schema["$ref"]), path, described)
        if "type" in schema and not self.has_type(value, schema["type"]):
            types = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
            words = " or ".join(_TYPE_WORDS[name] for name in types)
            yield path, self.worded(described, f"must be {words}, got {_shown(value)}", expect=False)
            return
        if "enum" in schema and not any(self.equal(value, option) for option in schema["enum"]):
            options = ", ".join(option if isinstance(option, str) else _shown(option) for option in schema["enum"])
            yield path, self.worded(described, f"must be one of {options}, got {_shown(value)}", expect=False)
        if "const" in schema and not self.equal(value, schema["const"]):
            yield path, self.worded(described, f"must be {_shown(schema['const'])}, got {_shown(value)}")
        if "minimum" in schema and self.has_type(value, "number") and value < schema["minimum"]:
            yield path, self.worded(described, f"must be at least {schema['minimum']}, got {_shown(value)}")
        yield from self.string_errors(value, schema, path, described)
        yield from self.object_errors(value, schema, path, described)
        yield from self.array_errors(value, schema, path, described)
        for part in schema.get("allOf", []):
            yield from self.errors(value, part, path, described)
        if "not" in schema and self.is_valid(value, schema["not"]):
            yield path, self.worded(described, f"{_shown(value)} is not allowed")
        if "if" in schema:
            branch = "then" if self.is_valid(value, schema["if"]) else "else"
            if branch in schema:
                yield from self.errors(value, schema[branch], path, schema if "description" in schema else described)

    def string_errors(self, value: Any, schema: Mapping, path: list[str], described: Any) -> Iterator:
        if not isinstance(value, str):
            return
        too_short = len(value) < schema.get("minLength", 0)
        if too_short or ("pattern" in schema and not re.search(schema["pattern"], value)):
            yield path, self.worded(described, f"{_shown(value)} is not allowed")

    def object_errors(self, value: Any, schema: Mapping, path: list[str], described: Any) -> Iterator:
        if not isinstance(value, dict):
            return
        missing = [name for name in schema.get("required", []) if name not in value]
        if missing:
            yield path, self.worded(described, f"missing field(s) {', '.join(missing)}", expect=False)
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            unknown = [name for name in value if name not in properties]
            if unknown:
                allowed = ", ".join(properties)
                yield path, f"unknown field(s) {', '.join(unknown)}; allowed: {allowed}"
        inner = described if self.is_rule(described) else None  # a rule holds for the fields; a description does not
        if len(value) < schema.get("minProperties", 0):
            yield path, self.worded(described, f"must have at least {schema['minProperties']} field(s)")
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            yield path, self.worded(described, f"must have at most {schema['maxProperties']} field(s)")
        for name, item in value.items():
            if "propertyNames" in schema:
                for _, message in self.errors(name, schema["propertyNames"], path, None):
                    yield [*path, name], message
            if name in properties:
                yield from self.errors(item, properties[name], [*path, name], inner)
            elif isinstance(schema.get("additionalProperties"), dict):
                yield from self.errors(item, schema["additionalProperties"], [*path, name], inner)

    def array_errors(self, value: Any, schema: Mapping, path: list[str], described: Any) -> Iterator:
        if not isinstance(value, list):
            return
        if len(value) < schema.get("minItems", 0):
            yield path, self.worded(described, f"must hold at least {schema['minItems']} item(s)")
        if schema.get("uniqueItems") and any(
            self.equal(a, b) for index, a in enumerate(value) for b in value[index + 1 :]
        ):
            yield path, self.worded(described, f"lists an item twice: {_shown(value)}")
        for index, item in enumerate(value):
            if "items" in schema:
                yield from self.errors(item, schema["items"], [*path, str(index)], None)

    def is_valid(self, value: Any, schema: Any) -> bool:
        return next(self.errors(value, schema, [], None), None) is None

    def resolve(self, reference: str) -> Any:
        if not reference.startswith("#/"):
            raise ValueError(f"tool-description schema: only local references are supported, not {reference!r}")
        schema: Any = self.root
        for part in reference[2:].split("/"):
            schema = schema[part]
        return schema

    @staticmethod
    def is_rule(described: Any) -> bool:
        return described is not None and "if" in described

    @staticmethod
    def worded(described: Any, fallback: str, expect: bool = True) -> str:
        """The message for a failed keyword: a broken rule's description; else ``fallback``, followed (``expect``)
        by what was expected, in the words of the nearest described schema."""
        if SchemaValidator.is_rule(described):
            return described["description"]
        if expect and described is not None:
            return f"{fallback}: expected {described['description']}"
        return fallback

    @staticmethod
    def has_type(value: Any, name: str | list[str]) -> bool:
        if isinstance(name, list):
            return any(SchemaValidator.has_type(value, one) for one in name)
        if name == "integer":  # JSON has no separate integers: 2.0 is one, true is not
            whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
            return whole and not isinstance(value, bool)
        if name == "number":
            return not isinstance(value, bool) and isinstance(value, (int, float))
        kinds = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
        return isinstance(value, kinds[name])

    @staticmethod
    def equal(a: Any, b: Any) -> bool:
        """JSON equality: true is not 1, and 2 equals 2.0."""
        if isinstance(a, bool) or isinstance(b, bool):
            return type(a) is type(b) and a == b
        return a == b


def _shown(value: Any) -> str:
    return json.dumps(value)
