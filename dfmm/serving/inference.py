"""The inference API of the data card: ``load_model`` and ``classify_image/text/video/multimodal``.

The model and what every call shares live in ``dfmm.serving.detector``, clips in ``dfmm.serving.video``; this
module classifies images, texts and pairs and is where the API's names are imported from.

Each classify call returns a plain dict: ``label`` ("real"/"fake"), ``probability_fake``, per-branch
``scores``, ``fusion_weights``, ``timings_ms``, ``model`` (version and config hash), and whether the input is like
the training data (``dfmm.models.ood``): ``in_distribution`` (share of in-domain validation items at least as far
from the training items in frozen generic features; None when the checkpoint stores no reference), ``ood_distance``,
``uncertain`` (farther than 95% of them) and ``uncertain_reason``. ``label`` is given either way. Arrays (GradCAM
maps, overlays) are the only values that are not JSON-serialisable.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfmm.choices import AGGREGATIONS, FACE_CROPS
from dfmm.data.faces import crop_faces
from dfmm.data.images import load_image
from dfmm.data.text import check_text
from dfmm.errors import DataError
from dfmm.serving.detector import (  # the model and the pieces every call shares
    Detector,
    _image_tensor,
    _need,
    _result,
    _visual_forward,
    _visual_logits,
    check_model,
    forward_batch_size,
    load_model,
    tensor_scores,
    visual_scores,
)
from dfmm.serving.judgement import NO_REFERENCE, combined_judgement, ood_judgements
from dfmm.serving.video import aggregate, check_aggregation, classify_video, clip_judgement

__all__ = [  # the API, and the pieces notebooks, benchmarks and dfmm score import from here
    "AGGREGATIONS",
    "NO_REFERENCE",
    "Detector",
    "_image_tensor",
    "_visual_forward",
    "_visual_logits",
    "aggregate",
    "check_aggregation",
    "check_model",
    "classify_image",
    "classify_multimodal",
    "classify_text",
    "classify_video",
    "clip_judgement",
    "combined_judgement",
    "face_crop_image",
    "face_crop_images",
    "forward_batch_size",
    "load_model",
    "ood_judgements",
    "tensor_scores",
    "visual_scores",
]

FACE_CROP = FACE_CROPS  # the name older code imports
AUTO_CROP_FACTOR = 2.0  # face_crop="auto" crops a photo whose shorter side is at least this x the model's input


def face_crop_image(model: Detector, image: Any, face_crop: str = "auto") -> tuple[Any, dict[str, Any]]:
    """The image the visual branch should see, and what happened: ``face_crop`` auto | always | never.

    ``auto`` crops when a face is found and the photo's shorter side is at least ``AUTO_CROP_FACTOR`` x the
    model's input (a face crop already is the right input; a photo of a room is not); ``always`` crops whenever a
    face is found. The face is cut with the checkpoint's crop geometry, the largest face when there are several.
    """
    _face_crop_mode(face_crop)  # before the image is read
    return face_crop_images(model, [load_image(image)], face_crop)[0]


def _face_crop_mode(face_crop: Any) -> str:
    if not isinstance(face_crop, str) or face_crop not in FACE_CROPS:
        raise DataError(f"unknown face_crop {face_crop!r}; expected one of {', '.join(FACE_CROPS)}")
    return face_crop


def face_crop_images(model: Detector, images: list[Any], face_crop: str = "auto") -> list[tuple[Any, dict[str, Any]]]:
    """``face_crop_image`` of each loaded image (PIL), the photos to crop going through the face detector in one
    call (``crop_faces``: one MTCNN batch per image size), as a folder of photos from one camera does."""
    _face_crop_mode(face_crop)
    size = model.visual_spec.image_size
    wanted = [
        face_crop == "always" or (face_crop == "auto" and min(im.size) >= AUTO_CROP_FACTOR * size) for im in images
    ]
    out: list[tuple[Any, dict[str, Any]]] = [
        (
            im,
            {
                "cropped": False,
                "reason": f"face_crop={face_crop}" + (" (input near model size)" if face_crop == "auto" else ""),
            },
        )
        for im in images
    ]
    todo = [i for i, w in enumerate(wanted) if w]
    if not todo:
        return out
    found = crop_faces(model.face_detector(), [np.asarray(images[i]) for i in todo], model.crop_geometry())
    for i, faces in zip(todo, found, strict=True):
        if faces:
            out[i] = (faces[0].image, {"cropped": True, "face_found": True, **faces[0].to_dict()})
        else:
            out[i] = (images[i], {"cropped": False, "face_found": False, "reason": "no face found: whole image scored"})
    return out


def classify_image(
    model: Detector, image: str | Path | Any, return_gradcam: bool = False, face_crop: str = "auto"
) -> dict[str, Any]:
    """Classify one image (path, PIL image or HxWxC array); optionally with its GradCAM map and overlay.

    ``face_crop`` (auto | always | never, see ``face_crop_image``): the result's ``face`` says whether the image was
    cropped and where the face and the crop lie in the original. GradCAM is drawn on what the model saw (the crop);
    ``gradcam["crop_box"]`` locates it on the original.
    """
    model = check_model(model, "classify_image")
    _need(model, "visual")
    rule = model.rule("visual")
    t0 = time.perf_counter()
    seen, face = face_crop_image(model, image, face_crop)
    x = _image_tensor(model, [seen])
    t1 = time.perf_counter()
    logits, _ = _visual_forward(model, x, model.visual_spec.tta)
    logit = float(logits[0])
    p = float(rule.probability(logit))
    judgement = ood_judgements(model, "visual", x)[0]
    timings = {"preprocess": t1 - t0, "model": time.perf_counter() - t1}
    extra: dict[str, Any] = {"face": face}
    if return_gradcam:
        from dfmm.serving.explain import denormalise, overlay

        t2 = time.perf_counter()
        explains = "fake" if rule.logit_is_fake(logit) else "real"  # the label the image gets, not logit >= 0
        maps, _ = model.explainer()(x, explains)  # no second forward pass
        rgb = denormalise(x, model.visual_spec.mean, model.visual_spec.std)[0]
        extra["gradcam"] = {
            "heatmap": maps[0],
            "overlay": overlay(rgb, maps[0]),
            "explains": explains,
            "crop_box": face.get("crop_box"),
        }
        timings["gradcam"] = time.perf_counter() - t2
    timings["total"] = time.perf_counter() - t0
    return _result(p, {"visual": p}, model, timings, rule, judgement, **extra)


@torch.inference_mode()
def _text_forward(model: Detector, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, int, list[dict[str, Any]]]:
    """(logits, features, padded length, out-of-distribution judgements) of a batch of texts (an n-gram branch:
    the most whitespace-separated words of a text instead of the padded length)."""
    if model.text_is_ngrams:
        logits, feats = model.text.scored(texts)
        return logits, feats, max(len(t.split()) for t in texts), ood_judgements(model, "text", list(texts))
    max_len = model.text_spec.max_length
    enc = model.tokenizer(texts, truncation=True, max_length=max_len, padding=True, return_tensors="pt")
    logits, feats = model.text.scored(enc["input_ids"], enc["attention_mask"])
    return logits, feats, int(enc["input_ids"].shape[1]), ood_judgements(model, "text", enc)


def classify_text(model: Detector, text: str, explain: bool = False) -> dict[str, Any]:
    """Classify one text as human or AI-generated; ``explain=True`` adds per-token attributions."""
    model = check_model(model, "classify_text")
    _need(model, "text")
    text = check_text(text, "text")
    rule = model.rule("text")
    t0 = time.perf_counter()
    logits, _, n_tokens, judged = _text_forward(model, [text])
    p = float(rule.probability(logits.numpy())[0])
    timings = {"model": time.perf_counter() - t0}
    extra: dict[str, Any] = {"tokens": n_tokens}
    if explain:
        from dfmm.serving.explain import token_attributions

        t1 = time.perf_counter()
        if model.text_is_ngrams:  # a linear model: its logit splits exactly among the words, no gradients
            extra["attributions"] = model.text.word_contributions(text)
        else:
            model.needs_gradients("token attributions")
            extra["attributions"] = token_attributions(model.text, model.tokenizer, text, model.text_spec.max_length)
        timings["explain"] = time.perf_counter() - t1
    timings["total"] = time.perf_counter() - t0
    return _result(p, {"text": p}, model, timings, rule, judged[0], **extra)


def classify_multimodal(
    model: Detector, image_path_or_pil: str | Path | Any | None = None, text: str | None = None, face_crop: str = "auto"
) -> dict[str, Any]:
    """Fuse an image and a text (either may be missing: the ensemble falls back to the present branch)."""
    model = check_model(model, "classify_multimodal")
    if image_path_or_pil is None and text is None:
        raise DataError("classify_multimodal needs an image, a text, or both")
    t0 = time.perf_counter()
    scores: dict[str, float] = {}
    lv = lt = fv = ft = None
    extra: dict[str, Any] = {}
    judged: dict[str, dict[str, Any]] = {}
    if image_path_or_pil is not None:
        _need(model, "visual")
        seen, extra["face"] = face_crop_image(model, image_path_or_pil, face_crop)
        x = _image_tensor(model, [seen])
        lv, fv = _visual_forward(model, x, model.visual_spec.tta)
        judged["visual"] = ood_judgements(model, "visual", x)[0]
        scores["visual"] = float(model.rule("visual").probability(lv.numpy())[0])
    if text is not None:
        _need(model, "text")
        lt, ft, _, (judged["text"],) = _text_forward(model, [check_text(text, "text")])
        scores["text"] = float(model.rule("text").probability(lt.numpy())[0])
    if model.fusion is not None and len(scores) == 2:
        with torch.no_grad():
            fused = model.fusion(lv, lt, fv, ft)
        rule = model.rule("fusion")
        p = float(rule.probability(fused.numpy())[0])
    else:  # one modality (the ensemble falls back to that branch), or a branch checkpoint: its own score and rule
        branch = next(iter(scores))
        rule = model.rule(branch)
        p = scores[branch]
    timings = {"total": time.perf_counter() - t0}
    return _result(p, scores, model, timings, rule, combined_judgement(judged), modalities=sorted(scores), **extra)
