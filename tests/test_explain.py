from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dfmm.serving.explain as explain
from dfmm.models.scoring import DecisionRule, sigmoid
from dfmm.serving.explain import GradCamExplainer, deletion_check, token_attributions, tokens_html
from dfmm.serving.inference import load_model


def test_gradcam_maps_and_single_logit_targets(tiny_models):
    model, _ = load_model(tiny_models["visual"])
    x = torch.randn(3, 3, 64, 64)
    with GradCamExplainer(model.visual) as cam:
        maps, logits = cam(x, "fake")
        maps_real, _ = cam(x, "real")
        again, _ = cam(x, "fake")  # the same CAM object serves many batches
    assert maps.shape == (3, 64, 64) and logits.shape == (3,)
    assert maps.min() >= 0 and maps.max() <= 1.0 + 1e-6
    assert np.allclose(maps, again, atol=1e-5)
    assert not np.allclose(maps, maps_real)  # evidence for fake is not evidence for real
    d = deletion_check(model.visual, x, maps, fraction=0.2)
    assert set(d) >= {"salient_drop", "control_drop", "ratio"} and d["n"] == 3


def test_gradcam_graph_cut_matches_the_full_backward_pass(tiny_models):
    """Stopping backward at the CAM layer is a speed-up only: the maps equal grad-cam's own, full-graph ones."""
    from pytorch_grad_cam import GradCAM

    from dfmm.serving.explain import LogitTarget

    model, _ = load_model(tiny_models["visual"])
    vis = model.visual.eval()
    x = torch.randn(2, 3, 64, 64)
    ref = GradCAM(model=vis, target_layers=[vis.gradcam_layer()])
    expected = np.concatenate(
        [ref(input_tensor=x[:1], targets=[LogitTarget(1.0)]), ref(input_tensor=x[1:], targets=[LogitTarget(-1.0)])]
    )
    ref.activations_and_grads.release()
    flags = [p.requires_grad for p in vis.parameters()]
    with GradCamExplainer(vis) as cam:
        got = np.stack([cam(x[:1], "fake")[0][0], cam(x[1:], "real")[0][0]])
    assert np.allclose(got, expected, atol=1e-5)
    assert [p.requires_grad for p in vis.parameters()] == flags  # training can go on after explaining
    layer = vis.gradcam_layer()
    assert not layer._forward_hooks  # close() removed every hook
    assert all(p.grad is None for p in vis.parameters())


def _predicted_signs(cam: GradCamExplainer, x: torch.Tensor, monkeypatch) -> list[float]:
    """The sign of every target GradCAM is given for ``cam(x, "predicted")`` (+1: fake, -1: real)."""
    signs: list[float] = []
    cls = explain.LogitTarget

    def make(sign: float) -> explain.LogitTarget:
        signs.append(float(sign))
        return cls(sign)

    with monkeypatch.context() as m:
        m.setattr(explain, "LogitTarget", make)
        cam(x, "predicted")
    return signs


def test_predicted_class_is_the_rules_label_not_the_logits_sign(tiny_models, monkeypatch):
    """A logit between the rule's logit threshold and 0 is "fake" to the checkpoint's rule (threshold < 0.5):
    GradCAM's "predicted" target and the deletion check's sign follow the rule, where ``logit >= 0`` says real."""
    model, _ = load_model(tiny_models["visual"])
    vis = model.visual.eval()
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        z0 = float(vis(x)[0])
        vis.head.bias -= (z0 + 0.5) / float(vis.log_scale.exp())  # this image's logit is now -0.5
        z = float(vis.scored(x)[0][0])
    assert abs(z + 0.5) < 1e-4
    rule = DecisionRule(threshold=float(sigmoid(z / 2.0)) - 0.001, temperature=2.0)  # fake from logit ~ -0.5 up
    assert rule.threshold < 0.5 and rule.label(float(rule.probability(z))) == "fake"
    assert not z >= 0  # what the old sign said: real

    with GradCamExplainer(vis, rule) as cam:
        assert _predicted_signs(cam, x, monkeypatch) == [1.0]  # the target is +logit: evidence for fake
        maps, _ = cam(x, "predicted")
        maps_fake, _ = cam(x, "fake")
    assert np.allclose(maps, maps_fake, atol=1e-6)

    d = deletion_check(vis, x, maps, fraction=0.2, rule=rule)
    as_fake = deletion_check(vis, x, maps, fraction=0.2, rule=DecisionRule(threshold=0.0))  # every image fake
    as_real = deletion_check(vis, x, maps, fraction=0.2, rule=DecisionRule(threshold=1.1))  # every image real
    assert as_fake["salient_drop"] != 0.0 and as_fake["control_drop"] != 0.0
    assert d["salient_drop"] == as_fake["salient_drop"] == -as_real["salient_drop"]
    assert d["control_drop"] == as_fake["control_drop"] == -as_real["control_drop"]
    # without a rule: DecisionRule(), i.e. logit >= 0 (the default for checkpoints with no threshold)
    assert deletion_check(vis, x, maps, fraction=0.2)["salient_drop"] == as_real["salient_drop"]


def test_predicted_class_uses_the_mirror_averaged_logits_with_tta(tiny_models, monkeypatch):
    """With the checkpoint's ``tta`` the rule was fitted on mirror-averaged logits: an image whose un-mirrored
    logit and mirror-averaged logit fall on opposite sides of the threshold is explained as its label says."""
    model, _ = load_model(tiny_models["visual"])
    vis = model.visual.eval()
    torch.manual_seed(1)
    x = torch.randn(1, 3, 64, 64)
    x[..., : x.shape[-1] // 2] += 2.0  # left half brighter: the mirrored view is another image
    with torch.no_grad():
        # the tiny model barely tells an image from its mirror: sharpen it 100x, then centre the two logits on 0
        vis.log_scale += math.log(100.0)
        mid = 0.5 * float(vis.scored(x, tta=False)[0][0] + vis.scored(x, tta=True)[0][0])
        vis.head.bias -= mid / float(vis.log_scale.exp())
        plain = float(vis.scored(x, tta=False)[0][0])
        averaged = float(vis.scored(x, tta=True)[0][0])
        mirrored = float(vis(torch.flip(x, dims=[3]))[0])
    assert averaged == pytest.approx(0.5 * (plain + mirrored), abs=1e-4)
    assert abs(plain - averaged) > 0.05 and plain * averaged < 0  # opposite sides of 0
    rule = DecisionRule(threshold=0.5, temperature=2.0)  # the threshold sits at logit 0, between the two
    label = rule.label(float(rule.probability(averaged)))
    assert label != rule.label(float(rule.probability(plain)))
    want = 1.0 if label == "fake" else -1.0

    with GradCamExplainer(vis, rule, tta=True) as cam:
        assert _predicted_signs(cam, x, monkeypatch) == [want]
        maps, _ = cam(x, "predicted")
        maps_label, _ = cam(x, label)
    with GradCamExplainer(vis, rule) as plain_cam:  # without tta: the un-mirrored logit's class
        assert _predicted_signs(plain_cam, x, monkeypatch) == [-want]
    assert np.allclose(maps, maps_label, atol=1e-6)

    d = deletion_check(vis, x, maps, fraction=0.2, rule=rule, tta=True)
    forced = DecisionRule(threshold=0.0 if label == "fake" else 1.1)
    assert d["salient_drop"] == deletion_check(vis, x, maps, fraction=0.2, rule=forced, tta=True)["salient_drop"]
    assert d["control_drop"] == deletion_check(vis, x, maps, fraction=0.2, rule=forced, tta=True)["control_drop"]


def test_token_attributions_cover_every_token(tiny_models):
    model, _ = load_model(tiny_models["text"])
    a = token_attributions(model.text, model.tokenizer, "Furthermore, it is important to note this.", 64)
    assert len(a["tokens"]) == len(a["scores"]) and a["tokens"][0] == "[CLS]"
    assert any(abs(s) > 0 for s in a["scores"])
    html = tokens_html(a["tokens"], a["scores"])
    assert "furthermore" in html and "[CLS]" not in html
