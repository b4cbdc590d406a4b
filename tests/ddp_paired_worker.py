"""Run by test_engines under `torchrun --nproc_per_node=2`: a tiny paired GAN trained with DDP on gloo."""

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from monai.networks.nets import PatchDiscriminator
from monai.utils import set_determinism
from torch.nn.parallel import DistributedDataParallel as DDP

from synthmr.engines import PairedGanTrainer, on_images
from synthmr.losses import AdversarialLoss


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    set_determinism(rank)  # different seeds per rank: DDP must still keep the weights in sync
    generator = DDP(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1)))
    discriminator = DDP(PatchDiscriminator(spatial_dims=2, num_layers_d=1, channels=4, in_channels=2, norm="INSTANCE"))
    if rank == 0:
        torch.save(generator.module.state_dict(), out / "initial.pt")
    images = torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    data = [{"image": x, "target": 1.0 - x} for x in images]
    sampler = torch.utils.data.distributed.DistributedSampler(data, shuffle=True, seed=0)
    trainer = PairedGanTrainer(
        device="cpu",
        max_epochs=2,
        train_data_loader=torch.utils.data.DataLoader(data, batch_size=2, sampler=sampler),
        generator=generator,
        discriminator=discriminator,
        g_optimizer=torch.optim.Adam(generator.parameters(), 1e-3),
        d_optimizer=torch.optim.Adam(discriminator.parameters(), 1e-3),
        adversarial_loss=AdversarialLoss("lsgan"),
        loss_terms={"l1": (10.0, on_images(torch.nn.L1Loss()))},
    )
    trainer.run()
    torch.save(generator.module.state_dict(), out / f"rank{rank}.pt")
    # Both ranks finish before either tears gloo down: a rank that exits while its peer's gloo threads still talk
    # to it aborts with "terminate called without an active exception".
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
