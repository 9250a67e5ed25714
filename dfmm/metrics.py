"""Metric functions and the plots built from them. Labels: 0 real/human, 1 fake/AI; scores = P(fake)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def binary_metrics(labels: Any, probs: Any, threshold: float = 0.5) -> dict[str, Any]:
    """accuracy, balanced accuracy, ROC AUC, average precision, n and the confusion matrix.

    The confusion matrix is ``[[TN, FP], [FN, TP]]`` (rows: true real, true fake). AUC and AP are NaN when
    only one class is present.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(labels).astype(int).ravel()
    p = np.asarray(probs, dtype=float).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape} vs {p.shape}")
    n = len(y)
    if n == 0:
        nan = float("nan")
        return {"n": 0, "accuracy": nan, "balanced_accuracy": nan, "auc": nan, "ap": nan, "confusion": [[0, 0], [0, 0]]}
    pred = (p >= threshold).astype(int)
    tn = int(((y == 0) & (pred == 0)).sum())
    fp = int(((y == 0) & (pred == 1)).sum())
    fn = int(((y == 1) & (pred == 0)).sum())
    tp = int(((y == 1) & (pred == 1)).sum())
    recalls = [tn / (tn + fp) if tn + fp else math.nan, tp / (tp + fn) if tp + fn else math.nan]
    both = len(set(y.tolist())) == 2
    return {
        "n": n,
        "accuracy": (tp + tn) / n,
        "balanced_accuracy": float(np.nanmean(recalls)),
        "auc": float(roc_auc_score(y, p)) if both else math.nan,
        "ap": float(average_precision_score(y, p)) if both else math.nan,
        "confusion": [[tn, fp], [fn, tp]],
    }


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


# --------------------------------------------------------------------------------------------------- plots
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def plot_history(histories: dict[str, list[dict[str, float]]], title: str = "") -> Any:
    """Loss and validation accuracy/AUC per epoch, one line per recipe."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for i, (name, hist) in enumerate(histories.items()):
        ep = [h["epoch"] for h in hist]
        c = f"C{i}"  # one colour per recipe; solid = train, dashed = validation
        axes[0].plot(ep, [h["train_loss"] for h in hist], "o-", color=c, label=f"{name} train")
        axes[0].plot(ep, [h["val_loss"] for h in hist], "s--", color=c, label=f"{name} val")
        axes[1].plot(ep, [h["train_accuracy"] for h in hist], "o-", color=c, label=f"{name} train")
        axes[1].plot(ep, [h["val_accuracy"] for h in hist], "s--", color=c, label=f"{name} val")
        axes[2].plot(ep, [h["val_auc"] for h in hist], "s--", color=c, label=f"{name} val")
    for ax, t in zip(axes, ("loss", "accuracy (at 0.5)", "ROC AUC"), strict=True):
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(t)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_roc(curves: dict[str, tuple[Any, Any]], title: str = "ROC") -> Any:
    """ROC curves for several (labels, scores) pairs."""
    from sklearn.metrics import roc_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for name, (y, p) in curves.items():
        if len(set(np.asarray(y).tolist())) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, p)
        auc = binary_metrics(y, p)["auc"]
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_confusion(confusion: list[list[int]], labels: tuple[str, str] = ("real", "fake"), title: str = "") -> Any:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(3.4, 3.0))
    cm = np.asarray(confusion)
    ax.imshow(cm, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="black")
    ax.set_xticks([0, 1], [f"pred {x}" for x in labels])
    ax.set_yticks([0, 1], [f"true {x}" for x in labels])
    ax.set_title(title)
    fig.tight_layout()
    return fig


def metrics_table(
    rows: dict[str, dict[str, Any]], keys: tuple[str, ...] = ("n", "accuracy", "balanced_accuracy", "auc", "ap")
) -> Any:
    """A pandas table of metric dicts (one row each), rounded for display."""
    import pandas as pd

    df = pd.DataFrame({name: {k: r.get(k) for k in keys} for name, r in rows.items()}).T.astype(float).round(4)
    if "n" in df:
        df["n"] = df["n"].astype("Int64")
    return df
