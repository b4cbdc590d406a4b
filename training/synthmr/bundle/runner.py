"""Run a bundle on one case: check the inputs against the bundle's tool description, run its inference, and
put the outputs in a folder, all or nothing.

This is what ``synthmr run`` and the 3D Slicer module call: the module starts ``synthmr run`` as a separate
process and follows the lines it prints. The progress protocol (``SYNTHMR_PROGRESS``/``SYNTHMR_RESULT`` lines, the
stages and their fractions), the exit statuses and the overrides every bundle's inference config accepts are
specified in docs/design.md, *The runner and its progress protocol* and *The bundle contract*.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from synthmr.bundle import trust
from synthmr.bundle.description import InputRole, ToolDescription, metadata_path, read_tool_description
from synthmr.bundle.discovery import find_bundle, shipped_folders
from synthmr.errors import InputError, missing_extra
from synthmr.io import Volume, read_image
from synthmr.io._atomic import atomic_output, check_destination, check_output_location

PROGRESS_PREFIX = "SYNTHMR_PROGRESS"
RESULT_PREFIX = "SYNTHMR_RESULT"
WARNING_PREFIX = "SYNTHMR_WARNING"
CASE_ID = "synthmr_run"
DEVICES = ("cpu", "cuda")
# Fraction reached at each stage; inference fills the span between its start and its end.
STAGE_FRACTIONS = {"validate": 0.05, "load": 0.1, "infer": 0.2, "write": 0.95, "done": 1.0}
INFER_END = 0.9
# Names of the configs run_bundle accepts, in order of preference (MONAI allows JSON and YAML alike).
INFERENCE_CONFIGS = ("inference.yaml", "inference.yml", "inference.json")
_BUNDLE_OUTPUT = "bundle_output"  # the bundle's output_dir inside the staging folder
_MAX_LISTED_VALUES = 10

ProgressCallback = Callable[[str, float], None]
WarningCallback = Callable[[str, Mapping[str, Any]], None]


def print_progress(stage: str, fraction: float) -> None:
    """Print one ``SYNTHMR_PROGRESS`` line (see the module docstring), flushed so a reading process sees it now."""
    print(f"{PROGRESS_PREFIX} {json.dumps({'stage': stage, 'fraction': round(fraction, 4)})}", flush=True)


def print_result(outputs: Mapping[str, os.PathLike | str]) -> None:
    """Print the final ``SYNTHMR_RESULT`` line: output role -> absolute path of its file."""
    payload = {"outputs": {role: str(Path(path).absolute()) for role, path in outputs.items()}}
    print(f"{RESULT_PREFIX} {json.dumps(payload)}", flush=True)


def print_warning(message: str, input_check: Mapping[str, Any]) -> None:
    """Print one ``SYNTHMR_WARNING`` line: the message and the input check behind it (its sidecar record)."""
    print(f"{WARNING_PREFIX} {json.dumps({'message': message, 'input_check': dict(input_check)})}", flush=True)


def parse_progress_line(line: str) -> dict[str, Any] | None:
    """Read one stdout line of ``synthmr run``.

    Returns:
        ``{"type": "progress", "stage": ..., "fraction": ...}`` for a progress line,
        ``{"type": "warning", "message": ..., "input_check": {...}}`` for a warning (inputs unlike the training
        data), ``{"type": "result", "outputs": {...}}`` for the result line, and None for any other line (the
        bundle's logging) or a line whose JSON is damaged.
    """
    for prefix, kind in ((PROGRESS_PREFIX, "progress"), (WARNING_PREFIX, "warning"), (RESULT_PREFIX, "result")):
        if line.startswith(prefix + " "):
            try:
                payload = json.loads(line[len(prefix) + 1 :])
            except json.JSONDecodeError:
                return None
            return {"type": kind, **payload} if isinstance(payload, dict) else None
    return None


def run_bundle(
    bundle: str | os.PathLike,
    inputs: Mapping[str, str | os.PathLike],
    out: str | os.PathLike,
    device: str = "cpu",
    overwrite: bool = False,
    progress: ProgressCallback | None = print_progress,
    trust_bundle: bool = False,
    strict: bool = False,
    warning: WarningCallback | None = print_warning,
) -> dict[str, Path]:
    """Run ``bundle`` on one case and write each output role to ``out/<role>.nii.gz``.

    Everything is checked before the bundle runs: the bundle and its tool description, the input roles (every
    required one given, no unknown one), each input file (readable, no NaN or infinite voxels, one component per
    voxel, 2D only for a 2D bundle), every input on the reference input's grid, labelmaps holding only their
    declared labels and, when required, not empty, the device, the destination (synthmr.io's output policy: never
    the working directory, an input or a bundle), and that the bundle is trusted (synthmr.bundle.trust). Then the
    case is scored against the bundle's summary of its training inputs (:mod:`synthmr.bundle.input_check`): a case
    unlike them gets a warning (``warning``), or is refused when ``strict``; every output's sidecar records the
    check.

    Args:
        bundle: bundle name (found with :func:`~synthmr.bundle.discovery.find_bundle`) or bundle folder.
        inputs: input role -> image file (any format :func:`synthmr.io.read_image` reads).
        out: output folder; it must not exist or be empty, unless ``overwrite``.
        device: ``"cpu"`` or ``"cuda"``.
        overwrite: replace an existing ``out`` (moved aside, and removed once the new outputs are in place).
        progress: called as ``progress(stage, fraction)`` at each step (see the module docstring), or None.
        trust_bundle: the user confirms that a bundle that is not shipped with synthmr may run; the confirmation
            is recorded by the SHA-256 of its code, and a line on stdout says what runs.
        strict: refuse a case the input check finds unlike the training data, and a bundle that ships no
            summary to check against.
        warning: called as ``warning(message, input_check_record)`` when the input check finds the case unlike
            the training data (and not ``strict``), or None.

    Returns:
        Output role -> absolute path of its file in ``out``.

    Raises:
        InputError: any of the checks fails (with ``strict``, the input check too), the bundle fails with an
            InputError of its own or misses a file (e.g. its weights), or it does not write every declared output on
            the reference grid. ``out`` is then untouched. Any other failure of the bundle propagates as it is (also
            leaving ``out`` untouched).
    """
    report = progress if progress is not None else _ignore_progress
    report("validate", STAGE_FRACTIONS["validate"])
    description = read_tool_description(find_bundle(bundle))
    check_synthmr_version(description)
    check_trust(description.bundle_dir, trust_bundle)
    if description.is_generator:
        raise InputError(
            f"bundle {description.name} generates images from noise and takes no input case; run it with "
            f"python -m monai.bundle run --bundle_root {description.bundle_dir} "
            f"--config_file {description.bundle_dir / 'configs' / 'inference.yaml'}"
        )
    config_file = inference_config(description.bundle_dir)
    check_device(device)
    paths = _check_roles(description, inputs)  # cheap checks first: a wrong role or --out fails before any read
    out = Path(out)
    check_output_location(out, {**{f"input {role!r}": path for role, path in paths.items()},
                                f"bundle {description.name}": description.bundle_dir})
    check_destination(out, overwrite, what="folder")
    volumes = _checked_volumes(description, paths)
    reference = volumes[description.reference]
    input_check = _input_check(description, volumes, strict, warning)
    del volumes  # the bundle reads its inputs itself

    report("load", STAGE_FRACTIONS["load"])
    # atomic_output stages beside `out` (same file system, so the final rename is atomic) and removes the staging
    # folder on any failure, an exception of the bundle's or an interrupt alike.
    with atomic_output(out, overwrite=overwrite) as staging:
        staging.mkdir()
        bundle_output = staging / _BUNDLE_OUTPUT
        _run_workflow(description, config_file, paths, bundle_output, device, report)
        produced = _check_outputs(description, bundle_output / CASE_ID, reference)
        report("write", STAGE_FRACTIONS["write"])
        for role, path in produced.items():
            _mark_synthetic(description, role, path, paths, staging / f"{role}.nii.gz",
                            {"input_check": input_check})
        shutil.rmtree(bundle_output)  # whatever else the bundle wrote is not a declared output
    report("done", STAGE_FRACTIONS["done"])
    folder = out.resolve()
    return {role: folder / f"{role}.nii.gz" for role in description.outputs}


def _input_check(description: ToolDescription, volumes: Mapping[str, Volume], strict: bool,
                 warning: WarningCallback | None) -> dict[str, Any] | None:
    """Score the case against the bundle's input summary: its sidecar record (None: the bundle ships none)."""
    from synthmr.bundle.input_check import SUMMARY_FILE, score_case

    check = score_case(description, volumes)
    if check is None:
        if strict:
            raise InputError(f"bundle {description.name}: ships no {SUMMARY_FILE}, so --strict cannot check the "
                             "inputs against its training data")
        return None
    record = check.record()
    if not check.passed:
        message = check.message(description.name)
        if strict:
            raise InputError(f"{message}; refused (--strict)")
        if warning is not None:
            warning(message, record)
    return record


def _mark_synthetic(description: ToolDescription, role: str, path: Path, inputs: Mapping[str, Path],
                    destination: Path, extra: Mapping[str, Any]) -> None:
    """Move an output into place with its provenance sidecar (plus the runner's ``extra`` entries); one a bundle
    wrote without (a bundle from outside the repository) is rewritten marked as synthetic, with the sidecar the
    runner knows (:mod:`synthmr.provenance`)."""
    from synthmr.provenance import bundle_identity, move_synthetic, read_sidecar, record, write_synthetic

    if read_sidecar(path) is not None:
        move_synthetic(path, destination, extra)
        return
    identity = bundle_identity(description.bundle_dir)
    write_synthetic(read_image(path), destination, {**record(identity, inputs), **extra, "output": role})


def check_synthmr_version(description: ToolDescription) -> None:
    """Refuse a bundle whose ``requires`` the installed synthmr does not satisfy (its configs may name code that is
    not there, or that does something else)."""
    if description.requires is None:
        return
    from packaging.specifiers import SpecifierSet

    from synthmr import __version__

    if not SpecifierSet(description.requires).contains(__version__, prereleases=True):
        raise InputError(
            f"bundle {description.name}: needs synthmr {description.requires}, but synthmr {__version__} is installed; "
            "install a synthmr that fits, or use a version of the bundle made for this one"
        )


def check_trust(bundle_dir: Path, confirmed: bool) -> None:
    """Refuse a bundle that is not shipped and not trusted yet, unless the user confirms it now (recorded)."""
    if trust.is_trusted(bundle_dir, shipped_folders()):
        return
    summary = trust.untrusted_summary(bundle_dir)
    if not confirmed:
        raise InputError(
            f"{summary}. Read them, and if you trust their author run again with --trust-bundle (recorded for this "
            f"version of its code; {trust.TRUST_VARIABLE}=1 trusts every bundle)"
        )
    digest = trust.record_trust(bundle_dir)
    # stdout: stderr is kept for the one line of an error.
    print(f"synthmr: running {summary}; trusted as you asked (SHA-256 {digest[:16]}, recorded in {trust.trust_store()})",
          flush=True)


def _ignore_progress(stage: str, fraction: float) -> None:
    """The progress callback of a silent run."""


def inference_config(bundle_dir: Path) -> Path:
    for name in INFERENCE_CONFIGS:
        path = bundle_dir / "configs" / name
        if path.is_file():
            return path
    raise InputError(f"{bundle_dir}: bundle has no configs/inference.yaml, so it cannot be run")


def check_device(device: str) -> None:
    if device not in DEVICES:
        raise InputError(f"device {device!r}: use one of {', '.join(DEVICES)}")
    if device == "cuda":
        import torch  # only here: a CPU run's checks need no torch import

        if not torch.cuda.is_available():
            raise InputError("device 'cuda': PyTorch sees no CUDA GPU on this machine; use cpu")


def _roles_summary(description: ToolDescription) -> str:
    return ", ".join(
        f"{name} ({role.kind}{'' if role.required else ', optional'}: {role.description})"
        for name, role in description.inputs.items()
    )


def _check_roles(description: ToolDescription, inputs: Mapping[str, str | os.PathLike]) -> dict[str, Path]:
    """The given inputs as role -> absolute path, once every required role is there and no unknown one."""
    unknown = [role for role in inputs if role not in description.inputs]
    if unknown:
        raise InputError(
            f"bundle {description.name}: unknown input role(s) {', '.join(map(repr, unknown))}; "
            f"its input roles: {_roles_summary(description)}"
        )
    missing = [role for role in description.required_inputs if role not in inputs]
    if missing:
        raise InputError(
            f"bundle {description.name}: missing required input(s) {', '.join(map(repr, missing))}; "
            f"its input roles: {_roles_summary(description)}"
        )
    # Absolute, because the bundle may resolve relative paths against another folder than ours.
    return {role: Path(path).absolute() for role, path in inputs.items()}


def check_inputs(description: ToolDescription, inputs: Mapping[str, str | os.PathLike]) -> Volume:
    """Check the inputs of a run as :func:`run_bundle` does, without running anything: the roles, then each file
    against its role and the reference grid (a user interface can call this before it starts a run).

    Args:
        description: the bundle's tool description.
        inputs: input role -> image file.

    Returns:
        The reference input, whose grid the outputs must share.

    Raises:
        InputError: a role is missing or unknown, or an input is unreadable or does not fit its role or the
            reference grid.
    """
    return _checked_volumes(description, _check_roles(description, inputs))[description.reference]


def _checked_volumes(description: ToolDescription, paths: Mapping[str, Path]) -> dict[str, Volume]:
    """Each input read and checked against its role and the reference grid: role -> volume."""
    reference_role = description.reference
    reference = _read_input(description, reference_role, paths[reference_role])
    volumes = {}
    for name, path in paths.items():
        volume = reference if name == reference_role else _read_input(description, name, path)
        if not volume.same_grid(reference):
            raise InputError(
                f"input {name!r} ({path}) is not on the grid of the reference input {reference_role!r} "
                f"({paths[reference_role]}): {_grid_difference(volume, reference)}"
            )
        role = description.inputs[name]
        if role.kind == "labelmap":
            _check_labelmap(description, role, path, volume.array)
        volumes[name] = volume
    return volumes


def _read_input(description: ToolDescription, name: str, path: Path) -> Volume:
    try:
        volume = read_image(path)  # refuses NaN and infinite voxels
    except InputError as error:
        raise InputError(f"input {name!r}: {error}") from None
    components = volume.array.shape[volume.ndim :]
    if components:
        raise InputError(
            f"input {name!r} ({path}): has {int(np.prod(components))} components per voxel; "
            "a single-component image is needed"
        )
    if volume.ndim < description.spatial_dims:
        raise InputError(
            f"input {name!r} ({path}): is a {volume.ndim}D image; bundle {description.name} works on "
            f"{description.spatial_dims}D volumes"
        )
    return volume


def _grid_difference(volume: Volume, reference: Volume) -> str:
    """Both grids' shapes and spacings, plus origins and directions where those differ."""

    def numbers(values) -> str:
        return "x".join(f"{value:g}" for value in values)

    parts = [
        f"shape {numbers(volume.array.shape[: volume.ndim])} vs {numbers(reference.array.shape[: reference.ndim])}",
        f"spacing {numbers(volume.spacing)} vs {numbers(reference.spacing)} mm",
    ]
    if volume.ndim == reference.ndim:
        if not np.allclose(volume.origin, reference.origin, atol=1e-4):
            parts.append(f"origin {numbers(volume.origin)} vs {numbers(reference.origin)} mm")
        if not np.allclose(volume.direction, reference.direction, atol=1e-4):
            parts.append("the directions differ")
    return ", ".join(parts)


def _listed(values: list) -> str:
    """Integer-valued labels, the first few of them."""
    shown = ", ".join(str(int(value)) for value in values[:_MAX_LISTED_VALUES])
    return shown + (f" and {len(values) - _MAX_LISTED_VALUES} more" if len(values) > _MAX_LISTED_VALUES else "")


def _check_labelmap(description: ToolDescription, role: InputRole, path: Path, array: np.ndarray,
                    required: bool | None = None) -> None:
    """Integer values, within the role's declared labels; not empty when ``required`` (default: the role's)."""
    required = role.required if required is None else required
    if np.issubdtype(array.dtype, np.floating) and not np.array_equal(array, np.rint(array)):
        raise InputError(
            f"input {role.name!r} ({path}): holds non-integer values, so it is not a labelmap (an intensity image?)"
        )
    if role.labels is not None:
        values = np.unique(array)
        unexpected = values[~np.isin(values, [0, *role.labels])]
        if unexpected.size:
            expected = ", ".join(["0 (background)", *(f"{value} ({name})" for value, name in role.labels.items())])
            raise InputError(
                f"input {role.name!r} ({path}): holds label value(s) {_listed(unexpected.tolist())} that bundle "
                f"{description.name} does not declare; expected {expected}"
            )
    if required and not array.any():
        raise InputError(
            f"input {role.name!r} ({path}): is empty (every voxel is 0); a required labelmap must mark at least "
            "one voxel"
        )


def _run_workflow(
    description: ToolDescription,
    config_file: Path,
    paths: Mapping[str, Path],
    output_dir: Path,
    device: str,
    report: ProgressCallback,
) -> None:
    """Run the bundle's inference config with the overrides of the bundle contract (module docstring)."""
    start, span = STAGE_FRACTIONS["infer"], INFER_END - STAGE_FRACTIONS["infer"]
    reached = [start]  # the protocol promises fractions that never decrease, whatever the bundle reports

    def bundle_progress(done: int, total: int) -> None:
        share = min(max(float(done) / float(total), 0.0), 1.0) if total else 0.0
        reached[0] = max(reached[0], start + span * share)
        report("infer", reached[0])

    run_config_workflow(
        description,
        [config_file],
        workflow_type="inference",
        on_initialized=lambda: report("infer", start),
        bundle_root=str(description.bundle_dir),
        input={**{role: str(path) for role, path in paths.items()}, "case_id": CASE_ID},
        output_dir=str(output_dir.absolute()),  # the bundle may not share our working folder's idea of "."
        device=f"$torch.device('{device}')",
        progress=bundle_progress,
    )
    if reached[0] < INFER_END:  # the bundle did not report its end itself
        report("infer", INFER_END)


def run_config_workflow(
    description: ToolDescription,
    config_files: Sequence[Path],
    workflow_type: str | None,
    on_initialized: Callable[[], None] | None = None,
    **overrides: Any,
) -> None:
    """Initialize, run and finalize MONAI's ``ConfigWorkflow`` over the bundle's ``config_files`` (later files
    override earlier ones) with ``overrides``; a user mistake inside becomes one :class:`InputError`."""
    from monai.bundle import ConfigWorkflow  # slow to import: only once the checks have passed

    # MONAI puts the bundle on sys.path: cached bytecode written there would change the digest trust records.
    sys.dont_write_bytecode = True
    logging_file = Path(config_files[0]).parent / "logging.conf"
    try:
        workflow = ConfigWorkflow(
            config_file=[str(path) for path in config_files],
            meta_file=str(metadata_path(description.bundle_dir)),
            logging_file=str(logging_file) if logging_file.is_file() else False,
            workflow_type=workflow_type,
            **overrides,
        )
        workflow.initialize()
        if on_initialized is not None:
            on_initialized()
        workflow.run()
        workflow.finalize()
    except Exception as error:
        # MONAI wraps what an expression raises in a RuntimeError; a user mistake inside (missing weights, a
        # file the bundle cannot read) keeps its one-line message, anything else is a bug and keeps its traceback.
        problem = user_error_in(error)
        if problem is None:
            raise
        raise InputError(f"bundle {description.name}: {problem}") from None


def overlay_config(bundle_dir: Path, stem: str, missing: str) -> Path:
    """``configs/<stem>.yaml`` (or ``.json``) of the bundle: an overlay on its inference config; ``missing`` says
    in the :class:`InputError` what a bundle without one does not declare."""
    for suffix in (".yaml", ".json"):
        path = bundle_dir / "configs" / f"{stem}{suffix}"
        if path.is_file():
            return path
    raise InputError(f"bundle {bundle_dir.name} {missing} (no configs/{stem}.yaml)")


def run_overlay(
    description: ToolDescription,
    overlay: Path,
    settings: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    device: str | None = None,
) -> None:
    """Run the bundle's inference config with ``overlay`` merged over it, ``settings`` (ids the command sets) and
    the user's ``overrides`` (ids of the configs; an unknown id is refused), on ``device`` (default: the
    config's). The caller has made the version and trust checks."""
    configs = [inference_config(description.bundle_dir), overlay]
    values: dict[str, Any] = {"bundle_root": str(description.bundle_dir), **settings}
    if device is not None:
        check_device(device)
        values["device"] = f"$torch.device('{device}')"
    values.update(overrides or {})

    from monai.bundle import ConfigParser  # slow to import: only once the checks have passed

    parser = ConfigParser()
    parser.read_config([str(path) for path in configs])
    unknown = sorted(key for key in overrides or {} if key.split("#")[0] not in parser.get())
    if unknown:
        names = ", ".join(path.name for path in configs)
        raise InputError(f"bundle {description.name}: no config id {', '.join(map(repr, unknown))} in {names}")
    run_config_workflow(description, configs, workflow_type=None, **values)


def user_error_in(error: BaseException) -> str | None:
    """The message of the first user mistake in the chain of causes of ``error``, or None.

    A user mistake is an :class:`InputError`, a file the bundle needs and does not find (weights that were
    never downloaded, a bundle copied without its models/ folder), or a bundle whose inference needs a package of
    the "train" extra that is not installed.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, InputError):
            return str(current)
        if isinstance(current, FileNotFoundError) and current.filename:
            return f"{current.filename}: no such file"
        if isinstance(current, ModuleNotFoundError) and (extra := missing_extra(current)) is not None:
            return str(extra)
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _check_outputs(description: ToolDescription, case_dir: Path, reference: Volume) -> dict[str, Path]:
    """Output role -> file the bundle wrote, once every declared output is there, readable and on the grid."""
    produced = {}
    for role in description.outputs:
        path = case_dir / f"{role}.nii.gz"
        if not path.is_file():
            raise InputError(
                f"bundle {description.name}: wrote no output {role!r} (expected <output_dir>/<case_id>/{role}.nii.gz); "
                "the bundle does not follow the synthmr run contract"
            )
        try:
            volume = read_image(path)
        except InputError as error:
            # The staging path means nothing to the user: name the output instead.
            raise InputError(f"bundle {description.name}: output {str(error).replace(str(path), repr(role))}") from None
        if not volume.same_grid(reference):
            raise InputError(
                f"bundle {description.name}: output {role!r} is not on the grid of the reference input "
                f"{description.reference!r}: {_grid_difference(volume, reference)}"
            )
        produced[role] = path
    return produced
