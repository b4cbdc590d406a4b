"""Inference latency of the shipped breast_dce_pre2post generator: one 256x256 slice and one whole volume.

Two ways of doing the same work, measured alternately in one run so drift in machine speed affects both alike:

- baseline: the same architecture with the same weights in a plain eager loop (``torch.no_grad``, one forward
  per batch of slices of the scaled image), no I/O;
- bundle: what ``inference.yaml`` runs, :class:`synthmr.inference.Synthesizer` (robust scaling, sliding-window
  slice-wise inference, inverse scaling). The slice row times the in-memory path; the volume row also includes
  reading the NIfTI input and writing the output, which the baseline does not do.

The ratio baseline/bundle (>= 1 means the bundle is as fast) is the number to compare across machines. CUDA rows
are added when a GPU is present.

    python benchmarks/breast_dce_pre2post.py [--repeats 5] [--out benchmarks/results/breast_dce_pre2post.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser

from synthmr.inference import Synthesizer
from synthmr.io import write_image
from synthmr.phantom import phantom_class
from synthmr.transforms import IntensityScaling

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "breast_dce_pre2post"


def load_network(device: torch.device) -> torch.nn.Module:
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.yaml"))
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(BUNDLE / "models" / "model.pt", weights_only=True))
    return network.to(device).eval()


def synchronized(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_time(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        synchronized(device)
        start = time.perf_counter()
        fn()
        synchronized(device)
        times.append(time.perf_counter() - start)
    return min(times)


def plain_slices(network: torch.nn.Module, volume: np.ndarray, device: torch.device, batch: int) -> np.ndarray:
    """The baseline: scale, forward batches of slices eagerly, scale back."""
    scaling = IntensityScaling.fit(volume, headroom=3.0)
    scaled = np.clip(scaling.forward(volume), -1, 1).astype(np.float32)
    out = np.empty_like(scaled)
    with torch.no_grad():
        for start in range(0, scaled.shape[-1], batch):
            chunk = torch.from_numpy(np.moveaxis(scaled[..., start : start + batch], -1, 0)[:, None]).to(device)
            out[..., start : start + chunk.shape[0]] = np.moveaxis(network(chunk)[:, 0].cpu().numpy(), 0, -1)
    return scaling.inverse(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8, help="slices per forward pass (both ways)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "breast_dce_pre2post.json"))
    args = parser.parse_args()

    slice_case = phantom_class("breast")(dims=2, size=256)(0)  # 256x256 at 1.4 mm
    volume_case = phantom_class("breast")(dims=3)(0)  # 128x128x48 at 2.8 x 2.8 x 3 mm, the phantom default
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        volume_path = write_image(volume_case.volume("t1_pre"), Path(scratch) / "t1_pre.nii.gz")
        slice_image = slice_case.images["t1_pre"][..., None]
        for device in devices:
            network = load_network(device)
            bundle = Synthesizer(
                network, [], ["t1_pre"], ["t1_post1"], scratch, device=device, roi_size=(256, 256),
                sw_batch_size=args.batch, headroom=3.0,
            )
            volumes = {"t1_pre": slice_case.volume("t1_pre")}
            cases = {
                "slice 256x256": (
                    lambda: plain_slices(network, slice_image, device, args.batch),
                    lambda: bundle._synthesise(volumes, lambda: None),
                ),
                "volume " + "x".join(map(str, volume_case.images["t1_pre"].shape)): (
                    lambda: plain_slices(network, volume_case.images["t1_pre"], device, args.batch),
                    lambda: Synthesizer(
                        network, [{"t1_pre": str(volume_path), "case_id": "bench"}], ["t1_pre"], ["t1_post1"],
                        Path(scratch) / "out", device=device, roi_size=(256, 256), sw_batch_size=args.batch,
                        headroom=3.0, overwrite=True,
                    )(),
                ),
            }
            for name, (baseline, ours) in cases.items():
                baseline_s = best_time(baseline, device, args.repeats)
                bundle_s = best_time(ours, device, args.repeats)
                rows.append(
                    {"device": device.type, "case": name, "baseline_s": baseline_s, "bundle_s": bundle_s,
                     "ratio_baseline_to_bundle": baseline_s / bundle_s}
                )

    print(f"breast_dce_pre2post inference, best of {args.repeats} ({platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads)")
    print(f"{'device':6} {'case':22} {'eager loop s':>12} {'bundle s':>9} {'ratio':>6}")
    for r in rows:
        print(f"{r['device']:6} {r['case']:22} {r['baseline_s']:12.3f} {r['bundle_s']:9.3f} "
              f"{r['ratio_baseline_to_bundle']:6.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"repeats": args.repeats, "batch": args.batch, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
