"""The report's front pages: ``index.html`` (headline numbers, targets, key figures, pages) and ``DATA_CARD.md``.

Both are rendered from ``metrics.json`` and the resolved config through the Jinja2 templates in
``dfmm/study/templates``; nothing in them is typed by hand, and every number they print is in ``metrics.json``
(``tests/test_traceability.py``). A run on the synthetic demo data is labelled as such at the top of both.
``withhold`` removes pages that show dataset items from a finished report and relists them on its front page.

The rows come from the modules beside this one, by job: ``dfmm.study.headline`` (the headline numbers and the
targets), ``dfmm.study.result_tables`` (comparisons, calibration, robustness, videos), ``dfmm.study.figure_index``
(the key figures); ``dfmm.study.readme_block`` writes the README's results block from the same rows. This module
renders the pages and re-exports those names, so ``from dfmm.study.report import ...`` keeps working.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any, NamedTuple

from dfmm.config import Config, Recipe, load_resolved
from dfmm.data.synthetic import SYNTHETIC_NOTE
from dfmm.errors import StudyError
from dfmm.study.figure_index import KEY_FIGURES, _page_of, key_figures
from dfmm.study.headline import (
    _SEED_KEYS,
    HEADLINE_COLUMNS,
    TARGET_COLUMNS,
    Cell,
    HeadlineRow,
    HeadlineSource,
    HeadlineTable,
    TargetRow,
    _cell,
    _ci_dicts,
    _fmt,
    _Footnotes,
    _interval,
    _joined,
    _missing,
    ci_note,
    headline_rows,
    headline_table,
    seed_means,
    target_rows,
)
from dfmm.study.held_out import held_out_summary
from dfmm.study.readme_block import (
    _README_COLUMNS,
    README_END,
    README_START,
    held_out_lines,
    readme_results,
    update_readme,
)
from dfmm.study.result_tables import (
    CALIBRATION_COLUMNS,
    COMPARISON_COLUMNS,
    ROBUSTNESS_COLUMNS,
    AggregationRow,
    BranchSize,
    CalibrationRow,
    ComparisonRow,
    RobustnessRow,
    _robustness_branch,
    calibration_rows,
    comparison_rows,
    robustness_summary,
    video_summary,
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
    """What the front page and the data card both show (each template renders the headline cells its own way)."""
    table = headline_table(metrics)
    return {
        "ci_note": ci_note(metrics),
        "columns": [label for _, label in HEADLINE_COLUMNS],
        "rows": table.rows,
        "footnotes": table.footnotes,
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
        **_result_sections(metrics),
        figures=key_figures(folder, notebooks),
        pages=[{"name": n, "href": f"{n}.html", "seconds": seconds.get(n)} for n in present],
        withheld=[n for n in notebooks if n not in present],
        withheld_note=WITHHELD_NOTE,
        command=study_command(cfg, published or folder),
        files=[f for f in ("metrics.json", "DATA_CARD.md", "config.json") if (folder / f).is_file()],
    )


def _finished_report(folder: Path) -> tuple[dict[str, Any], Any, list[str]]:
    """A finished report's ``metrics.json``, its resolved config and its notebooks in order (refused in one line
    when the folder is not a dfmm report)."""
    if not (folder / "metrics.json").is_file() or not (folder / "config.json").is_file():
        raise StudyError(f"{folder}: not a dfmm report (expected metrics.json and config.json)")
    metrics = json.loads((folder / "metrics.json").read_text())
    notebooks = list(metrics.get("notebook_seconds") or {}) or sorted(p.stem for p in folder.glob("[0-9][0-9]_*.html"))
    return metrics, load_resolved(folder / "config.json"), notebooks


def withhold(report_dir: str | Path, pages: list[str], figures: list[str] | tuple[str, ...] = ()) -> list[Path]:
    """Remove ``pages`` (notebook stems, or their two-digit numbers) and the ``figures`` (globs of PNG names
    without ``.png``) from a finished report, and rewrite its ``index.html`` so it lists those pages as withheld,
    with the command that regenerates them, instead of linking them. Run it before committing a report whose
    pages show dataset items (``make withhold REPORT=reports/compact``). Returns the removed files."""
    folder = Path(report_dir)
    metrics, cfg, notebooks = _finished_report(folder)
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
    ``config.json`` with this dfmm's templates (no number is recomputed)."""
    folder = Path(report_dir)
    metrics, cfg, notebooks = _finished_report(folder)
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


class DataRow(NamedTuple):
    """One row of the data card's data table: a modality (or a cross-dataset test set) and its split sizes."""

    modality: str
    source: str
    train: Any  # a count, "" when not recorded, "–" for a set with no such split
    val: Any
    test: Any  # a count, or "N clips" for videos


def write_data_card(cfg: Config, metrics: dict[str, Any], path: Path) -> Path:
    """``DATA_CARD.md``: data sources and split sizes, labels and splitting, backbones and recipes, the headline
    table with intervals, targets with status, fusion weights and limitations."""
    sizes = metrics.get("data_sizes", {})
    data = [
        DataRow(key, _shown_sources(src), *(sizes.get(key, {}).get(s, "") for s in ("train", "val", "test")))
        for key, src in (("images", cfg.data.images), ("texts", cfg.data.texts))
    ]
    data += [
        DataRow("cross-dataset test", name, "–", "–", n)
        for name, n in {**sizes.get("cross_images", {}), **sizes.get("cross_texts", {})}.items()
    ]
    if sizes.get("videos"):
        data.append(DataRow("videos", shown_path(cfg.data.videos), "–", "–", f"{sizes['videos']} clips"))
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
        **_result_sections(metrics),
        fusion_weights=_weights(fusion["weights"]) if fusion.get("weights") else "",
        pair_rule=fusion.get("pair_rule"),
    )


__all__ = [  # what this module has always offered (the CLI, the runner, notebooks, tests, make targets)
    "CALIBRATION_COLUMNS",
    "COMPARISON_COLUMNS",
    "HEADLINE_COLUMNS",
    "KEY_FIGURES",
    "README_END",
    "README_START",
    "ROBUSTNESS_COLUMNS",
    "TARGET_COLUMNS",
    "TEMPLATES",
    "WITHHELD_NOTE",
    "_README_COLUMNS",
    "_SEED_KEYS",
    "AggregationRow",
    "BranchSize",
    "CalibrationRow",
    "Cell",
    "ComparisonRow",
    "DataRow",
    "HeadlineRow",
    "HeadlineSource",
    "HeadlineTable",
    "RobustnessRow",
    "TargetRow",
    "_Footnotes",
    "_cell",
    "_ci_dicts",
    "_fmt",
    "_interval",
    "_joined",
    "_missing",
    "_page_of",
    "_robustness_branch",
    "calibration_rows",
    "ci_note",
    "comparison_rows",
    "headline_rows",
    "headline_table",
    "held_out_lines",
    "held_out_summary",
    "key_figures",
    "readme_results",
    "refresh_front_pages",
    "robustness_summary",
    "seed_means",
    "shown_path",
    "study_command",
    "target_rows",
    "update_readme",
    "video_summary",
    "withhold",
    "write_data_card",
    "write_index",
]
