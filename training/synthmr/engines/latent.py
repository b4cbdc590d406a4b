"""Latent (noise + class -> image) GAN training: DCGAN, WGAN with weight clipping, WGAN-GP.

Each iteration takes one real batch and makes one critic (discriminator) step; every ``n_critic``-th iteration
also makes one generator step, so a generator update follows ``n_critic`` critic updates on fresh batches as in
Arjovsky et al., "Wasserstein GAN", arXiv 1701.07875 (Algorithm 1: n_critic = 5, clip 0.01, RMSProp lr 5e-5).
With ``clip_value`` the critic's weights are clipped after every step; with ``gradient_penalty`` > 0 the
penalty of Gulrajani et al., "Improved Training of Wasserstein GANs", arXiv 1704.00028 is added instead.
The optimiser (RMSProp for WGAN, Adam(0.5, 0.999) for DCGAN) is whatever the config passes in.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from synthmr.engines.base import GanTrainerBase, set_requires_grad, unwrap
from synthmr.losses import gradient_penalty


class LatentGanTrainer(GanTrainerBase):
    """Class-conditional latent GAN trainer on MONAI/Ignite.

    Args:
        device, max_epochs, train_data_loader: as in MONAI trainers; batches are dicts.
        generator: ``G(z)`` or, with ``class_key``, ``G(z, labels)``.
        discriminator: ``D(x)`` or ``D(x, labels)``: the critic.
        g_optimizer, d_optimizer: their optimisers.
        adversarial_loss: ``loss(d_output, target_is_real, for_discriminator)``; use the Wasserstein mode
            for WGAN.
        latent_dim: size of the noise vector ``z ~ N(0, I)``.
        image_key: batch key of the real images.
        class_key: batch key of integer class labels for conditional GANs, or None.
        n_critic: critic steps per generator step.
        clip_value: clip critic weights to [-clip_value, clip_value] after each critic step (WGAN).
        gradient_penalty_weight: weight of the WGAN-GP gradient penalty (0 disables it).
        epoch_length, non_blocking, train_handlers, amp, amp_kwargs, workflow_kwargs: as in MONAI trainers.

    ``engine.state.output``: ``d_loss`` of this iteration and the latest ``g_loss`` (``loss`` mirrors it;
    NaN until the first generator step).
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
        adversarial_loss: Callable,
        latent_dim: int,
        image_key: str = "image",
        class_key: str | None = None,
        n_critic: int = 1,
        clip_value: float | None = None,
        gradient_penalty_weight: float = 0.0,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        train_handlers: list | None = None,
        amp: bool = False,
        amp_kwargs: dict | None = None,
        **workflow_kwargs,
    ):
        if n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {n_critic}")
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
        self.adversarial_loss = adversarial_loss
        self.latent_dim = latent_dim
        self.image_key = image_key
        self.class_key = class_key
        self.n_critic = n_critic
        self.clip_value = clip_value
        self.gradient_penalty_weight = gradient_penalty_weight
        self.last_g_loss = float("nan")

    def sample(self, labels: torch.Tensor | None, n: int) -> torch.Tensor:
        """Generate ``n`` images (of ``labels`` when conditional) with the current generator."""
        z = torch.randn(n, self.latent_dim, device=self.state.device)
        return self.generator(z) if labels is None else self.generator(z, labels)

    def _iteration(self, engine: "LatentGanTrainer", batchdata: dict) -> dict:
        real = engine.to_device(batchdata[engine.image_key])
        labels = engine.to_device(batchdata[engine.class_key]) if engine.class_key else None
        g, d = engine.generator, engine.discriminator
        g.train()
        d.train()

        def critic(x, net=d):
            return net(x) if labels is None else net(x, labels)

        with engine.autocast():
            with torch.no_grad():
                fake = engine.sample(labels, real.shape[0])
            d_loss = engine.adversarial_loss(critic(real), True, True) + engine.adversarial_loss(
                critic(fake), False, True
            )
            if engine.gradient_penalty_weight > 0:
                d_loss = d_loss + gradient_penalty(critic, real, fake, weight=engine.gradient_penalty_weight)
        engine.step(d_loss, engine.d_optimizer, engine.d_scaler)
        if engine.clip_value is not None:
            with torch.no_grad():
                for p in d.parameters():
                    p.clamp_(-engine.clip_value, engine.clip_value)

        if engine.state.iteration % engine.n_critic == 0:
            d_plain = unwrap(d)
            set_requires_grad(d_plain, False)
            try:
                with engine.autocast():
                    g_loss = engine.adversarial_loss(critic(engine.sample(labels, real.shape[0]), d_plain), True, False)
                engine.step(g_loss, engine.g_optimizer, engine.g_scaler)
            finally:
                set_requires_grad(d_plain, True)
            engine.last_g_loss = g_loss.item()

        return {"loss": engine.last_g_loss, "g_loss": engine.last_g_loss, "d_loss": d_loss.item()}
