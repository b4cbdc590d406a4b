"""Discriminator feature-matching loss of pix2pixHD (and SAMR's squared-error variant)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


class FeatureMatchingLoss(nn.Module):
    """pix2pixHD feature-matching loss between a discriminator's layer outputs for generated and real images.

    Wang et al., "High-Resolution Image Synthesis and Semantic Manipulation with Conditional GANs",
    arXiv 1711.11585, eq. (4), with the weights of the reference code::

        weight * sum_i sum_j (1 / num_d) * (4 / (num_layers_d + 1)) * L1(D_ij(fake), D_ij(real).detach())

    over the scales ``i`` and every layer output ``j`` except the last (the logits). L1 is the mean absolute
    difference. A PatchGAN with ``num_layers_d`` normalised layers has ``num_layers_d + 2`` outputs, so each scale
    contributes ``num_layers_d + 1`` terms and a total layer weight of 4. Real features are detached: the loss
    trains the generator only.

    SAMR (Guo et al., "Lesion Mask-based Simultaneous Synthesis of Anatomic and Molecular MR Images using a GAN",
    arXiv 2006.14761, eq. 2) writes it per discriminator as the sum over layers of the mean squared difference,
    ``(1 / N_i) ||D_k^(i)(real) - D_k^(i)(fake)||_2^2``, summed over its six discriminators with weight 5:
    ``distance="l2", pix2pixhd_weights=False``.

    Args:
        num_d: number of discriminator scales (``num_D``), or of discriminators (SAMR's label-wise six).
        num_layers_d: normalised convolutions per discriminator (``n_layers_D``).
        weight: lambda of the paper (``--lambda_feat``, 10; SAMR's lambda_1, 5).
        distance: "l1" (pix2pixHD's code) or "l2" (mean squared difference, SAMR's eq. 2).
        pix2pixhd_weights: weigh each term by ``(1 / num_d) * (4 / (num_layers_d + 1))`` as pix2pixHD's code; False
            sums the terms unweighted.
    """

    def __init__(
        self,
        num_d: int,
        num_layers_d: int,
        weight: float = 10.0,
        distance: str = "l1",
        pix2pixhd_weights: bool = True,
    ) -> None:
        super().__init__()
        if distance not in ("l1", "l2"):
            raise ValueError(f"FeatureMatchingLoss distance must be 'l1' or 'l2'; got {distance!r}")
        self.num_d = num_d
        self.num_layers_d = num_layers_d
        self.weight = weight
        self.distance = F.l1_loss if distance == "l1" else F.mse_loss
        self.pix2pixhd_weights = bool(pix2pixhd_weights)

    def forward(
        self, fake_features: Sequence[Sequence[torch.Tensor]], real_features: Sequence[Sequence[torch.Tensor]]
    ) -> torch.Tensor:
        """Loss between per-scale lists of layer outputs (logits last), e.g. two MultiScaleDiscriminator outputs."""
        expected = self.num_layers_d + 2
        if len(fake_features) != self.num_d or len(real_features) != self.num_d:
            raise ValueError(
                f"FeatureMatchingLoss expects {self.num_d} scales; got {len(fake_features)} (fake) and "
                f"{len(real_features)} (real)"
            )
        for fake_scale, real_scale in zip(fake_features, real_features):
            if len(fake_scale) != expected or len(real_scale) != expected:
                raise ValueError(
                    f"FeatureMatchingLoss expects {expected} layer outputs per scale (num_layers_d + 2); got "
                    f"{len(fake_scale)} (fake) and {len(real_scale)} (real)"
                )
        layer_weight = (1.0 / self.num_d) * (4.0 / (self.num_layers_d + 1)) if self.pix2pixhd_weights else 1.0
        loss = sum(
            self.distance(fake, real.detach())
            for fake_scale, real_scale in zip(fake_features, real_features)
            for fake, real in zip(fake_scale[:-1], real_scale[:-1])
        )
        return self.weight * layer_weight * loss
