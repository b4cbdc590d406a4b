"""Train the domain feature extractor that ships as ``synthmr/metrics/extractors/domain_extractor.pt``.

Task: tell the (organ, sequence) of a 2D axial phantom slice (14 classes: brain t1n t1c t2w t2f aptw; breast t2 t1_pre
t1_post1..4; liver t1fs_arterial t1fs_portal t2) and, as an auxiliary task, whether a lesion is in the slice. A
network that has to separate these contrasts and see lesions has features in which synthetic images that get a
contrast or a lesion wrong move away from real ones; its 256-d pooled features are what FID compares. The two heads
are used only here; only the :class:`~synthmr.metrics.extractors.DomainExtractor` is saved.

Data: ``--cases`` phantom cases per organ (``synthmr.phantom``, 2D, one axial slice each, case seeds
``seed .. seed + cases - 1``), every sequence of a case an image; the last ``--val-fraction`` of each organ's cases
are held out (whole cases, so no slice of a validation case is trained on). Each image is scaled to [0, 1] by its own
0.5/99.5 percentiles (what ``fid`` expects from users) and resized to the network's 128 x 128 once.
Augmentation, drawn per image from a seeded generator: the 8 flips/transposes of the square (arrays may arrive in
(x, y) or (y, x) order and either orientation) and an intensity gamma (log-uniform in [1/1.25, 1.25]).

CPU, one thread (``torch.set_num_threads(1)``), seeded. Writes the weights (state dict of CPU tensors) and a JSON
record next to it: command, seed, image counts, final train/validation accuracy, time, versions, SHA-256.

    python training/scripts/train_domain_extractor.py            # writes into the package
    python training/scripts/train_domain_extractor.py --out /tmp/domain.pt --cases 8 --epochs 1   # quick check
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import monai
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.transforms import ScaleIntensityRangePercentiles

import synthmr
from synthmr.io._atomic import atomic_output
from synthmr.metrics.extractors import DomainExtractor, get_extractor, shipped_domain_weights
from synthmr.metrics.extractors.weights import sha256_of
from synthmr.phantom import phantom_class

SEQUENCES = {
    "brain": ("t1n", "t1c", "t2w", "t2f", "aptw"),
    "breast": ("t2", "t1_pre", "t1_post1", "t1_post2", "t1_post3", "t1_post4"),
    "liver": ("t1fs_arterial", "t1fs_portal", "t2"),
}
CLASSES = tuple(f"{organ}/{sequence}" for organ, sequences in SEQUENCES.items() for sequence in sequences)
# The mask whose presence in the slice makes the lesion label 1.
LESION_MASK = {"brain": "label", "breast": "lesion", "liver": "tumor"}
# Lesion-free cases too, so the lesion head has two classes to learn and features see healthy anatomy.
PHANTOM_OPTIONS = {
    "brain": {"dims": 2, "tumor_probability": 0.6},
    "breast": {"dims": 2},
    "liver": {"dims": 2, "tumor_probability": 0.6},
}
LESION_LOSS_WEIGHT = 0.5
GAMMA_RANGE = 1.25


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=shipped_domain_weights(), help="weights file to write")
    parser.add_argument("--cases", type=int, default=50, help="phantom cases per organ")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="fraction of each organ's cases held out")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.cases < 2 or not 0 < args.val_fraction < 1 or args.epochs < 1 or args.batch_size < 1:
        parser.error("need --cases >= 2, 0 < --val-fraction < 1, --epochs >= 1, --batch-size >= 1")
    return args


def simulate(cases: int, val_fraction: float, seed: int, extractor: DomainExtractor) -> dict[str, dict]:
    """Phantom slices as network inputs: {"train"|"val": {"images" (N,1,S,S), "classes" (N,), "lesion" (N,)}}."""
    scale = ScaleIntensityRangePercentiles(lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True)
    n_val = max(1, round(cases * val_fraction))
    split = {name: {"images": [], "classes": [], "lesion": []} for name in ("train", "val")}
    for organ, sequences in SEQUENCES.items():
        phantom = phantom_class(organ)(**PHANTOM_OPTIONS[organ])
        for index in range(cases):
            case = phantom(seed + index)
            part = split["val" if index >= cases - n_val else "train"]
            has_lesion = float(np.any(case.masks[LESION_MASK[organ]] > 0))
            for sequence in sequences:
                image = torch.as_tensor(np.asarray(scale(case.images[sequence][None]))).float()
                part["images"].append(extractor.preprocess(image[None]))
                part["classes"].append(CLASSES.index(f"{organ}/{sequence}"))
                part["lesion"].append(has_lesion)
        print(f"simulated {cases} {organ} cases", flush=True)
    return {
        name: {
            "images": torch.cat(part["images"]),
            "classes": torch.tensor(part["classes"]),
            "lesion": torch.tensor(part["lesion"]),
        }
        for name, part in split.items()
    }


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random flip/transpose of the square and a random gamma per image (vectorised over the batch)."""
    n = images.shape[0]
    flips = torch.rand(n, 3, generator=generator) < 0.5
    out = torch.where(flips[:, 0, None, None, None], images.flip(-1), images)
    out = torch.where(flips[:, 1, None, None, None], out.flip(-2), out)
    out = torch.where(flips[:, 2, None, None, None], out.transpose(-1, -2), out)
    log_gamma = (torch.rand(n, generator=generator) * 2 - 1) * math.log(GAMMA_RANGE)
    return out.clamp_min(0).pow(log_gamma.exp()[:, None, None, None])


class Heads(nn.Module):
    """Training-only heads on the embedding: (organ, sequence) logits and a lesion-present logit."""

    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.classes = nn.Linear(features, classes)
        self.lesion = nn.Linear(features, 1)

    def forward(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.classes(embedding), self.lesion(embedding).squeeze(1)


@torch.no_grad()
def accuracy(extractor: DomainExtractor, heads: Heads, data: dict, batch_size: int) -> dict[str, float]:
    """Accuracy of (organ, sequence), of the organ alone and of lesion presence on un-augmented ``data``."""
    extractor.eval()
    organ_of_class = torch.tensor([list(SEQUENCES).index(name.split("/")[0]) for name in CLASSES])
    hits = {"accuracy": 0, "organ_accuracy": 0, "lesion_accuracy": 0}
    for start in range(0, len(data["classes"]), batch_size):
        logits, lesion_logit = heads(extractor(data["images"][start : start + batch_size]))
        predicted, truth = logits.argmax(1), data["classes"][start : start + batch_size]
        hits["accuracy"] += int((predicted == truth).sum())
        hits["organ_accuracy"] += int((organ_of_class[predicted] == organ_of_class[truth]).sum())
        hits["lesion_accuracy"] += int(((lesion_logit > 0).float() == data["lesion"][start : start + batch_size]).sum())
    return {name: round(count / len(data["classes"]), 4) for name, count in hits.items()}


def train(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    extractor = DomainExtractor()
    heads = Heads(extractor.feature_dim, len(CLASSES))

    start = time.perf_counter()
    data = simulate(args.cases, args.val_fraction, args.seed, extractor)
    simulate_s = time.perf_counter() - start

    parameters = list(extractor.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=1e-4)
    n_train = len(data["train"]["classes"])
    steps = args.epochs * math.ceil(n_train / args.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=steps)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        extractor.train()
        order = torch.randperm(n_train, generator=generator)
        total = 0.0
        for first in range(0, n_train, args.batch_size):
            index = order[first : first + args.batch_size]
            images = augment(data["train"]["images"][index], generator)
            logits, lesion_logit = heads(extractor(images))
            loss = F.cross_entropy(logits, data["train"]["classes"][index])
            loss = loss + LESION_LOSS_WEIGHT * F.binary_cross_entropy_with_logits(
                lesion_logit, data["train"]["lesion"][index]
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(index)
        print(
            f"epoch {epoch + 1}/{args.epochs}: loss {total / n_train:.4f}, "
            f"val {accuracy(extractor, heads, data['val'], args.batch_size)} ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    train_s = time.perf_counter() - start
    final = {
        **{f"train_{k}": v for k, v in accuracy(extractor, heads, data["train"], args.batch_size).items()},
        **{f"val_{k}": v for k, v in accuracy(extractor, heads, data["val"], args.batch_size).items()},
    }

    out = args.out.resolve()
    state = {key: value.detach().cpu().contiguous() for key, value in extractor.state_dict().items()}
    with atomic_output(out, suffix=".pt", overwrite=True) as temporary:
        torch.save(state, temporary)
    get_extractor("domain", weights=out)  # the file must load the way users load it
    record = {
        "command": " ".join(["python", *sys.argv]),
        "seed": args.seed,
        "phantom_cases_per_organ": args.cases,
        "phantom_options": PHANTOM_OPTIONS,
        "n_images": {"train": n_train, "val": len(data["val"]["classes"])},
        "classes": list(CLASSES),
        "architecture": {"class": "synthmr.metrics.extractors.DomainExtractor", "arguments": "defaults",
                         "feature_dim": extractor.feature_dim, "image_size": extractor.image_size},
        "preprocessing": "per-image 0.5/99.5 percentile scaling to [0, 1], bilinear (antialiased) resize to 128",
        "augmentation": f"flips/transposes of the square, gamma log-uniform in [1/{GAMMA_RANGE}, {GAMMA_RANGE}]",
        "training": {"epochs": args.epochs, "batch_size": args.batch_size, "optimizer": "AdamW (wd 1e-4)",
                     "lr": args.lr, "schedule": "one-cycle", "lesion_loss_weight": LESION_LOSS_WEIGHT},
        "final": final,
        "time_s": {"simulate": round(simulate_s, 1), "train": round(train_s, 1)},
        "threads": 1,
        "versions": {"synthmr": synthmr.__version__, "torch": torch.__version__, "monai": monai.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "weights_file": out.name,
        "weights_sha256": sha256_of(out),
        "weights_bytes": out.stat().st_size,
    }
    record_path = out.with_suffix(".json")
    with atomic_output(record_path, suffix=".json", overwrite=True) as temporary:
        temporary.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["final"]), f"-> {out} ({record['weights_bytes'] / 1e6:.1f} MB)", flush=True)
    return record


if __name__ == "__main__":
    train(parse_args())
