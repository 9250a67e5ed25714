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

Every AUC has a group-resampled bootstrap interval; a recipe's difference from the compact model is paired (same
items, same resamples), and a mean over folds averages the folds' draws resample by resample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dfmm.data.labels import FAKE, REAL
from dfmm.data.sources import text_key
from dfmm.data.splits import split_by_group, subset_by_group
from dfmm.data.text import TextSet
from dfmm.errors import DataError
from dfmm.metrics import interval, metric_draws

if TYPE_CHECKING:
    from dfmm.config import Config

FOLD_KINDS = ("source", "generator", "domain")
N_RESAMPLES = 1000


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


# ------------------------------------------------------------------------------------------------- recipes
def balanced_weights(labels: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Each (source, class) cell weighs the same in total: source-balanced, class-balanced training."""
    w = np.zeros(len(labels))
    cells = {(s, y) for s, y in zip(sources, labels, strict=True)}
    for s, y in cells:
        m = (sources == s) & (labels == y)
        w[m] = 1.0 / m.sum()
    return w * len(labels) / w.sum()


def balanced_logistic(x: Any, y: np.ndarray, w: np.ndarray) -> Any:
    """Logistic regression (C = 1) with per-item weights (``balanced_weights``)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, max_iter=2000).fit(x, y, sample_weight=w)


def _log_odds(model: Any, x: Any) -> np.ndarray:
    return model.decision_function(x)


def frozen_linear(train: dict[str, Any], test: dict[str, Any]) -> np.ndarray:
    """Logistic regression on the frozen features (the branch's mean-pooled encoder output, not normalised),
    source- and class-balanced."""
    return _log_odds(balanced_logistic(train["features"], train["labels"], train["weights"]), test["features"])


def hashed_ngrams(texts: list[str]) -> Any:
    """Word 1-2-gram and character 3-5-gram counts, hashed (scikit-learn's ``HashingVectorizer``: stateless, so one
    pass serves every fold, and no vocabulary is learnt from texts a fold holds out); the IDF weights are fitted per
    fold on its training rows only (``tfidf_ngrams``)."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import HashingVectorizer

    common = {"n_features": 2**20, "alternate_sign": False, "norm": None}
    word = HashingVectorizer(ngram_range=(1, 2), **common)
    char = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), **common)
    return hstack([word.transform(texts), char.transform(texts)]).tocsr()


def tfidf_ngrams(train: dict[str, Any], test: dict[str, Any]) -> np.ndarray:
    """TF-IDF of the hashed n-grams (sublinear tf, IDF from the fold's training rows), logistic regression,
    source- and class-balanced."""
    from sklearn.feature_extraction.text import TfidfTransformer

    tfidf = TfidfTransformer(sublinear_tf=True).fit(train["ngrams"])
    model = balanced_logistic(tfidf.transform(train["ngrams"]), train["labels"], train["weights"])
    return _log_odds(model, tfidf.transform(test["ngrams"]))


def source_experts(train: dict[str, Any], test: dict[str, Any]) -> np.ndarray:
    """One ``frozen_linear`` expert per training source, mixed by a source classifier's probabilities (the gate)."""
    from sklearn.linear_model import LogisticRegression

    sources = sorted(set(train["sources"]))
    if len(sources) == 1:
        return frozen_linear(train, test)
    experts = []
    for s in sources:
        m = train["sources"] == s
        if len(set(train["labels"][m])) < 2:
            continue
        experts.append((s, balanced_logistic(train["features"][m], train["labels"][m], train["weights"][m])))
    gate = LogisticRegression(C=1.0, max_iter=2000).fit(train["features"], train["sources"])
    share = gate.predict_proba(test["features"])
    col = {s: i for i, s in enumerate(gate.classes_)}
    p = sum(share[:, col[s]] * _sigmoid(e.decision_function(test["features"])) for s, e in experts)
    total = sum(share[:, col[s]] for s, _ in experts)
    q = np.clip(p / np.maximum(total, 1e-12), 1e-7, 1 - 1e-7)
    return np.log(q / (1 - q))


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    return np.log(q / (1 - q))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


RECIPES = {
    "frozen MiniLM + linear": frozen_linear,
    "TF-IDF n-grams": tfidf_ngrams,
    "per-source experts": source_experts,
}
# equal-weight ensembles: the mean log-odds of recipes above, computed from their scores (no weight to fit)
ENSEMBLES = {
    "frozen + n-grams": ("frozen MiniLM + linear", "TF-IDF n-grams"),
    "compact + n-grams": ("compact", "TF-IDF n-grams"),  # the fine-tuned transformer stacked with n-gram features
}


def _rows(pool: TextSet, features: np.ndarray, ngrams: Any, index: np.ndarray) -> dict[str, Any]:
    labels = pool.labels[index]
    sources = np.asarray(pool.meta["source"])[index]
    return {
        "features": features[index],
        "ngrams": ngrams[index],
        "texts": [pool.text(i) for i in index],
        "labels": labels,
        "sources": sources,
        "weights": balanced_weights(labels, sources),
        "groups": [pool.groups[i] for i in index],
    }


# --------------------------------------------------------------------------------------------- evaluation
def _auc(labels: np.ndarray, scores: np.ndarray, groups: list[str]) -> tuple[float, np.ndarray]:
    return metric_draws(labels, scores, groups, "auc", N_RESAMPLES, seed=0)


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
    CI, n, the paired difference from the compact model with its CI) and ``draws`` (model -> fold -> AUC draws)
    for means over folds (:func:`fold_means`)."""
    recipes = RECIPES if recipes is None else recipes
    ensembles = {k: v for k, v in ENSEMBLES.items() if set(v) <= {"compact", *recipes}}
    rows, draws = [], {name: {} for name in ["compact", *recipes, *ensembles]}
    fit_ngrams, held_ngrams = hashed_ngrams(fit.texts), hashed_ngrams(held.texts)
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
        train = _rows(fit, fit_features, fit_ngrams, fold.train)
        test = _rows(held, held_features, held_ngrams, fold.test)
        scores = {"compact": compact_probs[fold.test]} | {m: f(train, test) for m, f in recipes.items()}
        odds = {m: _logit(v) if m == "compact" else v for m, v in scores.items()}  # compact gives P(AI)
        scores |= {m: np.mean([odds[p] for p in parts], axis=0) for m, parts in ensembles.items()}
        for model, s in scores.items():
            auc, d = _auc(y, s, test["groups"])
            draws[model][fold.name] = d
            row = base | {"model": model, "auc": auc, "ci": interval(d), "null_reason": None}
            if model == "compact":
                row["seen_in_training"] = fold.seen_by_compact
            else:
                diff = d - draws["compact"][fold.name]
                row |= {"minus_compact": auc - rows_auc(rows, fold.name), "minus_compact_ci": interval(diff)}
            rows.append(row)
    return {"rows": rows, "draws": draws}


def rows_auc(rows: list[dict[str, Any]], fold: str, model: str = "compact") -> float:
    return next(r["auc"] for r in rows if r["fold"] == fold and r["model"] == model)


def fold_means(result: dict[str, Any], kinds: tuple[str, ...] = FOLD_KINDS) -> list[dict[str, Any]]:
    """Per model and fold kind, over all folds (``all``) and over the folds whose held-out texts the compact model
    never trained on (``unseen``: held out for every model): the mean held-out AUC with the interval of the mean of
    the folds' draws, and the paired difference from the compact model; folds with a null AUC are left out."""
    rows = []
    draws = result["draws"]
    compact_rows = [r for r in result["rows"] if r["model"] == "compact" and r["auc"] is not None]
    for kind in (*kinds, "all", "unseen"):
        if kind == "unseen":
            names = [r["fold"] for r in compact_rows if not r.get("seen_in_training")]
        else:
            names = [r["fold"] for r in compact_rows if kind == "all" or r["kind"] == kind]
        if not names:
            continue
        base = np.mean([draws["compact"][f] for f in names], axis=0)
        for model, by_fold in draws.items():
            d = np.mean([by_fold[f] for f in names], axis=0)
            point = float(np.mean([rows_auc(result["rows"], f, model) for f in names]))
            row = {"model": model, "folds": kind, "n_folds": len(names), "mean_auc": point, "ci": interval(d)}
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


def choose_recipe(means: list[dict[str, Any]], kind: str = "unseen") -> str | None:
    """The model with the highest mean held-out AUC over the folds of ``kind`` (default: the folds held out for
    every model, the compact one included): chosen on held-out sources, generators and domains only, never on a
    test split of a training source."""
    rows = [r for r in means if r["folds"] == kind]
    return max(rows, key=lambda r: r["mean_auc"])["model"] if rows else None
