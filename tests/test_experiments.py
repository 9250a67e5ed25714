"""The experiment helpers the notebooks call: one recipe over seeds, and the fusion's image-text pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dfmm.experiments import BranchOutputs, BranchRun, SeedRuns, pair_outputs, train_fusion, train_seeds
from dfmm.metrics import mean_std
from dfmm.models import FusionEnsemble


def _run(seed: int, auc: float) -> BranchRun:
    val = {"accuracy": 0.6 + seed / 100, "balanced_accuracy": 0.6, "auc": auc, "ap": 0.7}
    return BranchRun(
        branch="visual",
        recipe="improved",
        seed=seed,
        history=[],
        best_epoch=1,
        val=val,
        test=dict(val),
        backbone={},
        train_size=10,
        seconds=1.0,
    )


def test_train_seeds_trains_each_seed_once_and_saves_only_the_first(tiny_cfg, monkeypatch):
    import dfmm.experiments as experiments

    calls = []

    def fake_train(cfg, recipe, splits, *, seed, save, states):
        assert states == cfg.run_dir / "resume"  # every seed's training can be resumed
        calls.append((recipe, seed, save))
        return _run(seed, 0.7 + seed / 10)

    monkeypatch.setattr(experiments, "train_visual", fake_train)
    cfg = tiny_cfg
    trained = train_seeds(cfg, "visual", "card", {})
    assert calls == [("card", cfg.study.seed + i, i == 0) for i in range(cfg.visual.seeds)]
    calls.clear()
    monkeypatch.setattr(cfg.visual.recipes["improved"], "seeds", 3)
    trained = train_seeds(cfg, "visual", "improved", {})
    s = cfg.study.seed
    assert calls == [("improved", s, True), ("improved", s + 1, False), ("improved", s + 2, False)]
    assert trained.first is trained.runs[0] and trained.first.seed == s
    assert trained.summary() == mean_std([r.val for r in trained.runs]) and trained.summary()["seeds"] == 3


def test_seed_runs_record_what_metrics_json_holds_for_a_recipe():
    runs = SeedRuns([_run(0, 0.7), _run(1, 0.8)])
    record = runs.record()
    assert {k: record[k] for k in ("seed", "val", "checkpoint")} == {"seed": 0, "val": runs.first.val, "checkpoint": ""}
    assert record["seeds_summary"]["auc"] == pytest.approx(0.75)
    assert record["seed_runs"] == [r.val | {"seed": r.seed} for r in runs.runs]
    assert "val accuracy 0.600" in runs.first.describe() and "skipped" not in runs.first.describe()


def test_train_fusion_steps_on_the_pairs_and_reports_the_weights_after_each_step():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 40).astype(float)
    visual = BranchOutputs(rng.normal(size=(40, 3)), 4 * labels - 2 + rng.normal(size=40), labels)
    text = BranchOutputs(rng.normal(size=(40, 2)), rng.normal(size=40), rng.integers(0, 2, 40).astype(float))
    pairs = pair_outputs(visual, text, seed=0, rule="both")
    fusion = FusionEnsemble(3, 2)
    history = train_fusion(fusion, pairs, epochs=30, lr=0.05, seed=0)
    assert [h["epoch"] for h in history] == list(range(1, 31)) and not fusion.training
    w = fusion.weights().detach().numpy()
    assert (history[-1]["w_visual"], history[-1]["w_text"]) == (float(w[0]), float(w[1]))
    assert history[-1]["loss"] < history[0]["loss"]
    again = FusionEnsemble(3, 2)
    assert train_fusion(again, pairs, epochs=30, lr=0.05, seed=0) == history  # full batch, seeded: repeatable
    state = again.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in fusion.state_dict().items())


def test_best_epoch_is_chosen_on_the_fixed_subset_and_the_kept_model_scored_on_the_whole_split(tmp_path):
    """data.epoch_val_*: each epoch is scored on a fixed, balanced subset of val; val/test metrics cover the whole
    splits."""
    from dfmm.config import load_config
    from dfmm.data import epoch_val_subset, image_splits, text_splits
    from dfmm.experiments import train_text, train_visual

    from .conftest import ROOT, tiny_overrides

    runs = ["study.name=subset", f"study.runs_dir={tmp_path / 'runs'}", f"study.reports_dir={tmp_path / 'r'}"]
    subset = ["data.epoch_val_images=4", "data.epoch_val_texts=6"]
    cfg = load_config([ROOT / "params" / "demo.yaml"], runs + tiny_overrides() + subset)
    images, texts = image_splits(cfg), text_splits(cfg)
    chosen = epoch_val_subset(images["val"], 4, cfg.study.seed)
    assert len(chosen) == 4 and chosen.counts() == {"real": 2, "fake": 2}
    assert list(chosen.names) == list(epoch_val_subset(images["val"], 4, cfg.study.seed).names)  # fixed
    assert epoch_val_subset(images["val"], 0, 0) is images["val"]
    for run, splits, n in (
        (train_visual(cfg, "improved", images, save=False), images, 4),
        (train_text(cfg, "improved", texts, save=False), texts, 6),
    ):
        assert [h["val_items"] for h in run.history] == [n] * cfg.visual.epochs
        assert run.val["n"] == len(splits["val"]) > n
        assert run.test["n"] == len(splits["test"])
