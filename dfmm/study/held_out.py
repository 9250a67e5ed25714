"""The front page's "Where the detector can be trusted" section: notebook 07's held-out numbers as table rows.

Read by :mod:`dfmm.study.report` (index page and data card) and by ``make readme-results`` (the README section of
the same name), so the three say the same thing.
"""

from __future__ import annotations

from typing import Any


def _num(v: Any) -> str:
    return "n/a" if v is None else f"{float(v):.3f}"


def _signed(v: Any) -> str:
    return "n/a" if v is None else f"{float(v):+.3f}"


def _ci(ci: Any) -> str:
    return "" if not ci else f"[{float(ci[0]):.3f}, {float(ci[1]):.3f}]"


def held_out_summary(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """Rows for the three tables (text folds, face sets, the flag), or None when notebook 07 did not run."""
    g = metrics.get("generalization")
    if not g:
        return None
    texts = g.get("texts") or {}
    folds = [
        (
            r["model"],
            r["folds"],
            str(r["n_folds"]),
            _num(r["mean_auc"]),
            _ci(r.get("ci")),
            "" if "minus_compact" not in r else f"{r['minus_compact']:+.3f} {_ci(r.get('minus_compact_ci'))}",
        )
        for r in texts.get("means") or []
    ]
    cross = texts.get("cross_fitted") or {}
    if cross.get("mean_auc") is not None:  # the best recipe without post-selection (notebook 07)
        folds.append(
            (
                f"best recipe, cross-fitted ({' / '.join(dict.fromkeys(cross['chosen']))})",
                cross["folds"],
                str(cross["n_folds"]),
                _num(cross["mean_auc"]),
                _ci(cross.get("ci")),
                f"{cross['minus_compact']:+.3f} {_ci(cross.get('minus_compact_ci'))}",
            )
        )
    faces = [
        (
            r["model"],
            r["set"],
            str(r["n"]),
            _num(r["auc"]),
            _ci(r["auc_ci"]),
            _num(r["fakes_detected_at_5fpr"]["rate"]),
            _ci(r["fakes_detected_at_5fpr"]["ci"]),
        )
        for r in g.get("faces") or []
    ]
    flags = []
    selective = {(b, r["set"]): r for b, rows in (g.get("selective") or {}).items() for r in rows}
    for branch, rows in (g.get("flags") or {}).items():
        for r in rows:
            sel = selective.get((branch, "test" if branch == "faces" and r["in_domain"] else r["source"])) or {}
            flags.append(
                (
                    branch,
                    r["source"] + (" (in-domain test)" if r["in_domain"] else ""),
                    str(r["n"]),
                    f"{_num(r['flagged'])} {_ci(r['flagged_ci'])}",
                    f"{_num(r.get('auroc'))} {_ci(r.get('auroc_ci'))}",
                    _num(sel.get("accuracy_all")),
                    _num(sel.get("accuracy_kept")),
                )
            )
    shipped = g.get("shipped") or {}
    side = [
        (
            r["model"],
            *(f"{_num(r[src]['auc'])} {_ci(r[src]['ci'])}" for src in _side_sources(shipped)),
            f"{_num(r['held_out'].get('mean_auc'))} {_ci(r['held_out'].get('ci'))}",
        )
        for r in shipped.get("text_side_by_side") or []
    ]
    side_title = (
        "Text models side by side: ROC AUC on each source's held-out texts (in-domain for a model trained on that "
        "source), and the mean over the folds the model never trained on (the n-gram recipe's is cross-fitted: "
        "chosen on one half of the held groups, scored on the other)"
    )
    flag_title = (
        'The "unlike the training data" flag: share of items flagged, how well the distance separates each source '
        "from the in-domain test items, and the accuracy of the labels on all vs kept items"
    )
    return {
        "tables": [
            ("Texts, mean over held-out folds", FOLD_COLUMNS, folds),
            (
                "Faces: the training source's validation and test splits, then the sets never trained on. A rate "
                "of fakes detected at the in-domain 5%-FPR threshold also counts a score level that moved up on a "
                "new source: read it beside the share of that source's reals called fake (benchmarks/"
                "face_threshold_shift.py)",
                FACE_COLUMNS,
                faces,
            ),
            (flag_title, FLAG_COLUMNS, flags),
            (side_title, ("model", *(f"{s} held-out texts" for s in _side_sources(shipped)), "unseen folds"), side),
        ],
        "shipped_sentence": shipped_sentence(shipped, str(metrics.get("study") or "NAME")),
        "chosen": texts.get("chosen"),
        "shipped": g.get("shipped") or {},
        "clips": g.get("clips") or [],
    }


def shipped_sentence(shipped: dict[str, Any], study: str) -> str:
    """Where the models for users are and why (notebook 07's ``shipped``; empty for reports written before it)."""
    if "folder" not in shipped:
        return ""
    text = (
        f" For users, `runs/{study}/{shipped['folder']}` holds visual `{shipped['visual']}` and text "
        f"`{shipped['text']}` ({shipped.get('reason') or 'no reason recorded'})"
    )
    fusion = shipped.get("fusion")
    if isinstance(fusion, dict):
        t, c = fusion["test_pairs"], fusion["card_test_pairs"]
        text += (
            f", and an ensemble whose fusion was fitted again on validation pairs ({fusion['variant']}): test-pair "
            f"AUC {_num(t['auc'])} {_ci(t['ci'])} vs the card's {_num(c['auc'])}, difference "
            f"{_signed(fusion.get('minus_card'))} {_ci(fusion.get('minus_card_ci'))}"
        )
    return text + "."


def _side_sources(shipped: dict[str, Any]) -> list[str]:
    """The text sources of the side-by-side rows (every key that is neither the model nor its held-out estimate)."""
    rows = shipped.get("text_side_by_side") or [{}]
    return [k for k in rows[0] if k not in ("model", "held_out")]


FOLD_COLUMNS = ("model", "folds", "n folds", "mean held-out AUC", "95% CI", "minus compact [95% CI]")
FACE_COLUMNS = ("model", "face set", "n", "ROC AUC", "95% CI", "fakes detected at 5% FPR", "95% CI")
FLAG_COLUMNS = (
    "branch",
    "source",
    "n",
    "flagged [95% CI]",
    "AUROC vs in-domain [95% CI]",
    "accuracy, all",
    "accuracy, kept",
)
