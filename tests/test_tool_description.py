"""The tool-description schema is the one definition of the block: the reader's own validator agrees with the
``jsonschema`` package on it, and every bundle in the repository passes it."""

import json
from pathlib import Path

import jsonschema
import pytest
from test_runner import TOOL_BLOCK, _with

from synthmr.bundle.description import SCHEMA, SchemaValidator, read_tool_description
from synthmr.errors import InputError

REPO = Path(__file__).resolve().parents[1]

BLOCKS = [
    TOOL_BLOCK,
    _with(lambda b: b["inputs"]["liver"].update(kind="mask")),
    _with(lambda b: b.update(lesion_edits=["rotate"])),
    _with(lambda b: b.update(lesion_edits=["mirror", "mirror"])),
    _with(lambda b: b.update(lesion=None)),
    _with(lambda b: b.pop("lesion")),
    _with(lambda b: b.update(lesion_edits=[], lesion=None)),
    _with(lambda b: b["inputs"]["liver"].update(labels={"0": "background"})),
    _with(lambda b: b["inputs"]["liver"].update(labels={"01": "liver"})),
    _with(lambda b: b["inputs"]["liver"].update(labels={})),
    _with(lambda b: b["inputs"]["t1_pre"].update(labels={"1": "x"})),
    _with(lambda b: b["inputs"]["liver"].update(sequence="t1")),
    _with(lambda b: b["inputs"]["liver"].update(requried=True)),
    _with(lambda b: b["inputs"]["liver"].update(required="yes")),
    _with(lambda b: b["inputs"]["t1_pre"].update(description=" ")),
    _with(lambda b: b.pop("outputs")),
    _with(lambda b: b.update(outputs={})),
    _with(lambda b: b.update(spatial_dims=4)),
    _with(lambda b: b.update(spatial_dims=True)),
    _with(lambda b: b.update(spatial_dims=3.0)),
    _with(lambda b: b["inputs"].update(case_id=b["inputs"]["t1_pre"])),
    _with(lambda b: b["inputs"].update({"1x": b["inputs"]["t1_pre"]})),
    _with(lambda b: b["outputs"].update({"t1-post": b["outputs"]["t1_post1"]})),
    _with(lambda b: b.update(reference=None)),
    _with(lambda b: b.update(reference=None, inputs={}, organ_mask=None, lesion=None, lesion_edits=[])),
    _with(lambda b: b.update(inputs={})),
    _with(lambda b: b.update(demo={"organ": "liver", "seed": 3, "phantom": {"dims": 2}})),
    _with(lambda b: b.update(demo={"organ": "liver", "seed": -1})),
    _with(lambda b: b.update(demo={"seed": 1})),
    _with(lambda b: b.update(demo={"organ": "liver", "colour": "red"})),
    _with(lambda b: b.update(demo={"organ": "brain", "seed": 1, "source": {"seed": 2, "prefix": "tumor_"}})),
    _with(lambda b: b.update(demo={"organ": "brain", "source": {"seed": 2}})),
    _with(lambda b: b.update(demo={"organ": "brain", "source": {"seed": 2, "prefix": "_x"}})),
    _with(lambda b: b.update(requires=">=0.2,<0.3")),
    _with(lambda b: b.update(requires="0.2")),
    _with(lambda b: b.update(colour="red")),
    _with(lambda b: b.update(organ_labels=[1])),
    _with(lambda b: b.update(organ_labels=[])),
    _with(lambda b: b.update(organ_labels=[0])),
    _with(lambda b: b.update(organ_labels=[1, 1])),
    _with(lambda b: b.update(organ_labels="1")),
    _with(lambda b: b.update(training={"train_datalist": {"t1_pre": "t1_pre", "mask": {"kind": "labelmap",
                                                                                      "description": "a mask"}}})),
    _with(lambda b: b.update(training={"train_datalist": {}})),
    _with(lambda b: b.update(training={"train_datalist": {"mask": {"kind": "labelmap"}}})),
    _with(lambda b: b.update(training={"train_datalist": {"t1_pre": 3}})),
    [],
]


def jsonschema_errors(block):
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return sorted(tuple(str(part) for part in error.absolute_path) for error in validator.iter_errors(block))


def test_the_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("block", BLOCKS, ids=range(len(BLOCKS)))
def test_own_validator_agrees_with_jsonschema(block):
    expected = jsonschema_errors(block)
    found = SchemaValidator(SCHEMA).first_error(block, [])
    assert (found is None) == (not expected), (found, expected)
    if found is not None:
        path, message = found
        # jsonschema reports an error of a key name at the object holding it; ours names the key itself.
        assert tuple(path) in expected or tuple(path[:-1]) in expected, (found, expected)
        assert message


def test_the_corpus_holds_valid_and_invalid_blocks():
    outcomes = {not jsonschema_errors(block) for block in BLOCKS}
    assert outcomes == {True, False}


# A bundle is a folder of bundles/ holding configs/metadata.json, as for synthmr's discovery and the bundle contract
# (a method's training configs may land before its bundle is complete).
@pytest.mark.parametrize("bundle", sorted(path.parents[1].name for path in (REPO / "bundles").glob("*/configs/metadata.json")))
def test_every_bundle_passes_the_schema(bundle):
    metadata = json.loads((REPO / "bundles" / bundle / "configs" / "metadata.json").read_text())
    assert jsonschema_errors(metadata["synthmr"]) == []


def test_a_keyword_the_validator_lacks_is_refused():
    with pytest.raises(ValueError, match="keyword.*maxLength.*not supported"):
        SchemaValidator({"type": "string", "maxLength": 3}).first_error("abcd", [])


@pytest.mark.parametrize(
    "inputs, reference",
    [({}, "t1_pre"), ({"t1_pre": {"kind": "volume", "description": "pre"}}, None)],
    ids=["no inputs with a reference", "inputs without a reference"],
)
def test_no_inputs_only_with_a_null_reference(tmp_path, inputs, reference):
    block = {"spatial_dims": 2, "inputs": inputs, "reference": reference,
             "outputs": {"t2": {"kind": "volume", "description": "synthetic T2"}}}
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "metadata.json").write_text(json.dumps({"synthmr": block}))
    with pytest.raises(InputError, match=r"field synthmr.inputs: a generator bundle \(reference null\) takes no input"):
        read_tool_description(tmp_path)


def _source_block(**changes):
    block = _with(lambda b: b["inputs"].update(source_tumor={
        "kind": "labelmap", "labels": {"1": "tumor"}, "description": "tumour before edits", "required": False}))
    block.update(source_lesion="source_tumor", **changes)
    return block


def _read(tmp_path, block):
    (tmp_path / "configs").mkdir(exist_ok=True)
    (tmp_path / "configs" / "metadata.json").write_text(json.dumps({"synthmr": block}))
    return read_tool_description(tmp_path)


def test_a_demo_of_two_cases_reads_its_second_case(tmp_path):
    block = _with(lambda b: b.update(demo={"organ": "brain", "seed": 1, "phantom": {"dims": 3},
                                           "source": {"seed": 2, "prefix": "tumor_"}}))
    demo = _read(tmp_path, block).demo
    assert demo["source"] == {"seed": 2, "prefix": "tumor_", "phantom": {"dims": 3}}  # the demo's options by default


def test_source_lesion_names_an_optional_labelmap_role(tmp_path):
    assert _read(tmp_path, _source_block()).source_lesion == "source_tumor"
    assert _read(tmp_path, TOOL_BLOCK).source_lesion is None


@pytest.mark.parametrize("change, message", [
    (lambda b: b.update(source_lesion="liver"), r"'liver' is not an optional labelmap input role other than the "
                                                r"lesion \(candidates: source_tumor\)"),
    (lambda b: b.update(source_lesion="tumor"), "'tumor' is not an optional labelmap input role other than the lesion"),
    (lambda b: b.update(source_lesion="t1_pre"), "'t1_pre' is not an optional labelmap input role"),
    (lambda b: b.update(lesion=None, lesion_edits=[]), "needs the lesion field"),
])
def test_a_wrong_source_lesion_is_refused_naming_the_field(tmp_path, change, message):
    block = _source_block()
    change(block)
    with pytest.raises(InputError, match=r"field synthmr\.source_lesion: " + message):
        _read(tmp_path, block)


def _organ_block(**changes):
    """A SAMR-like lesion map holding the organ's tissue (1) and lesion labels (2, 4)."""
    block = _with(lambda b: b["inputs"]["tumor"].update(labels={"1": "normal brain", "2": "edema", "4": "tumour"}))
    block.update({"organ_labels": [1], **changes})
    return block


def test_organ_labels_name_labels_of_the_lesion_input(tmp_path):
    assert _read(tmp_path, _organ_block()).organ_labels == (1,)
    assert _read(tmp_path, TOOL_BLOCK).organ_labels == ()
    with pytest.raises(InputError, match=r"field synthmr\.organ_labels: \[3\] are not labels of the lesion input 'tumor'"):
        _read(tmp_path, _organ_block(organ_labels=[1, 3]))
    with pytest.raises(InputError, match=r"field synthmr\.organ_labels: needs the lesion field"):
        _read(tmp_path, _organ_block(lesion=None, lesion_edits=[]))


def test_training_datalists_name_roles_or_define_their_own(tmp_path):
    block = _with(lambda b: b.update(training={"train_datalist": {
        "t1_pre": "t1_pre", "t1_post1": "t1_post1", "mask": {"kind": "labelmap", "description": "a mask",
                                                            "required": False}}}))
    roles = _read(tmp_path, block).training["train_datalist"]
    assert (roles["t1_post1"].kind, roles["t1_post1"].required) == ("volume", True)  # an output: a target
    assert (roles["mask"].kind, roles["mask"].required) == ("labelmap", False)
    block["training"]["train_datalist"]["t2"] = "t2_fs"
    with pytest.raises(InputError, match=r"field synthmr.training.train_datalist.t2: 't2_fs' is not an input or output"):
        _read(tmp_path, block)
