"""Unpaired GAN training with cycle consistency: CycleGAN.

Zhu et al., "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks", arXiv 1703.10593
(Sec. 3-4). Two generators, ``G: A -> B`` and ``F: B -> A``, and two unconditional discriminators, ``D_B`` (is
this a real B image?) and ``D_A``. One iteration:

1. ``fake_b = G(a)``, ``fake_a = F(b)``
2. generator step, both discriminators frozen:
   ``L_G = adv(D_B(fake_b), real) + adv(D_A(fake_a), real)
   + lambda * (|F(fake_b) - a|_1 + |G(fake_a) - b|_1) [+ lambda * lambda_id * (|G(b) - b|_1 + |F(a) - a|_1)]``
3. discriminator step on fakes drawn from a history pool (:class:`ImagePool`):
   ``L_D = 0.5 * (adv(D_B(b), real) + adv(D_B(pool_B(fake_b)), fake)) + 0.5 * (same for D_A)``

The engine knows nothing of any method: the domains are two batch keys, the networks and optimisers arguments.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn.functional as F

from synthmr.engines.base import GanTrainerBase, set_requires_grad, unwrap
from synthmr.errors import InputError


class ImagePool:
    """A history of generated images shown to a discriminator in place of the newest ones.

    Shrivastava et al., "Learning from Simulated and Unsupervised Images through Adversarial Training", arXiv
    1612.07828, as CycleGAN (arXiv 1703.10593, Sec. 4) uses it with 50 images: the discriminator is updated on
    earlier generators' images too, which damps the oscillation of the two players. Until ``size`` images are
    stored, each image is stored and returned as it is; afterwards each image, with probability 0.5, is swapped with
    a stored one drawn uniformly (the stored one is returned, the new one takes its place), else returned as it is.

    The draws come from the pool's own ``torch.Generator``, seeded by ``seed``, so that a run repeats exactly
    whatever else draws random numbers. The pool is not part of a checkpoint: after a resume it refills from empty
    (as the reference implementation does).

    Args:
        size: images kept; 0 disables the pool (every call returns its input).
        seed: seed of the draws.
    """

    def __init__(self, size: int = 50, seed: int = 0) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InputError(f"ImagePool size must be a non-negative integer; got {size!r}")
        self.size = size
        self.random = torch.Generator().manual_seed(int(seed))
        self.images: list[torch.Tensor] = []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` ``(B, ...)`` (detached here) -> a batch of the same shape, each item new or from the pool."""
        images = images.detach()
        if self.size == 0:
            return images
        returned = []
        for image in images:
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image)
                returned.append(image)
            elif torch.rand(1, generator=self.random).item() < 0.5:
                index = int(torch.randint(len(self.images), (1,), generator=self.random))
                returned.append(self.images[index])
                self.images[index] = image
            else:
                returned.append(image)
        return torch.cat(returned, dim=0)


class CycleGanTrainer(GanTrainerBase):
    """CycleGAN trainer on MONAI/Ignite (module docstring for one iteration); every standard MONAI handler attaches.

    Args:
        device: where to train.
        max_epochs: epochs to run.
        train_data_loader: yields dict batches holding ``condition_key`` (domain A) and ``target_key`` (domain B).
        generator: ``G: A -> B`` (the network a bundle ships); optionally DDP-wrapped, as are all four networks.
        inverse_generator: ``F: B -> A``.
        discriminator: ``D_B``, judging domain-B images alone.
        inverse_discriminator: ``D_A``, judging domain-A images alone.
        g_optimizer: over the parameters of G and F.
        d_optimizer: over the parameters of D_B and D_A.
        adversarial_loss: ``loss(d_output, target_is_real, for_discriminator)``, e.g.
            ``synthmr.losses.AdversarialLoss("lsgan")`` (CycleGAN's least-squares loss).
        cycle_weight: lambda on the two cycle L1 terms (10 in the paper).
        identity_weight: lambda_identity; when > 0, ``identity_weight * cycle_weight * (|G(b) - b|_1 + |F(a) - a|_1)``
            joins the generator loss (the paper's painting -> photo experiments, 0.5 there); needs domains A and B
            with equal channel counts.
        pool_size: images in each discriminator's :class:`ImagePool` (50 in the paper); 0 disables the pools.
        seed: seed of the pools' draws (D_B's pool uses ``seed``, D_A's ``seed + 1``).
        unpair: roll the domain-B batch by one item, so that no A item meets its own paired B image even in data
            that comes in pairs; needs batches of at least 2.
        condition_key, target_key: batch keys of domain A and domain B.
        epoch_length, non_blocking, train_handlers, amp, amp_kwargs: as in MONAI trainers.
        workflow_kwargs: other :class:`monai.engines.Workflow` arguments.

    ``engine.state.output`` after each iteration is a dict of floats: ``loss`` (= ``g_loss``), ``g_loss``,
    ``d_loss``, ``g_adv`` (both generators' adversarial terms), ``cycle`` (the two cycle L1 terms, unweighted) and,
    with ``identity_weight > 0``, ``identity`` (the two identity L1 terms, unweighted).
    """

    def __init__(
        self,
        device: torch.device | str,
        max_epochs: int,
        train_data_loader: Iterable,
        generator: torch.nn.Module,
        inverse_generator: torch.nn.Module,
        discriminator: torch.nn.Module,
        inverse_discriminator: torch.nn.Module,
        g_optimizer: torch.optim.Optimizer,
        d_optimizer: torch.optim.Optimizer,
        adversarial_loss: Callable,
        cycle_weight: float = 10.0,
        identity_weight: float = 0.0,
        pool_size: int = 50,
        seed: int = 0,
        unpair: bool = True,
        condition_key: str = "image",
        target_key: str = "target",
        epoch_length: int | None = None,
        non_blocking: bool = False,
        train_handlers: list | None = None,
        amp: bool = False,
        amp_kwargs: dict | None = None,
        **workflow_kwargs,
    ):
        if cycle_weight < 0 or identity_weight < 0:
            raise InputError(
                f"cycle_weight and identity_weight must be >= 0; got {cycle_weight!r} and {identity_weight!r}"
            )
        super().__init__(
            device,
            max_epochs,
            train_data_loader,
            generator,
            discriminator,
            g_optimizer,
            d_optimizer,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            train_handlers=train_handlers,
            amp=amp,
            amp_kwargs=amp_kwargs,
            prepare_batch=lambda batch, device, non_blocking, **kwargs: batch,
            **workflow_kwargs,
        )
        self.inverse_generator = inverse_generator
        self.inverse_discriminator = inverse_discriminator
        self.adversarial_loss = adversarial_loss
        self.cycle_weight = float(cycle_weight)
        self.identity_weight = float(identity_weight)
        self.pool_b = ImagePool(pool_size, seed)
        self.pool_a = ImagePool(pool_size, seed + 1)
        self.unpair = bool(unpair)
        self.condition_key = condition_key
        self.target_key = target_key

    def _domains(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        real_a, real_b = batch[self.condition_key], batch[self.target_key]
        if self.unpair:
            if real_b.shape[0] < 2:
                raise InputError(
                    f"CycleGanTrainer with unpair=True needs batches of at least 2 (it rolls domain B by one item so "
                    f"that no {self.condition_key!r} image meets its own {self.target_key!r}); got a batch of "
                    f"{real_b.shape[0]}. Raise the batch size or pass unpair=False"
                )
            real_b = torch.roll(real_b, shifts=1, dims=0)
        if self.identity_weight > 0 and real_a.shape[1] != real_b.shape[1]:
            raise InputError(
                f"CycleGanTrainer identity loss (identity_weight {self.identity_weight}) feeds B images to G and A "
                f"images to F, so domains A ({self.condition_key!r}) and B ({self.target_key!r}) need equal channel "
                f"counts; got {real_a.shape[1]} and {real_b.shape[1]}. Set identity_weight to 0"
            )
        return real_a, real_b

    def _iteration(self, engine: "CycleGanTrainer", batchdata: dict) -> dict:
        batch = {k: engine.to_device(v) for k, v in batchdata.items()}
        real_a, real_b = engine._domains(batch)
        g, f = engine.generator, engine.inverse_generator
        d_b, d_a = engine.discriminator, engine.inverse_discriminator
        for network in (g, f, d_b, d_a):
            network.train()

        # Generator step through the unwrapped discriminators with frozen weights: no D gradients, no DDP sync for D.
        d_b_plain, d_a_plain = unwrap(d_b), unwrap(d_a)
        set_requires_grad(d_b_plain, False)
        set_requires_grad(d_a_plain, False)
        try:
            with engine.autocast():
                fake_b, fake_a = g(real_a), f(real_b)
                g_adv = engine.adversarial_loss(d_b_plain(fake_b), True, False) + engine.adversarial_loss(
                    d_a_plain(fake_a), True, False
                )
                cycle = F.l1_loss(f(fake_b), real_a) + F.l1_loss(g(fake_a), real_b)
                g_loss = g_adv + engine.cycle_weight * cycle
                identity = None
                if engine.identity_weight > 0:
                    identity = F.l1_loss(g(real_b), real_b) + F.l1_loss(f(real_a), real_a)
                    g_loss = g_loss + engine.identity_weight * engine.cycle_weight * identity
            engine.step(g_loss, engine.g_optimizer, engine.g_scaler)
        finally:
            set_requires_grad(d_b_plain, True)
            set_requires_grad(d_a_plain, True)

        # Discriminator step on the DDP-wrapped discriminators (so their gradients are all-reduced), on pooled fakes.
        with engine.autocast():
            d_loss = 0.5 * (
                engine.adversarial_loss(d_b(real_b), True, True)
                + engine.adversarial_loss(d_b(engine.pool_b(fake_b)), False, True)
            ) + 0.5 * (
                engine.adversarial_loss(d_a(real_a), True, True)
                + engine.adversarial_loss(d_a(engine.pool_a(fake_a)), False, True)
            )
        engine.step(d_loss, engine.d_optimizer, engine.d_scaler)

        output = {
            "loss": g_loss.item(),
            "g_loss": g_loss.item(),
            "d_loss": d_loss.item(),
            "g_adv": g_adv.item(),
            "cycle": cycle.item(),
        }
        if identity is not None:
            output["identity"] = identity.item()
        return output
