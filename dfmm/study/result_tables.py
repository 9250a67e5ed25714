"""The front pages' tables after the headline: paired comparisons, calibration, the robustness sweep, videos.

Each reads its section of ``metrics.json`` (notebooks 04 and 06) into named rows of shown text, the fields in the
order of the table's columns (``COMPARISON_COLUMNS``, ``CALIBRATION_COLUMNS``, ``ROBUSTNESS_COLUMNS``), for
``dfmm.study.report`` to render; a section the run did not produce gives no rows (or None).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from dfmm.study.headline import _fmt, _interval

COMPARISON_COLUMNS = ("a", "b", "AUC a", "AUC b", "a - b [95% CI]", "p", "CI excludes 0")
CALIBRATION_COLUMNS = (
    "model",
    "temperature",
    "test ECE before",
    "test ECE after",
    "test Brier before",
    "test Brier after",
)
ROBUSTNESS_COLUMNS = ("branch", "perturbation", "ROC AUC [95% CI]", "clean - perturbed [95% CI]", "p", "CI excludes 0")


class ComparisonRow(NamedTuple):
    """One paired comparison, the fields in ``COMPARISON_COLUMNS`` order."""

    a: str
    b: str
    auc_a: str
    auc_b: str
    difference: str  # a - b with its 95% interval
    p_value: str
    excludes_zero: str  # "yes" / "no: within noise"


class CalibrationRow(NamedTuple):
    """One recipe's temperature scaling, the fields in ``CALIBRATION_COLUMNS`` order."""

    model: str
    temperature: str
    ece_before: str
    ece_after: str
    brier_before: str
    brier_after: str


class RobustnessRow(NamedTuple):
    """One branch under one perturbation (or clean), the fields in ``ROBUSTNESS_COLUMNS`` order."""

    branch: str
    perturbation: str
    auc: str  # ROC AUC with its 95% interval
    change: str  # clean - perturbed with its paired 95% interval
    p_value: str
    excludes_zero: str  # "yes" / "no" / "–"


class BranchSize(NamedTuple):
    """How many test items a branch's robustness sweep scored."""

    branch: str
    n_items: int | None


class AggregationRow(NamedTuple):
    """Clip-level accuracy and ROC AUC under one rule for turning frame scores into a clip score."""

    rule: str
    accuracy: str
    auc: str


def comparison_rows(metrics: dict[str, Any]) -> list[ComparisonRow]:
    """The study's paired comparisons (paired bootstrap of the test AUC difference on the same items, resampled by
    group): improved - card, each branch - its floor, fusion - the better single branch."""
    found = [c for b in ("visual", "text") for c in (metrics.get(b) or {}).get("comparisons") or []]
    if (metrics.get("fusion") or {}).get("comparison"):
        found.append(metrics["fusion"]["comparison"])
    return [
        ComparisonRow(
            c["a"],
            c["b"],
            _fmt(c.get("auc_a")),
            _fmt(c.get("auc_b")),
            f"{_fmt(c.get('difference'))} {_interval(c.get('ci'))}".strip(),
            _fmt(c.get("p_value")),
            "yes" if c.get("excludes_zero") else "no: within noise",
        )
        for c in found
    ]


def calibration_rows(metrics: dict[str, Any]) -> list[CalibrationRow]:
    """Temperature scaling fitted on validation: test ECE (equal-width bins) and Brier score before and after it."""
    out = []
    for branch in ("visual", "text"):
        for recipe, r in (metrics.get(branch, {}).get("recipes") or {}).items():
            c = (r.get("test") or {}).get("calibration")
            if c:
                keys = ("temperature", "ece_before", "ece_after", "brier_before", "brier_after")
                out.append(CalibrationRow(f"{branch} / {recipe}", *(_fmt(c.get(k)) for k in keys)))
    return out


def _robustness_branch(branch: str, r: dict[str, Any], names: tuple[str, ...] | None = None) -> list[RobustnessRow]:
    def auc(m: dict[str, Any]) -> str:
        ci = (m.get("ci") or {}).get("auc")
        return f"{_fmt(m.get('auc'))} {_interval(ci)}" if ci else _fmt(m.get("auc"))

    rows = [RobustnessRow(branch, "clean", auc(r.get("clean") or {}), "–", "–", "–")]
    for name, p in (r.get("perturbations") or {}).items():
        if names is not None and name not in names:
            continue
        c = p.get("auc_change") or {}
        change = f"{_fmt(c.get('difference'))} {_interval(c['ci'])}" if c.get("ci") else _fmt(c.get("difference"))
        excludes = "yes" if c.get("excludes_zero") else "no" if c.get("ci") else "–"
        rows.append(RobustnessRow(branch, name, auc(p.get("metrics") or {}), change, _fmt(c.get("p_value")), excludes))
    return rows


def robustness_summary(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """Notebook 06's robustness sweep and format control: per branch the clean row, then each perturbation's test
    ROC AUC with its interval and the paired change (clean - perturbed, on the same items)."""
    ev = metrics.get("evaluation") or {}
    sweep, fc = ev.get("robustness") or {}, ev.get("format_control") or {}
    if not sweep and not fc:
        return None
    first = next(iter(sweep.values()), fc)
    change = next((p.get("auc_change") or {} for p in (first.get("perturbations") or {}).values()), {})
    formats = fc.get("formats") or {}
    return {
        "sizes": [BranchSize(branch, r.get("n")) for branch, r in sweep.items()],
        "resamples": f"{change['n_resamples']:,}" if change.get("n_resamples") else "",
        "unit": "group" if change.get("resampled") == "groups" else "item",
        "rows": [row for branch, r in sweep.items() for row in _robustness_branch(branch, r)],
        "format_rows": _robustness_branch("visual", fc, ("png", "jpeg_95")) if fc else [],
        "formats": "; ".join(
            f"{cls}: " + ", ".join(f"{fmt} {n}" for fmt, n in counts.items())
            for cls, counts in formats.items()
            if counts
        ),
        "interpretation": fc.get("interpretation", ""),
    }


def video_summary(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """Clips, frames with a face, and clip-level AUC per aggregation rule (notebook 06)."""
    v = (metrics.get("evaluation") or {}).get("videos")
    if not v or not v.get("clips"):
        return None
    rules = v.get("by_aggregation") or {}
    return {
        "clips": len(v["clips"]),
        "unreadable": len((v.get("metrics") or {}).get("unreadable") or []),
        "face_crop": v.get("face_crop"),
        "frames_with_face": v.get("frames_with_face"),
        "frames_sampled": v.get("frames_sampled"),
        "aggregation": v.get("aggregation"),
        "rules": [AggregationRow(name, _fmt(m.get("accuracy")), _fmt(m.get("auc"))) for name, m in rules.items()],
    }
