"""The report's front pages: ``index.html`` (links + headline numbers) and ``DATA_CARD.md``.

Both are generated from ``metrics.json`` and the resolved config; nothing in them is typed by hand. A run on
the synthetic demo data is labelled as such at the top of both.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from dfmm.config import Config, Recipe
from dfmm.data.synthetic import SYNTHETIC_NOTE
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
    return f"[{float(ci[0]):.3f}, {float(ci[1]):.3f}]"


def headline_rows(metrics: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(model, data, metric dict) rows for the summary tables, from whatever sections the run produced."""
    rows: list[tuple[str, str, dict[str, Any]]] = []
    for branch in ("visual", "text"):
        sec = metrics.get(branch, {})
        for recipe, r in sec.get("recipes", {}).items():
            rows.append((f"{branch} / {recipe}", "test", r.get("test", {})))
            runs = r.get("seed_runs") or []
            if len(runs) > 1:
                keys = tuple(k for k in _SEED_KEYS if all(k in (run | run.get("at_0.5", {})) for run in runs))
                rows.append(
                    (f"{branch} / {recipe} (mean of {len(runs)} seeds)", "val, at 0.5", seeds_at_half(runs, keys))
                )
        for name in ("linear_probe", "tfidf_baseline"):
            if sec.get(name):
                rows.append((f"{branch} / {name.replace('_', ' ')}", "test", sec[name].get("test", {})))
    fusion = metrics.get("fusion", {})
    for name, r in fusion.get("test_pairs", {}).items():
        rows.append((f"fusion pairs / {name}", "test pairs", r))
    ev = metrics.get("evaluation", {})
    for name, r in ev.get("cross_dataset", {}).items():
        rows.append((f"cross-dataset / {name}", name, r))
    if (ev.get("videos") or {}).get("metrics"):
        rows.append(("video / per-clip", "videos", ev["videos"]["metrics"]))
    return rows


class _Footnotes:
    """Reasons a cell is empty (or has no interval), numbered in order of first use; one number per reason."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def number(self, reason: str) -> int:
        if reason not in self.reasons:
            self.reasons.append(reason)
        return self.reasons.index(reason) + 1


def _cell(r: dict[str, Any], key: str, notes: _Footnotes) -> tuple[str, str, int]:
    """(text, reason, footnote number or 0) of one metric: the value with its bootstrap interval when the row has
    one (``ci``), or ± the standard deviation over seeds (a seed-mean row); "–" when the value is missing."""
    v = r.get(key)
    if _missing(v):
        reason = (r.get("undefined") or {}).get(key, "")
        return "–", reason, notes.number(reason) if reason else 0
    text = _fmt(v)
    ci = r.get("ci") or {}
    if key in BOOTSTRAP_METRICS and ci.get(key) is not None:
        return f"{text} {_interval(ci[key])}", "", 0
    if key in BOOTSTRAP_METRICS and (ci.get("undefined") or {}).get(key):
        reason = f"no interval: {ci['undefined'][key]}"
        return text, reason, notes.number(reason)
    if not _missing(r.get(f"{key}_std")):
        return f"{text} ± {r[f'{key}_std']:.3f}", "", 0
    return text, "", 0


def headline_table(metrics: dict[str, Any]) -> tuple[list[tuple[str, str, list[tuple[str, str, int]]]], list[str]]:
    """(rows, footnotes): per ``headline_rows`` row, (model, data, one (text, reason, footnote) cell per
    ``HEADLINE_COLUMNS``), and the footnotes' reasons in number order (footnote i is ``footnotes[i - 1]``)."""
    notes = _Footnotes()
    rows = [(m, d, [_cell(r, k, notes) for k, _ in HEADLINE_COLUMNS]) for m, d, r in headline_rows(metrics)]
    return rows, notes.reasons


def target_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """(branch, target, measured [95% CI], sd over seeds, status, how) for the report, from ``metrics["targets"]``.

    Status is ``dfmm.targets``': met / met, within noise / NO / not measured; a report written before it had
    only ``met`` (True / False / None), read as met / NO / not measured.
    """
    out = []
    for t in metrics.get("targets", []):
        state = t.get("status") or {True: "met", False: "NO", None: "not measured"}[t.get("met")]
        measured = _fmt(t.get("measured"))
        if not _missing(t.get("measured")) and t.get("ci") is not None:
            measured += f" {_interval(t['ci'])}"
        how = "; ".join(x for x in (t.get("how", ""), t.get("note", "")) if x)
        out.append((t["branch"], t["target"], measured, _fmt(t.get("std")), state, how))
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


def _backbones(metrics: dict[str, Any]) -> list[str]:
    out = []
    for branch in ("visual", "text"):
        b = metrics.get(branch, {}).get("backbone")
        if b:
            out.append(f"{branch}: {b['spec']} -> {b['architecture']} ({b['weights']})")
    return out


def _html_cell(text: str, reason: str, footnote: int) -> str:
    title = f' title="{html.escape(reason)}"' if reason else ""
    mark = f"<sup>{footnote}</sup>" if footnote else ""
    return f"<td{title}>{html.escape(text)}{mark}</td>"


def write_index(cfg: Config, metrics: dict[str, Any], notebooks: list[str], path: Path) -> Path:
    synthetic = metrics.get("synthetic_demo_data")
    banner = (
        f'<p style="background:#ffe8a3;padding:10px;border:2px solid #c90"><b>{html.escape(SYNTHETIC_NOTE)}</b>. '
        "These numbers only show that the pipeline runs end to end.</p>"
        if synthetic
        else ""
    )
    links = "".join(f'<li><a href="{n}.html">{html.escape(n)}</a></li>' for n in notebooks)
    rows, footnotes = headline_table(metrics)
    table = "".join(
        f"<tr><td>{html.escape(m)}</td><td>{html.escape(d)}</td>" + "".join(_html_cell(*c) for c in cells) + "</tr>"
        for m, d, cells in rows
    )
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in HEADLINE_COLUMNS)
    notes = "".join(f"<li>{html.escape(reason)}</li>" for reason in footnotes)
    notes = f'<ol class="notes">{notes}</ol>' if notes else ""
    backbones = "".join(f"<li>{html.escape(b)}</li>" for b in _backbones(metrics))
    targets = ""
    if metrics.get("targets"):
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in target_rows(metrics)
        )
        targets = (
            "<h2>Targets (set on this data with these backbones)</h2>"
            "<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in TARGET_COLUMNS) + "</tr>"
            f"{body}</table>"
        )
    env = metrics.get("environment", {})
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>dfmm study: {html.escape(cfg.study.name)}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:not(:last-child){{white-space:nowrap}}
td:first-child,td:nth-child(2){{text-align:left}}</style></head><body>
<h1>dfmm study: {html.escape(cfg.study.name)} ({html.escape(cfg.study.budget)} budget)</h1>
{banner}
<p>Params: <code>{html.escape(" ".join(cfg.sources))}</code> · config {metrics.get("config_digest")} ·
{html.escape(str(env.get("device", "")))} · torch {html.escape(str(env.get("torch", "")))} ·
{metrics.get("total_seconds")} s in all</p>
<h2>Backbones</h2><ul>{backbones}</ul>
<h2>Notebooks</h2><ol>{links}</ol>
<h2>Headline numbers</h2>
<p>{html.escape(ci_note(metrics))}</p>
<table><tr><th>model</th><th>data</th>{head}</tr>
{table}</table>
{notes}
{targets}
<p>Files: <a href="metrics.json">metrics.json</a> · <a href="DATA_CARD.md">DATA_CARD.md</a> ·
<a href="config.json">config.json</a></p>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path


_DEFAULT = Recipe()
_OPTIONS = {  # recipe fields that are off unless a recipe turns them on, as the data card names them
    "freeze_norm": "frozen batch-norm statistics",
    "pair_loss": "pair ranking loss weight",
    "ema": "weight average (EMA) decay",
    "layer_decay": "layer-wise lr decay",
    "head_only_fraction": "head-only share of the steps (LP-FT)",
    "self_blend": "self-blended pseudo-fakes",
    "global_pool": "pooling",
    "mid_level": "also pooled: backbone feature level",
}


def _option(text: str, value: Any) -> str:
    if isinstance(value, bool):
        return text
    return f"{text} {value:g}" if isinstance(value, float) else f"{text} {value}"


def _options(recipe: Recipe) -> str:
    """The optional recipe fields this recipe turns on, or 'no other options'."""
    on = [
        _option(text, getattr(recipe, k)) for k, text in _OPTIONS.items() if getattr(recipe, k) != getattr(_DEFAULT, k)
    ]
    return ", ".join(on) or "no other options"


def write_data_card(cfg: Config, metrics: dict[str, Any], path: Path) -> Path:
    synthetic = metrics.get("synthetic_demo_data")
    sizes = metrics.get("data_sizes", {})
    lines = [f"# Data card — dfmm study `{cfg.study.name}` ({cfg.study.budget} budget)", ""]
    if synthetic:
        lines += [f"> **{SYNTHETIC_NOTE}.** Every number below is a smoke test of the pipeline, not a result.", ""]
    lines += [
        "Generated by `dfmm study` from `metrics.json`; do not edit by hand.",
        "",
        f"- Params: `{' '.join(cfg.sources)}` (config digest `{metrics.get('config_digest')}`)",
        f"- Environment: {metrics.get('environment', {})}",
        "",
        "## Data",
        "",
        "| modality | source | train | val | test |",
        "|---|---|---|---|---|",
    ]
    for key, src in (("images", cfg.data.images), ("texts", cfg.data.texts)):
        s = sizes.get(key, {})
        lines.append(f"| {key} | `{src}` | {s.get('train', '')} | {s.get('val', '')} | {s.get('test', '')} |")
    for name, n in {**sizes.get("cross_images", {}), **sizes.get("cross_texts", {})}.items():
        lines.append(f"| cross-dataset test | `{name}` | – | – | {n} |")
    if sizes.get("videos"):
        lines.append(f"| videos | `{cfg.data.videos}` | – | – | {sizes['videos']} clips |")
    lines += [
        "",
        "Labels: 0 = real / human, 1 = fake / AI-generated. Splits are group-aware (a real face and its fakes, a "
        f"human text and its rewrites, never straddle splits), stratified, seed {cfg.study.seed}; "
        f"val {cfg.data.val_fraction:.0%}, test {cfg.data.test_fraction:.0%}.",
        "",
        "## Models",
        "",
    ]
    lines += [f"- {b}" for b in _backbones(metrics)]
    for branch in ("visual", "text"):
        bc = getattr(cfg, branch)
        for rname, r in bc.recipes.items():
            lines.append(
                f"- {branch} recipe `{rname}`: {r.optimizer}, lr {r.lr:g} (head x{r.head_lr_mult:g}), weight decay "
                f"{r.weight_decay:g}, {r.schedule} schedule, warm-up {r.warmup_fraction:.0%}, label smoothing "
                f"{r.label_smoothing:g}, augmentation {r.augment}, pair batches {r.pair_batches}, balanced {r.balanced}, "
                f"TTA {r.tta}, threshold from validation {r.calibrate}; {_options(r)}; {bc.epochs} epochs, "
                f"batch {r.batch_size or bc.batch_size}, {r.seeds or bc.seeds} seed(s)"
            )
    lines += [
        "",
        "## Results",
        "",
        ci_note(metrics),
        "",
        "| model | data | " + " | ".join(label for _, label in HEADLINE_COLUMNS) + " |",
        "|---|---|" + "---|" * len(HEADLINE_COLUMNS),
    ]
    rows, footnotes = headline_table(metrics)
    for m, d, cells in rows:
        vals = " | ".join(text + (f" [{n}]" if n else "") for text, _, n in cells)
        lines.append(f"| {m} | {d} | {vals} |")
    if footnotes:
        lines += [""] + [f"[{i}] {reason}  " for i, reason in enumerate(footnotes, 1)]
    if metrics.get("targets"):
        lines += ["", "## Targets", "", f"| {' | '.join(TARGET_COLUMNS)} |", "|---" * len(TARGET_COLUMNS) + "|"]
        lines += [f"| {' | '.join(row)} |" for row in target_rows(metrics)]
    fusion = metrics.get("fusion", {})
    if fusion.get("weights"):
        lines += ["", f"Fusion weights (visual, text): {fusion['weights']}; pair rule `{fusion.get('pair_rule')}`."]
    lines += [
        "",
        "## Limitations",
        "",
        "- A detector trained on one manipulation method is known to fall towards chance on others; see the "
        "cross-dataset rows.",
        "- Paired image+text data is built from the two modalities' held-out splits (no public paired set here).",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
