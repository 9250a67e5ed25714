"""Scoring shared by training and serving: batched prediction, logits to P(fake), and the one decision rule.

Serving (``dfmm.serving.inference``, ``dfmm.serving.evaluate``, ``dfmm score``) and training (``dfmm.training.loop``) both import this
module; it imports neither. ``DecisionRule`` is the only place a checkpoint's temperature and threshold turn a
logit into a probability and a label: every ``classify_*`` call, the GradCAM target, the video vote, the CLI, the
notebooks and ``dfmm evaluate`` go through it, so an input near the threshold gets the same label on every path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from dfmm.data.batches import in_background
from dfmm.data.labels import NAMES
from dfmm.models.score_cache import ScoreCache


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


@dataclass(frozen=True)
class DecisionRule:
    """P(fake) = sigmoid(logit / temperature); the item is called fake when P(fake) >= threshold.

    ``threshold`` is on the probability the rule reports (after temperature scaling); both come from the
    checkpoint's metadata (0.5 and 1.0 when training chose neither).
    """

    threshold: float = 0.5
    temperature: float = 1.0

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> DecisionRule:
        return cls(float(meta.get("threshold", 0.5)), float(meta.get("temperature", 1.0)))

    def probability(self, logits: Any) -> np.ndarray:
        return sigmoid(np.asarray(logits, dtype=float) / self.temperature)

    def is_fake(self, probs: Any) -> np.ndarray:
        return np.asarray(probs, dtype=float) >= self.threshold

    def label(self, prob: float) -> str:
        return NAMES[int(self.is_fake(prob))]

    def logit_is_fake(self, logit: float) -> bool:
        """Whether a raw logit is called fake (the GradCAM target): the same as ``is_fake(probability(logit))``."""
        return bool(self.is_fake(self.probability(logit)))

    def to_dict(self) -> dict[str, float]:
        return {"threshold": self.threshold, "temperature": self.temperature}


def logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


def _call(model: nn.Module, inputs: Any) -> torch.Tensor:
    return model(**inputs) if isinstance(inputs, dict) else model(inputs)


def _to(inputs: Any, device: torch.device) -> Any:
    if isinstance(inputs, dict):
        return {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
    return inputs.to(device, non_blocking=True)


def in_index_order(parts: dict[str, list[Any]]) -> dict[str, np.ndarray]:
    """Concatenate per-batch arrays (``index`` among them) and sort every one by dataset index.

    Loaders may deliver items out of order (length buckets, pair batches, several processes); results are always
    returned in dataset order so that row i is item i.
    """
    if not parts["index"]:
        return {k: np.zeros(0, dtype=int if k == "index" else float) for k in parts}
    cat = {k: torch.cat(v).numpy() if isinstance(v[0], torch.Tensor) else np.concatenate(v) for k, v in parts.items()}
    order = np.argsort(cat["index"], kind="stable")
    return {k: v[order] for k, v in cat.items()}


def _device(model: Any) -> torch.device:
    """Where the model's inputs go: its parameters' device (a runtime's branch names its own, the CPU)."""
    return model.device if not isinstance(model, nn.Module) else next(model.parameters()).device


def _forward(model: nn.Module, inputs: Any, tta: bool, features: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logits, features or None) of a batch on the CPU; with ``tta`` (images) the logits average those of the
    mirrored images. ``features`` goes through the branch's ``scored``, whose logits are the same numbers, and so
    does a branch served by another runtime (``dfmm.serving.runtimes``: not a module, its graph holds the mirror)."""
    if features or not isinstance(model, nn.Module):
        logits, f = model.scored(**inputs) if isinstance(inputs, dict) else model.scored(inputs, tta=tta)
        return logits.float().cpu(), (f.float().cpu() if features else None)
    out = _call(model, inputs).float()
    if tta and isinstance(inputs, torch.Tensor):
        out = 0.5 * (out + _call(model, torch.flip(inputs, dims=[3])).float())
    return out.cpu(), None


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: Any,
    accelerator: Any = None,
    tta: bool = False,
    desc: str = "predict",
    *,
    features: bool = False,
    cache_dir: Any = None,
    background: bool = False,
) -> dict[str, np.ndarray]:
    """Logits, labels and dataset indices for every readable item of ``loader`` (sorted by index); with
    ``features`` also each item's pooled features (``features``, through the branch's ``scored``).

    With ``cache_dir`` the inputs this model has already scored there are read from the score cache
    (``dfmm.models.score_cache``: keyed by the model's weights and the input tensor itself) and only the others go
    through the model; their scores are added to the cache. ``background``: the loader's batches are made in a
    worker thread while the model scores (``dfmm.data.batches.in_background``); the scores are the same.
    """
    model.eval()
    if not isinstance(model, nn.Module) and cache_dir is not None:
        raise ValueError("predict: the score cache keys PyTorch weights; score an exported branch without cache_dir")
    device = accelerator.device if accelerator is not None else _device(model)
    mixed = str(accelerator.mixed_precision) if accelerator is not None else "no"
    precision = f"{device.type} {'fp32' if mixed == 'no' else mixed}"  # part of the key: bf16 scores != fp32 ones
    cache = ScoreCache(cache_dir, model, tta, precision) if cache_dir is not None else None
    parts: dict[str, list[Any]] = {"logits": [], "labels": [], "index": []} | ({"features": []} if features else {})
    autocast = accelerator.autocast() if accelerator is not None else torch.autocast("cpu", enabled=False)

    def forward(inputs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        return _forward(model, _to(inputs, device), tta, features)

    items = len(loader.dataset) if hasattr(loader, "dataset") else None
    batches = in_background(loader) if background else loader
    with autocast, tqdm(total=items, desc=desc, leave=False, mininterval=10, disable=None, unit="item") as bar:
        for batch in batches:
            bar.update(len(batch["index"]) if batch["index"] is not None else len(batch.get("skipped") or ()))
            if batch["inputs"] is None:
                continue
            logits, feats = (
                forward(batch["inputs"]) if cache is None else cache.scored(batch["inputs"], forward, features)
            )
            parts["logits"].append(logits)
            if features:
                parts["features"].append(feats)
            parts["labels"].append(batch["labels"])
            parts["index"].append(batch["index"])
    if cache is not None:
        cache.save()
    return in_index_order(parts)
