"""The card's lesion-edit table: on 8 phantom subjects (seeds 230000-230007, used by no training, selection or
held-out set), each subject's lesion map is edited with `synthmr lesion --organ_labels 1` in five ways (moved 24 mm
toward the brain's centre, shrunk to 50 %, grown to 200 %, mirrored across the mid-sagittal plane, replaced by the
next subject's lesion), the five sequences are synthesised from the edited map with `synthmr run`, and the synthetic
Gd-T1w image's enhancing region is compared with the edited tumour and with the tumour before the edit
(synthmr.methods.brain_lesion2mpmri.enhancing_overlap).

    python bundles/brain_lesion2mpmri/docs/reports/lesion_edits.py   # writes lesion_edits.json beside itself

tests/test_brain_lesion2mpmri_bundle.py runs the same `edit` and `overlap` on the bundle's sample.
"""

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from synthmr.io import read_image
from synthmr.methods import brain_lesion2mpmri as method

BUNDLE = Path(__file__).resolve().parents[2]
SEEDS = range(230000, 230008)
SHIFT_MM = 24.0
EDITS = ("translate", "shrink", "grow", "mirror", "transplant")


def synthmr(*args) -> None:
    run = subprocess.run([sys.executable, "-m", "synthmr", *map(str, args)], capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"synthmr {' '.join(map(str, args[:2]))}: {run.stderr[-2000:]}")


def edit(lesion_map: Path, kind: str, out: Path, donor: Path | None = None) -> Path:
    """``lesion_map`` edited by ``kind`` (one of :data:`EDITS`) with ``synthmr lesion``, written to ``out``."""
    options = {
        "shrink": ["--scale", "0.5"],
        "grow": ["--scale", "2"],
        "mirror": ["--mirror"],
        "transplant": ["--transplant", donor],
    }.get(kind)
    if kind == "translate":  # toward the brain's centre, so that the moved tumour stays inside it
        volume = read_image(lesion_map)
        labels = np.rint(volume.array)
        step = np.argwhere(labels > 0).mean(axis=0) - np.argwhere(labels == 4).mean(axis=0)
        step = step / max(np.linalg.norm(step), 1e-6) * SHIFT_MM / np.asarray(volume.spacing)
        options = [f"--translate={','.join(str(int(round(v))) for v in step)}"]
    synthmr("lesion", "--lesion", lesion_map, "--organ_labels", "1", *options, "--out", out)
    return out


def overlap(bundle: Path, lesion_map: Path, edited: Path, out: Path) -> dict:
    """Run the bundle on ``edited`` into ``out``; the enhancing overlap of its Gd-T1w before and after the edit."""
    synthmr("run", bundle, "--input", f"lesion_map={edited}", "--out", out, "--device", "cpu")
    t1c = read_image(out / "t1c.nii.gz")
    assert t1c.same_grid(read_image(edited)), "the synthetic Gd-T1w is not on the lesion map's grid"
    return method.enhancing_overlap(t1c.array, read_image(lesion_map).array, read_image(edited).array)


def figure(lesion_map: Path, work: Path, out: Path) -> None:
    """One row per edit: the edited map, and the synthetic Gd-T1w, FLAIR and APTw at the edited tumour's largest
    axial slice, the edited tumour outlined (radiological view: anterior up, the patient's left on the right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import SimpleITK as sitk

    def axial(path: Path) -> np.ndarray:  # (z, y, x) in LPS: each [z] is a radiological axial slice
        return sitk.GetArrayFromImage(sitk.DICOMOrient(read_image(path).to_sitk(), "LPS"))

    columns = [("lesion map", None), ("Gd-T1w", "t1c"), ("FLAIR", "t2f"), ("APTw (%)", "aptw")]
    fig, axes = plt.subplots(len(EDITS), len(columns), figsize=(2.2 * len(columns), 2.4 * len(EDITS)))
    for row, kind in enumerate(EDITS):
        edited = np.rint(axial(work / f"{kind}.nii.gz"))
        z = int(np.argmax((edited == 4).sum(axis=(1, 2))))
        for column, (title, sequence) in enumerate(columns):
            ax = axes[row, column]
            if sequence is None:
                ax.imshow(edited[z], cmap="viridis", vmin=0, vmax=4, interpolation="nearest")
            else:
                image = axial(work / kind / f"{sequence}.nii.gz")[z]
                low, high = (-1.0, 5.0) if sequence == "aptw" else np.percentile(image[edited[z] > 0], [1, 99.5])
                ax.imshow(image, cmap="gray", vmin=low, vmax=high)
                ax.contour((edited[z] == 4).astype(float), levels=[0.5], colors="orange", linewidths=0.6)
            ax.set_axis_off()
            ax.set_title(f"{kind}: {title}" if column == 0 else title, fontsize=8)
    fig.suptitle(f"{lesion_map.parent.name}: edited with synthmr lesion, synthesised by brain_lesion2mpmri", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


def main() -> None:
    from synthmr.phantom.dataset import phantom_datalist

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subjects = phantom_datalist("brain", tmp / "subjects", n=len(SEEDS), seed=SEEDS.start, dims=3, spacing=2.0)
        for index, subject in enumerate(subjects):
            donor = Path(subjects[(index + 1) % len(subjects)]["lesion_map"])
            for kind in EDITS:
                work = tmp / subject["case_id"] / kind
                edited = edit(Path(subject["lesion_map"]), kind, work.with_suffix(".nii.gz"), donor)
                row = {"case_id": subject["case_id"], "edit": kind,
                       **overlap(BUNDLE, Path(subject["lesion_map"]), edited, work)}
                rows.append(row)
                print(row, flush=True)
            if index == 0:
                figure(Path(subject["lesion_map"]), tmp / subject["case_id"], Path(__file__).parent / "lesion_edits.png")
    summary = {}
    for kind in EDITS:
        mine = [r for r in rows if r["edit"] == kind]
        summary[kind] = {
            "dice_edited_median": float(np.median([r["dice_edited"] for r in mine])),
            "dice_edited_quartiles": [float(np.percentile([r["dice_edited"] for r in mine], q)) for q in (25, 75)],
            "dice_before_median": float(np.median([r["dice_before"] for r in mine])),
            "edited_beats_before": sum(r["dice_edited"] > r["dice_before"] for r in mine),
            "subjects": len(mine),
        }
    report = {"seeds": [SEEDS.start, SEEDS.stop - 1], "shift_mm": SHIFT_MM, "enhancing": method.ENHANCING,
              "weights_sha256": hashlib.sha256((BUNDLE / "models" / "model.pt").read_bytes()).hexdigest(),
              "summary": summary, "cases": rows}
    (Path(__file__).parent / "lesion_edits.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
