"""The score cache: a model never scores the same input twice in a study, and a cached score is that model's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dfmm.models.score_cache import ScoreCache, input_keys, model_key
from dfmm.models.scoring import predict
from dfmm.models.visual import VisualBranch


def tiny_visual(seed: int = 0) -> VisualBranch:
    torch.manual_seed(seed)
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    backbone.num_features = 4
    return VisualBranch(backbone).eval()


class Counting:
    """Counts the rows each forward pass of ``model`` gets (plain calls and ``scored``)."""

    def __init__(self, model: nn.Module) -> None:
        self.rows = 0
        for name in ("forward", "scored"):
            original = getattr(model, name)

            def counted(*args, _original=original, **kw):
                self.rows += len(args[0] if args else next(iter(kw.values())))
                return _original(*args, **kw)

            setattr(model, name, counted)


def batches(x: torch.Tensor, size: int, offset: int = 0) -> list[dict]:
    return [
        {
            "inputs": x[s : s + size],
            "labels": torch.zeros(len(x[s : s + size])),
            "index": torch.arange(s, s + size)[: len(x[s : s + size])] + offset,
        }
        for s in range(0, len(x), size)
    ]


def images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 16, 16, generator=g).contiguous(memory_format=torch.channels_last)


def test_second_scoring_reads_every_row_and_gives_the_same_numbers(tmp_path):
    model, x = tiny_visual(), images(10)
    first = predict(model, batches(x, 4), tta=True, features=True, cache_dir=tmp_path)
    assert len(list((tmp_path / "scores").glob("*/*.npz"))) == 1
    fresh = predict(model, batches(x, 4), tta=True, features=True)
    np.testing.assert_array_equal(first["logits"], fresh["logits"])
    np.testing.assert_array_equal(first["features"], fresh["features"])
    counter = Counting(model)
    again = predict(model, batches(x, 3), tta=True, features=True, cache_dir=tmp_path)  # other batches
    assert counter.rows == 0
    np.testing.assert_array_equal(again["logits"], first["logits"])
    np.testing.assert_array_equal(again["features"], first["features"])
    assert len(list((tmp_path / "scores").glob("*/*.npz"))) == 1  # nothing new to write


def test_a_subset_finds_its_rows_and_only_new_inputs_are_scored(tmp_path):
    model, x = tiny_visual(), images(8)
    whole = predict(model, batches(x, 4), cache_dir=tmp_path)
    mixed = torch.cat([x[[1, 5]], images(3, seed=1)])  # two known faces, three new ones
    counter = Counting(model)
    out = predict(model, batches(mixed, 5), cache_dir=tmp_path)
    assert counter.rows == 3
    np.testing.assert_array_equal(out["logits"][:2], whole["logits"][[1, 5]])
    np.testing.assert_allclose(out["logits"][2:], predict(model, batches(images(3, seed=1), 3))["logits"], rtol=1e-6)


@pytest.mark.parametrize("change", ["weights", "buffer", "tta", "input"])
def test_another_model_tta_or_input_is_another_key(tmp_path, change):
    model, x = tiny_visual(), images(4)
    predict(model, batches(x, 4), cache_dir=tmp_path)
    tta = False
    if change == "weights":
        with torch.no_grad():
            model.head.weight[0, 0] += 1e-3
    elif change == "buffer":  # batch-norm statistics are part of the weights too
        model.backbone[1].running_mean += 1e-3
    elif change == "tta":
        tta = True
    else:
        x = x.clone()
        x[0, 0, 0, 0] += 1e-3
    counter = Counting(model)
    out = predict(model, batches(x, 4), tta=tta, cache_dir=tmp_path)
    assert counter.rows == (1 if change == "input" else 4) * (2 if tta else 1)
    np.testing.assert_allclose(out["logits"], predict(model, batches(x, 4), tta=tta)["logits"], rtol=1e-6)


def test_reloaded_weights_and_memory_format_keep_the_key():
    a = tiny_visual()
    b = tiny_visual(seed=1)
    b.load_state_dict(a.state_dict())
    assert model_key(a, True) == model_key(b.to(memory_format=torch.channels_last), True) != model_key(a, False)
    x = images(2)
    assert input_keys(x) == input_keys(x.contiguous()) != input_keys(torch.flip(x, dims=[3]))


def test_features_are_computed_when_only_logits_were_kept(tmp_path):
    model, x = tiny_visual(), images(4)
    predict(model, batches(x, 4), cache_dir=tmp_path)  # logits only
    counter = Counting(model)
    out = predict(model, batches(x, 4), features=True, cache_dir=tmp_path)
    assert counter.rows == 4 and out["features"].shape == (4, 4)
    predict(model, batches(x, 4), features=True, cache_dir=tmp_path)
    predict(model, batches(x, 4), cache_dir=tmp_path)
    assert counter.rows == 4  # both now read from the cache


def test_a_damaged_file_is_skipped_with_a_warning(tmp_path, caplog):
    model, x = tiny_visual(), images(4)
    want = predict(model, batches(x, 4), cache_dir=tmp_path)["logits"]
    (path,) = (tmp_path / "scores").glob("*/*.npz")
    path.write_bytes(path.read_bytes()[:40])  # a truncated file
    counter = Counting(model)
    with caplog.at_level("WARNING", logger="dfmm.scores"):
        out = predict(model, batches(x, 4), cache_dir=tmp_path)
    assert counter.rows == 4 and path.name in caplog.text
    np.testing.assert_array_equal(out["logits"], want)


class MeanIds(nn.Module):
    """A text model whose logit reads the real tokens only (padding masked), like mean pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 3)
        self.head = nn.Linear(3, 1)

    def forward(self, input_ids, attention_mask):
        m = attention_mask.unsqueeze(-1).float()
        return self.head((self.emb(input_ids) * m).sum(1) / m.sum(1)).squeeze(1)


def text_batch(rows: list[list[int]], width: int, index: list[int]) -> dict:
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
    return {
        "inputs": {"input_ids": ids, "attention_mask": mask},
        "labels": torch.zeros(len(rows)),
        "index": torch.tensor(index),
    }


def test_a_text_padded_to_another_width_is_the_same_input(tmp_path):
    torch.manual_seed(0)
    model = MeanIds()
    texts = [[1, 2, 3], [4, 5], [6, 7, 8, 9, 10]]
    first = predict(model, [text_batch(texts, 5, [0, 1, 2])], cache_dir=tmp_path)
    calls = []
    model.register_forward_hook(lambda m, args, out: calls.append(len(out)))
    again = predict(model, [text_batch(texts[:2], 3, [0, 1]), text_batch([[4, 5, 6]], 3, [3])], cache_dir=tmp_path)
    assert calls == [1]  # only [4, 5, 6] is new
    np.testing.assert_array_equal(again["logits"][:2], first["logits"][:2])
    assert ScoreCache(tmp_path, model).folder.is_dir()


def test_study_notebooks_read_what_training_scored(tiny_models):
    """Notebook 04's features and 05/06's test scores of the promoted checkpoints come from training's scoring."""
    from dfmm.data import image_splits, text_splits
    from dfmm.data.batches import TokenizedTexts
    from dfmm.serving.evaluate import score_images, score_texts
    from dfmm.serving.inference import load_model
    from dfmm.training.baselines import branch_outputs
    from dfmm.training.loaders import image_loader, text_loader

    cfg = tiny_models["cfg"]
    cache = cfg.run_dir / "cache"
    vis, _ = load_model(tiny_models["visual"])
    txt, _ = load_model(tiny_models["text"])
    b, tta = vis.visual_meta["backbone"], vis.visual_meta.get("tta", False)
    isplit, tsplit = image_splits(cfg)["val"], text_splits(cfg)["val"]
    fresh = branch_outputs(vis.visual, image_loader(isplit, cfg, mean=b["mean"], std=b["std"], seed=0), tta=tta)
    tokens = TokenizedTexts(tsplit, txt.tokenizer, cfg.text.max_length)
    fresh_text = branch_outputs(txt.text, text_loader(tokens, 8, seed=0))
    counted = Counting(vis.visual), Counting(txt.text)
    loader = image_loader(isplit, cfg, mean=b["mean"], std=b["std"], seed=0)
    cached = branch_outputs(vis.visual, loader, tta=tta, cache_dir=cache)
    cached_text = branch_outputs(txt.text, text_loader(tokens, 8, seed=0), cache_dir=cache)
    test_images = score_images(vis, image_splits(cfg)["test"], cache_dir=cache)
    test_texts = score_texts(txt, text_splits(cfg)["test"], 8, cache_dir=cache)
    assert [c.rows for c in counted] == [0, 0]
    np.testing.assert_allclose(cached.logits, fresh.logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cached.features, fresh.features, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cached_text.logits, fresh_text.logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cached_text.features, fresh_text.features, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(test_images["probs"], score_images(vis, image_splits(cfg)["test"])["probs"], atol=1e-6)
    np.testing.assert_allclose(test_texts["probs"], score_texts(txt, text_splits(cfg)["test"], 8)["probs"], atol=1e-6)


def test_keys_ending_in_a_zero_byte_survive_the_file(tmp_path):
    """Every 256th digest ends in 0x00; stored as bytes strings ("S16") it would come back 15 bytes long."""
    model, x = tiny_visual(), images(300, seed=4)  # three of its keys end in 0x00
    assert any(k.endswith(b"\x00") for k in input_keys(x))
    predict(model, batches(x, 50), cache_dir=tmp_path)
    counter = Counting(model)
    predict(model, batches(x, 50), cache_dir=tmp_path)
    assert counter.rows == 0


def test_precision_and_code_are_part_of_the_model_key():
    model = tiny_visual()
    assert model_key(model, False) == model_key(model, False, "cpu fp32")
    assert model_key(model, False, "cuda bf16") != model_key(model, False, "cuda fp32")
    assert len({model_key(model, False, p) for p in ("cpu fp32", "cuda fp32", "cuda bf16")}) == 3
