"""The experiment helpers the notebooks call: one recipe over seeds, and the fusion's image-text pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dfmm.metrics import mean_std
from dfmm.models import FusionEnsemble
from dfmm.training.experiments import BranchRun, SeedRuns, train_seeds
from dfmm.training.fusion import BranchOutputs, pair_outputs, train_fusion


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


def test_train_seeds_trains_each_seed_once_and_saves_and_tests_only_the_first(tiny_cfg, monkeypatch):
    import dfmm.training.experiments as experiments

    calls = []

    def fake_train(spec, cfg, recipe, splits, *, seed, save, states, test):
        assert spec is experiments.VISUAL
        assert states == cfg.run_dir / "resume"  # every seed's training can be resumed
        assert test == save  # the replicates are scored on validation only
        calls.append((recipe, seed, save))
        return _run(seed, 0.7 + seed / 10)

    monkeypatch.setattr(experiments, "train_branch", fake_train)
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


def test_best_epoch_is_chosen_on_the_fixed_subset_and_the_kept_model_scored_on_the_whole_split(tmp_path, monkeypatch):
    """data.epoch_val_*: each epoch is scored on a fixed, balanced subset of val, the same items for every training
    seed; val/test metrics cover the whole splits."""
    import dfmm.training.experiments as experiments
    from dfmm.config import load_config
    from dfmm.data import epoch_val_rows, image_splits, text_splits

    from .conftest import ROOT, tiny_overrides

    runs = ["study.name=subset", f"study.runs_dir={tmp_path / 'runs'}", f"study.reports_dir={tmp_path / 'r'}"]
    subset = ["data.epoch_val_images=4", "data.epoch_val_texts=6"]
    cfg = load_config([ROOT / "params" / "demo.yaml"], runs + tiny_overrides() + subset)
    images, texts = image_splits(cfg), text_splits(cfg)
    rows = epoch_val_rows(images["val"], 4, cfg.study.seed)
    assert len(rows) == 4 and sorted(images["val"].labels[rows].tolist()) == [0, 0, 1, 1]
    assert len(epoch_val_rows(images["val"], 0, 0)) == len(images["val"])

    seen = []  # the labels and dataset positions each fit validated on
    fit = experiments.fit

    def recording_fit(model, train, val, *args, **kwargs):
        batches = list(val)
        seen.append(([i for b in batches for i in b["index"].tolist()], len(val.dataset)))
        return fit(model, train, val, *args, **kwargs)

    monkeypatch.setattr(experiments, "fit", recording_fit)
    first = experiments.train_visual(cfg, "improved", images, seed=0, save=False)
    replicate = experiments.train_visual(cfg, "improved", images, seed=1, save=False, test=False)
    assert seen[0] == seen[1] == (rows.tolist(), 4)  # positions in val, the same for both seeds
    assert replicate.test == {} and set(replicate.predictions) == {"val"} and replicate.val["n"] == len(images["val"])
    text = experiments.train_text(cfg, "improved", texts, save=False)
    assert seen[2][1] == 6
    for run, splits, n in ((first, images, 4), (text, texts, 6)):
        assert [h["val_items"] for h in run.history] == [n] * len(run.history) and run.history
        assert run.val["n"] == len(splits["val"]) > n
        assert run.test["n"] == len(splits["test"])


def test_one_trainer_spec_per_branch_name_the_cli_offers():
    from dfmm.choices import BRANCH_NAMES
    from dfmm.training.experiments import BRANCHES, TEXT, VISUAL

    assert tuple(BRANCHES) == BRANCH_NAMES and BRANCHES["visual"] is VISUAL and BRANCHES["text"] is TEXT
    assert VISUAL.mirrored and not TEXT.mirrored  # only images have a mirrored view to score
