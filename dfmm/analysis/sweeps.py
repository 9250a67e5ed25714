"""The robustness sweep: a model scored on a clean test subset and on each perturbed copy of it, paired.

Each perturbed split goes through the study's own scoring (``dfmm.serving.evaluate.score_images`` /
``score_texts``, the checkpoint's decision rule and TTA); the AUC change against the clean split is a paired
bootstrap on the same items, resampled by group (``dfmm.metrics.paired_bootstrap``): ``difference`` = AUC clean -
AUC perturbed, so a positive change is a drop. The perturbations themselves are ``dfmm.analysis.perturbations``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from dfmm.analysis.perturbations import IMAGE_SWEEP, TEXT_SWEEP, perturb_images, perturb_texts
from dfmm.data.images import ImageSet, image_format, load_image
from dfmm.data.labels import FAKE
from dfmm.data.splits import subset_by_group
from dfmm.data.text import TextSet
from dfmm.errors import DataError
from dfmm.metrics import metrics_with_ci, paired_bootstrap
from dfmm.serving.evaluate import score_images, score_texts


def _subset(items: ImageSet | TextSet, max_items: int | None, seed: int) -> Any:
    """At most ``max_items`` items, whole groups, half real and half fake where the split allows (the study's
    own balanced, seeded subset: ``dfmm.data.splits.subset_by_group``)."""
    if not max_items:
        return items
    index = subset_by_group(np.arange(len(items)), items.labels, items.groups, max_items, seed, balanced=True)
    return items.subset(index)


def readable_subset(images: ImageSet, max_items: int | None, seed: int) -> tuple[ImageSet, list[Any], int]:
    """The seeded subset (``_subset``) without its unreadable images, the others decoded once, and how many were
    left out: an unreadable image is left out of every perturbation (and every model) alike."""
    items = _subset(images, max_items, seed)
    decoded, keep = [], []
    for i, src in enumerate(items.sources):
        try:
            decoded.append(load_image(src, items.names[i]))
            keep.append(i)
        except DataError:
            continue
    return items.subset(keep), decoded, len(items) - len(keep)


def _compare(
    name: str, clean: dict[str, Any], scored: dict[str, Any], threshold: float, groups: Any, seed: int, n: int
) -> dict[str, Any]:
    if not np.array_equal(clean["index"], scored["index"]):
        raise DataError(f"perturbation {name}: scored items differ from the clean split's")
    return {
        "metrics": metrics_with_ci(scored["labels"], scored["probs"], threshold, groups, n, seed),
        "auc_change": paired_bootstrap(
            clean["labels"], clean["probs"], scored["probs"], "auc", groups, n, seed, threshold, threshold
        ),
    }


def _groups(items: ImageSet | TextSet, scored: dict[str, Any], use: bool) -> list[str] | None:
    return [items.groups[i] for i in scored["index"]] if use else None


def sweep_images(
    model: Any,
    images: ImageSet,
    perturbations: tuple[str, ...] | list[str] = IMAGE_SWEEP,
    *,
    seed: int = 0,
    groups: bool = True,
    max_items: int | None = None,
    n_resamples: int = 1000,
    batch_size: int = 32,
    cache_dir: Any = None,
) -> dict[str, Any]:
    """The visual branch on the clean subset and on each perturbed copy of it (module docstring)."""
    items, decoded, skipped = readable_subset(images, max_items, seed)
    formats = _formats(items)
    threshold = model.threshold("visual")
    clean = score_images(model, items, batch_size, cache_dir)
    g = _groups(items, clean, groups)
    out: dict[str, Any] = {
        "branch": "visual",
        "n": len(items),
        "skipped_unreadable": skipped,
        "formats": formats,
        "seed": seed,
        "clean": metrics_with_ci(clean["labels"], clean["probs"], threshold, g, n_resamples, seed),
        "perturbations": {},
    }
    for name in perturbations:
        scored = score_images(model, perturb_images(items, name, seed, decoded), batch_size, cache_dir)
        out["perturbations"][name] = _compare(name, clean, scored, threshold, g, seed, n_resamples)
    return out


def sweep_texts(
    model: Any,
    texts: TextSet,
    perturbations: tuple[str, ...] | list[str] = TEXT_SWEEP,
    *,
    seed: int = 0,
    groups: bool = True,
    max_items: int | None = None,
    n_resamples: int = 1000,
    batch_size: int = 32,
    cache_dir: Any = None,
) -> dict[str, Any]:
    """The text branch on the clean subset and on each perturbed copy of it (module docstring).

    A perturbed text whose token ids equal its clean text's (a ``truncate_256`` of a short text; case and spacing
    for an uncased tokenizer that normalises whitespace) is the same model input, so it keeps its clean score;
    only the others are scored again (``rescored``; ``changed``: texts whose characters changed). An n-gram text
    branch is scored again on every text whose characters changed, and ``truncate_N`` cuts at N tokens of its
    reference's frozen encoder.
    """
    items = _subset(texts, max_items, seed)
    threshold = model.threshold("text")
    clean = score_texts(model, items, batch_size, cache_dir)
    if not np.array_equal(clean["index"], np.arange(len(items))):
        raise DataError(f"{items.origin}: the text scorer left items out; expected every text scored")
    ngrams = getattr(model, "text_is_ngrams", False)  # an n-gram branch reads every character: compare the texts
    tokenizer = model.frozen_tokenizer() if ngrams else model.tokenizer  # truncate_N counts the encoder's tokens
    inputs = (lambda ts: list(ts)) if ngrams else (lambda ts: _token_ids(tokenizer, ts))
    clean_ids = inputs(items.texts)
    g = _groups(items, clean, groups)
    out: dict[str, Any] = {
        "branch": "text",
        "n": len(items),
        "seed": seed,
        "clean": metrics_with_ci(clean["labels"], clean["probs"], threshold, g, n_resamples, seed),
        "perturbations": {},
    }
    for name in perturbations:
        perturbed = perturb_texts(items, name, seed, tokenizer)
        ids = inputs(perturbed.texts)
        redo = np.array([i for i, (a, b) in enumerate(zip(clean_ids, ids, strict=True)) if a != b], dtype=int)
        scored = {**clean, "probs": clean["probs"].copy()}
        if len(redo):
            s = score_texts(model, perturbed.subset(redo), batch_size, cache_dir)
            scored["probs"][redo[s["index"]]] = s["probs"]
        row = _compare(name, clean, scored, threshold, g, seed, n_resamples)
        row["changed"] = sum(a != b for a, b in zip(items.texts, perturbed.texts, strict=True))
        row["rescored"] = len(redo)
        out["perturbations"][name] = row
    return out


def _token_ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Every text's full token ids (no truncation), as ``TokenizedTexts`` computes them before cutting."""
    return tokenizer(texts, truncation=False, add_special_tokens=True, verbose=False)["input_ids"]


def robustness_sweep(
    model: Any,
    images: ImageSet | None = None,
    texts: TextSet | None = None,
    seed: int = 0,
    groups: bool = True,
    *,
    max_items: int | None = None,
    image_perturbations: tuple[str, ...] | list[str] = IMAGE_SWEEP,
    text_perturbations: tuple[str, ...] | list[str] = TEXT_SWEEP,
    n_resamples: int = 1000,
    batch_size: int = 32,
    text_batch_size: int | None = None,
    cache_dir: Any = None,
) -> dict[str, Any]:
    """``{"visual": ..., "text": ...}`` for the sets given, each ``{"clean": metrics_with_ci, "perturbations":
    {name: {"metrics": metrics_with_ci, "auc_change": paired_bootstrap}}, "n", "seed", ...}``.

    Metrics use the checkpoint's threshold (``model.threshold(branch)``) and, with ``groups``, resample whole
    groups; ``auc_change["difference"]`` = AUC clean - AUC perturbed (positive: the perturbation costs AUC),
    with its paired interval on the same resamples. ``max_items`` caps each set at a balanced, seeded subset
    (whole groups); the clean row is scored on that same subset. ``cache_dir``: a study's cache, where the score
    cache (``dfmm.models.score_cache``) already holds the clean rows when the test split was scored before.
    """
    options = {
        "seed": seed,
        "groups": groups,
        "max_items": max_items,
        "n_resamples": n_resamples,
        "cache_dir": cache_dir,
    }
    out: dict[str, Any] = {}
    if images is not None:
        out["visual"] = sweep_images(model, images, image_perturbations, batch_size=batch_size, **options)
    if texts is not None:
        out["text"] = sweep_texts(model, texts, text_perturbations, batch_size=text_batch_size or batch_size, **options)
    return out


def _formats(images: ImageSet) -> dict[str, dict[str, int]]:
    """The file format of each class's images, from the headers (a real-JPEG / fake-PNG split invites a shortcut)."""
    out: dict[str, Counter[str]] = {"real": Counter(), "fake": Counter()}
    for src, lab in zip(images.sources, images.labels, strict=True):
        try:
            fmt = image_format(src)[0]
        except Exception:  # noqa: BLE001 -- an in-memory image or an unreadable header is counted, not fatal
            fmt = "unknown"
        out["fake" if lab == FAKE else "real"][fmt] += 1
    return {k: dict(sorted(v.items())) for k, v in out.items()}
