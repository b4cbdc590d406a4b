"""Checkpoint selection during training: keep the weights of the best epoch by a validation criterion.

:class:`CheckpointSelection` is the Ignite handler every criterion shares: every ``interval`` epochs (and after
the last epoch) rank 0 evaluates the generator, stores that epoch's weights in ``work_dir/epoch_NNNN/generator.pt``,
ranks every epoch evaluated so far and copies the best one's weights to ``best_path`` (a bundle's
``models/model.pt``); ``work_dir/selection.json`` always holds the current ranking. A criterion only says how to
evaluate an epoch and how to rank the epochs.

:class:`SAMeCheckpointSelection` ranks by SAMe (Osuala et al., arXiv 2311.10879). SAMe is relative to the
candidates, so the best epoch can change as later epochs join. Files per evaluated epoch:
``work_dir/epoch_NNNN/{synthetic/, real.json, synthetic.json, report.json, generator.pt}``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from ignite.engine import Engine, Events

from synthmr.engines.base import save_weights, unwrap
from synthmr.errors import InputError
from synthmr.inference import Synthesizer
from synthmr.io import save_datalist
from synthmr.io._atomic import atomic_output

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
        with atomic_output(self.work_dir / "selection.json", suffix=".json") as temporary:
            temporary.write_text(json.dumps(selection, indent=2) + "\n", encoding="utf-8")
        shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items() if v is not None)
        logger.info(f"{name}: {shown}; best so far {best} -> {self.best_path}")


class SAMeCheckpointSelection(CheckpointSelection):
    """Keep the SAMe-best generator: every ``interval`` epochs synthesise the validation datalist, evaluate it
    against the real images (:func:`synthmr.metrics.evaluate.evaluate`) and rank all evaluated epochs by SAMe
    (:func:`synthmr.metrics.evaluate.select_checkpoint`).

    Args:
        generator: the generator being trained (optionally DDP-wrapped).
        datalist: validation cases with the generator's ``inputs``, the real ``outputs`` and ``case_id``.
        inputs: input keys of the generator (see :class:`synthmr.inference.Synthesizer`).
        outputs: output keys; the real images under these keys are the reference of the metrics.
        work_dir: folder for the per-epoch synthetic images, reports and weights.
        best_path: where the best generator's ``state_dict`` goes (a bundle's ``models/model.pt``).
        interval: evaluate every this many epochs (and after the last epoch).
        metrics: metric names of :data:`synthmr.metrics.evaluate.METRICS` (the paper: SSIM, MSE, MAE and FID).
        extractor, extractor_weights: the FID feature extractor and its local weights file.
        weights, groups: SAMe weights and groups (:func:`synthmr.metrics.same.same_scores`).
        synthesizer_kwargs: further :class:`~synthmr.inference.Synthesizer` arguments (``roi_size``,
            ``headroom``, ``spatial_dims``).
    """

    score_name = "same"

    def __init__(
        self,
        generator: torch.nn.Module,
        datalist: Sequence[Mapping],
        inputs: Sequence[str],
        outputs: Sequence[str],
        work_dir: str | os.PathLike,
        best_path: str | os.PathLike,
        interval: int = 1,
        metrics: Sequence[str] = ("ssim", "mse", "mae", "fid"),
        extractor: str = "domain",
        extractor_weights: str | None = None,
        weights: Mapping[str, float] | None = None,
        groups: Mapping[str, Sequence[str]] | None = None,
        synthesizer_kwargs: Mapping | None = None,
    ) -> None:
        super().__init__(generator, work_dir, best_path, interval)
        missing = [key for item in datalist for key in (*inputs, *outputs, "case_id") if key not in item]
        if missing:
            raise InputError(f"validation datalist items lack {sorted(set(missing))}")
        self.datalist = [dict(item) for item in datalist]
        self.inputs, self.outputs = list(inputs), list(outputs)
        self.metrics = list(metrics)
        self.extractor, self.extractor_weights = extractor, extractor_weights
        self.weights, self.groups = weights, groups
        self.synthesizer_kwargs = dict(synthesizer_kwargs or {})
        self.reports: dict[str, Path] = {}

    def evaluate(self, engine: Engine, generator: torch.nn.Module, folder: Path) -> Mapping[str, float]:
        from synthmr.metrics.evaluate import evaluate

        written = Synthesizer(
            generator,
            self.datalist,
            self.inputs,
            self.outputs,
            folder / "synthetic",
            device=engine.state.device,
            overwrite=True,
            **self.synthesizer_kwargs,
        )()
        real = [{"case_id": item["case_id"], **{k: item[k] for k in self.outputs}} for item in self.datalist]
        fake = [
            {"case_id": item["case_id"], **{k: str(p) for k, p in paths.items()}}
            for item, paths in zip(self.datalist, written)
        ]
        save_datalist({"training": real}, folder / "real.json", overwrite=True)
        save_datalist({"training": fake}, folder / "synthetic.json", overwrite=True)
        report = evaluate(
            folder / "real.json",
            folder / "synthetic.json",
            metrics=self.metrics,
            extractor=self.extractor,
            extractor_weights=self.extractor_weights,
            keys=self.outputs,
            out=folder / "report.json",
            overwrite=True,
        )
        self.reports[folder.name] = folder / "report.json"
        return {k: v["mean"] if isinstance(v, dict) else v for k, v in report["metrics"].items()}

    def criterion(self) -> dict:
        return {"metrics": self.metrics}

    def ranking(self) -> list[tuple[str, float]]:
        from synthmr.metrics.evaluate import select_checkpoint

        return select_checkpoint(
            list(self.reports.values()), names=list(self.reports), weights=self.weights, groups=self.groups
        )
