"""Metric functions and the plots built from them. Labels: 0 real/human, 1 fake/AI; scores = P(fake).

``binary_metrics`` is the point estimate, cheap enough for every epoch. Its uncertainty comes from a percentile
bootstrap (Efron & Tibshirani 1993, *An Introduction to the Bootstrap*), vectorised: resample r is a row of
per-item weights (how often each item was drawn), so all resamples are scored at once with weighted rank
statistics instead of a Python loop. Items that are not independent (a real face and the fakes made from its
video, a human text and its rewrites) are resampled as whole groups: the cluster bootstrap (Field & Welsh 2007).
Calibration: expected calibration error over 15 equal-width bins and temperature scaling (Guo et al. 2017, "On
Calibration of Modern Neural Networks").

The package re-exports what its modules define: point metrics (:mod:`dfmm.metrics.binary`), the bootstrap
(:mod:`dfmm.metrics.bootstrap`), calibration (:mod:`dfmm.metrics.calibration`) and their inputs
(:mod:`dfmm.metrics.inputs`).
"""

from __future__ import annotations

from dfmm.metrics.binary import _tpr_at_fpr, best_threshold, binary_metrics, mean_std, seeds_at_half
from dfmm.metrics.bootstrap import (
    BOOTSTRAP_METRICS,
    _resample_units,
    _resample_weights,
    _units,
    _weighted_metrics,
    bootstrap_ci,
    interval,
    mean_draws,
    metric_draws,
    metrics_with_ci,
    paired_bootstrap,
    pool_resamples,
)
from dfmm.metrics.calibration import ECE_BINS, fit_temperature, reliability_curve

__all__ = [
    "BOOTSTRAP_METRICS",
    "ECE_BINS",
    "_resample_units",
    "_resample_weights",
    "_tpr_at_fpr",
    "_units",
    "_weighted_metrics",
    "best_threshold",
    "binary_metrics",
    "bootstrap_ci",
    "fit_temperature",
    "interval",
    "mean_draws",
    "mean_std",
    "metric_draws",
    "metrics_with_ci",
    "paired_bootstrap",
    "pool_resamples",
    "reliability_curve",
    "seeds_at_half",
]
