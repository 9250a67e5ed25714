"""The n-gram text branch (``dfmm.models.ngrams``): the same logits as the scikit-learn recipe notebook 07 chooses,
exact word contributions, a tensors-only checkpoint refused when it does not fit its metadata, and every serving
path (classify_text, score_texts, the out-of-distribution judgement, the shipped ensemble under a runtime)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dfmm.errors import CheckpointError
from dfmm.models.ngrams import NGRAM_FEATURES, PREFIX, NgramTextModel, _hash_index, hashed_ngrams

from .test_runtimes import RUNTIMES, installed

HUMAN = [
    "i walked to the market this morning and the bread was still warm",
    "our team lost again, but the last ten minutes were worth the ticket",
    "the recipe says two eggs; i used three and nobody complained",
    "rain all week. the garden loves it, my bike does not",
    "she read the letter twice before she laughed out loud",
    "we argued about the map for an hour and then found the road anyway",
]
MACHINE = [
    "In conclusion, the market offers a diverse array of fresh and delightful baked goods.",
    "Overall, the team's performance demonstrates resilience and a commitment to excellence.",
    "Additionally, the recipe provides a versatile foundation for a delicious culinary experience.",
    "Furthermore, consistent rainfall fosters optimal conditions for a thriving garden ecosystem.",
    "Ultimately, the letter serves as a poignant reminder of the power of human connection.",
    "In summary, navigating unfamiliar routes requires adaptability and effective communication.",
]
ODD = [
    "",
    "   \n\t ",
    "x",
    "İstanbul ÇAĞ  naïve\tcafé\n\nword",
    "don't stop-believing... 123 4567",
    "日本語のテキスト です",
]


def _fitted(weights: np.ndarray | None = None) -> tuple[NgramTextModel, list[str], np.ndarray]:
    texts = (HUMAN + MACHINE) * 3
    labels = np.array(([0] * len(HUMAN) + [1] * len(MACHINE)) * 3)
    w = np.ones(len(texts)) if weights is None else weights
    return NgramTextModel.fit(texts, labels, w), texts, labels


def test_logits_are_the_scikit_learn_pipelines():
    """TF-IDF (sublinear tf, smoothed IDF, L2 rows) + logistic regression, fitted and scored by scikit-learn, gives
    the logits the stored arrays give, on texts seen and unseen, odd ones included (empty: the intercept)."""
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    texts = (HUMAN + MACHINE) * 3
    labels = np.array(([0] * len(HUMAN) + [1] * len(MACHINE)) * 3)
    w = rng.uniform(0.5, 2.0, len(texts))
    model = NgramTextModel.fit(texts, labels, w)
    counts = hashed_ngrams(texts)
    tfidf = TfidfTransformer(sublinear_tf=True).fit(counts)
    lr = LogisticRegression(C=1.0, max_iter=2000).fit(tfidf.transform(counts), labels, sample_weight=w)
    probe = ODD + ["the bread demonstrates resilience", "completely new words nowhere in training"]
    expected = lr.decision_function(tfidf.transform(hashed_ngrams(probe)))
    np.testing.assert_allclose(model.logits(probe), expected, rtol=0, atol=1e-9)
    assert model.logits([""])[0] == pytest.approx(model.bias)
    assert model.logits(MACHINE).min() > model.logits(HUMAN).max()  # it learnt the toy task


def test_hash_index_is_where_the_vectorizer_counts():
    """Word unigrams and bigrams in the first half, character n-grams (a space padding each word) in the second:
    exactly the columns the vectorizers count, no more."""
    counts = hashed_ngrams(["the bread", "日本語のテキスト"])
    words = {_hash_index(g, 0) for g in ("the", "bread", "the bread")}
    chars = {_hash_index(g, NGRAM_FEATURES) for w in ("the", "bread") for g in _char_ngrams(f" {w} ")}
    assert set(counts[0].indices) == words | chars
    jp = {_hash_index("日本語のテキスト", 0)} | {
        _hash_index(g, NGRAM_FEATURES) for g in _char_ngrams(" 日本語のテキスト ")
    }
    assert set(counts[1].indices) == jp


def _char_ngrams(padded: str) -> set[str]:
    return {padded[i : i + n] for n in (3, 4, 5) for i in range(len(padded) - n + 1)}


@pytest.mark.parametrize("text", [*ODD, *HUMAN[:2], *MACHINE[:2], "Bread bread BREAD, the the the. " * 5])
def test_word_contributions_add_up_to_the_logit(text):
    model, _, _ = _fitted()
    c = model.word_contributions(text)
    assert len(c["tokens"]) == len(c["scores"]) == len(text.lower().split())
    assert c["logit"] == pytest.approx(float(model.logits([text])[0]), abs=1e-9)
    assert sum(c["scores"]) + c["bias"] == pytest.approx(c["logit"], abs=1e-12)


def test_word_contributions_point_at_the_words_the_model_learnt():
    model, _, _ = _fitted()
    c = model.word_contributions("in conclusion i walked to the market")
    s = dict(zip(c["tokens"], c["scores"], strict=True))
    assert s["conclusion"] > 0 > s["walked"]


# ------------------------------------------------------------------------------------------ checkpoint
@pytest.fixture(scope="module")
def ngram_checkpoint(tiny_cfg, tmp_path_factory):
    """A text_ngrams checkpoint as notebook 07 writes it, on the tiny study's texts (with their reference)."""
    from dfmm.analysis.text_folds import pool_texts
    from dfmm.data import text_splits
    from dfmm.training.ngram_branch import train_text_ngrams
    from dfmm.training.reference import frozen_split_features

    splits = text_splits(tiny_cfg)
    fit, _ = pool_texts({"synthetic": splits["train"]})
    features = frozen_split_features(tiny_cfg, "text", fit, tmp_path_factory.mktemp("cache"))
    path = train_text_ngrams(tiny_cfg, fit, features, tmp_path_factory.mktemp("ng") / "text_ngrams.pt")
    return {"path": path, "fit": fit, "test": splits["test"]}


def test_checkpoint_reloads_to_the_same_model_and_serves_texts(ngram_checkpoint):
    from dfmm.serving.evaluate import score_texts
    from dfmm.serving.inference import classify_multimodal, classify_text, load_model

    model, config = load_model(ngram_checkpoint["path"])
    assert model.kind == "text_ngrams" and model.text_is_ngrams and model.visual is None
    assert config["study"]["name"] == "tiny"
    test = ngram_checkpoint["test"]
    scored = score_texts(model, test)
    texts = [test.text(i) for i in range(len(test))]
    np.testing.assert_allclose(scored["logits"], model.text.logits(texts), atol=0)
    assert scored["truncated"] == 0 and list(scored["index"]) == list(range(len(test)))
    r = classify_text(model, texts[0], explain=True)
    assert r["probability_fake"] == pytest.approx(float(scored["probs"][0]), abs=1e-6)
    assert r["label"] == ("fake" if r["probability_fake"] >= 0.5 else "real")
    assert isinstance(r["in_distribution"], float) and isinstance(r["uncertain"], bool)
    a = r["attributions"]
    assert sum(a["scores"]) + a["bias"] == pytest.approx(float(scored["logits"][0]), abs=1e-6)
    assert classify_multimodal(model, text=texts[0])["probability_fake"] == pytest.approx(r["probability_fake"])
    # a recipe's logits stay the fitted ones through the float64 tensors
    refit = NgramTextModel.fit(
        list(ngram_checkpoint["fit"].texts), ngram_checkpoint["fit"].labels, _balanced(ngram_checkpoint["fit"])
    )
    np.testing.assert_allclose(model.text.logits(texts), refit.logits(texts), atol=1e-12)


def _balanced(fit):
    from dfmm.data.sources import balanced_weights

    return balanced_weights(fit.labels, np.asarray(fit.meta["source"]))


def test_out_of_distribution_texts_are_flagged(ngram_checkpoint):
    from dfmm.serving.inference import classify_text, load_model

    model, _ = load_model(ngram_checkpoint["path"])
    home = classify_text(model, ngram_checkpoint["test"].text(0))
    away = classify_text(model, "def f(x):\n    return [i ** 2 for i in range(x) if i % 3]  # list comprehension")
    assert away["ood_distance"] > home["ood_distance"]


def _rewritten(src, dst, *, meta=None, state=None):
    blob = torch.load(src, weights_only=True)
    import json

    m = json.loads(blob["meta"])
    if meta:
        meta(m)
    blob["meta"] = json.dumps(m)
    if state:
        state(blob["state"])
    torch.save(blob, dst)
    return dst


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"meta": lambda m: m["ngrams"].update(n_features=1024)}, "ngrams.n_features = 1024; expected 1048576"),
        ({"meta": lambda m: m["ngrams"].update(char_wb=[2, 4])}, "ngrams.char_wb = [2, 4]"),
        ({"meta": lambda m: m["ngrams"].update(default_idf=0.5)}, "ngrams.default_idf = 0.5"),
        ({"meta": lambda m: m["ngrams"].update(seen=3)}, "an n-gram model of 3 seen n-grams"),
        ({"meta": lambda m: m.pop("ngrams")}, "no ngrams"),
        ({"state": lambda s: s[PREFIX + "index"].__setitem__(0, 2**22)}, "outside 0..2097151"),
        ({"state": lambda s: s[PREFIX + "index"].__setitem__(1, s[PREFIX + "index"][0])}, "not sorted and distinct"),
        ({"state": lambda s: s[PREFIX + "idf"].__setitem__(0, 0.5)}, "holds values outside [1, "),
        ({"state": lambda s: s[PREFIX + "idf"].__setitem__(0, 1e6)}, "holds values outside [1, "),
        ({"state": lambda s: s.__setitem__(PREFIX + "coef", s[PREFIX + "coef"].long())}, "expected a floating-point"),
        ({"state": lambda s: s[PREFIX + "coef"].__setitem__(0, float("nan"))}, "holds non-finite values"),
        ({"state": lambda s: s.pop(PREFIX + "coef")}, "missing: 1"),
    ],
)
def test_a_checkpoint_that_does_not_fit_its_metadata_is_refused_in_one_line(
    ngram_checkpoint, tmp_path, change, message
):
    from dfmm.serving.inference import load_model

    bad = _rewritten(ngram_checkpoint["path"], tmp_path / "bad.pt", **change)
    with pytest.raises(CheckpointError) as e:
        load_model(bad)
    assert message in str(e.value) and "\n" not in str(e.value) and "bad.pt" in str(e.value)


def test_sweeps_and_attribution_examples_take_an_ngram_branch(ngram_checkpoint):
    from dfmm.analysis.explanations import attribution_examples
    from dfmm.analysis.sweeps import sweep_texts
    from dfmm.serving.evaluate import score_texts
    from dfmm.serving.inference import load_model

    model, _ = load_model(ngram_checkpoint["path"])
    test = ngram_checkpoint["test"]
    out = sweep_texts(model, test, ["case_whitespace", "truncate_64"], n_resamples=50)
    assert set(out["perturbations"]) == {"case_whitespace", "truncate_64"}
    shown = attribution_examples(model, test, score_texts(model, test), per_kind=1)
    assert shown and all("<span" in a.html for a in shown)


def test_export_says_an_ngram_branch_has_nothing_to_export(ngram_checkpoint, tmp_path):
    from dfmm.models.export import export_model

    with pytest.raises(CheckpointError, match="the n-gram text model has no network to export"):
        export_model(ngram_checkpoint["path"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------ shipping
@pytest.fixture(scope="module")
def shipped(tiny_models, ngram_checkpoint):
    """runs/tiny/shipped/ as notebook 07 writes it when the n-gram recipe wins, and its record."""
    from dfmm.analysis.shipped import ship_models
    from dfmm.data import image_splits, text_splits
    from dfmm.training.reference import frozen_split_features

    cfg = tiny_models["cfg"]
    fit = ngram_checkpoint["fit"]
    features = frozen_split_features(cfg, "text", fit, cfg.cache_dir)
    record = ship_models(cfg, image_splits(cfg), text_splits(cfg), fit, features)
    return {"cfg": cfg, "record": record, "folder": cfg.run_dir / "shipped"}


def test_the_shipped_ensemble_fuses_the_card_visual_branch_with_the_ngram_branch(shipped, tiny_models, tmp_path):
    from dfmm.data import image_splits
    from dfmm.files import file_digest
    from dfmm.serving.inference import classify_multimodal, classify_text, load_model

    folder, record = shipped["folder"], shipped["record"]
    assert sorted(p.name for p in folder.iterdir()) == ["multimodal_ensemble.pt", "text_branch.pt", "visual_branch.pt"]
    assert file_digest(folder / "visual_branch.pt") == file_digest(tiny_models["visual"])  # the card's, unchanged
    assert record["text"] == "TF-IDF n-grams" and record["visual"] == "improved"
    fusion = record["fusion"]
    assert fusion["variant"] in fusion["chosen_on"]["auc"] and fusion["test_pairs"]["n"] > 0
    assert fusion["minus_card"] == pytest.approx(fusion["test_pairs"]["auc"] - fusion["card_test_pairs"]["auc"])
    ens, _ = load_model(folder / "multimodal_ensemble.pt")
    assert ens.kind == "multimodal_ensemble" and ens.text_is_ngrams and ens.fusion is not None
    text_only, _ = load_model(folder / "text_branch.pt")
    image = image_splits(shipped["cfg"])["test"].sources[0]
    both = classify_multimodal(ens, image, text="in conclusion, the market offers a diverse array")
    assert both["modalities"] == ["text", "visual"] and both["fusion_weights"] is not None
    alone = classify_text(text_only, "in conclusion, the market offers a diverse array")
    assert both["scores"]["text"] == pytest.approx(alone["probability_fake"])
    assert isinstance(both["in_distribution"], float)
    wide = _rewritten(
        folder / "multimodal_ensemble.pt", tmp_path / "wide.pt", meta=lambda m: m["fusion"].update(text_dim=2)
    )
    with pytest.raises(CheckpointError, match="fusion.text_dim = 2; expected 1, the text branch's feature width"):
        load_model(wide)
    # the card's files in runs/NAME/ are never replaced
    assert load_model(tiny_models["ensemble"])[0].text_is_ngrams is False


@pytest.mark.parametrize("runtime", [installed(r) for r in RUNTIMES])
def test_the_shipped_ensemble_exports_its_visual_branch_and_serves_its_ngrams_as_they_are(shipped, tmp_path, runtime):
    """dfmm export of the shipped ensemble: the visual branch, its frozen backbone and MTCNN as graphs, the n-gram
    text model's tensors beside them (NumPy under every runtime); the same results as PyTorch within 1e-4."""
    import json

    from dfmm.data import image_splits
    from dfmm.models.export import export_model
    from dfmm.serving.inference import classify_image, classify_multimodal, classify_text, load_model

    manifest = export_model(shipped["folder"] / "multimodal_ensemble.pt", tmp_path / "out")
    assert "text" not in manifest["graphs"] and {"visual", "visual_frozen", "mtcnn_pnet"} <= set(manifest["graphs"])
    assert manifest["numpy_branches"]["text"]["model"] == "ngrams" and "ood" in manifest["numpy_branches"]["text"]
    slow, _ = load_model(shipped["folder"] / "multimodal_ensemble.pt")
    fast, _ = load_model(tmp_path / "out", runtime)
    assert fast.text_is_ngrams and fast.tokenizer is None and fast.runtime == runtime
    image = image_splits(shipped["cfg"])["test"].sources[0]
    text = "In conclusion, the market offers a diverse array of fresh and delightful baked goods."
    for call in (
        lambda m: classify_text(m, text, explain=True),
        lambda m: classify_image(m, image),
        lambda m: classify_multimodal(m, image, text=text),
    ):
        a, b = call(slow), call(fast)
        assert b["probability_fake"] == pytest.approx(a["probability_fake"], abs=1e-4)
        assert b["label"] == a["label"] and b["uncertain"] == a["uncertain"]
        assert b["in_distribution"] == pytest.approx(a["in_distribution"], abs=0.01)
        assert b.get("attributions") == a.get("attributions")
    path = tmp_path / "out" / "manifest.json"
    m = json.loads(path.read_text())
    m["numpy_branches"] = {"visual": {"model": "ngrams"}, **m["numpy_branches"]}
    path.write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match="only the n-gram text branch runs without a graph") as e:
        load_model(tmp_path / "out", runtime)
    assert "\n" not in str(e.value)


def test_without_a_winner_the_card_files_are_shipped(tiny_models, tmp_path):
    import dataclasses

    from dfmm.analysis.shipped import ship_models
    from dfmm.data import image_splits, text_splits
    from dfmm.files import file_digest

    cfg = tiny_models["cfg"]
    other = dataclasses.replace(cfg, study=dataclasses.replace(cfg.study, runs_dir=str(tmp_path)))
    (tmp_path / cfg.study.name).mkdir()
    for name in ("visual", "text", "ensemble"):
        (tmp_path / cfg.study.name / cfg.checkpoint(name).name).write_bytes(cfg.checkpoint(name).read_bytes())
    record = ship_models(other, image_splits(cfg), text_splits(cfg))
    assert record == {
        "folder": "shipped/",
        "visual": "improved",
        "text": "improved",
        "fusion": "the card's (notebook 04)",
    }
    for name in ("visual", "text", "ensemble"):
        shipped_file = tmp_path / cfg.study.name / "shipped" / cfg.checkpoint(name).name
        assert file_digest(shipped_file) == file_digest(cfg.checkpoint(name))


@pytest.mark.parametrize(
    ("chosen", "ci", "ships"),
    [
        (["TF-IDF n-grams", "TF-IDF n-grams"], [0.01, 0.2], True),
        (["TF-IDF n-grams", "TF-IDF n-grams"], [-0.01, 0.2], False),  # not better than the compact model
        (["TF-IDF n-grams", "frozen + n-grams"], [0.01, 0.2], False),  # an unstable choice
        (None, None, False),  # no held-out folds
    ],
)
def test_the_ngram_branch_ships_only_when_held_out_validation_chooses_it(chosen, ci, ships):
    from dfmm.analysis.generalization import ngram_ship_decision

    ok, reason = ngram_ship_decision({"chosen": chosen, "minus_compact_ci": ci}, "TF-IDF n-grams")
    assert ok is ships and reason


def test_the_front_pages_say_where_the_shipped_models_are_and_compare_them():
    from dfmm.study.held_out import held_out_summary

    side = [
        {"model": m, "held_out": {"mean_auc": h, "ci": [h - 0.1, h + 0.1]}, "a": {"auc": a, "ci": [0, 1]}}
        for m, h, a in (("improved", 0.6, 0.9), ("TF-IDF n-grams", 0.7, 0.8))
    ]
    fusion = {
        "variant": "weighted",
        "test_pairs": {"auc": 0.77, "ci": [0.73, 0.8]},
        "card_test_pairs": {"auc": 0.79, "ci": [0.76, 0.83]},
        "minus_card": -0.02,
        "minus_card_ci": [-0.05, 0.01],
    }
    shipped = {"folder": "shipped/", "visual": "improved", "text": "TF-IDF n-grams", "reason": "why", "fusion": fusion}
    summary = held_out_summary(
        {"study": "compact", "generalization": {"shipped": shipped | {"text_side_by_side": side}}}
    )
    assert (
        "`runs/compact/shipped/` holds visual `improved` and text `TF-IDF n-grams` (why)" in summary["shipped_sentence"]
    )
    assert "-0.020 [-0.050, 0.010]" in summary["shipped_sentence"]
    title, columns, rows = summary["tables"][-1]
    assert columns == ("model", "a held-out texts", "unseen folds")
    assert rows == [
        ("improved", "0.900 [0.000, 1.000]", "0.600 [0.500, 0.700]"),
        ("TF-IDF n-grams", "0.800 [0.000, 1.000]", "0.700 [0.600, 0.800]"),
    ]
    assert held_out_summary({"generalization": {"shipped": {"visual": "improved"}}})["shipped_sentence"] == ""
