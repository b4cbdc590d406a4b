"""Cases per minute of `synthmr generate` on this machine, with 1 and 2 processes (torchrun), in one run.

The bundle (default liver_mmhcc_mask2mri, the paper's 1,000-case set) generates ``--n`` cases from its own phantom
training cases (made once, before timing) with each layout:

- 1 process, 1 thread: the baseline every ratio is taken against;
- 1 process, all threads (``--threads``, default every core);
- K processes of ``threads / K`` threads each under torchrun, for K in ``--ranks``.

Wall time covers the whole command (start-up, model load, writing every file, the final move); speed-up is against
the baseline, scaling efficiency the speed-up over the number of cores the layout uses. The sets of every layout
are checked to be byte-identical: sharding changes the speed, never the cases.

    python benchmarks/generate.py [--bundle liver_mmhcc_mask2mri] [--n 1000] [--ranks 2]
                                  [--out benchmarks/results/generate.json]
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(bundle: str, n: int, out: Path, ranks: int, threads: int) -> float:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks)] if ranks > 1 else [
        sys.executable]
    command = [*launcher, "-m", "synthmr", "generate", bundle, "-n", str(n), "--out", str(out), "--seed", "0",
               "--device", "cpu"]
    start = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)},
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def same_tree(a: Path, b: Path) -> bool:
    comparison = filecmp.dircmp(a, b)
    if comparison.left_only or comparison.right_only or comparison.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, comparison.common_files, shallow=False)
    return not mismatch and not errors and all(same_tree(a / d, b / d) for d in comparison.common_dirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="liver_mmhcc_mask2mri")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--ranks", type=int, nargs="*", default=[2])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "generate.json")
    args = parser.parse_args()
    layouts = [(1, 1), (1, args.threads), *((k, max(1, args.threads // k)) for k in args.ranks)]
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        run(args.bundle, 1, work / "warm-up", 1, 1)  # simulates the default source cases once, untimed
        results = []
        for ranks, threads in layouts:
            folder = work / f"ranks{ranks}_threads{threads}"
            seconds = run(args.bundle, args.n, folder, ranks, threads)
            results.append({"ranks": ranks, "threads_per_rank": threads, "seconds": seconds,
                            "cases_per_minute": 60 * args.n / seconds,
                            "identical_to_baseline": same_tree(work / "ranks1_threads1", folder)})
        baseline = results[0]["seconds"]
        for result in results:
            result["speedup"] = baseline / result["seconds"]
            result["efficiency"] = result["speedup"] / (result["ranks"] * result["threads_per_rank"])
            print(f"{result['ranks']} process(es) x {result['threads_per_rank']} thread(s): {args.n} cases in "
                  f"{result['seconds']:.1f} s, {result['cases_per_minute']:.0f} cases/min, x{result['speedup']:.2f}, "
                  f"efficiency {result['efficiency']:.2f}, identical: {result['identical_to_baseline']}", flush=True)
    report = {"bundle": args.bundle, "n": args.n, "cpu_count": os.cpu_count(), "processor": platform.processor(),
              "layouts": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
