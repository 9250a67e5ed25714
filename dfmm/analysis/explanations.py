"""What notebooks 03 and 05 show of the explanations: token attributions of correct and wrong test texts, GradCAM
galleries per outcome (true/false positives and negatives), mean maps per class, the deletion check at several
fractions and GradCAM's speed on one image.

Every label here is the checkpoint's decision rule on the label's logits, as ``classify_*`` give it; the maps
come from :class:`dfmm.serving.explain.GradCamExplainer`, which explains that same label for "predicted".
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import numpy as np
import torch

from dfmm.data.images import ImageSet, load_image
from dfmm.data.text import TextSet
from dfmm.serving.explain import deletion_check, denormalise, overlay, token_attributions, tokens_html

OUTCOMES = {  # name -> (true label, label called): the four cells of the confusion matrix
    "true positive (fake called fake)": (1, 1),
    "true negative (real called real)": (0, 0),
    "false positive (real called fake)": (0, 1),
    "false negative (fake called real)": (1, 0),
}


class Attribution(NamedTuple):
    """One explained text: correct or wrong, its true label (1 = AI), P(AI) as served, and the highlighted tokens."""

    kind: str
    label: int
    p_ai: float
    html: str

    def record(self) -> dict[str, Any]:
        """What metrics.json keeps (not the text itself)."""
        return {"kind": self.kind, "label": self.label, "p_ai": self.p_ai}

    def heading(self) -> str:
        return f"<p><b>{self.kind}</b> · true {'AI' if self.label else 'human'} · P(AI) = {self.p_ai:.2f}</p>"


def attribution_examples(
    model: Any, texts: TextSet, pred: dict[str, np.ndarray], per_kind: int = 2, chars: int = 1500, max_length: int = 256
) -> list[Attribution]:
    """Input x gradient token attributions (an n-gram branch: each word's exact share of the logit) of the first
    ``per_kind`` correctly and wrongly labelled texts of ``pred`` (a branch's ``logits``, ``labels``, ``index`` on
    ``texts``) under the checkpoint's rule; each text cut to ``chars`` characters and ``max_length`` tokens."""
    rule = model.rule("text")
    probs = rule.probability(pred["logits"])
    right = rule.is_fake(probs) == (pred["labels"] == 1)
    out = []
    for kind, pool in (("correct", np.flatnonzero(right)), ("wrong", np.flatnonzero(~right))):
        for j in pool[:per_kind]:
            text = texts.text(pred["index"][j])[:chars]
            if getattr(model, "text_is_ngrams", False):  # exact word shares of a linear model's logit
                a = model.text.word_contributions(text)
            else:
                a = token_attributions(model.text, model.tokenizer, text, max_length)
            out.append(
                Attribution(kind, int(pred["labels"][j]), float(probs[j]), tokens_html(a["tokens"], a["scores"]))
            )
    return out


def outcome_groups(labels: np.ndarray, called: np.ndarray) -> dict[str, np.ndarray]:
    """A boolean mask per :data:`OUTCOMES` cell: true labels ``labels`` (1 = fake) against the labels ``called``."""
    y, c = np.asarray(labels).astype(int), np.asarray(called).astype(int)
    return {name: (y == t) & (c == p) for name, (t, p) in OUTCOMES.items()}


class FaceBatches:
    """Scored faces of an image set as model inputs: ``rows`` of a score dict (``index`` = dataset positions)
    loaded, transformed as the checkpoint's preprocessing does and stacked channels-last."""

    def __init__(self, model: Any, images: ImageSet, index: np.ndarray) -> None:
        self.transform, self.images, self.index = model.transform(), images, np.asarray(index)
        self.backbone = model.visual_meta["backbone"]

    def __call__(self, rows: Any) -> torch.Tensor:
        x = torch.stack([self.transform(load_image(self.images.sources[self.index[r]])) for r in rows])
        return x.contiguous(memory_format=torch.channels_last)

    def rgb(self, x: torch.Tensor) -> np.ndarray:
        return denormalise(x, self.backbone["mean"], self.backbone["std"])


def gradcam_gallery(explainer: Any, faces: FaceBatches, groups: dict[str, np.ndarray], probs: Any, k: int) -> Any:
    """Up to ``k`` faces per outcome with the map of the label each got ("fake" when called fake, else "real")."""
    from dfmm.analysis.plots import _plt

    plt = _plt()
    fig, axes = plt.subplots(len(groups), k, figsize=(1.8 * k, 2.1 * len(groups)), squeeze=False)
    for row, (name, mask) in enumerate(groups.items()):
        rows = np.flatnonzero(mask)[:k]
        for col in range(k):
            axes[row, col].axis("off")
        if len(rows) == 0:
            axes[row, 0].set_title(f"{name}: none", fontsize=8, loc="left")
            continue
        x = faces(rows)
        maps, _ = explainer(x, "fake" if "called fake" in name else "real")
        rgb = faces.rgb(x)
        for col in range(len(rows)):
            axes[row, col].imshow(overlay(rgb[col], maps[col]))
            label = f"{name}\n" if col == 0 else "\n"
            axes[row, col].set_title(f"{label}P(fake) {probs[rows[col]]:.2f}", fontsize=7, loc="left")
    fig.tight_layout()
    return fig


def explained_maps(explainer: Any, x: torch.Tensor, explain: str, chunk: int = 16) -> np.ndarray:
    """GradCAM maps of a batch of faces, ``chunk`` at a time (bounded memory)."""
    return np.concatenate([explainer(x[s : s + chunk], explain)[0] for s in range(0, len(x), chunk)])


def mean_maps_figure(explainer: Any, faces: FaceBatches, labels: np.ndarray, n: int = 64) -> Any:
    """The mean "fake" map over the first ``n // 2`` real and fake faces, side by side on one colour scale."""
    from dfmm.analysis.plots import _plt

    mean_maps = {}
    for lab, name in ((0, "real"), (1, "fake")):
        rows = np.flatnonzero(np.asarray(labels) == lab)[: n // 2]
        mean_maps[name] = explained_maps(explainer, faces(rows), "fake").mean(0)
    fig, axes = _plt().subplots(1, 2, figsize=(6, 3))
    for ax, (name, m) in zip(axes, mean_maps.items(), strict=True):
        ax.imshow(m, cmap="jet", vmin=0, vmax=max(mm.max() for mm in mean_maps.values()))
        ax.set_title(f"mean map: {name}")
        ax.axis("off")
    return fig


def deletion_checks(explainer: Any, x: torch.Tensor, fractions: tuple[float, ...] = (0.1, 0.2, 0.4)) -> dict:
    """:func:`dfmm.serving.explain.deletion_check` of the "predicted" maps at each fraction, with the explainer's
    rule and views: the sign and logit explained are the label's, as the maps' target."""
    maps = explained_maps(explainer, x, "predicted")
    return {
        f: deletion_check(explainer.model, x, maps, fraction=f, rule=explainer.rule, tta=explainer.tta)
        for f in fractions
    }


def gradcam_ms(explainer: Any, one: torch.Tensor, warmup: int = 3, runs: int = 15) -> float:
    """Median milliseconds of one GradCAM call on ``one`` after ``warmup`` calls."""
    for _ in range(warmup):
        explainer(one)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        explainer(one)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))
