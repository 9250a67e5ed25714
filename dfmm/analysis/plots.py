"""Figures of the study: training histories, ROC curves, confusion matrices, reliability diagrams, metric tables.

Matplotlib is imported when a figure is drawn (``_plt``), never at import, so serving stays light; every figure is
saved whole or not at all (``save_figure``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dfmm.metrics import ECE_BINS, binary_metrics, reliability_curve


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path) -> Path:
    """Save a figure whole or not at all (rendered in memory, then written through a temporary file)."""
    import io

    from dfmm.files import write_atomic

    buffer = io.BytesIO()
    fig.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png", dpi=110, bbox_inches="tight")
    return write_atomic(path, buffer.getvalue())


def plot_history(histories: dict[str, list[dict[str, float]]], title: str = "") -> Any:
    """Loss and validation accuracy/AUC per epoch, one line per recipe. The validation lines are named by the
    items they were measured on (``val_items`` of the history: the epoch-selection subset, ``data.epoch_val_*``),
    so that they are not read as the whole split's numbers."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for i, (name, hist) in enumerate(histories.items()):
        ep = [h["epoch"] for h in hist]
        n = hist[0].get("val_items") if hist else None
        val = f"{name} val ({n} selection items)" if n else f"{name} val"
        c = f"C{i}"  # one colour per recipe; solid = train, dashed = validation
        axes[0].plot(ep, [h["train_loss"] for h in hist], "o-", color=c, label=f"{name} train")
        axes[0].plot(ep, [h["val_loss"] for h in hist], "s--", color=c, label=val)
        axes[1].plot(ep, [h["train_accuracy"] for h in hist], "o-", color=c, label=f"{name} train")
        axes[1].plot(ep, [h["val_accuracy"] for h in hist], "s--", color=c, label=val)
        axes[2].plot(ep, [h["val_auc"] for h in hist], "s--", color=c, label=val)
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


def plot_reliability(curves: dict[str, tuple[Any, Any]], title: str = "Reliability", bins: int = ECE_BINS) -> Any:
    """Reliability diagram for several (labels, P(fake)) pairs: share of fakes against mean P(fake) per bin
    (on the diagonal = calibrated), ECE in the legend, and below it how many items fall in each bin."""
    plt = _plt()
    fig, (ax, axn) = plt.subplots(2, 1, figsize=(4.6, 5.4), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    for i, (name, (y, p)) in enumerate(curves.items()):
        rc = reliability_curve(y, p, bins)
        count, mean_prob, frac_fake = (np.asarray(rc[k], dtype=float) for k in ("count", "mean_prob", "frac_fake"))
        keep = count > 0
        ax.plot(mean_prob[keep], frac_fake[keep], "o-", color=f"C{i}", ms=3, label=f"{name} (ECE {rc['ece']:.3f})")
        edges = np.asarray(rc["edges"])
        axn.stairs(count, edges, color=f"C{i}")
    ax.set_ylabel("fraction fake")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    axn.set_xlabel("P(fake), binned")
    axn.set_ylabel("items")
    fig.tight_layout()
    return fig


def plot_length_vs_score(words: Any, probs: Any, labels: Any) -> Any:
    """P(AI) against words per text (log scale), human and AI texts in two colours: does length decide?"""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for lab, name in ((0, "human"), (1, "AI")):
        m = np.asarray(labels) == lab
        ax.scatter(np.asarray(words)[m], np.asarray(probs)[m], s=6, alpha=0.5, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("words")
    ax.set_ylabel("P(AI)")
    ax.legend()
    return fig


def plot_fusion_weights(histories: dict[str, list[dict[str, float]]]) -> Any:
    """Each fusion variant's weight on the visual branch after every training step."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, h in histories.items():
        ax.plot([r["epoch"] for r in h], [r["w_visual"] for r in h], label=f"{name}: w_visual")
    ax.set_xlabel("step")
    ax.set_ylabel("weight on the visual branch")
    ax.set_ylim(0, 1)
    ax.legend()
    return fig


def plot_auc_intervals(rows: dict[str, dict[str, Any]]) -> Any:
    """ROC AUC with its 95% bootstrap interval per named set, one line each; names containing ``(test)`` are the
    in-domain test splits (blue), the others cross sources (red); the dashed line is chance."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    for y, (name, m) in enumerate(rows.items()):
        lo, hi = (m.get("ci") or {}).get("auc") or (m["auc"], m["auc"])
        colour = "C0" if "(test)" in name else "C3"
        ax.errorbar(m["auc"], y, xerr=[[m["auc"] - lo], [hi - m["auc"]]], fmt="o", color=colour, capsize=3)
    ax.axvline(0.5, color="grey", lw=0.6, ls="--")
    ax.set_yticks(range(len(rows)), list(rows))
    ax.set_xlim(0.3, 1.0)
    ax.set_xlabel("ROC AUC with 95% bootstrap CI (blue: in-domain test, red: cross source; dashed: chance)")
    fig.tight_layout()
    return fig


def plot_clip_frames(clips: list[dict[str, Any]], threshold: float, face_crop: bool) -> Any:
    """P(fake) per sampled frame over time, one row per clip (``dfmm.serving.evaluate.score_videos`` rows), fake clips
    red and real ones blue, the visual threshold dashed; a frame without a score is a gap."""
    plt = _plt()
    fig, axes = plt.subplots(len(clips), 1, figsize=(7, 0.9 * len(clips) + 0.6), sharex=True, squeeze=False)
    for ax, r in zip(axes[:, 0], clips, strict=True):
        if "error" in r:
            ax.set_title(f"{r['clip']}: unreadable", fontsize=7, loc="left")
            continue
        t = [f["time_s"] for f in r["per_frame"]]
        q = [np.nan if f["probability_fake"] is None else f["probability_fake"] for f in r["per_frame"]]
        ax.plot(t, q, "r.-" if r["label"] else "b.-", lw=1, ms=3)
        ax.axhline(threshold, color="grey", lw=0.6, ls="--")
        ax.set_ylim(0, 1)
        ax.set_yticks([0, 1])
        faces = f", face in {r['frames_with_face']}/{r['frames']} frames" if face_crop else ""
        ax.set_title(f"{r['clip']} ({'fake' if r['label'] else 'real'}){faces}", fontsize=7, loc="left")
    axes[-1, 0].set_xlabel("time (s); P(fake) per frame, dashed: threshold; red = fake clips, blue = real")
    fig.tight_layout()
    return fig
