"""Adversarial losses (vanilla, least squares, hinge, Wasserstein) for single- and multi-scale discriminators."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.losses import PatchAdversarialLoss

from synthmr.errors import InputError

ADVERSARIAL_MODES = ("vanilla", "lsgan", "hinge", "wasserstein")

DiscriminatorOutput = torch.Tensor | Sequence[torch.Tensor] | Sequence[Sequence[torch.Tensor]]


def discriminator_logits(output: DiscriminatorOutput) -> list[torch.Tensor]:
    """The logits of each scale of a discriminator output.

    Accepted: a tensor (one discriminator's logits); a flat list of tensors (the layer outputs of one MONAI
    ``PatchDiscriminator``, logits last); a list of such per-scale lists
    (:class:`~synthmr.nets.MultiScaleDiscriminator`). Per-scale logits tensors from elsewhere are passed as
    ``[[logits_1], [logits_2], ...]``.
    """
    if isinstance(output, torch.Tensor):
        return [output]
    if all(isinstance(layer, torch.Tensor) for layer in output):
        return [output[-1]]
    return [scale[-1] for scale in output]


class AdversarialLoss(nn.Module):
    """GAN loss on discriminator logits, for the discriminator or the generator side.

    Modes (``D`` = discriminator logits, averaged over all patches; one value per scale, averaged over scales):

    - "vanilla" (Goodfellow et al. 2014, arXiv 1406.2661; pix2pix): binary cross-entropy with logits against
      1 (real) or 0 (fake); the generator uses the non-saturating form, BCE(D(fake), 1).
    - "lsgan" (Mao et al. 2017, arXiv 1611.04076; pix2pixHD, CycleGAN): mean squared error against 1 or 0.
    - "hinge" (Lim & Ye 2017, arXiv 1705.02894; Miyato et al. 2018, arXiv 1802.05957): discriminator
      ``mean(relu(1 - D(real)))`` and ``mean(relu(1 + D(fake)))``; generator ``-mean(D(fake))``.
    - "wasserstein" (Arjovsky et al. 2017, arXiv 1701.07875): critic ``-mean(D(real))`` and ``mean(D(fake))``;
      generator ``-mean(D(fake))``. Constrain the critic with :func:`gradient_penalty` or weight clipping.

    "lsgan" is MONAI's ``PatchAdversarialLoss`` with ``no_activation_leastsq=True`` (without it MONAI passes the
    logits through LeakyReLU(0.05) first). "vanilla" and "hinge" are written here because MONAI's "bce" applies a
    sigmoid and then ``BCELoss`` (less stable than BCE-with-logits for large logits) and its "hinge" applies tanh
    first, which bounds the logits and is not the standard hinge loss.

    pix2pixHD sums its loss over scales; this averages, so multiply by the number of scales to reproduce its scale.

    Args:
        mode: "vanilla", "lsgan", "hinge" or "wasserstein".
    """

    def __init__(self, mode: str) -> None:
        super().__init__()
        if mode not in ADVERSARIAL_MODES:
            raise InputError(f"adversarial loss mode must be one of {', '.join(ADVERSARIAL_MODES)}; got {mode!r}")
        self.mode = mode
        self.least_squares = (
            PatchAdversarialLoss(criterion="least_squares", no_activation_leastsq=True) if mode == "lsgan" else None
        )

    def forward(self, logits: DiscriminatorOutput, target_is_real: bool, for_discriminator: bool) -> torch.Tensor:
        """Loss of ``logits`` (see :func:`discriminator_logits` for the accepted forms).

        Args:
            logits: discriminator output for real or generated images.
            target_is_real: whether the discriminator should call these inputs real. On the generator side it
                must be True (the generator wants its images judged real).
            for_discriminator: discriminator/critic side (True) or generator side (False).
        """
        if not for_discriminator and not target_is_real:
            raise ValueError("the generator-side adversarial loss needs target_is_real=True")
        scales = discriminator_logits(logits)
        if self.least_squares is not None:
            return self.least_squares(scales, target_is_real=target_is_real, for_discriminator=for_discriminator)
        losses = [self._one_scale(d, target_is_real, for_discriminator) for d in scales]
        return torch.stack(losses).mean()

    def _one_scale(self, d: torch.Tensor, target_is_real: bool, for_discriminator: bool) -> torch.Tensor:
        if self.mode == "vanilla":
            return F.binary_cross_entropy_with_logits(d, torch.full_like(d, 1.0 if target_is_real else 0.0))
        if not for_discriminator:  # hinge and Wasserstein share the generator loss
            return -d.mean()
        if self.mode == "hinge":
            return F.relu(1.0 - d).mean() if target_is_real else F.relu(1.0 + d).mean()
        return -d.mean() if target_is_real else d.mean()


def gradient_penalty(
    critic: Callable[[torch.Tensor], DiscriminatorOutput],
    real: torch.Tensor,
    fake: torch.Tensor,
    weight: float = 10.0,
) -> torch.Tensor:
    """WGAN-GP gradient penalty ``weight * mean((||grad_x D(x_hat)||_2 - 1)^2)``.

    Gulrajani et al., "Improved Training of Wasserstein GANs", arXiv 1704.00028: ``x_hat`` is a random point on
    the segment between a real and a generated sample (one uniform mixing weight per sample). The norm is taken
    per sample over all channels and voxels. For a patch or multi-scale critic the gradient is that of the sum of
    all its logits, as in the pix2pix reference code. For a conditional critic pass ``real`` and ``fake`` with
    the condition already concatenated: the condition, equal in both, is interpolated to itself.

    The result is differentiable with respect to the critic's parameters (add it to the critic loss). Use a critic
    without batch norm: the penalty is per sample and batch norm couples samples.

    Args:
        critic: the discriminator/critic; its output may take any form :func:`discriminator_logits` accepts.
        real: real samples ``(B, C, *spatial)``.
        fake: generated samples of the same shape (detached here).
        weight: lambda of the paper (10).
    """
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real and fake shapes differ: {tuple(real.shape)} vs {tuple(fake.shape)}")
    alpha = torch.rand((real.shape[0],) + (1,) * (real.ndim - 1), dtype=real.dtype, device=real.device)
    interpolated = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = discriminator_logits(critic(interpolated))
    (gradient,) = torch.autograd.grad(
        outputs=scores,
        inputs=interpolated,
        grad_outputs=[torch.ones_like(s) for s in scores],
        create_graph=True,
    )
    # A tiny constant under the root keeps the backward pass finite where the gradient vanishes.
    norms = torch.sqrt(gradient.flatten(1).pow(2).sum(dim=1) + 1e-12)
    return weight * ((norms - 1.0) ** 2).mean()
