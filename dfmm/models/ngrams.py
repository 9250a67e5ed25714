"""The n-gram text branch: TF-IDF of hashed word 1-2-grams and character 3-5-grams, then a logistic regression.

It is the text recipe notebook 07's held-out-source validation chooses (``TF-IDF n-grams`` in
:mod:`dfmm.analysis.text_recipes`, which scores its folds with :func:`hashed_ngrams` and :meth:`NgramTextModel.fit`),
as a model a checkpoint holds and serving runs. Hashing is stateless (scikit-learn's ``HashingVectorizer``: no
vocabulary), so the fitted model is a few arrays: the hashed n-grams seen in training with their IDF and
coefficients, the IDF of any other n-gram, and the intercept. A checkpoint stores them as tensors, never a pickled
estimator (a scikit-learn pickle is code). Scoring is scikit-learn's arithmetic written out (sublinear tf, smoothed
IDF, L2 row norm, dot product): :meth:`NgramTextModel.logits` equals the fitted pipeline's ``decision_function``
to float precision (tested), and it is linear, so :meth:`NgramTextModel.word_contributions` splits a text's logit
exactly among its words, with no gradients.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch

NGRAM_FEATURES = 2**20  # hashed features per analyzer (word, character)
WORD_NGRAMS = (1, 2)
CHAR_NGRAMS = (3, 5)  # within whitespace-separated words ("char_wb"), each padded with a space
PREFIX = "ngrams."  # the checkpoint state's tensors: ngrams.index, ngrams.idf, ngrams.coef, ngrams.bias
TENSORS = ("index", "idf", "coef", "bias")


def _vectorizers() -> tuple[Any, Any]:
    from sklearn.feature_extraction.text import HashingVectorizer

    common = {"n_features": NGRAM_FEATURES, "alternate_sign": False, "norm": None}
    word = HashingVectorizer(ngram_range=WORD_NGRAMS, **common)
    char = HashingVectorizer(analyzer="char_wb", ngram_range=CHAR_NGRAMS, **common)
    return word, char


def hashed_ngrams(texts: list[str]) -> Any:
    """Counts of every text's word and character n-grams, hashed: a (texts, 2 * NGRAM_FEATURES) CSR matrix, word
    n-grams in the first half. Stateless, so one pass serves every fold and no vocabulary is learnt from texts a fold
    holds out."""
    from scipy.sparse import hstack

    word, char = _vectorizers()
    return hstack([word.transform(texts), char.transform(texts)]).tocsr()


def _hash_index(ngram: str, offset: int) -> int:
    """Where ``HashingVectorizer`` counts one n-gram (scikit-learn's ``FeatureHasher``: signed 32-bit MurmurHash3
    of the UTF-8 string, seed 0, its absolute value modulo the width), shifted by the analyzer's ``offset``."""
    from sklearn.utils import murmurhash3_32

    h = murmurhash3_32(ngram, seed=0)
    index = (2**31 - 1 - (NGRAM_FEATURES - 1)) % NGRAM_FEATURES if h == -(2**31) else abs(h) % NGRAM_FEATURES
    return offset + index


@dataclass(frozen=True, eq=False)
class NgramTextModel:
    """A fitted TF-IDF n-gram logistic regression: ``index`` (sorted hashed n-grams seen in training), their ``idf``
    and ``coef``; ``default_idf`` (an n-gram training never saw: it weighs in the row norm, its coefficient is 0);
    ``bias`` (the intercept). ``logits(texts)`` > 0 means AI-generated."""

    index: np.ndarray
    idf: np.ndarray
    coef: np.ndarray
    default_idf: float
    bias: float
    feature_dim: int = field(default=1, init=False)  # what the fusion reads as its features: the logit itself

    # ------------------------------------------------------------------------------------------- fitting
    @classmethod
    def fit(
        cls, texts: list[str] | None, labels: np.ndarray, weights: np.ndarray, ngrams: Any = None
    ) -> NgramTextModel:
        """TF-IDF (sublinear tf, IDF from these texts) and a logistic regression (C = 1) with per-text ``weights``
        (``text_recipes.balanced_weights``); ``ngrams``: the texts' ``hashed_ngrams`` when already computed."""
        from sklearn.feature_extraction.text import TfidfTransformer
        from sklearn.linear_model import LogisticRegression

        counts = hashed_ngrams(texts) if ngrams is None else ngrams
        tfidf = TfidfTransformer(sublinear_tf=True).fit(counts)
        logistic = LogisticRegression(C=1.0, max_iter=2000).fit(tfidf.transform(counts), labels, sample_weight=weights)
        seen = np.unique(counts.indices).astype(np.int64)
        n = counts.shape[0]
        return cls(
            index=seen,
            idf=tfidf.idf_[seen].astype(np.float64),
            coef=logistic.coef_[0][seen].astype(np.float64),
            default_idf=float(np.log((1 + n) / 1) + 1),  # scikit-learn's smoothed IDF of a document frequency of 0
            bias=float(logistic.intercept_[0]),
        )

    # ------------------------------------------------------------------------------------------- scoring
    @cached_property
    def _dense(self) -> tuple[np.ndarray, np.ndarray]:
        """(IDF, coefficient) of every hashed feature: the lookup tables ``logits_of`` multiplies by."""
        idf = np.full(2 * NGRAM_FEATURES, self.default_idf)
        coef = np.zeros(2 * NGRAM_FEATURES)
        idf[self.index], coef[self.index] = self.idf, self.coef
        return idf, coef

    def logits_of(self, counts: Any) -> np.ndarray:
        """Logits of texts given as their ``hashed_ngrams`` counts (a text without n-grams scores the intercept)."""
        idf, coef = self._dense
        counts = counts.tocsr()
        x = counts.copy().astype(np.float64)
        x.data = (1.0 + np.log(x.data)) * idf[x.indices]
        norm = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        dot = x @ coef
        return np.where(norm > 0, dot / np.where(norm > 0, norm, 1.0), 0.0) + self.bias

    def logits(self, texts: list[str]) -> np.ndarray:
        return self.logits_of(hashed_ngrams(list(texts)))

    def scored(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, features) of a batch of texts, as ``TextBranch.scored`` gives them; the features are the logit."""
        logits = torch.from_numpy(self.logits(texts)).float()
        return logits, logits.unsqueeze(1)

    def word_contributions(self, text: str) -> dict[str, Any]:
        """The text's logit split exactly among its words (lower-cased, split at whitespace, as the character
        n-grams read them): each n-gram's term of the logit, ``coef * tfidf``, is shared equally among its
        occurrences; a character n-gram belongs to its word, a word n-gram to the words it spans (a bigram half to
        each). ``tokens`` and ``scores`` (> 0 pushes towards AI-generated) sum with ``bias`` to ``logit``."""
        word, char = _vectorizers()
        pre = word.build_preprocessor()(text)
        words = [(m.start(), m.end()) for m in re.finditer(r"\S+", pre)]
        occurrences: list[tuple[int, list[tuple[int, float]]]] = []  # (feature, [(word, share of the occurrence)])
        char_ngrams = char.build_analyzer()
        for w, (a, b) in enumerate(words):
            occurrences += [(_hash_index(g, NGRAM_FEATURES), [(w, 1.0)]) for g in char_ngrams(pre[a:b])]
        starts = np.array([a for a, _ in words], dtype=np.int64)
        tokens = [
            (m.group(), int(np.searchsorted(starts, m.start(), side="right")) - 1)
            for m in re.finditer(word.token_pattern, pre)
        ]
        for i, (tok, w) in enumerate(tokens):
            occurrences.append((_hash_index(tok, 0), [(w, 1.0)]))
            if i + 1 < len(tokens):
                nxt, w2 = tokens[i + 1]
                occurrences.append((_hash_index(f"{tok} {nxt}", 0), [(w, 0.5), (w2, 0.5)]))
        idf, coef = self._dense
        features = np.array([f for f, _ in occurrences], dtype=np.int64)
        uniq, counts = np.unique(features, return_counts=True)
        x = (1.0 + np.log(counts)) * idf[uniq]
        norm = float(np.sqrt((x**2).sum())) if len(x) else 0.0
        per_occurrence = dict(zip(uniq.tolist(), (coef[uniq] * x / (norm or 1.0) / counts).tolist(), strict=True))
        scores = np.zeros(len(words))
        for f, shares in occurrences:
            for w, share in shares:
                scores[w] += share * per_occurrence[f]
        return {
            "tokens": [pre[a:b] for a, b in words],
            "scores": scores.tolist(),
            "bias": self.bias,
            "logit": float(scores.sum() + self.bias),
            "method": "exact linear contributions of the TF-IDF n-gram model (no gradients)",
        }

    # ------------------------------------------------------------------------------------------- checkpoint
    def state(self) -> dict[str, torch.Tensor]:
        """The checkpoint's tensors (float64: the logits a reloaded model gives are the fitted ones)."""
        return {
            PREFIX + "index": torch.from_numpy(self.index.astype(np.int64)),
            PREFIX + "idf": torch.from_numpy(self.idf.astype(np.float64)),
            PREFIX + "coef": torch.from_numpy(self.coef.astype(np.float64)),
            PREFIX + "bias": torch.tensor([self.bias], dtype=torch.float64),
        }

    def meta(self) -> dict[str, Any]:
        """What the metadata says of the model (``NgramMeta`` reads it back)."""
        return {
            "ngrams": {
                "word": list(WORD_NGRAMS),
                "char_wb": list(CHAR_NGRAMS),
                "n_features": NGRAM_FEATURES,
                "default_idf": self.default_idf,
                "seen": len(self.index),
            }
        }

    @classmethod
    def from_state(cls, default_idf: float, state: dict[str, torch.Tensor]) -> NgramTextModel:
        """The model of a checkpoint's (checked, ``NgramMeta.check_state``) tensors."""
        return cls(
            index=state[PREFIX + "index"].numpy().astype(np.int64),
            idf=state[PREFIX + "idf"].numpy().astype(np.float64),
            coef=state[PREFIX + "coef"].numpy().astype(np.float64),
            default_idf=float(default_idf),
            bias=float(state[PREFIX + "bias"].reshape(-1)[0]),
        )
