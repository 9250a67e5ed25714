"""The inference API of the data card: ``load_model`` and ``classify_image/text/video/multimodal``.

Each classify call returns a plain dict: ``label`` ("real"/"fake"), ``probability_fake``, per-branch
``scores``, ``fusion_weights``, ``timings_ms``, ``model`` (version and config hash), and whether the input is like
the training data (``dfmm.models.ood``): ``in_distribution`` (share of in-domain validation items at least as far
from the training items in frozen generic features; None when the checkpoint stores no reference), ``ood_distance``,
``uncertain`` (farther than 95% of them) and ``uncertain_reason``. ``label`` is given either way. Arrays (GradCAM
maps, overlays) are the only values that are not JSON-serialisable.
"""

from __future__ import annotations

import atexit
import numbers
import os
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfmm.choices import AGGREGATIONS, FACE_CROPS
from dfmm.data.faces import CropGeometry, Face, FaceDetector, crop_faces
from dfmm.data.images import load_image
from dfmm.data.text import check_text
from dfmm.data.transforms import image_transform
from dfmm.errors import CheckpointError, DataError, DfmmError
from dfmm.models import FusionEnsemble, TextBranch, VisualBranch
from dfmm.models.branches import text_from_meta, tokenizer_from_meta, visual_from_meta
from dfmm.models.checkpoints import load_checkpoint_parts
from dfmm.models.export import MANIFEST
from dfmm.models.metadata import TextMeta, VisualMeta
from dfmm.models.ood import OodReference, references_of
from dfmm.models.scoring import DecisionRule
from dfmm.serving.runtimes import check_runtime, load_export

FACE_CROP = FACE_CROPS  # the name older code imports
AUTO_CROP_FACTOR = 2.0  # face_crop="auto" crops a photo whose shorter side is at least this x the model's input


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
    ood: dict[str, OodReference] = field(default_factory=dict)  # per branch: the "unlike the training data" reference
    runtime: str = "torch"  # torch, or the runtime of an export folder (dfmm.serving.runtimes)
    _frozen: dict[str, Any] = field(default_factory=dict, repr=False)
    _transform: Any = None
    _explainer: Any = field(default=None, repr=False)
    _faces: FaceDetector | None = field(default=None, repr=False)
    _face_nets: dict[str, Any] = field(default_factory=dict, repr=False)  # MTCNN's stages under the runtime

    @property
    def visual_meta(self) -> dict[str, Any]:
        return self.meta.get("visual", self.meta) if self.kind == "multimodal_ensemble" else self.meta

    @property
    def text_meta(self) -> dict[str, Any]:
        return self.meta.get("text", self.meta) if self.kind == "multimodal_ensemble" else self.meta

    @cached_property
    def visual_spec(self) -> VisualMeta:
        """The visual branch's typed metadata (``dfmm.models.metadata``: every default declared there, once)."""
        section = "visual." if self.kind == "multimodal_ensemble" else ""
        return VisualMeta.from_meta(self.visual_meta, self.path, section=section, kind=self.kind)

    @cached_property
    def text_spec(self) -> TextMeta:
        """The text branch's typed metadata (``dfmm.models.metadata``)."""
        section = "text." if self.kind == "multimodal_ensemble" else ""
        return TextMeta.from_meta(self.text_meta, self.path, section=section, kind=self.kind)

    def rule(self, branch: str) -> DecisionRule:
        """The branch's decision rule: its temperature and the threshold training chose on validation data."""
        if branch == "fusion":  # the fusion head is trained on pairs with a plain BCE loss: no threshold of its own
            return DecisionRule()
        return DecisionRule.from_meta(self.visual_meta if branch == "visual" else self.text_meta)

    def threshold(self, branch: str) -> float:
        """The decision threshold on P(fake) (0.5 if training chose none)."""
        return self.rule(branch).threshold

    def crop_geometry(self) -> CropGeometry:
        """How the training crops placed their faces (measured by the study; DFDC defaults for older checkpoints)."""
        return self.visual_spec.face_crop

    def face_detector(self) -> FaceDetector:
        if self._faces is None:
            self._faces = FaceDetector()
            if self._face_nets:
                self._faces.use_nets(self._face_nets)
        return self._faces

    def transform(self) -> Any:
        if self._transform is None:
            spec = self.visual_spec
            self._transform = image_transform(spec.image_size, spec.mean, spec.std, "none")
        return self._transform

    def needs_gradients(self, what: str) -> None:
        """One line when ``what`` (GradCAM, token attributions) is asked of a model served without PyTorch."""
        if self.runtime != "torch":
            raise CheckpointError(
                f"{what} needs gradients, which only PyTorch computes: load the checkpoint with --runtime torch "
                f"(this model runs under {self.runtime})"
            )

    def explainer(self) -> Any:
        self.needs_gradients("GradCAM")
        if self._explainer is None:
            from dfmm.serving.explain import GradCamExplainer

            self._explainer = GradCamExplainer(self.visual, self.rule("visual"), tta=self.visual_spec.tta)
            atexit.register(self._explainer.close)
        return self._explainer

    def backbone_spec(self, branch: str) -> str:
        """The spec of the pretrained backbone the branch was fine-tuned from: its reference's, else its metadata's."""
        if branch in self.ood:
            return self.ood[branch].backbone
        info = self.visual_meta.get("backbone") if branch == "visual" else self.text_meta.get("encoder")
        if not isinstance(info, dict) or not info.get("spec"):
            raise CheckpointError(f"{self.path}: the metadata does not name the {branch} branch's pretrained backbone")
        return str(info["spec"])

    def frozen(self, branch: str) -> Any:
        """The branch's backbone before fine-tuning (``frozen_branch``), built when first needed."""
        if branch not in self._frozen:
            from dfmm.models.branches import frozen_branch

            timm_name = self.visual_spec.timm_name if branch == "visual" else ""
            self._frozen[branch] = frozen_branch(branch, self.backbone_spec(branch), timm_name)[0]
        return self._frozen[branch]

    def digest(self) -> str:
        """The first 16 hex digits of the SHA-256 of the checkpoint file (of an export folder: its manifest)."""
        from dfmm.files import file_digest

        return file_digest(Path(self.path) / MANIFEST if self.runtime != "torch" else self.path)[:16]

    def version(self) -> dict[str, Any]:
        import dfmm

        return {
            "dfmm": dfmm.__version__,
            "checkpoint": self.path,
            "kind": self.kind,
            "runtime": self.runtime,
            "config_digest": self.meta.get("config_digest") or self.visual_meta.get("config_digest"),
        }


def load_model(path: str | Path, runtime: str = "torch") -> tuple[Detector, dict[str, Any]]:
    """``model, config = load_model('runs/NAME/multimodal_ensemble.pt')`` (a branch checkpoint works too).

    ``runtime``: ``torch`` (a checkpoint file), or ``openvino`` / ``onnxruntime`` (an export folder that
    ``dfmm export`` wrote; ``dfmm.serving.runtimes``): the same results within 1e-4, faster on a CPU.
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        got = "an empty string" if isinstance(path, str) else type(path).__name__
        raise CheckpointError(f"load_model: expected the path of a checkpoint file (str or Path), got {got}")
    check_runtime(runtime)
    if runtime != "torch" or Path(path).is_dir():
        return _load_export(path, runtime)
    kind, state, meta, refs = load_checkpoint_parts(path)
    det = Detector(kind, meta, str(path), ood=refs)
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
    except CheckpointError as e:  # a checkpoint this dfmm cannot rebuild, saying why
        raise CheckpointError(f"{path}: {e}") from None
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(
            f"{path}: checkpoint does not match its own metadata ({str(e).splitlines()[0][:150]})"
        ) from None
    return det, meta.get("config", {})


def _load_export(path: str | Path, runtime: str) -> tuple[Detector, dict[str, Any]]:
    """A ``Detector`` over an export folder's graphs (``dfmm.serving.runtimes.load_export``)."""
    if runtime == "torch":
        raise CheckpointError(
            f"{path}: is a folder; an export folder runs under --runtime openvino or onnxruntime, a checkpoint file "
            "under torch"
        )
    if not Path(path).is_dir():
        raise CheckpointError(
            f"{path}: --runtime {runtime} runs an export folder; write one first: dfmm export --model {path} --out DIR"
        )
    ex = load_export(path, runtime)
    refs = references_of({"ood": ex.ood_meta}, {k: v for k, v in ex.tensors.items() if k.startswith("ood.")}, path)
    det = Detector(ex.kind, ex.meta, str(path), ood=refs, runtime=runtime)
    det.visual, det.text = ex.branches.get("visual"), ex.branches.get("text")
    det._frozen.update(ex.frozen)
    det._face_nets.update(ex.face_nets)
    if det.text is not None:
        det.tokenizer = tokenizer_from_meta(det.text_meta)
    if ex.kind == "multimodal_ensemble":
        f = ex.meta["fusion"]
        det.fusion = FusionEnsemble(f["visual_dim"], f["text_dim"], f["attention"])
        fusion = {k.split(".", 1)[1]: v for k, v in ex.tensors.items() if k.startswith("fusion.")}
        try:
            det.fusion.load_state_dict(fusion, strict=True)
        except RuntimeError as e:
            raise CheckpointError(
                f"{path}: fusion tensors do not match the metadata ({str(e).splitlines()[0][:150]})"
            ) from None
        det.fusion.eval()
    return det, ex.meta.get("config", {})


def check_model(model: Any, call: str) -> Detector:
    """``model`` as ``load_model`` returns it, or one ``CheckpointError`` saying what was passed instead."""
    if isinstance(model, Detector):
        return model
    if isinstance(model, tuple) and model and isinstance(model[0], Detector):
        raise CheckpointError(
            f"{call}: got the (model, config) pair that load_model returns; unpack it: model, config = load_model(path)"
        )
    if isinstance(model, (str, os.PathLike)):
        raise CheckpointError(
            f"{call}: model is the path {str(model)[:100]!r}, not a model; load it first: model, config = load_model(path)"
        )
    raise CheckpointError(f"{call}: expected the model that load_model returns, got {type(model).__name__}")


def _count(value: Any, name: str, optional: bool = False) -> None:
    """An integer >= 1 (``None`` too when ``optional``), or one ``DataError`` naming the argument."""
    if optional and value is None:
        return
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise DataError(f"{name} must be an integer >= 1, got {value!r} ({type(value).__name__})")


def _need(model: Detector, branch: str) -> None:
    if getattr(model, branch) is None:
        raise CheckpointError(f"{model.path}: a {model.kind} checkpoint has no {branch} branch")


def _fusion_weights(model: Detector) -> dict[str, float] | None:
    if model.fusion is None:
        return None
    w = model.fusion.weights().detach().numpy()
    return {"visual": float(w[0]), "text": float(w[1])}


NO_REFERENCE = {
    "in_distribution": None,
    "ood_distance": None,
    "uncertain": None,
    "uncertain_reason": "not measured: the checkpoint stores no reference set of training items",
}


@torch.inference_mode()
def ood_judgements(model: Detector, branch: str, inputs: Any) -> list[dict[str, Any]]:
    """Per input (an image batch tensor, or a tokenizer's encoding): ``in_distribution``, ``ood_distance``,
    ``uncertain`` and ``uncertain_reason`` from the checkpoint's reference (``NO_REFERENCE`` without one)."""
    n = len(inputs) if isinstance(inputs, torch.Tensor) else len(inputs["input_ids"])
    if branch not in model.ood:
        return [dict(NO_REFERENCE) for _ in range(n)]
    ref = model.ood[branch]
    try:  # the pretrained backbone comes from its package or the Hub: without it the label stands, unjudged
        frozen = model.frozen(branch)
    except (DfmmError, ImportError, OSError) as e:
        reason = f"not measured: the pretrained backbone {ref.backbone} is not available here ({str(e)[:120]})"
        return [dict(NO_REFERENCE, uncertain_reason=reason) for _ in range(n)]
    if isinstance(inputs, torch.Tensor):
        features = frozen.features(inputs)
    else:
        features = frozen.features(inputs["input_ids"], inputs["attention_mask"])
    if features.shape[1] != ref.reference.shape[1]:
        raise CheckpointError(
            f"{model.path}: ood.{branch}.reference holds {ref.reference.shape[1]}-wide features, the backbone "
            f"{ref.backbone} gives {features.shape[1]}"
        )
    return ref.judge(ref.distances(features.float().numpy()))


def combined_judgement(judgements: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One judgement for several branches' inputs: the least typical branch decides (lowest ``in_distribution``);
    uncertain when any branch is, each reason named by its branch."""
    measured = {b: j for b, j in judgements.items() if j["in_distribution"] is not None}
    if not measured:
        return dict(NO_REFERENCE)
    worst = min(measured.values(), key=lambda j: j["in_distribution"])
    reasons = [f"{b}: {j['uncertain_reason']}" for b, j in measured.items() if j["uncertain"]]
    return worst | {"uncertain": bool(reasons), "uncertain_reason": "; ".join(reasons) or None}


def _result(
    p: float,
    scores: dict[str, float],
    model: Detector,
    timings: dict[str, float],
    rule: DecisionRule,
    judgement: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    return {
        "label": rule.label(p),
        "probability_fake": float(p),
        "threshold": rule.threshold,
        **judgement,
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
    """Logits (flip-averaged when the recipe used test-time augmentation) and the unflipped features, computed as
    training, ``dfmm evaluate`` and the fusion compute them (``VisualBranch.scored``)."""
    return model.visual.scored(x, tta=tta)


def forward_batch_size(model: Detector) -> int:
    """Images per forward pass: 8 on a CPU (measured on 2 cores: 26 images/s with the flip view at 8, 16 at 64,
    the activations of small batches stay in cache; benchmarks/serving.py measures the runtimes), 64 on an
    accelerator."""
    if model.runtime != "torch":
        return 8
    return 8 if next(model.visual.parameters()).device.type == "cpu" else 64


def _visual_logits(model: Detector, images: list[Any], batch_size: int | None = None) -> np.ndarray:
    """Batched logits of images (paths, PIL images or arrays), in order."""
    return visual_scores(model, images, batch_size, judge=False)[0]


def visual_scores(
    model: Detector, images: list[Any], batch_size: int | None = None, judge: bool = True
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Batched logits of images (paths, PIL images or arrays), in order, and (``judge``) each one's
    out-of-distribution judgement (``ood_judgements``) from the same input tensors."""
    batch_size = batch_size or forward_batch_size(model)
    parts = [_image_tensor(model, images[s : s + batch_size]) for s in range(0, len(images), batch_size)]
    return tensor_scores(model, torch.cat(parts) if parts else None, batch_size, judge)


def tensor_scores(
    model: Detector, x: torch.Tensor | None, batch_size: int | None = None, judge: bool = True
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """``visual_scores`` of images already made into the model's input tensor (``_image_tensor``), in forward
    batches of ``forward_batch_size``; ``None`` for no images."""
    if x is None or not len(x):
        return np.zeros(0), []
    batch_size = batch_size or forward_batch_size(model)
    tta = model.visual_spec.tta
    parts, judged = [], []
    for s in range(0, len(x), batch_size):
        chunk = x[s : s + batch_size]
        parts.append(_visual_forward(model, chunk, tta)[0])
        if judge:
            judged += ood_judgements(model, "visual", chunk)
    return torch.cat(parts).numpy(), judged


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
    """(logits, features, padded length, out-of-distribution judgements) of a batch of texts."""
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

        model.needs_gradients("token attributions")
        t1 = time.perf_counter()
        extra["attributions"] = token_attributions(model.text, model.tokenizer, text, model.text_spec.max_length)
        timings["explain"] = time.perf_counter() - t1
    timings["total"] = time.perf_counter() - t0
    return _result(p, {"text": p}, model, timings, rule, judged[0], **extra)


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

    def decode() -> None:
        t = time.perf_counter()
        try:
            outcome["clip"] = read_frames(video, num_frames, max_side=max_side, on_frame=frames.put)
        except BaseException as e:  # noqa: BLE001 - raised below, in the caller's thread
            outcome["error"] = e
        outcome["seconds"] = time.perf_counter() - t
        frames.put(None)

    worker = threading.Thread(target=decode, name="dfmm-decode", daemon=True)
    worker.start()
    chunk: list[np.ndarray] = []
    while (frame := frames.get()) is not None:
        chunk.append(frame)
        if len(chunk) == CLIP_CHUNK:
            scorer.add(chunk)
            chunk = []
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
