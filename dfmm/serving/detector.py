"""What a checkpoint or an export folder becomes for serving (``Detector``, ``load_model``), and the pieces every
classify call shares: the input tensors, the batched visual scores and the result dict (the out-of-distribution
judgement is ``dfmm.serving.judgement``). ``dfmm.serving.inference`` (images, texts, pairs) and
``dfmm.serving.video`` (clips) build on it.
"""

from __future__ import annotations

import atexit
import numbers
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfmm.data.faces import CropGeometry, FaceDetector
from dfmm.data.images import load_image
from dfmm.data.transforms import image_transform
from dfmm.errors import CheckpointError, DataError
from dfmm.models import FusionEnsemble, TextBranch, VisualBranch
from dfmm.models.branches import (
    fusion_from_meta,
    ngrams_from_meta,
    text_from_meta,
    tokenizer_from_meta,
    visual_from_meta,
)
from dfmm.models.checkpoints import load_checkpoint_parts, part_state
from dfmm.models.export import MANIFEST
from dfmm.models.metadata import NgramMeta, TextMeta, VisualMeta, text_section_type
from dfmm.models.ngrams import NgramTextModel
from dfmm.models.ood import OodReference, references_of, split_state
from dfmm.models.scoring import DecisionRule
from dfmm.serving.judgement import ood_judgements
from dfmm.serving.runtimes import check_runtime, load_export


@dataclass
class Detector:
    """Whatever a checkpoint held: one branch, or both branches and the fusion ensemble."""

    kind: str
    meta: dict[str, Any]
    path: str
    visual: VisualBranch | None = None
    text: TextBranch | NgramTextModel | None = None
    tokenizer: Any = None  # the transformer text branch's (an n-gram branch hashes its texts itself)
    fusion: FusionEnsemble | None = None
    ood: dict[str, OodReference] = field(default_factory=dict)  # per branch: the "unlike the training data" reference
    runtime: str = "torch"  # torch, or the runtime of an export folder (dfmm.serving.runtimes)
    _frozen: dict[str, Any] = field(default_factory=dict, repr=False)
    _frozen_tokenizer: Any = field(default=None, repr=False)
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
    def text_spec(self) -> TextMeta | NgramMeta:
        """The text branch's typed metadata (``dfmm.models.metadata``)."""
        if self.kind == "multimodal_ensemble":  # its text section is typed by what it names (``text_section_type``)
            typ = text_section_type(self.text_meta)
            return typ.from_meta(self.text_meta, self.path, section="text.", kind=self.kind)
        typ = NgramMeta if self.kind == "text_ngrams" else TextMeta
        return typ.from_meta(self.text_meta, self.path, kind=self.kind)

    @property
    def text_is_ngrams(self) -> bool:
        """Whether the text branch is the TF-IDF n-gram model (``dfmm.models.ngrams``): no tokens, no gradients."""
        return isinstance(self.text, NgramTextModel)

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
            net, _, tokenizer = frozen_branch(branch, self.backbone_spec(branch), timm_name)
            self._frozen[branch] = net
            if branch == "text":
                self._frozen_tokenizer = tokenizer
        return self._frozen[branch]

    def frozen_tokenizer(self) -> Any:
        """The tokenizer the frozen text backbone reads: the branch's own for a transformer branch (the same
        vocabulary), the pretrained backbone's for an n-gram branch."""
        if self.tokenizer is not None and not self.text_is_ngrams:
            return self.tokenizer
        self.frozen("text")
        return self._frozen_tokenizer

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
        elif kind == "text_ngrams":
            det.text = ngrams_from_meta(meta, state)
        else:
            det.visual = visual_from_meta(meta["visual"], part_state(state, "visual"))
            if text_section_type(meta["text"]) is NgramMeta:
                det.text = ngrams_from_meta(meta["text"], part_state(state, "text"))
            else:
                det.text, det.tokenizer = text_from_meta(meta["text"], part_state(state, "text"))
            det.fusion = fusion_from_meta(meta["fusion"], part_state(state, "fusion"))
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
    refs = references_of({"ood": ex.ood_meta}, split_state(ex.tensors)[1], path)
    det = Detector(ex.kind, ex.meta, str(path), ood=refs, runtime=runtime)
    det.visual, det.text = ex.branches.get("visual"), ex.branches.get("text")
    det._frozen.update(ex.frozen)
    det._face_nets.update(ex.face_nets)
    if det.text is not None and not det.text_is_ngrams:
        det.tokenizer = tokenizer_from_meta(det.text_meta)
    if ex.kind == "multimodal_ensemble":
        try:
            det.fusion = fusion_from_meta(ex.meta["fusion"], part_state(ex.tensors, "fusion"))
        except RuntimeError as e:
            raise CheckpointError(
                f"{path}: fusion tensors do not match the metadata ({str(e).splitlines()[0][:150]})"
            ) from None
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
