"""Explanations: GradCAM for the visual branch, token attributions for the text branch.

GradCAM (Selvaraju et al., 2017) runs through the ``grad-cam`` package on the last convolutional block of the
EfficientNet. The branch has a single logit, so the target is the logit itself for "fake" and its negative for
"real" (the package's default targets assume one output per class). Whenever a class is picked here (GradCAM's
"predicted" target, the deletion check's sign) it is the label the image gets: the checkpoint's
:class:`~dfmm.models.scoring.DecisionRule` applied to the logits ``VisualBranch.scored(x, tta)`` computes (mirror-averaged
when the checkpoint's ``tta`` is true), never ``logit >= 0`` nor the un-mirrored logit alone. One CAM object is
built per explainer and reused for every batch: building one per image leaks hooks and memory.

Maps are also *measured*: :func:`deletion_check` blurs away the most salient pixels and compares the drop in
the explained score with blurring the same area chosen by a control map (a deletion test in the spirit of ROAD).
Token attributions are input x gradient on the input embeddings (Shrikumar et al., 2017).
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import torch

from dfmm.models import TextBranch, VisualBranch
from dfmm.models.scoring import DecisionRule


def label_logits(model: VisualBranch, images: torch.Tensor, tta: bool = False) -> torch.Tensor:
    """The logits (N,) the label comes from, as ``VisualBranch.scored`` serves them (with ``tta`` the mean of the
    image's and its mirrored view's logits): the ones the decision rule was fitted on."""
    return model.scored(images, tta=tta)[0].float()


def label_signs(rule: DecisionRule, logits: torch.Tensor) -> torch.Tensor:
    """+1 where ``rule`` calls a logit fake, -1 where it calls it real (the rule's threshold, not ``logit >= 0``)."""
    fake = rule.is_fake(rule.probability(logits.detach().cpu().numpy()))
    return torch.from_numpy(np.where(fake, 1.0, -1.0)).to(dtype=logits.dtype, device=logits.device)


class LogitTarget:
    """Scalar to explain for one image: +logit (evidence for fake) or -logit (evidence for real)."""

    def __init__(self, sign: float) -> None:
        self.sign = sign

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return output * self.sign


def _cut_graph(module: torch.nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor | None:
    """Make the CAM layer's output a leaf that needs a gradient, so backward stops there.

    GradCAM needs d(target)/d(activations) only. With the backbone's parameters frozen (:func:`_frozen`) the
    forward pass up to this layer builds no autograd graph, and the backward pass runs through the head alone
    instead of the whole network and every weight: 2.85x faster for one 224 px image on the 2-core CPU (p50 38 vs
    108 ms against the package's plain use, ``benchmarks/inference_latency.py``).
    """
    if not torch.is_grad_enabled():
        return None
    return output.detach().requires_grad_(True)


class _frozen:
    """Turn off ``requires_grad`` on every parameter for the duration, then restore each flag as it was."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]

    def __enter__(self) -> None:
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc: Any) -> None:
        for p in self.params:
            p.requires_grad_(True)


class GradCamExplainer:
    """Batched GradCAM over ``model.gradcam_layer()``; reuse one instance, call :meth:`close` when done (a call
    after :meth:`close` hooks the layer again, so a notebook cell that uses a closed explainer can be rerun).

    ``rule`` and ``tta`` are the checkpoint's (``model.rule("visual")``, ``model.visual_meta["tta"]``): "predicted"
    explains the label they give.
    """

    def __init__(self, model: VisualBranch, rule: DecisionRule | None = None, *, tta: bool = False) -> None:
        self.model = model.eval()
        self.rule = rule or DecisionRule()
        self.tta = bool(tta)
        self.cam = None
        self._open()

    def _open(self) -> None:
        from pytorch_grad_cam import GradCAM

        layer = self.model.gradcam_layer()
        # Registered before grad-cam's own hooks, so they see (and hook the gradient of) the cut tensor.
        self._cut = layer.register_forward_hook(_cut_graph)
        self.cam = GradCAM(model=self.model, target_layers=[layer])

    def __call__(self, images: torch.Tensor, explain: str = "predicted") -> tuple[np.ndarray, np.ndarray]:
        """(maps in [0, 1] of shape (N, H, W), logits (N,)). ``explain``: predicted | fake | real.

        "predicted" needs the label's logits first (one extra forward pass, two with ``tta``: the mirrored view's
        too, as ``VisualBranch.scored`` computes them) and calls them with the explainer's decision rule (the
        checkpoint's threshold), so a map explains the label the image gets; "fake" / "real" go straight to the
        CAM. The CAM itself (and the logits returned) is of the un-mirrored view.
        """
        if self.cam is None:
            self._open()
        if explain in ("fake", "real"):
            signs = [1.0 if explain == "fake" else -1.0] * len(images)
        else:
            with torch.no_grad():
                signs = label_signs(self.rule, label_logits(self.model, images, self.tta)).tolist()
        with _frozen(self.model):
            maps = self.cam(input_tensor=images, targets=[LogitTarget(s) for s in signs])
        logits = self.cam.outputs.detach().float().numpy() if hasattr(self.cam, "outputs") else None
        return np.asarray(maps, dtype=np.float32), logits

    def close(self) -> None:
        """Remove the hooks now (grad-cam's own finaliser fails when it runs at interpreter shutdown)."""
        if self.cam is not None:
            self.cam.activations_and_grads.release()
            self._cut.remove()
            self.cam = None

    def __enter__(self) -> GradCamExplainer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def denormalise(images: torch.Tensor, mean: Any, std: Any) -> np.ndarray:
    """Normalised (N, 3, H, W) tensors back to (N, H, W, 3) floats in [0, 1] for display."""
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (images.float() * s + m).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def overlay(rgb: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Heatmap over an image (both HxW, image in [0, 1]) as uint8 RGB."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    return show_cam_on_image(rgb.astype(np.float32), cam, use_rgb=True, image_weight=1.0 - alpha)


@torch.no_grad()
def deletion_check(
    model: VisualBranch,
    images: torch.Tensor,
    maps: np.ndarray,
    fraction: float = 0.2,
    *,
    rule: DecisionRule | None = None,
    tta: bool = False,
) -> dict[str, float]:
    """Blur away the top ``fraction`` of each image's CAM pixels, vs the same area picked by a control map.

    The control is another image's map (the batch's maps rolled by one; a 180-degree rotation for a single
    image): it has the same size and blob shape, so the comparison isolates *where* the map points. Pixels are
    replaced by a blurred copy of the image rather than a flat colour, which keeps the input closer to the
    training distribution (the idea of ROAD, Rong et al. 2022). Returns the mean drop of the explained logit
    (toward the predicted class) for both; a faithful map makes the salient deletion hurt more.

    The predicted class and the explained logit are the label's: ``rule`` (the checkpoint's, ``DecisionRule()``
    when omitted) applied to the logits ``VisualBranch.scored(x, tta)`` gives, with the checkpoint's ``tta``; pass
    the explainer's (``rule=explainer.rule, tta=explainer.tta``) so the sign matches the maps' "predicted" target.
    """
    from torchvision.transforms.v2.functional import gaussian_blur

    model.eval()
    rule = rule or DecisionRule()
    base = label_logits(model, images, tta)
    sign = label_signs(rule, base)
    n, _, h, w = images.shape
    k = max(1, int(fraction * h * w))
    flat = torch.from_numpy(np.ascontiguousarray(maps).reshape(n, -1))
    control = torch.roll(flat, 1, dims=0) if n > 1 else torch.flip(flat, dims=[1])
    blurred = gaussian_blur(images.float(), kernel_size=[2 * (h // 16) + 1] * 2, sigma=[h / 16.0] * 2).to(images.dtype)

    def score(weights: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(n, h * w, dtype=torch.bool)
        mask.scatter_(1, weights.topk(k, dim=1).indices, True)
        x = torch.where(mask.view(n, 1, h, w), blurred, images)
        return (label_logits(model, x.contiguous(memory_format=torch.channels_last), tta) * sign).cpu()

    explained = (base * sign).cpu()
    salient = (explained - score(flat)).mean().item()
    ctrl = (explained - score(control)).mean().item()
    return {
        "fraction": fraction,
        "salient_drop": salient,
        "control_drop": ctrl,
        "ratio": salient / ctrl if abs(ctrl) > 1e-9 else float("nan"),
        "salient_beats_control": bool(salient > ctrl),
        "n": n,
    }


# ----------------------------------------------------------------------------------------------------- text
def token_attributions(model: TextBranch, tokenizer: Any, text: str, max_length: int = 512) -> dict[str, Any]:
    """Input x gradient per token toward "AI-generated" (positive = pushes to AI)."""
    model.eval()
    enc = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    emb = model.input_embeddings()(ids).detach().requires_grad_(True)
    logit = model(ids, mask, inputs_embeds=emb)
    logit.sum().backward()
    scores = (emb.grad * emb).sum(-1)[0].detach().numpy()
    tokens = tokenizer.convert_ids_to_tokens(ids[0].tolist())
    return {"tokens": tokens, "scores": scores.tolist(), "logit": float(logit.detach())}


def tokens_html(tokens: list[str], scores: list[float]) -> str:
    """Tokens highlighted red (toward AI) or blue (toward human), for notebooks and reports."""
    s = np.asarray(scores, dtype=float)
    top = float(np.abs(s).max()) or 1.0
    parts = []
    for tok, v in zip(tokens, s, strict=True):
        if tok in ("[CLS]", "[SEP]", "<s>", "</s>", "[PAD]", "<pad>"):
            continue
        a = min(1.0, abs(v) / top)
        color = f"rgba(220,40,40,{a:.2f})" if v > 0 else f"rgba(40,90,220,{a:.2f})"
        text = tok[2:] if tok.startswith("##") else (" " + tok.lstrip("Ġ▁"))
        parts.append(f'<span style="background:{color}" title="{v:+.3f}">{html.escape(text)}</span>')
    return '<div style="line-height:1.9;font-family:sans-serif">' + "".join(parts) + "</div>"
