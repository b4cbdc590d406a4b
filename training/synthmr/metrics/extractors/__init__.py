"""Feature extractors for the Fréchet distance, by name, with weights from local files only (docs/design.md, *Engines, losses and metrics*).

========================  =====  ==========================================================================
name                      dim    weights
========================  =====  ==========================================================================
``domain`` (default)      256    shipped in this package (``domain_extractor.pt``), trained on phantom MRI
``inception``             2048   pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (user downloads it)
``radimagenet_resnet50``  2048   ``RadImageNet-ResNet50_notop.pth`` PyTorch port (user downloads it)
========================  =====  ==========================================================================

Nothing is ever downloaded and nothing is substituted: a missing file raises :class:`InputError` naming the file and
where to get it. Every extractor returned records its name and its weights' file and SHA-256
(:func:`describe_extractor`), which FID reports carry.
"""

from __future__ import annotations

import importlib.resources
import warnings
from pathlib import Path

import torch.nn as nn

from synthmr.errors import InputError
from synthmr.metrics.extractors.domain import DomainExtractor
from synthmr.metrics.extractors.inception import FIDInceptionV3
from synthmr.metrics.extractors.radimagenet import RadImageNetResNet50
from synthmr.metrics.extractors.weights import WeightsSpec, load_into, read_state_dict

DOMAIN_WEIGHTS_FILE = "domain_extractor.pt"

WEIGHTS = {
    "domain": WeightsSpec(
        what="SynthMR domain extractor weights",
        file_name=DOMAIN_WEIGHTS_FILE,
        source="the synthmr package itself (reinstall it, or retrain with training/scripts/train_domain_extractor.py)",
    ),
    "inception": WeightsSpec(
        what="pytorch-fid Inception-v3 FID weights (PyTorch port of the TF graph inception-2015-12-05)",
        file_name="pt_inception-2015-12-05-6726825d.pth",
        source="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
        "pt_inception-2015-12-05-6726825d.pth",
        expected_sha256_prefix="6726825d",
    ),
    "radimagenet_resnet50": WeightsSpec(
        what="RadImageNet ResNet-50 weights (PyTorch port of RadImageNet-ResNet50_notop.h5)",
        file_name="RadImageNet-ResNet50_notop.pth",
        source="https://huggingface.co/MONAI/checkpoints (the file MONAI's PerceptualLoss uses) or "
        "https://github.com/Warvito/radimagenet-models",
    ),
}

NETWORKS = {"domain": DomainExtractor, "inception": FIDInceptionV3, "radimagenet_resnet50": RadImageNetResNet50}
EXTRACTORS = tuple(NETWORKS)

# State-dict entries of released files that the feature network does not have: Inception's 1008-class classifier.
_UNUSED_PREFIXES = {"inception": ("fc.",), "radimagenet_resnet50": ("fc.",), "domain": ()}


def shipped_domain_weights() -> Path:
    """Path of the domain extractor weights shipped inside the installed package (it may be absent)."""
    return Path(str(importlib.resources.files(__name__).joinpath(DOMAIN_WEIGHTS_FILE)))


def get_extractor(name: str = "domain", weights: str | Path | None = None) -> nn.Module:
    """The feature extractor ``name`` with its weights loaded, in eval mode and without gradients.

    Args:
        name: one of :data:`EXTRACTORS`.
        weights: local weights file. Required for "inception" and "radimagenet_resnet50" (the message of the
            :class:`InputError` raised without it names the file and where to download it); for "domain" it
            defaults to the file shipped in the package.

    Returns:
        a module mapping images ``(N, C, H, W)`` in [0, 1] to features ``(N, feature_dim)``; it carries
        ``extractor_name``, ``weights_file`` and ``weights_sha256`` (see :func:`describe_extractor`).
    """
    if name not in NETWORKS:
        raise InputError(f"unknown feature extractor {name!r}: choose one of {', '.join(EXTRACTORS)}")
    spec = WEIGHTS[name]
    if weights is None:
        if name != "domain":
            raise InputError(spec.missing_message(name))
        weights = shipped_domain_weights()
        if not weights.is_file():
            raise InputError(f"{weights}: the shipped {spec.file_name} is missing; get it from {spec.source}")
    state, sha256 = read_state_dict(weights, spec, name)
    state = {k: v for k, v in state.items() if not k.startswith(_UNUSED_PREFIXES[name])}
    network = NETWORKS[name]()
    load_into(network, state, weights, spec)
    if spec.expected_sha256_prefix and not sha256.startswith(spec.expected_sha256_prefix):
        warnings.warn(
            f"{weights}: SHA-256 {sha256[:8]}... differs from {spec.expected_sha256_prefix} that the released "
            f"{spec.file_name} is named after: the file may be corrupt or another release; FIDs may not be comparable",
            stacklevel=2,
        )
    network.eval().requires_grad_(False)
    network.extractor_name = name
    network.weights_file = Path(weights).name
    network.weights_sha256 = sha256
    return network


def describe_extractor(extractor: nn.Module) -> str:
    """One line naming the extractor and its weights, e.g. ``"domain (domain_extractor.pt, sha256 1a2b3c4d5e6f)"``.

    A module not made by :func:`get_extractor` is named by its class, and the line says its weights are not recorded.
    """
    name = getattr(extractor, "extractor_name", None)
    if name is None:
        return f"{type(extractor).__name__} (user-supplied module; weights not recorded)"
    return f"{name} ({extractor.weights_file}, sha256 {extractor.weights_sha256[:12]})"


__all__ = [
    "EXTRACTORS",
    "DomainExtractor",
    "FIDInceptionV3",
    "RadImageNetResNet50",
    "describe_extractor",
    "get_extractor",
    "shipped_domain_weights",
]
