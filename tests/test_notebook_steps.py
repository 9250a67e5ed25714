"""The functions notebooks 01-06 call instead of long cells: each gives the values the cell used to compute."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dfmm.data.text import TextSet
from dfmm.metrics import binary_metrics, paired_bootstrap
from dfmm.models.scoring import sigmoid
from dfmm.training.experiments import BranchRun
from dfmm.training.fusion import PairScores


def _run(recipe: str, logits, labels, calibration=None, threshold=0.5, temperature=1.0) -> BranchRun:
    pred = {"logits": np.asarray(logits, float), "labels": np.asarray(labels), "index": np.arange(len(labels))}
    test = {"calibration": calibration} if calibration else {}
    return BranchRun(
        "visual",
        recipe,
        0,
        [],
        1,
        {},
        test,
        {},
        len(labels),
        1.0,
        predictions={"test": pred},
        extra={"threshold": threshold, "temperature": temperature},
    )


def test_outcome_groups_split_every_face_into_one_cell():
    from dfmm.analysis.explanations import outcome_groups

    y = np.array([1, 1, 0, 0, 1, 0])
    called = np.array([1, 0, 0, 1, 1, 0])
    groups = outcome_groups(y, called)
    counts = {k.split(" (")[0]: int(v.sum()) for k, v in groups.items()}
    assert counts == {"true positive": 2, "true negative": 2, "false positive": 1, "false negative": 1}
    assert (np.sum(list(groups.values()), axis=0) == 1).all()  # each face in exactly one cell


def test_text_length_figure_gives_each_class_median_and_p90():
    from dfmm.analysis.exploration import text_length_figure

    texts = TextSet(["a b", "a b c d", "a " * 9, "x"], np.array([0, 0, 1, 1]), ["1", "2", "3", "4"])
    fig, stats = text_length_figure({"train": texts, "other": texts})
    assert len(fig.axes) == 2
    assert stats["train:human"] == {"median_words": 3.0, "p90_words": pytest.approx(3.8)}
    assert stats["other:ai"]["median_words"] == 5.0 and set(stats) == {
        "train:human",
        "train:ai",
        "other:human",
        "other:ai",
    }


def test_recipe_comparisons_pair_the_main_recipe_with_each_other_and_each_floor():
    from dfmm.training.baselines import recorded
    from dfmm.training.comparisons import calibration_curves, recipe_comparisons, run_scores

    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 20)
    order = rng.permutation(40)  # predictions come back in dataset order of the readable items: index maps them
    card = _run("card", rng.normal(size=40) + y, y, threshold=0.6, temperature=2.0)
    improved = _run("improved", rng.normal(size=40) + 2 * y, y)
    for run in (card, improved):
        run.predictions["test"]["index"] = order
    floor = {"labels": y, "probs": rng.random(40)}
    split_groups = [f"g{i // 2}" for i in range(40)]
    out = recipe_comparisons(
        {"card": card, "improved": improved}, "improved", split_groups, {"probe": floor, "x": None}
    )
    assert [(c["a"], c["b"]) for c in out] == [("visual improved", "visual card"), ("visual improved", "probe")]
    groups = [split_groups[i] for i in order]
    mine = sigmoid(improved.predictions["test"]["logits"])
    theirs = sigmoid(card.predictions["test"]["logits"] / 2.0)  # the card run's own temperature
    np.testing.assert_allclose(run_scores(card)["probs"], theirs)
    for got, other in zip(out, (theirs, floor["probs"]), strict=True):
        want = paired_bootstrap(y, mine, other, metric="auc", groups=groups, seed=0)
        assert (got["difference"], got["ci"], got["p_value"]) == (want["difference"], want["ci"], want["p_value"])
    assert calibration_curves(card) is None  # its recipe did not calibrate: no "calibration" in its test metrics
    calibrated = _run("c", [2.0, -2.0], [1, 0], calibration={"temperature": 2.0}, temperature=2.0)
    (before, after) = calibration_curves(calibrated).values()
    np.testing.assert_allclose(before[1], sigmoid(np.array([2.0, -2.0])))
    np.testing.assert_allclose(after[1], sigmoid(np.array([1.0, -1.0])))
    probe = {"val": {"auc": 0.6}, "scores": floor}
    assert recorded(probe) == {"val": {"auc": 0.6}} and "scores" in probe and recorded(None) is None


def _pairs(n: int = 60, seed: int = 0) -> PairScores:
    rng = np.random.default_rng(seed)
    yv, yt = rng.integers(0, 2, n), rng.integers(0, 2, n)
    f = lambda y, d: rng.normal(size=(n, d)).astype(np.float32) + y[:, None]  # noqa: E731
    return PairScores(
        f(yv, 4),
        (2 * yv - 1 + rng.normal(size=n)).astype(np.float32),
        yv,
        f(yt, 3),
        (yt - 0.5 + rng.normal(size=n)).astype(np.float32),
        yt,
        (yv | yt).astype(np.float32),
    )


def test_fit_fusion_variants_choose_on_held_out_pairs_and_repeat_exactly():
    from dfmm.training.fusion import fit_fusion_variants, fused_probs

    pairs = _pairs()
    fits = fit_fusion_variants(pairs, attention=True, epochs=5, lr=0.05, seed=3)
    assert list(fits.modules) == ["weighted", "weighted + attention"]
    assert len(fits.held) == 12 and len(fits.fit) == 48  # 20% held out to choose
    for name, module in fits.modules.items():
        assert fits.selection[name] == binary_metrics(fits.held.labels, fused_probs(module, fits.held))
    assert fits.chosen == max(fits.selection, key=lambda n: fits.selection[n]["auc"])
    meta = fits.meta("either")
    assert meta["variant"] == fits.chosen and meta["attention"] == (fits.chosen != "weighted")
    assert (meta["visual_dim"], meta["text_dim"], meta["pair_rule"]) == (4, 3, "either")
    assert meta["weights"] == fits.weights()[fits.chosen] and sum(meta["weights"].values()) == pytest.approx(1.0)
    torch.manual_seed(123)  # whatever the global generator holds, the seed alone fixes every variant
    again = fit_fusion_variants(pairs, attention=True, epochs=5, lr=0.05, seed=3)
    assert again.histories == fits.histories and again.selection == fits.selection
    assert list(fit_fusion_variants(pairs, attention=False, epochs=2, lr=0.05, seed=3).modules) == ["weighted"]


def test_describe_speed_names_both_rates():
    from dfmm.training.speed import describe_speed

    visual = {"ours_img_s": 10, "plain_img_s": 11, "ratio": 10 / 11, "steps": 4, "batch": 8, "device": "cpu"}
    assert describe_speed(visual) == "ours 10 img/s vs plain 11 img/s: ratio 0.91 (4 batches of 8, cpu)"
    text = {
        "ours_bucketed_samples_s": 30,
        "max_length": 512,
        "fixed_samples_s": 10,
        "ratio": 3.0,
        "n": 32,
        "median_tokens": 120.4,
        "device": "cpu",
    }
    assert describe_speed(text) == "bucketed 30 vs fixed-512 10 samples/s: 3.00x (32 texts, median 120 tokens, cpu)"
    assert "skipped" in describe_speed(None)


def test_a_notebook_run_interactively_writes_under_runs_not_reports(tmp_path, monkeypatch):
    import dfmm.study.notebook as notebook
    from dfmm.config import load_config

    from .conftest import ROOT

    cfg = load_config(
        [ROOT / "params" / "demo.yaml"],
        [f"study.runs_dir={tmp_path / 'runs'}", f"study.reports_dir={tmp_path / 'reports'}"],
    )
    monkeypatch.setattr(notebook, "load_config", lambda params: cfg)
    monkeypatch.chdir(ROOT)  # notebook_setup moves to the project root: restored after the test
    ctx = notebook.notebook_setup(None, ["params/demo.yaml"], None)
    assert ctx.report_dir == cfg.run_dir / "report" and ctx.figures.parent == tmp_path / "runs" / "demo" / "report"
    assert not (tmp_path / "reports").exists()


def test_plots_for_the_evaluation_notebook():
    from dfmm.analysis.plots import plot_auc_intervals, plot_clip_frames, plot_fusion_weights, plot_length_vs_score

    rows = {"visual (test)": {"auc": 0.8, "ci": {"auc": [0.7, 0.9]}}, "lfw (images)": {"auc": 0.5}}
    fig = plot_auc_intervals(rows)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(rows)
    frames = [{"time_s": 0.0, "probability_fake": 0.9}, {"time_s": 1.0, "probability_fake": None}]
    clips = [
        {"clip": "a", "label": 1, "per_frame": frames, "frames": 2, "frames_with_face": 1},
        {"clip": "b", "error": "x"},
    ]
    fig = plot_clip_frames(clips, 0.4, face_crop=True)
    assert "face in 1/2 frames" in fig.axes[0].get_title(loc="left") and "unreadable" in fig.axes[1].get_title(
        loc="left"
    )
    assert len(plot_length_vs_score([10, 20], [0.2, 0.9], [0, 1]).axes[0].collections) == 2
    history = {"weighted": [{"epoch": 1, "w_visual": 0.5}, {"epoch": 2, "w_visual": 0.6}]}
    assert list(plot_fusion_weights(history).axes[0].lines[0].get_ydata()) == [0.5, 0.6]


def test_explanations_on_the_tiny_checkpoints(tiny_models):
    from dfmm.analysis import explanations
    from dfmm.data import image_splits, text_splits
    from dfmm.serving.evaluate import score_branch
    from dfmm.serving.explain import GradCamExplainer
    from dfmm.serving.inference import load_model

    cfg = tiny_models["cfg"]
    text_model, _ = load_model(tiny_models["text"])
    texts = text_splits(cfg)["test"]
    pred = score_branch(text_model, "text", texts, 8)
    examples = explanations.attribution_examples(text_model, texts, pred, per_kind=1)
    rule = text_model.rule("text")
    right = rule.is_fake(pred["probs"]) == (pred["labels"] == 1)
    assert [e.kind for e in examples] == ["correct"] * min(1, right.sum()) + ["wrong"] * min(1, (~right).sum())
    for e in examples:
        assert 0 <= e.p_ai <= 1 and e.html.startswith("<div") and set(e.record()) == {"kind", "label", "p_ai"}
    shown = [j for pool in (right, ~right) for j in np.flatnonzero(pool)[:1]]  # the first correct, the first wrong
    assert [(e.p_ai, e.label) for e in examples] == [(float(pred["probs"][j]), int(pred["labels"][j])) for j in shown]

    model, _ = load_model(tiny_models["visual"])
    faces_set = image_splits(cfg)["test"]
    scores = score_branch(model, "visual", faces_set, 8)
    faces = explanations.FaceBatches(model, faces_set, scores["index"])
    x = faces([0, 1, 2])
    assert tuple(x.shape) == (3, 3, 64, 64) and x.is_contiguous(memory_format=torch.channels_last)
    with GradCamExplainer(model.visual, model.rule("visual"), tta=model.visual_spec.tta) as explainer:
        y = scores["labels"].astype(int)
        groups = explanations.outcome_groups(y, model.rule("visual").is_fake(scores["probs"]))
        fig = explanations.gradcam_gallery(explainer, faces, groups, scores["probs"], 2)
        assert len(fig.axes) == 8
        faith = explanations.deletion_checks(explainer, x, (0.2,))
        assert list(faith) == [0.2] and faith[0.2]["n"] == 3
        assert explanations.gradcam_ms(explainer, faces([0]), warmup=1, runs=2) > 0
        maps = explanations.explained_maps(explainer, x, "fake", chunk=2)
        np.testing.assert_allclose(maps, explainer(x, "fake")[0], atol=1e-5)
    # closed (as notebook 05's speed cell does), the explainer hooks the layer again: that cell can be rerun
    np.testing.assert_allclose(explainer(x, "fake")[0], maps, atol=1e-5)
    explainer.close()
