"""``classify_video``: frames spread over a clip, the largest face of each cut like the training crops, scored and
aggregated into one clip score; the frames decode in a worker thread while the faces of those already decoded are
found and scored.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from dfmm.choices import AGGREGATIONS
from dfmm.data.faces import Face, crop_faces
from dfmm.errors import DataError
from dfmm.models.scoring import DecisionRule
from dfmm.serving.detector import (
    Detector,
    _count,
    _image_tensor,
    _need,
    _result,
    check_model,
    tensor_scores,
)
from dfmm.serving.judgement import NO_REFERENCE


def check_aggregation(aggregation: str) -> None:
    """One line naming the allowed rules, before any frame is decoded."""
    if not isinstance(aggregation, str) or aggregation not in AGGREGATIONS:
        raise DataError(f"unknown aggregation {aggregation!r}; expected one of {', '.join(AGGREGATIONS)}")


def aggregate(probs: np.ndarray, aggregation: str, rule: DecisionRule | None = None) -> tuple[float, str]:
    """Per-frame P(fake) to one clip score and label: mean, max, median, vote or confidence.

    Every rule but ``vote`` gives a P(fake) that the decision rule labels. ``vote`` calls each frame with the
    decision rule and gives the share of frames called fake; the clip is fake when at least half are.
    ``confidence`` weights each frame by its distance from the threshold.
    """
    rule = rule or DecisionRule()
    check_aggregation(aggregation)
    probs = np.asarray(probs, dtype=float)
    if aggregation == "vote":
        share = float(rule.is_fake(probs).mean())
        return share, "fake" if share >= 0.5 else "real"
    if aggregation == "mean":
        p = float(probs.mean())
    elif aggregation == "max":
        p = float(probs.max())
    elif aggregation == "median":
        p = float(np.median(probs))
    else:
        w = np.abs(probs - rule.threshold) + 1e-6
        p = float((w * probs).sum() / w.sum())
    return p, rule.label(p)


class _Stopped(BaseException):
    """Raised in the decoding thread when the scoring thread has failed: nothing is left to decode for."""


CLIP_CHUNK = 16  # frames per detection and scoring step while the next ones decode (8 and 32 were no faster)


class _ClipScorer:
    """A clip's frames found, cropped and scored a chunk at a time (``add``), in order; ``finish`` scores whole
    frames when no frame had a face. Keeps the busy time of each stage (``detect``, ``score``)."""

    def __init__(self, model: Detector, face_crop: bool, all_faces: bool, batch_size: int | None) -> None:
        self.model, self.face_crop, self.all_faces, self.batch_size = model, face_crop, all_faces, batch_size
        self.reset()

    def reset(self) -> None:
        self.frames = 0
        self.logits: list[np.ndarray] = []
        self.judged: list[dict[str, Any]] = []
        self.owner: list[int] = []
        self.records: list[dict[str, Any]] = []
        self.seconds = {"detect": 0.0, "score": 0.0}

    def _score(self, images: list[Any], owner: list[int]) -> None:
        t = time.perf_counter()
        if images:
            logits, judged = tensor_scores(self.model, _image_tensor(self.model, images), self.batch_size)
            self.logits.append(logits)
            self.judged += judged
            self.owner += owner
        self.seconds["score"] += time.perf_counter() - t

    def add(self, frames: list[np.ndarray]) -> None:
        first, self.frames = self.frames, self.frames + len(frames)
        if not self.face_crop:
            self.records += [{} for _ in frames]
            self._score(list(frames), list(range(first, self.frames)))
            return
        t = time.perf_counter()
        model = self.model
        found: list[list[Face]] = crop_faces(model.face_detector(), frames, model.crop_geometry(), self.all_faces)
        self.records += [{"face_found": bool(f), "faces": [x.to_dict() for x in f]} for f in found]
        self.seconds["detect"] += time.perf_counter() - t
        images = [face.image for faces in found for face in faces]
        self._score(images, [first + i for i, faces in enumerate(found) for _ in faces])

    def finish(self, frames: list[np.ndarray]) -> None:
        if self.face_crop and not self.owner:  # no face in any frame: the whole frames are scored instead
            self._score(list(frames), list(range(len(frames))))


def _decode_and_score(video: str | Path, num_frames: int, max_side: int, scorer: _ClipScorer) -> tuple[Any, float]:
    """Decode the clip in a worker thread while ``scorer`` finds and scores the faces of the frames already
    decoded, ``CLIP_CHUNK`` at a time (``read_frames(on_frame=...)``). When the clip had to be read another way
    than seeking, the frames streamed are dropped and the returned ones scored. Returns the clip and the decoding
    thread's seconds."""
    import queue
    import threading

    from dfmm.data.video import read_frames

    frames: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}
    stop = threading.Event()

    def hand_over(frame: np.ndarray) -> None:
        if stop.is_set():  # the caller failed: stop decoding (a BaseException passes read_frames' error handling)
            raise _Stopped
        frames.put(frame)

    def decode() -> None:
        t = time.perf_counter()
        try:
            outcome["clip"] = read_frames(video, num_frames, max_side=max_side, on_frame=hand_over)
        except BaseException as e:  # noqa: BLE001 - raised below, in the caller's thread
            outcome["error"] = e
        outcome["seconds"] = time.perf_counter() - t
        frames.put(None)

    worker = threading.Thread(target=decode, name="dfmm-decode", daemon=True)
    worker.start()
    chunk: list[np.ndarray] = []
    try:
        while (frame := frames.get()) is not None:
            chunk.append(frame)
            if len(chunk) == CLIP_CHUNK:
                scorer.add(chunk)
                chunk = []
    finally:
        stop.set()
        worker.join()
    if "error" in outcome:
        raise outcome["error"]
    clip = outcome["clip"]
    if clip.info.get("read") == "seek":
        if chunk:
            scorer.add(chunk)
    else:  # read forward after seeking failed: other frames than the ones streamed
        scorer.reset()
        for s in range(0, len(clip.frames), CLIP_CHUNK):
            scorer.add(clip.frames[s : s + CLIP_CHUNK])
    scorer.finish(clip.frames)
    return clip, outcome["seconds"]


def classify_video(
    model: Detector,
    video: str | Path,
    num_frames: int = 32,
    aggregation: str = "mean",
    face_crop: bool = True,
    all_faces: bool = False,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Per-frame scores of ``num_frames`` frames spread over the clip, aggregated into one.

    ``face_crop`` (default) scores the largest face of each frame, cut like the training crops (``all_faces``:
    every face, the frame taking its most fake one, as in the DFDC winners' code). Frames without a face are
    skipped; a clip with no face anywhere is scored on whole frames and says ``no_face: true``. Frames are
    decoded in a worker thread while the faces of the frames already decoded are found and scored;
    ``timings_ms`` gives each stage's busy time (``decode``, ``detect``, ``score``; they overlap) and ``total``.
    """
    model = check_model(model, "classify_video")
    _need(model, "visual")
    check_aggregation(aggregation)
    _count(num_frames, "num_frames")
    _count(batch_size, "batch_size", optional=True)
    if not isinstance(video, (str, os.PathLike)):
        raise DataError(f"video: expected the path of a clip (str or Path), got {type(video).__name__}")
    rule = model.rule("visual")
    t0 = time.perf_counter()
    scorer = _ClipScorer(model, face_crop, all_faces, batch_size)
    # whole frames are squashed to image_size: decode straight to twice that; faces need more pixels
    max_side = 1280 if face_crop else 2 * model.visual_spec.image_size
    clip, decode_s = _decode_and_score(video, num_frames, max_side, scorer)
    item_probs = rule.probability(np.concatenate(scorer.logits) if scorer.logits else np.zeros(0))
    frame_probs = np.full(len(clip.frames), np.nan)
    for i, q in zip(scorer.owner, item_probs, strict=True):
        frame_probs[i] = q if np.isnan(frame_probs[i]) else max(frame_probs[i], q)
    scored = ~np.isnan(frame_probs)
    p, label = aggregate(frame_probs[scored], aggregation, rule)
    records = scorer.records
    per_frame = [
        {"time_s": t, "probability_fake": None if np.isnan(q) else float(q), **r}
        for t, q, r in zip(clip.times, frame_probs, records, strict=True)
    ]
    no_face = face_crop and not any(r["face_found"] for r in records)
    timings = {"decode": decode_s, **scorer.seconds, "total": time.perf_counter() - t0}
    result = _result(
        p,
        {"visual": p},
        model,
        timings,
        rule,
        clip_judgement(model, scorer.judged),
        aggregation=aggregation,
        frames=per_frame,
        video=clip.info,
        face_crop=face_crop,
        frames_with_face=int(sum(r["face_found"] for r in records)) if face_crop else None,
        no_face=no_face,
    )
    result["label"] = label  # vote labels by majority of frames; the others as the rule labels p
    if aggregation == "vote":  # probability_fake is then the share of frames called fake (at the rule's threshold)
        result["threshold"], result["frame_threshold"] = 0.5, rule.threshold
    return result


def clip_judgement(model: Detector, judged: list[dict[str, Any]]) -> dict[str, Any]:
    """A clip's judgement from its frames': the median frame distance, judged like one image's."""
    if not judged or judged[0]["ood_distance"] is None:
        return dict(NO_REFERENCE)
    return model.ood["visual"].judge(np.median([j["ood_distance"] for j in judged]))[0]
