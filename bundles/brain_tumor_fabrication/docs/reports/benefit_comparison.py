"""The card's downstream comparison: configs/benefit.yaml once per synthesizer, run in parallel and resumably.

    python bundles/brain_tumor_fabrication/docs/reports/benefit_comparison.py run --workers 2
    python bundles/brain_tumor_fabrication/docs/reports/benefit_comparison.py report

`run` trains every (synthesizer, real subjects, share, seed) run of the four configs as its own `synthmr benefit`
call, one CPU thread each, in an order that completes whole comparisons early: the real-only runs (shared by every
synthesizer), then one fabricated subject per real one for each synthesizer, seed by seed, then two. Each finished
run file is copied into benefit/<mode>/runs/ beside this script, and copied back into the work folder when `run`
starts again, so a stopped comparison resumes from the committed files. `report` has each config read its finished
runs (training nothing), writes benefit/<mode>/report.json, benefit/head_to_head.json (TF against each other
synthesizer, synthmr.evaluation.compare_synthesizers) and benefit/summary.json (how many differences are
significant each way and in how many of those every seed agrees, and the seed-to-seed range of mean Dice), and
prints the card's tables.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from itertools import product
from pathlib import Path

from synthmr.evaluation import compare_synthesizers, run_name

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "benefit"
DATA = HERE.parents[1] / "data" / "phantom"  # configs/benefit.yaml's benefit_data_dir
BUNDLE = "brain_tumor_fabrication"
MODES = ("tf", "tf_aug", "carvemix", "pix2pix")
NAMES = {"none": "none (real only)", "tf": "TF", "tf_aug": "TF-Aug alone", "carvemix": "CarveMix", "pix2pix": "Pix2Pix"}
N_REAL, SEEDS, SHARES = (2, 4, 8), (0, 1, 2), (1, 2)
REGIONS = ("whole tumor", "tumor core", "enhancing tumor")


def jobs() -> list[tuple[str, int, int, int]]:
    """(mode, n_real, share, seed) in the order they run; share 0 is the real-only run every mode shares."""
    real_only = [("none", n, 0, seed) for seed, n in product(SEEDS, N_REAL)]
    return real_only + [(mode, n, share, seed) for share, seed, n, mode in product(SHARES, SEEDS, N_REAL, MODES)]


def benefit(mode: str, work: Path, overrides: dict) -> list[str]:
    arguments = [sys.executable, "-m", "synthmr", "benefit", BUNDLE, "--work_dir", str(work / mode), "--device", "cpu",
                 "--mode", "tf" if mode == "none" else mode]
    for key, value in overrides.items():
        arguments += [f"--{key}", json.dumps(value)]
    return arguments


def sync(work: Path) -> None:
    """Copy finished run files both ways between the work folder and the committed results; a real-only run is
    committed once, under none/, and reaches every mode's work folder."""
    for mode in ("none", *MODES):
        for path in sorted((work / mode / "runs").glob("*.json")):
            if mode == "none" or path.stem.split("_")[1] != "0":
                _copy_new(path, RESULTS / mode / "runs")
    for mode in ("none", *MODES):
        for path in sorted((RESULTS / mode / "runs").glob("*.json")):
            for target in [work / m / "runs" for m in ("none", *MODES)] if mode == "none" else [work / mode / "runs"]:
                _copy_new(path, target)


def _copy_new(path: Path, folder: Path) -> None:
    if not (folder / path.name).exists():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, folder / path.name)


def run(work: Path, workers: int) -> None:
    sync(work)
    environment = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    pending, running = jobs(), {}
    while pending or running:
        for job, process in list(running.items()):
            if process.poll() is not None:
                del running[job]
                if process.returncode:
                    print(f"{job} failed (exit {process.returncode}); see {work / 'logs'}", flush=True)
                sync(work)
        for job in list(pending):
            mode, n, share, seed = job
            if (work / mode / "runs" / f"{run_name(n, share, seed)}.json").exists():
                pending.remove(job)
                continue
            waiting_for_real = not (work / mode / "runs" / f"{run_name(n, 0, seed)}.json").exists()
            # The first run simulates the phantom subjects; the others wait for them rather than race for the folders.
            simulating = running and not all((DATA / f"benefit_{s}_16" / "datalist.json").exists()
                                             for s in ("pool", "test", "healthy"))
            if len(running) >= workers or (share and waiting_for_real) or simulating:
                continue
            pending.remove(job)
            (work / "logs").mkdir(parents=True, exist_ok=True)
            overrides = {"n_real": [n], "shares": [share], "seeds": [seed]}
            with open(work / "logs" / f"{mode}_{run_name(n, share, seed)}.log", "w") as log:  # the child keeps it
                running[job] = subprocess.Popen(benefit(mode, work, overrides), stdout=log, stderr=subprocess.STDOUT,
                                                env=environment)
            print(f"{time.strftime('%H:%M:%S')} started {job}", flush=True)
        time.sleep(10)


def report(work: Path) -> None:
    sync(work)
    reports = {}
    for mode in MODES:
        everything = {"n_real": list(N_REAL), "shares": [0, *SHARES], "seeds": list(SEEDS)}
        subprocess.run(benefit(mode, work, everything), check=True, capture_output=True)
        (RESULTS / mode).mkdir(parents=True, exist_ok=True)
        shutil.copy2(work / mode / "report.json", RESULTS / mode / "report.json")
        reports[mode] = json.loads((RESULTS / mode / "report.json").read_text(encoding="utf-8"))["domains"]["brain"]
    print("Dice, mean over test subjects and seeds [95 % interval]; the comparisons are paired differences with "
          "real only, * where significant either way (interval excluding 0 and Wilcoxon p < 0.05).\n")
    print("| real | synthesizer | fabricated per real | " + " | ".join(f"{r} Dice" for r in REGIONS)
          + " | " + " | ".join(f"{r} HD95 mm" for r in REGIONS) + " |")
    print("|---|---|---|" + "---|" * 2 * len(REGIONS))
    for n in N_REAL:
        for mode, share in [("none", 0)] + [(m, s) for s in SHARES for m in MODES]:
            domain = reports["tf" if mode == "none" else mode]
            arm = next(a for a in domain["arms"] if a["n_real"] == n and a["share"] == share)
            dice, hd95 = [], []
            for region in REGIONS:
                score = arm["labels"][region]
                dice.append(f"{score['dice']['mean']:.3f} [{score['dice']['low']:.3f}, {score['dice']['high']:.3f}]")
                hd95.append(f"{score['hd95_mm']['mean']:.1f}")
                if share:
                    c = next(c for c in domain["comparisons"] if c["n_real"] == n and c["share"] == share)
                    difference = c["labels"][region]
                    change = difference["dice_difference"]
                    significant = difference["significant_gain"] or difference["significant_loss"]
                    dice[-1] += f" ({change['mean']:+.3f}, p={difference['p_value']:.2g}" + "*" * significant + ")"
            print(f"| {n} | {NAMES[mode]} | {share} | " + " | ".join(dice + hd95) + " |")
    comparisons = head_to_head(work)
    summary(work, reports, comparisons)


def head_to_head(work: Path) -> dict:
    """TF against each other synthesizer, case by case on the same real subsets and seeds."""
    comparisons = {other: compare_synthesizers(work / "tf", work / other, N_REAL, SHARES, SEEDS)
                   for other in MODES[1:]}
    for comparison in comparisons.values():  # paths relative to the work folder: the report does not name a machine
        comparison["a"], comparison["b"] = Path(comparison["a"]).name, Path(comparison["b"]).name
    (RESULTS / "head_to_head.json").write_text(json.dumps(comparisons, indent=1) + "\n", encoding="utf-8")
    print("\nTF minus each other synthesizer, Dice, mean over test subjects of the seed-averaged difference [95 % "
          "interval], Wilcoxon p; * where one is significantly better.\n")
    print("| real | fabricated per real | TF minus | " + " | ".join(REGIONS) + " |")
    print("|---|---|---|" + "---|" * len(REGIONS))
    for n, share in product(N_REAL, SHARES):
        for other, comparison in comparisons.items():
            arm = next(a for a in comparison["domains"]["brain"]["arms"] if a["n_real"] == n and a["share"] == share)
            cells = []
            for region in REGIONS:
                score = arm["labels"][region]
                d = score["dice_difference"]
                cells.append(f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] p={score['p_value']:.2g}"
                             + ("*" if score["better"] else ""))
            print(f"| {n} | {share} | {NAMES[other]} | " + " | ".join(cells) + " |")
    return comparisons


def summary(work: Path, reports: dict, comparisons: dict) -> None:
    """How often each difference is significant, each way, and how far one seed's mean Dice lies from another's on
    the same arm: the training noise that the per-case test (seeds averaged per case) does not count."""
    every_seed = len(SEEDS)

    def tally(scores: list[dict], ways: dict) -> dict:
        """Per way, how many scores are significant that way, and how many of those every seed agrees with."""
        tallied = {}
        for way, significant in ways.items():
            chosen = [score for score in scores if significant(score)]
            tallied[way] = len(chosen)
            tallied[f"{way}_every_seed_agreeing"] = sum(score["seeds_agreeing"] == every_seed for score in chosen)
        return tallied

    versus_real = {
        NAMES[mode]: tally([score for c in reports[mode]["comparisons"] for score in c["labels"].values()],
                           {"gain": lambda s: s["significant_gain"], "loss": lambda s: s["significant_loss"]})
        for mode in MODES
    }
    versus_tf = {
        NAMES[other]: tally(
            [score for arm in comparison["domains"]["brain"]["arms"] for score in arm["labels"].values()],
            {"tf_better": lambda s: s["better"] == "a", "tf_worse": lambda s: s["better"] == "b"},
        )
        for other, comparison in comparisons.items()
    }
    arms = [("tf", n, 0) for n in N_REAL] + list(product(MODES, N_REAL, SHARES))  # real-only arms once
    spread = {}
    for region in REGIONS:
        ranges = []
        for mode, n, share in arms:
            means = []
            for seed in SEEDS:
                run = json.loads((work / mode / "runs" / f"{run_name(n, share, seed)}.json").read_text())
                means.append(sum(case[region]["dice"] for case in run["cases"]["brain"].values())
                             / len(run["cases"]["brain"]))
            ranges.append(max(means) - min(means))
        ranges.sort()
        spread[region] = {"median": ranges[len(ranges) // 2], "max": ranges[-1], "n_arms": len(ranges)}
    result = {"comparisons_per_synthesizer": len(N_REAL) * len(SHARES) * len(REGIONS),
              "significant_versus_real_only": versus_real, "significant_head_to_head": versus_tf,
              "seed_range_of_mean_dice": spread}
    (RESULTS / "summary.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print("\n" + json.dumps(result, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "report"))
    parser.add_argument("--work", type=Path, default=Path("benefit") / "tf_comparison",
                        help="work folder, outside the bundle (default: benefit/tf_comparison)")
    parser.add_argument("--workers", type=int, default=2)
    arguments = parser.parse_args()
    run(arguments.work, arguments.workers) if arguments.command == "run" else report(arguments.work)


if __name__ == "__main__":
    main()
