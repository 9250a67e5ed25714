"""Paired comparisons on the test split, as notebooks 02-04 report them: a recipe against the shipped one, a branch
against its floor, the fusion against the better branch; and a run's reliability before and after its temperature.

Every comparison is a paired bootstrap of the ROC AUC difference on the same items, resampled by group
(:func:`dfmm.metrics.paired_bootstrap`), seed 0, so a rerun gives the same interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dfmm.metrics import paired_bootstrap
from dfmm.models.scoring import sigmoid
from dfmm.training.experiments import BranchRun

COMPARISON_COLUMNS = ["a", "b", "auc_a", "auc_b", "difference", "ci", "excludes_zero", "p_value"]  # as tables show


def compare_on_test(
    name_a: str, a: dict[str, np.ndarray], name_b: str, b: dict[str, np.ndarray], groups: Any = None
) -> dict[str, Any]:
    """Paired bootstrap of the test ROC AUC difference a - b on the same items (``paired_bootstrap``, resampled by
    group), for the comparisons the study makes: improved - card, a branch - its floor, fusion - best branch.

    ``a`` and ``b`` hold ``labels`` and ``probs`` in the same item order (both in dataset order, as ``predict``
    and the baselines return them); differing labels mean they are not the same items, which is an error.
    """
    ya, yb = np.asarray(a["labels"]).astype(int), np.asarray(b["labels"]).astype(int)
    if ya.shape != yb.shape or not np.array_equal(ya, yb):
        raise ValueError(f"{name_a} and {name_b} were not scored on the same items")
    out = paired_bootstrap(ya, a["probs"], b["probs"], metric="auc", groups=groups, seed=0)
    return {**out, "a": name_a, "b": name_b, "auc_a": out["a"], "auc_b": out["b"], "split": "test"}


def run_scores(run: BranchRun, split: str = "test") -> dict[str, np.ndarray]:
    """A run's ``labels`` and ``probs`` on a split under its own decision rule, in dataset order."""
    p = run.predictions[split]
    return {"labels": p["labels"], "probs": run.rule.probability(p["logits"]), "index": p["index"]}


def recipe_comparisons(
    runs: dict[str, BranchRun], main: str, test_groups: Any, floors: dict[str, dict[str, Any] | None] | None = None
) -> list[dict[str, Any]]:
    """The ``main`` recipe's run against every other recipe's, then against each floor (name -> a baseline's
    ``scores``: ``labels`` and ``probs`` in dataset order; None: not run), on the test split. ``test_groups`` maps a
    dataset index of the test split to its group (the split's ``groups``)."""
    first = runs[main]
    branch = first.branch
    groups = [test_groups[i] for i in first.predictions["test"]["index"]]
    mine = (f"{branch} {main}", run_scores(first))
    out = [compare_on_test(*mine, f"{branch} {r}", run_scores(run), groups) for r, run in runs.items() if r != main]
    out += [compare_on_test(*mine, name, s, groups) for name, s in (floors or {}).items() if s is not None]
    return out


def calibration_curves(run: BranchRun) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """Test labels and P(fake) before (T = 1) and after the run's fitted temperature, for a reliability plot; None
    when the recipe does not calibrate."""
    calibration = run.test.get("calibration")
    if not calibration:
        return None
    p = run.predictions["test"]
    return {
        "before (T = 1)": (p["labels"], sigmoid(p["logits"])),
        f"after (T = {calibration['temperature']:.2f})": (p["labels"], run_scores(run)["probs"]),
    }
