"""Issue 26: sources as data, held-out folds, the "unlike the training data" reference and the flag it gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dfmm.analysis import generalization as gen
from dfmm.analysis import text_folds as tf
from dfmm.data.text import TextSet
from dfmm.errors import CheckpointError, DataError
from dfmm.models.ood import OodReference, fit_reference, references_of, split_state


def _cluster(centre: np.ndarray, n: int, spread: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return centre + spread * rng.standard_normal((n, len(centre)))


# --------------------------------------------------------------------------------------------- the reference
def test_reference_keeps_95_percent_of_validation_and_flags_a_far_source():
    d = 16
    home, away = np.eye(d)[0], np.eye(d)[1]
    ref = fit_reference("spec", _cluster(home, 400, 0.1, 0), _cluster(home, 400, 0.1, 1), k=10)
    val_kept = (ref.distances(_cluster(home, 400, 0.1, 1)) <= ref.threshold).mean()
    assert val_kept == pytest.approx(0.95, abs=0.0026)  # the quantile of the same 400 distances
    fresh = ref.judge(ref.distances(_cluster(home, 200, 0.1, 2)))
    far = ref.judge(ref.distances(_cluster(away, 200, 0.1, 3)))
    assert np.mean([j["uncertain"] for j in fresh]) < 0.12
    assert all(j["uncertain"] and j["in_distribution"] == 0.0 for j in far)
    assert all("unlike the training data" in j["uncertain_reason"] for j in far)
    assert all(j["uncertain_reason"] is None for j in fresh if not j["uncertain"])


def test_in_distribution_is_the_share_of_validation_items_at_least_as_far():
    ref = OodReference("spec", np.eye(3, dtype=np.float32), np.array([0.1, 0.2, 0.3, 0.4]), k=1)
    np.testing.assert_allclose(ref.in_distribution([0.05, 0.2, 0.35, 0.5]), [1.0, 0.75, 0.25, 0.0])
    assert ref.threshold == 0.4  # 95% of 4 items: the highest
    # kNN distance: 1 - cosine similarity to the nearest reference row (k = 1)
    np.testing.assert_allclose(ref.distances(np.array([[1.0, 0, 0], [1.0, 1.0, 0]])), [0.0, 1 - 2**-0.5], rtol=1e-6)


def test_reference_round_trips_through_checkpoint_tensors():
    ref = fit_reference("package:x", _cluster(np.ones(8), 50, 0.3, 0), _cluster(np.ones(8), 30, 0.3, 1), k=5)
    meta, state = ref.to_checkpoint("visual")
    model_state, ood_state = split_state({"head.weight": torch.zeros(1), **state})
    assert list(model_state) == ["head.weight"]
    back = references_of({"ood": {"visual": meta}}, ood_state, "x.pt")["visual"]
    assert back.threshold == ref.threshold and back.k == 5 and back.backbone == "package:x"
    np.testing.assert_allclose(back.distances(ref.reference[:3]), ref.distances(ref.reference[:3]), atol=1e-6)


@pytest.mark.parametrize(
    ("meta", "drop", "expected"),
    [
        ({"k": 0}, None, "ood.visual.k = 0"),
        ({"coverage": 1.5}, None, "ood.visual.coverage = 1.5"),
        ({"backbone": ""}, None, "ood.visual.backbone"),
        ({}, "ood.visual.val_distances", "no ood.visual.reference / .val_distances"),
    ],
)
def test_a_bad_reference_is_one_line_naming_the_key(meta, drop, expected):
    ref = fit_reference("spec", _cluster(np.ones(4), 20, 0.3, 0), _cluster(np.ones(4), 10, 0.3, 1), k=3)
    m, state = ref.to_checkpoint("visual")
    state.pop(drop, None)
    with pytest.raises(CheckpointError, match=expected) as e:
        references_of({"ood": {"visual": m | meta}}, state, "x.pt")
    assert "\n" not in str(e.value)


def test_checkpoint_keeps_its_reference_apart_from_the_model(tiny_models):
    from dfmm.models.checkpoints import load_checkpoint, load_checkpoint_parts

    kind, state, meta, refs = load_checkpoint_parts(tiny_models["ensemble"])
    assert set(refs) == {"visual", "text"}
    assert not any(k.startswith("ood.") for k in state)
    assert load_checkpoint(tiny_models["visual"])[1].keys() == load_checkpoint_parts(tiny_models["visual"])[1].keys()
    assert "ood" not in meta  # the references carry it: the metadata describes the model alone
    assert "ood" not in load_checkpoint(tiny_models["visual"])[2]  # model-only metadata: safe to save a copy of


# ---------------------------------------------------------------------------------------- results carry it
def test_classify_results_carry_the_judgement_of_their_own_frozen_features(tiny_models):
    from dfmm.data import image_splits, text_splits
    from dfmm.data.images import load_image
    from dfmm.serving.inference import classify_image, classify_multimodal, classify_text, load_model

    cfg = tiny_models["cfg"]
    model, _ = load_model(tiny_models["ensemble"])
    image, text = image_splits(cfg)["test"].sources[0], text_splits(cfg)["test"].text(0)
    r = classify_image(model, image)
    x = torch.stack([model.transform()(load_image(image))])
    with torch.no_grad():
        d = model.ood["visual"].distances(model.frozen("visual").features(x).numpy())[0]
    assert r["ood_distance"] == pytest.approx(d, rel=1e-5)
    assert r["uncertain"] == (d > model.ood["visual"].threshold)
    t = classify_text(model, text)
    assert 0.0 <= t["in_distribution"] <= 1.0 and isinstance(t["uncertain"], bool)
    both = classify_multimodal(model, image_path_or_pil=image, text=text)
    assert both["in_distribution"] == min(r["in_distribution"], t["in_distribution"])
    assert both["uncertain"] == (r["uncertain"] or t["uncertain"])
    noise = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    assert classify_image(model, noise)["uncertain"] is True  # static is unlike any face it learnt from


def test_a_checkpoint_without_reference_says_not_measured(tiny_models, tmp_path):
    from dfmm.models.checkpoints import load_checkpoint, save_checkpoint
    from dfmm.serving.inference import classify_text, load_model

    kind, state, meta = load_checkpoint(tiny_models["text"])  # the model without its reference, as before issue 26
    path = save_checkpoint(tmp_path / "old.pt", kind, state, meta)
    r = classify_text(load_model(path)[0], "A plain sentence written by someone.")
    assert r["in_distribution"] is None and r["uncertain"] is None
    assert r["uncertain_reason"].startswith("not measured")


# ------------------------------------------------------------------------------------------ sources, folds
def _texts(source: str, n: int, generators: list[str], domains: list[str], start: int = 0) -> TextSet:
    """``n`` human texts of ``source`` and a rewrite of each by every generator (a group), numbered from ``start``."""
    rows = []
    for i in range(start, start + n):
        g = i % len(domains)
        rows.append((f"{source} human text {i}", 0, "human", domains[g], f"g{i}"))
        for gen_name in generators:
            rows.append((f"{source} {gen_name} rewrite {i}", 1, gen_name, domains[g], f"g{i}"))
    texts, labels, gens, doms, groups = zip(*rows, strict=True)
    meta = {"generator": list(gens), "domain": list(doms)}
    return TextSet(list(texts), np.array(labels), list(groups), meta, origin=source)


def test_pooled_sources_tag_rows_drop_duplicates_and_keep_groups_apart():
    a = _texts("a", 6, ["gpt"], ["news"])
    b = _texts("b", 4, ["llama"], ["yelp"])
    dup = TextSet(["a  human   text 0", "fresh"], np.array([0, 1]), ["x", "y"], {}, origin="c")
    fit, held, dropped = tf.pooled_parts({"a": {"fit": a, "held": b}, "c": {"fit": dup, "held": dup}})
    assert dropped == {"fit": 1, "held": 2}  # "a  human   text 0" is "a human text 0" after whitespace
    assert set(fit.meta["source"]) == {"a", "c"} and len(fit) == len(a) + 1
    assert all(g.startswith(s + "/") for g, s in zip(fit.groups, fit.meta["source"], strict=True))


def test_folds_hold_out_what_they_name_and_train_without_it():
    a, b = _texts("a", 40, ["gpt", "llama"], ["news", "law"]), _texts("b", 40, ["davinci"], ["yelp", "arxiv"])
    fit, _ = tf.pool_texts({"a": a, "b": b})
    held, _ = tf.pool_texts(
        {
            "a": _texts("a", 20, ["gpt", "llama"], ["news", "law"], 1000),
            "b": _texts("b", 20, ["davinci"], ["yelp", "arxiv"], 1000),
        }
    )
    folds = tf.text_folds(fit, held, trained_on={"a"})
    kinds = {f.kind for f in folds}
    assert kinds == {"source", "generator", "domain"}
    assert len(folds) == 2 + 3 + 4
    col = {k: (np.asarray(fit.meta[k]), np.asarray(held.meta[k])) for k in ("source", "generator", "domain")}
    for f in folds:
        train, test = col[f.kind][0][f.train], col[f.kind][1][f.test]
        assert f.held_out not in set(train)
        if f.kind == "generator":
            assert set(test) == {f.held_out, "human"}
            assert set(held.labels[f.test][test == "human"]) == {0}
        else:
            assert set(test) == {f.held_out}
    seen = {f.name: f.seen_by_compact for f in folds}
    assert seen["source: a"] and not seen["source: b"] and seen["generator: gpt"] and not seen["domain: b/yelp"]


def test_fold_results_pair_each_recipe_with_the_compact_model():
    a, b = _texts("a", 40, ["gpt"], ["news"]), _texts("b", 40, ["llama"], ["yelp"])
    fit, held, _ = tf.pooled_parts({"a": {"fit": a, "held": _texts("a", 30, ["gpt"], ["news"], 1000)},
                                     "b": {"fit": b, "held": _texts("b", 30, ["llama"], ["yelp"], 1000)}})  # fmt: skip
    rng = np.random.default_rng(0)
    ff, hf = rng.standard_normal((len(fit), 8)), rng.standard_normal((len(held), 8))
    compact = held.labels * 0.5 + 0.25  # a perfect ranking
    same = {"copy of compact": lambda train, test: compact_of(test)}
    lookup = {t: p for t, p in zip(held.texts, compact, strict=True)}

    def compact_of(test):
        return np.array([lookup[t] for t in test["texts"]])

    folds = tf.text_folds(fit, held, {"a"})
    result = tf.run_text_folds(fit, held, ff, hf, compact, folds, min_items=5, recipes=same)
    rows = [r for r in result["rows"] if r["model"] == "copy of compact" and r["auc"] is not None]
    assert rows and all(r["minus_compact"] == 0.0 and r["minus_compact_ci"] == [0.0, 0.0] for r in rows)
    means = tf.fold_means(result)
    whole = next(r for r in means if r["model"] == "compact" and r["folds"] == "all")
    assert whole["mean_auc"] == 1.0 and whole["n_folds"] == len(rows)
    small = tf.run_text_folds(fit, held, ff, hf, compact, folds, min_items=1000, recipes=same)
    assert all(r["auc"] is None and "too few held-out items" in r["null_reason"] for r in small["rows"])


def test_a_one_class_source_is_refused_for_training_but_loads_for_testing(tmp_path):
    from PIL import Image

    from dfmm.config import load_config
    from dfmm.data import image_splits
    from dfmm.data.images import load_images

    (tmp_path / "fake").mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (i * 40, 0, 0)).save(tmp_path / "fake" / f"{i}.png")
    assert load_images(str(tmp_path)).labels.tolist() == [1, 1, 1]
    cfg = load_config(["params/demo.yaml"], [f"data.images={tmp_path}"])
    with pytest.raises(DataError, match=r"one class only \(0 real, 3 fake\).*not a training source"):
        image_splits(cfg)
    with pytest.raises(DataError, match="text source 'x' has one class only"):
        tf.check_training_source("x", TextSet(["a", "b"], np.array([1, 1]), ["1", "2"]))


def test_detection_rate_and_clip_sources():
    r = gen.detection_rate([0.9, 0.2, 0.8, 0.7], threshold=0.5)
    assert r["rate"] == 0.75 and r["ci"][0] <= 0.75 <= r["ci"][1]
    assert gen.threshold_at_fpr(np.linspace(0, 1, 101), 0.05) == pytest.approx(0.95)
    assert [gen.clip_source(n) for n in ("004.mp4", "004_982.mp4", "brtujopkby.mp4", "x.mp4")] == [
        "faceforensics++", "faceforensics++", "dfdc", "other"]  # fmt: skip
    rows = gen.clips_by_source([
        {"clip": "004.mp4", "label": 0, "probability_fake": 0.6}, {"clip": "004_982.mp4", "label": 1, "probability_fake": 0.9},
        {"clip": "abcdefghij.mp4", "label": 0, "probability_fake": 0.1}, {"clip": "klmnopqrst.mp4", "label": 1, "probability_fake": 0.4},
    ])  # fmt: skip
    by = {r["source"]: r for r in rows}
    assert by["dfdc"]["auc"] == 1.0 and by["faceforensics++"]["auc"] == 1.0
    assert by["pooled"]["auc"] == 0.75  # the FF++ real (0.6) above the DFDC fake (0.4): the level shift
    assert by["pooled, recentred per source"]["auc"] == 1.0  # minus the other clips' median: the shift is gone


def _jsonl(path, rows):
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_a_params_list_of_text_sources_trains_on_all_of_them_split_within_each(tmp_path):
    from dfmm.config import load_config
    from dfmm.data import text_splits
    from dfmm.data.sources import pooled_splits, row_sources

    a = [{"text": f"alpha text {i} {'ai' * (i % 2)}", "label": i % 2, "group": f"g{i // 2}"} for i in range(80)]
    b = [{"text": f"beta text {i} {'ai' * (i % 2)}", "label": i % 2, "group": f"g{i // 2}"} for i in range(60)]
    b.append({"text": "alpha   text 0 ", "label": 0, "group": "dup"})  # alpha's first text again, other spacing
    items = f"[{{path: {_jsonl(tmp_path / 'a.jsonl', a)}, source: a, generator: gpt}}, {{path: {_jsonl(tmp_path / 'b.jsonl', b)}, source: b, domain: news}}]"
    cfg = load_config(["params/demo.yaml"], [f"data.texts={items}", "data.max_texts=40"])
    splits, dropped = pooled_splits(cfg, "texts", 40, 0)
    assert dropped == 1
    assert text_splits(cfg)["train"].texts == splits["train"].texts
    train, test = splits["train"], splits["test"]
    assert sorted(set(row_sources(train))) == ["a", "b"] and len(train) == 40
    assert row_sources(train).count("a") == row_sources(train).count("b") == 20  # the budget shared equally
    assert not set(train.groups) & set(test.groups)
    assert all(g.startswith(s + "/") for g, s in zip(train.groups, row_sources(train), strict=True))
    gens = dict(zip(row_sources(train), train.meta["generator"], strict=True))
    assert gens["a"] == "gpt" and set(train.meta["domain"]) == {"", "news"}
    one_class = _jsonl(tmp_path / "c.jsonl", [{"text": f"only ai {i}", "label": 1} for i in range(10)])
    bad = load_config(["params/demo.yaml"], [f"data.texts=[{{path: {one_class}, source: c}}]"])
    with pytest.raises(DataError, match=r"data.texts source 'c': .* one class only \(0 real, 10 fake\)"):
        text_splits(bad)


def test_a_source_list_item_is_checked_like_the_rest_of_the_params():
    from dfmm.config import load_config
    from dfmm.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data.texts\[0\]: unknown key 'pth' \(did you mean 'path'\?\)"):
        load_config(["params/demo.yaml"], ["data.texts=[{pth: x.jsonl}]"])
    with pytest.raises(DataError, match=r"text file not found: nowhere.jsonl \(data.texts\[0\]\)"):
        from dfmm.data import data_sources

        data_sources(load_config(["params/demo.yaml"], ["data.texts=[{path: nowhere.jsonl}]"]))


def test_source_lists_refuse_empty_and_synthetic_items_and_show_relative_paths(tmp_path):
    from dfmm.config import load_config
    from dfmm.errors import ConfigError
    from dfmm.study.report import _shown_sources

    with pytest.raises(ConfigError, match=r"data.texts is an empty list; name at least one training source"):
        load_config(["params/demo.yaml"], ["data.texts=[]"])
    with pytest.raises(ConfigError, match=r"data.images\[0\].path = 'synthetic'"):
        load_config(["params/demo.yaml"], ["data.images=[{path: synthetic}]"])
    cfg = load_config(["params/compact.yaml", "params/sources/local-pooled.yaml"])
    shown = _shown_sources(cfg.data.texts)
    assert shown.startswith("l2r_rewrites (../shared/data/text/l2r_rewrites/data.jsonl), raidar_multidomain (")


def test_folds_skip_the_placeholders_of_sources_without_generators_or_domains():
    a = _texts("a", 30, ["gpt"], ["news"])
    bare = TextSet([f"b text {i}" for i in range(60)], np.array([0, 1] * 30), [f"g{i // 2}" for i in range(60)])
    held_a = _texts("a", 30, ["gpt"], ["news"], 1000)
    held_b = TextSet([f"b held {i}" for i in range(60)], np.array([0, 1] * 30), [f"h{i // 2}" for i in range(60)])
    fit, held, _ = tf.pooled_parts({"a": {"fit": a, "held": held_a}, "b": {"fit": bare, "held": held_b}})
    names = [f.name for f in tf.text_folds(fit, held, {"a"})]
    assert names == ["source: a", "source: b", "generator: gpt", "domain: a/news"]  # no "unknown", no "b/-"


def test_a_missing_pretrained_backbone_leaves_the_label_unjudged(tiny_models, monkeypatch):
    from dfmm.errors import ConfigError
    from dfmm.serving.inference import classify_text, load_model

    model, _ = load_model(tiny_models["text"])

    def unavailable(branch):
        raise ConfigError("text.encoder 'package:x' needs the package")

    monkeypatch.setattr(model, "frozen", unavailable)
    r = classify_text(model, "A sentence someone wrote.")
    assert r["label"] in ("real", "fake") and r["in_distribution"] is None and r["uncertain"] is None
    assert r["uncertain_reason"].startswith("not measured: the pretrained backbone")


def test_building_a_frozen_branch_leaves_the_global_random_state_alone():
    from dfmm.models.branches import frozen_branch

    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    frozen_branch("visual", "package:efficientnet-lite0")
    assert torch.equal(torch.rand(3), before)


# ------------------------------------------------------------------------ review of the statistics (issue 26)
def test_folds_cut_from_one_pool_share_their_resamples():
    from dfmm.metrics import metric_draws, pool_resamples

    rng = np.random.default_rng(0)
    groups = [f"g{i // 2}" for i in range(200)]
    y, s = np.arange(200) % 2, rng.random(200) + (np.arange(200) % 2) * 0.3
    w = pool_resamples(groups, 500, seed=0)
    assert w.shape == (500, 200) and np.array_equal(w[:, 0], w[:, 1])  # one group, one weight
    _, one = metric_draws(y, s, weights=w)
    _, again = metric_draws(y, s, weights=w)
    mean_of_two = (one + again) / 2  # two copies of one fold: the mean's interval is the fold's own
    assert tf.interval(mean_of_two) == tf.interval(one)
    _, independent = metric_draws(y, s, groups, "auc", 500, seed=1)
    narrow = tf.interval((one + independent) / 2)  # what averaging separately resampled draws would claim
    assert narrow[1] - narrow[0] < tf.interval(one)[1] - tf.interval(one)[0]
    with pytest.raises(ValueError, match=r"weights must be \(resamples, 200 items\)"):
        metric_draws(y, s, weights=w[:, :10])


def _two_source_parts():
    a = _texts("a", 60, ["gpt"], ["news"])
    b = _texts("b", 60, ["llama"], ["yelp"])
    return {"a": {"fit": a, "held": _texts("a", 60, ["gpt"], ["news"], 1000)},
            "b": {"fit": b, "held": _texts("b", 60, ["llama"], ["yelp"], 1000)}}  # fmt: skip


def _two_source_result(recipes):
    fit, held, _ = tf.pooled_parts(_two_source_parts())
    rng = np.random.default_rng(0)
    ff, hf = rng.standard_normal((len(fit), 8)), rng.standard_normal((len(held), 8))
    compact = rng.random(len(held))  # chance
    folds = tf.text_folds(fit, held, {"a"})
    result = tf.run_text_folds(fit, held, ff, hf, compact, folds, min_items=5, recipes=recipes)
    return held, result | {"compact_probs": compact}


def test_the_best_recipe_is_chosen_on_one_half_and_scored_on_the_other():
    held, _ = _two_source_result({})
    half = dict(zip(held.groups, tf.selection_halves(held.groups), strict=True))
    assert 0.3 < np.mean(list(half.values())) < 0.7  # a group's texts share one half

    def good_on(h):  # perfect on the texts of half h, noise on the other half
        def recipe(train, test):
            noise = np.random.default_rng(len(test["labels"])).random(len(test["labels"]))
            mine = np.array([half[g] == h for g in test["groups"]])
            return np.where(mine, np.asarray(test["labels"], dtype=float), noise)

        return recipe

    _, result = _two_source_result({"half 0": good_on(0), "half 1": good_on(1)})
    choice = tf.cross_fitted_choice(result)
    # each half's choice is the model that was perfect on the *other* half, and it scores noise here
    assert choice["chosen"] == ["half 1", "half 0"] and choice["n_folds"] >= 1
    unseen = {r["model"]: r["mean_auc"] for r in tf.fold_means(result) if r["folds"] == "unseen"}
    assert unseen["half 0"] > 0.7  # what choosing and scoring on the same texts would report
    assert choice["mean_auc"] < 0.6 and choice["ci"][1] < unseen["half 0"]
    result["min_items"] = 10_000
    nothing = tf.cross_fitted_choice(result)
    assert nothing["mean_auc"] is None and "texts of each class in both halves" in nothing["null_reason"]


def test_every_fold_is_scored_on_one_bootstrap_of_the_held_pool():
    from dfmm.metrics import metric_draws, pool_resamples

    held, result = _two_source_result({})
    folds = {f.name: f for f in tf.text_folds(*tf.pooled_parts(_two_source_parts())[:2], {"a"})}
    pool = pool_resamples(held.groups, tf.N_RESAMPLES, seed=0)
    for name, d in result["draws"]["compact"].items():
        f = folds[name]
        scores = next(r for r in result["rows"] if r["fold"] == name and r["model"] == "compact")
        assert scores["auc"] is not None
        _, expected = metric_draws(held.labels[f.test], result["compact_probs"][f.test], weights=pool[:, f.test])
        np.testing.assert_array_equal(d, expected)


def test_the_flag_auroc_resamples_groups_when_it_has_them():
    home, away = np.eye(8)[0], np.eye(8)[0] + 0.5 * np.eye(8)[1]
    ref = fit_reference("spec", _cluster(home, 400, 0.3, 0), _cluster(home, 200, 0.3, 1), k=10)
    near, far = _cluster(home, 10, 0.3, 2), _cluster(away, 10, 0.3, 3)
    ind, out = np.repeat(near, 20, axis=0), np.repeat(far, 20, axis=0)  # 10 groups of 20 copies each
    groups = {"in": [f"i{i // 20}" for i in range(200)], "out": [f"o{i // 20}" for i in range(200)]}
    items = gen.flag_table(ref, ("in", ind), {"out": out})[1]
    grouped = gen.flag_table(ref, ("in", ind), {"out": out}, groups)[1]
    assert items["auroc"] == grouped["auroc"]
    width = lambda r: r["auroc_ci"][1] - r["auroc_ci"][0]  # noqa: E731
    assert width(grouped) > 2 * width(items)  # 20 copies of an item are one draw, not 20
    with pytest.raises(ValueError, match="3 groups for the 200 items of 'out'"):
        gen.flag_table(ref, ("in", ind), {"out": out}, {"out": ["a", "b", "c"]})


def test_face_recipes_are_compared_with_the_shipped_branch_on_the_same_faces():
    rng = np.random.default_rng(0)

    def face_set(n, fake_only=False):
        y = np.ones(n, dtype=int) if fake_only else np.arange(n) % 2
        return {"labels": y, "groups": [f"g{i}" for i in range(n)], "features": rng.standard_normal((n, 4)),
                "probs": rng.random(n) * 0.5 + y * 0.3}  # fmt: skip

    scores = {"train": face_set(80), "val": face_set(60), "test": face_set(60), "lfw": face_set(40),
              "sdfd": face_set(30, True)}  # fmt: skip
    del scores["train"]["probs"]
    same = {k: s["probs"] for k, s in scores.items() if k in ("val", "lfw", "sdfd")}
    rows = gen.face_table(scores, ("val", "test"), "train", 0.5, {"copy": (same, 0.4)})
    copy = {r["set"]: r for r in rows if r["model"] == "copy"}
    assert set(copy) == {"val", "lfw", "sdfd"}  # the sets it scored, not the test split
    assert copy["lfw"]["minus_compact"] == 0.0 and copy["lfw"]["minus_compact_ci"] == [0.0, 0.0]
    assert "minus_compact" not in copy["sdfd"] and copy["sdfd"]["auc"] is None  # fake only: no AUC
    shipped = next(r for r in rows if r["model"] == "compact" and r["set"] == "sdfd")
    assert copy["sdfd"]["fakes_detected_at_5fpr"] == shipped["fakes_detected_at_5fpr"]
    assert copy["sdfd"]["reals_called_fake_at_5fpr"]["n"] == 0  # fake only: no reals to call fake
    assert copy["val"]["reals_called_fake_at_5fpr"]["rate"] <= 0.05  # the threshold's own reals: 5% at most
    shifted = gen.face_table(scores, ("val", "test"), "train", 0.5, {"up": ({**same, "lfw": same["lfw"] + 5}, 0.4)})
    up = next(r for r in shifted if r["model"] == "up" and r["set"] == "lfw")
    assert up["fakes_detected_at_5fpr"]["rate"] == 1.0 and up["reals_called_fake_at_5fpr"]["rate"] == 1.0


def test_degradation_augmentation_and_normalisation_only_tuning():
    from PIL import Image

    from dfmm.config import Recipe
    from dfmm.data.transforms import Degrade, image_transform
    from dfmm.training.loop import apply_trainable, param_groups

    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    torch.manual_seed(0)
    first = [np.asarray(Degrade(p=1.0)(img)) for _ in range(6)]
    torch.manual_seed(0)
    again = [np.asarray(Degrade(p=1.0)(img)) for _ in range(6)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))  # seeded: repeatable
    assert all(a.shape == (64, 64, 3) and not np.array_equal(a, np.asarray(img)) for a in first)
    assert np.array_equal(np.asarray(Degrade(p=0.0)(img)), np.asarray(img))
    assert image_transform(32, [0.5] * 3, [0.5] * 3, "degrade")(img).shape == (3, 32, 32)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.head = torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 1)

        def head_parameters(self):
            return self.head.parameters()

    model = Tiny()
    apply_trainable(model, Recipe(trainable="all"))
    assert all(p.requires_grad for p in model.parameters())
    apply_trainable(model, Recipe(trainable="norm"))
    learning = {n for n, p in model.named_parameters() if p.requires_grad}
    assert learning == {"bn.weight", "bn.bias", "head.weight", "head.bias"}
    optimised = {id(p) for g in param_groups(model, Recipe(trainable="norm")) for p in g["params"]}
    assert id(model.conv.weight) not in optimised and id(model.bn.weight) in optimised


def test_face_recipes_are_checked_like_the_branch_recipes():
    from dfmm.config import load_config
    from dfmm.errors import ConfigError

    with pytest.raises(ConfigError, match=r"generalization.face_recipes.degrade.augment = 'blurry'; expected one of"):
        load_config(["params/demo.yaml"], ["generalization.face_recipes.degrade.augment=blurry"])
    with pytest.raises(ConfigError, match=r"generalization.face_recipes.norm_only.trainable = 'bn'"):
        load_config(["params/demo.yaml"], ["generalization.face_recipes.norm_only.trainable=bn"])
    with pytest.raises(ConfigError, match=r"face recipe 'card' would save over visual_card.pt of the study"):
        load_config(["params/demo.yaml"], ["generalization.face_recipes.card={augment: flip}"])
    with pytest.raises(ConfigError, match=r"face recipe 'branch' would save over visual_branch.pt"):
        load_config(["params/demo.yaml"], ["generalization.face_recipes.branch={augment: flip}"])
    with pytest.raises(ConfigError, match=r"pseudo_fakes = 'self_blend' cannot be combined with augment: strong"):
        load_config(["params/demo.yaml"], ["generalization.face_recipes.self_blended.augment=strong"])
    with pytest.raises(ConfigError, match=r"pseudo_fakes = 'self_blend' cannot be combined with balanced: true"):
        load_config(["params/demo.yaml"], ["generalization.face_recipes.self_blended.balanced=true"])
    with pytest.raises(ConfigError, match=r"generalization.face_recipes.degrade.lr"):
        load_config(["params/demo.yaml"], ["generalization.face_recipes.degrade.lr=0"])


def test_self_blended_pseudo_fakes_follow_the_face_and_stay_inside_the_picture():
    from PIL import Image

    from dfmm.data.blend import blend_mask, face_oval, self_blend

    lm = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], dtype=float)  # an upright face
    cx, cy, rx, ry, tilt = face_oval((100, 100), lm)
    assert (cx, cy) == (50.0, 60.0) and rx == 40.0 and ry == 60.0 and tilt == 0.0
    assert face_oval((100, 100), None)[:2] == (50.0, 50.0)
    torch.manual_seed(0)
    mask = np.asarray(blend_mask((100, 100), lm + [20, 0]))  # the face moved right: so does the mask
    cols = mask.sum(axis=0)
    assert 55 <= float((cols * np.arange(100)).sum() / cols.sum()) <= 85
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (100, 100, 3), dtype=np.uint8))
    torch.manual_seed(1)
    a = np.asarray(self_blend(img, lm))
    torch.manual_seed(1)
    assert np.array_equal(a, np.asarray(self_blend(img, lm)))  # seeded: repeatable
    assert not np.array_equal(a, np.asarray(img)) and np.array_equal(a[:3, :3], np.asarray(img)[:3, :3])
    for seed in range(20):  # the shifted copy's black border is never pasted in
        torch.manual_seed(seed)
        out = np.asarray(self_blend(Image.new("RGB", (100, 100), (200, 200, 200)), lm))
        assert out.min() > 100


def test_a_self_blend_dataset_adds_one_pseudo_fake_per_real_face(monkeypatch):
    from PIL import Image

    from dfmm.data import blend
    from dfmm.data.faces import FaceDetector
    from dfmm.data.images import ImageSet

    frames = [Image.new("RGB", (40, 40), (10 * i, 100, 100)) for i in range(6)]
    images = ImageSet(["mem"] * 6, np.array([0, 1, 0, 1, 0, 0]), list("aabbcd"), [str(i) for i in range(6)])
    monkeypatch.setattr("dfmm.data.images.load_image", lambda source, name: frames[int(name)])
    monkeypatch.setattr(FaceDetector, "__init__", lambda self: None)
    monkeypatch.setattr(FaceDetector, "landmarks", lambda self, ims: [None] * len(ims))

    class Base:
        groups, labels = list("aabbcd"), np.array([0, 1, 0, 1, 0, 0])

        def __getitem__(self, i):
            return {"inputs": torch.zeros(3, 8, 8), "label": int(self.labels[i]), "index": i}

    def to_tensor(img):
        return torch.from_numpy(np.array(img)).permute(2, 0, 1).float()

    ds = blend.SelfBlendedFaces(Base(), images, 8, to_tensor)
    assert len(ds) == 6 + 4 and ds.real == [0, 2, 4, 5]
    assert list(ds.labels) == [0, 1, 0, 1, 0, 0, 1, 1, 1, 1] and ds.groups[6:] == list("abcd")
    item = ds[7]
    assert item["label"] == 1 and item["index"] == 2 and item["inputs"].shape == (3, 8, 8)
    assert ds.found_landmarks == 0.0
    only = blend.SelfBlendedFaces(Base(), images, 8, to_tensor, only=True)
    assert len(only) == 8 and list(only.labels) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert only[1]["index"] == 2  # the base's real faces, then their pseudo-fakes


def test_pseudo_fakes_are_a_checked_recipe_choice_and_the_retired_flag_names_it():
    from dfmm.config import load_config
    from dfmm.errors import ConfigError

    with pytest.raises(ConfigError, match=r"generalization.face_recipes.self_blended.pseudo_fakes = 'sbi'; expected"):
        load_config(["params/demo.yaml"], ["generalization.face_recipes.self_blended.pseudo_fakes=sbi"])
    with pytest.raises(ConfigError, match=r"'self_blend' is no longer an option .*pseudo_fakes: self_blend"):
        load_config(["params/demo.yaml"], ["visual.recipes.improved.self_blend=true"])


def test_metric_term_pulls_classes_together_and_spreads_the_sphere():
    from dfmm.training.loop import metric_term

    labels = torch.tensor([0.0, 0.0, 1.0, 1.0])
    e = torch.eye(4)
    collapsed = torch.stack([e[0], e[0], e[1], e[1]])  # each class one point: alignment 0
    spread = torch.stack([e[0], -e[0], e[1], -e[1]])  # each class at opposite poles: alignment 4
    assert float(metric_term(collapsed, labels)) < float(metric_term(spread, labels))
    align_only = metric_term(collapsed, labels) - torch.log(
        torch.exp(-2.0 * torch.tensor([0.0, 2, 2, 2, 2, 0] * 2)).mean()
    )
    assert abs(float(align_only)) < 1e-6  # the value: alignment 0 plus the uniformity of these distances
    one_point = torch.stack([e[0]] * 4)
    assert float(metric_term(one_point, labels)) == pytest.approx(0.0, abs=1e-6)  # log mean exp(0) = 0, aligned
    f = torch.nn.functional.normalize(torch.randn(6, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    f.requires_grad_(True)
    metric_term(f, torch.tensor([0.0, 1, 0, 1, 0, 1])).backward()
    assert torch.isfinite(f.grad).all() and float(f.grad.abs().sum()) > 0
    assert float(metric_term(f[:1].detach(), torch.tensor([1.0]))) == 0.0  # one item: nothing to compare


def test_metric_loss_changes_training_and_is_refused_for_texts(tmp_path):
    from dfmm.config import Recipe, load_config
    from dfmm.errors import ConfigError
    from dfmm.models.visual import VisualBranch
    from dfmm.training.loop import fit

    class Backbone(torch.nn.Module):
        num_features = 8

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3)

        def forward(self, x):
            return self.conv(x).mean(dim=(2, 3))

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, 8, 8, generator=g), torch.tensor([0.0, 1.0] * 8)
    batches = [
        {"inputs": x[i : i + 8], "labels": y[i : i + 8], "index": torch.arange(i, i + 8), "skipped": []} for i in (0, 8)
    ]
    trained = []
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        model = VisualBranch(Backbone(), dropout=0.0)
        fit(model, batches, batches, Recipe(optimizer="adam", lr=1e-2, metric_loss=weight), epochs=2)
        trained.append(model.backbone.conv.weight.detach().clone())
    assert not torch.allclose(trained[0], trained[1])  # the term moves the backbone
    with pytest.raises(ConfigError, match=r"text.recipes.improved.metric_loss = 0.5 is for face recipes"):
        load_config(["params/demo.yaml"], ["text.recipes.improved.metric_loss=0.5"])
    with pytest.raises(ConfigError, match=r"metric_loss = -1.0; expected >= 0"):
        load_config(["params/demo.yaml"], ["generalization.face_recipes.degrade.metric_loss=-1"])
