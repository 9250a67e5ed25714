"""One decision rule: an input a hair above or below the checkpoint's threshold gets the same label on every path.

Each variant is a copy of a tiny trained checkpoint whose threshold sits 0.001 above or below the probability of
a fixed input, with and without a temperature of 2, so any path that ignored the temperature, used ``logit >= 0``
or ``p > threshold`` would disagree with the others on at least one variant.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from dfmm.data import image_splits, text_splits
from dfmm.data.images import ImageSet
from dfmm.data.text import TextSet
from dfmm.models.checkpoints import load_checkpoint, save_checkpoint
from dfmm.models.scoring import DecisionRule, logit, sigmoid

# (name, temperature, threshold offset from the probability, the label that offset must give)
VARIANTS = [
    ("above_t1", 1.0, -0.001, "fake"),
    ("below_t1", 1.0, +0.001, "real"),
    ("above_t2", 2.0, -0.001, "fake"),
    ("below_t2", 2.0, +0.001, "real"),
]


# --------------------------------------------------------------------------------------------- unit tests
def test_probability_applies_the_temperature():
    rule = DecisionRule(threshold=0.7, temperature=2.0)
    logits = np.array([-4.0, 0.0, 2.0, 6.0])
    assert np.allclose(rule.probability(logits), 1 / (1 + np.exp(-logits / 2.0)), rtol=0, atol=1e-15)
    assert float(rule.probability(2.0)) == pytest.approx(1 / (1 + math.exp(-1.0)), abs=1e-15)
    assert float(DecisionRule().probability(2.0)) == pytest.approx(1 / (1 + math.exp(-2.0)), abs=1e-15)
    # extreme logits are clipped, not overflowed
    assert np.all(np.isfinite(DecisionRule(0.5, 0.01).probability([-1e9, 1e9])))


def test_is_fake_at_exactly_the_threshold():
    rule = DecisionRule(threshold=0.7)
    assert bool(rule.is_fake(0.7)) and rule.label(0.7) == "fake"  # >=, not >
    below = np.nextafter(0.7, 0.0)
    assert not bool(rule.is_fake(below)) and rule.label(below) == "real"
    assert rule.is_fake([0.1, 0.7, 0.9]).tolist() == [False, True, True]


def test_logit_is_fake_matches_probability_then_is_fake():
    for t, thr in [(1.0, 0.5), (2.0, 0.3), (0.5, 0.83)]:
        rule = DecisionRule(thr, t)
        boundary = t * logit(thr)  # the logit whose probability is the threshold
        grid = np.concatenate([np.linspace(-8, 8, 161), boundary + np.array([-1e-6, 1e-6])])
        for z in grid:
            assert rule.logit_is_fake(z) == bool(rule.is_fake(rule.probability(z))), (t, thr, z)
        assert not rule.logit_is_fake(boundary - 1e-6) and rule.logit_is_fake(boundary + 1e-6)
    # with the temperature, logit 0 is still p = 0.5: fake under threshold 0.5, real under 0.6
    assert DecisionRule(0.5, 3.0).logit_is_fake(0.0) and not DecisionRule(0.6, 3.0).logit_is_fake(0.0)


def test_from_meta_defaults_and_values():
    assert DecisionRule.from_meta({}) == DecisionRule(0.5, 1.0)
    r = DecisionRule.from_meta({"threshold": 0.42, "temperature": 1.5, "other": 1})
    assert r == DecisionRule(0.42, 1.5) and r.to_dict() == {"threshold": 0.42, "temperature": 1.5}
    assert float(sigmoid(np.array(0.0))) == 0.5


def test_sigmoid_never_overflows():
    with np.errstate(over="raise"):
        out = sigmoid(np.array([-1000.0, -60.0, 0.0, 60.0, 1000.0]))
    assert out[2] == 0.5 and 0.0 < out[0] < 1e-25 and 1.0 - out[-1] < 1e-15 and np.all(np.diff(out) >= 0)


def test_in_index_order_sorts_every_array_by_dataset_index():
    import torch

    from dfmm.models.scoring import in_index_order

    parts = {
        "logits": [torch.tensor([0.3, 0.1]), torch.tensor([0.5]), torch.tensor([0.0, 0.2])],
        "labels": [torch.tensor([1, 0]), torch.tensor([1]), torch.tensor([0, 0])],
        "index": [torch.tensor([3, 1]), torch.tensor([4]), torch.tensor([0, 2])],
    }
    out = in_index_order(parts)
    assert out["index"].tolist() == [0, 1, 2, 3, 4]
    assert out["logits"] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.5]) and out["labels"].tolist() == [0, 0, 0, 1, 1]
    empty = in_index_order({"logits": [], "labels": [], "index": []})
    assert all(len(v) == 0 for v in empty.values()) and empty["index"].dtype.kind == "i"


def test_predict_skips_unreadable_batches_sorts_and_averages_flips():
    import torch
    from torch import nn

    from dfmm.models.scoring import predict

    class Weighted(nn.Module):  # a logit that changes under a horizontal flip
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.arange(4, dtype=torch.float32))

        def forward(self, x):
            return (x * self.w).sum(dim=(1, 2, 3))

    x = torch.arange(3 * 1 * 2 * 4, dtype=torch.float32).reshape(3, 1, 2, 4)
    batches = [
        {"inputs": x[2:], "labels": torch.tensor([1]), "index": torch.tensor([2])},
        {"inputs": None, "labels": None, "index": None},  # a batch whose images were all unreadable
        {"inputs": x[:2], "labels": torch.tensor([0, 1]), "index": torch.tensor([0, 1])},
    ]
    model = Weighted()
    plain = predict(model, batches)
    assert plain["index"].tolist() == [0, 1, 2] and plain["labels"].tolist() == [0, 1, 1]
    assert plain["logits"] == pytest.approx(model(x).detach().numpy())
    tta = predict(model, batches, tta=True)
    want = 0.5 * (model(x) + model(torch.flip(x, dims=[3]))).detach().numpy()
    assert tta["logits"] == pytest.approx(want) and not np.allclose(tta["logits"], plain["logits"])


def test_inference_imports_no_training_code():
    code = (
        "import sys, dfmm.serving.inference, dfmm.models.scoring, dfmm.data.faces, dfmm.data.video\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('dfmm.training', 'dfmm.study', 'dfmm.analysis')))\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# ------------------------------------------------------------------------------------------- agreement
def _variant(src, dst, section=None, **changes):
    """A copy of checkpoint ``src`` with ``changes`` in its metadata (in ``meta[section]`` for an ensemble)."""
    kind, state, meta = load_checkpoint(src)
    if section:
        meta = {**meta, section: {**meta[section], **changes}}
    else:
        meta = {**meta, **changes}
    return save_checkpoint(dst, kind, state, meta)


@pytest.fixture(scope="module")
def fixed_image(tiny_models):
    """A 64 px test image and its raw logit under the tiny visual checkpoint (no face crop: it is model size)."""
    from dfmm.serving.inference import classify_image, load_model

    img = image_splits(tiny_models["cfg"])["test"].sources[0]
    model, _ = load_model(tiny_models["visual"])
    r = classify_image(model, img)
    assert r["face"]["cropped"] is False  # 64 px < 2 x 64: "auto" does not crop
    z = model.rule("visual").temperature * logit(r["probability_fake"])
    return img, z


def _cli_json(capsys, *args):
    from dfmm.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return json.loads(captured.out)


def _csv_rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("name,temperature,offset,expected", VARIANTS)
def test_visual_label_agrees_on_every_path(tiny_models, fixed_image, tmp_path, capsys, name, temperature, offset,
                                           expected):  # fmt: skip
    from dfmm.serving.evaluate import evaluate_images, score_branch, score_images
    from dfmm.serving.inference import aggregate, classify_image, classify_multimodal, load_model

    img, z = fixed_image
    p = float(sigmoid(np.array(z / temperature)))
    threshold = p + offset
    # the variants only catch a path that drops the temperature if it moves the probability past the margin
    assert abs(float(sigmoid(np.array(z))) - float(sigmoid(np.array(z / 2)))) > 0.002, f"logit {z} too near 0"
    ckpt = _variant(tiny_models["visual"], tmp_path / f"{name}.pt", threshold=threshold, temperature=temperature)
    model, _ = load_model(ckpt)
    rule = model.rule("visual")
    assert rule == DecisionRule(threshold, temperature)

    r = classify_image(model, img)
    assert r["probability_fake"] == pytest.approx(p, abs=1e-5) and r["threshold"] == threshold
    labels = {"classify_image": r["label"]}
    labels["gradcam.explains"] = classify_image(model, img, return_gradcam=True)["gradcam"]["explains"]
    mm = classify_multimodal(model, image_path_or_pil=img)
    assert mm["probability_fake"] == pytest.approx(p, abs=1e-5)
    labels["classify_multimodal"] = mm["label"]
    labels["cli classify image"] = _cli_json(capsys, "classify", "image", img, "--model", ckpt)["label"]

    s = score_images(model, ImageSet([img], np.array([0]), ["g"], ["img"]))
    assert float(s["probs"][0]) == pytest.approx(p, abs=1e-5)
    labels["score_images + rule"] = rule.label(float(s["probs"][0]))
    # notebook 04's fusion inputs come from the same function, with features: the same probability and label
    f = score_branch(model, "visual", ImageSet([img], np.array([0]), ["g"], ["img"]), features=True)
    assert float(f["probs"][0]) == pytest.approx(float(s["probs"][0]), abs=1e-6) and f["features"].shape[0] == 1
    labels["score_branch with features"] = rule.label(float(f["probs"][0]))

    out = tmp_path / f"{name}.csv"
    summary = _cli_json(capsys, "score", "--model", ckpt, "--images", img, "--out", out, "--quiet")
    assert summary["scored"] == 1 and summary["errors"] == 0
    (row,) = _csv_rows(out)
    assert float(row["probability_fake"]) == pytest.approx(p, abs=1e-5)
    labels["cli score csv"] = row["label"]

    frames = np.full(5, r["probability_fake"])
    share, vote_label = aggregate(frames, "vote", rule)
    assert share == (1.0 if expected == "fake" else 0.0)
    labels["aggregate vote"] = vote_label
    labels["aggregate mean"] = aggregate(frames, "mean", rule)[1]
    labels["aggregate confidence"] = aggregate(frames, "confidence", rule)[1]

    # dfmm evaluate counts the same call: the image as "real" and as "fake" lands in the predicted column
    folder = tmp_path / "eval"
    for sub in ("real", "fake"):
        (folder / sub).mkdir(parents=True)
        (folder / sub / "x.png").write_bytes(open(img, "rb").read())
    confusion = evaluate_images(model, str(folder))["confusion"]
    labels["evaluate_images"] = "fake" if confusion == [[0, 1], [0, 1]] else "real" if confusion == [
        [1, 0], [1, 0]] else f"inconsistent {confusion}"  # fmt: skip

    assert set(labels.values()) == {expected}, labels


@pytest.mark.parametrize("name,temperature,offset,expected", VARIANTS[:2])
def test_ensemble_visual_rule_agrees(tiny_models, fixed_image, tmp_path, capsys, name, temperature, offset, expected):
    """An ensemble carries the branch thresholds in ``meta['visual']``: image-only calls must use that one."""
    from dfmm.serving.inference import classify_image, classify_multimodal, load_model

    img, z = fixed_image
    p = float(sigmoid(np.array(z / temperature)))
    ckpt = _variant(tiny_models["ensemble"], tmp_path / f"ens_{name}.pt", "visual", threshold=p + offset,
                    temperature=temperature)  # fmt: skip
    model, _ = load_model(ckpt)
    labels = {
        "classify_image": classify_image(model, img)["label"],
        "gradcam": classify_image(model, img, return_gradcam=True)["gradcam"]["explains"],
        "multimodal image only": classify_multimodal(model, image_path_or_pil=img)["label"],
        "cli multimodal": _cli_json(capsys, "classify", "multimodal", "--image", img, "--model", ckpt)["label"],
    }
    assert set(labels.values()) == {expected}, labels


@pytest.fixture(scope="module")
def fixed_text(tiny_models):
    from dfmm.serving.inference import classify_text, load_model

    text = text_splits(tiny_models["cfg"])["test"].texts[0]
    model, _ = load_model(tiny_models["text"])
    p = classify_text(model, text)["probability_fake"]
    return text, model.rule("text").temperature * logit(p)


@pytest.mark.parametrize("name,temperature,offset,expected", VARIANTS)
def test_text_label_agrees_on_every_path(tiny_models, fixed_text, tmp_path, capsys, name, temperature, offset,
                                         expected):  # fmt: skip
    from dfmm.serving.evaluate import score_texts
    from dfmm.serving.inference import aggregate, classify_multimodal, classify_text, load_model

    text, z = fixed_text
    p = float(sigmoid(np.array(z / temperature)))
    assert abs(float(sigmoid(np.array(z))) - float(sigmoid(np.array(z / 2)))) > 0.002, f"logit {z} too near 0"
    ckpt = _variant(tiny_models["text"], tmp_path / f"t_{name}.pt", threshold=p + offset, temperature=temperature)
    model, _ = load_model(ckpt)
    rule = model.rule("text")
    r = classify_text(model, text)
    assert r["probability_fake"] == pytest.approx(p, abs=1e-5)
    labels = {"classify_text": r["label"]}
    labels["classify_multimodal text only"] = classify_multimodal(model, text=text)["label"]
    s = score_texts(model, TextSet([text], np.array([1]), ["g"]), cache_dir=tmp_path / "cache")
    assert float(s["probs"][0]) == pytest.approx(p, abs=1e-5)
    labels["score_texts + rule"] = rule.label(float(s["probs"][0]))
    labels["cli classify text"] = _cli_json(capsys, "classify", "text", "--string", text, "--model", ckpt)["label"]
    jsonl = tmp_path / "one.jsonl"
    jsonl.write_text(json.dumps({"text": text, "label": 1}) + "\n", encoding="utf-8")
    out = tmp_path / "t.csv"
    _cli_json(capsys, "score", "--model", ckpt, "--texts", jsonl, "--out", out, "--quiet")
    (row,) = _csv_rows(out)
    labels["cli score --texts"] = row["label"]
    labels["aggregate vote"] = aggregate(np.full(3, r["probability_fake"]), "vote", rule)[1]
    assert set(labels.values()) == {expected}, labels
