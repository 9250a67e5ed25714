"""The batches training and its scoring passes read: images through the decoded-image cache or the files (group-
whole when a recipe pairs real and fake), texts in length buckets padded to their longest member.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Subset

from dfmm.config import Config
from dfmm.data.batches import (
    GroupBatchSampler,
    ImageDataset,
    LengthBucketSampler,
    ShuffledBatchSampler,
    TokenizedTexts,
    collate_images,
)
from dfmm.data.images import ImageSet
from dfmm.data.transforms import image_transform


def image_loader(
    images: ImageSet,
    cfg: Config,
    *,
    mean: Any,
    std: Any,
    seed: int,
    train: bool = False,
    augment: str = "none",
    pairs: bool = False,
    batch_size: int = 0,
    cache: bool | None = None,
    rows: np.ndarray | None = None,
    pseudo_fakes: str = "none",
) -> DataLoader:
    """Batches of ``images`` normalised with the backbone's ``mean``/``std``. Training batches (``train``) are
    shuffled each epoch from ``seed``, augmented (``augment``) and, with ``pairs``, keep each group whole; others
    come in dataset order, unaugmented. ``batch_size`` 0 is ``visual.batch_size`` for training and
    ``visual.eval_batch_size`` for scoring. ``cache`` (None: ``visual.cache`` is
    ``decoded``) reads the pixels from the decoded-image cache (``dfmm.data.decoded``), built first when missing;
    a ``strong`` training loader reads the files all the same. ``rows`` (evaluation only): just these items, read
    through the whole set's dataset (and cache), their ``index`` still positions in ``images``. ``pseudo_fakes``
    (training only): ``self_blend`` adds a self-blended pseudo-fake of every real face, ``self_blend_only`` also
    leaves the dataset's own fakes out (``dfmm.data.blend.SelfBlendedFaces``)."""
    if rows is not None and train:
        raise ValueError("rows selects evaluation items; a training loader takes its items from images")
    augment = augment if train else "none"
    ds: Any = None
    use_cache = cfg.visual.cache == "decoded" if cache is None else cache
    if use_cache:
        from dfmm.data.decoded import decoded_dataset

        ds = decoded_dataset(images, cfg.visual.image_size, mean, std, augment)
    if ds is None:
        ds = ImageDataset(images, image_transform(cfg.visual.image_size, mean, std, augment))
    if rows is not None:
        ds = Subset(ds, np.asarray(rows, dtype=int).tolist())
    if train and pseudo_fakes != "none":
        from dfmm.data.blend import SelfBlendedFaces

        size = cfg.visual.image_size
        blend_transform = image_transform(size, mean, std, augment, resized=True)  # blends are made at this size
        ds = SelfBlendedFaces(ds, images, size, blend_transform, only=pseudo_fakes == "self_blend_only")
    bs = batch_size or (cfg.visual.batch_size if train else cfg.visual.eval_batch_size)
    if train and pairs:
        sampler: Any = GroupBatchSampler(ds.groups, bs, seed)
    else:
        sampler = ShuffledBatchSampler(len(ds), bs, seed, shuffle=train)
    return DataLoader(
        ds,
        batch_sampler=sampler,
        collate_fn=collate_images,
        num_workers=cfg.study.num_workers,
        persistent_workers=cfg.study.num_workers > 0,
    )


def text_loader(
    tokens: TokenizedTexts,
    batch_size: int,
    *,
    seed: int,
    train: bool = False,
    workers: int = 0,
    rows: np.ndarray | None = None,
) -> DataLoader:
    """Length-bucketed batches of tokenised texts: shuffled each epoch from ``seed`` when ``train``, else in
    length order. ``rows`` (evaluation only): just these texts, their ``index`` still positions in ``tokens``."""
    if rows is not None and train:
        raise ValueError("rows selects evaluation items; a training loader takes its items from tokens")
    dataset, lengths = tokens, tokens.lengths
    if rows is not None:
        rows = np.asarray(rows, dtype=int)
        dataset, lengths = Subset(tokens, rows.tolist()), tokens.lengths[rows]
    return DataLoader(
        dataset,
        batch_sampler=LengthBucketSampler(lengths, batch_size, seed, shuffle=train),
        collate_fn=tokens.collate,
        num_workers=workers,
    )
