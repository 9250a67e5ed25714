from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from dfmm.config import Recipe
from dfmm.data import image_splits, text_splits
from dfmm.training.baselines import tfidf_baseline
from dfmm.training.experiments import train_visual
from dfmm.training.loop import bce_loss, make_optimizer, make_schedule


def test_same_seed_same_metrics_on_cpu(tiny_cfg):
    splits = image_splits(tiny_cfg)
    a = train_visual(tiny_cfg, "card", splits, seed=5, save=False)
    b = train_visual(tiny_cfg, "card", splits, seed=5, save=False)
    assert a.history[0]["train_loss"] == b.history[0]["train_loss"]
    assert a.val == b.val


def test_visual_branch_learns_the_synthetic_seam(tiny_cfg, tiny_models):
    from dfmm.models.checkpoints import load_checkpoint

    kind, _, meta = load_checkpoint(tiny_models["visual"])
    assert kind == "visual_branch" and meta["backbone"]["architecture"] == "tf_efficientnet_lite0"
    # three epochs at 64 px separate blended fakes from reals
    cfg = copy.deepcopy(tiny_cfg)
    cfg.visual.epochs = 3
    run = train_visual(cfg, "improved", image_splits(cfg), seed=0, save=False)
    losses = [h["train_loss"] for h in run.history]
    assert losses[-1] < losses[0]
    assert run.val["auc"] > 0.8


def test_schedule_warms_up_then_decays():
    model = torch.nn.Linear(2, 1)
    model.head_parameters = lambda: list(model.parameters())  # type: ignore[attr-defined]
    recipe = Recipe(optimizer="adamw", lr=1.0, schedule="cosine", warmup_fraction=0.2)
    opt = make_optimizer(model, recipe)
    sched = make_schedule(opt, recipe, total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] < lrs[1] < lrs[2] and lrs[-1] < lrs[3] and max(lrs) == pytest.approx(1.0)


def test_discriminative_learning_rates(tiny_cfg):
    from dfmm.models.branches import build_visual

    model, _ = build_visual(tiny_cfg)
    opt = make_optimizer(model, Recipe(lr=1e-3, head_lr_mult=10.0))
    head = {id(p) for p in model.head_parameters()}
    for g in opt.param_groups:
        is_head = all(id(p) in head for p in g["params"])
        assert g["lr"] == pytest.approx(1e-2 if is_head else 1e-3)


def test_sgd_is_nesterov_and_keeps_decay_off_norms_and_biases(tiny_cfg):
    from dfmm.models.branches import build_visual

    model, _ = build_visual(tiny_cfg)
    opt = make_optimizer(model, Recipe(optimizer="sgd", lr=0.02, weight_decay=1e-4))
    assert isinstance(opt, torch.optim.SGD)
    for g in opt.param_groups:
        assert g["momentum"] == 0.9 and g["nesterov"]
        flat = all(p.ndim <= 1 for p in g["params"])
        assert g["weight_decay"] == (0.0 if flat else 1e-4)


def test_balanced_loss_and_smoothing():
    logits = torch.zeros(4)
    labels = torch.tensor([0.0, 1.0, 1.0, 1.0])
    plain = bce_loss(logits, labels, 0.0, None)
    assert plain.item() == pytest.approx(math.log(2))
    smoothed = bce_loss(torch.tensor([10.0]), torch.tensor([1.0]), 0.1, None)
    assert smoothed.item() > bce_loss(torch.tensor([10.0]), torch.tensor([1.0]), 0.0, None).item()


def test_tfidf_floor_on_synthetic_texts(tiny_cfg):
    out = tfidf_baseline(text_splits(tiny_cfg))
    assert out["val"]["auc"] > 0.9 and out["train_size"] > 0


def test_batch_shards_are_disjoint_and_even():
    from dfmm.data.batches import ShardedBatchSampler, ShuffledBatchSampler

    def shards(world):
        out = []
        for rank in range(world):
            inner = ShuffledBatchSampler(50, 4, seed=3)  # 13 batches; each process builds its own, same seed
            out.append([b for _ in range(2) for b in ShardedBatchSampler(inner, rank, world)])  # two epochs
        return out

    single = ShuffledBatchSampler(50, 4, seed=3)
    whole = [b for _ in range(2) for b in single]
    a, b = shards(2)
    assert len(a) == len(b) == 12  # 6 per epoch: the 13th batch is dropped so both ranks step together
    flat = [tuple(x) for x in a + b]
    assert len(set(flat)) == len(flat)  # no batch trained twice in a step
    assert {tuple(x) for x in whole[:12] + whole[13:25]} == set(flat)
    with pytest.raises(ValueError, match="rank 2"):
        ShardedBatchSampler(ShuffledBatchSampler(8, 4, seed=0), 2, 2)


@pytest.mark.slow  # two training processes per branch (~16 and ~24 s)
@pytest.mark.parametrize("branch", ["visual", "text"])
def test_two_processes_train_disjoint_shards_and_save_once(tmp_path, branch):
    """`accelerate launch` / torchrun with 2 CPU processes (gloo): half the batches each, one checkpoint, one JSON.

    For text this also proves DDP accepts the encoder (its unused [CLS] pooler must not be trainable)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from .conftest import ROOT, tiny_overrides

    args = ["train", branch, ROOT / "params" / "demo.yaml", "--recipe", "card",
            "-p", f"study.runs_dir={tmp_path}", "-p", "study.name=ddp", "-p", f"{branch}.batch_size=4",
            *[x for o in tiny_overrides(32) for x in ("-p", o)]]  # fmt: skip
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "dfmm.cli", *map(str, args)], capture_output=True, text=True,
                         env=env, timeout=600)  # fmt: skip
    assert one.returncode == 0, one.stderr[-2000:]
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "dfmm.cli"]
    two = subprocess.run([*launch, *map(str, args)], capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    r1, r2 = json.loads(one.stdout), json.loads(two.stdout)  # exactly one JSON object: only rank 0 prints
    assert r1["processes"] == 1 and r2["processes"] == 2
    items1, items2 = r1["history"][0]["train_items"], r2["history"][0]["train_items"]
    assert items2 < items1 and abs(2 * items2 - items1) <= 2 * 4  # each rank saw half (one tail batch dropped)
    assert Path(r2["checkpoint"]).is_file() and r2["val"]["n"] == r1["val"]["n"]


@pytest.mark.slow  # timed training loops (~6 s)
def test_speed_checks_report_ratios(tiny_cfg):
    """The notebooks' speed checks run on any data (here tiny synthetic) and return consistent ratios."""
    from dfmm.models.branches import build_text, build_visual
    from dfmm.training.speed import text_loop_ratio, visual_loop_ratio

    v = visual_loop_ratio(image_splits(tiny_cfg)["train"], lambda: build_visual(tiny_cfg)[0], batch=8, steps=2, size=64)
    assert v["plain_img_s"] > 0 and v["ours_img_s"] > 0
    p, o = v["plain_img_s"], v["ours_img_s"]  # both rounded to 0.1 img/s: the ratio of the rounded values may differ
    assert abs(v["ratio"] - o / p) <= 0.05 / p + 0.05 * o / p**2 + 0.001
    t = text_loop_ratio(text_splits(tiny_cfg)["train"], lambda: build_text(tiny_cfg)[:2], n=16, batch=8, max_length=64)
    assert t["n"] == 16 and t["fixed_samples_s"] > 0 and t["ratio_dynamic_random"] > 0
    assert abs(t["ratio"] - t["ours_bucketed_samples_s"] / t["fixed_samples_s"]) < 0.01


def test_text_speed_sample_follows_the_length_quantiles():
    from dfmm.training.speed import length_quantile_sample

    lengths = np.array([5, 1, 9, 3, 7, 2, 8])
    assert lengths[length_quantile_sample(lengths, 3)].tolist() == [1, 5, 9]  # min, median, max
    assert sorted(length_quantile_sample(lengths, 50).tolist()) == list(range(7))  # n >= pool: every item once


def _tiny_fit_setup(tiny_cfg):
    from dfmm.models.branches import build_visual
    from dfmm.training.loaders import image_loader
    from dfmm.training.loop import seed_all as _seed_all

    _seed_all(3)
    model, info = build_visual(tiny_cfg)
    splits = image_splits(tiny_cfg)
    train = image_loader(splits["train"], tiny_cfg, mean=info.mean, std=info.std, seed=3, train=True, augment="card")
    val = image_loader(splits["val"], tiny_cfg, mean=info.mean, std=info.std, seed=3)
    return model, train, val


def test_fit_resumed_after_an_epoch_ends_with_the_same_tensors(tiny_cfg, tmp_path, monkeypatch):
    """Kill after epoch 1 (simulated: the state that epoch saved), resume: the same weights, history and best epoch
    as the run never interrupted; a state with another fingerprint is ignored (a fresh start)."""
    import shutil

    import dfmm.training.loop as train_mod
    from dfmm.training.loop import ResumeState, fit

    recipe = Recipe(optimizer="adamw", lr=1e-3, schedule="cosine", warmup_fraction=0.2, head_lr_mult=10.0)
    saved = train_mod.save_training_state

    def keep_each_epoch(path, state):
        saved(path, state)
        shutil.copy(path, path.with_name(f"epoch{state['epoch']}.pt"))

    monkeypatch.setattr(train_mod, "save_training_state", keep_each_epoch)
    state = tmp_path / "state.pt"
    model, train, val = _tiny_fit_setup(tiny_cfg)
    whole = fit(model, train, val, recipe, 3, resume=ResumeState(state, "a"))
    whole_weights = {k: v.clone() for k, v in model.state_dict().items()}

    shutil.copy(tmp_path / "epoch1.pt", state)
    model, train, val = _tiny_fit_setup(tiny_cfg)
    torch.manual_seed(123)  # whatever the RNG holds now, the saved states win
    resumed = fit(model, train, val, recipe, 3, resume=ResumeState(state, "a"))
    assert resumed.best_epoch == whole.best_epoch
    strip = [{k: v for k, v in h.items() if k not in ("epoch_seconds", "train_samples_per_s")} for h in whole.history]
    assert [
        {k: v for k, v in h.items() if k not in ("epoch_seconds", "train_samples_per_s")} for h in resumed.history
    ] == strip
    for k, v in model.state_dict().items():
        assert torch.equal(v, whole_weights[k]), k

    shutil.copy(tmp_path / "epoch1.pt", state)
    model, train, val = _tiny_fit_setup(tiny_cfg)
    other = fit(model, train, val, recipe, 1, resume=ResumeState(state, "b"))  # another run's state: not used
    assert [h["epoch"] for h in other.history] == [1]
    assert train_mod.load_training_state(state, "b")["epoch"] == 1
    assert train_mod.load_training_state(state, "a") is None
