"""A trained branch's decision rule, fitted on its validation scores, and the metrics of each scored split under it
(with group-bootstrap intervals): what training records for every run and what its checkpoint serves.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dfmm.metrics import best_threshold, binary_metrics, bootstrap_ci, fit_temperature, metrics_with_ci
from dfmm.models.scoring import DecisionRule, sigmoid


def fit_rule_and_score(
    preds: dict[str, dict[str, np.ndarray]], calibrate: bool, groups: dict[str, np.ndarray] | None = None
) -> tuple[DecisionRule, dict[str, dict[str, Any]]]:
    """The decision rule and the metrics of val and test under it, each with ``ci``: 95% percentile bootstrap
    intervals at the rule's threshold (``metrics_with_ci``, seed 0, so a rerun is bit-identical).

    With ``calibrate`` the rule is fitted on validation data only: a temperature (Guo et al., "On Calibration of
    Modern Neural Networks", ICML 2017: one scalar minimising the validation NLL) and then the threshold with the
    best balanced accuracy on the temperature-scaled validation scores. Test data only scores;
    ``scores["test"]["calibration"]`` holds its ECE and Brier score before and after the temperature. Accuracies at
    0.5 (``at_0.5``, what the targets read) do not depend on the temperature. Without ``calibrate`` the rule is
    plain: temperature 1, threshold 0.5.

    ``groups`` maps a split to one group id per row of ``preds[split]`` (see ``split_groups``): a group (a real
    face and the fakes made from its video, a human text and its rewrites) is resampled as a whole. Bootstrapping
    happens here, once per run, never per epoch.
    """
    rule = DecisionRule()
    if calibrate:
        temperature = fit_temperature(preds["val"]["labels"], preds["val"]["logits"])
        val_probs = DecisionRule(temperature=temperature).probability(preds["val"]["logits"])
        rule = DecisionRule(best_threshold(preds["val"]["labels"], val_probs), temperature)
    probs = {s: rule.probability(p["logits"]) for s, p in preds.items()}
    g = groups or {}
    scores = {
        s: {**metrics_with_ci(preds[s]["labels"], probs[s], rule.threshold, g.get(s), seed=0), **rule.to_dict()}
        for s in preds
    }
    if calibrate:  # val accuracy at a threshold picked on val is optimistic: keep the figures at 0.5 too
        for s in preds:
            at_half = binary_metrics(preds[s]["labels"], probs[s], 0.5)
            scores[s]["at_0.5"] = {k: at_half[k] for k in ("accuracy", "balanced_accuracy")}
            scores[s]["at_0.5"]["ci"] = bootstrap_ci(preds[s]["labels"], probs[s], 0.5, g.get(s), seed=0)
        if "test" in preds:
            raw = binary_metrics(preds["test"]["labels"], sigmoid(preds["test"]["logits"]), rule.threshold)
            scores["test"]["calibration"] = {
                "temperature": rule.temperature,
                "ece_before": raw["ece"],
                "ece_after": scores["test"]["ece"],
                "brier_before": raw["brier"],
                "brier_after": scores["test"]["brier"],
            }
    return rule, scores


def split_groups(splits: dict[str, Any], preds: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Each scored split's group ids aligned with its predictions (``predict`` keeps dataset indices in ``index``
    and skips unreadable items), for the group bootstrap in ``fit_rule_and_score``."""
    return {s: np.asarray(splits[s].groups)[np.asarray(p["index"], dtype=int)] for s, p in preds.items()}
