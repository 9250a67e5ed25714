"""Generalization beyond the text folds (notebook 07): face sets never trained on, the "unlike the training data"
flag (``dfmm.models.ood``) on the sources the model never saw, and clips per source. The text folds are
:mod:`dfmm.analysis.text_folds`.

Every AUC and rate has a bootstrap interval (group-resampled where the items have groups).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from dfmm.analysis.text_folds import FOLD_KINDS, N_RESAMPLES
from dfmm.analysis.text_recipes import balanced_logistic, balanced_weights
from dfmm.data.labels import FAKE, REAL
from dfmm.metrics import interval, mean_draws, metric_draws


# -------------------------------------------------------------------------------------------------- faces
def threshold_at_fpr(real_probs: Any, fpr: float = 0.05) -> float:
    """The P(fake) threshold that calls at most ``fpr`` of these real items fake."""
    return float(np.quantile(np.asarray(real_probs, dtype=float), 1 - fpr, method="higher"))


def detection_rate(fake_probs: Any, threshold: float, groups: Any = None, seed: int = 0) -> dict[str, Any]:
    """Share of fakes called fake (> ``threshold``) with a group-resampled 95% bootstrap interval."""
    p = np.asarray(fake_probs, dtype=float)
    called = (p > threshold).astype(float)
    if not len(p):
        return {"n": 0, "rate": None, "ci": None, "threshold": threshold}
    rate, draws = mean_draws(called, groups, N_RESAMPLES, seed)
    return {"n": len(p), "rate": rate, "ci": interval(draws), "threshold": threshold}


def fit_frozen_faces(train_features: np.ndarray, labels: np.ndarray) -> Any:
    """The frozen-feature face recipe: logistic regression on unit-norm ImageNet features, class-balanced."""
    return balanced_logistic(train_features, labels, balanced_weights(labels, np.zeros(len(labels))))


# ------------------------------------------------------------------------------------- shipped text models
def ngram_ship_decision(cross_fitted: dict[str, Any], recipe: str) -> tuple[bool, str]:
    """Whether held-out-source validation chooses the n-gram recipe ``recipe`` to ship: chosen on both halves of
    the cross-fitted choice and better than the compact model on the other half (paired CI above 0); and why."""
    chosen, ci = cross_fitted.get("chosen") or [], cross_fitted.get("minus_compact_ci")
    if not chosen or any(c != recipe for c in chosen):
        named = " / ".join(dict.fromkeys(chosen)) or "no recipe (no scorable held-out folds)"
        return False, f"held-out validation chose {named}, not {recipe}"
    if ci is None:
        return False, f"{recipe} minus the compact model on held-out folds has no interval"
    if ci[0] <= 0:
        side = "is below 0" if ci[1] < 0 else "includes 0"
        return False, f"{recipe} minus the compact model on held-out folds: [{ci[0]:+.3f}, {ci[1]:+.3f}] {side}"
    return True, (
        f"chosen on both halves of the held-out folds, {ci[0]:+.3f} to {ci[1]:+.3f} AUC over the compact model there"
    )


def text_side_by_side(held: Any, probs: dict[str, np.ndarray], held_out: dict[str, dict[str, Any]]) -> list[dict]:
    """Per text model: AUC on each source's held texts (group-resampled interval), and its held-out estimate
    (``held_out[model]``: mean AUC over the folds it never trained on, with its interval)."""
    from dfmm.metrics import pool_resamples

    sources = np.asarray(held.meta["source"])
    resamples = pool_resamples(held.groups, N_RESAMPLES, seed=0)
    rows = []
    for model, p in probs.items():
        row: dict[str, Any] = {"model": model, "held_out": held_out.get(model, {})}
        for s in sorted(set(sources)):
            m = sources == s
            auc, d = metric_draws(held.labels[m], np.asarray(p)[m], weights=resamples[:, m])
            row[s] = {"n": int(m.sum()), "auc": auc, "ci": interval(d)}
        rows.append(row)
    return rows


# -------------------------------------------------------------------------------------------- OOD flag
def flag_table(
    reference: Any,
    in_domain: tuple[str, np.ndarray],
    others: dict[str, np.ndarray],
    groups: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Per source: how many items the flag marks ``uncertain`` (with a Wilson 95% interval over items), and for the
    other sources the AUROC of the distance for telling their items from the in-domain test items, with a bootstrap
    interval that resamples whole groups (``groups``: source name -> one group per item; items where missing)."""
    from scipy.stats import binomtest

    if reference is None:  # a checkpoint written before the reference existed: nothing to measure
        return []
    name, feats = in_domain
    d_in = reference.distances(feats)
    rows = []
    for source, f in {name: feats, **others}.items():
        d = d_in if source == name else reference.distances(f)
        k = int((d > reference.threshold).sum())
        ci = binomtest(k, len(d)).proportion_ci(method="wilson") if len(d) else None
        row = {
            "source": source,
            "n": len(d),
            "flagged": k / len(d) if len(d) else None,
            "flagged_ci": [float(ci.low), float(ci.high)] if ci else None,
            "in_domain": source == name,
        }
        if source != name and len(d):
            y = np.r_[np.zeros(len(d_in)), np.ones(len(d))]
            units = np.r_[_units_of(groups, name, len(d_in)), _units_of(groups, source, len(d))]
            auroc, draws = metric_draws(y, np.r_[d_in, d] / 2.0, units, "auc", N_RESAMPLES, 0)
            row |= {"auroc": auroc, "auroc_ci": interval(draws)}
        rows.append(row)
    return rows


def text_flag_sets(
    held: Any, features: np.ndarray, trained_on: set[str]
) -> tuple[tuple[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """:func:`flag_table`'s inputs for the held texts: (the training sources' name and features), the other
    sources' features by name, and every one's groups."""
    sources, groups = np.asarray(held.meta["source"]), np.asarray(held.groups)
    name, mine = "+".join(sorted(trained_on)), np.isin(sources, sorted(trained_on))
    others = {s: sources == s for s in sorted(set(sources) - set(trained_on))}
    by_name = {name: mine, **others}
    return (
        (name, features[mine]),
        {s: features[m] for s, m in others.items()},
        {s: list(groups[m]) for s, m in by_name.items()},
    )


def _units_of(groups: dict[str, Any] | None, source: str, n: int) -> np.ndarray:
    """The resampling unit of each of a source's ``n`` items: its group, or the item itself, named apart from
    every other source's units."""
    mine = (groups or {}).get(source)
    if mine is None:
        return np.array([f"{source}#{i}" for i in range(n)])
    if len(mine) != n:
        raise ValueError(f"flag_table: {len(mine)} groups for the {n} items of {source!r}")
    return np.array([f"{source}/{g}" for g in mine])


# ------------------------------------------------------------------------------------------------- videos
_FFPP = re.compile(r"^\d{3}(_\d{3})?$")


def clip_source(name: str) -> str:
    """The source of one of the shared clips: FaceForensics++ clips are named ``NNN`` / ``NNN_MMM``, DFDC's by
    ten letters (``../shared/data/videos/SOURCE.md``); anything else is ``other``."""
    stem = Path(name).stem
    if _FFPP.match(stem):
        return "faceforensics++"
    return "dfdc" if re.fullmatch(r"[a-z]{10}", stem) else "other"


def _flag_share(clips: list[dict[str, Any]]) -> float | None:
    """Share of clips flagged unlike the training data (None when no clip was measured)."""
    measured = [c["uncertain"] for c in clips if c.get("uncertain") is not None]
    return float(np.mean(measured)) if measured else None


def clips_by_source(clips: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Clip AUC per source and pooled, the mean P(fake) of real and fake clips per source (the level shift), and
    the pooled AUC after a label-free per-source recentring (each clip's P(fake) minus the median of the other clips
    of its source): whether removing the level shift repairs the pooled number; and the share of clips flagged
    unlike the training data (their median frame distance, ``classify_video``)."""
    ok = [c for c in clips if c.get("probability_fake") is not None and "error" not in c]
    source = np.array([clip_source(c["clip"]) for c in ok])
    y = np.array([c["label"] for c in ok], dtype=int)
    p = np.array([c["probability_fake"] for c in ok], dtype=float)
    centred = np.array(
        [
            p[i] - np.median(p[(source == source[i]) & (np.arange(len(p)) != i)])
            if (source == source[i]).sum() > 1
            else np.nan
            for i in range(len(p))
        ]
    )
    rows = []
    for name in [*sorted(set(source)), "pooled", "pooled, recentred per source"]:
        mine = np.ones(len(p), bool) if name.startswith("pooled") else source == name
        scores = centred if name.startswith("pooled, recentred") else p
        mine &= ~np.isnan(scores)
        auc, draws = metric_draws(y[mine], scores[mine], None, "auc", N_RESAMPLES, 0) if mine.any() else (np.nan, [])
        real, fake = mine & (y == REAL), mine & (y == FAKE)
        rows.append(
            {
                "source": name,
                "n_real": int(real.sum()),
                "n_fake": int(fake.sum()),
                "auc": None if np.isnan(auc) else auc,
                "auc_ci": interval(np.asarray(draws)) if len(draws) else None,
                "mean_p_real": float(p[real].mean()) if real.any() and scores is p else None,
                "mean_p_fake": float(p[fake].mean()) if fake.any() and scores is p else None,
                "flagged": _flag_share([ok[i] for i in np.flatnonzero(mine)]),
            }
        )
    return rows


# ------------------------------------------------------------------------------------------ faces, end to end
def face_scores(
    model: Any, sets: dict[str, Any], batch_size: int, cache_dir: Any, features_only: tuple[str, ...] = ()
) -> dict[str, dict[str, Any]]:
    """Per named ImageSet: the model's P(fake) (not for the sets in ``features_only``: a recipe's training faces),
    labels, groups and frozen generic features, row for row (both through the score cache; an unreadable image is
    left out of both)."""
    from dfmm.serving.evaluate import frozen_features, score_images

    out = {}
    for name, images in sets.items():
        frozen = frozen_features(model, "visual", images, batch_size, cache_dir)
        row = {"labels": frozen["labels"], "groups": [images.groups[i] for i in frozen["index"]]}
        row["index"] = frozen["index"]
        row["features"] = frozen["features"]
        if name not in features_only:
            scored = score_images(model, images, batch_size, cache_dir)
            assert np.array_equal(scored["index"], frozen["index"])
            row["probs"] = scored["probs"]
        out[name] = row
    return out


def recipe_face_probs(
    checkpoint: str | Path, sets: dict[str, Any], scores: dict[str, dict[str, Any]], batch_size: int, cache_dir: Any
) -> tuple[dict[str, np.ndarray], float]:
    """A trained face recipe's P(fake) on each named ImageSet, row for row with ``face_scores``' rows of the same
    set, and its own decision threshold: the ``recipes`` argument of :func:`face_table`."""
    from dfmm.serving.detector import load_model
    from dfmm.serving.evaluate import score_images

    model, _ = load_model(checkpoint)
    probs = {}
    for name, images in sets.items():
        scored = score_images(model, images, batch_size, cache_dir)
        if not np.array_equal(scored["index"], scores[name]["index"]):
            raise ValueError(f"recipe_face_probs: {checkpoint} scored other items of {name!r} than the shipped model")
        probs[name] = scored["probs"]
    return probs, model.threshold("visual")


def face_table(
    scores: dict[str, dict[str, Any]],
    in_domain: tuple[str, str],
    fit: str,
    threshold: float,
    recipes: dict[str, tuple[dict[str, np.ndarray], float]] | None = None,
) -> list[dict[str, Any]]:
    """The compact model, the frozen-feature recipe (fitted on ``fit``) and the trained face ``recipes`` (name ->
    (P(fake) per scored set, own threshold)) on every face set they scored: AUC with its CI where both classes are
    present, and for a recipe its paired difference from the compact model (same items, same resamples); for every
    set, the share of its fakes called fake at the threshold that calls 5% of the in-domain validation reals fake
    (``in_domain`` = (validation set, test set)) and the share of its reals called fake at that threshold (a rate
    of fakes detected on a new source means little when its reals are called fake as often), and the share of all
    its items called fake at the model's own threshold (``threshold`` for the compact model, 0.5 for the frozen-feature recipe)."""
    val, _ = in_domain
    frozen = fit_frozen_faces(scores[fit]["features"], scores[fit]["labels"])
    models = {
        "compact": ({k: s["probs"] for k, s in scores.items() if "probs" in s}, threshold),
        "frozen ImageNet + linear": (
            {k: frozen.predict_proba(s["features"])[:, 1] for k, s in scores.items() if k != fit},
            0.5,
        ),
    } | (recipes or {})
    rows, compact_draws = [], {}
    for model_name, (probs, own) in models.items():
        at_5fpr = threshold_at_fpr(probs[val][scores[val]["labels"] == REAL])
        for name, s in scores.items():
            if name == fit or name not in probs:
                continue
            p, y = probs[name], s["labels"]
            auc, draws = metric_draws(y, p, s["groups"], "auc", N_RESAMPLES, 0)
            fakes = y == FAKE
            row = {
                "model": model_name,
                "set": name,
                "n": len(y),
                "auc": None if np.isnan(auc) else auc,
                "auc_ci": interval(draws),
                "fakes_detected_at_5fpr": detection_rate(p[fakes], at_5fpr, np.asarray(s["groups"])[fakes]),
                # the same threshold's false positives on this set: a moved score level shows here too
                "reals_called_fake_at_5fpr": detection_rate(p[~fakes], at_5fpr, np.asarray(s["groups"])[~fakes]),
                "threshold_5fpr": at_5fpr,
                "called_fake": float((p > own).mean()),
            }
            if model_name == "compact":
                compact_draws[name] = (auc, draws)
            elif model_name in (recipes or {}) and row["auc"] is not None:
                base, base_draws = compact_draws[name]
                row |= {"minus_compact": auc - base, "minus_compact_ci": interval(draws - base_draws)}
            rows.append(row)
    return rows


def selective_rows(reference: Any, sets: dict[str, dict[str, Any]], threshold: float) -> list[dict[str, Any]]:
    """Per set: accuracy of the model's labels (at ``threshold``) on all items and on the items the flag keeps."""
    from dfmm.models.ood import selective

    if reference is None:
        return []
    rows = []
    for name, s in sets.items():
        kept = reference.distances(s["features"]) <= reference.threshold
        rows.append({"set": name, **selective(s["labels"], s["probs"] > threshold, kept)})
    return rows


def plot_flag_rates(rows: dict[str, list[dict[str, Any]]]) -> Any:
    """Share of items flagged "unlike the training data" per source, with Wilson intervals (one panel per branch)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 2.8), squeeze=False)
    for ax, (branch, table) in zip(axes[0], rows.items(), strict=True):
        table = [r for r in table if r["flagged"] is not None]  # a source with no items has no rate
        for y, r in enumerate(table):
            lo, hi = r["flagged_ci"] or (r["flagged"], r["flagged"])
            colour = "C0" if r["in_domain"] else "C3"
            ax.errorbar(r["flagged"], y, xerr=[[r["flagged"] - lo], [hi - r["flagged"]]], fmt="o", capsize=3, c=colour)
        ax.axvline(0.05, color="grey", lw=0.6, ls="--")
        ax.set_yticks(range(len(table)), [r["source"] for r in table], fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_xlabel("flagged as unlike the training data")
        ax.set_title(f"{branch} (blue: in-domain test; dashed: 5%)", fontsize=8)
    fig.tight_layout()
    return fig


def auc_matrix(result: dict[str, Any], kind: str) -> tuple[list[str], list[str], np.ndarray]:
    """(models, held-out names, AUC matrix with NaN for null folds) of one fold kind, for the heatmap."""
    rows = [r for r in result["rows"] if r["kind"] == kind]
    models = list(dict.fromkeys(r["model"] for r in rows))
    held = list(dict.fromkeys(r["held_out"] for r in rows))
    m = np.full((len(models), len(held)), np.nan)
    for r in rows:
        if r["auc"] is not None:
            m[models.index(r["model"]), held.index(r["held_out"])] = r["auc"]
    return models, held, m


def plot_fold_heatmaps(result: dict[str, Any], title: str = "") -> Any:
    """One heatmap of held-out AUC per fold kind (models x held-out source, generator or domain)."""
    import matplotlib.pyplot as plt

    kinds = [k for k in FOLD_KINDS if any(r["kind"] == k for r in result["rows"])]
    if not kinds:
        fig, ax = plt.subplots(figsize=(5, 1.2))
        ax.text(0.5, 0.5, "no held-out folds with both classes in this study", ha="center", va="center")
        ax.axis("off")
        return fig
    widths = [max(3, len(auc_matrix(result, k)[1])) for k in kinds]
    size = (2 + 0.45 * sum(widths), 3.6)
    fig, axes = plt.subplots(1, len(kinds), figsize=size, squeeze=False, gridspec_kw={"width_ratios": widths})
    for ax, kind in zip(axes[0], kinds, strict=True):
        models, held, m = auc_matrix(result, kind)
        im = ax.imshow(m, vmin=0.3, vmax=1.0, cmap="RdYlGn", aspect="auto")
        ax.set_xticks(range(len(held)), [h.split("/")[-1][:18] for h in held], rotation=70, ha="right", fontsize=6)
        ax.set_yticks(range(len(models)), models if ax is axes[0][0] else [""] * len(models), fontsize=7)
        for (i, j), v in np.ndenumerate(m):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=5)
        ax.set_title(f"held-out {kind} (blank: too few items)", fontsize=8)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="held-out ROC AUC")
    fig.suptitle(title, fontsize=9)
    return fig
