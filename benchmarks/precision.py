"""What bf16 autocast changes in each image-to-image bundle's outputs, and what it saves, against fp32 in one run.

For every bundle whose inference runs :class:`synthmr.inference.Synthesizer` (``evaluator#precision``), its
inference config runs on phantom cases of its tool description's demo organ and options, at **validation** seeds
(100000 and up, a bundle's second case 100100 and up: a bundle's ``precision`` is a choice, made on validation data, docs/design.md), once in fp32 and once
in bf16, with the shipped weights. Per output sequence and case:

- ``max_abs`` and ``mean_abs``: |bf16 - fp32| as a fraction of the fp32 output's 0.5-99.5 percentile range (the
  window a reader would view it in), over the bounding box of the voxels bf16 changes (:func:`compare`);
- ``ssim``: SSIM of bf16 against fp32 there, with that range (:func:`synthmr.metrics.image.paired_metrics`, MONAI's).

The tolerance every bundle is held to (``TOLERANCE``): mean_abs <= 0.5 % and SSIM >= 0.99 in every case and
sequence; ``holds`` says whether bf16 met it. Seconds per case of each precision come from the same process, fp32
and bf16 alternating case by case, so a busy machine weighs on both; their ratio is the speed-up.

    python benchmarks/precision.py [--cases 3] [--threads 1] [--out benchmarks/results/precision.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
BUNDLES = ("breast_dce_pre2post", "liver_mmhcc_mask2mri", "brain_lesion2mpmri", "brain_tumor_fabrication")
VALIDATION_SEED = 100000
TOLERANCE = {"mean_abs": 0.005, "ssim": 0.99}


def validation_case(bundle: Path, index: int, folder: Path) -> dict:
    """The bundle's input roles filled from one validation phantom case of its demo organ and options (a second
    case's for the roles of a bundle that takes two: the validation annotated range, 100100 and up)."""
    from synthmr.bundle import read_tool_description
    from synthmr.demo import phantom_inputs
    from synthmr.io import write_image

    _, filled = phantom_inputs(read_tool_description(bundle), VALIDATION_SEED + index, VALIDATION_SEED + 100 + index)
    item = {"case_id": f"case_{index:04d}"}
    for name, (volume, _) in filled.items():
        item[name] = str(write_image(volume, folder / item["case_id"] / f"{name}.nii.gz"))
    return item


def run_inference(bundle: Path, item: dict, out: Path, precision: str, **overrides) -> tuple[dict, float]:
    """The bundle's inference config on one case (``overrides``: further config ids); its outputs (key -> array) and
    the seconds of its run."""
    from monai.bundle import ConfigWorkflow

    from synthmr.io import read_image

    config = next(bundle.glob("configs/inference.*"))
    workflow = ConfigWorkflow(config_file=str(config), workflow_type="inference", bundle_root=str(bundle),
                              input=item, output_dir=str(out), device="$torch.device('cpu')",
                              **{"evaluator#precision": precision, **overrides})
    workflow.initialize()
    start = time.perf_counter()
    workflow.run()
    seconds = time.perf_counter() - start
    workflow.finalize()
    return {path.name.split(".")[0]: read_image(path).array for path in (out / item["case_id"]).glob("*.nii.gz")}, seconds


def compare(fp32: np.ndarray, bf16: np.ndarray) -> dict:
    """The differences inside the bounding box of the voxels bf16 changes: the whole body for a slice generator, the
    refined ROI for a 3D refiner that leaves the rest of the volume untouched (over the whole volume its mean would
    be diluted by voxels no network computed)."""
    from synthmr.metrics.image import paired_metrics

    low, high = np.percentile(fp32, [0.5, 99.5])
    scale = float(high - low) or 1.0
    changed = np.argwhere(bf16 != fp32)
    if len(changed) == 0:
        return {"max_abs": 0.0, "mean_abs": 0.0, "ssim": 1.0, "box": None}
    box = tuple(slice(int(a), int(b) + 1) for a, b in zip(changed.min(axis=0), changed.max(axis=0)))
    fp32, bf16 = fp32[box].astype(np.float32), bf16[box].astype(np.float32)
    difference = np.abs(bf16.astype(np.float64) - fp32) / scale
    ssim = paired_metrics(bf16, fp32, data_range=scale)["ssim"]
    return {"max_abs": float(difference.max()), "mean_abs": float(difference.mean()), "ssim": float(ssim),
            "box": list(fp32.shape)}


def measure(name: str, n_cases: int, work: Path) -> dict:
    bundle = REPO / "bundles" / name
    cases, seconds = [], {"fp32": [], "bf16": []}
    for index in range(n_cases):
        item = validation_case(bundle, index, work / name / "inputs")
        outputs = {}
        for precision in ("fp32", "bf16"):
            outputs[precision], took = run_inference(bundle, item, work / name / precision, precision)
            seconds[precision].append(took)
        cases.append({key: compare(outputs["fp32"][key], outputs["bf16"][key]) for key in outputs["fp32"]})
    worst = {"mean_abs": max(v["mean_abs"] for case in cases for v in case.values()),
             "max_abs": max(v["max_abs"] for case in cases for v in case.values()),
             "ssim": min(v["ssim"] for case in cases for v in case.values())}
    return {
        "seeds": [VALIDATION_SEED + i for i in range(n_cases)],
        "cases": cases,
        "worst": worst,
        "holds": worst["mean_abs"] <= TOLERANCE["mean_abs"] and worst["ssim"] >= TOLERANCE["ssim"],
        "seconds_per_case": {p: float(np.mean(v)) for p, v in seconds.items()},
        "speedup_bf16": float(np.mean(seconds["fp32"]) / np.mean(seconds["bf16"])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bundles", nargs="*", default=list(BUNDLES))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "precision.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = {"tolerance": TOLERANCE, "threads": args.threads, "machine": platform.machine(),
              "processor": platform.processor(), "bundles": {}}
    with tempfile.TemporaryDirectory() as work:
        for name in args.bundles:
            report["bundles"][name] = result = measure(name, args.cases, Path(work))
            print(f"{name}: bf16 worst mean |diff| {result['worst']['mean_abs']:.2%}, max {result['worst']['max_abs']:.2%}, "
                  f"SSIM {result['worst']['ssim']:.4f} -> {'holds' if result['holds'] else 'does not hold'}; "
                  f"fp32 {result['seconds_per_case']['fp32']:.1f} s, bf16 {result['seconds_per_case']['bf16']:.1f} s "
                  f"per case (x{result['speedup_bf16']:.2f})", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
