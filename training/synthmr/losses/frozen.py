"""A pretrained network used inside a loss: never trained, always in inference mode."""

from __future__ import annotations

import torch.nn as nn


class FrozenNetwork(nn.Module):
    """Wrap ``network`` so that a loss can use it without ever training it.

    Its parameters get ``requires_grad=False`` (so no optimiser can move them and no gradient is stored for them;
    gradients still flow *through* it to the input) and it stays in eval mode even when the owning loss or trainer
    calls ``.train()`` (BatchNorm statistics and dropout of a pretrained extractor or segmenter must not change).
    The wrapped network is frozen in place.

    Args:
        network: the pretrained module; called with the wrapper's arguments.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> FrozenNetwork:
        # nn.Module.train recurses from the owner; refuse training mode for everything inside.
        return super().train(False)

    def forward(self, *args, **kwargs):
        return self.network(*args, **kwargs)
