"""What both GAN trainers share: optimiser steps with optional AMP, and DDP-aware network handling."""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path
from typing import Iterable

import torch
from monai.engines import Trainer
from torch.nn.parallel import DistributedDataParallel

from synthmr.errors import InputError
from synthmr.io._atomic import atomic_output


def unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return network.module if isinstance(network, DistributedDataParallel) else network


def save_weights(state: dict, path: str | os.PathLike) -> Path:
    """Write a ``state_dict`` as CPU tensors (loadable with ``weights_only=True`` anywhere), atomically."""
    path = Path(path)
    cpu = {key: value.detach().cpu().clone() for key, value in state.items()}
    with atomic_output(path, suffix=".pt", overwrite=True) as temporary:  # a newer best replaces the last
        torch.save(cpu, temporary)
    return path


def export_network_weights(checkpoint: str | os.PathLike, out: str | os.PathLike, key: str) -> Path:
    """A network's weights from its best training checkpoint (MONAI's ``CheckpointSaver`` file: the bare state
    dict, or under ``key``), written to ``out`` as a plain state dict (atomically): how a bundle ships a helper
    network it trained (a segmenter, a feature extractor)."""
    from synthmr.errors import InputError

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise InputError(f"{checkpoint}: no {key} checkpoint (did the {key}'s validation run and save a best model?)")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return save_weights(state.get(key, state), out)


def set_requires_grad(network: torch.nn.Module, flag: bool) -> None:
    for p in network.parameters():
        p.requires_grad_(flag)


class GanTrainerBase(Trainer):
    """A MONAI :class:`~monai.engines.Trainer` holding a generator and a discriminator with their optimisers.

    The networks, optimisers and gradient scalers live on ``engine.state`` and are part of the engine's
    ``state_dict`` only through MONAI's checkpoint handlers: bundle configs save
    ``{"generator", "discriminator", "g_optimizer", "d_optimizer", "trainer", ...}`` with ``CheckpointSaver`` and
    restore them with ``CheckpointLoader``, which resumes at the saved epoch.

    AMP (``amp=True``) uses ``torch.autocast`` and one ``GradScaler`` per optimiser on CUDA; it is ignored on the
    CPU, where autocast to float16 would only slow things down.
    """

    def __init__(
        self,
        device: torch.device | str,
        max_epochs: int,
        train_data_loader: Iterable,
        generator: torch.nn.Module,
        discriminator: torch.nn.Module,
        g_optimizer: torch.optim.Optimizer,
        d_optimizer: torch.optim.Optimizer,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        train_handlers: list | None = None,
        amp: bool = False,
        amp_kwargs: dict | None = None,
        **workflow_kwargs,
    ):
        if epoch_length is None and hasattr(train_data_loader, "__len__") and len(train_data_loader) == 0:
            # MONAI would only warn and skip every epoch, ending in "trained" weights that never saw a batch.
            dataset = getattr(train_data_loader, "dataset", None)
            items = f"{len(dataset)} training items" if hasattr(dataset, "__len__") else "the training data"
            batch = getattr(train_data_loader, "batch_size", "?")
            raise InputError(f"{items} make no full batch of {batch}: an epoch would train nothing; add training "
                             "data or lower --batch_size")
        device = torch.device(device)
        amp = amp and device.type == "cuda"
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            handlers=train_handlers,
            amp=amp,
            amp_kwargs=amp_kwargs,
            decollate=False,  # outputs are scalar losses; nothing to decollate
            **workflow_kwargs,
        )
        self.generator = generator
        self.discriminator = discriminator
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.g_scaler = torch.amp.GradScaler("cuda") if amp else None
        self.d_scaler = torch.amp.GradScaler("cuda") if amp else None

    def autocast(self):
        return torch.autocast("cuda", **self.amp_kwargs) if self.amp else nullcontext()

    @staticmethod
    def step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler) -> None:
        """Backward ``loss`` and step ``optimizer`` (through ``scaler`` under AMP)."""
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    def to_device(self, value):
        return value.to(self.state.device, non_blocking=self.non_blocking) if torch.is_tensor(value) else value
