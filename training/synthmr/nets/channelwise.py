"""Several single-channel generators shipped as one network (channel i in, channel i out), and their
discriminators side by side (pair i: condition channel i and image channel i)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from synthmr.errors import InputError


class ChannelwiseGenerators(nn.Module):
    """``k`` independent generators run side by side: generator ``i`` maps input channel ``i`` to output channel(s)
    ``i``, and nothing else reaches it.

    A method that trains one generator per sequence keeps them in this one module, so that its bundle still has
    one ``network_def``, one weights file and one ``(B, k, ...)`` input and output, which MONAI's
    ``verify_net_in_out`` and TorchScript export (``ckpt_export``) handle like any other network. The generators
    share no weights; the state dict holds them as ``generators.0.*``, ``generators.1.*``, ...

    Args:
        generators: one network per channel. Each receives its channel as ``(B, 1, *spatial)``; their outputs are
            concatenated along the channel axis in this order, so single-channel generators give ``(B, k,
            *spatial)``.
    """

    def __init__(self, generators: Sequence[nn.Module]) -> None:
        super().__init__()
        generators = list(generators)
        if not generators:
            raise InputError("ChannelwiseGenerators needs at least one generator; got none")
        not_modules = [type(g).__name__ for g in generators if not isinstance(g, nn.Module)]
        if not_modules:
            raise InputError(f"ChannelwiseGenerators takes torch.nn.Module generators; got {', '.join(not_modules)}")
        self.generators = nn.ModuleList(generators)
        self.channels = len(generators)

    @classmethod
    def of(cls, count: int, make: Callable[[], nn.Module]) -> ChannelwiseGenerators:
        """``count`` generators, each built by calling ``make`` (fresh weights each time).

        For configs: ``make`` is a ``_target_`` with ``_mode_: callable``, so the generator's arguments are
        written once instead of ``count`` times.
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InputError(f"ChannelwiseGenerators.of count must be a positive integer; got {count!r}")
        return cls([make() for _ in range(count)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3 or x.shape[1] != self.channels:
            raise InputError(
                f"ChannelwiseGenerators holds {self.channels} generators, one per input channel, so it needs input "
                f"(batch, {self.channels}, *spatial); got shape {list(x.shape)}"
            )
        outputs: list[torch.Tensor] = []
        for index, generator in enumerate(self.generators):
            outputs.append(generator(x[:, index : index + 1]))
        return torch.cat(outputs, dim=1)


class ChannelwiseDiscriminators(nn.Module):
    """``k`` independent discriminators run side by side, one per channel pair of a conditional discriminator input.

    The counterpart of :class:`ChannelwiseGenerators` for training: with ``k`` conditions and ``k`` images stacked
    as ``[conditions, images]`` (``(B, 2k, *spatial)``, the default discriminator input of
    :class:`synthmr.engines.PairedGanTrainer`), discriminator ``i`` sees ``(condition_i, image_i)`` as ``(B, 2,
    *spatial)`` and nothing else, so ``k`` conditional GANs train together yet independently (no shared weights).

    ``forward`` returns the list of the ``k`` outputs, in channel order, each as its discriminator returns it (a
    MONAI ``PatchDiscriminator``'s list of layer outputs with the logits last, or a tensor of logits).
    :class:`synthmr.losses.AdversarialLoss` reads such a list as scales and averages the ``k`` losses, so each
    discriminator (and each generator, through its own discriminator) gets ``1/k`` of its own GAN loss's gradient:
    with Adam, which is invariant to a constant factor on the loss, that trains each pair as it would alone.

    With ``conditional=False`` the input is the ``k`` images alone, ``(B, k, *spatial)``, and discriminator ``i``
    sees image ``i`` alone, ``(B, 1, *spatial)``: ``k`` unconditional discriminators (CycleGAN's).

    Args:
        discriminators: one network per channel pair; each takes ``(B, 2, *spatial)`` (``(B, 1, *spatial)`` when
            not conditional).
        conditional: whether each discriminator sees its condition beside its image.
    """

    def __init__(self, discriminators: Sequence[nn.Module], conditional: bool = True) -> None:
        super().__init__()
        self.conditional = bool(conditional)
        discriminators = list(discriminators)
        if not discriminators:
            raise InputError("ChannelwiseDiscriminators needs at least one discriminator; got none")
        not_modules = [type(d).__name__ for d in discriminators if not isinstance(d, nn.Module)]
        if not_modules:
            raise InputError(
                f"ChannelwiseDiscriminators takes torch.nn.Module discriminators; got {', '.join(not_modules)}"
            )
        self.discriminators = nn.ModuleList(discriminators)
        self.channels = len(discriminators)

    @classmethod
    def of(cls, count: int, make: Callable[[], nn.Module], conditional: bool = True) -> ChannelwiseDiscriminators:
        """``count`` discriminators, each built by calling ``make`` (fresh weights each time; ``_mode_: callable``
        in configs)."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InputError(f"ChannelwiseDiscriminators.of count must be a positive integer; got {count!r}")
        return cls([make() for _ in range(count)], conditional)

    def forward(self, x: torch.Tensor) -> list:
        k = self.channels
        if not self.conditional:
            if x.dim() < 3 or x.shape[1] != k:
                raise InputError(
                    f"ChannelwiseDiscriminators holds {k} unconditional discriminators, so it needs input (batch, {k}, "
                    f"*spatial): one image each; got shape {list(x.shape)}"
                )
            return [discriminator(x[:, i : i + 1]) for i, discriminator in enumerate(self.discriminators)]
        if x.dim() < 3 or x.shape[1] != 2 * k:
            raise InputError(
                f"ChannelwiseDiscriminators holds {k} discriminators, so it needs input (batch, {2 * k}, *spatial): "
                f"{k} conditions then {k} images; got shape {list(x.shape)}"
            )
        return [
            discriminator(torch.cat([x[:, i : i + 1], x[:, k + i : k + i + 1]], dim=1))
            for i, discriminator in enumerate(self.discriminators)
        ]
