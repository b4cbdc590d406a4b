"""`synthmr run` and synthmr.bundle: tool descriptions, bundle discovery, input checks, all-or-nothing outputs and
the progress protocol, on a tiny fake bundle that follows the bundle contract with plain config expressions."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

# Imported here rather than first inside a test: MONAI's logger keeps the stdout it first sees, which capsys closes.
import monai.bundle  # noqa: F401
import numpy as np
import pytest

from synthmr.bundle import find_bundle, list_bundles, parse_progress_line, read_tool_description, run_bundle
from synthmr.cli import main
from synthmr.errors import InputError
from synthmr.io import Volume, read_image, write_image

ROOT = Path(__file__).resolve().parents[1]

SHAPE = (8, 8, 3)
SPACING = (0.7, 0.9, 3.0)
ORIGIN = (10.0, -20.0, 5.0)
_ANGLE = np.deg2rad(30)
DIRECTION = np.array([[np.cos(_ANGLE), -np.sin(_ANGLE), 0], [np.sin(_ANGLE), np.cos(_ANGLE), 0], [0, 0, -1]])

TOOL_BLOCK = {
    "spatial_dims": 2,
    "inputs": {
        "t1_pre": {"kind": "volume", "sequence": "t1_pre", "description": "pre-contrast T1w fat-saturated"},
        "liver": {"kind": "labelmap", "labels": {"1": "liver"}, "description": "liver mask", "required": True},
        "tumor": {"kind": "labelmap", "labels": {"1": "tumor"}, "description": "tumor mask", "required": False},
    },
    "outputs": {"t1_post1": {"kind": "volume", "sequence": "t1_post1", "description": "synthetic first phase"}},
    "reference": "t1_pre",
    "organ_mask": "liver",
    "lesion": "tumor",
    "lesion_edits": ["translate", "mirror"],
}

# The contract of docs/design.md (*The bundle contract*) and synthmr.bundle.runner: bundle_root, device, input (default: a sample in the
# bundle), output_dir, progress; outputs go to <output_dir>/<case_id>/<role>.nii.gz on the input's grid.
CONFIG_HEAD = """\
imports:
  - $from synthmr.io import read_image
  - $from synthmr.io import write_image
bundle_root: .
device: "$torch.device('cpu')"
input:
  t1_pre: "$@bundle_root + '/sample/t1_pre.nii.gz'"
  liver: "$@bundle_root + '/sample/liver.nii.gz'"
  case_id: sample
output_dir: "$@bundle_root + '/output'"
progress: null
image: "$read_image(@input#t1_pre)"
output_path: "$@output_dir + '/' + @input#case_id + '/t1_post1.nii.gz'"
initialize: []
finalize: []
run:
"""
DOUBLE_T1 = [
    "$@progress(0, 2) if @progress is not None else None",
    "$write_image(@image.with_array(2 * @image.array), @output_path)",
    "$@progress(1, 2) if @progress is not None else None",
    "$@progress(2, 2) if @progress is not None else None",
]


def make_bundle(folder, name="fake_bundle", run=DOUBLE_T1, block=TOOL_BLOCK):
    """A bundle folder with MONAI's minimal metadata, the tool block and an inference.yaml running ``run``."""
    bundle = folder / name
    (bundle / "configs").mkdir(parents=True)
    metadata = {
        "version": "0.1.0",
        "monai_version": "1.4.0",
        "pytorch_version": "2.4.0",
        "numpy_version": "1.26.4",
        "required_packages_version": {},
        "task": "test bundle",
        "description": "doubles t1_pre",
        "authors": "tests",
        "copyright": "tests",
        "network_data_format": {"inputs": {"image": {}}, "outputs": {"pred": {}}},
    }
    if block is not None:
        metadata["synthmr"] = block
    (bundle / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=2))
    config = CONFIG_HEAD + "".join(f"  - {json.dumps(item)}\n" for item in run)
    (bundle / "configs" / "inference.yaml").write_text(config)
    return bundle


def on_grid(array, spacing=SPACING, origin=ORIGIN):
    return Volume(array, spacing, origin, DIRECTION)


@pytest.fixture(autouse=True)
def trust_test_bundles(monkeypatch):
    """The bundles these tests make live outside the shipped folder: trust them all, as a batch job would
    (trust itself is tested below with the variable removed)."""
    monkeypatch.setenv("SYNTHMR_TRUST_BUNDLES", "1")


@pytest.fixture
def bundle(tmp_path):
    return make_bundle(tmp_path / "bundles")


@pytest.fixture
def case(tmp_path):
    """Input files of one case: role -> path (t1_pre and a liver mask on its grid)."""
    rng = np.random.default_rng(0)
    liver = np.zeros(SHAPE, np.uint8)
    liver[2:6, 3:7, :] = 1
    paths = {"t1_pre": tmp_path / "case" / "t1_pre.nii.gz", "liver": tmp_path / "case" / "liver.nrrd"}
    write_image(on_grid(rng.uniform(0, 100, SHAPE).astype(np.float32)), paths["t1_pre"])
    write_image(on_grid(liver), paths["liver"])
    return paths


def write_case_file(tmp_path, name, volume):
    return write_image(volume, tmp_path / "case" / name)


def assert_nothing_written(tmp_path, out):
    """``out`` does not exist and no staging folder is left beside it."""
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundles", "case"]


def progress_events(stdout):
    return [event for event in map(parse_progress_line, stdout.splitlines()) if event is not None]


def assert_progress_complete(events):
    fractions = [event["fraction"] for event in events if event["type"] == "progress"]
    stages = [event["stage"] for event in events if event["type"] == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert stages[0] == "validate" and stages[-1] == "done"
    assert [stage for i, stage in enumerate(stages) if i == 0 or stages[i - 1] != stage] == [
        "validate", "load", "infer", "write", "done"
    ]
    infer = [event["fraction"] for event in events if event.get("stage") == "infer"]
    assert pytest.approx(0.55) in infer  # the bundle's progress(1, 2), halfway between 0.2 and 0.9


def test_run_writes_outputs_on_the_input_grid_and_reports_progress(bundle, case, tmp_path, capsys):
    out = tmp_path / "out"
    outputs = run_bundle(bundle, case, out)
    assert outputs == {"t1_post1": out.resolve() / "t1_post1.nii.gz"}
    result, t1_pre = read_image(outputs["t1_post1"]), read_image(case["t1_pre"])
    assert result.same_grid(t1_pre)
    np.testing.assert_allclose(result.array, 2 * t1_pre.array, rtol=1e-6)
    assert sorted(p.name for p in out.iterdir()) == ["t1_post1.json", "t1_post1.nii.gz"]  # the image and its sidecar
    sidecar = json.loads((out / "t1_post1.json").read_text())
    assert sidecar["synthetic"] is True and sidecar["bundle"] == bundle.name and sidecar["output"] == "t1_post1"
    assert sidecar["inputs"]["t1_pre"]["path"] == str(Path(case["t1_pre"]).resolve())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundles", "case", "out"]  # no staging folder left
    assert_progress_complete(progress_events(capsys.readouterr().out))


def test_cli_run_with_repeated_inputs(bundle, case, tmp_path):
    out = tmp_path / "out"
    odd = case["t1_pre"].rename(case["t1_pre"].with_name("t1 pre, 'odd'=\"name\".nii.gz"))  # survives fire's parsing
    result = subprocess.run(
        [sys.executable, "-m", "synthmr", "run", bundle, "--input", f"t1_pre={odd}", "-i", f"liver={case['liver']}",
         "--out", out],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    events = progress_events(result.stdout)
    assert_progress_complete(events[:-1])
    assert events[-1] == {"type": "result", "outputs": {"t1_post1": str(out.resolve() / "t1_post1.nii.gz")}}
    np.testing.assert_allclose(read_image(out / "t1_post1.nii.gz").array, 2 * read_image(odd).array, rtol=1e-6)


def test_cli_bad_input_fails_with_one_line(bundle, case, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "synthmr", "run", bundle, "--input", f"t1_pre={case['t1_pre']}", "--out", out],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.strip()] and "Traceback" not in result.stderr
    assert result.stderr.startswith("synthmr: error: bundle fake_bundle: missing required input(s) 'liver'")
    assert_nothing_written(tmp_path, out)


def run_main(capfd, *args):
    """``synthmr ARGS`` in this process; (exit status, the stderr lines). capfd also catches what libraries
    write to the process's stderr directly."""
    status = main([str(arg) for arg in args])
    return status, capfd.readouterr().err.strip().splitlines()


def inputs_args(paths):
    return [arg for role, path in paths.items() for arg in ("--input", f"{role}={path}")]


def test_missing_or_unknown_role_names_the_roles(bundle, case, tmp_path, capfd):
    out = tmp_path / "out"
    status, err = run_main(capfd, "run", bundle, *inputs_args({"t1_pre": case["t1_pre"]}), "--out", out)
    assert status == 2 and len(err) == 1
    assert err[0].startswith("synthmr: error: ") and "missing required input(s) 'liver'; " in err[0]
    assert "t1_pre (volume: " in err[0] and "tumor (labelmap, optional: tumor mask)" in err[0]

    status, err = run_main(capfd, "run", bundle, *inputs_args({**case, "t2": case["t1_pre"]}), "--out", out)
    assert status == 2 and len(err) == 1 and "unknown input role(s) 't2'" in err[0] and "liver (labelmap" in err[0]
    assert_nothing_written(tmp_path, out)


def test_input_on_another_grid_names_both_inputs(bundle, case, tmp_path, capfd):
    shifted = write_case_file(tmp_path, "shifted.nii.gz", on_grid(np.ones(SHAPE, np.uint8), origin=(0, 0, 0)))
    coarse = write_case_file(tmp_path, "coarse.nii.gz", on_grid(np.ones((4, 4, 3), np.uint8), (1.4, 1.8, 3.0)))
    out = tmp_path / "out"
    status, err = run_main(capfd, "run", bundle, *inputs_args({**case, "liver": coarse}), "--out", out)
    assert status == 2 and len(err) == 1
    assert f"input 'liver' ({coarse})" in err[0] and f"reference input 't1_pre' ({case['t1_pre']})" in err[0]
    assert "shape 4x4x3 vs 8x8x3, spacing 1.4x1.8x3 vs 0.7x0.9x3 mm" in err[0]
    status, err = run_main(capfd, "run", bundle, *inputs_args({**case, "liver": shifted}), "--out", out)
    assert status == 2 and "origin 0x0x0 vs 10x-20x5 mm" in err[0]
    assert_nothing_written(tmp_path, out)


@pytest.mark.parametrize(
    "array, words",
    [
        (np.pad(np.full((2, 2, 3), 2, np.uint8), ((0, 6),) * 2 + ((0, 0),)), ["value(s) 2 ", "1 (liver)"]),
        (np.zeros(SHAPE, np.uint8), ["is empty"]),
        (np.full(SHAPE, 0.5, np.float32), ["non-integer"]),
    ],
)
def test_bad_labelmap_is_refused(bundle, case, tmp_path, capfd, array, words):
    liver = write_case_file(tmp_path, "bad_liver.nii.gz", on_grid(array))
    out = tmp_path / "out"
    status, err = run_main(capfd, "run", bundle, *inputs_args({**case, "liver": liver}), "--out", out)
    assert status == 2 and len(err) == 1 and f"input 'liver' ({liver})" in err[0]
    assert all(word in err[0] for word in words), err[0]
    assert_nothing_written(tmp_path, out)


def test_empty_optional_labelmap_is_accepted(bundle, case, tmp_path, capsys):
    tumor = write_case_file(tmp_path, "tumor.nii.gz", on_grid(np.zeros(SHAPE, np.uint8)))
    assert run_bundle(bundle, {**case, "tumor": tumor}, tmp_path / "out", progress=None)["t1_post1"].is_file()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--input", "t1_pre"], ["expected ROLE=PATH"]),
        (["--input", "liver=a.nii.gz"], ["given twice"]),
        (["--device", "gpu"], ["device 'gpu'", "cpu, cuda"]),
    ],
)
def test_bad_flags_fail_cleanly(bundle, case, tmp_path, capfd, args, words):
    out = tmp_path / "out"
    status, err = run_main(capfd, "run", bundle, *inputs_args(case), *args, "--out", out)
    assert status == 2 and len(err) == 1 and all(word in err[0] for word in words), err
    assert_nothing_written(tmp_path, out)


def test_unreadable_input_names_role_and_path(bundle, case, tmp_path, capfd):
    missing = tmp_path / "case" / "nope.nii.gz"
    status, err = run_main(capfd, "run", bundle, *inputs_args({**case, "t1_pre": missing}), "--out", tmp_path / "o")
    assert status == 2 and err == [f"synthmr: error: input 't1_pre': {missing}: no such file or folder"]


def test_unknown_bundle_lists_the_available_ones(tmp_path, monkeypatch, capfd):
    make_bundle(tmp_path / "mine", name="my_bundle")
    monkeypatch.setenv("SYNTHMR_BUNDLE_PATH", str(tmp_path / "mine"))
    status, err = run_main(capfd, "run", "no_such_bundle", "--input", "t1_pre=x.nii.gz", "--out", tmp_path / "o")
    assert status == 2 and len(err) == 1
    assert "bundle 'no_such_bundle': not found; available: " in err[0] and "my_bundle" in err[0]
    assert not (tmp_path / "o").exists()


def test_existing_out_is_kept_unless_overwrite(bundle, case, tmp_path, capfd):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    status, err = run_main(capfd, "run", bundle, *inputs_args(case), "--out", out)
    assert status == 2 and len(err) == 1 and f"{out}: folder already exists" in err[0]
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert run_main(capfd, "run", bundle, *inputs_args(case), "--out", out, "--overwrite")[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["t1_post1.json", "t1_post1.nii.gz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundles", "case", "out"]


def test_out_holding_an_input_is_refused_even_with_overwrite(bundle, case, tmp_path):
    with pytest.raises(InputError, match="contains input 't1_pre'"):
        run_bundle(bundle, case, tmp_path / "case", overwrite=True, progress=None)
    assert case["t1_pre"].is_file()


def test_bundle_failing_on_its_own_files_fails_cleanly(tmp_path, case, capfd):
    bundle = make_bundle(tmp_path / "bundles", run=["$read_image(@bundle_root + '/models/model.nii.gz')"])
    out = tmp_path / "out"
    status, err = run_main(capfd, "run", bundle, *inputs_args(case), "--out", out)
    assert status == 2 and len(err) == 1, err
    assert err[0] == f"synthmr: error: bundle fake_bundle: {bundle}/models/model.nii.gz: no such file or folder"
    assert_nothing_written(tmp_path, out)


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or sys.platform == "win32", reason="POSIX signals")
def test_terminated_run_removes_its_staging_folder(tmp_path, case):
    bundle = make_bundle(tmp_path / "bundles", run=[DOUBLE_T1[0], "$__import__('time').sleep(60)"])
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "synthmr", "run", bundle, *inputs_args(case), "--out", out],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        for line in process.stdout:  # wait until the bundle is running
            if (parse_progress_line(line) or {}).get("stage") == "infer":
                break
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")], "no staging folder while running"
        process.terminate()  # how a caller cancels
        assert process.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        process.kill()
        process.stdout.close()
    assert_nothing_written(tmp_path, out)


def test_bundle_bug_propagates_and_leaves_nothing(tmp_path, case):
    bundle = make_bundle(tmp_path / "bundles", run=[DOUBLE_T1[1], "$1 / 0"])  # fails after writing its output
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(RuntimeError) as raised:
        run_bundle(bundle, case, out, overwrite=True, progress=None)
    assert isinstance(raised.value.__cause__, ZeroDivisionError)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundles", "case", "out"]


@pytest.mark.parametrize(
    "run, words",
    [
        (["$None"], ["wrote no output 't1_post1'"]),
        (
            ["$write_image(@image.with_array(@image.array[:, :, :2]), @output_path)"],
            ["output 't1_post1' is not on the grid", "shape 8x8x2 vs 8x8x3"],
        ),
    ],
)
def test_bundle_breaking_the_output_contract_writes_nothing(tmp_path, case, run, words):
    bundle = make_bundle(tmp_path / "bundles", run=run)
    out = tmp_path / "out"
    with pytest.raises(InputError) as raised:
        run_bundle(bundle, case, out, progress=None)
    assert all(word in str(raised.value) for word in words), raised.value
    assert_nothing_written(tmp_path, out)


MARKER_RUN = "$open(@bundle_root + '/../../ran.txt', 'w').write('ran')"


def test_a_bundle_from_elsewhere_runs_only_once_trusted_and_again_after_its_code_changes(tmp_path, case, monkeypatch,
                                                                                           capfd):
    monkeypatch.delenv("SYNTHMR_TRUST_BUNDLES")
    bundle = make_bundle(tmp_path / "bundles", run=[MARKER_RUN, *DOUBLE_T1])
    ran = tmp_path / "ran.txt"
    status, err = run_main(capfd, "run", bundle, *inputs_args(case), "--out", tmp_path / "out")
    assert status == 2 and len(err) == 1 and "is not shipped with synthmr" in err[0] and "--trust-bundle" in err[0]
    assert not ran.exists() and not (tmp_path / "out").exists()
    status = main(["run", str(bundle), *map(str, inputs_args(case)), "--out", str(tmp_path / "out"), "--trust-bundle"])
    assert status == 0 and ran.read_text() == "ran"
    assert "trusted as you asked" in capfd.readouterr().out
    ran.unlink()
    assert run_main(capfd, "run", bundle, *inputs_args(case), "--out", tmp_path / "again")[0] == 0  # recorded
    assert ran.is_file()
    ran.unlink()
    config = bundle / "configs" / "inference.yaml"
    config.write_text(config.read_text() + "\n# edited\n")
    status, err = run_main(capfd, "run", bundle, *inputs_args(case), "--out", tmp_path / "third")
    assert status == 2 and "--trust-bundle" in err[0] and not ran.exists()


def test_a_bare_name_never_runs_a_folder_of_the_working_directory(tmp_path, monkeypatch):
    make_bundle(tmp_path / "here", name="planted")
    monkeypatch.chdir(tmp_path / "here")
    with pytest.raises(InputError, match=r"bundle 'planted': not found.*write ./planted"):
        find_bundle("planted")
    assert find_bundle("./planted") == (tmp_path / "here" / "planted").resolve()
    monkeypatch.setenv("SYNTHMR_BUNDLE_PATH", str(tmp_path / "mine"))
    found = make_bundle(tmp_path / "mine", name="planted")
    with pytest.raises(InputError, match=r"bundle 'planted': names .* another bundle folder planted.* write ./planted"):
        find_bundle("planted")
    monkeypatch.chdir(tmp_path / "mine")  # the folder here is the bundle the name finds: nothing to choose between
    assert find_bundle("planted") == found.resolve()


def test_a_user_bundle_with_a_shipped_name_is_refused(tmp_path, monkeypatch, capsys):
    shipped = sorted(path.name for path in (ROOT / "bundles").iterdir() if (path / "configs" / "metadata.json").is_file())[0]
    make_bundle(tmp_path / "mine", name=shipped)
    monkeypatch.setenv("SYNTHMR_BUNDLE_PATH", str(tmp_path / "mine"))
    with pytest.raises(InputError, match="has the name of a bundle shipped with synthmr.*rename its folder"):
        find_bundle(shipped)
    assert list_bundles()[shipped] == (ROOT / "bundles" / shipped).resolve()
    assert main(["bundles"]) == 0
    assert "refused: has the name of the shipped bundle" in capsys.readouterr().out


def test_find_bundle_by_path_and_by_name(tmp_path, monkeypatch):
    first, second = make_bundle(tmp_path / "a", name="shared"), make_bundle(tmp_path / "b", name="shared")
    only_b = make_bundle(tmp_path / "b", name="only_b")
    search = [tmp_path / "a", tmp_path / "missing", tmp_path / "b"]  # a folder that does not exist is skipped
    monkeypatch.setenv("SYNTHMR_BUNDLE_PATH", os.pathsep.join(map(str, search)))
    assert find_bundle("shared") == first.resolve()  # the first folder of the path wins
    assert find_bundle("only_b") == only_b.resolve()
    assert find_bundle(second) == second.resolve()
    found = list_bundles()
    assert found["shared"] == first.resolve() and found["only_b"] == only_b.resolve()
    with pytest.raises(InputError, match="not a bundle folder"):
        find_bundle(tmp_path / "a")
    with pytest.raises(InputError, match="no such bundle folder"):
        find_bundle(tmp_path / "nowhere" / "x")
    with pytest.raises(InputError, match=r"bundle 'unknown': not found; available: .*only_b.*shared"):
        find_bundle("unknown")


def test_read_tool_description(bundle):
    description = read_tool_description(bundle)
    assert description.name == "fake_bundle" and description.spatial_dims == 2
    assert list(description.inputs) == ["t1_pre", "liver", "tumor"]  # the metadata's order, for UIs
    assert description.inputs["liver"].labels == {1: "liver"} and description.inputs["t1_pre"].required
    assert description.required_inputs == ("t1_pre", "liver")
    assert description.outputs["t1_post1"].sequence == "t1_post1"
    assert (description.reference, description.organ_mask, description.lesion) == ("t1_pre", "liver", "tumor")
    assert description.lesion_edits == ("translate", "mirror")


def _with(change):
    block = json.loads(json.dumps(TOOL_BLOCK))
    change(block)
    return block


@pytest.mark.parametrize(
    "block, words",
    [
        (None, ["no 'synthmr' block"]),
        (_with(lambda b: b["inputs"]["liver"].update(kind="mask")), ["synthmr.inputs.liver.kind", "volume, labelmap"]),
        (_with(lambda b: b.update(reference="t2")), ["synthmr.reference", "'t2' is not an input role"]),
        (_with(lambda b: b.update(reference="tumor")), ["synthmr.reference", "optional"]),
        (_with(lambda b: b.update(lesion_edits=["rotate"])), ["synthmr.lesion_edits", "translate, scale"]),
        (_with(lambda b: b.update(organ_mask="t1_pre")), ["synthmr.organ_mask", "labelmap inputs: liver, tumor"]),
        (_with(lambda b: b.update(lesion=None)), ["synthmr.lesion", "lesion edits need the lesion field"]),
        (_with(lambda b: b["inputs"]["liver"].update(labels={"0": "bg"})), ["synthmr.inputs.liver.labels.0", '"0" is not allowed', "positive integer"]),
        (_with(lambda b: b["inputs"]["t1_pre"].update(labels={"1": "x"})), ["inputs.t1_pre.labels", "only labelmaps"]),
        (_with(lambda b: b["inputs"]["liver"].update(requried=True)), ["inputs.liver", "unknown field(s) requried"]),
        (_with(lambda b: b.pop("outputs")), ["field synthmr", "missing field(s) outputs"]),
        (_with(lambda b: b.update(spatial_dims=4)), ["synthmr.spatial_dims", "one of 2, 3, got 4"]),
        (_with(lambda b: b["inputs"].update(case_id=b["inputs"]["t1_pre"])), ["synthmr.inputs.case_id", "reserved"]),
    ],
)
def test_tool_description_errors_name_the_file_and_field(tmp_path, block, words):
    bundle = make_bundle(tmp_path, block=block)
    with pytest.raises(InputError) as raised:
        read_tool_description(bundle)
    message = str(raised.value)
    assert message.startswith(f"{bundle / 'configs' / 'metadata.json'}: ")
    assert all(word in message for word in words), message


def test_metadata_that_is_not_json(tmp_path):
    bundle = make_bundle(tmp_path)
    (bundle / "configs" / "metadata.json").write_text("{not json")
    with pytest.raises(InputError, match="metadata.json: not valid JSON"):
        read_tool_description(bundle)


def test_parse_progress_line():
    assert parse_progress_line('SYNTHMR_PROGRESS {"stage": "infer", "fraction": 0.5}\n') == {
        "type": "progress", "stage": "infer", "fraction": 0.5
    }
    assert parse_progress_line('SYNTHMR_RESULT {"outputs": {"a": "/x/a.nii.gz"}}') == {
        "type": "result", "outputs": {"a": "/x/a.nii.gz"}
    }
    for other in ("2026-01-01 - INFO - loading", "SYNTHMR_PROGRESS {broken", "SYNTHMR_PROGRESS [1]", ""):
        assert parse_progress_line(other) is None


def test_cli_lists_bundles(tmp_path, monkeypatch, capsys):
    make_bundle(tmp_path / "mine", name="my_bundle")
    make_bundle(tmp_path / "mine", name="broken_bundle", block=None)
    monkeypatch.setenv("SYNTHMR_BUNDLE_PATH", str(tmp_path / "mine"))
    assert main(["bundles"]) == 0
    text = capsys.readouterr().out
    assert "my_bundle" in text and "input   liver     labelmap: liver mask [1=liver]" in text
    assert "tumor     labelmap, optional" in text and "output  t1_post1  volume: synthetic first phase" in text
    assert "broken_bundle" in text and "not usable: " in text


@pytest.mark.parametrize("requires, runs", [(">=0.2,<99", True), (">=99", False)])
def test_a_bundle_needing_another_synthmr_is_refused_before_anything_is_written(tmp_path, case, requires, runs):
    bundle = make_bundle(tmp_path, block=_with(lambda b: b.update(requires=requires)))
    out = tmp_path / "out"
    if runs:
        assert set(run_bundle(bundle, {"t1_pre": case["t1_pre"], "liver": case["liver"]}, out, progress=None)) == {"t1_post1"}
        return
    with pytest.raises(InputError, match=r"fake_bundle: needs synthmr >=99, but synthmr \S+ is installed"):
        run_bundle(bundle, {"t1_pre": case["t1_pre"], "liver": case["liver"]}, out, progress=None)
    assert not out.exists()


def test_the_trusted_digest_covers_linked_configs_and_cached_bytecode(tmp_path):
    from synthmr.bundle import trust

    bundle = make_bundle(tmp_path / "bundles")
    elsewhere = tmp_path / "elsewhere"
    (bundle / "configs").rename(elsewhere)
    (bundle / "configs").symlink_to(elsewhere, target_is_directory=True)
    assert Path("configs/inference.yaml") in trust.code_files(bundle)
    digest = trust.code_digest(bundle)
    (elsewhere / "inference.yaml").write_text((elsewhere / "inference.yaml").read_text() + "\n# edited\n")
    assert trust.code_digest(bundle) != digest
    digest = trust.code_digest(bundle)
    (bundle / "__pycache__").mkdir()
    (bundle / "__pycache__" / "helper.cpython-311.pyc").write_bytes(b"planted bytecode")
    assert trust.code_digest(bundle) != digest


def test_an_output_holding_a_folder_of_bundles_is_refused(tmp_path, monkeypatch):
    from synthmr.io._atomic import check_output_location

    make_bundle(tmp_path / "checkout" / "bundles")  # <root>/bundles/<name>: two levels below the output
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(InputError, match="contains bundle fake_bundle"):
        check_output_location(tmp_path / "checkout")


def test_a_relative_bundle_path_entry_is_refused(monkeypatch):
    monkeypatch.setenv("SYNTHMR_BUNDLE_PATH", "bundles")  # would make bare names mean folders of the working directory
    with pytest.raises(InputError, match="SYNTHMR_BUNDLE_PATH: holds relative folder"):
        find_bundle("breast_dce_pre2post")
