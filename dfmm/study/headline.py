"""The headline numbers and the targets: the two tables every front page leads with, as named rows.

From ``metrics.json``: one ``HeadlineRow`` per model and data (test metrics, seed means, baselines, fusion pairs,
cross-dataset sets, clips) whose ``Cell``s carry the value with its bootstrap interval or its spread over seeds
and, when empty, the footnoted reason; one ``TargetRow`` per target with its status; ``ci_note``, the sentence
saying how the intervals were made. The value and interval formatting here (``_fmt``, ``_interval``) is the one
every table of the report uses; ``dfmm.study.report`` renders the rows.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from dfmm.metrics import BOOTSTRAP_METRICS, seeds_at_half

HEADLINE_COLUMNS = (
    ("n", "n"),
    ("accuracy", "accuracy"),
    ("balanced_accuracy", "balanced acc."),
    ("auc", "ROC AUC"),
    ("tpr_at_5fpr", "TPR at 5% FPR"),
    ("eer", "EER"),
    ("ece", "ECE"),
    ("ap", "AP"),
)
TARGET_COLUMNS = ("branch", "target", "measured [95% CI]", "sd over seeds", "status", "how")
_SEED_KEYS = ("accuracy", "balanced_accuracy", "auc", "ap", "tpr_at_5fpr", "eer", "ece")


def _missing(v: Any) -> bool:
    """None (NaN as ``metrics.json`` stores it), NaN or infinite: no number to show."""
    return v is None or (isinstance(v, float) and not math.isfinite(v))


def _fmt(v: Any) -> str:
    if _missing(v):
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _interval(ci: Any) -> str:
    """``[lo, hi]``, or nothing when the interval is undefined (one class, or every resample dropped)."""
    if not ci or any(_missing(v) for v in ci[:2]):
        return ""
    return f"[{float(ci[0]):.3f}, {float(ci[1]):.3f}]"


def seed_means(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Mean and sd over seeds (validation; accuracies at 0.5, ``seeds_at_half``) of every recipe trained with
    more than one seed, keyed ``"branch / recipe"``: the seed-mean rows of the headline table. ``dfmm study``
    stores them in ``metrics.json`` (``seed_means``) so that every number the front pages print is there."""
    out: dict[str, dict[str, Any]] = {}
    for branch in ("visual", "text"):
        for recipe, r in metrics.get(branch, {}).get("recipes", {}).items():
            runs = r.get("seed_runs") or []
            if len(runs) > 1:
                keys = tuple(k for k in _SEED_KEYS if all(k in (run | run.get("at_0.5", {})) for run in runs))
                out[f"{branch} / {recipe}"] = seeds_at_half(runs, keys)
    return out


class HeadlineSource(NamedTuple):
    """One row of the headline table before formatting: who was measured, on what, and the metric dict."""

    model: str
    data: str
    metrics: dict[str, Any]


def headline_rows(metrics: dict[str, Any]) -> list[HeadlineSource]:
    """(model, data, metric dict) rows for the summary tables, from whatever sections the run produced."""
    rows: list[HeadlineSource] = []
    means = metrics.get("seed_means") or seed_means(metrics)
    for branch in ("visual", "text"):
        sec = metrics.get(branch, {})
        for recipe, r in sec.get("recipes", {}).items():
            rows.append(HeadlineSource(f"{branch} / {recipe}", "test", r.get("test", {})))
            m = means.get(f"{branch} / {recipe}")
            if m:
                rows.append(HeadlineSource(f"{branch} / {recipe} (mean of {m['seeds']} seeds)", "val, at 0.5", m))
        for name in ("linear_probe", "tfidf_baseline"):
            if sec.get(name):
                rows.append(HeadlineSource(f"{branch} / {name.replace('_', ' ')}", "test", sec[name].get("test", {})))
    fusion = metrics.get("fusion", {})
    for name, r in fusion.get("test_pairs", {}).items():
        rows.append(HeadlineSource(f"fusion pairs / {name}", "test pairs", r))
    ev = metrics.get("evaluation", {})
    for name, r in ev.get("cross_dataset", {}).items():
        rows.append(HeadlineSource(f"cross-dataset / {name}", name, r))
    if (ev.get("videos") or {}).get("metrics"):
        rows.append(HeadlineSource("video / per-clip", "videos", ev["videos"]["metrics"]))
    return rows


class Cell(NamedTuple):
    """One headline-table cell: the shown text, the reason it is empty (or has no interval), its footnote (0: none)."""

    text: str
    reason: str
    footnote: int

    @property
    def marked(self) -> str:
        """The text with its footnote as plain-text pages print it: ``0.600 [2]`` (``[2]``: footnote 2)."""
        return self.text + (f" [{self.footnote}]" if self.footnote else "")


class HeadlineRow(NamedTuple):
    """One row of the headline table: model, data, and one ``Cell`` per ``HEADLINE_COLUMNS``."""

    model: str
    data: str
    cells: list[Cell]

    def cell(self, key: str) -> Cell:
        """The cell of the ``HEADLINE_COLUMNS`` metric ``key`` (``"auc"``, ``"n"``, ...)."""
        return self.cells[[k for k, _ in HEADLINE_COLUMNS].index(key)]


class HeadlineTable(NamedTuple):
    """The headline rows and the footnotes' reasons in number order (footnote i is ``footnotes[i - 1]``)."""

    rows: list[HeadlineRow]
    footnotes: list[str]


class TargetRow(NamedTuple):
    """One target as the report shows it, the fields in ``TARGET_COLUMNS`` order."""

    branch: str
    target: str
    measured: str  # the value with its 95% interval
    sd: str  # sd over seeds
    status: str  # met / met, within noise / NO / not measured
    how: str


class _Footnotes:
    """Reasons a cell is empty (or has no interval), numbered in order of first use; one number per reason."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def number(self, reason: str) -> int:
        if reason not in self.reasons:
            self.reasons.append(reason)
        return self.reasons.index(reason) + 1


def _cell(r: dict[str, Any], key: str, notes: _Footnotes) -> Cell:
    """(text, reason, footnote number or 0) of one metric: the value with its bootstrap interval when the row has
    one (``ci``), or ± the standard deviation over seeds (a seed-mean row); "–" when the value is missing."""
    v = r.get(key)
    if _missing(v):
        reason = (r.get("undefined") or {}).get(key, "")
        return Cell("–", reason, notes.number(reason) if reason else 0)
    text = _fmt(v)
    ci = r.get("ci") or {}
    if key in BOOTSTRAP_METRICS and ci.get(key) is not None:
        return Cell(f"{text} {_interval(ci[key])}", "", 0)
    if key in BOOTSTRAP_METRICS and (ci.get("undefined") or {}).get(key):
        reason = f"no interval: {ci['undefined'][key]}"
        return Cell(text, reason, notes.number(reason))
    if not _missing(r.get(f"{key}_std")):
        return Cell(f"{text} ± {r[f'{key}_std']:.3f}", "", 0)
    return Cell(text, "", 0)


def headline_table(metrics: dict[str, Any]) -> HeadlineTable:
    """(rows, footnotes): per ``headline_rows`` row, a ``HeadlineRow`` (model, data, one ``Cell`` per
    ``HEADLINE_COLUMNS``), and the footnotes' reasons in number order (footnote i is ``footnotes[i - 1]``)."""
    notes = _Footnotes()
    rows = [
        HeadlineRow(s.model, s.data, [_cell(s.metrics, k, notes) for k, _ in HEADLINE_COLUMNS])
        for s in headline_rows(metrics)
    ]
    return HeadlineTable(rows, notes.reasons)


def target_rows(metrics: dict[str, Any]) -> list[TargetRow]:
    """(branch, target, measured [95% CI], sd over seeds, status, how) for the report, from ``metrics["targets"]``.

    Status is ``dfmm.study.targets``': met / met, within noise / NO / not measured.
    """
    out = []
    for t in metrics.get("targets", []):
        state = t["status"]
        measured = _fmt(t.get("measured"))
        if not _missing(t.get("measured")) and t.get("ci") is not None:
            measured += f" {_interval(t['ci'])}"
        how = "; ".join(x for x in (t.get("how", ""), t.get("note", "")) if x)
        out.append(TargetRow(t["branch"], t["target"], measured, _fmt(t.get("std")), state, how))
    return out


def _ci_dicts(node: Any) -> list[dict[str, Any]]:
    """Every bootstrap interval record (``bootstrap_ci``'s dict) anywhere in ``node``, in document order."""
    found = []
    if isinstance(node, dict):
        ci = node.get("ci")
        if isinstance(ci, dict) and "n_resamples" in ci:
            found.append(ci)
        for v in node.values():
            found += _ci_dicts(v)
    elif isinstance(node, list):
        for v in node:
            found += _ci_dicts(v)
    return found


def _joined(values: set[Any], fmt: str) -> str:
    return " and ".join(format(v, fmt) for v in sorted(values))


def ci_note(metrics: dict[str, Any]) -> str:
    """One sentence saying how the report's intervals were computed, read from the interval records themselves."""
    cis = _ci_dicts(metrics)
    if not cis:
        return (
            "These metrics carry no confidence intervals (recorded before bootstrap intervals were added); "
            "± is the standard deviation over seeds."
        )
    kinds = {c.get("resampled") for c in cis}
    if kinds == {"groups"}:
        how = (
            "resampled by group (a real face with the fakes made from its video, a human text with its rewrites; "
            "an item without a group is its own)"
        )
    elif kinds == {"items"}:
        how = "resampled by item"
    else:
        how = "resampled by group where the data have groups, by item otherwise"
    level = _joined({float(c.get("level", 0.95)) for c in cis}, ".0%")
    n = _joined({int(c["n_resamples"]) for c in cis}, ",")
    seed = _joined({int(c.get("seed", 0)) for c in cis}, "d")
    return (
        f"Figures in brackets are {level} percentile bootstrap confidence intervals ({n} resamples, seed {seed}), "
        f'{how}; ± is the standard deviation over seeds. A target is "met" when its whole interval clears it, '
        '"met, within noise" when only the value does.'
    )
