"""`synthmr check-data DATALIST --bundle NAME`: every problem of a datalist for a bundle, before hours of training.

Each item is checked against the bundle's tool description, role by role, and every problem found is one line
naming the case and the file: a required role missing (inputs, and for training the outputs, the targets), a file
missing or unreadable (corrupt, NaN or infinite voxels: what :func:`synthmr.io.read_image` refuses), several
components per voxel, fewer dimensions than the bundle works on, a file off the grid of the case's reference role,
a labelmap with non-integer values, values outside the labels the role declares, or no voxel at all where the
role is required, an image that is constant, a voxel spacing outside 0.05-20 mm. A case id used twice is a problem
too. The same checks as a run's input check (:func:`synthmr.bundle.runner.check_inputs`), without stopping at the
first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthmr.bundle.description import read_tool_description
from synthmr.bundle.discovery import find_bundle
from synthmr.bundle.runner import _check_labelmap, _grid_difference, _read_input
from synthmr.errors import InputError
from synthmr.io import read_json

# Voxel sizes any MRI a bundle could be trained on lies within, in mm: outside, the header is wrong (metres, or
# a spacing of 1 written for lack of one on a resampled image is still inside: this only catches the absurd).
PLAUSIBLE_SPACING_MM = (0.05, 20.0)


@dataclass(frozen=True)
class Problem:
    case: str
    file: str
    problem: str


def check_datalist(bundle: str | os.PathLike, datalist: str | os.PathLike, section: str = "training",
                   targets: bool = True, setting: str | None = None) -> tuple[list[Problem], int]:
    """Every problem of ``datalist``'s ``section`` for ``bundle`` (module docstring) and the number of items.

    Args:
        bundle: bundle name or folder.
        datalist: a datalist JSON; relative paths are relative to its folder.
        section: the list to check (``training``, ``validation``...).
        targets: also require the bundle's outputs (a training set's targets); False for inference inputs.
        setting: for a bundle whose tool description declares its training datalists (``training``), the
            train.yaml setting the datalist is for; may be left out when there is one.

    Raises:
        InputError: the datalist itself cannot be read or has no such list (nothing to check).
    """
    description = read_tool_description(find_bundle(bundle))
    path = Path(datalist)
    content = read_json(path, "datalist file")
    if not isinstance(content, dict) or not isinstance(content.get(section), list):
        found = ", ".join(map(repr, content)) if isinstance(content, dict) else type(content).__name__
        raise InputError(f"{path}: no list {section!r} of items (found {found})")
    roles = _roles(description, targets, setting)
    problems: list[Problem] = []
    seen: set[str] = set()
    for index, item in enumerate(content[section]):
        if not isinstance(item, dict):
            problems.append(Problem(f"item {index}", "-", f"is a {type(item).__name__}, not an object of roles"))
            continue
        case = str(item.get("case_id", f"item {index}"))
        if case in seen:
            problems.append(Problem(case, "-", "case_id used by an earlier item too"))
        seen.add(case)
        problems += _check_item(description, case, item, roles, path.absolute().parent)
    return problems, len(content[section])


def _roles(description, targets: bool, setting: str | None) -> dict:
    """Datalist key -> (role, required) of the datalist checked."""
    if setting is not None and (not targets or not description.training):
        what = "an inference datalist" if not targets else f"bundle {description.name}'s one training datalist"
        raise InputError(f"--setting {setting}: {what} holds the inputs (and targets); leave --setting out")
    if targets and description.training:
        if setting is None and len(description.training) > 1:
            raise InputError(f"bundle {description.name} trains on several datalists; say which one this is with "
                             f"--setting ({', '.join(description.training)})")
        setting = next(iter(description.training)) if setting is None else setting
        if setting not in description.training:
            raise InputError(f"--setting {setting}: bundle {description.name} reads no such datalist; it reads "
                             f"{', '.join(description.training)}")
        return {key: (role, role.required) for key, role in description.training[setting].items()}
    roles = {name: (role, role.required) for name, role in description.inputs.items()}
    for name, role in description.outputs.items():
        roles.setdefault(name, (role, targets))
    return roles


def _check_item(description, case: str, item: dict, roles: dict, base: Path) -> list[Problem]:
    problems, volumes = [], {}
    for name, (role, required) in roles.items():
        if name not in item:
            if required:
                problems.append(Problem(case, "-", f"lacks {name!r} (a {role.kind})"))
            continue
        file = Path(item[name]) if Path(item[name]).is_absolute() else base / item[name]
        try:
            if not file.is_file():
                raise InputError(f"role {name!r}: no such file")
            volume = _read_input(description, name, file)
            if role.kind == "labelmap":
                _check_labelmap(description, role, file, volume.array, required)
            elif not np.ptp(volume.array) > 0:  # read_image has refused NaN and infinite voxels
                raise InputError(f"role {name!r}: every voxel has the same value (an empty or blank image)")
            low, high = PLAUSIBLE_SPACING_MM
            if not all(low <= s <= high for s in volume.spacing):
                raise InputError(f"role {name!r}: voxel spacing {tuple(float(s) for s in volume.spacing)} mm is "
                                 f"outside {low}-{high} mm (a header in metres, or none)")
        except InputError as error:
            problems.append(Problem(case, str(file), str(error)))
            continue
        volumes[name] = (file, volume)
    reference = description.reference if description.reference in volumes else next(iter(volumes), None)
    for name, (file, volume) in volumes.items():
        if reference is not None and not volume.same_grid(volumes[reference][1]):
            problems.append(Problem(case, str(file), f"role {name!r} is not on the grid of {reference!r}: "
                                                     f"{_grid_difference(volume, volumes[reference][1])}"))
    return problems


def format_problems(problems: list[Problem], n_items: int) -> str:
    """The problems as a table (case, file, problem), or one line saying there are none."""
    if not problems:
        return f"no problems in {n_items} cases"
    width = max(len(p.case) for p in problems)
    lines = [f"{'case':<{width}}  problem (file)"]
    lines += [f"{p.case:<{width}}  {p.problem}" + ("" if p.file == "-" or p.file in p.problem else f" ({p.file})")
              for p in problems]
    cases = len({p.case for p in problems})
    lines.append(f"{len(problems)} problem(s) in {cases} of {n_items} cases")
    return "\n".join(lines)
