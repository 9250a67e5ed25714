"""The report's front pages carry uncertainty: intervals beside the values, target status, strict JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dfmm.config import load_config
from dfmm.files import dumps_json
from dfmm.study.notebook import NotebookContext
from dfmm.study.report import ci_note, headline_table, target_rows, write_data_card, write_index

from .conftest import ROOT

_CI = {
    "accuracy": [0.684, 0.72],
    "balanced_accuracy": [0.68, 0.719],
    "auc": [0.75, 0.79],
    "tpr_at_5fpr": None,
    "level": 0.95,
    "n_resamples": 1000,
    "seed": 0,
    "threshold": 0.5,
    "resampled": "groups",
    "n_units": 800,
    "dropped": {},
    "undefined": {"tpr_at_5fpr": "every resample had one class only"},
}


def _run(acc: float, auc: float) -> dict:
    return {
        "n": 2400,
        "accuracy": acc,
        "balanced_accuracy": acc,
        "auc": auc,
        "ap": 0.8,
        "tpr_at_5fpr": 0.2,
        "eer": 0.3,
        "ece": 0.041,
        "threshold": 0.5,
        "ci": _CI,
        "undefined": {},
    }


def _metrics() -> dict:
    one_class = {
        "n": 40,
        "accuracy": 0.6,
        "balanced_accuracy": 0.6,
        "auc": math.nan,
        "ap": None,
        "ece": 0.2,
        "undefined": {"auc": "one class only (n real=0, n fake=40)", "ap": "one class only (n real=0, n fake=40)"},
    }
    seeds = [_run(0.702, 0.77), _run(0.712, 0.78)]
    return {
        "visual": {"recipes": {"improved": {"test": _run(0.702, 0.77), "seed_runs": seeds}}, "linear_probe": None},
        "evaluation": {"cross_dataset": {"celebdf": one_class}, "videos": {"metrics": None}},
        "targets": [
            {
                "branch": "visual",
                "target": "accuracy >= 0.7",
                "measured": 0.702,
                "ci": [0.684, 0.72],
                "std": 0.005,
                "how": "improved, val, mean of 3 seeds",
                "status": "met, within noise",
                "note": "",
            },
            {
                "branch": "visual",
                "target": "ROC AUC >= 0.76",
                "measured": 0.77,
                "ci": None,
                "std": None,
                "how": "improved, val",
                "status": "met",
                "note": "no CI",
            },
            {
                "branch": "text",
                "target": "bucketed / fixed-padding speed >= 3",
                "measured": None,
                "ci": None,
                "std": None,
                "how": "not measured in this study",
                "status": "not measured",
                "note": "",
            },
        ],
    }


def test_target_rows_show_status_interval_and_seed_spread():
    rows = target_rows(_metrics())
    assert rows[0] == (
        "visual",
        "accuracy >= 0.7",
        "0.702 [0.684, 0.720]",
        "0.005",
        "met, within noise",
        "improved, val, mean of 3 seeds",
    )
    assert (rows[1].measured, rows[1].sd, rows[1].status, rows[1].how) == ("0.770", "–", "met", "improved, val; no CI")
    assert (rows[2].measured, rows[2].sd, rows[2].status) == ("–", "–", "not measured")


def test_headline_cells_carry_intervals_seed_spread_and_reasons():
    rows, notes = headline_table(_metrics())
    cells = {row.model: [c.text for c in row.cells] for row in rows}
    # n, accuracy, balanced acc., AUC, TPR at 5% FPR, EER, ECE, AP
    test = cells["visual / improved"]
    assert test[:4] == ["2400", "0.702 [0.684, 0.720]", "0.702 [0.680, 0.719]", "0.770 [0.750, 0.790]"]
    assert test[4:] == ["0.200", "0.300", "0.041", "0.800"]  # TPR has no interval here: footnoted, not hidden
    seeds = cells["visual / improved (mean of 2 seeds)"]
    assert seeds[1] == "0.707 ± 0.005" and seeds[5] == "0.300 ± 0.000"
    cross = cells["cross-dataset / celebdf"]
    assert cross[3] == "–" and cross[7] == "–" and cross[4] == "–"  # NaN, null (NaN read back), absent
    assert notes == ["no interval: every resample had one class only", "one class only (n real=0, n fake=40)"]
    by_model = {row.model: row for row in rows}
    auc, tpr = by_model["cross-dataset / celebdf"].cell("auc"), by_model["cross-dataset / celebdf"].cell("tpr_at_5fpr")
    assert (auc.reason, auc.footnote) == ("one class only (n real=0, n fake=40)", 2) and auc.marked == "– [2]"
    assert (tpr.reason, tpr.footnote) == ("", 0) and tpr.marked == "–"  # no value and no reason: no footnote
    assert headline_table(_metrics()) == (rows, notes)  # deterministic


def test_front_pages_render_intervals_status_and_the_method(tmp_path):
    cfg = load_config([ROOT / "params" / "demo.yaml"])
    m = _metrics()
    index = write_index(cfg, m, ["02_visual_training"], tmp_path / "index.html").read_text()
    card = write_data_card(cfg, m, tmp_path / "DATA_CARD.md").read_text()
    for page in (index, card):
        assert "0.702 [0.684, 0.720]" in page and "met, within noise" in page and "not measured" in page
        assert "95% percentile bootstrap" in page and "1,000 resamples" in page and "resampled by group" in page
        assert "TPR at 5% FPR" in page and "EER" in page and "ECE" in page
    assert "<th>status</th>" in index and "<th>met</th>" not in index
    assert 'title="one class only (n real=0, n fake=40)"' in index and "<sup>2</sup>" in index
    assert "| branch | target | measured [95% CI] | sd over seeds | status | how |" in card
    assert "[2] one class only (n real=0, n fake=40)" in card
    assert "| cross-dataset / celebdf | celebdf | 40 | 0.600 | 0.600 | – [2] |" in card
    assert write_data_card(cfg, m, tmp_path / "again.md").read_text() == card


def test_ci_note_says_when_there_are_no_intervals():
    assert "no confidence intervals" in ci_note({"visual": {"recipes": {"x": {"test": {"accuracy": 0.7}}}}})
    items = {"a": {"ci": _CI | {"resampled": "items", "n_resamples": 200}}}
    assert "200 resamples" in ci_note(items) and "resampled by item" in ci_note(items)


def _preds(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).astype(np.float32)
    logits = rng.normal(size=n) + 1.5 * (labels - 0.5)
    index = np.sort(rng.choice(n + 10, n, replace=False))  # a few unreadable items skipped
    return {"logits": logits, "labels": labels, "index": index}


@pytest.mark.parametrize("calibrate", [True, False])
def test_score_adds_seeded_group_intervals(calibrate):
    from dfmm.training.rule_fitting import fit_rule_and_score, split_groups

    class Split:
        def __init__(self, n: int) -> None:
            self.groups = [f"g{i // 3}" for i in range(n)]  # three items a group

    preds = {"val": _preds(300, 1), "test": _preds(200, 2)}
    groups = split_groups({"val": Split(310), "test": Split(210)}, preds)
    assert list(groups["val"][:2]) == [f"g{preds['val']['index'][0] // 3}", f"g{preds['val']['index'][1] // 3}"]
    rule, scores = fit_rule_and_score(preds, calibrate, groups)
    threshold = rule.threshold
    for split in ("val", "test"):
        s = scores[split]
        assert s["ci"]["threshold"] == threshold == s["threshold"] and s["ci"]["resampled"] == "groups"
        assert s["temperature"] == rule.temperature
        assert s["ci"]["n_resamples"] == 1000 and s["ci"]["seed"] == 0
        lo, hi = s["ci"]["auc"]
        assert lo <= s["auc"] <= hi
        if calibrate:
            at_half = s["at_0.5"]
            assert at_half["ci"]["threshold"] == 0.5 and at_half["ci"]["auc"] == s["ci"]["auc"]  # same resamples
            lo, hi = at_half["ci"]["accuracy"]
            assert lo <= at_half["accuracy"] <= hi
    assert dumps_json(fit_rule_and_score(preds, calibrate, groups)[1]) == dumps_json(scores)  # bit-identical rerun
    items = fit_rule_and_score(preds, calibrate)[1]["val"]["ci"]
    assert items["resampled"] == "items" and items["auc"] != scores["val"]["ci"]["auc"]


def test_calibration_fits_a_temperature_on_validation_and_reports_test_ece():
    """Overconfident logits (3x the true log-odds): the temperature found on val is near 3, the test ECE drops, and
    the threshold lives on the calibrated scale (the same decisions as the raw scale's cut, ``at_0.5`` unchanged)."""
    from dfmm.models.scoring import sigmoid
    from dfmm.training.rule_fitting import fit_rule_and_score

    rng = np.random.default_rng(0)

    def split(n):
        z = rng.normal(size=n) * 1.5
        y = (rng.random(n) < sigmoid(z)).astype(np.float32)
        return {"logits": 3.0 * z, "labels": y, "index": np.arange(n)}

    preds = {"val": split(4000), "test": split(4000)}
    rule, scores = fit_rule_and_score(preds, True)
    assert 2.6 < rule.temperature < 3.4
    cal = scores["test"]["calibration"]
    assert cal["temperature"] == rule.temperature and cal["ece_after"] < 0.5 * cal["ece_before"]
    assert cal["brier_after"] < cal["brier_before"]
    raw_half = ((sigmoid(preds["test"]["logits"]) >= 0.5) == (preds["test"]["labels"] == 1)).mean()
    assert scores["test"]["at_0.5"]["accuracy"] == pytest.approx(raw_half)
    plain_rule, plain = fit_rule_and_score(preds, False)
    assert plain_rule.temperature == 1.0 and plain_rule.threshold == 0.5 and "calibration" not in plain["test"]


def test_paired_comparison_needs_the_same_items():
    from dfmm.training.comparisons import compare_on_test

    y = np.array([0, 1] * 50)
    good = {"labels": y, "probs": y * 0.6 + 0.2}
    weak = {"labels": y, "probs": np.full(100, 0.5)}
    c = compare_on_test("good", good, "weak", weak)
    assert c["a"] == "good" and c["b"] == "weak" and c["auc_a"] == 1.0 and c["auc_b"] == 0.5
    assert c["difference"] == pytest.approx(0.5) and c["excludes_zero"]
    with pytest.raises(ValueError, match="not scored on the same items"):
        compare_on_test("good", good, "other", {"labels": 1 - y, "probs": y})


def test_json_writer_turns_nan_into_null(tmp_path):
    values = {"auc": math.nan, "ece": np.float32("nan"), "inf": math.inf, "curve": np.array([0.5, np.nan]), "n": 3}
    text = dumps_json(values)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"auc": None, "ece": None, "inf": None, "curve": [0.5, None], "n": 3}
    path = NotebookContext(None, tmp_path, tmp_path / "metrics").record("run", {"test": values})  # type: ignore[arg-type]
    read = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert read["test"]["auc"] is None
    # what reads it back takes null where NaN was
    rows, _ = headline_table({"visual": {"recipes": {"r": read}}})
    assert [c.text for c in rows[0].cells][:4] == ["3", "–", "–", "–"]


def _robustness() -> dict:
    """An ``evaluation`` section with a robustness sweep and format control, built as notebook 06 builds them."""
    from dfmm.analysis.robustness import interpret_format_control
    from dfmm.metrics import metrics_with_ci, paired_bootstrap

    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 60)
    groups = [f"g{i // 2}" for i in range(120)]
    clean = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.2, 120), 0, 1)

    def branch(shifts: dict) -> dict:
        out = {"n": 120, "clean": metrics_with_ci(y, clean, 0.5, groups), "perturbations": {}}
        for name, noise in shifts.items():
            probs = np.clip(clean + rng.normal(0, noise, 120), 0, 1) if noise else clean
            out["perturbations"][name] = {
                "metrics": metrics_with_ci(y, probs, 0.5, groups),
                "auc_change": paired_bootstrap(y, clean, probs, "auc", groups, threshold_a=0.5, threshold_b=0.5),
            }
        return out

    visual = branch({"jpeg_30": 0.4, "blur_2": 0.05, "png": 0.0, "jpeg_95": 0.3})
    visual["formats"] = {"real": {"JPEG": 60}, "fake": {"PNG": 60}}
    fc = {k: v for k, v in visual.items() if k != "perturbations"}
    fc["perturbations"] = {k: visual["perturbations"][k] for k in ("png", "jpeg_95")}
    fc["interpretation"] = interpret_format_control(fc)
    return {"robustness": {"visual": visual, "text": branch({"truncate_64": 0.3})}, "format_control": fc}


def test_front_pages_list_the_robustness_sweep_and_the_format_control(tmp_path):
    from dfmm.study.report import ROBUSTNESS_COLUMNS, robustness_summary

    from .test_traceability import untraced

    cfg = load_config([ROOT / "params" / "demo.yaml"])
    m = _metrics()
    m["evaluation"] |= _robustness()
    r = robustness_summary(m)
    sweep = m["evaluation"]["robustness"]
    assert [(row.branch, row.perturbation) for row in r["rows"]] == [
        ("visual", "clean"),
        ("visual", "jpeg_30"),
        ("visual", "blur_2"),
        ("visual", "png"),
        ("visual", "jpeg_95"),
        ("text", "clean"),
        ("text", "truncate_64"),
    ]
    jpeg = sweep["visual"]["perturbations"]["jpeg_30"]
    lo, hi = jpeg["metrics"]["ci"]["auc"]
    assert r["rows"][1].auc == f"{jpeg['metrics']['auc']:.3f} [{lo:.3f}, {hi:.3f}]"
    d, (dlo, dhi) = jpeg["auc_change"]["difference"], jpeg["auc_change"]["ci"]
    assert r["rows"][1].change == f"{d:.3f} [{dlo:.3f}, {dhi:.3f}]" and d > 0 and r["rows"][1].excludes_zero == "yes"
    assert r["rows"][3].change == "0.000 [0.000, 0.000]" and r["rows"][3].excludes_zero == "no"  # png: same scores
    assert [row.perturbation for row in r["format_rows"]] == ["clean", "png", "jpeg_95"]
    assert r["sizes"] == [("visual", 120), ("text", 120)] and r["resamples"] == "1,000" and r["unit"] == "group"
    assert r["formats"] == "real: JPEG 60; fake: PNG 60"
    assert r["interpretation"].startswith("Lossless PNG re-encode (no pixel changed): AUC change exactly 0")
    index = write_index(cfg, m, ["06_evaluation"], tmp_path / "index.html")
    card = write_data_card(cfg, m, tmp_path / "DATA_CARD.md")
    html, md = index.read_text(), card.read_text()
    assert '<a href="#robustness">Robustness</a>' in html and '<h2 id="robustness">Robustness</h2>' in html
    assert "<th>" + "</th><th>".join(ROBUSTNESS_COLUMNS) + "</th>" in html
    assert "<td>visual</td><td><code>jpeg_30</code></td><td>" + r["rows"][1].auc in html
    assert "## Robustness" in md and "| " + " | ".join(ROBUSTNESS_COLUMNS) + " |" in md
    assert f"| text | `truncate_64` | {r['rows'][-1].auc} | {r['rows'][-1].change} |" in md
    for page in (html, md):
        assert "Format control" in page and r["interpretation"] in page and "real: JPEG 60; fake: PNG 60" in page
    # every number on both pages is in metrics.json (the config adds only its settings)
    from dfmm.study.report import seed_means

    m["seed_means"] = seed_means(m)  # as ``dfmm study`` stores them
    index = write_index(cfg, m, ["06_evaluation"], tmp_path / "index.html")
    card = write_data_card(cfg, m, tmp_path / "DATA_CARD.md")
    cfg.save(tmp_path / "config.json")
    metrics, config = json.loads(dumps_json(m)), json.loads((tmp_path / "config.json").read_text())
    assert untraced(index, metrics, config) == [] and untraced(card, metrics, config) == []
    # without a sweep: no section, no link
    del m["evaluation"]["robustness"], m["evaluation"]["format_control"]
    assert robustness_summary(m) is None
    assert "robustness" not in write_index(cfg, m, [], tmp_path / "plain.html").read_text().lower()


def test_metrics_sections_are_checked_when_recorded_and_when_assembled(tmp_path):
    """The metrics.json contract (dfmm.study.sections): a malformed section fails in the notebook that records it, a
    missing one fails the assembly naming the notebook that should have written it."""
    import numpy as np

    from dfmm.errors import StudyError
    from dfmm.study.sections import check_section, check_sections

    ctx = NotebookContext(cfg=None, report_dir=tmp_path, metrics_dir=tmp_path / "m")  # type: ignore[arg-type]
    good = {
        "counts": {"real": np.int64(3)},
        "deletion": {},
        "median_ms_one_image": np.float32(4.5),
        "image_size": 64,
        "layer": "conv_head",
    }
    assert json.loads(ctx.record("gradcam", good).read_text())["counts"] == {"real": 3}
    with pytest.raises(ValueError, match=r"metrics section gradcam: missing key 'layer'"):
        ctx.record("gradcam", {k: v for k, v in good.items() if k != "layer"})
    with pytest.raises(ValueError, match=r"gradcam.image_size: expected int, got str"):
        check_section("gradcam", {**json.loads(dumps_json(good)), "image_size": "64"})
    run = {
        "branch": "visual",
        "recipe": "card",
        "seed": 0,
        "best_epoch": 1,
        "history": [],
        "checkpoint": "x.pt",
        "val": {"n": 4, "accuracy": 0.5, "balanced_accuracy": 0.5, "auc": None},
        "test": {"n": 4},
    }
    with pytest.raises(ValueError, match=r"visual.recipes.card.test: missing key 'accuracy'"):
        check_section(
            "visual",
            {
                "backbone": {},
                "report_recipe": "card",
                "recipes": {"card": run},
                "linear_probe": {},
                "speed": {},
                "checkpoint": "x.pt",
            },
        )
    check_section("anything_else", {"free": "form"})
    with pytest.raises(StudyError, match=r"notebook 05_gradcam_analysis did not record its metrics section 'gradcam'"):
        check_sections({}, ["05_gradcam_analysis"])
    with pytest.raises(StudyError, match=r"notebook 05_gradcam_analysis: metrics section gradcam.layer: expected str"):
        check_sections({"gradcam": {**json.loads(dumps_json(good)), "layer": 3}}, ["05_gradcam_analysis"])
    check_sections({}, ["01_data_exploration"][:0])  # no notebook ran: nothing is required
