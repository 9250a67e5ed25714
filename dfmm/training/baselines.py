"""The floors a fine-tuned branch must beat, trained on the same training split: frozen pretrained image features
+ logistic regression (UniversalFakeDetect's linear probe) and word 1-2-gram TF-IDF + logistic regression.

Each returns its metrics per split and, under ``scores``, its test ``labels`` and ``probs`` in dataset order for
the paired comparisons (:func:`dfmm.training.comparisons.recipe_comparisons`); :func:`recorded` is what
metrics.json keeps (no per-item scores).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch.utils.data import DataLoader

from dfmm.config import Config
from dfmm.data.images import ImageSet
from dfmm.data.text import TextSet
from dfmm.metrics import binary_metrics
from dfmm.models.branches import build_visual
from dfmm.models.scoring import predict
from dfmm.training.fusion import BranchOutputs
from dfmm.training.loaders import image_loader
from dfmm.training.loop import seed_all


def recorded(baseline: dict[str, Any] | None) -> dict[str, Any] | None:
    """A baseline's result without its per-item test ``scores``: what the report records."""
    return None if baseline is None else {k: v for k, v in baseline.items() if k != "scores"}


def branch_outputs(model: Any, loader: DataLoader, tta: bool = False, cache_dir: Any = None) -> BranchOutputs:
    """(features, logits, labels) of every readable item in dataset order, through the branch's ``scored`` (as
    ``classify_multimodal`` serves them: with ``tta`` the visual logits average the mirrored view). With
    ``cache_dir`` (the study's cache) what training already scored with these weights is read, not recomputed."""
    out = predict(model, loader, tta=tta, desc="features", features=True, cache_dir=cache_dir)
    return BranchOutputs(out["features"], out["logits"], out["labels"])


def visual_linear_probe(cfg: Config, splits: dict[str, ImageSet]) -> dict[str, Any]:
    """Frozen pretrained features + logistic regression (UniversalFakeDetect's recipe): is fine-tuning worth it?"""
    from sklearn.linear_model import LogisticRegressionCV

    t0 = time.perf_counter()
    seed_all(cfg.study.seed)
    model, info = build_visual(cfg)
    model = model.to(memory_format=torch.channels_last).eval()
    feats = {}
    for split in ("train", "val", "test"):
        loader = image_loader(splits[split], cfg, mean=info.mean, std=info.std, seed=cfg.study.seed)
        feats[split] = branch_outputs(model, loader)
    clf = LogisticRegressionCV(Cs=8, max_iter=2000, cv=3, scoring="roc_auc")
    clf.fit(feats["train"].features, feats["train"].labels)
    out = {"backbone": info.to_dict(), "train_size": len(splits["train"]), "seconds": 0.0}
    for split in ("val", "test"):
        out[split] = binary_metrics(feats[split].labels, clf.predict_proba(feats[split].features)[:, 1])
    test = feats["test"]
    out["scores"] = {"labels": test.labels, "probs": clf.predict_proba(test.features)[:, 1]}  # in dataset order
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def tfidf_baseline(splits: dict[str, TextSet], extra: dict[str, TextSet] | None = None) -> dict[str, Any]:
    """Word 1-2-gram TF-IDF + class-balanced logistic regression on the same training texts: the floor."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    t0 = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=200_000, sublinear_tf=True)
    x = vec.fit_transform(splits["train"].texts)
    clf = LogisticRegression(C=10.0, max_iter=3000, class_weight="balanced")
    clf.fit(x, splits["train"].labels)
    out: dict[str, Any] = {"train_size": len(splits["train"])}
    for name, ts in {"val": splits["val"], "test": splits["test"], **(extra or {})}.items():
        out[name] = binary_metrics(ts.labels, clf.predict_proba(vec.transform(ts.texts))[:, 1])
    out["scores"] = {
        "labels": splits["test"].labels,
        "probs": clf.predict_proba(vec.transform(splits["test"].texts))[:, 1],
    }
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out
