"""Calibration of P(fake) scores: the reliability curve and expected calibration error over equal-width bins, and
temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks")."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dfmm.metrics.inputs import _as_arrays

ECE_BINS = 15


# --------------------------------------------------------------------------------------------- calibration
def reliability_curve(labels: Any, probs: Any, bins: int = ECE_BINS) -> dict[str, Any]:
    """Per bin of P(fake) (``bins`` equal-width bins on [0, 1], the last one closed): ``count``, ``mean_prob``
    (mean P(fake)) and ``frac_fake`` (share of fake items), NaN for an empty bin, and ``ece``.

    ``ece`` (expected calibration error) is the reliability of the fake-class probability, the usual
    sum over bins of |frac_fake - mean_prob| x count / n: a model whose P(fake) = 0.8 items are 80% fake scores 0.
    (The top-label variant, |accuracy - confidence| on max(p, 1 - p), is a different number.)
    """
    y, p = _as_arrays(labels, probs)
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    sum_p = np.bincount(idx, weights=p, minlength=bins)
    sum_y = np.bincount(idx, weights=y.astype(float), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob, frac_fake = sum_p / count, sum_y / count
    ece = float(np.abs(sum_y - sum_p).sum() / len(y)) if len(y) else math.nan
    return {
        "edges": np.linspace(0, 1, bins + 1).tolist(),
        "count": count.tolist(),
        "mean_prob": mean_prob.tolist(),
        "frac_fake": frac_fake.tolist(),
        "ece": ece,
    }


def fit_temperature(labels: Any, logits: Any) -> float:
    """Temperature scaling (Guo et al. 2017): the one T > 0 that minimises the mean negative log-likelihood of
    sigmoid(logit / T) on (validation) data; apply it as sigmoid(logit / T). It changes no ranking, so AUC and
    the accuracy at 0.5 stay as they are; only the probabilities (ECE, Brier) move.

    Searched on log T in [log 0.25, log 100] (below 0.25 a logit of about 10, which the visual head's scale reaches,
    would round to P = 1.0 in float64 and tie the ranking that AUC and the bootstrap read) with scipy's bounded ``minimize_scalar``; 1.0 when the data hold
    one class (nothing to calibrate against); separable data drive T to the lower bound.
    """
    from scipy.optimize import minimize_scalar

    y, z = _as_arrays(labels, logits)
    if len(set(y.tolist())) < 2:
        return 1.0

    def nll(log_t: float) -> float:
        s = z / math.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, s) - y * s))

    res = minimize_scalar(nll, bounds=(math.log(0.25), math.log(1e2)), method="bounded", options={"xatol": 1e-6})
    return float(math.exp(res.x))
