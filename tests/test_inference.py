from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dfmm.data import image_splits, text_splits, video_source
from dfmm.errors import CheckpointError, DataError
from dfmm.serving.inference import (
    aggregate,
    classify_image,
    classify_multimodal,
    classify_text,
    classify_video,
    load_model,
)


def _json_ok(result):
    json.dumps({k: v for k, v in result.items() if k != "gradcam"})


def test_branch_checkpoints_classify(tiny_models):
    cfg = tiny_models["cfg"]
    vis, config = load_model(tiny_models["visual"])
    assert config["study"]["name"] == "tiny" and config["visual"]["image_size"] == 64
    img_path = image_splits(cfg)["test"].sources[0]
    r = classify_image(vis, img_path, return_gradcam=True)
    assert r["label"] in ("real", "fake") and 0 <= r["probability_fake"] <= 1
    assert r["scores"]["visual"] == r["probability_fake"] and r["fusion_weights"] is None
    assert r["gradcam"]["heatmap"].shape == (64, 64) and r["gradcam"]["overlay"].dtype == np.uint8
    _json_ok(r)
    # PIL image and array inputs give the same answer as the path
    pil = Image.open(img_path)
    assert classify_image(vis, pil)["probability_fake"] == pytest.approx(r["probability_fake"], abs=1e-5)
    assert classify_image(vis, np.asarray(pil))["probability_fake"] == pytest.approx(r["probability_fake"], abs=1e-5)
    txt, _ = load_model(tiny_models["text"])
    t = classify_text(txt, text_splits(cfg)["test"].texts[0], explain=True)
    assert 0 <= t["probability_fake"] <= 1 and len(t["attributions"]["tokens"]) == t["tokens"]
    with pytest.raises(CheckpointError, match="no text branch"):
        classify_text(vis, "hello")


def test_ensemble_multimodal_and_fallback(tiny_models):
    cfg = tiny_models["cfg"]
    model, config = load_model(tiny_models["ensemble"])
    assert config["study"]["name"] == "tiny"
    img = image_splits(cfg)["test"].sources[0]
    text = text_splits(cfg)["test"].texts[0]
    both = classify_multimodal(model, image_path_or_pil=img, text=text)
    assert set(both["scores"]) == {"visual", "text"} and both["modalities"] == ["text", "visual"]
    w = both["fusion_weights"]
    assert w["visual"] + w["text"] == pytest.approx(1.0)
    only_img = classify_multimodal(model, image_path_or_pil=img)
    assert only_img["probability_fake"] == pytest.approx(only_img["scores"]["visual"], abs=1e-6)
    only_txt = classify_multimodal(model, text=text)
    assert only_txt["probability_fake"] == pytest.approx(only_txt["scores"]["text"], abs=1e-6)
    _json_ok(both)
    with pytest.raises(DataError):
        classify_multimodal(model)


def test_video_aggregations(tiny_models):
    cfg = tiny_models["cfg"]
    model, _ = load_model(tiny_models["ensemble"])
    clip = sorted(video_source(cfg).rglob("*.mp4"))[0]
    r = classify_video(model, clip, num_frames=6, aggregation="mean", face_crop=False)
    probs = np.array([f["probability_fake"] for f in r["frames"]])
    assert len(probs) == 6 and r["probability_fake"] == pytest.approx(probs.mean())
    assert r["label"] == model.rule("visual").label(r["probability_fake"])
    assert classify_video(model, clip, num_frames=6, aggregation="max", face_crop=False)[
        "probability_fake"
    ] == pytest.approx(probs.max())
    with pytest.raises(DataError, match="unknown aggregation 'avg'"):
        classify_video(model, clip, num_frames=6, aggregation="avg")
    # by default frames are cropped to faces: frames without one are skipped (all kept when none has a face)
    d = classify_video(model, clip, num_frames=6)
    found = [f["face_found"] for f in d["frames"]]
    scored = [f["probability_fake"] for f in d["frames"] if f["probability_fake"] is not None]
    assert d["face_crop"] is True and d["frames_with_face"] == sum(found) and d["no_face"] == (not any(found))
    assert len(scored) == (6 if d["no_face"] else sum(found))
    assert d["probability_fake"] == pytest.approx(np.mean(scored))


def test_aggregate_rules():
    from dfmm.models.scoring import DecisionRule

    p = np.array([0.1, 0.2, 0.9, 0.8, 0.7])
    assert aggregate(p, "median") == (pytest.approx(0.7), "fake")
    assert aggregate(p, "vote") == (pytest.approx(0.6), "fake")  # the share of frames called fake
    # weights |p - 0.5| = .4 .3 .4 .3 .2: the unsure 0.7 frame counts least
    conf = (0.04 + 0.06 + 0.36 + 0.24 + 0.14) / 1.6
    assert aggregate(p, "confidence") == (pytest.approx(conf, abs=1e-5), "fake")
    assert aggregate(p, "max") == (0.9, "fake") and aggregate(p, "mean") == (pytest.approx(0.54), "fake")
    # the checkpoint's rule labels the score; vote calls each frame with it and needs at least half
    rule = DecisionRule(threshold=0.75)
    assert aggregate(p, "mean", rule) == (pytest.approx(0.54), "real")
    assert aggregate(p, "vote", rule) == (pytest.approx(0.4), "real")
    assert aggregate(p, "max", rule) == (0.9, "fake")
    w = np.abs(p - 0.75) + 1e-6  # confidence: the distance from this rule's threshold
    assert aggregate(p, "confidence", rule)[0] == pytest.approx(float((w * p).sum() / w.sum()), abs=1e-9)
    assert aggregate(np.array([0.2, 0.8]), "vote") == (0.5, "fake")  # a tie is fake
    assert aggregate(np.array([0.75]), "mean", rule) == (0.75, "fake")  # at the threshold: fake
    with pytest.raises(DataError, match="unknown aggregation"):
        aggregate(p, "average")


def test_bad_inputs(tiny_models, tmp_path):
    vis, _ = load_model(tiny_models["visual"])
    with pytest.raises(DataError, match="no such file"):
        classify_image(vis, tmp_path / "missing.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="notes.txt"):
        classify_image(vis, tmp_path / "notes.txt")
    with pytest.raises(DataError, match="is a directory"):
        classify_image(vis, tmp_path)
    txt, _ = load_model(tiny_models["text"])
    with pytest.raises(DataError, match="None"):
        classify_text(txt, None)
    with pytest.raises(DataError, match="empty"):
        classify_text(txt, "  \n ")


@pytest.mark.slow  # a fresh interpreter importing torch (~7 s)
def test_api_in_a_fresh_interpreter(tiny_models, tmp_path):
    code = (
        "import json, sys\n"
        "from dfmm import load_model, classify_text\n"
        f"m, c = load_model({str(tiny_models['ensemble'])!r})\n"
        "r = classify_text(m, 'In conclusion, this overview highlights key considerations.')\n"
        "print(json.dumps({'label': r['label'], 'kind': r['model']['kind']}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["kind"] == "multimodal_ensemble" and got["label"] in ("real", "fake")


def test_score_sets_measures_each_set_at_its_branch_threshold_with_group_intervals(tiny_models):
    """What notebook 06 reports: ``dfmm evaluate``'s scoring, metrics at the checkpoint's threshold, intervals that
    resample the scored rows' groups."""
    from dfmm.metrics import metrics_with_ci
    from dfmm.serving.evaluate import score_images, score_sets, score_texts

    cfg = tiny_models["cfg"]
    model, _ = load_model(tiny_models["ensemble"])
    images, texts = image_splits(cfg)["test"], text_splits(cfg)["test"]
    out = score_sets(model, images={"faces": images}, texts={"texts": texts}, text_batch_size=8)
    assert list(out) == ["faces", "texts"]
    for name, data, scores, branch in (
        ("faces", images, score_images(model, images), "visual"),
        ("texts", texts, score_texts(model, texts, 8), "text"),
    ):
        s = out[name]
        assert np.array_equal(s["probs"], scores["probs"]) and np.array_equal(s["index"], scores["index"])
        assert s["groups"] == [data.groups[i] for i in scores["index"]]
        expected = metrics_with_ci(scores["labels"], scores["probs"], model.threshold(branch), groups=s["groups"])
        assert json.dumps(s["metrics"], sort_keys=True) == json.dumps(expected, sort_keys=True)
        assert s["metrics"]["ci"]["resampled"] == "groups"


def test_by_aggregation_scores_every_rule_on_the_same_frames():
    from dfmm.models.scoring import DecisionRule
    from dfmm.serving.evaluate import by_aggregation
    from dfmm.serving.inference import AGGREGATIONS

    class Model:  # only the decision rule is read
        def rule(self, branch):
            return DecisionRule(threshold=0.3)

        def threshold(self, branch):
            return 0.3

    frames = {"fake": [0.9, 0.2, 0.8], "real": [0.1, 0.4, 0.2], "edge": [0.4, 0.25, None]}
    rows = [
        {"label": int(name != "real"), "per_frame": [{"probability_fake": p} for p in ps]}
        for name, ps in frames.items()
    ] + [{"label": 1, "error": "unreadable"}]
    table = by_aggregation(Model(), rows)
    assert list(table) == list(AGGREGATIONS) and all(m["n"] == 3 for m in table.values())
    assert table["mean"]["accuracy"] == 1.0  # 0.633, 0.233, 0.325 (the missing frame skipped) against 0.3
    assert table["max"]["accuracy"] == pytest.approx(2 / 3)  # the real clip's 0.4 frame makes it fake
    assert table["vote"]["accuracy"] == 1.0  # shares 2/3, 1/3, 1/2 against 0.5 (against 0.3 the real clip is fake)
