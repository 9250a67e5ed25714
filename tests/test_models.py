from __future__ import annotations

import pytest
import torch

from dfmm.models import FusionEnsemble, TextBranch, VisualBranch
from dfmm.models.text import mean_pool
from dfmm.models.weights import create_text_encoder, create_visual_backbone


@pytest.fixture(scope="module")
def lite0():
    return create_visual_backbone("package:efficientnet-lite0")


def test_lite0_package_weights_load_strictly_and_are_imagenet(lite0):
    import timm

    backbone, info = lite0
    assert info.architecture == "tf_efficientnet_lite0" and info.mean == (0.5, 0.5, 0.5)
    assert backbone.num_features == 1280
    # the renamed package weights differ from a fresh random init everywhere it matters
    fresh = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    assert not torch.allclose(fresh.conv_stem.weight, backbone.conv_stem.weight)
    # BN running stats of an ImageNet model are not the init values (0 mean, 1 var)
    assert backbone.bn2.running_var.mean().item() != pytest.approx(1.0, abs=1e-3)


def test_visual_branch_shapes_and_normalised_features(lite0):
    backbone, _ = lite0
    model = VisualBranch(backbone, dropout=0.2).eval()
    x = torch.randn(3, 3, 64, 64)
    f = model.features(x)
    assert f.shape == (3, 1280)
    assert torch.allclose(f.norm(dim=1), torch.ones(3), atol=1e-5)
    assert model(x).shape == (3,)
    assert model.log_scale.exp().item() == pytest.approx(10.0)


def test_scored_is_the_forward_pass_with_the_mirrored_view_averaged_in(lite0):
    """``scored`` (what serving, dfmm evaluate and the fusion read) is ``forward`` in eval mode; with ``tta`` its
    logits are the mean over the image and its mirror, and its features stay the unmirrored image's."""
    backbone, _ = lite0
    model = VisualBranch(backbone, dropout=0.2).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits, features = model.scored(x)
        assert torch.equal(logits, model(x)) and torch.equal(features, model.features(x))
        tta_logits, tta_features = model.scored(x, tta=True)
        assert torch.equal(tta_features, features)
        assert torch.equal(tta_logits, 0.5 * (model(x) + model(torch.flip(x, dims=[3]))))


def test_checkpoints_naming_the_retired_pooling_load_only_at_the_defaults(lite0):
    """Visual checkpoints written before ``global_pool``/``mid_level`` were removed name them: at the card's
    average pool and no extra level they are this model; any other value is refused in one line."""
    from dfmm.errors import CheckpointError
    from dfmm.models.branches import visual_from_meta

    backbone, _ = lite0
    model = VisualBranch(backbone, dropout=0.0).eval()
    x = torch.randn(1, 3, 64, 64)
    old = {"timm_name": "tf_efficientnet_lite0", "dropout": 0.0, "global_pool": "avg", "mid_level": -1}
    with torch.no_grad():
        assert torch.equal(visual_from_meta(old, model.state_dict())(x), model(x))
    for key, value in (("global_pool", "avgmax"), ("mid_level", 2)):
        with pytest.raises(CheckpointError, match=f"{key} = .*no longer has.*6575cbe") as e:
            visual_from_meta({**old, key: value}, model.state_dict())
        assert "\n" not in str(e.value)


def test_text_encoder_package_gives_meaningful_embeddings():
    encoder, tokenizer, info = create_text_encoder("package:all-MiniLM-L6-v2")
    assert info.architecture == "bert" and encoder.config.hidden_size == 384
    model = TextBranch(encoder).eval()
    sentences = ["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stock markets fell sharply today."]
    enc = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits, features = model.scored(enc["input_ids"], enc["attention_mask"])
        assert torch.equal(logits, model(enc["input_ids"], enc["attention_mask"]))
        f = torch.nn.functional.normalize(features, dim=1)
    sim = f @ f.T
    assert sim[0, 1] > sim[0, 2] + 0.2  # paraphrases closer than unrelated sentences: real pretrained weights


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.allclose(mean_pool(hidden, mask), torch.tensor([[2.0, 2.0]]))


def test_fusion_weights_on_simplex_and_missing_modality():
    fusion = FusionEnsemble(4, 3, attention=True)
    w = fusion.weights()
    assert torch.allclose(w.sum(), torch.tensor(1.0)) and (w >= 0).all()
    lv, lt = torch.tensor([2.0, -1.0]), torch.tensor([0.0, 3.0])
    assert torch.equal(fusion(lv, None), lv) and torch.equal(fusion(None, lt), lt)
    fused = fusion(lv, lt, torch.randn(2, 4), torch.randn(2, 3))
    assert torch.allclose(fused, 0.5 * lv + 0.5 * lt)  # attention starts at zero: a plain average at init
    with pytest.raises(ValueError):
        fusion(None, None)


def test_unknown_backbones_are_refused():
    from dfmm.errors import ConfigError

    with pytest.raises(ConfigError, match="package:efficientnet-lite0"):
        create_visual_backbone("package:resnet")
    with pytest.raises(ConfigError, match="timm_name"):
        create_visual_backbone("file:/tmp/x.pt")
