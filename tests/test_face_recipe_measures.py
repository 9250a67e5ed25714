"""Issue 26: notebook 07's face recipes beside the shipped branch under post-processing and on the clips."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from dfmm.analysis.face_recipe_measures import RECIPE_SWEEP, recipe_clips, recipe_sweep
from dfmm.analysis.sweeps import _subset
from dfmm.data import image_splits
from dfmm.data.labels import FAKE, REAL
from dfmm.serving.evaluate import score_images, score_videos
from dfmm.serving.inference import load_model


@pytest.fixture(scope="module")
def vis(tiny_models):
    return load_model(tiny_models["visual"])[0]


def _reversed(model):
    """The same detector with its head's sign flipped: every logit negated, so every AUC becomes 1 - AUC."""
    flipped = copy.deepcopy(model)
    with torch.no_grad():
        flipped.visual.head.weight.neg_()
        flipped.visual.head.bias.neg_()
    return flipped


def test_recipe_sweep_pairs_every_model_on_the_same_perturbed_faces(tiny_models, vis):
    test = image_splits(tiny_models["cfg"])["test"]
    models = {"shipped": vis, "same": vis, "reversed": _reversed(vis)}
    rows = recipe_sweep(models, test, max_items=20, seed=0, batch_size=8)
    by = {(r["model"], r["condition"]): r for r in rows}
    assert [r["condition"] for r in rows] == ["clean", *RECIPE_SWEEP] * 3
    assert len({r["n"] for r in rows}) == 1 and rows[0]["n"] <= 20
    # the clean row is the AUC of the model's own scores on the subset
    faces = _subset(test, 20, 0)
    scored = score_images(vis, faces, 8)
    assert by[("shipped", "clean")]["auc"] == pytest.approx(roc_auc_score(scored["labels"], scored["probs"]))
    for condition in ("clean", *RECIPE_SWEEP):
        shipped = by[("shipped", condition)]
        assert "minus_shipped" not in shipped
        assert by[("same", condition)]["minus_shipped"] == 0 and by[("same", condition)]["minus_shipped_ci"] == [0, 0]
        flipped = by[("reversed", condition)]
        assert flipped["auc"] == pytest.approx(1 - shipped["auc"], abs=1e-9)
        assert flipped["minus_shipped"] == pytest.approx(1 - 2 * shipped["auc"], abs=1e-9)
        lo, hi = flipped["minus_shipped_ci"]
        assert lo <= flipped["minus_shipped"] <= hi
        if condition == "clean":
            assert "drop" not in shipped
        else:  # clean minus perturbed, the model's own
            assert shipped["drop"] == pytest.approx(by[("shipped", "clean")]["auc"] - shipped["auc"])


def test_recipe_sweep_scores_perturbed_pixels_not_the_clean_ones(tiny_models, vis):
    test = image_splits(tiny_models["cfg"])["test"]
    rows = recipe_sweep({"shipped": vis}, test, ("downscale_0.25",), max_items=20, seed=0, batch_size=8)
    faces = _subset(test, 20, 0)
    from dfmm.analysis.perturbations import perturb_images

    perturbed = score_images(vis, perturb_images(faces, "downscale_0.25", 0), 8)
    assert rows[1]["auc"] == pytest.approx(roc_auc_score(perturbed["labels"], perturbed["probs"]))


def test_recipe_clips_summarise_each_model_per_source(tiny_models, vis, tmp_path):
    from dfmm.data.synthetic import write_videos

    root = write_videos(tmp_path / "v", 4, 64, seed=0, frames=20, fps=10)
    rows = recipe_clips({"a": vis, "b": _reversed(vis)}, root, 4, "mean", False)
    assert [(r["model"], r["source"]) for r in rows] == [
        (m, s) for m in ("a", "b") for s in ("other", "pooled", "pooled, recentred per source")
    ]
    clips = score_videos(vis, str(root), 4, "mean", False)
    p = np.array([c["probability_fake"] for c in clips])
    y = np.array([c["label"] for c in clips])
    pooled = next(r for r in rows if r["model"] == "a" and r["source"] == "pooled")
    assert (pooled["n_real"], pooled["n_fake"]) == (int((y == REAL).sum()), int((y == FAKE).sum()))
    assert pooled["mean_p_real"] == pytest.approx(p[y == REAL].mean())
    assert pooled["mean_p_fake"] == pytest.approx(p[y == FAKE].mean())
