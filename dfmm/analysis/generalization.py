"""Generalization (notebook 07): held-out-source folds for texts, cross-source measures for faces and clips, and how
well the "unlike the training data" flag (``dfmm.models.ood``) finds the items of sources the model never saw.

Texts. Every text source the params name (the training source and the cross sources) gives two disjoint parts,
split by group: ``fit`` (training texts, at most ``generalization.fit_texts``) and ``held`` (at most
``held_texts``). For the training source they come from the study's own train and test splits, so the compact
model never trained on a held text. The folds (:func:`text_folds`) train on the fit texts without one source,
one generator or one domain, and score the held texts of that source, generator (with the human texts of the
sources it occurs in) or domain. Recipes are cheap, so every fold refits them (:data:`RECIPES`): a logistic
regression on frozen MiniLM features (the generic features before fine-tuning; source-balanced), TF-IDF word and
character n-grams, their mean log-odds, and per-source experts gated by a source classifier. The compact model is
scored as it is (it was trained on its source's train split: folds holding out a generator or domain of that
source are not held out for it, and say so).

Every AUC has a group-resampled bootstrap interval; a recipe's difference from the compact model is paired (same
items, same resamples), and a mean over folds averages the folds' draws resample by resample.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dfmm.data.labels import FAKE, REAL
from dfmm.data.splits import split_by_group, subset_by_group
from dfmm.data.text import TextSet
from dfmm.errors import DataError
from dfmm.metrics import interval, mean_draws, metric_draws

if TYPE_CHECKING:
    from dfmm.config import Config

FOLD_KINDS = ("source", "generator", "domain")
N_RESAMPLES = 1000


# ------------------------------------------------------------------------------------------------- sources
def _normalised(text: str) -> str:
    return " ".join(text.split())


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
            key = _normalised(text)
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
def _balanced_weights(labels: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Each (source, class) cell weighs the same in total: source-balanced, class-balanced training."""
    w = np.zeros(len(labels))
    cells = {(s, y) for s, y in zip(sources, labels, strict=True)}
    for s, y in cells:
        m = (sources == s) & (labels == y)
        w[m] = 1.0 / m.sum()
    return w * len(labels) / w.sum()


def _logistic(x: Any, y: np.ndarray, w: np.ndarray) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, max_iter=2000).fit(x, y, sample_weight=w)


def _log_odds(model: Any, x: Any) -> np.ndarray:
    return model.decision_function(x)


def frozen_linear(train: dict[str, Any], test: dict[str, Any]) -> np.ndarray:
    """Logistic regression on the frozen features (the branch's mean-pooled encoder output, not normalised),
    source- and class-balanced."""
    return _log_odds(_logistic(train["features"], train["labels"], train["weights"]), test["features"])


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
    model = _logistic(tfidf.transform(train["ngrams"]), train["labels"], train["weights"])
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
        experts.append((s, _logistic(train["features"][m], train["labels"][m], train["weights"][m])))
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
        "weights": _balanced_weights(labels, sources),
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
    return _logistic(train_features, labels, _balanced_weights(labels, np.zeros(len(labels))))


# -------------------------------------------------------------------------------------------- OOD flag
def flag_table(
    reference: Any, in_domain: tuple[str, np.ndarray], others: dict[str, np.ndarray]
) -> list[dict[str, Any]]:
    """Per source: how many items the flag marks ``uncertain`` (with a Wilson 95% interval), and for the other
    sources the AUROC of the distance for telling their items from the in-domain test items (bootstrap CI)."""
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
            auroc, draws = metric_draws(y, np.r_[d_in, d] / 2.0, None, "auc", N_RESAMPLES, 0)
            row |= {"auroc": auroc, "auroc_ci": interval(draws)}
        rows.append(row)
    return rows


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
        row["features"] = frozen["features"]
        if name not in features_only:
            scored = score_images(model, images, batch_size, cache_dir)
            assert np.array_equal(scored["index"], frozen["index"])
            row["probs"] = scored["probs"]
        out[name] = row
    return out


def face_table(
    scores: dict[str, dict[str, Any]], in_domain: tuple[str, str], fit: str, threshold: float
) -> list[dict[str, Any]]:
    """The compact model and the frozen-feature recipe (fitted on ``fit``) on every scored face set: AUC with its
    CI where both classes are present; for every set, the share of its fakes called fake at the threshold that calls
    5% of the in-domain validation reals fake (``in_domain`` = (validation set, test set)), and the share of all its
    items called fake at the model's own threshold (``threshold`` for the compact model, 0.5 for the recipe)."""
    val, _ = in_domain
    recipe = fit_frozen_faces(scores[fit]["features"], scores[fit]["labels"])
    rows = []
    for model_name in ("compact", "frozen ImageNet + linear"):

        def probs(name: str, model_name: str = model_name) -> np.ndarray:
            s = scores[name]
            return s["probs"] if model_name == "compact" else recipe.predict_proba(s["features"])[:, 1]

        at_5fpr = threshold_at_fpr(probs(val)[scores[val]["labels"] == REAL])
        for name, s in scores.items():
            if name == fit:
                continue
            p, y = probs(name), s["labels"]
            auc, draws = metric_draws(y, p, s["groups"], "auc", N_RESAMPLES, 0)
            fakes = y == FAKE
            rows.append(
                {
                    "model": model_name,
                    "set": name,
                    "n": len(y),
                    "auc": None if np.isnan(auc) else auc,
                    "auc_ci": interval(draws),
                    "fakes_detected_at_5fpr": detection_rate(p[fakes], at_5fpr, np.asarray(s["groups"])[fakes]),
                    "threshold_5fpr": at_5fpr,
                    "called_fake": float((p > (threshold if model_name == "compact" else 0.5)).mean()),
                }
            )
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
