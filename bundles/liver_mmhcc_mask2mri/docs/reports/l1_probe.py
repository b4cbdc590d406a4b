"""Can this U-Net learn to fill the edges' outlines at all? A probe without the GAN: one portal-phase generator
(the bundle's Pix2PixUNet, 7 levels) trained on L1 alone, from the method's training conditions (Canny ranges) to
the real portal image, judged by L1 on the 16 validation cases (seeds 100000-100015, fixed Canny) after every
epoch. One run per setting (width, learning rate, batch, training cases); l1_probe.json holds their logs.

    python bundles/liver_mmhcc_mask2mri/docs/reports/l1_probe.py EPOCHS LR BATCH WIDTH MAX_WIDTH N_CASES

appends one run to l1_probe.json beside itself (one thread: OMP_NUM_THREADS=1); its ``runs`` hold every run so far.
"""

import json
import sys
import tempfile
from pathlib import Path

import torch
from monai.data import CacheDataset, DataLoader

from synthmr.methods import liver_mmhcc_mask2mri as method
from synthmr.nets import Pix2PixUNet
from synthmr.phantom.dataset import phantom_datalist

PORTAL = method.SEQUENCES.index("t1fs_portal")


def probe(epochs: int, lr: float, batch: int, width: int, max_width: int, n_cases: int) -> list[dict]:
    torch.manual_seed(0)
    options = {"dims": 2, "size": 128, "spacing": 3.0, "subtype": "mmhcc"}
    with tempfile.TemporaryDirectory() as tmp:
        train = phantom_datalist("liver", Path(tmp) / "train", n=n_cases, seed=0, **options)
        validation = phantom_datalist("liver", Path(tmp) / "validation", n=16, seed=100000, **options)
        data = CacheDataset(train, method.pair_transforms(), cache_rate=1.0, progress=False)
        pairs = [method.pair_transforms(fixed_canny=True)(item) for item in validation]
        loader = DataLoader(data, batch_size=batch, shuffle=True, drop_last=True)
        channel = slice(PORTAL, PORTAL + 1)
        val_x = torch.stack([torch.as_tensor(p[method.INPUT_KEY][channel]) for p in pairs])
        val_y = torch.stack([torch.as_tensor(p[method.TARGET_KEY][channel]) for p in pairs])
        network = Pix2PixUNet(1, 1, num_downs=7, channels=width, max_channels=max_width, norm="batch")
        optimizer = torch.optim.Adam(network.parameters(), lr=lr, betas=(0.5, 0.9))
        log, iterations = [], 0
        for epoch in range(epochs):
            network.train()
            for batch_data in loader:
                loss = (network(batch_data[method.INPUT_KEY][:, channel]) - batch_data[method.TARGET_KEY][:, channel]).abs().mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                iterations += 1
            network.eval()
            with torch.no_grad():
                val_l1 = float((network(val_x) - val_y).abs().mean())
            log.append({"epoch": epoch + 1, "iterations": iterations, "train_l1_last_batch": round(float(loss), 4),
                        "val_l1": round(val_l1, 4)})
            print(log[-1], flush=True)
    return log


def main() -> None:
    epochs, lr, batch, width, max_width, n_cases = sys.argv[1:7]
    settings = {"epochs": int(epochs), "lr": float(lr), "batch": int(batch), "width": int(width),
                "max_width": int(max_width), "n_cases": int(n_cases)}
    log = probe(**settings)
    out = Path(__file__).with_suffix(".json")
    report = json.loads(out.read_text()) if out.is_file() else {"runs": []}
    report["runs"].append({"settings": settings, "log": log})
    out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
