"""Paired (conditional) GAN training: pix2pix, pix2pixHD, SAMR, TF-GAN.

One iteration (Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks",
arXiv 1611.07004, Sec. 3.3):

1. ``fake = G(condition)``
2. discriminator step: ``L_D = d_weight * (adv(D(c, real), real) + adv(D(c, fake.detach()), fake))
   + sum_j weight_j * d_term_j(D(c, real), D(c, fake.detach()), batch)``
3. generator step: ``L_G = adv(D(c, fake), real) + sum_k weight_k * term_k(step)``

Everything method-specific enters as arguments: which batch keys are the condition and the target, what the
discriminator sees (``discriminator_input``), the adversarial criterion, and the extra generator terms
(L1, feature matching, perceptual, segmentation consistency, ...), each a callable of :class:`GanStep`, and extra
discriminator terms (an auxiliary head's loss on real images, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import torch

from synthmr.engines.base import GanTrainerBase, set_requires_grad, unwrap


@dataclass
class GanStep:
    """What a generator loss term may look at during one iteration.

    Attributes:
        condition: generator input (already on the device).
        fake: generator output (with gradient).
        target: the real image paired with ``condition``.
        batch: the whole batch (masks, labels, atlases ... on the device).
        d_fake: discriminator output for the fake (with gradient to G), as returned by D.
        d_real: discriminator output for the real pair (detached), as returned by D.
    """

    condition: torch.Tensor
    fake: torch.Tensor
    target: torch.Tensor
    batch: dict
    d_fake: object = None
    d_real: object = None


def on_images(loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[[GanStep], torch.Tensor]:
    """Adapt an image loss ``loss(fake, target)`` (e.g. ``torch.nn.L1Loss()``) to a generator term."""
    return lambda step: loss(step.fake, step.target)


def on_features(loss: Callable[[object, object], torch.Tensor]) -> Callable[[GanStep], torch.Tensor]:
    """Adapt a discriminator-feature loss ``loss(d_fake, d_real)`` (feature matching) to a generator term."""
    return lambda step: loss(step.d_fake, step.d_real)


def concat_condition(condition: torch.Tensor, image: torch.Tensor, batch: dict) -> torch.Tensor:
    """The conditional discriminator input of pix2pix: condition and image stacked on channels."""
    return torch.cat([condition, image], dim=1)


def image_only(condition: torch.Tensor, image: torch.Tensor, batch: dict) -> torch.Tensor:
    """An unconditional discriminator input (e.g. TF-GAN, whose real images are unpaired)."""
    return image


class PairedGanTrainer(GanTrainerBase):
    """Conditional GAN trainer on MONAI/Ignite: every standard MONAI handler attaches to it.

    Args:
        device: where to train.
        max_epochs: epochs to run.
        train_data_loader: yields dict batches holding ``condition_key`` and ``target_key``.
        generator, discriminator: networks (optionally wrapped in DistributedDataParallel).
        g_optimizer, d_optimizer: their optimisers.
        adversarial_loss: ``loss(d_output, target_is_real, for_discriminator)``, e.g.
            :class:`synthmr.losses.AdversarialLoss`.
        loss_terms: name -> (weight, term) extra generator losses; a term maps :class:`GanStep` to a scalar.
        d_loss_terms: name -> (weight, term) extra discriminator losses; a term maps ``(d_real, d_fake, batch)``
            (D's outputs for the real and the detached fake input) to a scalar. With a multi-head D, the
            adversarial loss is given the realism head, e.g. ``lambda out, real, for_d: adv(out.realism, ...)``.
        condition_key: batch key of the generator input (MONAI bundles call it ``image``).
        target_key: batch key of the real image paired with it; for unpaired real images (TF-GAN) the key of
            the real image shown to D.
        discriminator_input: ``f(condition, image, batch)`` building D's input; default concatenates
            condition and image (pix2pix); :func:`image_only` for an unconditional D.
        generator_inputs: batch keys given to G as extra positional inputs after the condition
            (SAMR's atlas).
        d_weight: factor on the summed real/fake discriminator losses (0.5 in pix2pix and pix2pixHD).
        epoch_length, non_blocking, train_handlers, amp, amp_kwargs: as in MONAI trainers.
        workflow_kwargs: other :class:`monai.engines.Workflow` arguments (key_train_metric, ...).

    ``engine.state.output`` after each iteration is a dict of floats: ``loss`` (= ``g_loss``), ``g_loss``,
    ``d_loss``, ``g_adv`` and one entry per loss term, so ``StatsHandler(output_transform=lambda o: o["loss"])``
    and ``TensorBoardStatsHandler`` work unchanged.
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
        loss_terms: Mapping[str, tuple[float, Callable[[GanStep], torch.Tensor]]] | None = None,
        d_loss_terms: Mapping[str, tuple[float, Callable[[object, object, dict], torch.Tensor]]] | None = None,
        condition_key: str = "image",
        target_key: str = "target",
        discriminator_input: Callable = concat_condition,
        generator_inputs: Sequence[str] = (),
        d_weight: float = 0.5,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        train_handlers: list | None = None,
        amp: bool = False,
        amp_kwargs: dict | None = None,
        **workflow_kwargs,
    ):
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
        self.loss_terms = dict(loss_terms or {})
        self.d_loss_terms = dict(d_loss_terms or {})
        self.condition_key = condition_key
        self.target_key = target_key
        self.discriminator_input = discriminator_input
        self.generator_inputs = tuple(generator_inputs)
        self.d_weight = d_weight

    def _iteration(self, engine: "PairedGanTrainer", batchdata: dict) -> dict:
        batch = {k: engine.to_device(v) for k, v in batchdata.items()}
        condition, target = batch[engine.condition_key], batch[engine.target_key]
        g, d = engine.generator, engine.discriminator
        g.train()
        d.train()

        with engine.autocast():
            fake = g(condition, *(batch[k] for k in engine.generator_inputs))

        # Discriminator step on the DDP-wrapped D (so its gradients are all-reduced).
        with engine.autocast():
            d_real = d(engine.discriminator_input(condition, target, batch))
            d_fake = d(engine.discriminator_input(condition, fake.detach(), batch))
            d_loss = engine.d_weight * (
                engine.adversarial_loss(d_fake, False, True) + engine.adversarial_loss(d_real, True, True)
            )
            d_terms = {name: term(d_real, d_fake, batch) for name, (_, term) in engine.d_loss_terms.items()}
            d_loss = d_loss + sum(engine.d_loss_terms[name][0] * value for name, value in d_terms.items())
        engine.step(d_loss, engine.d_optimizer, engine.d_scaler)

        # Generator step through the unwrapped D with frozen weights: no D gradients, no DDP sync for D.
        d_plain = unwrap(d)
        set_requires_grad(d_plain, False)
        try:
            with engine.autocast():
                step = GanStep(condition, fake, target, batch)
                step.d_fake = d_plain(engine.discriminator_input(condition, fake, batch))
                step.d_real = _detach(d_real)
                g_adv = engine.adversarial_loss(step.d_fake, True, False)
                terms = {name: term(step) for name, (_, term) in engine.loss_terms.items()}
                g_loss = g_adv + sum(engine.loss_terms[name][0] * value for name, value in terms.items())
            engine.step(g_loss, engine.g_optimizer, engine.g_scaler)
        finally:
            set_requires_grad(d_plain, True)

        output = {"loss": g_loss.item(), "g_loss": g_loss.item(), "d_loss": d_loss.item(), "g_adv": g_adv.item()}
        output.update({name: value.item() for name, value in terms.items()})
        output.update({f"d_{name}": value.item() for name, value in d_terms.items()})
        return output


def _detach(value):
    """Detach a tensor, a nested list of tensors (multi-scale discriminator outputs) or a named tuple of them."""
    if torch.is_tensor(value):
        return value.detach()
    if hasattr(value, "_fields"):  # a named tuple (multi-head discriminator output) keeps its type and names
        return type(value)(*(_detach(v) for v in value))
    return [_detach(v) for v in value]
