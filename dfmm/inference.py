"""The inference API of the data card: ``load_model`` and ``classify_image/text/video/multimodal``.

Each classify call returns a plain dict: ``label`` ("real"/"fake"), ``probability_fake``, per-branch
``scores``, ``fusion_weights``, ``timings_ms`` and ``model`` (version and config hash). Arrays (GradCAM maps,
overlays) are the only values that are not JSON-serialisable.
"""

from __future__ import annotations

import atexit
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfmm.branches import text_from_meta, visual_from_meta
from dfmm.checkpoints import load_checkpoint
from dfmm.data.images import load_image
from dfmm.data.labels import NAMES
from dfmm.data.text import check_text
from dfmm.data.transforms import image_transform
from dfmm.errors import CheckpointError, DataError
from dfmm.models import FusionEnsemble, TextBranch, VisualBranch
from dfmm.train import sigmoid

AGGREGATIONS = ("mean", "max", "median", "vote", "confidence")


@dataclass
class Detector:
    """Whatever a checkpoint held: one branch, or both branches and the fusion ensemble."""

    kind: str
    meta: dict[str, Any]
    path: str
    visual: VisualBranch | None = None
    text: TextBranch | None = None
    tokenizer: Any = None
    fusion: FusionEnsemble | None = None
    _transform: Any = None
    _explainer: Any = field(default=None, repr=False)

    @property
    def visual_meta(self) -> dict[str, Any]:
        return self.meta.get("visual", self.meta) if self.kind == "multimodal_ensemble" else self.meta

    @property
    def text_meta(self) -> dict[str, Any]:
        return self.meta.get("text", self.meta) if self.kind == "multimodal_ensemble" else self.meta

    def threshold(self, branch: str) -> float:
        """The decision threshold on P(fake) that training chose on validation data (0.5 if none)."""
        meta = self.visual_meta if branch == "visual" else self.text_meta
        return float(meta.get("threshold", 0.5))

    def transform(self) -> Any:
        if self._transform is None:
            vm = self.visual_meta
            b = vm["backbone"]
            self._transform = image_transform(vm["image_size"], b["mean"], b["std"], "none")
        return self._transform

    def explainer(self) -> Any:
        if self._explainer is None:
            from dfmm.explain import GradCamExplainer

            self._explainer = GradCamExplainer(self.visual)
            atexit.register(self._explainer.close)
        return self._explainer

    def version(self) -> dict[str, Any]:
        import dfmm

        return {
            "dfmm": dfmm.__version__,
            "checkpoint": self.path,
            "kind": self.kind,
            "config_digest": self.meta.get("config_digest") or self.visual_meta.get("config_digest"),
        }


def load_model(path: str | Path) -> tuple[Detector, dict[str, Any]]:
    """``model, config = load_model('runs/NAME/multimodal_ensemble.pt')`` (a branch checkpoint works too)."""
    kind, state, meta = load_checkpoint(path)
    det = Detector(kind, meta, str(path))
    try:
        if kind == "visual_branch":
            det.visual = visual_from_meta(meta, state)
        elif kind == "text_branch":
            det.text, det.tokenizer = text_from_meta(meta, state)
        else:
            part = {
                p: {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(p + ".")}
                for p in ("visual", "text", "fusion")
            }
            det.visual = visual_from_meta(meta["visual"], part["visual"])
            det.text, det.tokenizer = text_from_meta(meta["text"], part["text"])
            f = meta["fusion"]
            det.fusion = FusionEnsemble(f["visual_dim"], f["text_dim"], f["attention"])
            det.fusion.load_state_dict(part["fusion"], strict=True)
            det.fusion.eval()
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(
            f"{path}: checkpoint does not match its own metadata ({str(e).splitlines()[0][:150]})"
        ) from None
    return det, meta.get("config", {})


def _need(model: Detector, branch: str) -> None:
    if getattr(model, branch) is None:
        raise CheckpointError(f"{model.path}: a {model.kind} checkpoint has no {branch} branch")


def _fusion_weights(model: Detector) -> dict[str, float] | None:
    if model.fusion is None:
        return None
    w = model.fusion.weights().detach().numpy()
    return {"visual": float(w[0]), "text": float(w[1])}


def _result(
    p: float, scores: dict[str, float], model: Detector, timings: dict[str, float], threshold: float = 0.5, **extra: Any
) -> dict[str, Any]:
    return {
        "label": NAMES[int(p >= threshold)],
        "probability_fake": float(p),
        "threshold": threshold,
        "scores": scores,
        "fusion_weights": _fusion_weights(model),
        "timings_ms": {k: round(v * 1000, 2) for k, v in timings.items()},
        "model": model.version(),
        **extra,
    }


def _image_tensor(model: Detector, images: list[Any]) -> torch.Tensor:
    t = model.transform()
    return torch.stack([t(load_image(im)) for im in images]).contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def _visual_forward(model: Detector, x: torch.Tensor, tta: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (flip-averaged when the recipe used test-time augmentation) and the unflipped features.

    The flipped copy rides in the same batch as the original (one forward pass, not two), kept channels_last.
    """
    n = len(x)
    if tta:
        x = torch.cat([x, torch.flip(x, dims=[3])]).contiguous(memory_format=torch.channels_last)
    feats = model.visual.features(x)
    logits = model.visual.head(feats).squeeze(1) * model.visual.log_scale.exp()
    if tta:
        logits = 0.5 * (logits[:n] + logits[n:])
    return logits, feats[:n]


def classify_image(model: Detector, image: str | Path | Any, return_gradcam: bool = False) -> dict[str, Any]:
    """Classify one face image (path, PIL image or HxWxC array); optionally with its GradCAM map and overlay."""
    _need(model, "visual")
    t0 = time.perf_counter()
    x = _image_tensor(model, [image])
    t1 = time.perf_counter()
    logits, _ = _visual_forward(model, x, model.visual_meta.get("tta", False))
    p = float(sigmoid(logits.numpy())[0])
    timings = {"preprocess": t1 - t0, "model": time.perf_counter() - t1}
    extra: dict[str, Any] = {}
    if return_gradcam:
        from dfmm.explain import denormalise, overlay

        t2 = time.perf_counter()
        maps, _ = model.explainer()(x, "fake" if float(logits[0]) >= 0 else "real")  # no second forward pass
        b = model.visual_meta["backbone"]
        rgb = denormalise(x, b["mean"], b["std"])[0]
        explains = "fake" if float(logits[0]) >= 0 else "real"
        extra["gradcam"] = {"heatmap": maps[0], "overlay": overlay(rgb, maps[0]), "explains": explains}
        timings["gradcam"] = time.perf_counter() - t2
    timings["total"] = time.perf_counter() - t0
    return _result(p, {"visual": p}, model, timings, model.threshold("visual"), **extra)


@torch.inference_mode()
def _text_forward(model: Detector, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, int]:
    max_len = model.text_meta.get("max_length", 512)
    enc = model.tokenizer(texts, truncation=True, max_length=max_len, padding=True, return_tensors="pt")
    feats = model.text.features(enc["input_ids"], enc["attention_mask"])
    return model.text.head(feats).squeeze(1), feats, int(enc["input_ids"].shape[1])


def classify_text(model: Detector, text: str, explain: bool = False) -> dict[str, Any]:
    """Classify one text as human or AI-generated; ``explain=True`` adds per-token attributions."""
    _need(model, "text")
    text = check_text(text, "text")
    t0 = time.perf_counter()
    logits, _, n_tokens = _text_forward(model, [text])
    p = float(sigmoid(logits.numpy())[0])
    timings = {"model": time.perf_counter() - t0}
    extra: dict[str, Any] = {"tokens": n_tokens}
    if explain:
        from dfmm.explain import token_attributions

        t1 = time.perf_counter()
        extra["attributions"] = token_attributions(
            model.text, model.tokenizer, text, model.text_meta.get("max_length", 512)
        )
        timings["explain"] = time.perf_counter() - t1
    timings["total"] = time.perf_counter() - t0
    return _result(p, {"text": p}, model, timings, model.threshold("text"), **extra)


def aggregate(probs: np.ndarray, aggregation: str, threshold: float = 0.5) -> float:
    """Per-frame P(fake) to one score: mean, max, median, vote (share of frames called fake) or confidence
    (mean weighted by each frame's distance from 0.5)."""
    if aggregation not in AGGREGATIONS:
        raise DataError(f"unknown aggregation '{aggregation}'; expected one of {', '.join(AGGREGATIONS)}")
    probs = np.asarray(probs, dtype=float)
    if aggregation == "mean":
        return float(probs.mean())
    if aggregation == "max":
        return float(probs.max())
    if aggregation == "median":
        return float(np.median(probs))
    if aggregation == "vote":  # share of frames called fake; compare it with 0.5
        return float((probs >= threshold).mean())
    w = np.abs(probs - threshold) + 1e-6
    return float((w * probs).sum() / w.sum())


def classify_video(
    model: Detector,
    video: str | Path,
    num_frames: int = 32,
    aggregation: str = "mean",
    face_crop: bool = False,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Per-frame scores of ``num_frames`` frames spread over the clip, aggregated into one."""
    from dfmm.data.video import FaceCropper, read_frames

    _need(model, "visual")
    if aggregation not in AGGREGATIONS:
        raise DataError(f"unknown aggregation '{aggregation}'; expected one of {', '.join(AGGREGATIONS)}")
    t0 = time.perf_counter()
    # without face crops every frame is squashed to image_size anyway: decode straight to twice that size
    clip = read_frames(video, num_frames, max_side=0 if face_crop else 2 * model.visual_meta["image_size"])
    t1 = time.perf_counter()
    faces = [True] * len(clip.frames)
    frames = clip.frames
    if face_crop:
        cropper = FaceCropper()
        cropped = [cropper(f) for f in frames]
        frames, faces = [c[0] for c in cropped], [c[1] for c in cropped]
    x = _image_tensor(model, frames)
    t2 = time.perf_counter()
    logits = torch.cat(
        [
            _visual_forward(model, x[s : s + batch_size], model.visual_meta.get("tta", False))[0]
            for s in range(0, len(x), batch_size)
        ]
    )
    probs = sigmoid(logits.numpy())
    threshold = model.threshold("visual")
    p = aggregate(probs, aggregation, threshold)
    t3 = time.perf_counter()
    per_frame = [
        {"time_s": t, "probability_fake": float(q), **({"face_found": f} if face_crop else {})}
        for t, q, f in zip(clip.times, probs, faces, strict=True)
    ]
    timings = {"decode": t1 - t0, "preprocess": t2 - t1, "model": t3 - t2, "total": t3 - t0}
    return _result(
        p, {"visual": p}, model, timings, 0.5 if aggregation == "vote" else threshold,
        aggregation=aggregation, frames=per_frame, video=clip.info,
        faces_found=int(sum(faces)) if face_crop else None,
    )  # fmt: skip


def classify_multimodal(
    model: Detector, image_path_or_pil: str | Path | Any | None = None, text: str | None = None
) -> dict[str, Any]:
    """Fuse an image and a text (either may be missing: the ensemble falls back to the present branch)."""
    if image_path_or_pil is None and text is None:
        raise DataError("classify_multimodal needs an image, a text, or both")
    t0 = time.perf_counter()
    scores: dict[str, float] = {}
    lv = lt = fv = ft = None
    if image_path_or_pil is not None:
        _need(model, "visual")
        lv, fv = _visual_forward(model, _image_tensor(model, [image_path_or_pil]), model.visual_meta.get("tta", False))
        scores["visual"] = float(sigmoid(lv.numpy())[0])
    if text is not None:
        _need(model, "text")
        lt, ft, _ = _text_forward(model, [check_text(text, "text")])
        scores["text"] = float(sigmoid(lt.numpy())[0])
    if model.fusion is not None:
        with torch.no_grad():
            fused = model.fusion(lv, lt, fv, ft)
        p = float(sigmoid(fused.numpy())[0])
        threshold = 0.5  # the fusion is trained on pairs with a plain BCE loss
        if len(scores) == 1:  # the ensemble fell back to the one branch present
            threshold = model.threshold(next(iter(scores)))
    else:  # a branch checkpoint: the one score there is
        p = statistics.fmean(scores.values())
        threshold = model.threshold(next(iter(scores)))
    return _result(p, scores, model, {"total": time.perf_counter() - t0}, threshold, modalities=sorted(scores))
