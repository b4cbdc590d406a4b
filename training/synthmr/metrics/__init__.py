"""Evaluation metrics: paired image and segmentation metrics (also inside region masks), 1-NN two-sample test,
MS-SSIM diversity, SAMe.

Entry points that live in their modules and are not re-exported here, because a function of the same name as its
module would hide the module: :func:`synthmr.metrics.evaluate.evaluate` (two image sets -> report),
:func:`synthmr.metrics.fid.fid` (Fréchet distance on the features of :mod:`synthmr.metrics.extractors`) and
:func:`synthmr.metrics.kid.kid` (kernel distance on the same features, with a 95 % bootstrap interval).

Which of the two distribution distances is reported: FID only where both sets have at least twice as many
samples as the extractor has features (:func:`synthmr.metrics.kid.fid_is_reliable`), KID with its interval
otherwise; rankings of checkpoints that share one sample size may use FID (see :mod:`synthmr.metrics.evaluate`).
"""

from synthmr.metrics.diversity import ms_ssim_diversity, ms_ssim_settings
from synthmr.metrics.evaluate import METRICS, format_table, select_checkpoint
from synthmr.metrics.image import paired_metrics, segmentation_metrics, ssim_window
from synthmr.metrics.regions import region_metrics
from synthmr.metrics.same import default_direction, rank_candidates, same_scores, scaled_metrics
from synthmr.metrics.two_sample import nn_accuracy

__all__ = [
    "METRICS",
    "default_direction",
    "format_table",
    "ms_ssim_diversity",
    "ms_ssim_settings",
    "nn_accuracy",
    "paired_metrics",
    "rank_candidates",
    "region_metrics",
    "same_scores",
    "scaled_metrics",
    "select_checkpoint",
    "segmentation_metrics",
    "ssim_window",
]
