"""Which text features tell an unseen text source from the training one? The out-of-distribution trial of issue 26.

    python benchmarks/text_ood_features.py [PARAMS...]   (default: params/compact.yaml params/sources/local.yaml)

Reads a finished study's run folder (its ``multimodal_ensemble.pt`` and score cache): the held-out texts of notebook
07 (``dfmm.analysis.text_folds.text_parts``), and prints the AUROC of several distances for telling the held
texts of each cross source from the held texts of the training source, the reference being the training source's
fit texts. Candidates: the shipped flag (kNN cosine on frozen MiniLM mean-pooled features, ``dfmm.models.ood``),
the same on centred features, a Mahalanobis distance (Ledoit-Wolf covariance), kNN cosine on TF-IDF hashed n-grams
and on their 256-dimensional SVD, and text length alone (a floor: a distance that only sees length).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("params", nargs="*", default=["params/compact.yaml", "params/sources/local.yaml"])
    args = ap.parse_args(argv)

    from sklearn.covariance import LedoitWolf
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.preprocessing import normalize

    from dfmm.analysis import text_folds as folds
    from dfmm.config import load_config
    from dfmm.data import cross_texts, text_splits
    from dfmm.models.ood import auroc, fit_reference
    from dfmm.serving.evaluate import frozen_features
    from dfmm.serving.inference import load_model

    cfg = load_config(args.params)
    model, _ = load_model(cfg.run_dir / "multimodal_ensemble.pt")
    scoring = {"batch_size": cfg.text.batch_size, "cache_dir": cfg.run_dir / "cache"}
    parts = folds.text_parts(cfg, text_splits(cfg), cross_texts(cfg))
    fit, held, _ = folds.pooled_parts(parts)
    ff = frozen_features(model, "text", fit, **scoring)["features"]
    hf = frozen_features(model, "text", held, **scoring)["features"]
    fs, hs = np.asarray(fit.meta["source"]), np.asarray(held.meta["source"])
    trained = sorted(folds.training_sources(cfg))
    ref_rows, home = np.isin(fs, trained), np.isin(hs, trained)
    val = np.flatnonzero(home)[: max(1, home.sum() // 3)]  # a third of the home texts set each reference's threshold
    ngrams_fit, ngrams_held = folds.hashed_ngrams(fit.texts), folds.hashed_ngrams(held.texts)
    tfidf = TfidfTransformer(sublinear_tf=True).fit(ngrams_fit[ref_rows])
    tf_ref, tf_held = normalize(tfidf.transform(ngrams_fit[ref_rows])), normalize(tfidf.transform(ngrams_held))
    svd = TruncatedSVD(256, random_state=0).fit(tf_ref)
    mu = ff[ref_rows].mean(axis=0)
    distances = {
        "frozen MiniLM, kNN-10 cosine (shipped)": fit_reference("x", ff[ref_rows], hf[val]).distances(hf),
        "frozen MiniLM centred, kNN-10 cosine": fit_reference("x", ff[ref_rows] - mu, hf[val] - mu).distances(hf - mu),
        "frozen MiniLM, Mahalanobis (Ledoit-Wolf)": LedoitWolf().fit(ff[ref_rows]).mahalanobis(hf),
        "TF-IDF n-grams, kNN-10 cosine": 1 - np.sort((tf_held @ tf_ref.T).toarray(), axis=1)[:, ::-1][:, :10].mean(1),
        "TF-IDF SVD-256, kNN-10 cosine": fit_reference(
            "x", svd.transform(tf_ref), svd.transform(tf_held[val])
        ).distances(svd.transform(tf_held)),
        "text length (characters)": np.array([len(t) for t in held.texts], dtype=float),
    }
    out = {}
    for source in sorted(set(hs) - set(trained)):
        away = hs == source
        out[source] = {name: auroc(d[home], d[away]) for name, d in distances.items()}
    print(json.dumps({"trained_on": trained, "n_home": int(home.sum()), "auroc": out}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
