"""Checkpoint selection during training: keep the weights of the best epoch by a validation criterion.

:class:`CheckpointSelection` is the Ignite handler every criterion shares: every ``interval`` epochs (and after
the last epoch) rank 0 evaluates the generator, stores that epoch's weights in ``work_dir/epoch_NNNN/generator.pt``,
ranks every epoch evaluated so far and copies the best one's weights to ``best_path`` (a bundle's
``models/model.pt``); ``work_dir/selection.json`` always holds the current ranking. A criterion only says how to
evaluate an epoch and how to rank the epochs: it is a subclass in its method's module (:mod:`synthmr.methods`).
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
