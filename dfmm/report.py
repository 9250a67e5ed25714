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
from dfmm.metrics import seeds_at_half


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def headline_rows(metrics: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(model, data, metric dict) rows for the summary tables, from whatever sections the run produced."""
    rows: list[tuple[str, str, dict[str, Any]]] = []
    for branch in ("visual", "text"):
        sec = metrics.get(branch, {})
        for recipe, r in sec.get("recipes", {}).items():
            rows.append((f"{branch} / {recipe}", "test", r.get("test", {})))
            runs = r.get("seed_runs") or []
            if len(runs) > 1:
                rows.append((f"{branch} / {recipe} (mean of {len(runs)} seeds)", "val, at 0.5", seeds_at_half(runs)))
        for name in ("linear_probe", "tfidf_baseline"):
            if name in sec:
                rows.append((f"{branch} / {name.replace('_', ' ')}", "test", sec[name].get("test", {})))
    fusion = metrics.get("fusion", {})
    for name, r in fusion.get("test_pairs", {}).items():
        rows.append((f"fusion pairs / {name}", "test pairs", r))
    ev = metrics.get("evaluation", {})
    for name, r in ev.get("cross_dataset", {}).items():
        rows.append((f"cross-dataset / {name}", name, r))
    if "videos" in ev:
        rows.append(("video / per-clip", "videos", ev["videos"].get("metrics", {})))
    return rows


def target_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(branch, target, measured, met, how) for the report, from ``metrics["targets"]``."""
    out = []
    for t in metrics.get("targets", []):
        met = {True: "yes", False: "NO", None: "not measured"}[t["met"]]
        out.append((t["branch"], t["target"], _fmt(t["measured"]) if t["measured"] is not None else "–", met, t["how"]))
    return out


def _backbones(metrics: dict[str, Any]) -> list[str]:
    out = []
    for branch in ("visual", "text"):
        b = metrics.get(branch, {}).get("backbone")
        if b:
            out.append(f"{branch}: {b['spec']} -> {b['architecture']} ({b['weights']})")
    return out


def write_index(cfg: Config, metrics: dict[str, Any], notebooks: list[str], path: Path) -> Path:
    synthetic = metrics.get("synthetic_demo_data")
    banner = (
        f'<p style="background:#ffe8a3;padding:10px;border:2px solid #c90"><b>{html.escape(SYNTHETIC_NOTE)}</b>. '
        "These numbers only show that the pipeline runs end to end.</p>"
        if synthetic
        else ""
    )
    links = "".join(f'<li><a href="{n}.html">{html.escape(n)}</a></li>' for n in notebooks)
    table = "".join(
        f"<tr><td>{html.escape(m)}</td><td>{html.escape(d)}</td>"
        + "".join(
            f"<td>{_fmt(r.get(k, float('nan')))}</td>" for k in ("n", "accuracy", "balanced_accuracy", "auc", "ap")
        )
        + "</tr>"
        for m, d, r in headline_rows(metrics)
    )
    backbones = "".join(f"<li>{html.escape(b)}</li>" for b in _backbones(metrics))
    targets = ""
    if metrics.get("targets"):
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in target_rows(metrics)
        )
        targets = (
            "<h2>Targets (set on this data with these backbones)</h2>"
            "<table><tr><th>branch</th><th>target</th><th>measured</th><th>met</th><th>how</th></tr>"
            f"{body}</table>"
        )
    env = metrics.get("environment", {})
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>dfmm study: {html.escape(cfg.study.name)}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:first-child,td:nth-child(2){{text-align:left}}</style></head><body>
<h1>dfmm study: {html.escape(cfg.study.name)} ({html.escape(cfg.study.budget)} budget)</h1>
{banner}
<p>Params: <code>{html.escape(" ".join(cfg.sources))}</code> · config {metrics.get("config_digest")} ·
{html.escape(str(env.get("device", "")))} · torch {html.escape(str(env.get("torch", "")))} ·
{metrics.get("total_seconds")} s in all</p>
<h2>Backbones</h2><ul>{backbones}</ul>
<h2>Notebooks</h2><ol>{links}</ol>
<h2>Headline numbers</h2>
<table><tr><th>model</th><th>data</th><th>n</th><th>accuracy</th><th>balanced acc.</th><th>ROC AUC</th><th>AP</th></tr>
{table}</table>
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
        "| model | data | n | accuracy | balanced acc. | ROC AUC | AP |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, d, r in headline_rows(metrics):
        vals = " | ".join(_fmt(r.get(k, float("nan"))) for k in ("n", "accuracy", "balanced_accuracy", "auc", "ap"))
        lines.append(f"| {m} | {d} | {vals} |")
    if metrics.get("targets"):
        lines += ["", "## Targets", "", "| branch | target | measured | met | how |", "|---|---|---|---|---|"]
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
