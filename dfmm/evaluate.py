"""Scoring a checkpoint on a labelled folder or file: what ``dfmm evaluate`` prints.

Uses the same layouts as the data layer (``real/`` + ``fake/`` folders, JSONL with ``text`` + ``label``) and the
same batched code as training, so the numbers match the notebooks'.
"""

from __future__ import annotations

from typing import Any

from dfmm.data.batches import ImageDataset, LengthBucketSampler, ShuffledBatchSampler, TokenizedTexts, collate_images
from dfmm.data.images import load_images
from dfmm.data.text import load_texts
from dfmm.data.video import list_videos
from dfmm.errors import CheckpointError, DataError
from dfmm.metrics import binary_metrics
from dfmm.train import predict, sigmoid


def evaluate_images(model: Any, source: str, batch_size: int = 32) -> dict[str, Any]:
    from torch.utils.data import DataLoader

    if model.visual is None:
        raise CheckpointError(f"{model.path}: a {model.kind} checkpoint cannot score images")
    images = load_images(source)
    loader = DataLoader(
        ImageDataset(images, model.transform()),
        batch_sampler=ShuffledBatchSampler(len(images), batch_size, 0, shuffle=False),
        collate_fn=collate_images,
    )
    p = predict(model.visual, loader, tta=model.visual_meta.get("tta", False))
    out = binary_metrics(p["labels"], sigmoid(p["logits"]))
    out["skipped_unreadable"] = len(images) - len(p["labels"])
    return {"data": source, "model": model.path, **out}


def evaluate_texts(model: Any, source: str, batch_size: int = 32) -> dict[str, Any]:
    from torch.utils.data import DataLoader

    if model.text is None:
        raise CheckpointError(f"{model.path}: a {model.kind} checkpoint cannot score texts")
    texts = load_texts(source)
    tokens = TokenizedTexts(texts, model.tokenizer, model.text_meta.get("max_length", 512))
    loader = DataLoader(
        tokens,
        batch_sampler=LengthBucketSampler(tokens.lengths, batch_size, 0, shuffle=False),
        collate_fn=tokens.collate,
    )
    p = predict(model.text, loader)
    return {
        "data": source,
        "model": model.path,
        **binary_metrics(p["labels"], sigmoid(p["logits"])),
        "truncated": tokens.truncated(),
    }


def evaluate_videos(model: Any, source: str, num_frames: int = 32, aggregation: str = "mean") -> dict[str, Any]:
    from dfmm.inference import classify_video

    clips = [(p, lab) for p, lab in list_videos(source) if lab is not None]
    if not clips:
        raise DataError(f"{source}: no labelled clips (expected real/ and fake/ folders)")
    scores = [classify_video(model, p, num_frames, aggregation)["probability_fake"] for p, _ in clips]
    out = binary_metrics([lab for _, lab in clips], scores)
    return {"data": source, "model": model.path, **out, "num_frames": num_frames, "aggregation": aggregation}
