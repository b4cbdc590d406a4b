"""Phantom throughput: cases per second for each organ at its default size, 2D and 3D.

Absolute numbers depend on the machine, so each row also gives its time per case as a multiple of a fixed
reference workload (a 3D Gaussian filter of a 128^3 float32 volume) measured in the same run: that ratio
is comparable across machines and across versions.

    python benchmarks/phantom.py [--repeats 3] [--out benchmarks/results/phantom.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from synthmr.phantom import PHANTOMS, phantom_class


def seconds_per_call(fn, repeats: int) -> float:
    fn(0)  # warm-up: template loading, caches, lazy imports
    start = time.perf_counter()
    for i in range(repeats):
        fn(i + 1)
    return (time.perf_counter() - start) / repeats


def reference_workload(_seed: int) -> None:
    ndimage.gaussian_filter(np.ones((128, 128, 128), np.float32), 2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "phantom.json"))
    args = parser.parse_args()

    reference = seconds_per_call(reference_workload, args.repeats)
    rows = []
    for organ in PHANTOMS:
        for dims in (2, 3):
            phantom = phantom_class(organ)(dims=dims)
            shape = phantom(0).images[phantom.sequences[0]].shape
            seconds = seconds_per_call(phantom, args.repeats)
            rows.append(
                {
                    "organ": organ,
                    "dims": dims,
                    "shape": list(shape),
                    "seconds_per_case": seconds,
                    "cases_per_second": 1.0 / seconds,
                    "ratio_to_reference": seconds / reference,
                }
            )

    print(f"reference workload: {reference * 1000:.1f} ms   ({platform.processor() or platform.machine()})")
    print(f"{'organ':8} {'dims':>4} {'shape':>16} {'s/case':>8} {'cases/s':>8} {'x ref':>7}")
    for r in rows:
        shape = "x".join(map(str, r["shape"]))
        print(
            f"{r['organ']:8} {r['dims']:>4} {shape:>16} {r['seconds_per_case']:8.3f} "
            f"{r['cases_per_second']:8.2f} {r['ratio_to_reference']:7.2f}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"reference_seconds": reference, "repeats": args.repeats, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
