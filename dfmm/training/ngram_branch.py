"""The n-gram text branch a study ships when held-out-source validation chooses it (notebook 07,
:mod:`dfmm.analysis.shipped`): the TF-IDF n-gram recipe (:mod:`dfmm.models.ngrams`) refitted on every fit text of
every source, source- and class-balanced, and written as a ``text_ngrams`` checkpoint with its out-of-distribution
reference.

Its decision threshold is 0.5 at temperature 1: the logistic regression is class-balanced, so logit 0 is its
balanced decision; there is no validation split of the pooled sources left to tune either on (the held texts
measure it). The reference (frozen generic encoder features, ``dfmm.models.ood``) holds 80% of the fit texts'
groups; the other 20% set the distance that keeps 95% of in-domain texts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dfmm.config import Config
from dfmm.data.sources import balanced_weights
from dfmm.data.text import TextSet
from dfmm.models.checkpoints import save_checkpoint
from dfmm.models.ngrams import NgramTextModel
from dfmm.models.ood import fit_reference

NGRAM_RECIPE = "TF-IDF n-grams"  # the name notebook 07's folds give the recipe (dfmm.analysis.text_recipes)
REFERENCE_VALIDATION = 0.2  # share of the fit texts' groups that set the reference's threshold


def reference_rows(groups: list[str], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(reference rows, validation rows): the groups drawn apart, seeded, ``REFERENCE_VALIDATION`` of them for
    validation (a group's texts, a human text and its rewrites, stay on one side)."""
    names = sorted(set(groups))
    held = set(np.random.default_rng(seed).permutation(names)[: max(1, round(REFERENCE_VALIDATION * len(names)))])
    val = np.array([g in held for g in groups])
    return np.flatnonzero(~val), np.flatnonzero(val)


def train_text_ngrams(cfg: Config, fit: TextSet, frozen_features: np.ndarray, path: str | Path) -> Path:
    """Fit the n-gram model on ``fit`` (a pool tagged with ``source``: ``text_folds.pooled_parts``) and write it to
    ``path`` with the reference built from ``frozen_features`` (row i = text i, from ``cfg.text.encoder``)."""
    sources = np.asarray(fit.meta["source"])
    model = NgramTextModel.fit(list(fit.texts), fit.labels, balanced_weights(fit.labels, sources))
    ref_rows, val_rows = reference_rows(list(fit.groups), cfg.study.seed)
    ref = fit_reference(cfg.text.encoder, frozen_features[ref_rows], frozen_features[val_rows], seed=cfg.study.seed)
    section, ref_tensors = ref.to_checkpoint("text")
    trained_on = {
        s: {"texts": int((sources == s).sum()), "fake": int(fit.labels[sources == s].sum())} for s in set(sources)
    }
    meta = model.meta() | {
        "recipe": NGRAM_RECIPE,
        "trained_on": dict(sorted(trained_on.items())),
        "max_length": cfg.text.max_length,
        "threshold": 0.5,
        "temperature": 1.0,
        "config_digest": cfg.digest(),
        "study": cfg.study.name,
        "config": cfg.to_dict(),
        "ood": {"text": section},
    }
    return save_checkpoint(path, "text_ngrams", model.state() | ref_tensors, meta)
