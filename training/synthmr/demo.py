"""`synthmr demo`: run a bundle on a simulated phantom case and show inputs, synthetic and real images side by side.

The case comes from the ``demo`` entry of the bundle's tool description (organ, seed, phantom options), so the
demo knows nothing about any one bundle: every input role is filled from the case's image or mask of the role's
``sequence`` (or name; a bundle that takes two cases names a second one whose roles carry a prefix), the bundle runs through :func:`synthmr.bundle.run_bundle` exactly as ``synthmr run``
would, and each output is shown next to the case's real image of the same sequence with their difference.

Written to ``out``: ``inputs/<role>.nii.gz``, ``synthetic/<role>.nii.gz`` and ``demo.png``, all at once (the
folder appears complete or not at all).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from synthmr.bundle import find_bundle, read_tool_description, run_bundle
from synthmr.bundle.runner import check_trust
from synthmr.errors import InputError
from synthmr.io import read_image, write_image
from synthmr.io._atomic import atomic_output, check_destination, check_output_location
from synthmr.phantom import PhantomCase, phantom_class

MAX_COLUMNS = 6  # panels per row of the figure, when one row would be too wide


def run_demo(
    bundle: str | os.PathLike,
    out: str | os.PathLike,
    device: str = "cpu",
    overwrite: bool = False,
    trust_bundle: bool = False,
) -> Path:
    """Run ``bundle`` on its demo phantom case and write the files above to ``out``; returns the PNG's path.

    ``overwrite`` and ``trust_bundle`` are those of :func:`synthmr.bundle.run_bundle`.
    """
    root = find_bundle(bundle)
    description = read_tool_description(root)
    if description.demo is None:
        raise InputError(f"bundle {description.name} has no demo case in its tool description (field 'demo')")
    check_trust(root, trust_bundle)  # before the phantom is simulated: an untrusted bundle stops here
    check_output_location(out, {f"bundle {description.name}": root})
    out = Path(out).absolute()
    check_destination(out, overwrite, what="folder")
    case, filled = phantom_inputs(description)
    with atomic_output(out, overwrite=overwrite) as staging:
        inputs = {name: write_image(volume, staging / "inputs" / f"{name}.nii.gz")
                  for name, (volume, _) in filled.items()}
        shown = {name: (volume.array, is_mask) for name, (volume, is_mask) in filled.items()}
        outputs = run_bundle(root, inputs, staging / "synthetic", device=device, progress=None,
                             trust_bundle=trust_bundle)
        synthetic = {name: read_image(path).array for name, path in outputs.items()}
        _figure(case, description, shown, synthetic, staging / "demo.png")
    return out / "demo.png"


def phantom_inputs(description, seed: int | None = None, source_seed: int | None = None):
    """The bundle's input roles filled from a phantom case of its demo's organ and options (and, for a bundle that
    takes two cases, the roles with the source's prefix from a second one), at the demo's seeds unless given.

    Returns:
        the first case, and role name -> (volume, whether it is a mask) for every role the cases can fill.
    """
    demo = description.demo
    case = phantom_class(demo["organ"])(**demo["phantom"])(demo["seed"] if seed is None else seed)
    source = demo.get("source")
    second = None
    if source:
        second = phantom_class(demo["organ"])(**source["phantom"])(source["seed"] if source_seed is None else source_seed)
    filled = {}
    for name, role in description.inputs.items():
        key, filler = role.sequence or name, case
        if source and name.startswith(source["prefix"]):  # a role of the second case (tumor_t1n: its t1n)
            key, filler = role.sequence or name[len(source["prefix"]):], second
        if key in filler.images or key in filler.masks:
            filled[name] = (filler.volume(key), key in filler.masks)
        elif role.required:
            raise InputError(f"bundle {description.name}: its demo case has no image or mask {key!r}")
    return case, filled


def _figure(
    case: PhantomCase,
    description,
    inputs: dict[str, tuple[np.ndarray, bool]],
    synthetic: dict[str, np.ndarray],
    path: Path,
) -> None:
    """Inputs (role -> (array, is a mask)), then for each output the synthetic image, the real one and
    synthetic - real; in one row, or in rows of at most :data:`MAX_COLUMNS` panels. The axial slice is the one with most lesion in the case, or in a labelmap output when the case
    has none (a healthy scan the bundle put a lesion into)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from synthmr.phantom.preview import radiological_axial

    lesion_key = next((k for k in ("lesion", "tumor", "label") if k in case.masks), None)
    lesion = case.masks[lesion_key] if lesion_key is not None else None
    made = [synthetic[name] for name, role in description.outputs.items() if role.kind == "labelmap"]
    if (lesion is None or not lesion.any()) and made and made[0].any():
        lesion = made[0]
    z = None
    if len(case.spacing) == 3 and lesion is not None:
        z = int(np.argmax((lesion > 0).sum(axis=(0, 1))))

    def axial(array: np.ndarray) -> np.ndarray:
        scratch = PhantomCase({"x": array}, {}, case.spacing, case.origin, case.direction)
        return radiological_axial(scratch, "x", z)

    inputs_row, groups = [], []  # panels: (title, image, colour map, window); a group per output
    for name, (array, is_mask) in inputs.items():
        image = axial(array)
        window = None if is_mask else tuple(np.percentile(image, [1, 99.5]))
        inputs_row.append((f"{name} (input)", image, "viridis" if is_mask else "gray", window))
    for name, role in description.outputs.items():
        image = axial(synthetic[name])
        if role.kind == "labelmap":
            groups.append([(f"{name} (synthetic)", image, "viridis", None)])
            continue
        real = case.images.get(role.sequence or name)
        window = tuple(np.percentile(image if real is None else axial(real), [1, 99.5]))
        group = [(f"{name} (synthetic)", image, "gray", window)]
        if real is not None:
            real = axial(real)
            group.append((f"{name} (real)", real, "gray", window))
            limit = float(np.percentile(np.abs(image - real), 99.5)) or 1.0
            group.append(("synthetic - real", image - real, "RdBu_r", (-limit, limit)))
        groups.append(group)

    # One row when it is short; else the inputs wrapped at MAX_COLUMNS panels, then rows of whole output groups.
    if len(inputs_row) + sum(map(len, groups)) <= MAX_COLUMNS:
        rows = [inputs_row + [panel for group in groups for panel in group]]
    else:
        rows = [inputs_row[i:i + MAX_COLUMNS] for i in range(0, len(inputs_row), MAX_COLUMNS)] + [[]]
        for group in groups:
            if rows[-1] and len(rows[-1]) + len(group) > MAX_COLUMNS:
                rows.append([])
            rows[-1].extend(group)
    columns = max(len(row) for row in rows)
    outline = None if lesion is None else axial(lesion) > 0
    fig, axes = plt.subplots(len(rows), columns, figsize=(2.6 * columns, 2.9 * len(rows)), squeeze=False,
                             facecolor="black")
    for ax in axes.flat:
        ax.set_axis_off()
    for row, panels in zip(axes, rows):
        for ax, (title, image, cmap, window) in zip(row, panels):
            vmin, vmax = window if window else (None, None)
            shown = ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            if outline is not None and outline.any():
                ax.contour(outline, levels=[0.5], colors=["orange"], linewidths=0.6)
            if cmap == "RdBu_r":
                fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(colors="white", labelsize=6)
            ax.set_title(title, color="white", fontsize=8)
    fig.suptitle(f"{description.name} on a simulated {case.meta.get('organ', '')} phantom case "
                 f"(seed {case.meta.get('seed', '?')}; lesion outlined)", color="white", fontsize=9)
    fig.tight_layout(pad=0.4, rect=(0, 0, 1, 1 - 0.08 / len(rows)))
    fig.savefig(path, dpi=110, facecolor="black")
    plt.close(fig)
