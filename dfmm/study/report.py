"""The report's front pages: ``index.html`` (headline numbers, targets, key figures, pages) and ``DATA_CARD.md``.

Both are rendered from ``metrics.json`` and the resolved config through the Jinja2 templates in
``dfmm/study/templates``; nothing in them is typed by hand, and every number they print is in ``metrics.json``
(``tests/test_traceability.py``). A run on the synthetic demo data is labelled as such at the top of both.
``withhold`` removes pages that show dataset items from a finished report and relists them on its front page.
"""

from __future__ import annotations

import json
import math
import os
import shlex
from pathlib import Path
from typing import Any

from dfmm.config import Config, Recipe, load_resolved
from dfmm.data.synthetic import SYNTHETIC_NOTE
from dfmm.errors import StudyError
from dfmm.metrics import BOOTSTRAP_METRICS, seeds_at_half
from dfmm.study.held_out import held_out_summary

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


def headline_rows(metrics: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(model, data, metric dict) rows for the summary tables, from whatever sections the run produced."""
    rows: list[tuple[str, str, dict[str, Any]]] = []
    means = metrics.get("seed_means") or seed_means(metrics)
    for branch in ("visual", "text"):
        sec = metrics.get(branch, {})
        for recipe, r in sec.get("recipes", {}).items():
            rows.append((f"{branch} / {recipe}", "test", r.get("test", {})))
            m = means.get(f"{branch} / {recipe}")
            if m:
                rows.append((f"{branch} / {recipe} (mean of {m['seeds']} seeds)", "val, at 0.5", m))
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

    Status is ``dfmm.study.targets``': met / met, within noise / NO / not measured; a report written before it had
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


# ------------------------------------------------------------------------------------------------ rendering
TEMPLATES = Path(__file__).with_name("templates")
KEY_FIGURES = (  # (glob under figures/, caption) in the order the front page shows them; absent ones are skipped
    ("06_roc", "ROC curves: held-out test splits and cross-dataset sources"),
    ("*_reliability", "Reliability: mean P(fake) against the share of fakes"),
    ("06_cross_source", "Every source side by side"),
    ("*robustness*", "Robustness to perturbations"),
    ("06_video_frames", "P(fake) per video frame"),
    ("07_text_folds", "Texts: held-out AUC per source, generator and domain"),
    ("07_ood_flags", "Items flagged as unlike the training data, per source"),
)
WITHHELD_NOTE = (
    "These pages were removed from this copy of the report because they show dataset items (faces, texts) that "
    "are not redistributed with it; the numbers they record are still in metrics.json and the tables above."
)


def _templates() -> Any:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _render(template: str, path: Path, **context: Any) -> Path:
    path.write_text(_templates().get_template(template).render(**context), encoding="utf-8")
    return path


def shown_path(p: Any) -> str:
    """A path as the report pages show it: relative to the project root, never the machine's absolute path."""
    from dfmm.files import project_root

    p = str(p)
    return os.path.relpath(p, project_root()) if os.path.isabs(p) else p


def _shown_source(source: str) -> list[str]:
    """One ``cfg.sources`` entry as command-line words: a params file, or ``-p key=value``."""
    if source.startswith("-p "):
        key, _, value = source[3:].partition("=")
        return ["-p", shlex.quote(f"{key}={shown_path(value) if value else value}")]
    return [shlex.quote(shown_path(source))]


def study_command(cfg: Config, folder: Path | None = None) -> str:
    """The ``dfmm study`` command that regenerates this report (``--out`` when it is not the default folder)."""
    words = ["dfmm", "study"] + [w for s in cfg.sources for w in _shown_source(s)]
    if folder is not None:
        folder = Path(folder)
        if folder.name.startswith(".") and folder.name.endswith(".partial"):  # the study's staging folder
            folder = folder.with_name(folder.name[1 : -len(".partial")])
        from dfmm.files import project_root

        root = project_root()
        default = cfg.report_dir if cfg.report_dir.is_absolute() else root / cfg.report_dir
        if folder.resolve() != default.resolve():
            words += ["--out", shlex.quote(shown_path(folder.resolve()))]
    return " ".join(words)


COMPARISON_COLUMNS = ("a", "b", "AUC a", "AUC b", "a - b [95% CI]", "p", "CI excludes 0")
CALIBRATION_COLUMNS = (
    "model",
    "temperature",
    "test ECE before",
    "test ECE after",
    "test Brier before",
    "test Brier after",
)


def comparison_rows(metrics: dict[str, Any]) -> list[tuple[str, ...]]:
    """The study's paired comparisons (paired bootstrap of the test AUC difference on the same items, resampled by
    group): improved - card, each branch - its floor, fusion - the better single branch."""
    found = [c for b in ("visual", "text") for c in (metrics.get(b) or {}).get("comparisons") or []]
    if (metrics.get("fusion") or {}).get("comparison"):
        found.append(metrics["fusion"]["comparison"])
    return [
        (
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


def calibration_rows(metrics: dict[str, Any]) -> list[tuple[str, ...]]:
    """Temperature scaling fitted on validation: test ECE (equal-width bins) and Brier score before and after it."""
    out = []
    for branch in ("visual", "text"):
        for recipe, r in (metrics.get(branch, {}).get("recipes") or {}).items():
            c = (r.get("test") or {}).get("calibration")
            if c:
                keys = ("temperature", "ece_before", "ece_after", "brier_before", "brier_after")
                out.append((f"{branch} / {recipe}", *(_fmt(c.get(k)) for k in keys)))
    return out


ROBUSTNESS_COLUMNS = ("branch", "perturbation", "ROC AUC [95% CI]", "clean - perturbed [95% CI]", "p", "CI excludes 0")


def _robustness_branch(branch: str, r: dict[str, Any], names: tuple[str, ...] | None = None) -> list[tuple[str, ...]]:
    def auc(m: dict[str, Any]) -> str:
        ci = (m.get("ci") or {}).get("auc")
        return f"{_fmt(m.get('auc'))} {_interval(ci)}" if ci else _fmt(m.get("auc"))

    rows = [(branch, "clean", auc(r.get("clean") or {}), "–", "–", "–")]
    for name, p in (r.get("perturbations") or {}).items():
        if names is not None and name not in names:
            continue
        c = p.get("auc_change") or {}
        change = f"{_fmt(c.get('difference'))} {_interval(c['ci'])}" if c.get("ci") else _fmt(c.get("difference"))
        excludes = "yes" if c.get("excludes_zero") else "no" if c.get("ci") else "–"
        rows.append((branch, name, auc(p.get("metrics") or {}), change, _fmt(c.get("p_value")), excludes))
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
        "sizes": [(branch, r.get("n")) for branch, r in sweep.items()],
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
        "rules": [(name, _fmt(m.get("accuracy")), _fmt(m.get("auc"))) for name, m in rules.items()],
    }


def _page_of(stem: str, notebooks: list[str]) -> str | None:
    return next((n for n in notebooks if n.split("_", 1)[0] == stem.split("_", 1)[0]), None)


def key_figures(folder: Path, notebooks: list[str]) -> list[dict[str, Any]]:
    """The ``KEY_FIGURES`` this report has: file (relative to the report), caption, and the page that made it
    (``href`` None when that page is not in the folder)."""
    out: list[dict[str, Any]] = []
    for pattern, caption in KEY_FIGURES:
        for f in sorted((folder / "figures").glob(f"{pattern}.png")):
            if any(x["src"] == f"figures/{f.name}" for x in out):
                continue
            page = _page_of(f.stem, notebooks)
            on_page = page.split("_", 1)[-1].replace("_", " ") if page else ""
            out.append(
                {
                    "src": f"figures/{f.name}",
                    "caption": f"{caption} ({on_page})" if on_page else caption,
                    "page": page,
                    "href": f"{page}.html" if page and (folder / f"{page}.html").is_file() else None,
                }
            )
    return out


def _cell_view(text: str, reason: str, footnote: int) -> dict[str, Any]:
    return {"text": text, "reason": reason, "footnote": footnote}


def _front_matter(cfg: Config, metrics: dict[str, Any]) -> dict[str, Any]:
    """The study's name, budget, params and config digest, and the synthetic-data banner where it applies."""
    return {
        "name": cfg.study.name,
        "budget": cfg.study.budget,
        "synthetic_note": SYNTHETIC_NOTE if metrics.get("synthetic_demo_data") else "",
        "params": " ".join(w for s in cfg.sources for w in _shown_source(s)),
        "digest": metrics.get("config_digest"),
    }


def _result_sections(metrics: dict[str, Any]) -> dict[str, Any]:
    """What the front page and the data card both show, beside the headline rows (each renders its own cells)."""
    return {
        "ci_note": ci_note(metrics),
        "columns": [label for _, label in HEADLINE_COLUMNS],
        "footnotes": headline_table(metrics)[1],
        "target_columns": TARGET_COLUMNS,
        "targets": target_rows(metrics),
        "comparison_columns": COMPARISON_COLUMNS,
        "comparisons": comparison_rows(metrics),
        "calibration_columns": CALIBRATION_COLUMNS,
        "calibration": calibration_rows(metrics),
        "robustness_columns": ROBUSTNESS_COLUMNS,
        "robustness": robustness_summary(metrics),
        "video": video_summary(metrics),
        "held_out": held_out_summary(metrics),
    }


def write_index(
    cfg: Config, metrics: dict[str, Any], notebooks: list[str], path: Path, published: Path | None = None
) -> Path:
    """``index.html``: headline table with intervals, targets with status, the key figures (each linking to its
    page), the notebook pages, and the pages withheld from this copy with the command that regenerates them.

    A notebook page that is not in the report's folder is listed as withheld, never linked (``withhold``).
    ``published``: the folder the report will be moved to, when it is written elsewhere first (the study's
    staging folder): the regenerate command names that one."""
    path = Path(path)
    folder = path.parent
    rows, _ = headline_table(metrics)
    seconds = metrics.get("notebook_seconds") or {}
    present = [n for n in notebooks if (folder / f"{n}.html").is_file()]
    env = metrics.get("environment", {})
    return _render(
        "index.html.j2",
        path,
        **_front_matter(cfg, metrics),
        device=env.get("device", ""),
        torch=env.get("torch", ""),
        total_seconds=metrics.get("total_seconds"),
        backbones=_backbones(metrics),
        rows=[(m, d, [_cell_view(*c) for c in cells]) for m, d, cells in rows],
        **_result_sections(metrics),
        figures=key_figures(folder, notebooks),
        pages=[{"name": n, "href": f"{n}.html", "seconds": seconds.get(n)} for n in present],
        withheld=[n for n in notebooks if n not in present],
        withheld_note=WITHHELD_NOTE,
        command=study_command(cfg, published or folder),
        files=[f for f in ("metrics.json", "DATA_CARD.md", "config.json") if (folder / f).is_file()],
    )


def withhold(report_dir: str | Path, pages: list[str], figures: list[str] | tuple[str, ...] = ()) -> list[Path]:
    """Remove ``pages`` (notebook stems, or their two-digit numbers) and the ``figures`` (globs of PNG names
    without ``.png``) from a finished report, and rewrite its ``index.html`` so it lists those pages as withheld,
    with the command that regenerates them, instead of linking them. Run it before committing a report whose
    pages show dataset items (``make withhold REPORT=reports/compact``). Returns the removed files."""
    folder = Path(report_dir)
    if not (folder / "metrics.json").is_file() or not (folder / "config.json").is_file():
        raise StudyError(f"{folder}: not a dfmm report (expected metrics.json and config.json)")
    metrics = json.loads((folder / "metrics.json").read_text())
    cfg = load_resolved(folder / "config.json")
    notebooks = list(metrics.get("notebook_seconds") or {}) or sorted(p.stem for p in folder.glob("[0-9][0-9]_*.html"))
    chosen = []
    for page in pages:
        match = [n for n in notebooks if n == page or n.split("_", 1)[0] == page]
        if not match:
            raise StudyError(f"withhold: no page {page!r} in {folder} (pages: {', '.join(notebooks)})")
        chosen += match
    removed = [folder / f"{n}.html" for n in chosen if (folder / f"{n}.html").is_file()]
    for pattern in figures:
        removed += sorted((folder / "figures").glob(f"{pattern}.png"))
    for f in removed:
        f.unlink()
    write_index(cfg, metrics, notebooks, folder / "index.html")
    return removed


def refresh_front_pages(report_dir: str | Path) -> None:
    """Render ``index.html`` and ``DATA_CARD.md`` of a finished report again from its own ``metrics.json`` and
    ``config.json`` with this dfmm's templates (no number is recomputed; ``seed_means``, the headline table's
    derived rows, is added to ``metrics.json`` when the study that wrote it predates that section)."""
    folder = Path(report_dir)
    if not (folder / "metrics.json").is_file() or not (folder / "config.json").is_file():
        raise StudyError(f"{folder}: not a dfmm report (expected metrics.json and config.json)")
    from dfmm.files import dumps_json

    metrics = json.loads((folder / "metrics.json").read_text())
    if "seed_means" not in metrics:
        metrics["seed_means"] = seed_means(metrics)
        (folder / "metrics.json").write_text(dumps_json(metrics))
    cfg = load_resolved(folder / "config.json")
    notebooks = list(metrics.get("notebook_seconds") or {}) or sorted(p.stem for p in folder.glob("[0-9][0-9]_*.html"))
    write_data_card(cfg, metrics, folder / "DATA_CARD.md")
    write_index(cfg, metrics, notebooks, folder / "index.html")


def _weights(weights: dict[str, Any]) -> str:
    """Fusion weights as the card prints them: ``variant: visual 0.609, text 0.391; ...`` (or one flat pair)."""

    def pair(w: dict[str, Any]) -> str:
        return ", ".join(f"{k} {_fmt(float(v))}" for k, v in w.items())

    if all(isinstance(v, dict) for v in weights.values()):
        return "; ".join(f"{name}: {pair(w)}" for name, w in weights.items())
    return pair(weights)


def _recipe_view(branch: str, name: str, r: Recipe, bc: Any) -> dict[str, Any]:
    return {
        "branch": branch,
        "name": name,
        "optimizer": r.optimizer,
        "lr": f"{r.lr:g}",
        "head_lr_mult": f"{r.head_lr_mult:g}",
        "weight_decay": f"{r.weight_decay:g}",
        "schedule": r.schedule,
        "warmup": f"{r.warmup_fraction:.0%}",
        "label_smoothing": f"{r.label_smoothing:g}",
        "augment": r.augment,
        "pair_batches": r.pair_batches,
        "balanced": r.balanced,
        "tta": r.tta,
        "calibrate": r.calibrate,
        "epochs": bc.epochs,
        "batch_size": r.batch_size or bc.batch_size,
        "seeds": r.seeds or bc.seeds,
    }


def _shown_sources(src: Any) -> str:
    """One source's path, or a list of training sources as ``name (path), ...``, never absolute machine paths."""
    if isinstance(src, str):
        return shown_path(src)
    return ", ".join(f"{i.source or '?'} ({shown_path(i.path)})" for i in src)


def write_data_card(cfg: Config, metrics: dict[str, Any], path: Path) -> Path:
    """``DATA_CARD.md``: data sources and split sizes, labels and splitting, backbones and recipes, the headline
    table with intervals, targets with status, fusion weights and limitations."""
    sizes = metrics.get("data_sizes", {})
    data = [
        (key, _shown_sources(src), *(sizes.get(key, {}).get(s, "") for s in ("train", "val", "test")))
        for key, src in (("images", cfg.data.images), ("texts", cfg.data.texts))
    ]
    data += [
        ("cross-dataset test", name, "–", "–", n)
        for name, n in {**sizes.get("cross_images", {}), **sizes.get("cross_texts", {})}.items()
    ]
    if sizes.get("videos"):
        data.append(("videos", shown_path(cfg.data.videos), "–", "–", f"{sizes['videos']} clips"))
    rows, _ = headline_table(metrics)
    fusion = metrics.get("fusion", {})
    return _render(
        "DATA_CARD.md.j2",
        path,
        **_front_matter(cfg, metrics),
        environment=metrics.get("environment", {}),
        data=data,
        seed=cfg.study.seed,
        val_fraction=f"{cfg.data.val_fraction:.0%}",
        test_fraction=f"{cfg.data.test_fraction:.0%}",
        backbones=_backbones(metrics),
        recipes=[
            _recipe_view(branch, name, r, getattr(cfg, branch))
            for branch in ("visual", "text")
            for name, r in getattr(cfg, branch).recipes.items()
        ],
        rows=[(m, d, [text + (f" [{n}]" if n else "") for text, _, n in cells]) for m, d, cells in rows],
        **_result_sections(metrics),
        fusion_weights=_weights(fusion["weights"]) if fusion.get("weights") else "",
        pair_rule=fusion.get("pair_rule"),
    )


README_START = "<!-- results: generated by `make readme-results` from reports/compact/metrics.json; do not edit -->"
README_END = "<!-- end of results -->"
_README_COLUMNS = ("accuracy", "balanced_accuracy", "auc", "tpr_at_5fpr", "ece")


def readme_results(metrics: dict[str, Any], report: str = "reports/compact/index.html") -> str:
    """The README's results block: the headline rows of a committed report with their intervals (a subset of the
    columns, the same cells as the front page), its targets with status, and a link to the report."""
    rows, footnotes = headline_table(metrics)
    keys = [k for k, _ in HEADLINE_COLUMNS]
    labels = dict(HEADLINE_COLUMNS)
    picked = [keys.index(k) for k in _README_COLUMNS]
    lines = [
        README_START,
        "",
        f"From [{report}]({report}); brackets: 95% bootstrap confidence intervals (the report says how they were made).",
        "",
        "| model | data | n | " + " | ".join(labels[k] for k in _README_COLUMNS) + " |",
        "|---|---|---|" + "---|" * len(picked),
    ]
    for model, data, cells in rows:
        text = [
            cells[keys.index("n")][0],
            *(cells[i][0] + (f" [{cells[i][2]}]" if cells[i][2] else "") for i in picked),
        ]
        lines.append(f"| {model} | {data} | " + " | ".join(text) + " |")
    lines += [f"[{i}] {r}" for i, r in enumerate(footnotes, start=1)]
    targets = target_rows(metrics)
    if targets:
        lines += ["", "| " + " | ".join(TARGET_COLUMNS) + " |", "|" + "---|" * len(TARGET_COLUMNS)]
        lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in targets]
    lines += held_out_lines(metrics)
    return "\n".join([*lines, "", README_END])


def held_out_lines(metrics: dict[str, Any]) -> list[str]:
    """The README's "Where the detector can be trusted" part of the results block (notebook 07), or nothing."""
    summary = held_out_summary(metrics)
    if summary is None:
        return []
    lines = [
        "",
        "### Where the detector can be trusted",
        "",
        f"Notebook 07, on sources, generators and domains the models never trained on. Best text recipe on held-out "
        f"validation: {summary['chosen'] or 'none measured'}; shipped: visual `{summary['shipped'].get('visual')}`, "
        f"text `{summary['shipped'].get('text')}`.",
    ]
    for title, columns, rows in summary["tables"]:
        if rows:
            lines += ["", f"{title}:", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def update_readme(readme: str | Path, report_dir: str | Path) -> bool:
    """Replace the README's results block with ``readme_results`` of the report; True when the text changed."""
    readme, folder = Path(readme), Path(report_dir)
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        raise StudyError(f"{readme}: no results block (the lines {README_START!r} ... {README_END!r})")
    metrics = json.loads((folder / "metrics.json").read_text())
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    link = f"{folder.as_posix()}/index.html"
    new = head + readme_results(metrics, link) + tail
    if new != text:
        readme.write_text(new)
    return new != text
