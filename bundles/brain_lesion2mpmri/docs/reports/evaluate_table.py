"""The card's held-out tables from `evaluate.json` (configs/evaluate.yaml's report), and the paired comparison of
SAMR's per-ROI contrast errors with every other candidate's: per check, the mean over subjects of
(other's error - SAMR's error) with its 95 % bootstrap interval (subjects resampled, 10,000 times) and the exact
two-sided Wilcoxon signed-rank p; written to `evaluate_differences.json`.

    python bundles/brain_lesion2mpmri/docs/reports/evaluate_table.py
"""

import json
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon

HERE = Path(__file__).resolve().parent
REFERENCE = "samr"
NAMES = {"samr": "SAMR", "pix2pix": "pix2pix", "pix2pixhd": "pix2pixHD", "no_atlas": "without atlas",
         "no_labelwise": "without label-wise D", "no_stretch_out": "without stretch-out",
         "no_consistency": "without consistency"}


def interval(values: list | None, scale: float = 1.0, digits: int = 2) -> str:
    return "–" if values is None else f"[{values[0] * scale:.{digits}f}, {values[1] * scale:.{digits}f}]"


def paired(reference: list, other: list, seed: int = 0, n: int = 10000) -> dict:
    both = [i for i, (a, b) in enumerate(zip(reference, other)) if a is not None and b is not None]
    difference = np.array([other[i] - reference[i] for i in both])
    rng = np.random.default_rng(seed)
    means = difference[rng.integers(0, len(difference), (n, len(difference)))].mean(axis=1)
    return {"n_cases": len(both), "mean_difference": float(difference.mean()),
            "interval": [float(v) for v in np.percentile(means, [2.5, 97.5])],
            "wilcoxon_p": float(wilcoxon(difference).pvalue) if np.any(difference) else 1.0}


def main() -> None:
    report = json.loads((HERE / "evaluate.json").read_text(encoding="utf-8"))
    candidates = report["candidates"]
    print(f"{report['n_cases']} held-out subjects, {report['n_bootstrap']} bootstrap resamples\n")
    print("| candidate | FID, pooled | KID x 1e3, pooled | 1-NN accuracy | SSIM | PSNR (dB) | MAE |")
    print("|---|---|---|---|---|---|---|")
    for name, result in candidates.items():
        pooled, pairs = result["distribution"]["pooled"], result["paired"]["pooled"]
        fid, kid = pooled["fid"], pooled["kid"]
        print(f"| {NAMES.get(name, name)} | {fid['value']:.2f} {interval(fid['interval'])} | "
              f"{kid['value'] * 1e3:.2f} {interval(kid['interval'], 1e3)} | {pooled['nn_accuracy']['accuracy']:.3f} | "
              f"{pairs['ssim']['mean']:.3f} | {pairs['psnr']['mean']:.2f} | {pairs['mae']['mean']:.4f} |")

    checks = list(candidates[REFERENCE]["contrast"])
    print("\nMean absolute contrast error over subjects [95 % interval] (real mean in the header):\n")
    real = {c: candidates[REFERENCE]["contrast"][c]["real_mean"] for c in checks}
    print("| candidate | " + " | ".join(f"{c} (real {real[c]:.2f})" for c in checks) + " |")
    print("|---|" + "---|" * len(checks))
    for name, result in candidates.items():
        cells = [f"{result['contrast'][c]['mean_error']:.3f} {interval(result['contrast'][c]['interval'], digits=3)}"
                 for c in checks]
        print(f"| {NAMES.get(name, name)} | " + " | ".join(cells) + " |")

    differences = {}
    print(f"\nOther's error - {NAMES[REFERENCE]}'s, mean over subjects [95 % interval], Wilcoxon p "
          "(positive: SAMR closer to the real contrast):\n")
    print("| candidate | " + " | ".join(checks) + " |")
    print("|---|" + "---|" * len(checks))
    for name, result in candidates.items():
        if name == REFERENCE:
            continue
        differences[name] = {c: paired(candidates[REFERENCE]["contrast"][c]["errors"], result["contrast"][c]["errors"])
                             for c in checks}
        cells = [f"{d['mean_difference']:+.3f} {interval(d['interval'], digits=3)}, p {d['wilcoxon_p']:.3f}"
                 for d in differences[name].values()]
        print(f"| {NAMES.get(name, name)} | " + " | ".join(cells) + " |")
    (HERE / "evaluate_differences.json").write_text(json.dumps(
        {"what": f"per-ROI contrast error of each candidate minus {REFERENCE}'s, paired by subject (evaluate.json)",
         "n_bootstrap": 10000, "differences": differences}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
