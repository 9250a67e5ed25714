"""Robustness to post-processing, and the format-shortcut control.

A detector is scored again on its test split after the same named perturbation is applied to every item, real
and fake alike: JPEG re-encoding, Gaussian blur and down-then-up scaling for faces (the post-processing sweep of
Wang et al. 2020, "CNN-generated images are surprisingly easy to spot... for now"), truncation, typos and case /
whitespace noise for texts. Perturbations are a registry of named functions (``IMAGE_PERTURBATIONS``,
``TEXT_PERTURBATIONS``), timm style, so a sweep is a list of names.

Each perturbed split goes through the study's own scoring (``dfmm.serving.evaluate.score_images`` / ``score_texts``, the
checkpoint's decision rule and TTA); perturbed images are handed over as losslessly encoded PNG bytes, so the
perturbation is exactly what is measured. The AUC change against the clean split is a paired bootstrap on the
same items, resampled by group (``dfmm.metrics.paired_bootstrap``): ``difference`` = AUC clean - AUC perturbed,
so a positive change is a drop.

The format control asks whether the detector reads the container instead of the face: when real and fake
images come in different formats (real JPEGs, fake PNGs), a classifier can learn JPEG traces, the "JPEG
shortcut". ``png`` re-encodes losslessly: no pixel changes, so its AUC change must be exactly 0 (a sanity row);
``jpeg_95`` is a near-invisible re-encode: a clear AUC drop under it (paired CI excluding 0) says the detector
relies on compression traces.

This module is the one notebook 06 imports: it turns a sweep's result into table rows and a plot, and re-exports
the pieces, which live by job in ``dfmm.analysis.perturbations`` (the perturbations), ``dfmm.analysis.sweeps``
(the sweep and its paired comparison) and ``dfmm.analysis.format_shortcut`` (the format control).
"""

from __future__ import annotations

from typing import Any

from dfmm.analysis.format_shortcut import format_control, interpret_format_control
from dfmm.analysis.perturbations import (
    CASE_FLIP_P,
    COLLAPSE_P,
    DOUBLE_SPACE_P,
    FORMAT_CONTROLS,
    IMAGE_PERTURBATIONS,
    IMAGE_SWEEP,
    POST_PROCESSING,
    TEXT_PERTURBATIONS,
    TEXT_SWEEP,
    TYPO_RATE,
    _known,
    _rng,
    blur,
    case_whitespace,
    downscale,
    jpeg,
    perturb_image,
    perturb_images,
    perturb_text,
    perturb_texts,
    png,
    truncate,
    typos,
)
from dfmm.analysis.sweeps import (
    _compare,
    _formats,
    _groups,
    _subset,
    _token_ids,
    robustness_sweep,
    sweep_images,
    sweep_texts,
)
from dfmm.data.degradations import decode as _decode  # the names this module has always offered
from dfmm.data.degradations import encode as _encode

__all__ = [  # what this module has always offered (notebook 06, tests): the pieces live in the modules named above
    "CASE_FLIP_P",
    "COLLAPSE_P",
    "DOUBLE_SPACE_P",
    "FORMAT_CONTROLS",
    "IMAGE_PERTURBATIONS",
    "IMAGE_SWEEP",
    "POST_PROCESSING",
    "TEXT_PERTURBATIONS",
    "TEXT_SWEEP",
    "TYPO_RATE",
    "_compare",
    "_decode",
    "_encode",
    "_formats",
    "_groups",
    "_known",
    "_rng",
    "_subset",
    "_token_ids",
    "blur",
    "case_whitespace",
    "downscale",
    "format_control",
    "interpret_format_control",
    "jpeg",
    "perturb_image",
    "perturb_images",
    "perturb_text",
    "perturb_texts",
    "plot_robustness",
    "png",
    "robustness_rows",
    "robustness_sweep",
    "sweep_images",
    "sweep_texts",
    "truncate",
    "typos",
]


# --------------------------------------------------------------------------------------------------- tables
def _interval(ci: Any) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "–"


def robustness_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per branch and perturbation (the clean row first): AUC [CI], change [CI] and whether it excludes 0."""
    rows = []
    for branch, r in result.items():
        c = r["clean"]
        rows.append(
            {
                "branch": branch,
                "perturbation": "clean",
                "AUC [95% CI]": f"{c['auc']:.3f} {_interval((c.get('ci') or {}).get('auc'))}",
                "clean - perturbed [95% CI]": "–",
                "excludes 0": "–",
            }
        )
        for name, p in r["perturbations"].items():
            m, d = p["metrics"], p["auc_change"]
            rows.append(
                {
                    "branch": branch,
                    "perturbation": name,
                    "AUC [95% CI]": f"{m['auc']:.3f} {_interval((m.get('ci') or {}).get('auc'))}",
                    "clean - perturbed [95% CI]": f"{d['difference']:+.3f} {_interval(d.get('ci'))}",
                    "excludes 0": "yes" if d.get("excludes_zero") else "no",
                }
            )
    return rows


def plot_robustness(result: dict[str, Any], title: str = "") -> Any:
    """ROC AUC with its 95% bootstrap interval under each perturbation; dashed: the clean AUC (band: its CI)."""
    from dfmm.analysis.plots import _plt

    plt = _plt()
    names = list(result["perturbations"])
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(names) + 1.4))
    clean = result["clean"]
    lo_hi = (clean.get("ci") or {}).get("auc")
    if lo_hi:
        ax.axvspan(lo_hi[0], lo_hi[1], color="grey", alpha=0.15, lw=0)
    ax.axvline(clean["auc"], color="k", lw=1, ls="--", label=f"clean {clean['auc']:.3f}")
    for y, name in enumerate(names):
        p = result["perturbations"][name]
        auc = p["metrics"]["auc"]
        lo, hi = (p["metrics"].get("ci") or {}).get("auc") or (auc, auc)
        color = "C3" if p["auc_change"].get("excludes_zero") else "C0"
        ax.errorbar(auc, y, xerr=[[auc - lo], [hi - auc]], fmt="o", color=color, capsize=3)
    ax.axvline(0.5, color="grey", lw=0.6, ls=":")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlim(min(0.3, ax.get_xlim()[0]), 1.01)
    ax.set_xlabel("ROC AUC, 95% bootstrap CI (red: paired change excludes 0; dotted: chance)")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig
