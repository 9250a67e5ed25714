from __future__ import annotations

import numpy as np
import torch

from dfmm.explain import GradCamExplainer, deletion_check, token_attributions, tokens_html
from dfmm.inference import load_model


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

    from dfmm.explain import LogitTarget

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


def test_token_attributions_cover_every_token(tiny_models):
    model, _ = load_model(tiny_models["text"])
    a = token_attributions(model.text, model.tokenizer, "Furthermore, it is important to note this.", 64)
    assert len(a["tokens"]) == len(a["scores"]) and a["tokens"][0] == "[CLS]"
    assert any(abs(s) > 0 for s in a["scores"])
    html = tokens_html(a["tokens"], a["scores"])
    assert "furthermore" in html and "[CLS]" not in html
