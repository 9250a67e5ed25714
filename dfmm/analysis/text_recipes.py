"""The text recipes notebook 07 refits in every held-out fold (:mod:`dfmm.analysis.text_folds`): a logistic
regression on frozen MiniLM features, TF-IDF word and character n-grams, per-source experts gated by a source
classifier, and equal-weight ensembles of their log-odds. Each recipe is ``f(train, test) -> log-odds of test``,
where ``train`` and ``test`` are the fold's rows (:func:`fold_rows`); training is source- and class-balanced.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dfmm.data.sources import balanced_weights
from dfmm.data.text import TextSet
from dfmm.models.ngrams import NgramTextModel


# ------------------------------------------------------------------------------------------------- recipes
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


def tfidf_ngrams(train: dict[str, Any], test: dict[str, Any]) -> np.ndarray:
    """TF-IDF of the hashed n-grams (sublinear tf, IDF from the fold's training rows), logistic regression,
    source- and class-balanced: the model a shipped n-gram text branch holds (``dfmm.models.ngrams``)."""
    model = NgramTextModel.fit(None, train["labels"], train["weights"], ngrams=train["ngrams"])
    return model.logits_of(test["ngrams"])


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
    return logit(p / np.maximum(total, 1e-12))


def logit(p: np.ndarray) -> np.ndarray:
    """Log-odds of probabilities (clipped to 1e-7 from 0 and 1)."""
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


def fold_rows(pool: TextSet, features: np.ndarray, ngrams: Any, index: np.ndarray) -> dict[str, Any]:
    """The rows ``index`` of a pool as a recipe reads them: features, n-grams, texts, labels, sources, training
    weights and groups."""
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
