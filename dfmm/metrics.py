"""Metric functions and the plots built from them. Labels: 0 real/human, 1 fake/AI; scores = P(fake).

``binary_metrics`` is the point estimate, cheap enough for every epoch. Its uncertainty comes from a percentile
bootstrap (Efron & Tibshirani 1993, *An Introduction to the Bootstrap*), vectorised: resample r is a row of
per-item weights (how often each item was drawn), so all resamples are scored at once with weighted rank
statistics instead of a Python loop. Items that are not independent (a real face and the fakes made from its
video, a human text and its rewrites) are resampled as whole groups: the cluster bootstrap (Field & Welsh 2007).
Calibration: expected calibration error over 15 equal-width bins and temperature scaling (Guo et al. 2017, "On
Calibration of Modern Neural Networks").
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

ECE_BINS = 15
BOOTSTRAP_METRICS = ("accuracy", "balanced_accuracy", "auc", "tpr_at_5fpr")
_TWO_CLASS = ("auc", "ap", "eer", "tpr_at_1fpr", "tpr_at_5fpr")  # NaN unless both classes are present
_NEW = ("precision", "recall", "f1", "eer", "tpr_at_1fpr", "tpr_at_5fpr", "ece", "brier")


def _as_arrays(labels: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(int).ravel()
    p = np.asarray(probs, dtype=float).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape} vs {p.shape}")
    return y, p


def _one_class(n_real: int, n_fake: int) -> str:
    return f"one class only (n real={n_real}, n fake={n_fake})"


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


# ----------------------------------------------------------------------------------------------- bootstrap
def _units(groups: Any, n: int) -> tuple[np.ndarray, int, str]:
    """(unit of each item, number of units, "items" | "groups"): what one bootstrap draw picks."""
    if groups is None:
        return np.arange(n), n, "items"
    g = np.asarray(groups).ravel()
    if len(g) != n:
        raise ValueError(f"groups and labels differ in length: {len(g)} vs {n}")
    _, unit = np.unique(g, return_inverse=True)
    return unit.ravel(), int(unit.max()) + 1 if n else 0, "groups"


def _resample_units(n_units: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_units) indices of the units drawn with replacement; row r is resample r."""
    return np.random.default_rng(seed).integers(0, n_units, size=(n_resamples, n_units))


def _resample_weights(unit_of_item: np.ndarray, n_units: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_items) weights: how often each item's unit was drawn in ``_resample_units(...)``'s row r.

    Scoring row r with these weights equals scoring the items of the drawn units listed out (a unit drawn twice
    lists its items twice): weighted metrics below are exact, not approximations.
    """
    draws = _resample_units(n_units, n_resamples, seed)
    flat = (draws + n_units * np.arange(n_resamples)[:, None]).ravel()
    counts = np.bincount(flat, minlength=n_resamples * n_units).reshape(n_resamples, n_units).astype(float)
    if len(unit_of_item) == n_units and np.array_equal(unit_of_item, np.arange(n_units)):
        return counts  # items are the units
    return counts[:, unit_of_item]


def _weighted_metrics(
    y: np.ndarray, p: np.ndarray, w: np.ndarray, threshold: float, metrics: tuple[str, ...] = BOOTSTRAP_METRICS
) -> dict[str, np.ndarray]:
    """Each of ``metrics`` for every row of item weights ``w`` (R, n) at once; NaN in a row without both classes.

    Rank metrics sort the scores once and take weighted cumulative counts of fakes and reals at the end of each
    block of tied scores: ``cum_pos[:, b]``, ``cum_neg[:, b]`` = weighted fakes, reals scoring at or below block b.
    ``auc``: Mann-Whitney with ties counting one half, sum over blocks of (fakes in b) x (reals below b + half
    the reals in b), over P x N. ``tpr_at_5fpr``: the ROC points from the highest score down are
    (N - cum_neg, P - cum_pos) / (N, P) read backwards; then the same reading as ``binary_metrics`` (the last
    point with FPR <= 5%, interpolated towards the next).
    """
    is_fake = y == 1
    pos = w @ is_fake.astype(float)
    neg = w.sum(axis=1) - pos
    both = (pos > 0) & (neg > 0)
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        if "accuracy" in metrics or "balanced_accuracy" in metrics:
            called = p >= threshold
            tp = w @ (called & is_fake).astype(float)
            tn = w @ (~called & ~is_fake).astype(float)
            out["accuracy"] = (tp + tn) / (pos + neg)
            out["balanced_accuracy"] = np.where(both, 0.5 * (tp / pos + tn / neg), np.nan)
        if "auc" in metrics or "tpr_at_5fpr" in metrics:
            order = np.argsort(p, kind="stable")
            ps = p[order]
            ends = np.r_[np.flatnonzero(ps[1:] != ps[:-1]), len(ps) - 1]  # last index of each block of ties
            zero = np.zeros((len(w), 1))
            cum_pos = np.hstack([zero, np.cumsum(np.take(w, order[is_fake[order]], axis=1), axis=1)])
            cum_all = np.cumsum(np.take(w, order, axis=1), axis=1)[:, ends]
            # fakes at or below each block end: count the fakes among the first ends + 1 sorted items
            cum_pos = np.take(cum_pos, np.cumsum(is_fake[order])[ends], axis=1)
            cum_neg = cum_all - cum_pos
            if "auc" in metrics:
                below = np.hstack([zero, cum_neg[:, :-1]])
                pos_b, neg_b = np.diff(cum_pos, axis=1, prepend=0.0), cum_neg - below
                out["auc"] = np.where(both, (pos_b * (below + 0.5 * neg_b)).sum(axis=1) / (pos * neg), np.nan)
            if "tpr_at_5fpr" in metrics:
                out["tpr_at_5fpr"] = _weighted_tpr_at_fpr(cum_pos, cum_neg, pos, neg, 0.05, both)
    return {m: out[m] for m in metrics}


def _weighted_tpr_at_fpr(
    cum_pos: np.ndarray, cum_neg: np.ndarray, pos: np.ndarray, neg: np.ndarray, target: float, both: np.ndarray
) -> np.ndarray:
    zero = np.zeros((len(pos), 1))
    # ROC point j (j = 0..B) calls the top j blocks fake: the items above the first B - j blocks
    tpr = (pos[:, None] - np.hstack([zero, cum_pos])[:, ::-1]) / pos[:, None]
    fpr = (neg[:, None] - np.hstack([zero, cum_neg])[:, ::-1]) / neg[:, None]
    stop = np.clip((fpr <= target).sum(axis=1), 1, fpr.shape[1] - 1)  # FPR only grows along a row
    rows = np.arange(len(stop))
    x0, x1, y0, y1 = fpr[rows, stop - 1], fpr[rows, stop], tpr[rows, stop - 1], tpr[rows, stop]
    return np.where(both, y0 + (target - x0) * (y1 - y0) / (x1 - x0), np.nan)


def _percentile_ci(samples: np.ndarray, level: float) -> list[float] | None:
    kept = samples[~np.isnan(samples)]
    if kept.size == 0:
        return None
    lo, hi = np.percentile(kept, [50 * (1 - level), 50 * (1 + level)])
    return [float(lo), float(hi)]


def _no_interval(y: np.ndarray) -> str:
    n_real, n_fake = int((y == 0).sum()), int((y == 1).sum())
    if not len(y):
        return "no items"
    return _one_class(n_real, n_fake) if not (n_real and n_fake) else "every resample had one class only"


def bootstrap_ci(
    labels: Any,
    probs: Any,
    threshold: float = 0.5,
    groups: Any = None,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Percentile bootstrap confidence intervals of accuracy, balanced accuracy, ROC AUC and TPR at 5% FPR.

    ``groups`` (one key per item) resamples whole groups (cluster bootstrap): a real face with the fakes made
    from it, a human text with its rewrites; otherwise items. All resamples are scored at once
    (``_weighted_metrics``); 1,000 resamples of 2,400 items take a fraction of a second. A resample without
    both classes gives NaN for auc, tpr_at_5fpr and balanced_accuracy and is left out of that metric's
    percentiles (``dropped`` counts them); if none is left, the interval is None and ``undefined`` says why.

    Returns ``{metric: [lo, hi] | None for each of BOOTSTRAP_METRICS, "level", "n_resamples", "seed",
    "threshold", "resampled": "items" | "groups", "n_units", "dropped": {metric: count}, "undefined": {}}``.
    """
    y, p = _as_arrays(labels, probs)
    unit, n_units, kind = _units(groups, len(y))
    out: dict[str, Any] = {}
    undefined: dict[str, str] = {}
    dropped: dict[str, int] = {}
    if n_units == 0:
        out = dict.fromkeys(BOOTSTRAP_METRICS)
        undefined = dict.fromkeys(BOOTSTRAP_METRICS, "no items")
        dropped = dict.fromkeys(BOOTSTRAP_METRICS, n_resamples)
    else:
        samples = _weighted_metrics(y, p, _resample_weights(unit, n_units, n_resamples, seed), threshold)
        for m, s in samples.items():
            out[m] = _percentile_ci(s, level)
            dropped[m] = int(np.isnan(s).sum())
            if out[m] is None:
                undefined[m] = _no_interval(y)
    return {
        **out,
        "level": level,
        "n_resamples": n_resamples,
        "seed": seed,
        "threshold": threshold,
        "resampled": kind,
        "n_units": n_units,
        "dropped": dropped,
        "undefined": undefined,
    }


def paired_bootstrap(
    labels: Any,
    probs_a: Any,
    probs_b: Any,
    metric: str = "auc",
    groups: Any = None,
    n_resamples: int = 1000,
    seed: int = 0,
    threshold_a: float = 0.5,
    threshold_b: float = 0.5,
    level: float = 0.95,
) -> dict[str, Any]:
    """Is model A better than model B on the same items? Both are scored on the same resamples.

    ``difference`` = a - b on all items; ``ci`` the percentile interval of the resampled differences;
    ``excludes_zero`` whether that interval lies wholly on one side of 0; ``p_value`` two-sided: twice the share
    of resampled differences at or beyond 0 on the side opposite to the observed difference, capped at 1
    (a difference of exactly 0 counts against A, so the test is conservative for accuracies, which tie often).
    A p_value of 0 means no resample crossed 0: p < 2 / n_resamples.
    ``metric`` is one of BOOTSTRAP_METRICS, computed as in ``bootstrap_ci``.
    """
    if metric not in BOOTSTRAP_METRICS:
        raise ValueError(f"paired_bootstrap: unknown metric {metric!r}; expected one of {', '.join(BOOTSTRAP_METRICS)}")
    y, pa = _as_arrays(labels, probs_a)
    _, pb = _as_arrays(labels, probs_b)
    unit, n_units, kind = _units(groups, len(y))
    ones = np.ones((1, len(y)))
    a = float(_weighted_metrics(y, pa, ones, threshold_a, (metric,))[metric][0])
    b = float(_weighted_metrics(y, pb, ones, threshold_b, (metric,))[metric][0])
    out: dict[str, Any] = {"metric": metric, "a": a, "b": b, "difference": a - b}
    diffs = np.array([np.nan])
    if n_units:
        w = _resample_weights(unit, n_units, n_resamples, seed)
        diffs = (
            _weighted_metrics(y, pa, w, threshold_a, (metric,))[metric]
            - _weighted_metrics(y, pb, w, threshold_b, (metric,))[metric]
        )
    ci = _percentile_ci(diffs, level)
    kept = diffs[~np.isnan(diffs)]
    if ci is None or math.isnan(a - b):
        out |= {"ci": None, "excludes_zero": False, "p_value": None, "undefined": {"ci": _no_interval(y)}}
    else:
        beyond = kept <= 0 if a - b >= 0 else kept >= 0
        out |= {
            "ci": ci,
            "excludes_zero": bool(ci[0] > 0 or ci[1] < 0),
            "p_value": float(min(1.0, 2 * beyond.mean())),
            "undefined": {},
        }
    return out | {
        "level": level,
        "n_resamples": n_resamples,
        "seed": seed,
        "resampled": kind,
        "n_units": n_units,
        "dropped": int(np.isnan(diffs).sum()) if n_units else n_resamples,
    }


def metric_draws(
    labels: Any, scores: Any, groups: Any = None, metric: str = "auc", n_resamples: int = 1000, seed: int = 0
) -> tuple[float, np.ndarray]:
    """(the metric on all items, its ``n_resamples`` bootstrap draws, NaN where a resample lacks a class), resampled
    as ``bootstrap_ci`` resamples. Two models scored on the same items with the same seed get the same resamples,
    so draws can be subtracted (a paired test) or averaged over several test sets (the mean over folds)."""
    y, p = _as_arrays(labels, scores)
    unit, n_units, _ = _units(groups, len(y))
    point = float(_weighted_metrics(y, p, np.ones((1, len(y))), 0.5, (metric,))[metric][0]) if len(y) else math.nan
    if not n_units:
        return point, np.full(n_resamples, np.nan)
    return point, _weighted_metrics(y, p, _resample_weights(unit, n_units, n_resamples, seed), 0.5, (metric,))[metric]


def mean_draws(values: Any, groups: Any = None, n_resamples: int = 1000, seed: int = 0) -> tuple[float, np.ndarray]:
    """(the mean of ``values``, its bootstrap draws), resampled as ``bootstrap_ci`` resamples (by group)."""
    v = np.asarray(values, dtype=float).ravel()
    unit, n_units, _ = _units(groups, len(v))
    if not n_units:
        return math.nan, np.full(n_resamples, np.nan)
    w = _resample_weights(unit, n_units, n_resamples, seed)
    return float(v.mean()), w @ v / w.sum(axis=1)


def interval(draws: np.ndarray, level: float = 0.95) -> list[float] | None:
    """The percentile interval of bootstrap draws (NaN draws left out), or None when none is defined."""
    return _percentile_ci(np.asarray(draws, dtype=float), level)


def metrics_with_ci(
    labels: Any,
    probs: Any,
    threshold: float = 0.5,
    groups: Any = None,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """``binary_metrics`` plus ``"ci": bootstrap_ci(...)``: what results tables use (too slow for every epoch)."""
    ci = bootstrap_ci(labels, probs, threshold, groups, n_resamples, seed, level)
    return binary_metrics(labels, probs, threshold) | {"ci": ci}


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
