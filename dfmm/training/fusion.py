"""Notebook 04's fusion: held-out branch outputs joined into image-text pairs, the fusion variants fitted on part
of the validation pairs and one chosen on the rest, and the ensemble checkpoint saved.

There is no public paired image+text deepfake set, so pairs are built from the two modalities' held-out splits
(:func:`pair_outputs`); :func:`fit_fusion_variants` fits each variant on 80% of the validation pairs and measures it
on the other 20%, which alone choose the variant to ship (:meth:`FusionFits.chosen`); test pairs only score.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from dfmm.config import Config
from dfmm.metrics import binary_metrics
from dfmm.models.checkpoints import save_checkpoint


class BranchOutputs(NamedTuple):
    """A branch's outputs on a split, row i = item i: what the fusion is fitted on."""

    features: np.ndarray
    logits: np.ndarray
    labels: np.ndarray

    @classmethod
    def of(cls, scores: dict[str, np.ndarray]) -> BranchOutputs:
        """From a scoring function's named outputs (``features``, ``logits``, ``labels``)."""
        return cls(scores["features"], scores["logits"], scores["labels"])


def make_pairs(n_images: int, n_texts: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pair held-out images with held-out texts of the same split, each item used once, in a seeded order."""
    rng = np.random.default_rng(seed)
    n = min(n_images, n_texts)
    return rng.permutation(n_images)[:n], rng.permutation(n_texts)[:n]


@dataclass
class PairScores:
    """Image-text pairs of held-out items: each part's branch features, logits and label, and the pair's label."""

    visual_features: np.ndarray
    visual_logits: np.ndarray
    visual_labels: np.ndarray
    text_features: np.ndarray
    text_logits: np.ndarray
    text_labels: np.ndarray
    labels: np.ndarray  # the pair's: fake (1) or real (0) under the pair rule

    def __len__(self) -> int:
        return len(self.labels)

    def rows(self, index: np.ndarray) -> PairScores:
        """The pairs at ``index``."""
        return PairScores(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})

    def mix(self) -> dict[str, int]:
        """How many pairs join each kind of image with each kind of text."""
        return pair_mix(self.visual_labels, self.text_labels)

    def fusion_inputs(self) -> tuple[torch.Tensor, ...]:
        """(visual logits, text logits, visual features, text features): the fusion module's arguments."""
        arrays = (self.visual_logits, self.text_logits, self.visual_features, self.text_features)
        return tuple(torch.as_tensor(a, dtype=torch.float32) for a in arrays)


def pair_outputs(visual: BranchOutputs, text: BranchOutputs, seed: int, rule: str) -> PairScores:
    """Held-out outputs of images and texts (``branch_outputs``) joined into pairs by ``make_pairs``.

    The splits may differ in size: each item is used at most once, ``min(n_images, n_texts)`` pairs.
    """
    ii, ti = make_pairs(len(visual.labels), len(text.labels), seed)
    return PairScores(
        visual_features=visual.features[ii],
        visual_logits=visual.logits[ii],
        visual_labels=visual.labels[ii],
        text_features=text.features[ti],
        text_logits=text.logits[ti],
        text_labels=text.labels[ti],
        labels=pair_labels(visual.labels[ii], text.labels[ti], rule),
    )


def split_pairs(pairs: PairScores, fraction: float, seed: int) -> tuple[PairScores, PairScores]:
    """(fit, select): the pairs split at random, ``fraction`` of them (at least one) held out to choose among
    fitted fusion variants, so that the test pairs score the chosen one and choose nothing."""
    n = len(pairs)
    order = np.random.default_rng(seed).permutation(n)
    k = min(n - 1, max(1, round(n * fraction)))
    return pairs.rows(order[k:]), pairs.rows(order[:k])


def fused_probs(fusion: Any, pairs: PairScores) -> np.ndarray:
    """P(fake) of each pair from a fitted fusion module."""
    with torch.no_grad():
        return torch.sigmoid(fusion(*pairs.fusion_inputs())).numpy()


def pair_labels(image_labels: np.ndarray, text_labels: np.ndarray, rule: str) -> np.ndarray:
    """``either``: a pair is fake if either part is fake; ``both``: only if both are."""
    a, b = image_labels.astype(bool), text_labels.astype(bool)
    return (a | b if rule == "either" else a & b).astype(np.float32)


def pair_mix(image_labels: np.ndarray, text_labels: np.ndarray) -> dict[str, int]:
    a, b = image_labels.astype(int), text_labels.astype(int)
    names = ("real", "fake")
    return {f"image_{names[i]}_text_{names[j]}": int(((a == i) & (b == j)).sum()) for i in (0, 1) for j in (0, 1)}


def train_fusion(fusion: Any, pairs: PairScores, *, epochs: int, lr: float, seed: int) -> list[dict[str, float]]:
    """Full-batch Adam on the fusion parameters only (branches frozen) for ``epochs`` steps, keeping the last;
    returns the loss and the weights after each step.

    Not :func:`dfmm.training.loop.fit`: that loop keeps the epoch with the best validation AUC, and these pairs have
    no validation split of their own (the held-out ones choose between fusion variants).
    """
    torch.manual_seed(seed)
    vl, tl, vf, tf = pairs.fusion_inputs()
    y = torch.as_tensor(pairs.labels, dtype=torch.float32)
    opt = torch.optim.Adam(fusion.parameters(), lr=lr, weight_decay=1e-4)
    history = []
    for epoch in range(1, epochs + 1):
        fusion.train()
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(fusion(vl, tl, vf, tf), y)
        loss.backward()
        opt.step()
        w = fusion.weights().detach().numpy()
        history.append({"epoch": epoch, "loss": float(loss.detach()), "w_visual": float(w[0]), "w_text": float(w[1])})
    fusion.eval()
    return history


def save_ensemble(
    path: Path, visual_ckpt: Path, text_ckpt: Path, fusion: Any, fusion_meta: dict[str, Any], cfg: Config
) -> Path:
    """``multimodal_ensemble.pt``: both branches (the text one a transformer or an n-gram branch) and the fusion
    module, tensors only."""
    from dfmm.models.checkpoints import attach_references, load_checkpoint_parts

    _, vs, vm, vrefs = load_checkpoint_parts(visual_ckpt, ("visual_branch",))
    _, ts, tm, trefs = load_checkpoint_parts(text_ckpt, ("text_branch", "text_ngrams"))
    state = {f"visual.{k}": v for k, v in vs.items()}
    state |= {f"text.{k}": v for k, v in ts.items()}
    state |= {f"fusion.{k}": v for k, v in fusion.state_dict().items()}
    meta = {"visual": vm, "text": tm, "fusion": fusion_meta, "config": cfg.to_dict(), "config_digest": cfg.digest()}
    save_checkpoint(path, "multimodal_ensemble", state, meta)
    refs = {b: r for b, r in (("visual", vrefs.get("visual")), ("text", trefs.get("text"))) if r is not None}
    return attach_references(path, refs) if refs else path


@dataclass
class FusionFits:
    """Every fusion variant fitted on the same pairs (``fit``) and measured on the held-out ones (``held``)."""

    fit: PairScores
    held: PairScores
    attention: dict[str, bool]  # variant name -> uses cross-modal attention
    modules: dict[str, Any] = field(default_factory=dict)
    histories: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    selection: dict[str, dict[str, Any]] = field(default_factory=dict)  # metrics on the held-out pairs

    @property
    def chosen(self) -> str:
        """The variant with the best AUC on the held-out validation pairs (never the test pairs); first on a tie."""
        return max(self.attention, key=lambda n: self.selection[n]["auc"])

    def weights(self) -> dict[str, dict[str, float]]:
        """Each variant's learned (visual, text) weights after its last step."""
        return {n: {"visual": h[-1]["w_visual"], "text": h[-1]["w_text"]} for n, h in self.histories.items()}

    def meta(self, pair_rule: str) -> dict[str, Any]:
        """The chosen variant's checkpoint metadata (``dfmm.models.metadata.FusionMeta``)."""
        name = self.chosen
        return {
            "attention": self.attention[name],
            "visual_dim": int(self.fit.visual_features.shape[1]),
            "text_dim": int(self.fit.text_features.shape[1]),
            "pair_rule": pair_rule,
            "weights": self.weights()[name],
            "variant": name,
        }


def fit_fusion_variants(
    pairs: PairScores, *, attention: bool, epochs: int, lr: float, seed: int, held_out: float = 0.2
) -> FusionFits:
    """Fit ``weighted`` (and ``weighted + attention`` when ``attention``) on the validation ``pairs`` less a
    ``held_out`` share (:func:`split_pairs`, ``seed``), each with :func:`train_fusion`, and measure each on the held-out
    share. The variants are built and trained in this order, so each one's start is fixed by ``seed`` alone."""
    from dfmm.models import FusionEnsemble

    fit, held = split_pairs(pairs, held_out, seed)
    fits = FusionFits(fit, held, {"weighted": False} | ({"weighted + attention": True} if attention else {}))
    for name, use_attention in fits.attention.items():
        module = FusionEnsemble(fit.visual_features.shape[1], fit.text_features.shape[1], attention=use_attention)
        fits.histories[name] = train_fusion(module, fit, epochs=epochs, lr=lr, seed=seed)
        fits.modules[name] = module
        fits.selection[name] = binary_metrics(held.labels, fused_probs(module, held))
    return fits
