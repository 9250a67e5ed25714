"""The out-of-distribution reference a branch checkpoint ships with (``dfmm.models.ood``), fitted when the study
promotes a recipe to the card's file name.

Frozen generic features (the backbone before fine-tuning) of the training items the branch learnt from form the
reference; those of the whole validation split set the distance that keeps 95% of in-domain items. Both pass
through the training loaders and the study's score cache, so notebook 07 reads them back instead of recomputing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dfmm.config import Config
from dfmm.data.batches import TokenizedTexts
from dfmm.models.branches import frozen_branch
from dfmm.models.ood import OodReference, fit_reference
from dfmm.models.scoring import predict


def frozen_split_features(cfg: Config, branch: str, items: Any, cache_dir: Path) -> Any:
    """Frozen generic features (rows in dataset order) of an ImageSet or TextSet, as the study's loaders read it."""
    from dfmm.training.loaders import image_loader, text_loader

    spec = cfg.visual.backbone if branch == "visual" else cfg.text.encoder
    model, info, tokenizer = frozen_branch(branch, spec, cfg.visual.timm_name)
    if branch == "visual":
        loader = image_loader(items, cfg, mean=info.mean, std=info.std, seed=cfg.study.seed)
    else:
        tokens = TokenizedTexts(items, tokenizer, cfg.text.max_length, cache_dir)
        loader = text_loader(tokens, cfg.text.batch_size, seed=cfg.study.seed)
    return predict(model, loader, features=True, cache_dir=cache_dir, desc="frozen features")["features"]


def fit_ood_reference(cfg: Config, branch: str, splits: dict[str, Any]) -> OodReference:
    """The branch's reference: frozen features of its training split (at most ``MAX_REFERENCE``, seeded) and the
    distances of its validation split."""
    cache = cfg.cache_dir
    train = frozen_split_features(cfg, branch, splits["train"], cache)
    val = frozen_split_features(cfg, branch, splits["val"], cache)
    spec = cfg.visual.backbone if branch == "visual" else cfg.text.encoder
    return fit_reference(spec, train, val, seed=cfg.study.seed)
