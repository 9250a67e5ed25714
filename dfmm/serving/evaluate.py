"""Scoring a checkpoint on a labelled folder or file: what ``dfmm evaluate`` prints.

Uses the same layouts as the data layer (``real/`` + ``fake/`` folders, JSONL with ``text`` + ``label``), the
same batched code as training and the checkpoint's decision rule (``dfmm.models.scoring.DecisionRule``), so the numbers
match the notebooks' and the labels match ``classify_*``. Notebook 06 scores through ``score_sets`` (which calls
``score_images`` and ``score_texts``) and ``by_aggregation``. An unreadable clip is recorded with its reason and the
evaluation goes on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dfmm.data.batches import ImageDataset, LengthBucketSampler, ShuffledBatchSampler, TokenizedTexts, collate_images
from dfmm.data.images import ImageSet, load_images
from dfmm.data.text import TextSet, load_texts
from dfmm.data.video import labelled_clips
from dfmm.errors import CheckpointError, failure
from dfmm.metrics import binary_metrics, metrics_with_ci
from dfmm.models.scoring import predict


def _image_loader(model: Any, images: ImageSet, batch_size: int) -> Any:
    from torch.utils.data import DataLoader

    if model.visual is None:
        raise CheckpointError(f"{model.path}: a {model.kind} checkpoint cannot score images")
    return DataLoader(
        ImageDataset(images, model.transform()),
        batch_sampler=ShuffledBatchSampler(len(images), batch_size, 0, shuffle=False),
        collate_fn=collate_images,
    )


def _text_loader(
    model: Any, texts: TextSet, batch_size: int, cache_dir: Any, tokenizer: Any = None
) -> tuple[Any, TokenizedTexts]:
    """Batches of ``texts`` tokenised by ``tokenizer`` (default: the text branch's)."""
    from torch.utils.data import DataLoader

    if model.text is None:
        raise CheckpointError(f"{model.path}: a {model.kind} checkpoint cannot score texts")
    tokenizer = model.tokenizer if tokenizer is None else tokenizer
    tokens = TokenizedTexts(texts, tokenizer, model.text_spec.max_length, cache_dir)
    loader = DataLoader(
        tokens,
        batch_sampler=LengthBucketSampler(tokens.lengths, batch_size, 0, shuffle=False),
        collate_fn=tokens.collate,
    )
    return loader, tokens


def score_branch(
    model: Any,
    branch: str,
    data: ImageSet | TextSet,
    batch_size: int = 32,
    cache_dir: Any = None,
    *,
    features: bool = False,
) -> dict[str, Any]:
    """The one way a study, ``dfmm evaluate`` and ``dfmm score`` score a labelled set with a loaded model: each
    readable item through the branch's ``scored`` (the visual one with its mirrored view when the recipe uses it),
    batched, in dataset order. Returns ``logits``, ``probs`` (P(fake) under the checkpoint's decision rule, as
    ``classify_*`` give it), ``labels``, ``index`` (dataset positions of the scored rows), with ``features`` each
    item's pooled features, and for texts ``truncated``. With ``cache_dir`` (a study's ``runs/NAME/cache``) items
    this model has scored before are read from the score cache (``dfmm.models.score_cache``)."""
    if branch == "text" and getattr(model, "text_is_ngrams", False):
        return _ngram_scores(model, data, features)
    if branch == "visual":
        loader, tokens, net, tta = _image_loader(model, data, batch_size), None, model.visual, model.visual_spec.tta
    else:
        loader, tokens = _text_loader(model, data, batch_size, cache_dir)
        net, tta = model.text, False
    what = "images" if branch == "visual" else "texts"
    p = predict(net, loader, tta=tta, cache_dir=cache_dir, desc=f"score {what}", features=features, background=True)
    out = {**p, "probs": model.rule(branch).probability(p["logits"])}
    return out | ({"truncated": tokens.truncated()} if tokens is not None else {})


NGRAM_CHUNK = 1000  # texts hashed at once by an n-gram branch (a few MB of sparse counts)


def _ngram_scores(model: Any, texts: TextSet, features: bool) -> dict[str, Any]:
    """``score_branch`` for an n-gram text branch: hashed and scored in chunks of texts, no score cache (hashing
    is cheaper than a cache lookup), nothing truncated (every n-gram of a text counts)."""
    from tqdm import tqdm

    parts = []
    for a in tqdm(range(0, len(texts), NGRAM_CHUNK), desc="score texts", leave=False, mininterval=10, disable=None):
        parts.append(model.text.logits([texts.text(i) for i in range(a, min(a + NGRAM_CHUNK, len(texts)))]))
    logits = np.concatenate(parts) if parts else np.zeros(0)
    out = {
        "logits": logits,
        "labels": np.asarray(texts.labels),
        "index": np.arange(len(texts)),
        "probs": model.rule("text").probability(logits),
        "truncated": 0,
    }
    return out | ({"features": logits[:, None]} if features else {})


def score_images(model: Any, images: ImageSet, batch_size: int = 32, cache_dir: Any = None) -> dict[str, np.ndarray]:
    """:func:`score_branch` on images: ``logits``, ``probs``, ``labels``, ``index``."""
    return score_branch(model, "visual", images, batch_size, cache_dir)


def frozen_features(
    model: Any, branch: str, data: ImageSet | TextSet, batch_size: int = 32, cache_dir: Any = None
) -> dict[str, np.ndarray]:
    """Features of ``data`` from the branch's backbone before fine-tuning (``frozen_branch``, the features
    ``dfmm.models.ood`` measures distances on), read through the checkpoint's own preprocessing and the same
    loaders and score cache as ``score_images`` / ``score_texts``: ``features``, ``labels``, ``index``."""
    frozen = model.frozen(branch)
    if branch == "visual":
        loader = _image_loader(model, data, batch_size)
    else:
        loader = _text_loader(model, data, batch_size, cache_dir, model.frozen_tokenizer())[0]
    p = predict(frozen, loader, features=True, cache_dir=cache_dir, desc="frozen features", background=True)
    return {"features": p["features"], "labels": p["labels"], "index": p["index"]}


def score_texts(model: Any, texts: TextSet, batch_size: int = 32, cache_dir: Any = None) -> dict[str, Any]:
    """:func:`score_branch` on texts: ``logits``, ``probs``, ``labels``, ``index`` and how many were cut
    (``truncated``); ``cache_dir`` also keeps the token ids (``TokenizedTexts``)."""
    return score_branch(model, "text", texts, batch_size, cache_dir)


def score_sets(
    model: Any,
    *,
    images: dict[str, ImageSet] | None = None,
    texts: dict[str, TextSet] | None = None,
    image_batch_size: int = 32,
    text_batch_size: int = 32,
    cache_dir: Any = None,
) -> dict[str, dict[str, Any]]:
    """Each named image and text set scored (``score_images`` / ``score_texts``) and measured at its branch's
    decision threshold, with 95% bootstrap intervals that resample whole groups (a real face with its fakes, a
    human text with its rewrites): per name ``labels``, ``probs``, ``index``, ``groups`` of the scored rows and
    ``metrics`` (``metrics_with_ci``). Images first, then texts, each in the order given."""
    out: dict[str, dict[str, Any]] = {}
    for name, imageset in (images or {}).items():
        out[name] = _with_metrics(model, "visual", imageset, score_images(model, imageset, image_batch_size, cache_dir))
    for name, textset in (texts or {}).items():
        out[name] = _with_metrics(model, "text", textset, score_texts(model, textset, text_batch_size, cache_dir))
    return out


def _with_metrics(model: Any, branch: str, data: ImageSet | TextSet, scores: dict[str, Any]) -> dict[str, Any]:
    groups = [data.groups[i] for i in scores["index"]]
    metrics = metrics_with_ci(scores["labels"], scores["probs"], model.threshold(branch), groups=groups)
    return {**scores, "groups": groups, "metrics": metrics}


def _evaluate(model: Any, branch: str, source: str, data: ImageSet | TextSet | None, batch_size: int) -> dict[str, Any]:
    """What ``dfmm evaluate`` prints for one branch's labelled ``source`` (``data``: it, when already loaded): the
    metrics at the checkpoint's threshold and the share of items unlike the training data. A checkpoint without that
    branch is refused before anything is read."""
    if getattr(model, branch) is None:
        what = "images" if branch == "visual" else "texts"
        raise CheckpointError(f"{model.path}: a {model.kind} checkpoint cannot score {what}")
    if data is None:
        data = load_images(source) if branch == "visual" else load_texts(source)
    s = score_branch(model, branch, data, batch_size)
    out = {"data": source, "model": model.path, **binary_metrics(s["labels"], s["probs"], model.threshold(branch))}
    if branch == "visual":
        out["skipped_unreadable"] = len(data) - len(s["labels"])
        return out | {"in_distribution": flag_summary(model, "visual", data, s)}
    return out | {"truncated": s["truncated"], "in_distribution": flag_summary(model, "text", data, s, batch_size)}


def evaluate_images(model: Any, source: str, batch_size: int = 32, images: ImageSet | None = None) -> dict[str, Any]:
    """Metrics of the images under ``source`` (``images``: that source, when the caller loaded it first)."""
    return _evaluate(model, "visual", source, images, batch_size)


def evaluate_texts(model: Any, source: str, batch_size: int = 32, texts: TextSet | None = None) -> dict[str, Any]:
    """Metrics of the texts of ``source`` (``texts``: that source, when the caller loaded it first)."""
    return _evaluate(model, "text", source, texts, batch_size)


def flag_summary(
    model: Any, branch: str, data: ImageSet | TextSet, scores: dict[str, Any], batch_size: int = 32
) -> dict[str, Any] | None:
    """How many items the checkpoint's reference (``dfmm.models.ood``) calls unlike its training data, and the
    accuracy of the labels on all items and on the items it keeps; None without a reference."""
    from dfmm.models.ood import selective

    if branch not in model.ood:
        return None
    ref = model.ood[branch]
    feats = frozen_features(model, branch, data, batch_size)
    assert np.array_equal(feats["index"], scores["index"])
    kept = ref.distances(feats["features"]) <= ref.threshold
    called = model.rule(branch).is_fake(scores["probs"])
    out = selective(scores["labels"], called, kept)
    return {"uncertain": out["n"] - out["kept"], **out, "threshold": ref.threshold}


def score_videos(
    model: Any,
    source: str,
    num_frames: int = 32,
    aggregation: str = "mean",
    face_crop: bool = True,
    clips: list[tuple[Any, int]] | None = None,
) -> list[dict[str, Any]]:
    """One row per labelled clip: its score, label, faces found and timings, or the reason it could not be read
    (any failure of one clip, a library's too: ``dfmm.errors.failure``)."""
    from dfmm.serving.inference import classify_video

    rows = []
    for path, lab in labelled_clips(source) if clips is None else clips:
        row: dict[str, Any] = {"clip": path.name, "file": str(path), "label": lab}
        try:
            r = classify_video(model, path, num_frames, aggregation, face_crop=face_crop)
        except Exception as e:  # noqa: BLE001 - one clip's failure is its error row; the evaluation goes on
            rows.append({**row, "error": failure(e)})
            continue
        probs = [f["probability_fake"] for f in r["frames"] if f["probability_fake"] is not None]
        rows.append(
            {
                **row,
                "probability_fake": r["probability_fake"],
                "predicted": r["label"],
                "frames_with_face": r["frames_with_face"],
                "in_distribution": r["in_distribution"],
                "uncertain": r["uncertain"],
                "frames": len(r["frames"]),
                "frame_min": min(probs),
                "frame_max": max(probs),
                "read": r["video"].get("read"),
                "seconds": r["timings_ms"]["total"] / 1000,
                "per_frame": r["frames"],
            }
        )
    return rows


def clip_threshold(model: Any, aggregation: str) -> float:
    """The threshold a clip score is compared with: the share of frames called fake for ``vote`` (0.5, a
    majority), otherwise the visual branch's decision threshold on the aggregated P(fake)."""
    return 0.5 if aggregation == "vote" else model.threshold("visual")


def by_aggregation(model: Any, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Clip-level metrics of every aggregation rule on the same per-frame scores of the readable clips
    (``score_videos`` rows), each at its ``clip_threshold``."""
    from dfmm.serving.inference import AGGREGATIONS, aggregate

    readable = [r for r in rows if "error" not in r]
    out = {}
    for name in AGGREGATIONS:
        scores = [
            aggregate(
                [f["probability_fake"] for f in r["per_frame"] if f["probability_fake"] is not None],
                name,
                model.rule("visual"),
            )[0]
            for r in readable
        ]
        out[name] = binary_metrics([r["label"] for r in readable], scores, clip_threshold(model, name))
    return out


def video_metrics(rows: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """Clip-level metrics over the clips that could be read, with the unreadable ones listed."""
    ok = [r for r in rows if "error" not in r]
    out = binary_metrics([r["label"] for r in ok], [r["probability_fake"] for r in ok], threshold)
    out["unreadable"] = [{"clip": r["file"], "error": r["error"]} for r in rows if "error" in r]
    return out


def evaluate_videos(
    model: Any,
    source: str,
    num_frames: int = 32,
    aggregation: str = "mean",
    face_crop: bool = True,
    clips: list[tuple[Any, int]] | None = None,
) -> dict[str, Any]:
    """Clip-level metrics of the labelled clips under ``source`` (``clips``: its ``labelled_clips``, when the
    caller listed them first)."""
    from dfmm.serving.inference import check_aggregation

    check_aggregation(aggregation)  # before any clip: one bad option, not eleven unreadable clips
    rows = score_videos(model, source, num_frames, aggregation, face_crop, clips)
    threshold = clip_threshold(model, aggregation)
    clips = [{k: v for k, v in r.items() if k != "per_frame"} for r in rows]
    return {
        "data": source,
        "model": model.path,
        **video_metrics(rows, threshold),
        "num_frames": num_frames,
        "aggregation": aggregation,
        "face_crop": face_crop,
        "clips": clips,
    }
