"""Point metrics of P(fake) scores at a threshold and threshold-free (``binary_metrics``: cheap enough for every
epoch), the validation threshold with the best balanced accuracy (``best_threshold``), and the mean and spread of
metrics over seeds (``mean_std``, ``seeds_at_half``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dfmm.metrics.calibration import reliability_curve
from dfmm.metrics.inputs import _as_arrays, _one_class

_TWO_CLASS = ("auc", "ap", "eer", "tpr_at_1fpr", "tpr_at_5fpr")  # NaN unless both classes are present
_NEW = ("precision", "recall", "f1", "eer", "tpr_at_1fpr", "tpr_at_5fpr", "ece", "brier")


def binary_metrics(labels: Any, probs: Any, threshold: float = 0.5) -> dict[str, Any]:
    """Point metrics of P(fake) scores: no resampling, fast enough to call every epoch.

    - ``n``, ``accuracy``, ``balanced_accuracy`` (mean of the two class recalls; with one class present, that
      class's recall), ``confusion`` ``[[TN, FP], [FN, TP]]`` (rows: true real, true fake), all at ``threshold``
      (fake when ``p >= threshold``);
    - ``precision`` TP / (TP + FP), ``recall`` TP / (TP + FN), ``f1`` 2TP / (2TP + FP + FN), also at ``threshold``
      (the same values as sklearn's, computed from the confusion matrix);
    - threshold-free: ``auc`` (ROC AUC), ``ap`` (average precision), ``eer``, ``tpr_at_1fpr``, ``tpr_at_5fpr``.
      ``eer``: the equal error rate, where FPR = FNR on sklearn's ROC curve, linearly interpolated between the
      two ROC points that straddle the crossing. ``tpr_at_Xfpr``: the TPR of the ROC curve at FPR = X, read as
      sklearn's partial AUC does (``roc_auc_score(max_fpr=...)``): the highest TPR among points with FPR <= X,
      linearly interpolated towards the next point (the TPR a randomised mix of the two thresholds reaches);
    - calibration: ``ece`` (see ``reliability_curve``) and ``brier`` (sklearn's ``brier_score_loss``): both are
      defined with one class present.

    A metric that cannot be computed is NaN (null in JSON) and ``undefined`` maps its name to the reason, e.g.
    ``{"auc": "one class only (n real=0, n fake=12)"}``; ``undefined`` is ``{}`` when all are defined.
    """
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve

    y, p = _as_arrays(labels, probs)
    n = len(y)
    nan = math.nan
    if n == 0:
        keys = ("accuracy", "balanced_accuracy", "auc", "ap", *_NEW)
        empty = {"n": 0, **dict.fromkeys(keys, nan), "confusion": [[0, 0], [0, 0]]}
        return empty | {"undefined": dict.fromkeys(keys, "no items")}
    pred = (p >= threshold).astype(int)
    tn = int(((y == 0) & (pred == 0)).sum())
    fp = int(((y == 0) & (pred == 1)).sum())
    fn = int(((y == 1) & (pred == 0)).sum())
    tp = int(((y == 1) & (pred == 1)).sum())
    n_real, n_fake = tn + fp, tp + fn
    recalls = [tn / n_real if n_real else nan, tp / n_fake if n_fake else nan]
    out: dict[str, Any] = {
        "n": n,
        "accuracy": (tp + tn) / n,
        "balanced_accuracy": float(np.nanmean(recalls)),
        "auc": nan,
        "ap": nan,
        "confusion": [[tn, fp], [fn, tp]],
        "precision": tp / (tp + fp) if tp + fp else nan,
        "recall": recalls[1],
        "f1": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else nan,
        "eer": nan,
        "tpr_at_1fpr": nan,
        "tpr_at_5fpr": nan,
        "ece": reliability_curve(y, p)["ece"],
        "brier": float(brier_score_loss(y, p, pos_label=1)),
    }
    undefined: dict[str, str] = {}
    if n_real and n_fake:
        fpr, tpr, _ = roc_curve(y, p)
        out["auc"] = float(roc_auc_score(y, p))
        out["ap"] = float(average_precision_score(y, p))
        out["eer"] = _eer(fpr, tpr)
        out["tpr_at_1fpr"] = _tpr_at_fpr(fpr, tpr, 0.01)
        out["tpr_at_5fpr"] = _tpr_at_fpr(fpr, tpr, 0.05)
    else:
        undefined |= dict.fromkeys(_TWO_CLASS, _one_class(n_real, n_fake))
    if not n_fake:
        undefined["recall"] = _one_class(n_real, n_fake)
    if not tp + fp:
        undefined["precision"] = f"no item called fake at threshold {threshold:g}"
    if math.isnan(out["f1"]):
        undefined["f1"] = f"no fake items and none called fake at threshold {threshold:g}"
    out["undefined"] = undefined
    return out


def _eer(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Equal error rate on a ROC curve that starts at (0, 0): FPR - FNR rises from -1 to 1 along the curve."""
    d = fpr - (1.0 - tpr)
    i = int(np.argmax(d >= 0))
    if i == 0 or d[i] == 0:
        return float(fpr[i])
    w = -d[i - 1] / (d[i] - d[i - 1])
    return float(fpr[i - 1] + w * (fpr[i] - fpr[i - 1]))


def _tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """TPR at FPR = ``target``: the last ROC point with FPR <= target, interpolated towards the next one."""
    stop = int(np.searchsorted(fpr, target, side="right"))
    if stop >= len(fpr):
        return float(tpr[-1])
    x0, x1, y0, y1 = fpr[stop - 1], fpr[stop], tpr[stop - 1], tpr[stop]
    return float(y0 + (target - x0) * (y1 - y0) / (x1 - x0))


def best_threshold(labels: Any, probs: Any) -> float:
    """The P(fake) threshold with the best balanced accuracy on (validation) data: midpoints between sorted
    scores, ties broken toward 0.5. Used only on the validation split; test metrics then use it as given."""
    y = np.asarray(labels).astype(int).ravel()
    p = np.asarray(probs, dtype=float).ravel()
    if len(set(y.tolist())) < 2:
        return 0.5
    order = np.argsort(p)
    ps, ys = p[order], y[order]
    # predicting fake for p >= t: for t between ps[i-1] and ps[i], items i.. are called fake
    neg_below = np.concatenate([[0], np.cumsum(ys == 0)])  # true negatives if the cut is before index i
    pos_above = (ys == 1).sum() - np.concatenate([[0], np.cumsum(ys == 1)])
    bacc = 0.5 * (neg_below / max((ys == 0).sum(), 1) + pos_above / max((ys == 1).sum(), 1))
    cuts = np.concatenate([[ps[0] - 1e-6], (ps[1:] + ps[:-1]) / 2, [ps[-1] + 1e-6]])
    best = np.flatnonzero(bacc >= bacc.max() - 1e-12)
    t = cuts[best[np.argmin(np.abs(cuts[best] - 0.5))]]
    return float(np.clip(t, 1e-6, 1 - 1e-6))


def mean_std(
    rows: list[dict[str, Any]], keys: tuple[str, ...] = ("accuracy", "balanced_accuracy", "auc", "ap")
) -> dict[str, Any]:
    """Mean and standard deviation of metrics over seeds."""
    out: dict[str, Any] = {"seeds": len(rows)}
    for k in keys:
        vals = np.array([r[k] for r in rows], dtype=float)
        out[k] = float(np.nanmean(vals)) if len(vals) else math.nan
        out[f"{k}_std"] = float(np.nanstd(vals)) if len(vals) else math.nan
    return out


def seeds_at_half(
    seed_runs: list[dict[str, Any]], keys: tuple[str, ...] = ("accuracy", "balanced_accuracy", "auc", "ap")
) -> dict[str, Any]:
    """``mean_std`` over seeds of validation metrics, with accuracies at the 0.5 threshold where a run has them.

    A run's own accuracy is at the threshold picked on that same validation split, which flatters it; targets
    and headline rows use the accuracy at 0.5 (``at_0.5``). AUC and AP need no threshold.
    """
    return mean_std([run | run.get("at_0.5", {}) for run in seed_runs], keys)
