"""dfmm.metrics: point metrics against sklearn and hand-computed values, the vectorised bootstrap against the
same resamples listed out and scored by sklearn, paired tests, calibration."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    brier_score_loss,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from dfmm.analysis.plots import plot_reliability
from dfmm.metrics import (
    BOOTSTRAP_METRICS,
    _resample_units,
    _resample_weights,
    _tpr_at_fpr,
    _units,
    _weighted_metrics,
    binary_metrics,
    bootstrap_ci,
    fit_temperature,
    metrics_with_ci,
    paired_bootstrap,
    reliability_curve,
)


def _scored(n: int, seed: int = 0, sep: float = 1.0, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Balanced labels and P(fake) scores whose logits are shifted by ``sep`` for fakes."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    p = 1 / (1 + np.exp(-(rng.normal(size=n) + sep * (y - 0.5))))
    return y, (np.round(p, 2) if ties else p)


# ------------------------------------------------------------------------------------------- binary_metrics
def test_existing_keys_unchanged_and_new_keys_present():
    y, p = [0, 0, 1, 1, 1], [0.1, 0.6, 0.4, 0.7, 0.9]
    m = binary_metrics(y, p)
    assert m["n"] == 5 and m["confusion"] == [[1, 1], [1, 2]]
    assert m["accuracy"] == 3 / 5 and m["balanced_accuracy"] == pytest.approx(0.5 * (1 / 2 + 2 / 3))
    assert m["auc"] == pytest.approx(roc_auc_score(y, p)) and 0 < m["ap"] <= 1
    assert {"precision", "recall", "f1", "eer", "tpr_at_1fpr", "tpr_at_5fpr", "ece", "brier"} <= set(m)
    assert m["undefined"] == {}
    assert m["precision"] == 2 / 3 and m["recall"] == 2 / 3 and m["f1"] == pytest.approx(2 / 3)


def test_threshold_metrics_equal_sklearn():
    y, p = _scored(500, seed=3)
    for t in (0.3, 0.5, 0.62):
        m, pred = binary_metrics(y, p, t), (p >= t).astype(int)
        assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
        assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
        assert m["precision"] == pytest.approx(precision_score(y, pred))
        assert m["recall"] == pytest.approx(recall_score(y, pred))
        assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert binary_metrics(y, p)["brier"] == pytest.approx(brier_score_loss(y, p))


def test_perfect_separation():
    m = binary_metrics([0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert m["auc"] == 1 and m["eer"] == 0 and m["tpr_at_1fpr"] == 1 and m["tpr_at_5fpr"] == 1
    assert m["precision"] == m["recall"] == m["f1"] == 1


def test_eer_and_tpr_interpolated_on_a_tie():
    # ROC (FPR, TPR): (0, 0) -> (0, 0.5) [the 0.9 fake] -> (0.5, 1) [a real and a fake tied at 0.5] -> (1, 1).
    # On the diagonal segment FPR = 0.5 w and FNR = 0.5 - 0.5 w meet at w = 0.5: EER 0.25.
    # TPR at FPR 0.05: 0.5 + (0.05 / 0.5) * 0.5 = 0.55; at 0.01: 0.51.
    m = binary_metrics([0, 1, 0, 1], [0.5, 0.9, 0.1, 0.5])
    assert m["eer"] == pytest.approx(0.25)
    assert m["tpr_at_5fpr"] == pytest.approx(0.55) and m["tpr_at_1fpr"] == pytest.approx(0.51)


def test_tpr_at_fpr_takes_the_highest_tpr_at_that_fpr():
    # 20 reals at 0.00, 0.05, ..., 0.95: one real is exactly 5% FPR. Fakes above the top real: 0.99, 0.97 (TPR 0.2
    # at FPR 0); between the top two reals: 0.93, 0.91 (TPR 0.4 still at FPR 0.05).
    reals = np.arange(20) * 0.05
    fakes = np.array([0.99, 0.97, 0.93, 0.91, 0.62, 0.32, 0.22, 0.12, 0.11, 0.02])
    y = np.r_[np.zeros(20), np.ones(10)]
    m = binary_metrics(y, np.r_[reals, fakes])
    assert m["tpr_at_5fpr"] == pytest.approx(0.4)
    assert m["tpr_at_1fpr"] == pytest.approx(0.2)  # between (0, 0.2) and (0.05, 0.2)
    # After the 0.62 fake TPR is 0.5 (FNR 0.5); FPR reaches 0.5 at the 0.50 real (10 reals at or above it).
    assert m["eer"] == pytest.approx(0.5)


def test_eer_is_where_fpr_meets_fnr():
    y, p = _scored(2000, seed=5, sep=1.5)
    fpr, tpr, thr = roc_curve(y, p)
    eer = binary_metrics(y, p)["eer"]
    i = np.argmin(np.abs(fpr - (1 - tpr)))
    assert abs(eer - fpr[i]) < 2 / 1000 and abs(eer - (1 - tpr[i])) < 2 / 1000


def test_ece_calibrated_vs_shifted():
    rng = np.random.default_rng(0)
    p = rng.random(20_000)
    y = (rng.random(20_000) < p).astype(int)
    assert binary_metrics(y, p)["ece"] < 0.03
    assert binary_metrics(y, np.clip(p + 0.25, 0, 1))["ece"] > 0.15
    # By hand: bin [1/15, 2/15) holds 0.1, 0.1 with one fake: |0.5 - 0.1| * 2/4; bin [13/15, 14/15) holds 0.9, 0.9,
    # both fake: |1 - 0.9| * 2/4. ECE = 0.2 + 0.05.
    rc = reliability_curve([0, 1, 1, 1], [0.1, 0.1, 0.9, 0.9])
    assert rc["ece"] == pytest.approx(0.25) and binary_metrics([0, 1, 1, 1], [0.1, 0.1, 0.9, 0.9])["ece"] == rc["ece"]
    assert rc["count"][1] == 2 and rc["count"][13] == 2 and sum(rc["count"]) == 4 and len(rc["count"]) == 15
    assert rc["frac_fake"][1] == 0.5 and rc["mean_prob"][13] == pytest.approx(0.9) and math.isnan(rc["mean_prob"][0])
    assert reliability_curve([1], [1.0])["count"][14] == 1  # P(fake) = 1 falls in the last bin


def test_one_class_gives_nan_with_reasons_not_an_exception():
    m = binary_metrics([1, 1, 1], [0.2, 0.7, 0.9])
    for k in ("auc", "ap", "eer", "tpr_at_1fpr", "tpr_at_5fpr"):
        assert math.isnan(m[k]) and m["undefined"][k] == "one class only (n real=0, n fake=3)"
    assert m["recall"] == 2 / 3 and m["precision"] == 1 and not math.isnan(m["ece"] + m["brier"])
    json.loads(json.dumps(m))  # serialisable (NaN as the study writes it)
    r = binary_metrics([0, 0], [0.1, 0.2])
    assert math.isnan(r["precision"]) and "no item called fake" in r["undefined"]["precision"]
    assert math.isnan(r["recall"]) and math.isnan(r["f1"]) and r["accuracy"] == 1
    e = binary_metrics([], [])
    assert e["n"] == 0 and math.isnan(e["auc"]) and e["undefined"]["auc"] == "no items"


# ----------------------------------------------------------------------------------------------- bootstrap
def test_vectorised_resamples_equal_sklearn_on_the_items_listed_out():
    y, p = _scored(300, seed=1, ties=True)  # ties exercise the half-credit and the tied ROC points
    unit, k, _ = _units(None, len(y))
    draws, w = _resample_units(k, 6, 7), _resample_weights(unit, k, 6, 7)
    got = _weighted_metrics(y, p, w, 0.5)
    for r in range(6):
        yy, pp = y[draws[r]], p[draws[r]]
        fpr, tpr, _ = roc_curve(yy, pp)
        assert got["auc"][r] == pytest.approx(roc_auc_score(yy, pp), abs=1e-12)
        assert got["tpr_at_5fpr"][r] == pytest.approx(_tpr_at_fpr(fpr, tpr, 0.05), abs=1e-12)
        assert got["tpr_at_5fpr"][r] == pytest.approx(binary_metrics(yy, pp)["tpr_at_5fpr"], abs=1e-12)
        assert got["accuracy"][r] == pytest.approx(accuracy_score(yy, pp >= 0.5), abs=1e-12)
        assert got["balanced_accuracy"][r] == pytest.approx(balanced_accuracy_score(yy, pp >= 0.5), abs=1e-12)


def test_group_resamples_equal_sklearn_on_the_groups_listed_out():
    y, p = _scored(120, seed=2)
    groups = np.array([f"g{i // 3}" for i in range(120)])  # 40 groups of 3
    unit, k, kind = _units(groups, len(y))
    assert (k, kind) == (40, "groups")
    draws, w = _resample_units(k, 4, 3), _resample_weights(unit, k, 4, 3)
    got = _weighted_metrics(y, p, w, 0.5)
    for r in range(4):
        items = np.concatenate([np.flatnonzero(unit == u) for u in draws[r]])  # a group drawn twice: twice
        assert len(items) == 120
        assert got["auc"][r] == pytest.approx(roc_auc_score(y[items], p[items]), abs=1e-12)
        assert got["accuracy"][r] == pytest.approx(accuracy_score(y[items], p[items] >= 0.5), abs=1e-12)


def test_bootstrap_ci_contains_the_estimate_and_is_seeded():
    y, p = _scored(2400, seed=4)
    m = metrics_with_ci(y, p, 0.45)
    ci = m["ci"]
    assert ci["n_resamples"] == 1000 and ci["resampled"] == "items" and ci["n_units"] == 2400
    assert ci["threshold"] == 0.45 and ci["level"] == 0.95 and ci["undefined"] == {}
    for k in BOOTSTRAP_METRICS:
        lo, hi = ci[k]
        assert lo < m[k] < hi, k
    assert bootstrap_ci(y, p, 0.45) == ci
    other = bootstrap_ci(y, p, 0.45, seed=1)
    assert other["auc"] != ci["auc"] and abs(other["auc"][0] - ci["auc"][0]) < 0.01
    json.loads(json.dumps(m))


def test_bootstrap_ci_narrows_as_one_over_root_n():
    def width(n: int) -> float:
        y, p = _scored(n, seed=n)
        lo, hi = bootstrap_ci(y, p, n_resamples=2000)["auc"]
        return hi - lo

    ratio = width(4000) / width(1000)
    assert 0.4 < ratio < 0.62  # 1 / sqrt(4) = 0.5


def test_group_bootstrap_is_wider_when_groups_are_correlated():
    # 100 groups of 12 items sharing their label and most of their score: the effective sample is ~100, not 1,200.
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(100), 12)
    y = g % 2
    logit = np.repeat(rng.normal(size=100), 12) + 0.8 * (y - 0.5) + 0.1 * rng.normal(size=1200)
    p = 1 / (1 + np.exp(-logit))
    by_item, by_group = bootstrap_ci(y, p), bootstrap_ci(y, p, groups=g)
    assert by_group["resampled"] == "groups" and by_group["n_units"] == 100
    for k in ("auc", "accuracy"):
        assert by_group[k][1] - by_group[k][0] > 2 * (by_item[k][1] - by_item[k][0]), k


def test_bootstrap_one_class_is_null_with_a_reason():
    ci = bootstrap_ci([1] * 30, np.linspace(0, 1, 30), n_resamples=50)
    assert ci["auc"] is None and ci["undefined"]["auc"] == "one class only (n real=0, n fake=30)"
    assert ci["accuracy"] is not None and ci["dropped"]["auc"] == 50
    # one real among 40: some resamples miss it and are dropped, the rest give an interval
    y = np.r_[0, np.ones(39)]
    few = bootstrap_ci(y, np.linspace(0, 1, 40), n_resamples=200)
    assert 0 < few["dropped"]["auc"] < 200 and few["auc"] is not None
    assert bootstrap_ci([], [])["undefined"]["auc"] == "no items"


def test_paired_bootstrap_against_itself_and_a_worse_model():
    y, p = _scored(1000, seed=6, sep=1.5)
    same = paired_bootstrap(y, p, p)
    assert same["difference"] == 0 and same["ci"] == [0, 0] and same["excludes_zero"] is False
    assert same["p_value"] == 1
    rng = np.random.default_rng(1)
    worse = np.clip(p + rng.normal(0, 0.3, len(p)), 0, 1)
    d = paired_bootstrap(y, p, worse)
    assert d["a"] == pytest.approx(roc_auc_score(y, p)) and d["b"] == pytest.approx(roc_auc_score(y, worse))
    assert d["difference"] > 0.05 and d["excludes_zero"] is True and d["ci"][0] > 0 and d["p_value"] < 0.01
    flipped = paired_bootstrap(y, worse, p)
    assert flipped["ci"] == pytest.approx([-d["ci"][1], -d["ci"][0]]) and flipped["p_value"] == d["p_value"]
    acc = paired_bootstrap(y, p, worse, metric="accuracy", threshold_b=0.6)
    assert acc["a"] == pytest.approx(binary_metrics(y, p)["accuracy"])
    assert acc["b"] == pytest.approx(binary_metrics(y, worse, 0.6)["accuracy"])
    with pytest.raises(ValueError, match="unknown metric"):
        paired_bootstrap(y, p, p, metric="ap")


def test_paired_bootstrap_one_class():
    r = paired_bootstrap([1] * 10, np.linspace(0, 1, 10), np.linspace(1, 0, 10), n_resamples=20)
    assert math.isnan(r["difference"]) and r["ci"] is None and r["p_value"] is None
    assert r["undefined"]["ci"].startswith("one class only")


# --------------------------------------------------------------------------------------------- calibration
def test_fit_temperature_recovers_the_scale():
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 2, 20_000)
    y = (rng.random(20_000) < 1 / (1 + np.exp(-true_logit))).astype(int)
    t = fit_temperature(y, 2 * true_logit)
    assert abs(t - 2) < 0.15
    assert abs(fit_temperature(y, true_logit) - 1) < 0.1
    over = binary_metrics(y, 1 / (1 + np.exp(-2 * true_logit)))["ece"]
    fixed = binary_metrics(y, 1 / (1 + np.exp(-2 * true_logit / t)))["ece"]
    assert fixed < 0.03 < over
    assert fit_temperature([1, 1], [0.3, 2.0]) == 1.0


def test_plot_reliability():
    y, p = _scored(500)
    fig = plot_reliability({"model": (y, p), "shifted": (y, np.clip(p + 0.2, 0, 1))}, "val")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("model (ECE ") and ax.get_title() == "val" and len(fig.axes) == 2
