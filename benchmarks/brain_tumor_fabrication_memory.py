"""Peak memory of brain_tumor_fabrication's inference on a BraTS-sized case: 240 x 240 x 155, four sequences.

Two processes, measured in one run on the same input files so that the machine and libraries weigh on both alike:

- baseline: Python with synthmr and torch imported reads the eight input volumes (the healthy scan's and the tumour
  case's four sequences) and the two masks, and does nothing else: what any tool holding the case must pay;
- bundle: what ``inference.yaml`` runs (:class:`synthmr.methods.brain_tumor_fabrication.TumorFabricator`): reads
  and checks the inputs, TF-Aug, TF-GAN on the tumour's ROI resampled to the 2 mm the refiner was trained at, and
  writes the four sequences and the label.

Each is a fresh process; its peak resident set size (``ru_maxrss``) is the number. The ratio bundle/baseline says
what the method adds to holding the case. The issue's bound is 8 GB (10^9 bytes) for the bundle on the CPU.

The inputs are phantom subjects simulated on the BraTS grid (``grid="brats"``, 1 mm), a healthy one and a
pre-operative tumour one. ``--weights`` defaults to the shipped ``models/model.pt``; peak memory does not depend on
the weights' values, so ``--random-weights`` measures a freshly initialised refiner of the same layout (and says so).

    python benchmarks/brain_tumor_fabrication_memory.py [--out benchmarks/results/brain_tumor_fabrication_memory.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "brain_tumor_fabrication"
SEQUENCES = ("t1n", "t1c", "t2w", "t2f")

READ_ONLY = """
import json, resource, sys
import torch, synthmr.methods.brain_tumor_fabrication
from synthmr.io import read_image
item = json.loads(sys.argv[1])
volumes = [read_image(path) for key, path in item.items() if key != "case_id"]
print(json.dumps({"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""

BUNDLE_RUN = """
import json, resource, sys
import torch
from monai.bundle import ConfigParser
from synthmr.methods.brain_tumor_fabrication import TumorFabricator
item, weights, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
torch.set_num_threads(int(sys.argv[4]))
parser = ConfigParser()
parser.read_config(sys.argv[5])
network = parser.get_parsed_content("network_def")
network.load_state_dict(torch.load(weights, weights_only=True))
TumorFabricator(network, [item], out, model_spacing=(2.0, 2.0, 2.0), overwrite=True).run()
print(json.dumps({"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def simulate(folder: Path) -> dict:
    """A healthy and a pre-operative tumour phantom subject on the BraTS grid, as one inference case."""
    from synthmr.phantom.brain import BrainPhantom
    from synthmr.io import write_image

    healthy = BrainPhantom(grid="brats", tumor_probability=0.0)(620100)
    tumour = BrainPhantom(grid="brats", cavity_probability=0.0)(620101)
    item = {"case_id": "brats_sized"}
    for prefix, case, masks in (("", healthy, ("brain",)), ("tumor_", tumour, ("label", "brain"))):
        for key in (*SEQUENCES, *masks):
            volume = case.volume(key)
            item[prefix + key] = str(write_image(volume, folder / f"{prefix}{key}.nii.gz"))
    return item


def peak(script: str, *arguments: str) -> int:
    result = subprocess.run([sys.executable, "-c", script, *arguments], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return int(json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_bytes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=str(BUNDLE / "models" / "model.pt"))
    parser.add_argument("--random-weights", action="store_true", help="a freshly initialised refiner (memory only)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "brain_tumor_fabrication_memory.json"))
    args = parser.parse_args()

    import torch
    from monai.bundle import ConfigParser

    from synthmr.io import read_image

    config = str(BUNDLE / "configs" / "inference.yaml")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        weights = args.weights
        if args.random_weights:
            reader = ConfigParser()
            reader.read_config(config)
            weights = str(scratch / "random.pt")
            torch.save(reader.get_parsed_content("network_def").state_dict(), weights)
        elif not Path(weights).is_file():
            raise SystemExit(f"{weights}: no such file; train the bundle first, or measure with --random-weights")
        item = simulate(scratch / "case")
        shape = "x".join(map(str, read_image(item["t1n"]).array.shape))
        baseline = peak(READ_ONLY, json.dumps(item))
        bundle = peak(BUNDLE_RUN, json.dumps(item), weights, str(scratch / "out"), str(args.threads), config)

    gb = 1e9
    result = {
        "case": f"{shape}, four sequences (healthy) + four sequences and label (tumour case), 1 mm",
        "weights": "random (memory only)" if args.random_weights else weights,
        "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
        "baseline_read_inputs_peak_gb": baseline / gb,
        "bundle_inference_peak_gb": bundle / gb,
        "ratio_bundle_to_baseline": bundle / baseline,
        "bound_gb": 8.0,
    }
    print(f"brain_tumor_fabrication inference, peak resident memory on {result['case']}")
    print(f"  baseline (read the inputs): {result['baseline_read_inputs_peak_gb']:.2f} GB")
    print(f"  bundle inference:           {result['bundle_inference_peak_gb']:.2f} GB "
          f"(x{result['ratio_bundle_to_baseline']:.2f}; bound 8 GB)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
