"""Time each card's *Train on your data* commands as written, training one epoch: the cards' time per epoch.

The commands are read from the cards (as tests/test_train_on_your_data.py reads them) and run unchanged in a
scratch folder, except that each training gets one epoch and a validation after it. One torch thread per process
(``OMP_NUM_THREADS=1``, as the shipped trainings ran); the epoch's time is the trainer's own log line.

    python benchmarks/train_on_your_data.py [BUNDLE ...] [--work DIR]

Writes benchmarks/results/train_on_your_data.json (a copy is kept in docs/benchmarks/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_train_on_your_data import SMALLER, card_commands  # noqa: E402  (the one reader of the cards' blocks)

ONE_EPOCH = {
    "liver_mmhcc_mask2mri": "--max_epochs 1",
    "breast_dce_patch_cgan": "--max_epochs 1",
    "breast_dce_pre2post": "--epochs_constant 1 --epochs_decay 0",
    "brain_lesion2mpmri": "--epochs_constant 1 --epochs_decay 0 --segmenter_epochs 1",
    "brain_tumor_fabrication": "--epochs_constant 1 --epochs_decay 0",
}
EPOCH_LINE = re.compile(r"Epoch\[1\] Complete\. Time taken: (\d+):(\d+):(\d+(?:\.\d+)?)")
ITERATIONS = re.compile(r"Epoch: 1/1, Iter: \d+/(\d+)")


def run_card(bundle: str, work: Path) -> list[dict]:
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "bundles").exists():
        (work / "bundles").symlink_to(ROOT / "bundles")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1"}
    rows = []
    for command in card_commands(bundle):
        if "monai.bundle run" in command:
            command += f" {ONE_EPOCH[bundle]} --val_interval 1"
        start = time.perf_counter()
        result = subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True)
        log = result.stdout + result.stderr
        epochs = [3600 * int(h) + 60 * int(m) + float(s) for h, m, s in EPOCH_LINE.findall(log)]
        iterations = [int(n) for n in ITERATIONS.findall(log)[-1:]]
        rows.append({"command": command, "seconds": round(time.perf_counter() - start, 1), "rc": result.returncode,
                     "epoch_seconds": [round(e, 1) for e in epochs], "iterations_per_epoch": iterations})
        print(bundle, rows[-1], flush=True)
        if result.returncode:
            print(log[-4000:], file=sys.stderr)
            break
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="*", default=sorted(SMALLER))
    parser.add_argument("--work", default="/tmp/synthmr_train_on_your_data")
    args = parser.parse_args()
    import torch

    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, no GPU used",
              "torch": torch.__version__, "threads": 1, "bundles": {}}
    out = ROOT / "benchmarks" / "results" / "train_on_your_data.json"
    if out.is_file():
        report["bundles"] = json.loads(out.read_text())["bundles"]  # one bundle at a time keeps the others
    for bundle in args.bundles:
        report["bundles"][bundle] = run_card(bundle, Path(args.work) / bundle)
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
