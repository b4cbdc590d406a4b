"""Ready-made ``synthesize`` callables for :func:`synthmr.evaluation.benefit.run_benefit`.

A bundle's ``configs/benefit.yaml`` declares how it makes synthetic training items; these two cover the common
cases without knowing any method:

- :class:`ImageTranslation`: an image-to-image generator (a bundle's network) applied to one image of each chosen
  real item; the synthetic item keeps that real item's label map, because the generator keeps the anatomy.
- :class:`NoiseControl`: the negative control, Gaussian noise on each chosen real item's grid with its label map.
  A harness that reports a gain for it is broken; a synthesizer that does no better than it adds nothing.

Both choose which real items to build on with the run's seed, without replacement: one synthetic item per real
item at most, so a share above 1 is refused (a deterministic generator would only repeat itself).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from synthmr.errors import InputError
from synthmr.inference import Synthesizer
from synthmr.io import read_image, write_image


def weights_digest(network: torch.nn.Module) -> str:
    """SHA-256 of a network's weights (names and values, in name order): which generator made a synthetic set."""
    digest = hashlib.sha256()
    for name, tensor in sorted(network.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _chosen(subset: Sequence[dict], n: int, seed: int, what: str) -> list[dict]:
    if n > len(subset):
        raise InputError(
            f"{what}: asked for {n} synthetic items from {len(subset)} real ones; it makes at most one per real "
            "item, so use shares <= 1"
        )
    indices = np.random.default_rng(seed).choice(len(subset), n, replace=False)
    return [subset[index] for index in sorted(indices)]


class ImageTranslation:
    """Synthetic items from an image-to-image generator: ``network`` turns the image under ``source`` of each chosen
    real item into a new image, written under ``out_dir``; the item keeps the real item's label map.

    Args:
        network: the generator, weights loaded (as a bundle's inference config builds it).
        source: key of the real items holding the generator's input (e.g. ``"t1_pre"``); the real items must
            carry it besides ``image`` and ``label``.
        device: where the generator runs.
        synthesizer_options: further :class:`synthmr.inference.Synthesizer` arguments (``roi_size``,
            ``headroom``, ``spatial_dims``...), as in the bundle's inference config.
    """

    def __init__(
        self, network: torch.nn.Module, source: str, device: str | torch.device = "cpu", **synthesizer_options
    ) -> None:
        self.network = network
        self.source = source
        self.device = device
        self.options = synthesizer_options

    def describe(self) -> dict:
        """What the benefit harness records: the generator's class, its weights' SHA-256 and the source key."""
        return {"kind": "ImageTranslation", "network": type(self.network).__name__,
                "weights_sha256": weights_digest(self.network), "source": self.source}

    def __call__(self, subset: Sequence[dict], n: int, out_dir: Path, seed: int) -> list[dict]:
        chosen = _chosen(subset, n, seed, "ImageTranslation")
        missing = [str(item["case_id"]) for item in chosen if self.source not in item]
        if missing:
            raise InputError(f"real items {missing[:5]} have no {self.source!r} image for the generator to translate")
        datalist = [{"case_id": f"{item['case_id']}_synthetic", self.source: item[self.source]} for item in chosen]
        written = Synthesizer(
            self.network, datalist, inputs=[self.source], outputs=["image"], output_dir=out_dir, device=self.device,
            **self.options,
        )()
        return [
            {"case_id": case["case_id"], "image": str(paths["image"]), "label": item["label"]}
            for case, paths, item in zip(datalist, written, chosen)
        ]


class NoiseControl:
    """The negative control: for each chosen real item, Gaussian noise with that image's mean and standard deviation
    on its grid, labelled with its label map. Nothing about the label can be learnt from these images."""

    def describe(self) -> dict:
        """What the benefit harness records of this synthesizer."""
        return {"kind": "NoiseControl"}

    def __call__(self, subset: Sequence[dict], n: int, out_dir: Path, seed: int) -> list[dict]:
        rng = np.random.default_rng(seed)
        items = []
        for item in _chosen(subset, n, seed, "NoiseControl"):
            real = read_image(item["image"])
            array = real.array.astype(np.float32)
            noise = rng.normal(float(array.mean()), float(array.std()) or 1.0, array.shape).astype(np.float32)
            case_id = f"{item['case_id']}_noise"
            path = write_image(real.with_array(noise), Path(out_dir) / f"{case_id}.nii.gz")
            items.append({"case_id": case_id, "image": str(path), "label": item["label"]})
        return items
