"""The "unlike the training data" judgement of a classify result (``dfmm.models.ood``): per input, how typical it is
of the items the checkpoint's branch learnt from, read through that branch's frozen backbone; and one judgement
for several branches' inputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from dfmm.errors import CheckpointError, DfmmError

if TYPE_CHECKING:
    from dfmm.serving.detector import Detector


NO_REFERENCE = {
    "in_distribution": None,
    "ood_distance": None,
    "uncertain": None,
    "uncertain_reason": "not measured: the checkpoint stores no reference set of training items",
}


@torch.inference_mode()
def ood_judgements(model: Detector, branch: str, inputs: Any) -> list[dict[str, Any]]:
    """Per input (an image batch tensor, a tokenizer's encoding, or a list of texts, which the frozen backbone's
    tokenizer reads): ``in_distribution``, ``ood_distance``, ``uncertain`` and ``uncertain_reason`` from the
    checkpoint's reference (``NO_REFERENCE`` without one)."""
    n = len(inputs) if isinstance(inputs, (torch.Tensor, list)) else len(inputs["input_ids"])
    if branch not in model.ood:
        return [dict(NO_REFERENCE) for _ in range(n)]
    ref = model.ood[branch]
    try:  # the pretrained backbone comes from its package or the Hub: without it the label stands, unjudged
        frozen = model.frozen(branch)
    except (DfmmError, ImportError, OSError) as e:
        reason = f"not measured: the pretrained backbone {ref.backbone} is not available here ({str(e)[:120]})"
        return [dict(NO_REFERENCE, uncertain_reason=reason) for _ in range(n)]
    if isinstance(inputs, list):  # texts of an n-gram branch, tokenised for its reference's encoder
        inputs = model.frozen_tokenizer()(
            inputs, truncation=True, max_length=model.text_spec.max_length, padding=True, return_tensors="pt"
        )
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
