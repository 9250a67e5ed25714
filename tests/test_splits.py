from __future__ import annotations

import numpy as np
import pytest

from dfmm.data.splits import split_by_group, subset_by_group

from .conftest import shared


def _pairs(n):
    labels = np.array([0, 1] * n)
    groups = [f"g{i // 2}" for i in range(2 * n)]
    return labels, groups


def test_groups_never_straddle_and_fractions_hold():
    labels, groups = _pairs(500)
    s = split_by_group(labels, groups, 0.15, 0.15, seed=0)
    sets = {k: {groups[i] for i in s[k]} for k in ("train", "val", "test")}
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"])
    assert sum(s.sizes().values()) == 1000
    assert s.sizes()["test"] == pytest.approx(150, abs=4) and s.sizes()["val"] == pytest.approx(150, abs=4)
    for k in ("train", "val", "test"):  # stratified: pairs keep each split balanced
        assert labels[s[k]].mean() == pytest.approx(0.5)


def test_deterministic_per_seed():
    labels, groups = _pairs(200)
    a = split_by_group(labels, groups, 0.2, 0.2, seed=1)
    b = split_by_group(labels, groups, 0.2, 0.2, seed=1)
    c = split_by_group(labels, groups, 0.2, 0.2, seed=2)
    assert all(np.array_equal(a[k], b[k]) for k in ("train", "val", "test"))
    assert not np.array_equal(a["test"], c["test"])


def test_subset_is_balanced_keeps_pairs_and_repeats():
    labels = np.array([0] * 300 + [1] * 900)  # 1:3 imbalance, as in L2R
    groups = [f"h{i}" for i in range(300)] + [f"h{i % 300}" for i in range(900)]
    idx = np.arange(1200)
    sub = subset_by_group(idx, labels, groups, 500, seed=0)
    assert len(sub) == 500 and labels[sub].sum() == 250
    assert np.array_equal(sub, subset_by_group(idx, labels, groups, 500, seed=0))
    assert np.array_equal(subset_by_group(idx, labels, groups, 0, seed=0), idx)


@pytest.mark.shared_data
def test_dfdc_split_has_no_pair_leakage():
    from dfmm.data.images import load_image_folder

    s = load_image_folder(shared("faces", "dfdc"))
    sp = split_by_group(s.labels, s.groups, 0.15, 0.15, seed=0)
    train = {s.groups[i] for i in sp.train}
    assert not train & {s.groups[i] for i in sp.test}
    assert not train & {s.groups[i] for i in sp.val}


def test_fusion_pairs_take_each_text_from_its_own_index_when_splits_differ_in_size():
    from dfmm.training.fusion import BranchOutputs, pair_outputs

    # 6 images, 4 texts: the text arrays must be indexed by the text permutation, never the image one
    vy, ty = np.array([0, 1, 0, 1, 0, 1.0]), np.array([1, 1, 0, 0.0])
    visual = BranchOutputs(np.arange(6.0)[:, None] * np.ones((1, 3)), np.arange(6.0) + 100, vy)
    text = BranchOutputs(np.arange(4.0)[:, None] * np.ones((1, 2)), np.arange(4.0) + 200, ty)
    p = pair_outputs(visual, text, seed=0, rule="either")
    assert len(p) == 4 and p.visual_features.shape == (4, 3) and p.text_features.shape == (4, 2)
    vi, ti = (p.visual_logits - 100).astype(int), (p.text_logits - 200).astype(int)
    assert len(set(vi)) == 4 and sorted(ti) == [0, 1, 2, 3]  # each item at most once, every text used
    assert np.array_equal(p.text_features[:, 0], ti) and np.array_equal(p.visual_features[:, 0], vi)  # rows together
    assert np.array_equal(p.labels, np.maximum(vy[vi], ty[ti]))
    mix = p.mix()
    assert sum(mix.values()) == 4 and mix["image_real_text_real"] == int(((vy[vi] == 0) & (ty[ti] == 0)).sum())


def test_fusion_variant_is_chosen_on_held_out_validation_pairs():
    import torch

    from dfmm.models import FusionEnsemble
    from dfmm.training.fusion import PairScores, fused_probs, split_pairs

    n = 50
    i = np.arange(n)
    pairs = PairScores(
        visual_features=np.arange(n * 3.0).reshape(n, 3),
        visual_logits=i + 0.5,
        visual_labels=i % 2,
        text_features=np.arange(n * 2.0).reshape(n, 2),
        text_logits=-i - 0.5,
        text_labels=np.zeros(n),
        labels=(i % 2).astype(np.float32),
    )
    fit, held = split_pairs(pairs, 0.2, seed=3)
    assert len(held) == 10 and len(fit) == 40
    rows = np.concatenate([fit.visual_logits, held.visual_logits]) - 0.5
    assert sorted(rows.astype(int)) == list(range(n))  # disjoint, together all pairs
    for part in (fit, held):  # each pair's arrays stay on one row
        k = (part.visual_logits - 0.5).astype(int)
        assert np.array_equal(part.text_logits, -k - 0.5) and np.array_equal(part.visual_features[:, 0], 3 * k)
        assert np.array_equal(part.labels, k % 2) and np.array_equal(part.visual_labels, k % 2)
    assert np.array_equal(split_pairs(pairs, 0.2, seed=3)[1].visual_logits, held.visual_logits)  # seeded
    assert len(split_pairs(pairs, 0.0, seed=0)[1]) == 1  # never an empty selection set

    fusion = FusionEnsemble(3, 2, attention=False).eval()
    with torch.no_grad():
        fusion.bias.fill_(1.0)  # equal weights: 0.5 * (i + 0.5) + 0.5 * (-i - 0.5) + 1 = 1 for every pair
    p = fused_probs(fusion, held)
    assert p.shape == (10,) and np.allclose(p, 1 / (1 + np.exp(-1.0)))
