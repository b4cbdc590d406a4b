"""The card's held-out tables from `evaluate.json` (configs/evaluate.yaml's report).

    python bundles/brain_tumor_fabrication/docs/reports/evaluate_table.py
"""

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAMES = {"tf": "TF (TF-Aug + TF-GAN, shipped)", "tf_aug": "TF-Aug alone", "carvemix": "CarveMix", "pix2pix": "Pix2Pix"}
SEQUENCES = ("t1n", "t1c", "t2w", "t2f")


def interval(values: list | None, scale: float = 1.0, digits: int = 1, sign: str = "") -> str:
    return "–" if values is None else f"[{values[0] * scale:{sign}.{digits}f}, {values[1] * scale:{sign}.{digits}f}]"


def main() -> None:
    report = json.loads((HERE / "evaluate.json").read_text(encoding="utf-8"))
    candidates = report["candidates"]
    print(f"{report['n_real_cases']} real tumours; {report['slices']}\n")
    print("| candidate | KID x 1e3, pooled | " + " | ".join(SEQUENCES) + " | mean contrast error |")
    print("|---|---|" + "---|" * len(SEQUENCES) + "---|")
    for name, result in candidates.items():
        kid = result["kid"]
        cells = [f"{kid[s]['kid'] * 1e3:.1f} {interval(kid[s]['interval'], 1e3)}" for s in SEQUENCES]
        errors = [v["error"] for v in result["contrast"].values() if v is not None]
        print(f"| {NAMES.get(name, name)} | {kid['pooled']['kid'] * 1e3:.1f} {interval(kid['pooled']['interval'], 1e3)} | "
              + " | ".join(cells) + f" | {sum(errors) / len(errors):.3f} |")
    print("\nContrast (median of the region over median of the brain outside the tumour's ROI): real mean, and each "
          "candidate's mean minus the real mean [95 % interval]:\n")
    print("| region / sequence | real | " + " | ".join(NAMES.get(n, n) for n in candidates) + " |")
    print("|---|---|" + "---|" * len(candidates))
    for key, real in report["real_contrast_means"].items():
        cells = []
        for result in candidates.values():
            v = result["contrast"].get(key)
            cells.append("–" if v is None else f"{v['difference']:+.3f} {interval(v['interval'], digits=3, sign='+')}")
        print(f"| {key.replace(' / brain', '')} | {real:.3f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
