"""How often does each bundle's input check pass phantom cases like its training data, and warn on images it was
not trained for? (docs/design.md, *The input check*)

For every bundle with a configs/input_summary.yaml, the cases of its ``input_check_validation`` drawn from other
seeds (``--seed``; the shipped summaries' thresholds were chosen on seeds 100000-100063) are scored against the
shipped models/input_summary.json as they are, and changed into inputs the bundle was not trained for:

- ``other organ``: every scored input (and the reference) replaced by another organ's phantom case (brain for the
  liver and breast bundles, liver for the brain bundles; a labelmap input gets that organ's mask as label 1 and its
  tumour as the highest label);
- ``noise``: uniform noise on the case's grid (a labelmap: uniform random labels);
- ``zoomed x1.5`` and ``zoomed x0.67``: the content scaled about the grid's centre, the grid kept (an image resampled
  with the wrong spacing);
- ``spacing x2``: the header's spacing doubled, the voxels kept;
- ``flipped``: the second array axis reversed (anterior and posterior swapped; a left-right flip of a symmetric
  organ is no error the check could or should see).

    python docs/reports/input_check.py --seed 205000 --out docs/reports/input_check.json

Writes, per bundle and kind, the share of cases that pass and the scores' quartiles.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage

from synthmr.bundle.description import read_tool_description
from synthmr.bundle.input_check import load_summary, score_case, scored_roles
from synthmr.io import Volume, read_image
from synthmr.phantom.dataset import phantom_datalist

REPOSITORY = Path(__file__).resolve().parents[2]
BUNDLES = ("liver_mmhcc_mask2mri", "breast_dce_pre2post", "brain_lesion2mpmri", "brain_tumor_fabrication")
# Another organ's phantom for each bundle: (organ, options, its image keys in order, organ mask key, tumour key).
OTHER_ORGAN = {
    "liver_mmhcc_mask2mri": ("brain", {"dims": 2}, ["t1n", "t1c", "t2w", "t2f"], "brain", "label"),
    "breast_dce_pre2post": ("brain", {"dims": 2}, ["t1n", "t1c", "t2w", "t2f"], "brain", "label"),
    "brain_lesion2mpmri": ("liver", {"dims": 3, "spacing": 2.0}, ["t1fs_arterial", "t1fs_portal", "t2"], "liver",
                           "tumor"),
    "brain_tumor_fabrication": ("liver", {"dims": 3, "spacing": 2.0}, ["t1fs_arterial", "t1fs_portal", "t2"],
                                "liver", "tumor"),
}


def _cases(bundle_dir: Path, seed: int, n: int, data_dir: Path) -> list[dict]:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(bundle_dir / "configs" / "train.yaml"), str(bundle_dir / "configs" / "input_summary.yaml")])
    parser.update({"bundle_root": str(bundle_dir), "dataset_dir": str(data_dir), "input_check_seed": seed,
                   "n_input_check_cases": n})
    return parser.get_parsed_content("input_check_validation")


def _labelmap_max(description, role: str) -> int:
    labels = description.inputs[role].labels
    return int(max(labels)) if labels else 1


def _replace(volume: Volume, array: np.ndarray, spacing=None) -> Volume:
    return Volume(array, volume.spacing if spacing is None else spacing, volume.origin, volume.direction)


def _zoom(array: np.ndarray, factor: float, labelmap: bool) -> np.ndarray:
    centre = (np.asarray(array.shape) - 1) / 2
    matrix = np.full(array.ndim, 1 / factor)
    return ndimage.affine_transform(array.astype(np.float32), matrix, offset=centre - matrix * centre,
                                    order=0 if labelmap else 1, mode="constant")


def _fit(array: np.ndarray, shape) -> np.ndarray:
    """``array`` cropped or zero-padded about its centre to ``shape``."""
    out = np.zeros(shape, dtype=np.float32)
    source, target = [], []
    for have, want in zip(array.shape, shape):
        size = min(have, want)
        source.append(slice((have - size) // 2, (have - size) // 2 + size))
        target.append(slice((want - size) // 2, (want - size) // 2 + size))
    out[tuple(target)] = array[tuple(source)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data_dir", type=Path, default=Path(tempfile.gettempdir()) / "synthmr_input_check")
    parser.add_argument("--bundles", nargs="*", default=list(BUNDLES))
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    report = {"command": f"python docs/reports/input_check.py --seed {args.seed} --n {args.n}", "seed": args.seed,
              "n": args.n, "bundles": {}}
    for name in args.bundles:
        bundle_dir = REPOSITORY / "bundles" / name
        description = read_tool_description(bundle_dir)
        summary = load_summary(bundle_dir)
        roles = sorted(set(scored_roles(description)) | {description.reference})
        organ, options, keys, mask_key, tumour_key = OTHER_ORGAN[name]
        others = phantom_datalist(organ, args.data_dir / f"{name}_other_{organ}_{args.seed}", n=args.n,
                                  seed=args.seed, **options)
        kinds: dict[str, list[float]] = {}
        for index, case in enumerate(_cases(bundle_dir, args.seed, args.n, args.data_dir / name)):
            volumes = {role: read_image(case[role]) for role in roles}
            labelmap = {role: description.inputs[role].kind == "labelmap" for role in roles}
            other = others[index]
            changed = {
                "in distribution": volumes,
                "noise": {role: _replace(v, rng.integers(0, _labelmap_max(description, role) + 1, v.array.shape)
                                         .astype(np.float32) if labelmap[role] else
                                         rng.uniform(0, 1000, v.array.shape).astype(np.float32))
                          for role, v in volumes.items()},
                "zoomed x1.5": {role: _replace(v, _zoom(v.array, 1.5, labelmap[role])) for role, v in volumes.items()},
                "zoomed x0.67": {role: _replace(v, _zoom(v.array, 2 / 3, labelmap[role]))
                                 for role, v in volumes.items()},
                "spacing x2": {role: _replace(v, v.array, tuple(2 * s for s in v.spacing))
                               for role, v in volumes.items()},
                "flipped": {role: _replace(v, np.flip(v.array, axis=1).copy()) for role, v in volumes.items()},
            }
            other_volumes = {}
            for position, role in enumerate(roles):
                if labelmap[role]:
                    mask = read_image(other[mask_key])
                    tumour = read_image(other[tumour_key]).array > 0
                    array = np.where(tumour, _labelmap_max(description, role), mask.array > 0).astype(np.float32)
                else:
                    mask = read_image(other[keys[position % len(keys)]])
                    array = np.asarray(mask.array, dtype=np.float32)
                # on the bundle's grid (another organ's phantom has its own), the voxel size kept
                if array.ndim > volumes[role].ndim:
                    array = array[..., array.shape[-1] // 2]
                other_volumes[role] = Volume(_fit(array, volumes[role].array.shape), mask.spacing[: volumes[role].ndim],
                                             volumes[role].origin, volumes[role].direction)
            changed["other organ"] = other_volumes
            for kind, case_volumes in changed.items():
                kinds.setdefault(kind, []).append(score_case(description, case_volumes, summary).score)
        threshold = float(summary["threshold"])
        report["bundles"][name] = {
            "threshold": threshold,
            "pass_rate_stated": summary["pass_rate"],
            "kinds": {kind: {"passed": float(np.mean(np.asarray(scores) <= threshold)),
                             "warned": float(np.mean(np.asarray(scores) > threshold)),
                             "score_quartiles": [round(float(q), 3) for q in np.percentile(scores, (25, 50, 75))]}
                      for kind, scores in kinds.items()},
        }
        print(name, json.dumps({k: v["passed"] for k, v in report["bundles"][name]["kinds"].items()}), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
