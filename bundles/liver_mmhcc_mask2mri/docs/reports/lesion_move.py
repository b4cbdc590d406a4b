"""The card's lesion-move table: on 20 phantom cases (seeds 220000-220019, used by no training, selection or
held-out set), each case's tumour is moved 45 mm left or right (the direction that keeps more of it inside the
liver) with `synthmr lesion`, the three sequences are synthesised with `synthmr run` (the unedited tumour given as
source_tumor), and the synthetic arterial image's hyperenhancing region is compared with the moved tumour and with
the place the tumour left (synthmr.methods.liver_mmhcc_mask2mri.moved_tumour_overlap).

    python bundles/liver_mmhcc_mask2mri/docs/reports/lesion_move.py   # writes lesion_move.json beside itself
"""

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from synthmr.io import read_image
from synthmr.methods import liver_mmhcc_mask2mri as method
from synthmr.phantom.dataset import phantom_datalist

BUNDLE = Path(__file__).resolve().parents[2]
SEEDS = range(220000, 220020)
SHIFT_MM = 45.0


def synthmr(*args) -> None:
    run = subprocess.run([sys.executable, "-m", "synthmr", *map(str, args)], capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(run.stderr)


def moved_tumour(case: dict, out: Path) -> Path:
    """The tumour moved by SHIFT_MM along the first axis, in the direction that keeps more of it in the liver."""
    best, best_size = None, -1
    for sign in (1, -1):
        path = out / f"tumor_{'plus' if sign > 0 else 'minus'}.nii.gz"
        synthmr("lesion", "--lesion", case["tumor"], "--organ", case["liver"], f"--translate={sign * SHIFT_MM},0",
                "--unit", "mm", "--out", path)
        size = int((read_image(path).array != 0).sum())
        if size > best_size:
            best, best_size = path, size
    return best


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for case in phantom_datalist("liver", tmp / "cases", n=len(SEEDS), seed=SEEDS.start, dims=2, size=128,
                                     spacing=3.0, subtype="mmhcc"):
            work = tmp / case["case_id"]
            work.mkdir()
            moved = moved_tumour(case, work)
            inputs = [f"{key}={case[key]}" for key in (*method.SEQUENCES, "liver")]
            inputs += [f"tumor={moved}", f"source_tumor={case['tumor']}"]
            synthmr("run", BUNDLE, *(w for value in inputs for w in ("--input", value)), "--out", work / "out",
                    "--device", "cpu")
            old, new = read_image(case["tumor"]).array != 0, read_image(moved).array != 0
            row = {"case_id": case["case_id"], "moved_pixels": int(new.sum()), "left_pixels": int((old & ~new).sum())}
            row.update(method.moved_tumour_overlap(read_image(work / "out" / "t1fs_arterial.nii.gz").array,
                                                   read_image(case["liver"]).array, old, new))
            rows.append(row)
            print(row, flush=True)
    keys = ("dice_moved", "dice_old_place", "old_place_hyperenhancing")
    summary = {key: {"median": float(np.median([r[key] for r in rows])),
                     "quartiles": [float(np.percentile([r[key] for r in rows], q)) for q in (25, 75)]}
               for key in keys}
    summary["moved_beats_old_place"] = sum(r["dice_moved"] > r["dice_old_place"] for r in rows)
    report = {"seeds": [SEEDS.start, SEEDS.stop - 1], "shift_mm": SHIFT_MM,
              "weights_sha256": hashlib.sha256((BUNDLE / "models" / "model.pt").read_bytes()).hexdigest(),
              "summary": summary, "cases": rows}
    (Path(__file__).parent / "lesion_move.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
