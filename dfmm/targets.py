"""The project's targets, checked against a study's own ``metrics.json``: measured value, target, met or not.

Targets were set on the local data (DFDC face crops, L2R rewrites) with the offline backbones (EfficientNet-Lite0,
all-MiniLM-L6-v2), so they are checked only for a study on that data at the budget they name; any other study
gets no table. Accuracies are taken at the 0.5 threshold (a threshold picked on validation would flatter the
validation split); AUC needs no threshold. A target over seeds uses the mean of the seeds the study ran, and the
table says how many that was.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dfmm.config import Config
from dfmm.metrics import seeds_at_half

OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le, ">": operator.gt}


@dataclass(frozen=True)
class Target:
    branch: str  # visual | text: which data and backbone it was set on
    budget: str  # compact | full
    name: str
    op: str
    value: float
    get: Callable[[dict[str, Any]], tuple[float | None, str]]  # metrics -> (measured, how it was measured)


def _seed_mean(metrics: dict[str, Any], branch: str, key: str) -> tuple[float | None, str]:
    rec = metrics.get(branch, {}).get("recipes", {}).get("improved")
    if not rec:
        return None, "no improved run"
    runs = rec.get("seed_runs") or [rec["val"]]
    return seeds_at_half(runs, (key,))[key], f"improved, val, mean of {len(runs)} seed{'s' * (len(runs) > 1)}"


def _path(*keys: str, how: str) -> Callable[[dict[str, Any]], tuple[float | None, str]]:
    def get(metrics: dict[str, Any]) -> tuple[float | None, str]:
        node: Any = metrics
        for k in keys:
            if not isinstance(node, dict) or node.get(k) is None:
                return None, "not measured in this study"
            node = node[k]
        return float(node), how

    return get


def _beats_floor(metrics: dict[str, Any]) -> tuple[float | None, str]:
    text = metrics.get("text", {})
    floor = (text.get("tfidf_baseline") or {}).get("val", {}).get("auc")
    ours, _ = _seed_mean(metrics, "text", "auc")
    if floor is None or ours is None:
        return None, "not measured in this study"
    return ours - floor, f"improved val AUC minus TF-IDF val AUC ({floor:.3f})"


def _mean(key: str, branch: str) -> Callable[[dict[str, Any]], tuple[float | None, str]]:
    return lambda m: _seed_mean(m, branch, key)


TARGETS: tuple[Target, ...] = (
    Target("visual", "compact", "accuracy", ">=", 0.70, _mean("accuracy", "visual")),
    Target("visual", "compact", "ROC AUC", ">=", 0.76, _mean("auc", "visual")),
    Target("visual", "full", "accuracy", ">=", 0.80, _mean("accuracy", "visual")),
    Target("visual", "full", "ROC AUC", ">=", 0.88, _mean("auc", "visual")),
    Target("visual", "any", "loop speed / plain loop", ">=", 0.9, _path("visual", "speed", "ratio", how="notebook 02")),
    Target(
        "visual",
        "any",
        "GradCAM ms, one 224 px image",
        "<=",
        150.0,
        _path("gradcam", "median_ms_one_image", how="notebook 05, median after warm-up"),
    ),  # fmt: skip
    Target("text", "compact", "balanced accuracy", ">=", 0.80, _mean("balanced_accuracy", "text")),
    Target("text", "compact", "ROC AUC", ">=", 0.88, _mean("auc", "text")),
    Target("text", "full", "balanced accuracy", ">=", 0.92, _mean("balanced_accuracy", "text")),
    Target("text", "full", "ROC AUC", ">=", 0.98, _mean("auc", "text")),
    Target("text", "any", "AUC above the TF-IDF floor", ">", 0.0, _beats_floor),
    Target(
        "text", "any", "bucketed / fixed-padding speed", ">=", 3.0, _path("text", "speed", "ratio", how="notebook 03")
    ),  # fmt: skip
)


def _applies(cfg: Config, branch: str) -> bool:
    if branch == "visual":
        return "dfdc" in str(cfg.data.images).lower() and cfg.visual.backbone == "package:efficientnet-lite0"
    return "l2r" in str(cfg.data.texts).lower() and cfg.text.encoder == "package:all-MiniLM-L6-v2"


def check_targets(cfg: Config, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target that applies to this study: name, target, measured, met (None if not measured)."""
    rows = []
    for t in TARGETS:
        if t.budget not in ("any", cfg.study.budget) or not _applies(cfg, t.branch):
            continue
        value, how = t.get(metrics)
        met = None if value is None or math.isnan(value) else bool(OPS[t.op](value, t.value))
        rows.append({
            "branch": t.branch, "budget": cfg.study.budget, "target": f"{t.name} {t.op} {t.value:g}",
            "measured": value, "how": how, "met": met,
        })  # fmt: skip
    return rows
