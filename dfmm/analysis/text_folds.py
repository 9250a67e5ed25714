"""Held-out text folds (notebook 07): leave-one-source-out, leave-one-generator-out and leave-one-domain-out.

Every text source the params name (the training source and the cross sources) gives two disjoint parts, split by
group: ``fit`` (training texts, at most ``generalization.fit_texts``) and ``held`` (at most ``held_texts``). For the
training source they come from the study's own train and test splits, so the compact model never trained on a
held text. The folds (:func:`text_folds`) train on the fit texts without one source, one generator or one domain,
and score the held texts of that source, generator (with the human texts of the sources it occurs in) or domain.
Recipes are cheap, so every fold refits them (:data:`RECIPES`): a logistic regression on frozen MiniLM features
(the generic features before fine-tuning; source-balanced), TF-IDF word and character n-grams, their mean
log-odds, and per-source experts gated by a source classifier. The compact model is scored as it is (it was
trained on its source's train split: folds holding out a generator or domain of that source are not held out for
it, and say so).

Every AUC has a group-resampled bootstrap interval. One bootstrap over the whole held pool (``pool_resamples``) is
shared by every fold and model, so a recipe's difference from the compact model is paired (same items, same
resamples) and a mean over folds, which overlap (a source's fold holds the texts of its generator and domain
folds), averages draws of the same resamples. The best recipe is chosen by cross-fitting
(:func:`cross_fitted_choice`): the held groups are split in two halves, the recipe chosen on one half's folds is
scored on the other half's, so the reported number is not measured on the texts that chose it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dfmm.analysis.text_recipes import ENSEMBLES, RECIPES, fold_rows, logit
from dfmm.data.labels import FAKE, REAL
from dfmm.data.sources import text_key
from dfmm.data.splits import split_by_group, subset_by_group
from dfmm.data.text import TextSet
from dfmm.errors import DataError
from dfmm.metrics import interval, metric_draws, pool_resamples
from dfmm.models.ngrams import hashed_ngrams

if TYPE_CHECKING:
    from dfmm.config import Config

FOLD_KINDS = ("source", "generator", "domain")
N_RESAMPLES = 1000
HALVES = (0, 1)  # cross-fitted choice: choose on one half of the held groups, score on the other


# ------------------------------------------------------------------------------------------------- sources
def pooled_parts(parts: dict[str, dict[str, TextSet]]) -> tuple[TextSet, TextSet, dict[str, int]]:
    """(fit pool, held pool, duplicates dropped from each): the sources' fit parts, then their held parts, pooled
    by ``pool_texts``; a held text that duplicates a fit text is dropped too (it would be scored on its own copy)."""
    seen: set[str] = set()
    fit, n_fit = pool_texts({s: p["fit"] for s, p in parts.items()}, seen)
    held, n_held = pool_texts({s: p["held"] for s, p in parts.items()}, seen)
    return fit, held, {"fit": n_fit, "held": n_held}


def pool_texts(parts: dict[str, TextSet], seen: set[str] | None = None) -> tuple[TextSet, int]:
    """One TextSet of several sources, each row tagged with its ``source`` (meta), groups kept within their source;
    a text that is an exact duplicate of an earlier one (or of one in ``seen``) after whitespace normalisation is
    dropped. Returns the pool and how many duplicates were dropped."""
    texts: list[str] = []
    labels, groups = [], []
    meta: dict[str, list[Any]] = {"source": [], "generator": [], "domain": []}
    seen = set() if seen is None else seen
    dropped = 0
    for name, ts in parts.items():
        gen, dom = ts.meta.get("generator"), ts.meta.get("domain")
        for i, text in enumerate(ts.iter_texts()):
            key = text_key(text)
            if key in seen:
                dropped += 1
                continue
            seen.add(key)
            label = int(ts.labels[i])
            texts.append(text)
            labels.append(label)
            groups.append(f"{name}/{ts.groups[i]}")
            meta["source"].append(name)
            meta["generator"].append(str(gen[i]) if gen is not None else ("human" if label == REAL else "unknown"))
            meta["domain"].append(f"{name}/{dom[i]}" if dom is not None else f"{name}/-")
    return TextSet(texts, np.asarray(labels, dtype=np.int64), groups, meta, origin="pooled"), dropped


def check_training_source(name: str, ts: TextSet) -> None:
    """A training source must hold both classes (a one-class source can still be a held-out test set)."""
    c = ts.counts()
    if min(c.values()) == 0:
        raise DataError(
            f"text source '{name}' has one class only ({c}): it can be a held-out test set, not a training source"
        )


def text_parts(
    cfg: Config, study_splits: dict[str, TextSet], cross: dict[str, TextSet]
) -> dict[str, dict[str, TextSet]]:
    """Per source: ``fit`` and ``held`` parts, disjoint by group (see the module docstring). The training sources'
    parts come from the study's train and test splits (the train split read again, uncapped, when the study's
    budget holds fewer than ``generalization.fit_texts`` per source); each cross source is split by group."""
    from dfmm.data import data_sources
    from dfmm.data.sources import pooled_splits, row_sources
    from dfmm.data.text import load_texts

    g, seed = cfg.generalization, cfg.study.seed

    def capped(ts: TextSet, index: np.ndarray, limit: int) -> TextSet:
        keep = subset_by_group(np.asarray(index, dtype=int), ts.labels, ts.groups, limit, seed, balanced=True)
        return ts.subset(keep)

    train, test = study_splits["train"], study_splits["test"]
    names = sorted(set(row_sources(train)))
    if not g.fit_texts or g.fit_texts * len(names) > len(train):  # the study's budget capped its train split
        if isinstance(cfg.data.texts, list):
            train = pooled_splits(cfg, "texts", g.fit_texts * len(names), 0)[0]["train"]
        else:
            full = load_texts(data_sources(cfg)["texts"], cfg.data.hub_split)
            split = split_by_group(full.labels, full.groups, cfg.data.val_fraction, cfg.data.test_fraction, seed)
            train = full.subset(split.train)
    parts: dict[str, dict[str, TextSet]] = {}
    train_src, test_src = np.asarray(row_sources(train)), np.asarray(row_sources(test))
    for name in names:
        fit = capped(train, np.flatnonzero(train_src == name), g.fit_texts)
        parts[name] = {"fit": fit, "held": capped(test, np.flatnonzero(test_src == name), g.held_texts)}
    for name in cross:
        full = load_texts(cfg.data.cross_texts[name], cfg.data.hub_split)
        split = split_by_group(full.labels, full.groups, cfg.data.val_fraction, cfg.data.test_fraction, seed)
        parts[name] = {"fit": capped(full, split.train, g.fit_texts), "held": capped(full, split.test, g.held_texts)}
    for name in names:  # a one-class cross source stays: its texts are held out, and other sources train
        check_training_source(name, parts[name]["fit"])
    return parts


def training_duplicates(cfg: Config) -> dict[str, int]:
    """Per modality with a list of training sources: how many items repeated an earlier one and were dropped."""
    from dfmm.data.sources import pooled_splits

    d = cfg.data
    limits = {"images": (d.max_images, d.max_eval_images), "texts": (d.max_texts, d.max_eval_texts)}
    return {k: pooled_splits(cfg, k, *limits[k])[1] for k in limits if isinstance(getattr(d, k), list)}


def training_sources(cfg: Config) -> set[str]:
    """The names of the text sources the study's text branch trained on (as ``row_sources`` names their rows)."""
    from dfmm.data import data_sources
    from dfmm.data.sources import items_of, source_name

    if isinstance(cfg.data.texts, str):  # named by the file it resolves to ("synthetic": the demo data's)
        return {source_name(data_sources(cfg)["texts"])}
    return {i.source for i in items_of(cfg.data.texts)}


# --------------------------------------------------------------------------------------------------- folds
@dataclass(frozen=True)
class Fold:
    """One held-out fold: train on ``train`` (rows of the fit pool), score ``test`` (rows of the held pool)."""

    kind: str  # source | generator | domain
    held_out: str
    train: np.ndarray
    test: np.ndarray
    seen_by_compact: bool  # the compact model trained on texts of what this fold holds out

    @property
    def name(self) -> str:
        return f"{self.kind}: {self.held_out}"


def text_folds(fit: TextSet, held: TextSet, trained_on: set[str]) -> list[Fold]:
    """Leave-one-source-out, leave-one-generator-out and leave-one-domain-out folds over the pooled texts.

    A generator's fold scores its held texts and the human held texts of the sources it occurs in; its training
    texts lack that generator (the human texts stay). ``trained_on`` names the compact model's training sources."""
    fs, hs = np.asarray(fit.meta["source"]), np.asarray(held.meta["source"])
    fg, hg = np.asarray(fit.meta["generator"]), np.asarray(held.meta["generator"])
    fd, hd = np.asarray(fit.meta["domain"]), np.asarray(held.meta["domain"])
    folds = []
    if len(set(fs)) > 1:
        for s in sorted(set(hs)):
            folds.append(Fold("source", s, np.flatnonzero(fs != s), np.flatnonzero(hs == s), s in trained_on))
    for gen in sorted(set(hg[held.labels == FAKE]) - {"unknown"}):  # "unknown": the rows of a source without one
        sources = set(hs[hg == gen])
        test = np.flatnonzero((hg == gen) | ((held.labels == REAL) & np.isin(hs, list(sources))))
        folds.append(Fold("generator", gen, np.flatnonzero(fg != gen), test, bool(sources & trained_on)))
    if len(set(hd)) > 1:
        for d in sorted(x for x in set(hd) if not x.endswith("/-")):  # "/-": a source without domains
            seen = d.split("/", 1)[0] in trained_on
            folds.append(Fold("domain", d, np.flatnonzero(fd != d), np.flatnonzero(hd == d), seen))
    return folds


# --------------------------------------------------------------------------------------------- evaluation
def selection_halves(groups: Any, seed: int = 0) -> np.ndarray:
    """Half 0 or 1 of every item, drawn by group (a group's items share a half), about half the groups in each."""
    names = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(names))
    half = {names[i]: int(k % 2) for k, i in enumerate(order)}
    return np.array([half[g] for g in groups], dtype=np.int64)


def run_text_folds(
    fit: TextSet,
    held: TextSet,
    fit_features: np.ndarray,
    held_features: np.ndarray,
    compact_probs: np.ndarray,
    folds: list[Fold],
    min_items: int,
    recipes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every recipe (and the compact model's fixed scores) on every fold: ``rows`` (one per fold and model: AUC,
    CI, n, the paired difference from the compact model with its CI), ``draws`` (model -> fold -> AUC draws, one
    bootstrap of the held pool shared by all) for means over folds (:func:`fold_means`), and ``halves`` (half ->
    model -> fold -> (AUC, draws) on that half's items; ``half_counts``: (reals, fakes) of each fold half) for
    :func:`cross_fitted_choice`."""
    recipes = RECIPES if recipes is None else recipes
    ensembles = {k: v for k, v in ENSEMBLES.items() if set(v) <= {"compact", *recipes}}
    rows, draws = [], {name: {} for name in ["compact", *recipes, *ensembles]}
    halves: dict[int, dict[str, dict[str, Any]]] = {h: {name: {} for name in draws} for h in HALVES}
    half_counts: dict[int, dict[str, tuple[int, int]]] = {h: {} for h in HALVES}
    fit_ngrams, held_ngrams = hashed_ngrams(fit.texts), hashed_ngrams(held.texts)
    resamples = pool_resamples(held.groups, N_RESAMPLES, seed=0)
    half_of = selection_halves(held.groups)
    for fold in folds:
        y = held.labels[fold.test]
        n_real, n_fake = int((y == REAL).sum()), int((y == FAKE).sum())
        base = {"fold": fold.name, "kind": fold.kind, "held_out": fold.held_out, "n": len(y), "n_fake": n_fake}
        if min(n_real, n_fake) < min_items:
            reason = f"too few held-out items: {n_real} real, {n_fake} fake (< {min_items} of a class)"
            rows += [base | {"model": m, "auc": None, "ci": None, "null_reason": reason} for m in draws]
            continue
        if len(set(fit.labels[fold.train])) < 2:
            rows += [
                base | {"model": m, "auc": None, "ci": None, "null_reason": "one class to train on"} for m in draws
            ]
            continue
        train = fold_rows(fit, fit_features, fit_ngrams, fold.train)
        test = fold_rows(held, held_features, held_ngrams, fold.test)
        scores = {"compact": compact_probs[fold.test]} | {m: f(train, test) for m, f in recipes.items()}
        odds = {m: logit(v) if m == "compact" else v for m, v in scores.items()}  # compact gives P(AI)
        scores |= {m: np.mean([odds[p] for p in parts], axis=0) for m, parts in ensembles.items()}
        w = resamples[:, fold.test]
        for h in HALVES:
            yh = y[half_of[fold.test] == h]
            half_counts[h][fold.name] = (int((yh == REAL).sum()), int((yh == FAKE).sum()))
        for model, s in scores.items():
            auc, d = metric_draws(y, s, weights=w)
            draws[model][fold.name] = d
            for h in HALVES:
                mine = half_of[fold.test] == h
                halves[h][model][fold.name] = metric_draws(y[mine], s[mine], weights=w[:, mine])
            row = base | {"model": model, "auc": auc, "ci": interval(d), "null_reason": None}
            if model == "compact":
                row["seen_in_training"] = fold.seen_by_compact
            else:
                diff = d - draws["compact"][fold.name]
                row |= {"minus_compact": auc - rows_auc(rows, fold.name), "minus_compact_ci": interval(diff)}
            rows.append(row)
    return {"rows": rows, "draws": draws, "halves": halves, "half_counts": half_counts, "min_items": min_items}


def rows_auc(rows: list[dict[str, Any]], fold: str, model: str = "compact") -> float:
    return next(r["auc"] for r in rows if r["fold"] == fold and r["model"] == model)


def _fold_names(result: dict[str, Any], kind: str) -> list[str]:
    """The scorable folds of a kind: one of FOLD_KINDS, ``all``, or ``unseen`` (held out for every model: the
    compact model never trained on their texts)."""
    compact_rows = [r for r in result["rows"] if r["model"] == "compact" and r["auc"] is not None]
    if kind == "unseen":
        return [r["fold"] for r in compact_rows if not r.get("seen_in_training")]
    return [r["fold"] for r in compact_rows if kind == "all" or r["kind"] == kind]


def fold_means(result: dict[str, Any], kinds: tuple[str, ...] = FOLD_KINDS) -> list[dict[str, Any]]:
    """Per model and fold kind, over all folds (``all``) and over the folds whose held-out texts the compact model
    never trained on (``unseen``: held out for every model): the mean held-out AUC with the interval of the mean
    (the folds share their resamples, so the draws of the mean are the means of the draws), and the paired
    difference from the compact model; folds with a null AUC are left out."""
    rows = []
    draws = result["draws"]
    for kind in (*kinds, "all", "unseen"):
        names = _fold_names(result, kind)
        if not names:
            continue
        base = np.mean([draws["compact"][f] for f in names], axis=0)
        for model, by_fold in draws.items():
            d = np.mean([by_fold[f] for f in names], axis=0)
            point = float(np.mean([rows_auc(result["rows"], f, model) for f in names]))
            row = {"model": model, "folds": kind, "n_folds": len(names), "mean_auc": point, "ci": interval(d)}
            row["undefined_draws"] = int(np.isnan(d).sum())  # resamples in which some fold lacked a class
            if model != "compact":
                compact = float(np.mean([rows_auc(result["rows"], f) for f in names]))
                ci = interval(d - base)
                row |= {
                    "minus_compact": point - compact,
                    "minus_compact_ci": ci,
                    "beats_compact": bool(ci is not None and ci[0] > 0),
                    "worse_folds": sum(rows_auc(result["rows"], f, model) < rows_auc(result["rows"], f) for f in names),
                }
            rows.append(row)
    return rows


MAX_UNDEFINED_DRAWS = 0.05  # a mean whose resamples lack a class in some fold more often than this is null


def cross_fitted_choice(result: dict[str, Any], kind: str = "unseen") -> dict[str, Any]:
    """The best recipe's held-out AUC without post-selection: for each half of the held groups, the model with the
    highest mean AUC over the folds of ``kind`` on the *other* half is chosen and scored on this half; the estimate
    is the mean of the two halves' scores, with the paired difference from the compact model on the same items.

    A fold counts when each of its halves holds at least ``min_items / 2`` texts of each class. The interval repeats
    the choice in every resample (the model with the best mean on the other half in that resample), so it carries
    the uncertainty of the choice too; ``undefined_draws`` counts resamples in which some fold half lacked a class
    (left out of the interval; above ``MAX_UNDEFINED_DRAWS`` of them the result is null). ``chosen`` names the
    choice of each half on all items (the same name twice: a stable choice)."""
    halves, counts = result["halves"], result["half_counts"]
    need = -(-result["min_items"] // 2)
    names = [f for f in _fold_names(result, kind) if all(min(counts[h][f]) >= need for h in HALVES)]
    out: dict[str, Any] = {"folds": kind, "n_folds": len(names), "chosen": None, "mean_auc": None, "ci": None}
    if not names:
        reason = f"no fold of kind {kind!r} has {need} texts of each class in both halves of its held texts"
        return out | {"null_reason": reason}
    models = list(halves[0])
    # (half, model) -> mean over the folds: the point and the draws
    point = {(h, m): float(np.mean([halves[h][m][f][0] for f in names])) for h in HALVES for m in models}
    draws = {(h, m): np.mean([halves[h][m][f][1] for f in names], axis=0) for h in HALVES for m in models}
    per_half, d, d_base = [], [], []
    for h in HALVES:
        chosen = max(models, key=lambda m: point[(1 - h, m)])
        other = np.stack([draws[(1 - h, m)] for m in models])  # (models, resamples)
        pick = np.argmax(np.where(np.isnan(other), -np.inf, other), axis=0)  # the choice, resample by resample
        mine = np.stack([draws[(h, m)] for m in models])[pick, np.arange(other.shape[1])]
        mine[np.isnan(other).any(axis=0)] = np.nan
        d.append(mine)
        d_base.append(draws[(h, "compact")])
        per_half.append(
            {
                "half": h,
                "chosen_on_other_half": chosen,
                "mean_auc": point[(h, chosen)],
                "compact": point[(h, "compact")],
            }
        )
    d_mean, diff = np.mean(d, axis=0), np.mean(d, axis=0) - np.mean(d_base, axis=0)
    undefined = int(np.isnan(d_mean).sum())
    estimate = float(np.mean([r["mean_auc"] for r in per_half]))
    compact = float(np.mean([r["compact"] for r in per_half]))
    out |= {"chosen": [r["chosen_on_other_half"] for r in per_half], "undefined_draws": undefined}
    if undefined > MAX_UNDEFINED_DRAWS * len(d_mean):
        reason = f"{undefined} of {len(d_mean)} resamples left a fold half without a class"
        return out | {"null_reason": reason}
    return out | {
        "mean_auc": estimate,
        "ci": interval(d_mean),
        "minus_compact": estimate - compact,
        "minus_compact_ci": interval(diff),
        "per_half": per_half,
        "null_reason": None,
    }


def choose_recipe(means: list[dict[str, Any]], kind: str = "unseen") -> str | None:
    """The model with the highest mean held-out AUC over the folds of ``kind`` (default: the folds held out for
    every model, the compact one included): chosen on held-out sources, generators and domains only, never on a
    test split of a training source."""
    rows = [r for r in means if r["folds"] == kind]
    return max(rows, key=lambda r: r["mean_auc"])["model"] if rows else None
