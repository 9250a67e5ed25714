"""The front page's key figures: which figures a report shows first, with their captions and the pages that made them.

``KEY_FIGURES`` names them (globs under ``figures/``) in the order ``index.html`` shows them; ``key_figures`` finds
those a report folder has and links each to its notebook page, or marks the page withheld when it is not there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

KEY_FIGURES = (  # (glob under figures/, caption) in the order the front page shows them; absent ones are skipped
    ("06_roc", "ROC curves: held-out test splits and cross-dataset sources"),
    ("*_reliability", "Reliability: mean P(fake) against the share of fakes"),
    ("06_cross_source", "Every source side by side"),
    ("*robustness*", "Robustness to perturbations"),
    ("06_video_frames", "P(fake) per video frame"),
    ("07_text_folds", "Texts: held-out AUC per source, generator and domain"),
    ("07_ood_flags", "Items flagged as unlike the training data, per source"),
)


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
