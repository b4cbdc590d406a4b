"""What an intensity scale costs before any training: the 16 validation cases' real images are passed through a
scale's clip and back (what a perfect generator trained on that scale would write) and judged against the real
images with the held-out protocol (synthmr.methods.liver_mmhcc_mask2mri.quality_report). Release 0.1.0's scale
(the foreground's 0.5th-99.5th percentiles) against release 0.2.0's (INTENSITY_SCALING).

    python bundles/liver_mmhcc_mask2mri/docs/reports/scale_oracle.py   # writes scale_oracle.json beside itself
"""

import json
import tempfile
from pathlib import Path

import numpy as np

from synthmr.io import read_image, write_image
from synthmr.methods import liver_mmhcc_mask2mri as method
from synthmr.phantom.dataset import phantom_datalist
from synthmr.transforms.intensity import IntensityScaling

SCALES = {"foreground_0.1.0": {}, "intensity_scaling_0.2.0": method.INTENSITY_SCALING}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = phantom_datalist("liver", tmp / "validation", n=16, seed=100000, dims=2, size=128, spacing=3.0,
                                 subtype="mmhcc")
        candidates = {}
        for name, options in SCALES.items():
            candidates[name] = []
            for case in cases:
                item = {}
                for sequence in method.SEQUENCES:
                    volume = read_image(case[sequence])
                    scaling = IntensityScaling.fit(volume.array, **options)
                    clipped = scaling.inverse(np.clip(scaling.forward(volume.array.astype(np.float32)), -1.0, 1.0))
                    path = tmp / name / case["case_id"] / f"{sequence}.nii.gz"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    write_image(volume.with_array(clipped.astype(np.float32)), path)
                    item[sequence] = str(path)
                candidates[name].append(item)
        report = method.quality_report(cases, candidates, n_bootstrap=200)
    summary = {name: {"kid_pooled": c["distribution"]["pooled"]["kid"],
                      "fid_pooled": c["distribution"]["pooled"]["fid"]["value"],
                      "contrast_errors": {s: c["contrast"][s]["mean_error"] for s in method.SEQUENCES}}
               for name, c in report["candidates"].items()}
    (Path(__file__).parent / "scale_oracle.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
