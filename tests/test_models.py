from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dfmm.models import FusionEnsemble, TextBranch, VisualBranch
from dfmm.models.text import mean_pool
from dfmm.weights import create_text_encoder, create_visual_backbone

PARAMS = Path(__file__).resolve().parents[1] / "params"


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


def test_mid_level_joins_an_earlier_feature_map_and_survives_a_checkpoint(lite0):
    from dfmm.branches import visual_from_meta

    backbone, _ = lite0
    model = VisualBranch(backbone, dropout=0.0, mid_level=2).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        f = model.features(x)
        last, (mid,) = backbone.forward_intermediates(x, indices=[2])
    assert model.feature_dim == f.shape[1] == 1280 + 40
    assert torch.allclose(f.norm(dim=1), torch.ones(2), atol=1e-5)
    # each part is unit-norm before the join: the stride-8 half is that level's spatial mean, direction kept
    expect_mid = torch.nn.functional.normalize(mid.mean((2, 3)), dim=1) / 2**0.5
    assert torch.allclose(f[:, 1280:], expect_mid, atol=1e-5)
    assert torch.allclose(f[:, 1280:].norm(dim=1), torch.full((2,), 2**-0.5), atol=1e-5)
    meta = {"timm_name": "tf_efficientnet_lite0", "dropout": 0.0, "global_pool": "avg", "mid_level": 2}
    with torch.no_grad():
        assert torch.allclose(visual_from_meta(meta, model.state_dict())(x), model(x), atol=1e-5)


def test_recipe_pooling_reaches_the_backbone_and_the_checkpoint():
    from dfmm.branches import build_visual, visual_from_meta, visual_meta
    from dfmm.config import load_config

    cfg = load_config([PARAMS / "demo.yaml"], ["visual.recipes.improved.global_pool=max"])
    card, _ = build_visual(cfg, cfg.visual.recipes["card"])
    model, info = build_visual(cfg, cfg.visual.recipes["improved"])
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.backbone(x), model.backbone.forward_features(x).amax((2, 3)))
        assert torch.allclose(card.eval().backbone(x), card.backbone.forward_features(x).mean((2, 3)), atol=1e-5)
        meta = visual_meta(cfg, info, "improved")
        assert (meta["global_pool"], visual_meta(cfg, info, "card")["global_pool"]) == ("max", "avg")
        assert torch.allclose(visual_from_meta(meta, model.state_dict())(x), model(x), atol=1e-5)


def test_text_encoder_package_gives_meaningful_embeddings():
    encoder, tokenizer, info = create_text_encoder("package:all-MiniLM-L6-v2")
    assert info.architecture == "bert" and encoder.config.hidden_size == 384
    model = TextBranch(encoder).eval()
    enc = tokenizer(["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stock markets fell sharply today."],
                    padding=True, return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        f = torch.nn.functional.normalize(model.features(enc["input_ids"], enc["attention_mask"]), dim=1)
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
