"""Downstream evaluation of synthetic data: does adding it to a training set help a task model?

:func:`synthmr.evaluation.benefit.run_benefit` trains a segmentation network on real subsets of several sizes with
and without synthetic items and reports the Dice change with paired statistics;
:func:`synthmr.evaluation.benefit.compare_synthesizers` sets two synthesizers' runs against each other. See
:mod:`synthmr.evaluation.benefit`.
"""

from synthmr.evaluation.benefit import (
    SegmentationSettings,
    bootstrap_interval,
    compare_synthesizers,
    format_report,
    plot_benefit,
    print_progress,
    real_subset,
    run_benefit,
    run_name,
    synthetic_count,
)

__all__ = [
    "SegmentationSettings",
    "bootstrap_interval",
    "compare_synthesizers",
    "format_report",
    "plot_benefit",
    "print_progress",
    "real_subset",
    "run_benefit",
    "run_name",
    "synthetic_count",
]
