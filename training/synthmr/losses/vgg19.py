"""VGG19 convolutional features from a local torchvision weights file, for perceptual losses on MRI."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn

from synthmr.errors import InputError

# torchvision's vgg19 "features" stack: convolution widths, "M" = 2x2 max pooling.
_VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHTS_FILE = "vgg19-dcbb9e9d.pth"
WEIGHTS_URL = f"https://download.pytorch.org/models/{WEIGHTS_FILE}"
DEFAULT_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def _relu_indices() -> dict[str, int]:
    """Index in ``features`` of every ReLU, by its conventional name ``relu<block>_<conv>``."""
    indices, index, block, conv = {}, 0, 1, 0
    for entry in _VGG19_LAYOUT:
        if entry == "M":
            index, block, conv = index + 1, block + 1, 0
        else:
            conv += 1
            indices[f"relu{block}_{conv}"] = index + 1
            index += 2
    return indices


class VGG19Features(nn.Module):
    """The convolutional part of VGG19 returning the activations of chosen ReLU layers.

    Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition", arXiv 1409.1556.
    ``features`` has the module indices of torchvision's ``vgg19().features`` (so its ``features.N.weight`` and
    ``features.N.bias`` keys load unchanged), truncated after the deepest requested layer. The defaults are the
    layers of pix2pixHD's VGG loss (``relu1_1`` ... ``relu5_1``, indices 1, 6, 11, 20, 29). Build it with
    :func:`vgg19_features` to load ImageNet weights.

    Input: 2D images ``(B, 1 or 3, H, W)`` with intensities in ``input_range``; one channel (MRI) is replicated to
    three, then intensities are mapped to [0, 1] and normalised with the ImageNet mean and standard deviation the
    weights were trained with.

    Args:
        layers: names ``relu<block>_<conv>`` of the activations to return, in the order given.
        input_range: intensity range of the input images (the generators' Tanh output: -1 to 1).
    """

    def __init__(
        self, layers: Sequence[str] = DEFAULT_LAYERS, input_range: tuple[float, float] = (-1.0, 1.0)
    ) -> None:
        super().__init__()
        relu_index = _relu_indices()
        unknown = [name for name in layers if name not in relu_index]
        if unknown or not layers:
            raise InputError(f"VGG19 layers must be among {', '.join(relu_index)}; got {list(layers)}")
        self.layer_indices = [relu_index[name] for name in layers]
        modules: list[nn.Module] = []
        in_channels = 3
        for entry in _VGG19_LAYOUT:
            if entry == "M":
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                modules += [nn.Conv2d(in_channels, entry, kernel_size=3, padding=1), nn.ReLU()]
                in_channels = entry
        self.features = nn.Sequential(*modules[: max(self.layer_indices) + 1])
        low, high = input_range
        # Fold "to [0, 1]" and the ImageNet normalisation into one affine map; buffers kept out of the state dict.
        std = torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1)
        mean = torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / ((high - low) * std), persistent=False)
        self.register_buffer("shift", (-low / (high - low) - mean) / std, persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"VGG19Features takes 2D images (B, 1 or 3, H, W); got shape {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = x * self.scale + self.shift
        activations: dict[int, torch.Tensor] = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.layer_indices:
                activations[index] = x
        return [activations[index] for index in self.layer_indices]


def vgg19_features(
    weights_path: str | Path,
    layers: Sequence[str] = DEFAULT_LAYERS,
    input_range: tuple[float, float] = (-1.0, 1.0),
) -> VGG19Features:
    """A :class:`VGG19Features` with ImageNet weights read from a local torchvision file, in eval mode.

    Nothing is downloaded: ``weights_path`` is torchvision's ``vgg19-dcbb9e9d.pth`` (or any state dict with the
    same ``features.N.*`` keys), fetched beforehand on a machine with network access.

    Args:
        weights_path: local path of the state dict.
        layers: see :class:`VGG19Features`.
        input_range: see :class:`VGG19Features`.

    Raises:
        InputError: the file is missing, unreadable, or lacks the needed weights.
    """
    path = Path(weights_path)
    if not path.is_file():
        raise InputError(
            f"VGG19 weights file not found: {path} (torchvision's ImageNet VGG19 state dict {WEIGHTS_FILE}; "
            f"download {WEIGHTS_URL} where there is network access and pass its local path)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a file that is not a state dict
        raise InputError(f"VGG19 weights file {path} is not a readable PyTorch state dict: {error}") from error
    model = VGG19Features(layers, input_range)
    needed = model.state_dict()
    if not isinstance(state, dict):
        raise InputError(f"VGG19 weights file {path} holds a {type(state).__name__}, not a state dict")
    missing = [key for key in needed if key not in state]
    wrong = [key for key in needed if key in state and state[key].shape != needed[key].shape]
    if missing or wrong:
        raise InputError(
            f"VGG19 weights file {path} does not match torchvision's vgg19: missing {missing[:4]}, wrong shape "
            f"{wrong[:4]} (expected {WEIGHTS_FILE})"
        )
    model.load_state_dict({key: state[key] for key in needed})
    return model.eval()
