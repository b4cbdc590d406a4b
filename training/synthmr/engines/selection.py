"""Checkpoint selection during training: keep the weights of the best epoch by a validation criterion.

:class:`CheckpointSelection` is the Ignite handler every criterion shares: every ``interval`` epochs (and after
the last epoch) rank 0 evaluates the generator, stores that epoch's weights in ``work_dir/epoch_NNNN/generator.pt``,
ranks every epoch evaluated so far and copies the best one's weights to ``best_path`` (a bundle's
``models/model.pt``); ``work_dir/selection.json`` always holds the current ranking. A criterion only says how to
evaluate an epoch and how to rank the epochs: :class:`PooledKidSelection` (the lowest KID of the generator's
channels pooled, on validation pairs the method's transform makes) serves any method; a method with its own
criterion subclasses :class:`CheckpointSelection` in its module (:mod:`synthmr.methods`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from synthmr.engines.base import save_weights, unwrap
from synthmr.errors import InputError
from synthmr.io._atomic import atomic_output

# ignite (the "train" extra) is imported by attach() only: a method module that defines a criterion is also what
# its bundle's inference imports, which must work without the extra.
if TYPE_CHECKING:
    from ignite.engine import Engine

logger = logging.getLogger(__name__)


class CheckpointSelection:
    """Ignite handler: evaluate the generator every ``interval`` epochs and keep the best epoch's weights.

    Subclasses implement :meth:`evaluate` and :meth:`ranking`, name their score in ``score_name`` and may describe
    their criterion in ``selection.json`` through :meth:`criterion`.

    Args:
        generator: the generator being trained (optionally DDP-wrapped).
        work_dir: folder for the per-epoch files and ``selection.json``.
        best_path: where the best generator's CPU ``state_dict`` goes.
        interval: evaluate every this many epochs (and after the last epoch).
    """

    score_name = "score"

    def __init__(
        self, generator: torch.nn.Module, work_dir: str | os.PathLike, best_path: str | os.PathLike, interval: int = 1
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise InputError(f"interval must be a positive integer, got {interval!r}")
        self.generator = generator
        self.work_dir, self.best_path = Path(work_dir), Path(best_path)
        self.interval = interval

    def evaluate(self, engine: Engine, generator: torch.nn.Module, folder: Path) -> Mapping[str, float]:
        """Evaluate ``generator`` (unwrapped) after this epoch, writing any files under ``folder``; return the
        values to log."""
        raise NotImplementedError

    def ranking(self) -> list[tuple[str, float]]:
        """Every epoch evaluated so far as ``(epoch name, score)``, best first."""
        raise NotImplementedError

    def criterion(self) -> dict:
        """Entries describing the criterion, written into ``selection.json``."""
        return {}

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)
        # The last epoch is always a candidate, even when max_epochs is not a multiple of the interval.
        engine.add_event_handler(Events.COMPLETED, self._after_last_epoch)

    def _after_last_epoch(self, engine: Engine) -> None:
        if engine.state.epoch % self.interval:
            self(engine)

    def __call__(self, engine: Engine) -> None:
        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return  # rank 0 alone evaluates and saves
        name = f"epoch_{engine.state.epoch:04d}"
        folder = self.work_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        generator = unwrap(self.generator)
        was_training = generator.training
        values = self.evaluate(engine, generator, folder)
        generator.train(was_training)
        save_weights(generator.state_dict(), folder / "generator.pt")
        ranking = self.ranking()
        best = ranking[0][0]
        save_weights(torch.load(self.work_dir / best / "generator.pt", weights_only=True), self.best_path)
        selection = {"best": best, "ranking": [{"epoch": n, self.score_name: s} for n, s in ranking], **self.criterion()}
        with atomic_output(self.work_dir / "selection.json", suffix=".json", overwrite=True) as temporary:
            temporary.write_text(json.dumps(selection, indent=2) + "\n", encoding="utf-8")
        shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items() if v is not None)
        logger.info(f"{name}: {shown}; best so far {best} -> {self.best_path}")


def _unit(images: torch.Tensor) -> torch.Tensor:
    """Generator range [-1, 1] -> [0, 1] (what the feature extractors take), as ``(N * k, 1, *spatial)``: the
    channels pooled into one set of single-channel images, case-major (case 0's k channels first)."""
    return ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0).reshape(-1, 1, *images.shape[2:])


class PooledKidSelection(CheckpointSelection):
    """Keep the generator with the lowest pooled KID on the validation pairs.

    Every ``interval`` epochs the generator (eval mode, as at inference) turns the validation pairs' inputs into
    its ``k`` output channels (one image each: e.g. one per sequence); KID (Bińkowski et al., "Demystifying MMD
    GANs", arXiv 1801.01401; :func:`synthmr.metrics.kid.kernel_distance`) between the real and the synthetic
    images, the channels pooled into one set of ``k N`` images each, in the features of ``extractor``, ranks the
    epochs, lowest first. KID rather than FID: a validation set of tens of cases is far below the 2 images per
    feature FID needs (docs/design.md, *Reported numbers*). Per-channel KID and L1 to the real images (in
    [-1, 1]) are written beside it, not ranked. The validation pairs and the real features are computed once and
    kept in memory.

    Files: ``work_dir/epoch_NNNN/{report.json, generator.pt}``, ``work_dir/selection.json``. After a resume the
    reports of the earlier epochs in ``work_dir`` rejoin the ranking, so a fresh run needs a fresh ``work_dir``.

    Args:
        generator: the generator being trained (optionally DDP-wrapped): ``(B, C, ...)`` -> ``(B, k, ...)``.
        datalist: validation items; at least 2.
        transform: item -> ``{input_key: (C, ...), target_key: (k, ...)}``, the method's deterministic validation
            pairs (every item the same shape), the targets in [-1, 1].
        work_dir, best_path, interval: see :class:`CheckpointSelection`.
        channels: names of the ``k`` output channels (e.g. the sequences), for the report.
        extractor, extractor_weights: the feature extractor (:func:`synthmr.metrics.extractors.get_extractor`).
        batch_size: validation cases per generator forward pass.
        n_bootstrap: resamples of the KID interval in the report (the ranking uses the point value).
        input_key, target_key: where ``transform`` puts the generator input and the real images.
        valid_key: optional key of a ``(1, ...)`` mask ``transform`` adds, 1 where the slice is image and 0 where it
            is padding; the synthetic images take the real values in the padding, so that an output the training
            never constrains there (padding no loss covers) counts neither in KID nor in L1.
        description: further entries for ``selection.json`` (what the method's pairs are).
        axial_slices: for a 3D generator (5D batches), KID compares this many axial slices (the last axis)
            around the centre of each validation volume or patch; L1 covers the whole volume.
    """

    score_name = "kid"

    def __init__(
        self,
        generator: torch.nn.Module,
        datalist,
        transform,
        work_dir: str | os.PathLike,
        best_path: str | os.PathLike,
        interval: int = 1,
        channels=(),
        extractor: str = "domain",
        extractor_weights: str | os.PathLike | None = None,
        batch_size: int = 8,
        n_bootstrap: int = 200,
        input_key: str = "image",
        target_key: str = "target",
        description: Mapping | None = None,
        valid_key: str | None = None,
        axial_slices: int = 5,
    ) -> None:
        super().__init__(generator, work_dir, best_path, interval)
        self.axial_slices = int(axial_slices)
        datalist = [dict(item) for item in datalist]
        if len(datalist) < 2:
            raise InputError(f"{type(self).__name__} needs at least 2 validation cases for KID; got {len(datalist)}")
        self.datalist, self.transform, self.channels = datalist, transform, list(channels)
        self.extractor_name, self.extractor_weights = extractor, extractor_weights
        self.batch_size, self.n_bootstrap = int(batch_size), int(n_bootstrap)
        self.input_key, self.target_key, self.valid_key = input_key, target_key, valid_key
        self.description = dict(description or {})
        self.scores: dict[str, float] = {}
        self._pairs: tuple[torch.Tensor, torch.Tensor] | None = None
        self._valid: torch.Tensor | None = None
        self._extractor: torch.nn.Module | None = None
        self._real: dict[str, torch.Tensor] = {}

    def _prepare(self) -> None:
        from synthmr.metrics.extractors import get_extractor
        from synthmr.metrics.fid import extract_features

        items = [self.transform(item) for item in self.datalist]
        shapes = {tuple(item[self.input_key].shape) for item in items}
        if len(shapes) != 1:
            raise InputError(f"validation cases must share one input shape; got {sorted(shapes)}")
        inputs = torch.stack([torch.as_tensor(item[self.input_key]) for item in items])
        targets = torch.stack([torch.as_tensor(item[self.target_key]) for item in items])
        if not self.channels:
            self.channels = [f"channel_{index}" for index in range(targets.shape[1])]
        if len(self.channels) != targets.shape[1]:
            raise InputError(f"{len(self.channels)} channel names for {targets.shape[1]} target channels")
        self._pairs = (inputs, targets)
        if self.valid_key is not None:
            self._valid = torch.stack([torch.as_tensor(item[self.valid_key]) for item in items]).bool()
        self._extractor = get_extractor(self.extractor_name, self.extractor_weights)
        self._real = self._features(targets, extract_features)

    def _features(self, images: torch.Tensor, extract_features) -> dict[str, torch.Tensor]:
        """Features of the pooled set (``"pooled"``) and, sliced from it, of each channel."""
        if images.ndim == 5:  # 3D outputs: the axial slices around the centre, each slice one more "case"
            centre, half = images.shape[-1] // 2, self.axial_slices // 2
            images = images[..., max(centre - half, 0) : centre + half + 1]
            images = images.permute(0, 4, 1, 2, 3).reshape(-1, *images.shape[1:4])
        pooled = extract_features(_unit(images), self._extractor, batch_size=32)
        k = len(self.channels)
        features = {"pooled": pooled}
        for index, channel in enumerate(self.channels):
            features[channel] = pooled[index::k]
        return features

    def evaluate(self, engine: Engine, generator: torch.nn.Module, folder: Path) -> Mapping[str, float]:
        from synthmr.metrics.extractors import describe_extractor
        from synthmr.metrics.fid import extract_features
        from synthmr.metrics.kid import kernel_distance

        if self._pairs is None:
            self._prepare()
            self._rejoin(engine.state.epoch)
        inputs, targets = self._pairs
        device = engine.state.device
        generator.eval()
        with torch.inference_mode():
            fake = torch.cat(
                [
                    generator(inputs[start : start + self.batch_size].to(device)).float().cpu()
                    for start in range(0, len(inputs), self.batch_size)
                ]
            )
        if self._valid is not None:
            fake = torch.where(self._valid, fake, targets)
        synthetic = self._features(fake, extract_features)
        pooled = kernel_distance(self._real["pooled"], synthetic["pooled"], n_bootstrap=self.n_bootstrap)
        per_channel = {
            channel: {
                "kid": kernel_distance(self._real[channel], synthetic[channel], n_bootstrap=0)["kid"],
                "l1": float((fake[:, index] - targets[:, index]).abs().mean()),
            }
            for index, channel in enumerate(self.channels)
        }
        l1 = float((fake - targets).abs().mean())
        report = {
            "epoch": engine.state.epoch,
            "kid": pooled["kid"],
            "kid_interval": pooled["interval"],
            "l1": l1,
            "sequences": per_channel,
            "n_cases": int(len(inputs)),
            "n_images_per_set": pooled["n_a"],
            "extractor": describe_extractor(self._extractor),
            "n_bootstrap": self.n_bootstrap,
        }
        with atomic_output(folder / "report.json", suffix=".json", overwrite=True) as temporary:
            temporary.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        self.scores[folder.name] = pooled["kid"]
        return {"kid": pooled["kid"], "l1": l1}

    def _rejoin(self, epoch: int) -> None:
        """After a resume: the epochs evaluated before ``epoch`` (report and weights in ``work_dir``) rejoin."""
        for report in sorted(self.work_dir.glob("epoch_*/report.json")):
            name = report.parent.name
            if int(name.split("_")[1]) < epoch and (report.parent / "generator.pt").is_file():
                self.scores[name] = float(json.loads(report.read_text(encoding="utf-8"))["kid"])

    def ranking(self) -> list[tuple[str, float]]:
        return sorted(self.scores.items(), key=lambda item: (item[1], item[0]))

    def criterion(self) -> dict:
        return {
            "criterion": f"pooled KID of the {len(self.channels) or 'output'} channels on the validation cases, lowest first",
            "extractor": self.extractor_name,
            "n_cases": len(self.datalist),
            **self.description,
        }
