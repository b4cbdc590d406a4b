"""Normal brain's intensity in the downstream experiment's real pool and healthy pool, as each volume comes.

    python bundles/brain_tumor_fabrication/docs/reports/benefit_intensity.py

The phantom scales every volume so that its 99th brain percentile is about 1000. In a tumour subject that
percentile lies in the tumour, in a healthy one in normal tissue, so the same normal tissue comes at another level;
fabricated subjects keep their healthy subject's scale. Per pool and sequence: the mean and standard deviation over
subjects of the median of normal brain (brain mask, label 0). Reads the pools configs/benefit.yaml simulates (run
the benefit experiment, or benefit_comparison.py, first); writes benefit_intensity.json beside this script.
"""

import json
from pathlib import Path

import numpy as np

from synthmr.io import load_datalist, read_image

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "data" / "phantom"  # configs/benefit.yaml's benefit_data_dir
POOLS = {"annotated pool (seeds 600000-)": "benefit_pool_16", "healthy pool (seeds 620000-)": "benefit_healthy_16"}
SEQUENCES = ("t1n", "t1c", "t2w", "t2f")


def main() -> None:
    report = {}
    for name, folder in POOLS.items():
        medians = {sequence: [] for sequence in SEQUENCES}
        for item in load_datalist(DATA / folder / "datalist.json"):
            normal = (read_image(item["brain"]).array > 0) & (read_image(item["label"]).array == 0)
            for sequence in SEQUENCES:
                medians[sequence].append(float(np.median(read_image(item[sequence]).array[normal])))
        report[name] = {s: {"mean": round(float(np.mean(v)), 1), "sd": round(float(np.std(v)), 1), "n": len(v)}
                        for s, v in medians.items()}
        print(name, {s: f"{v['mean']} ± {v['sd']}" for s, v in report[name].items()})
    (HERE / "benefit_intensity.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
