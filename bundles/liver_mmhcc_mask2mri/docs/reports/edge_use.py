"""Do the generators follow their edges? On the 16 validation cases (seeds 100000-100015, never held-out data), for
the method (models/model.pt) and Pix2Pix on the mask only (models/baseline_mask_only.pt), per sequence:

- L1 to the real image on the generator scale [-1, 1], beside the noise floor: L1 between the real image and itself
  smoothed by a Gaussian of 0.7 pixels (what a generator that drew every structure exactly but no noise would
  score, roughly);
- edge contrast: the mean gradient magnitude of an image at the pixels the method's conditioning marks as edges,
  divided by its mean over the body (conditioning background inside the real image's foreground). The real images
  show how much of their gradient sits on the edges; an image that follows the edges has a ratio near theirs, one
  that ignores them (the mask-only baseline cannot see them) a ratio near 1.

    python bundles/liver_mmhcc_mask2mri/docs/reports/edge_use.py   # writes edge_use.json beside itself
"""

import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from synthmr.io import load_weights
from synthmr.methods import liver_mmhcc_mask2mri as method
from synthmr.nets import ChannelwiseGenerators, Pix2PixUNet
from synthmr.phantom.dataset import phantom_datalist

BUNDLE = Path(__file__).resolve().parents[2]
WEIGHTS = {"mask_guided": ("model.pt", True), "pix2pix_mask_only": ("baseline_mask_only.pt", False)}


def generator() -> torch.nn.Module:
    """The bundle's network_def (configs/inference.yaml)."""
    return ChannelwiseGenerators.of(
        3, lambda: Pix2PixUNet(1, 1, num_downs=7, channels=16, max_channels=64, norm="batch")
    ).eval()


def edge_contrast(image: np.ndarray, edges: np.ndarray, body: np.ndarray) -> float:
    gradient = np.hypot(*np.gradient(image))
    return float(gradient[edges].mean() / gradient[body].mean())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cases = phantom_datalist("liver", Path(tmp) / "validation", n=16, seed=100000, dims=2, size=128,
                                 spacing=3.0, subtype="mmhcc")
        with_edges = [method.pair_transforms(fixed_canny=True)(case) for case in cases]
        mask_only = [method.pair_transforms(fixed_canny=True, edge_guidance=False)(case) for case in cases]
    real = np.stack([np.asarray(p[method.TARGET_KEY]) for p in with_edges])
    conditions = np.stack([np.asarray(p[method.INPUT_KEY]) for p in with_edges])
    edges = conditions == method.EDGE
    body = (conditions == method.BACKGROUND) & (real > -0.8)
    fakes = {}
    for name, (file, edge_guidance) in WEIGHTS.items():
        network = load_weights(generator(), BUNDLE / "models" / file)
        inputs = conditions if edge_guidance else np.stack([np.asarray(p[method.INPUT_KEY]) for p in mask_only])
        with torch.no_grad():
            fakes[name] = network(torch.from_numpy(inputs)).numpy()
    report = {"cases": len(cases), "seeds": [100000, 100015], "sequences": {}}
    for index, sequence in enumerate(method.SEQUENCES):
        target = real[:, index]
        smooth = np.stack([gaussian_filter(t, 0.7) for t in target])
        row = {"noise_floor_l1": float(np.abs(smooth - target).mean())}

        def contrast(images: np.ndarray) -> float:
            return float(np.mean([edge_contrast(im, e, b) for im, e, b in zip(images, edges[:, index], body[:, index])]))

        row["edge_contrast_real"] = contrast(target)
        for name, fake in fakes.items():
            row[f"l1_{name}"] = float(np.abs(fake[:, index] - target).mean())
            row[f"edge_contrast_{name}"] = contrast(fake[:, index])
        report["sequences"][sequence] = row
    (Path(__file__).parent / "edge_use.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
