"""Paired GAN trainer overhead: samples/s of PairedGanTrainer against a plain PyTorch loop doing the same work.

Both run the same pix2pix iteration (D step on real and detached fake pairs, G step with adversarial + 100 x L1)
on the same networks and data, alternating trainer and loop over several rounds so drift in machine speed
affects both alike. The ratio trainer/loop is the number that matters (target >= 0.95).

    python benchmarks/engine.py [--device cpu|cuda] [--size 64] [--batch 4] [--iterations 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
from monai.utils import set_determinism

from synthmr.engines import PairedGanTrainer, on_images
from synthmr.losses import AdversarialLoss
from synthmr.nets import Pix2PixUNet, patchgan70


def build(device, channels):
    set_determinism(0)
    g = Pix2PixUNet(1, 1, num_downs=6, channels=channels).to(device)
    d = patchgan70(2).to(device)
    return g, d


def plain_loop(g, d, batches, device):
    """The reference: the same iteration written as a bare PyTorch loop."""
    adv, l1 = AdversarialLoss("lsgan"), torch.nn.L1Loss()
    g_opt = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    for batch in batches:
        x, y = batch["image"].to(device), batch["target"].to(device)
        fake = g(x)
        d_loss = 0.5 * (adv(d(torch.cat([x, fake.detach()], 1)), False, True) + adv(d(torch.cat([x, y], 1)), True, True))
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        for p in d.parameters():
            p.requires_grad_(False)
        g_loss = adv(d(torch.cat([x, fake], 1)), True, False) + 100.0 * l1(fake, y)
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
        for p in d.parameters():
            p.requires_grad_(True)
        g_loss.item(), d_loss.item()  # the trainer reports both losses every iteration


def engine_loop(g, d, batches, device):
    trainer = PairedGanTrainer(
        device=device,
        max_epochs=1,
        train_data_loader=batches,
        generator=g,
        discriminator=d,
        g_optimizer=torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999)),
        d_optimizer=torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999)),
        adversarial_loss=AdversarialLoss("lsgan"),
        loss_terms={"l1": (100.0, on_images(torch.nn.L1Loss()))},
    )
    trainer.run()


def timed(fn, g, d, batches, device) -> float:
    g, d = copy.deepcopy(g), copy.deepcopy(d)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn(g, d, batches, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "engine.json"))
    args = parser.parse_args()

    device = torch.device(args.device)
    g, d = build(device, args.channels)
    gen = torch.Generator().manual_seed(0)
    batches = [
        {"image": torch.rand(args.batch, 1, args.size, args.size, generator=gen),
         "target": torch.rand(args.batch, 1, args.size, args.size, generator=gen)}
        for _ in range(args.iterations)
    ]
    timed(plain_loop, g, d, batches[:2], device)  # warm-up (allocator, kernels)
    timed(engine_loop, g, d, batches[:2], device)
    loop_s, engine_s = [], []
    for _ in range(args.rounds):
        loop_s.append(timed(plain_loop, g, d, batches, device))
        engine_s.append(timed(engine_loop, g, d, batches, device))
    samples = args.iterations * args.batch
    loop_rate, engine_rate = samples / min(loop_s), samples / min(engine_s)
    result = {
        "device": str(device),
        "size": args.size,
        "batch": args.batch,
        "iterations": args.iterations,
        "rounds": args.rounds,
        "plain_loop_samples_per_s": loop_rate,
        "trainer_samples_per_s": engine_rate,
        "ratio_trainer_to_loop": engine_rate / loop_rate,
    }
    print(f"{'':24} {'samples/s':>10}")
    print(f"{'plain PyTorch loop':24} {loop_rate:10.2f}")
    print(f"{'PairedGanTrainer':24} {engine_rate:10.2f}")
    print(f"ratio trainer/loop: {engine_rate / loop_rate:.3f}  (best of {args.rounds} rounds, {device})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
