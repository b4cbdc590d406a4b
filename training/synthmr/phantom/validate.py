"""`synthmr phantom validate ORGAN`: measure what a phantom produces against the ranges in docs/phantom.md.

Each organ module measures itself: ``validation_figures(n, seed)`` simulates ``n`` cases from seeds
``seed .. seed + n - 1`` and returns one :class:`Figure` per documented quantity (contrast ratios per sequence and
tissue, enhancement and washout, lesion sizes, subject variation). This module only runs that, prints the table and
says whether every figure lies in its range. Figures that are shares or spreads over cases get ranges that widen
as ``n`` shrinks (:func:`share_range`), so a small ``n`` tests the same claim with the tolerance its sample allows.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass

from synthmr.phantom import PHANTOMS, phantom_class
from synthmr.phantom._arguments import integer

# Seeds of the validation cases: a range no test and no bundle uses (bundles train from 0, validate from 100000
# and test from 200000).
DEFAULT_SEED = 700000


@dataclass(frozen=True)
class Figure:
    """One measured quantity and the range the literature (or a stated design choice) allows.

    Attributes:
        name: what was measured, e.g. ``"T2w edema / white matter"``.
        value: the measurement.
        low, high: the accepted range, inclusive (``-inf``/``inf`` for one-sided targets).
        source: where the range comes from, short (``"Kuhl et al., Radiology 1999"``, ``"design, docs/phantom.md"``).
        unit: unit of ``value`` (``""`` for ratios).
    """

    name: str
    value: float
    low: float
    high: float
    source: str
    unit: str = ""

    @property
    def passed(self) -> bool:
        return math.isfinite(self.value) and self.low <= self.value <= self.high


def share_range(expected: float, n: int, z: float = 2.58) -> tuple[float, float]:
    """The range in which the observed share of ``n`` independent draws with probability ``expected`` falls
    99 % of the time (normal approximation with a continuity correction of ``0.5 / n``), clipped to [0, 1]."""
    half = z * math.sqrt(expected * (1.0 - expected) / n) + 0.5 / n
    return max(0.0, expected - half), min(1.0, expected + half)


def validate(organ: str, n: int = 20, seed: int = DEFAULT_SEED) -> list[Figure]:
    """The figures of ``organ``'s phantom measured on ``n`` cases from seeds ``seed ..``."""
    phantom_class(organ)  # an unknown organ is one clear message
    n, seed = integer(n, "--n", 1, 1000), integer(seed, "--seed", 0)
    module = importlib.import_module(PHANTOMS[organ].split(":")[0])
    return module.validation_figures(n, seed)


def format_table(figures: list[Figure]) -> str:
    """A fixed-width table: figure, value, range, verdict, source."""

    def number(x: float) -> str:
        return "-inf" if x == -math.inf else "inf" if x == math.inf else f"{x:.4g}"

    rows = [("figure", "value", "range", "", "source")]
    for f in figures:
        unit = f" {f.unit}" if f.unit else ""
        rows.append(
            (f.name, number(f.value) + unit, f"[{number(f.low)}, {number(f.high)}]", "ok" if f.passed else "OUT", f.source)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths)) + "  " + row[4] for row in rows
    )
